// Internal to the Docker backend: the state behind DockerBackend and the
// helpers its source files share. No Beast/Asio here.
#pragma once

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backends/common.hpp"
#include "backends/docker/docker_backend.hpp"
#include "backends/docker/http_client.hpp"
#include "backends/docker/listing_cache.hpp"

namespace modhost::backend::docker {

namespace json = boost::json;

inline constexpr const char* kApiPrefix = "/v1.41";
inline constexpr const char* kLabelPorts =
    "io.modhost.ports";  // "name:80/tcp,..." (names of published ports)
inline constexpr const char* kLabelConfig = "io.modhost.config";  // the ServiceConfig, JSON
inline constexpr const char* kLabelRole =
    "io.modhost.role";  // artifact volumes: data | tgz; holder containers
inline constexpr const char* kLabelSize = "io.modhost.size";  // artifact: bytes of the .tgz
inline constexpr const char* kHolderImage = "modhost/artifact-holder:1";
// Holders and half-stored artifacts younger than this may belong to a store in progress.
inline constexpr std::chrono::seconds kInProgressGrace{60};

// --- JSON access that never throws ---
const json::value* member(const json::value& v, std::string_view key);
std::string str_at(const json::value& v, std::string_view key);
std::int64_t int_at(const json::value& v, std::string_view key, std::int64_t fallback = 0);
bool bool_at(const json::value& v, std::string_view key);
std::string label_of(const json::value& labels_owner, std::string_view key);  // owner["Labels"][key]
Result<json::value> parse_json(std::string_view body, std::string_view what);

// --- Small utilities ---
using backend::now_rfc3339;  // backends/common.hpp
std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view s);
using backend::random_hex;
using backend::valid_name;
std::string short_id(std::string_view enclave_id);  // first 12 chars
// Image references go into URL paths as they are (Docker routes name/with/slashes:tag).
bool valid_reference(std::string_view ref);
// The two volumes of a files artifact: its files, and the .tgz as uploaded.
std::string artifact_volume(std::string_view enclave_id, std::string_view name);
std::string artifact_tgz_volume(std::string_view enclave_id, std::string_view name);

// The engine's message for a failed call, as an Error with the given context.
// 404 -> not_found, 409 -> `conflict` (already_exists unless the caller knows better).
Error engine_error(const HttpResponse& r, std::string_view context,
                   ErrorCode conflict = ErrorCode::already_exists);
// Docker's {"message": ...} or the raw body.
std::string engine_message(const HttpResponse& r);

inline bool is_2xx(const HttpResponse& r) { return r.status >= 200 && r.status < 300; }

struct Enclave {
  EnclaveInfo info;
  std::string network_id;
  std::string network_name;
};

// Whether a listing may come from the ListingCache (reads) or must come from
// the engine now (recovery, clean-up, and what a mutation acts on).
enum class Read { fresh, cached };

struct ServiceRef {
  Enclave enclave;
  std::string container_id;
  std::string name;
  json::value inspect;  // GET /containers/{id}/json
};

// --- What the backend reads from the engine's answers (docker_parse.cpp) ---
// Never throws and never trusts: a field of the wrong type or a malformed
// label reads as absent. Fuzzed (tests/fuzz/docker_fuzz.cpp).
ServiceStatus service_status(std::string_view state);
std::string port_key(const PortSpec& p);  // "80/tcp"
// The io.modhost.ports label: "name:80/tcp,...". Malformed items are skipped.
std::string encode_ports(const std::vector<PortSpec>& ports);
std::vector<PortSpec> decode_ports(std::string_view label);
// A container's inspect (or a listing entry in that shape) as a service of `e`.
ServiceInfo service_info(const json::value& inspect, const Enclave& e);
// A network's inspect or listing entry as an enclave.
Enclave enclave_from_network(const json::value& net);

}  // namespace modhost::backend::docker

namespace modhost::backend {

struct DockerBackend::Impl {
  Impl(DockerOptions opts, docker::EngineAddress address);

  DockerOptions options;
  docker::EngineClient client;
  std::shared_ptr<spdlog::logger> log;
  std::mutex holder_mutex;
  bool holder_ready = false;
  // Requests sent through api(), for tests of the cache.
  mutable std::atomic<std::uint64_t> engine_calls{0};
  // Declared last: its watcher uses `client` and `log` until it is gone.
  std::unique_ptr<docker::ListingCache> cache;

  // --- Engine calls (path without the /v1.41 prefix) ---
  // Any call but a GET, HEAD or exec creation counts as a change for the cache.
  Result<docker::HttpResponse> api(docker::Method method, const std::string& path, std::string_view body = {},
                                   std::optional<std::chrono::milliseconds> timeout = std::nullopt,
                                   std::string_view content_type = "application/json") const;
  // A call whose 2xx body is JSON; other statuses become engine_error(context).
  Result<docker::json::value> api_json(docker::Method method, const std::string& path,
                                       std::string_view context,
                                       const docker::json::value* body = nullptr) const;
  // GET `path` (a listing the cache's event filter covers), from the cache when it is current.
  Result<std::shared_ptr<const docker::json::value>> cached_json(const std::string& path,
                                                                 std::string_view context) const;
  // ?filters= for modhost resources in our scope plus `labels` ("key=value").
  std::string filters(std::initializer_list<std::string> labels) const;
  docker::json::object base_labels(std::string_view kind, std::string_view enclave_id, std::string_view name,
                                   const std::string& created) const;

  // --- Enclaves ---
  Result<std::vector<docker::Enclave>> enclave_networks(docker::Read read = docker::Read::fresh) const;
  // By id, name or unique id prefix, from the cached listing.
  Result<docker::Enclave> resolve_enclave(std::string_view id_or_name, bool require_complete) const;
  // Every modhost container of the enclave (services, modules, artifact holders), fresh.
  Result<std::vector<docker::json::value>> enclave_containers(std::string_view enclave_id) const;
  // The path of that listing: also its key in the cache.
  std::string containers_path(std::string_view enclave_id) const;
  Status remove_enclave_resources(const docker::Enclave& e) const;

  // --- Services ---
  static std::string container_name(std::string_view enclave_id, std::string_view service);
  Result<docker::ServiceRef> resolve_service(std::string_view enclave_id, std::string_view name) const;
  Status remove_container(const std::string& id) const;
  Result<std::string> log_tail(const std::string& container_id, int lines) const;
  // Its last 20 lines as one line, for an error.
  std::string last_output(const std::string& container_id) const;
  Result<ExecResult> run_exec(const docker::ServiceRef& s, const std::vector<std::string>& argv,
                              std::optional<std::chrono::milliseconds> timeout) const;
  Status simple_action(std::string_view enclave_id, std::string_view name, std::string_view verb,
                       const std::string& action_path, std::optional<std::chrono::milliseconds> timeout);

  // --- Artifacts ---
  Status ensure_holder_image();
  Result<std::string> create_holder(const docker::Enclave& e, std::string_view artifact,
                                    const std::vector<std::pair<std::string, std::string>>& mounts,
                                    bool read_only);
  Result<ArtifactInfo> store(const docker::Enclave& e, std::string_view name, std::string_view tgz);
  Status load_archive_bytes(std::string_view bytes, std::string_view what);
  // The answer of POST /images/load: a failure can come as 200 with
  // {"error": ...} in its JSON message stream; progress lines are logged.
  Status check_image_load(const docker::HttpResponse& r, const std::string& context) const;
};

// The short names the backend's files use (this header is theirs alone).
using docker::Enclave;
using docker::HttpResponse;
using docker::is_2xx;
using docker::Method;
using docker::ServiceRef;
using docker::url_encode;
namespace json = boost::json;
using std::chrono::milliseconds;

}  // namespace modhost::backend
