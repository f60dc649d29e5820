// One interface, several container orchestrators. An implementation keeps no
// local state: every resource it makes carries the modhost labels, so a fresh
// process rediscovers enclaves, services and artifacts from the backend alone.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "modhost/result.hpp"
#include "modhost/types.hpp"

namespace modhost::backend {

// Labels carried by every backend resource.
inline constexpr const char* kLabelApp = "io.modhost.app";          // always "modhost"
inline constexpr const char* kLabelKind = "io.modhost.kind";        // enclave | service | module | artifact
inline constexpr const char* kLabelEnclave = "io.modhost.enclave";  // enclave id
inline constexpr const char* kLabelName = "io.modhost.name";        // enclave, service or artifact name
inline constexpr const char* kLabelCreated = "io.modhost.created";  // RFC 3339 UTC
inline constexpr const char* kLabelState = "io.modhost.state";      // "ready" once fully made
inline constexpr const char* kLabelProtected = "io.modhost.protected";  // "true": chaos never touches it

enum class EnclaveStatus { running, stopped, empty };

inline const char* to_string(EnclaveStatus s) {
  switch (s) {
    case EnclaveStatus::running:
      return "running";
    case EnclaveStatus::stopped:
      return "stopped";
    case EnclaveStatus::empty:
      return "empty";
  }
  return "empty";
}

struct EnclaveInfo {
  std::string id;    // 32 hex chars
  std::string name;  // user-facing, unique among enclaves
  EnclaveStatus status = EnclaveStatus::empty;
  std::string created;  // RFC 3339 UTC
  std::string subnet;   // CIDR of the enclave network, e.g. 172.18.0.0/16
  std::string gateway;
  bool complete = true;  // false: half-made (a crash during creation)
};

struct ImageInfo {
  std::string id;
  std::vector<std::string> references;  // name:tag
  std::uint64_t size_bytes = 0;
};

struct ArtifactInfo {
  std::string name;
  std::string enclave_id;
  std::uint64_t size_bytes = 0;  // of the .tgz
  std::string created;
};

using modhost::ReadinessCheck;

// Called with each chunk of log output while following.
using LogSink = std::function<bool(std::string_view chunk)>;  // return false to stop

// Something that happened to a container of an enclave, as the backend saw it.
struct EnclaveEvent {
  std::int64_t time_ns = 0;  // since the epoch, UTC
  std::string kind;          // io.modhost.kind of the container: service | module | helper
  std::string subject;       // its name in the enclave
  std::string action;        // create | start | kill | die | stop | pause | unpause | restart | oom | destroy
  std::map<std::string, std::string> attributes;  // e.g. exitCode, signal
};

// Called with each event; return false to stop.
using EventSink = std::function<bool(const EnclaveEvent& event)>;

struct CleanReport {
  std::vector<std::string> removed;  // human-readable "kind name (id)"
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string_view name() const = 0;  // "docker", "native"
  // True when services run on this host, so the host can connect to their
  // addresses in the enclave subnet directly (no published port needed).
  virtual bool services_on_this_host() const { return false; }

  // --- Enclaves ---
  virtual Result<EnclaveInfo> create_enclave(std::string_view name) = 0;
  virtual Result<std::vector<EnclaveInfo>> list_enclaves() = 0;
  // By id, unique id prefix, or name.
  virtual Result<EnclaveInfo> find_enclave(std::string_view id_or_name) = 0;
  virtual Status stop_enclave(std::string_view enclave_id) = 0;
  // Without `force`, refuses an enclave with running services.
  virtual Status remove_enclave(std::string_view enclave_id, bool force) = 0;

  // --- Services ---
  virtual Result<ServiceInfo> add_service(std::string_view enclave_id, const ServiceConfig& config) = 0;
  virtual Result<std::vector<ServiceInfo>> list_services(std::string_view enclave_id) = 0;
  virtual Result<ServiceInfo> inspect_service(std::string_view enclave_id, std::string_view name) = 0;
  virtual Status remove_service(std::string_view enclave_id, std::string_view name) = 0;
  virtual Status stop_service(std::string_view enclave_id, std::string_view name, int grace_seconds) = 0;
  virtual Status start_service(std::string_view enclave_id, std::string_view name) = 0;
  virtual Status restart_service(std::string_view enclave_id, std::string_view name) = 0;
  virtual Status pause_service(std::string_view enclave_id, std::string_view name) = 0;
  virtual Status unpause_service(std::string_view enclave_id, std::string_view name) = 0;
  virtual Status kill_service(std::string_view enclave_id, std::string_view name, int signal) = 0;
  virtual Result<ExecResult> exec(std::string_view enclave_id, std::string_view name,
                                  const std::vector<std::string>& argv) = 0;
  // Whole log so far, or followed until the sink returns false or the service ends.
  virtual Status logs(std::string_view enclave_id, std::string_view name, bool follow,
                      const LogSink& sink) = 0;
  virtual Status wait_ready(std::string_view enclave_id, std::string_view name,
                            const ReadinessCheck& check) = 0;
  // The config the service was added with (what `add_service` got, after
  // defaults), so it can be added again changed.
  virtual Result<ServiceConfig> service_config(std::string_view enclave_id, std::string_view name) = 0;
  // Unpacks a tar archive (plain or gzip) into directory `dir` of the service,
  // replacing files of the same names.
  virtual Status copy_to_service(std::string_view enclave_id, std::string_view name, std::string_view dir,
                                 std::string_view tar) = 0;

  // --- Files artifacts (a .tgz each) ---
  virtual Result<ArtifactInfo> store_artifact(std::string_view enclave_id, std::string_view name,
                                              std::string_view tgz) = 0;
  virtual Result<std::vector<ArtifactInfo>> list_artifacts(std::string_view enclave_id) = 0;
  virtual Result<std::string> download_artifact(std::string_view enclave_id, std::string_view name) = 0;
  // Copies PATH out of a service into a new artifact.
  virtual Result<ArtifactInfo> store_from_service(std::string_view enclave_id, std::string_view service,
                                                  std::string_view path, std::string_view name) = 0;
  // Removes an artifact (refused while a running service mounts it, where the
  // backend can tell). Backends that cannot say so.
  virtual Status remove_artifact(std::string_view enclave_id, std::string_view name) {
    (void)enclave_id;
    return Error(ErrorCode::failed_precondition, "the " + std::string(this->name()) +
                                                     " backend cannot remove files artifacts (" +
                                                     std::string(name) + ")");
  }

  // --- Images ---
  // Loads an image archive (docker-save format) into the backend.
  virtual Status load_image(std::string_view archive_path) = 0;
  virtual Result<bool> image_exists(std::string_view reference) = 0;
  // The images the backend holds, and removing one (a reference; the image
  // goes with its last reference). Backends that share their store with
  // other tools (Docker) need not offer these.
  virtual Result<std::vector<ImageInfo>> list_images() {
    return Error(ErrorCode::failed_precondition,
                 "the " + std::string(name()) + " backend does not list images here; use its own tools");
  }
  virtual Status remove_image(std::string_view reference) {
    return Error(ErrorCode::failed_precondition,
                 "the " + std::string(name()) + " backend does not remove images here; use its own tools (" +
                     std::string(reference) + ")");
  }

  // --- Events ---
  // The enclave's container events since it was made, oldest first; with
  // `follow`, then every new one until the sink returns false.
  virtual Status events(std::string_view enclave_id, bool follow, const EventSink& sink) = 0;

  // --- Network control hooks ---
  // The pid of a process inside the service's network namespace, when the
  // backend runs on this host (so the host can enter it with setns); nullopt
  // when it cannot be entered from here.
  virtual Result<std::optional<int>> network_namespace_pid(std::string_view enclave_id,
                                                           std::string_view name) = 0;

  // --- Recovery ---
  // Half-made or orphaned resources (from a crash), without changing anything.
  virtual Result<std::vector<std::string>> recover() = 0;
  // Removes stopped enclaves and half-made resources; with `all`, every enclave.
  virtual Result<CleanReport> clean(bool all) = 0;
};

}  // namespace modhost::backend
