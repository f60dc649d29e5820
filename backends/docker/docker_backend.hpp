// The Docker backend: the Docker Engine API (v1.41) over its unix socket or
// tcp, HTTP/1.1 + JSON. Everything it makes carries the modhost labels; it
// keeps no local state.
//
// Resources per enclave (short = first 12 hex chars of the enclave id):
//   network    modhost-<enclave name>          bridge; labels + io.modhost.state=ready
//   container  modhost-<short>-<service>       on the network, DNS alias = service name
//   volume     modhost-<short>-artifact-<name>      the artifact's files (mounted read-only)
//   volume     modhost-<short>-artifact_tgz-<name>  the original .tgz bytes (for download)
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "backends/backend.hpp"

namespace modhost::backend {

struct DockerOptions {
  // unix:///path or tcp://HOST:PORT. Empty: $DOCKER_HOST, else unix:///var/run/docker.sock.
  std::string host;
  // Non-empty: every resource also gets io.modhost.scope=<scope>, and listing,
  // recover() and clean() see only resources with it. Tests use it to keep out
  // of each other's way on a shared engine.
  std::string scope;
  // Bound on each I/O step of an API call (image loads and stops can be slow).
  std::chrono::milliseconds request_timeout{std::chrono::minutes(5)};
  // How long a new service must stay up, after Docker's start returned, for
  // add_service to call it started. 0 (the default): add_service looks once,
  // in the inspect it makes anyway; a process that exits at once (a bad
  // command, a missing file) has usually exited before Docker's start returns
  // (measured: 8 of 8 shells running `exit 1` were seen exited at that look).
  // Later exits end any readiness wait at once, with the service's output.
  std::chrono::milliseconds startup_check{0};
};

inline constexpr const char* kLabelScope = "io.modhost.scope";

class DockerBackend final : public Backend {
 public:
  // No I/O: an unreachable engine shows at ping() or the first call.
  static Result<std::unique_ptr<DockerBackend>> create(const DockerOptions& options);
  ~DockerBackend() override;
  DockerBackend(const DockerBackend&) = delete;
  DockerBackend& operator=(const DockerBackend&) = delete;

  // GET /_ping. On failure, one line: "cannot reach the Docker engine at URL: REASON; start it with ...".
  Status ping();
  // The engine address in use, e.g. unix:///var/run/docker.sock.
  const std::string& host() const;

  std::string_view name() const override { return "docker"; }
  bool services_on_this_host() const override;

  Result<EnclaveInfo> create_enclave(std::string_view name) override;
  Result<std::vector<EnclaveInfo>> list_enclaves() override;
  Result<EnclaveInfo> find_enclave(std::string_view id_or_name) override;
  Status stop_enclave(std::string_view enclave_id) override;
  Status remove_enclave(std::string_view enclave_id, bool force) override;

  Result<ServiceInfo> add_service(std::string_view enclave_id, const ServiceConfig& config) override;
  Result<std::vector<ServiceInfo>> list_services(std::string_view enclave_id) override;
  Result<ServiceInfo> inspect_service(std::string_view enclave_id, std::string_view name) override;
  Status remove_service(std::string_view enclave_id, std::string_view name) override;
  Status stop_service(std::string_view enclave_id, std::string_view name, int grace_seconds) override;
  Status start_service(std::string_view enclave_id, std::string_view name) override;
  Status restart_service(std::string_view enclave_id, std::string_view name) override;
  Status pause_service(std::string_view enclave_id, std::string_view name) override;
  Status unpause_service(std::string_view enclave_id, std::string_view name) override;
  Status kill_service(std::string_view enclave_id, std::string_view name, int signal) override;
  Result<ExecResult> exec(std::string_view enclave_id, std::string_view name,
                          const std::vector<std::string>& argv) override;
  Status logs(std::string_view enclave_id, std::string_view name, bool follow, const LogSink& sink) override;
  Status wait_ready(std::string_view enclave_id, std::string_view name, const ReadinessCheck& check) override;
  Result<ServiceConfig> service_config(std::string_view enclave_id, std::string_view name) override;
  Status events(std::string_view enclave_id, bool follow, const EventSink& sink) override;
  Status copy_to_service(std::string_view enclave_id, std::string_view name, std::string_view dir,
                         std::string_view tar) override;

  Result<ArtifactInfo> store_artifact(std::string_view enclave_id, std::string_view name,
                                      std::string_view tgz) override;
  Result<std::vector<ArtifactInfo>> list_artifacts(std::string_view enclave_id) override;
  Result<std::string> download_artifact(std::string_view enclave_id, std::string_view name) override;
  Result<ArtifactInfo> store_from_service(std::string_view enclave_id, std::string_view service,
                                          std::string_view path, std::string_view name) override;
  Status remove_artifact(std::string_view enclave_id, std::string_view name) override;

  Status load_image(std::string_view archive_path) override;
  Result<bool> image_exists(std::string_view reference) override;

  Result<std::optional<int>> network_namespace_pid(std::string_view enclave_id,
                                                   std::string_view name) override;

  Result<std::vector<std::string>> recover() override;
  Result<CleanReport> clean(bool all) override;

  // For tests: the listing cache at work.
  struct CacheStats {
    std::uint64_t hits = 0;          // listings served from the cache
    std::uint64_t engine_calls = 0;  // requests sent to the engine for the backend's API calls
    bool subscribed = false;         // the event watcher follows Docker's events now
  };
  CacheStats cache_stats() const;
  // For tests: while held, Docker's events reach the cache only once released
  // (as if they were late), so a test sees what the backend's own
  // bookkeeping of its changes does.
  void hold_events_for_tests(bool hold);

  struct Impl;  // backends/docker/docker_impl.hpp

 private:
  explicit DockerBackend(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The factory the engine uses.
Result<std::unique_ptr<Backend>> make_docker_backend(const DockerOptions& options);

}  // namespace modhost::backend
