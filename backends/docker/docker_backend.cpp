// Enclaves, services, exec, logs, readiness and images over the Docker Engine API.
#include "backends/docker/docker_backend.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <map>
#include <set>
#include <thread>
#include <utility>

#include "backends/config_json.hpp"
#include "backends/docker/docker_impl.hpp"
#include "backends/docker/mux_stream.hpp"
#include "backends/readiness.hpp"

namespace modhost::backend {

using docker::Enclave;
using docker::HttpResponse;
using docker::is_2xx;
using docker::Method;
using docker::ServiceRef;
using docker::url_encode;
namespace json = boost::json;
using std::chrono::milliseconds;

namespace {

std::shared_ptr<spdlog::logger> component_logger() {
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  if (auto existing = spdlog::get("backend.docker")) return existing;
  auto def = spdlog::default_logger();
  auto logger = std::make_shared<spdlog::logger>("backend.docker", def->sinks().begin(), def->sinks().end());
  logger->set_level(def->level());
  try {
    spdlog::register_logger(logger);
  } catch (const spdlog::spdlog_ex&) {
    if (auto existing = spdlog::get("backend.docker")) return existing;
  }
  return logger;
}

// Running for the purpose of "has running services": paused and restarting count.
bool container_active(const json::value& c) {
  // List entries have "State": "running"; inspect has "State": {"Status": ...}.
  std::string state = docker::str_at(c, "State");
  if (state.empty()) {
    if (const json::value* st = docker::member(c, "State")) state = docker::str_at(*st, "Status");
  }
  return state == "running" || state == "paused" || state == "restarting";
}

ServiceStatus service_status(std::string_view s) {
  if (s == "created") return ServiceStatus::created;
  if (s == "running" || s == "restarting") return ServiceStatus::running;
  if (s == "paused") return ServiceStatus::paused;
  if (s == "exited" || s == "dead") return ServiceStatus::exited;
  return ServiceStatus::unknown;
}

std::string port_key(const PortSpec& p) { return std::to_string(p.number) + "/" + p.protocol; }

std::string encode_ports(const std::vector<PortSpec>& ports) {
  std::string out;
  for (const auto& p : ports) {
    if (!out.empty()) out += ',';
    out += p.name + ":" + port_key(p);
  }
  return out;
}

std::vector<PortSpec> decode_ports(std::string_view s) {
  std::vector<PortSpec> out;
  while (!s.empty()) {
    auto comma = s.find(',');
    std::string_view item = s.substr(0, comma);
    s = comma == std::string_view::npos ? std::string_view{} : s.substr(comma + 1);
    auto colon = item.rfind(':');
    auto slash = item.rfind('/');
    if (colon == std::string_view::npos || slash == std::string_view::npos || slash < colon) continue;
    PortSpec p;
    p.name = std::string(item.substr(0, colon));
    p.number = static_cast<std::uint16_t>(std::stoi(std::string(item.substr(colon + 1, slash - colon - 1))));
    p.protocol = std::string(item.substr(slash + 1));
    out.push_back(std::move(p));
  }
  return out;
}

// Image references go into URL paths as they are (Docker routes name/with/slashes:tag).
bool valid_reference(std::string_view ref) {
  if (ref.empty() || ref.size() > 255) return false;
  return std::all_of(ref.begin(), ref.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-' || c == '/' || c == ':' || c == '@';
  });
}

// Runs fn(item) for every item, a few at a time; returns the first error.
template <class T, class Fn>
Status for_each_parallel(const std::vector<T>& items, Fn fn) {
  constexpr std::size_t kWidth = 8;
  std::vector<std::optional<Error>> errors(items.size());
  for (std::size_t start = 0; start < items.size(); start += kWidth) {
    std::vector<std::thread> threads;
    for (std::size_t i = start; i < std::min(items.size(), start + kWidth); ++i) {
      threads.emplace_back([&, i] {
        Status s = fn(items[i]);
        if (!s.ok()) errors[i] = s.error();
      });
    }
    for (auto& t : threads) t.join();
  }
  for (auto& e : errors) {
    if (e) return *e;
  }
  return ok_status();
}

// Removes a freshly made container unless disarmed.
class ContainerGuard {
 public:
  ContainerGuard(const DockerBackend::Impl& impl, std::string id) : impl_(impl), id_(std::move(id)) {}
  ~ContainerGuard() {
    if (!id_.empty()) (void)impl_.remove_container(id_);
  }
  ContainerGuard(const ContainerGuard&) = delete;
  ContainerGuard& operator=(const ContainerGuard&) = delete;
  void release() { id_.clear(); }

 private:
  const DockerBackend::Impl& impl_;
  std::string id_;
};

}  // namespace

// ---------------------------------------------------------------------------
// Impl: engine calls and shared helpers

DockerBackend::Impl::Impl(DockerOptions opts, docker::EngineAddress address)
    : options(std::move(opts)),
      client(std::move(address), options.request_timeout),
      log(component_logger()),
      cache(std::make_unique<docker::ListingCache>(client, options.scope, log)) {}

Result<HttpResponse> DockerBackend::Impl::api(Method method, const std::string& path, std::string_view body,
                                              std::optional<milliseconds> timeout,
                                              std::string_view content_type) const {
  static constexpr const char* kNames[] = {"GET", "HEAD", "POST", "PUT", "DELETE"};
  log->debug("{} {}", kNames[static_cast<int>(method)], path);
  ++engine_calls;
  auto r = client.request(method, std::string(docker::kApiPrefix) + path, body, content_type, timeout);
  // Counted once the engine answered (or not: a lost answer may still have
  // acted), so this caller's next listing sees the change even before
  // Docker's event about it arrives. An exec changes nothing a listing shows.
  if (method != Method::get && method != Method::head && !path.ends_with("/exec")) cache->note_change();
  return r;
}

Result<json::value> DockerBackend::Impl::api_json(Method method, const std::string& path,
                                                  std::string_view context, const json::value* body) const {
  std::string payload = body != nullptr ? json::serialize(*body) : std::string();
  MODHOST_ASSIGN_OR_RETURN(HttpResponse r, api(method, path, payload));
  if (!is_2xx(r)) return docker::engine_error(r, context);
  if (r.body.empty()) return json::value(nullptr);
  return docker::parse_json(r.body, path);
}

Result<std::shared_ptr<const json::value>> DockerBackend::Impl::cached_json(const std::string& path,
                                                                            std::string_view context) const {
  if (auto hit = cache->find(path)) return hit;
  const docker::ListingCache::Ticket ticket = cache->ticket();
  MODHOST_ASSIGN_OR_RETURN(json::value v, api_json(Method::get, path, context));
  auto fetched = std::make_shared<const json::value>(std::move(v));
  cache->store(ticket, path, fetched);
  return fetched;
}

std::string DockerBackend::Impl::filters(std::initializer_list<std::string> labels) const {
  json::array arr;
  arr.emplace_back(std::string(kLabelApp) + "=modhost");
  if (!options.scope.empty()) arr.emplace_back(std::string(kLabelScope) + "=" + options.scope);
  for (const auto& l : labels) arr.emplace_back(l);
  json::object f;
  f["label"] = std::move(arr);
  return "filters=" + url_encode(json::serialize(f));
}

json::object DockerBackend::Impl::base_labels(std::string_view kind, std::string_view enclave_id,
                                              std::string_view name, const std::string& created) const {
  json::object l;
  l[kLabelApp] = "modhost";
  l[kLabelKind] = kind;
  l[kLabelEnclave] = enclave_id;
  l[kLabelName] = name;
  l[kLabelCreated] = created;
  if (!options.scope.empty()) l[kLabelScope] = options.scope;
  return l;
}

// ---------------------------------------------------------------------------
// Enclaves

Enclave DockerBackend::Impl::enclave_from_network(const json::value& net) const {
  Enclave e;
  e.network_id = docker::str_at(net, "Id");
  e.network_name = docker::str_at(net, "Name");
  e.info.id = docker::label_of(net, kLabelEnclave);
  e.info.name = docker::label_of(net, kLabelName);
  e.info.created = docker::label_of(net, kLabelCreated);
  e.info.complete = docker::label_of(net, kLabelState) == "ready";
  if (const json::value* ipam = docker::member(net, "IPAM")) {
    if (const json::value* cfg = docker::member(*ipam, "Config"); cfg != nullptr && cfg->is_array()) {
      for (const auto& c : cfg->get_array()) {
        e.info.subnet = docker::str_at(c, "Subnet");
        e.info.gateway = docker::str_at(c, "Gateway");
        if (!e.info.subnet.empty()) break;
      }
    }
  }
  return e;
}

Result<std::vector<Enclave>> DockerBackend::Impl::enclave_networks(docker::Read read) const {
  const std::string path = "/networks?" + filters({std::string(kLabelKind) + "=enclave"});
  std::shared_ptr<const json::value> listed;
  if (read == docker::Read::cached) {
    MODHOST_ASSIGN_OR_RETURN(listed, cached_json(path, "cannot list enclaves"));
  } else {
    MODHOST_ASSIGN_OR_RETURN(json::value v, api_json(Method::get, path, "cannot list enclaves"));
    listed = std::make_shared<const json::value>(std::move(v));
  }
  std::vector<Enclave> out;
  if (const json::array* arr = listed->if_array()) {
    for (const auto& net : *arr) {
      Enclave e = enclave_from_network(net);
      if (e.info.id.empty()) continue;
      out.push_back(std::move(e));
    }
  }
  return out;
}

std::string DockerBackend::Impl::containers_path(std::string_view enclave_id) const {
  return "/containers/json?all=1&" + filters({std::string(kLabelEnclave) + "=" + std::string(enclave_id)});
}

Result<std::vector<json::value>> DockerBackend::Impl::enclave_containers(std::string_view enclave_id) const {
  MODHOST_ASSIGN_OR_RETURN(json::value v,
                           api_json(Method::get, containers_path(enclave_id),
                                    "cannot list the containers of enclave " + std::string(enclave_id)));
  std::vector<json::value> out;
  if (json::array* arr = v.if_array()) {
    for (auto& c : *arr) out.push_back(std::move(c));
  }
  return out;
}

Result<Enclave> DockerBackend::Impl::resolve_enclave(std::string_view id_or_name,
                                                     bool require_complete) const {
  if (id_or_name.empty()) return Error(ErrorCode::invalid_argument, "no enclave given");
  MODHOST_ASSIGN_OR_RETURN(std::vector<Enclave> all, enclave_networks(docker::Read::cached));
  const Enclave* found = nullptr;
  for (const auto& e : all) {
    if (e.info.id == id_or_name) found = &e;
  }
  if (found == nullptr) {
    for (const auto& e : all) {
      if (e.info.name == id_or_name) found = &e;
    }
  }
  if (found == nullptr) {
    std::vector<const Enclave*> matches;
    for (const auto& e : all) {
      if (e.info.id.starts_with(id_or_name)) matches.push_back(&e);
    }
    if (matches.size() > 1) {
      std::string names;
      for (const auto* m : matches)
        names += (names.empty() ? "" : ", ") + m->info.name + " (" + m->info.id + ")";
      return Error(ErrorCode::invalid_argument,
                   "enclave id prefix '" + std::string(id_or_name) + "' is ambiguous: " + names);
    }
    if (matches.size() == 1) found = matches.front();
  }
  if (found == nullptr) {
    return Error(ErrorCode::not_found, "enclave '" + std::string(id_or_name) +
                                           "' not found; list enclaves with 'modhost enclave ls'");
  }
  if (require_complete && !found->info.complete) {
    return Error(ErrorCode::failed_precondition,
                 "enclave '" + found->info.name +
                     "' is half-made (its creation was interrupted); remove it with "
                     "'modhost clean'");
  }
  return *found;
}

Status DockerBackend::Impl::remove_container(const std::string& id) const {
  MODHOST_ASSIGN_OR_RETURN(HttpResponse r,
                           api(Method::del, "/containers/" + url_encode(id) + "?force=1&v=1"));
  if (is_2xx(r) || r.status == 404) return ok_status();
  return docker::engine_error(r, "cannot remove container " + id);
}

Status DockerBackend::Impl::remove_enclave_resources(const Enclave& e) const {
  const std::string ctx = "failed to remove enclave '" + e.info.name + "'";
  auto remove_containers = [&]() -> Status {
    MODHOST_ASSIGN_OR_RETURN(std::vector<json::value> containers, enclave_containers(e.info.id));
    std::vector<std::string> ids;
    for (const auto& c : containers) ids.push_back(docker::str_at(c, "Id"));
    if (auto s = for_each_parallel(ids, [this](const std::string& id) { return remove_container(id); });
        !s.ok()) {
      return s.error().context(ctx);
    }
    return ok_status();
  };
  MODHOST_TRY(remove_containers());
  MODHOST_ASSIGN_OR_RETURN(
      json::value vols,
      api_json(Method::get, "/volumes?" + filters({std::string(kLabelEnclave) + "=" + e.info.id}), ctx));
  if (const json::value* arr = docker::member(vols, "Volumes"); arr != nullptr && arr->is_array()) {
    for (const auto& v : arr->get_array()) {
      const std::string vname = docker::str_at(v, "Name");
      MODHOST_ASSIGN_OR_RETURN(HttpResponse r,
                               api(Method::del, "/volumes/" + url_encode(vname) + "?force=1"));
      if (!is_2xx(r) && r.status != 404)
        return docker::engine_error(r, ctx + ": cannot remove volume " + vname);
    }
  }
  // A container another process (or an engine finishing a request whose
  // client went away) attached meanwhile keeps the network busy: remove what
  // is there now and try again, a few times.
  for (int attempt = 0;; ++attempt) {
    MODHOST_ASSIGN_OR_RETURN(HttpResponse r, api(Method::del, "/networks/" + url_encode(e.network_id)));
    if (is_2xx(r) || r.status == 404) break;
    if (r.status != 403 || attempt == 4) return docker::engine_error(r, ctx, ErrorCode::failed_precondition);
    std::this_thread::sleep_for(std::chrono::milliseconds(100 * (attempt + 1)));
    MODHOST_TRY(remove_containers());
  }
  log->info("removed enclave '{}' ({})", e.info.name, e.info.id);
  return ok_status();
}

// ---------------------------------------------------------------------------
// Services: helpers

std::string DockerBackend::Impl::container_name(std::string_view enclave_id, std::string_view service) {
  return "modhost-" + docker::short_id(enclave_id) + "-" + std::string(service);
}

Result<ServiceRef> DockerBackend::Impl::resolve_service(std::string_view enclave_id,
                                                        std::string_view name) const {
  MODHOST_ASSIGN_OR_RETURN(Enclave e, resolve_enclave(enclave_id, false));
  auto not_found = [&] {
    return Error(ErrorCode::not_found, "service '" + std::string(name) + "' not found in enclave '" +
                                           e.info.name + "'; list services with 'modhost service ls'");
  };
  if (!docker::valid_name(name)) return not_found();
  const std::string cname = container_name(e.info.id, name);
  MODHOST_ASSIGN_OR_RETURN(HttpResponse r, api(Method::get, "/containers/" + cname + "/json"));
  if (r.status == 404) return not_found();
  if (!is_2xx(r)) return docker::engine_error(r, "cannot inspect service '" + std::string(name) + "'");
  MODHOST_ASSIGN_OR_RETURN(json::value v, docker::parse_json(r.body, "container inspect"));
  const json::value* config = docker::member(v, "Config");
  if (config == nullptr || docker::label_of(*config, kLabelEnclave) != e.info.id ||
      docker::label_of(*config, kLabelName) != name) {
    return not_found();
  }
  ServiceRef s;
  s.container_id = docker::str_at(v, "Id");
  s.name = std::string(name);
  s.enclave = std::move(e);
  s.inspect = std::move(v);
  return s;
}

ServiceInfo DockerBackend::Impl::service_info(const json::value& inspect, const Enclave& e) const {
  ServiceInfo info;
  info.id = docker::str_at(inspect, "Id");
  const json::value* config = docker::member(inspect, "Config");
  static const json::value kEmpty;
  const json::value& cfg = config != nullptr ? *config : kEmpty;
  info.name = docker::label_of(cfg, kLabelName);
  info.enclave_id = docker::label_of(cfg, kLabelEnclave);
  info.image = docker::str_at(cfg, "Image");
  if (const json::value* labels = docker::member(cfg, "Labels"); labels != nullptr && labels->is_object()) {
    for (const auto& [k, v] : labels->get_object()) {
      // The saved config is the backend's own (service_config reads it).
      if (v.is_string() && k != docker::kLabelConfig)
        info.labels[std::string(k)] = std::string(v.get_string());
    }
  }
  if (const json::value* state = docker::member(inspect, "State")) {
    info.status = service_status(docker::str_at(*state, "Status"));
    if (info.status == ServiceStatus::exited)
      info.exit_code = static_cast<int>(docker::int_at(*state, "ExitCode"));
  }
  const json::value* settings = docker::member(inspect, "NetworkSettings");
  if (settings != nullptr) {
    if (const json::value* nets = docker::member(*settings, "Networks");
        nets != nullptr && nets->is_object()) {
      for (const auto& [netname, ep] : nets->get_object()) {
        if (netname == e.network_name || docker::str_at(ep, "NetworkID") == e.network_id) {
          info.ip = docker::str_at(ep, "IPAddress");
        }
      }
    }
  }
  const json::value* bindings = settings != nullptr ? docker::member(*settings, "Ports") : nullptr;
  for (const PortSpec& p : decode_ports(docker::label_of(cfg, docker::kLabelPorts))) {
    PublishedPort pp;
    pp.port = p;
    pp.host_ip = "127.0.0.1";
    if (bindings != nullptr) {
      if (const json::value* list = docker::member(*bindings, port_key(p));
          list != nullptr && list->is_array()) {
        for (const auto& b : list->get_array()) {
          if (docker::str_at(b, "HostIp") != "127.0.0.1") continue;
          const std::string hp = docker::str_at(b, "HostPort");
          if (!hp.empty()) pp.host_port = static_cast<std::uint16_t>(std::stoul(hp));
          break;
        }
      }
    }
    info.ports.push_back(std::move(pp));
  }
  return info;
}

Result<std::string> DockerBackend::Impl::log_tail(const std::string& container_id, int lines) const {
  std::string out;
  docker::StreamDemuxer demux([&out](int, std::string_view payload) {
    out.append(payload);
    return true;
  });
  MODHOST_ASSIGN_OR_RETURN(
      HttpResponse r,
      client.stream(
          Method::get,
          std::string(docker::kApiPrefix) + "/containers/" + url_encode(container_id) +
              "/logs?stdout=1&stderr=1&tail=" + std::to_string(lines),
          {}, [&demux](std::string_view chunk) { return demux.feed(chunk); }, options.request_timeout));
  if (!is_2xx(r)) return docker::engine_error(r, "cannot read the logs of container " + container_id);
  return out;
}

std::string DockerBackend::Impl::last_output(const std::string& container_id) const {
  auto tail = log_tail(container_id, 20);
  if (!tail.ok()) return "(cannot read its logs: " + tail.error().message() + ")";
  return backend::output_as_one_line(std::move(tail.value()));
}

Result<ExecResult> DockerBackend::Impl::run_exec(const ServiceRef& s, const std::vector<std::string>& argv,
                                                 std::optional<milliseconds> timeout) const {
  const std::string ctx =
      "failed to run a command in service '" + s.name + "' of enclave '" + s.enclave.info.name + "'";
  if (argv.empty()) return Error(ErrorCode::invalid_argument, ctx + ": no command given");
  json::object create;
  create["AttachStdin"] = false;
  create["AttachStdout"] = true;
  create["AttachStderr"] = true;
  create["Tty"] = false;
  json::array cmd;
  for (const auto& a : argv) cmd.emplace_back(a);
  create["Cmd"] = std::move(cmd);
  MODHOST_ASSIGN_OR_RETURN(HttpResponse cr, api(Method::post, "/containers/" + s.container_id + "/exec",
                                                json::serialize(create), timeout));
  if (cr.status == 409) {
    return Error(ErrorCode::failed_precondition,
                 ctx + ": the service is not running (" + docker::engine_message(cr) + ")");
  }
  if (!is_2xx(cr)) return docker::engine_error(cr, ctx);
  MODHOST_ASSIGN_OR_RETURN(json::value created, docker::parse_json(cr.body, "exec create"));
  const std::string exec_id = docker::str_at(created, "Id");

  ExecResult result;
  docker::StreamDemuxer demux([&result](int, std::string_view payload) {
    result.output.append(payload);
    return true;
  });
  MODHOST_ASSIGN_OR_RETURN(HttpResponse sr,
                           client.stream(
                               Method::post, std::string(docker::kApiPrefix) + "/exec/" + exec_id + "/start",
                               R"({"Detach":false,"Tty":false})",
                               [&demux](std::string_view chunk) { return demux.feed(chunk); }, timeout));
  if (!is_2xx(sr)) return docker::engine_error(sr, ctx, ErrorCode::failed_precondition);

  // The stream ends when the process does; the exit code may land a moment later.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (true) {
    MODHOST_ASSIGN_OR_RETURN(json::value info, api_json(Method::get, "/exec/" + exec_id + "/json", ctx));
    const json::value* code = docker::member(info, "ExitCode");
    if (!docker::bool_at(info, "Running") && code != nullptr && !code->is_null()) {
      result.exit_code = static_cast<int>(docker::int_at(info, "ExitCode"));
      return result;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return Error(ErrorCode::timeout, ctx + ": the command's output ended but it did not exit");
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
}

Status DockerBackend::Impl::simple_action(std::string_view enclave_id, std::string_view name,
                                          std::string_view verb, const std::string& action_path,
                                          std::optional<milliseconds> timeout) {
  MODHOST_ASSIGN_OR_RETURN(ServiceRef s, resolve_service(enclave_id, name));
  const std::string ctx =
      "failed to " + std::string(verb) + " service '" + s.name + "' in enclave '" + s.enclave.info.name + "'";
  MODHOST_ASSIGN_OR_RETURN(HttpResponse r,
                           api(Method::post, "/containers/" + s.container_id + action_path, {}, timeout));
  if (is_2xx(r) || r.status == 304) {
    log->info("{} service '{}' in enclave '{}'", verb, s.name, s.enclave.info.name);
    return ok_status();
  }
  return docker::engine_error(r, ctx, ErrorCode::failed_precondition);
}

// ---------------------------------------------------------------------------
// DockerBackend

DockerBackend::DockerBackend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DockerBackend::~DockerBackend() = default;

DockerBackend::CacheStats DockerBackend::cache_stats() const {
  const docker::ListingCache::Stats s = impl_->cache->stats();
  return CacheStats{s.hits, impl_->engine_calls.load(), s.subscribed};
}

void DockerBackend::hold_events_for_tests(bool hold) { impl_->cache->hold_events(hold); }

Result<std::unique_ptr<DockerBackend>> DockerBackend::create(const DockerOptions& options) {
  MODHOST_ASSIGN_OR_RETURN(docker::EngineAddress address, docker::parse_engine_address(options.host));
  if (!options.scope.empty() && !docker::valid_name(options.scope)) {
    return Error(ErrorCode::invalid_argument,
                 "bad Docker backend scope '" + options.scope + "': use letters, digits, '.', '_' and '-'");
  }
  return std::unique_ptr<DockerBackend>(
      new DockerBackend(std::make_unique<Impl>(options, std::move(address))));
}

Result<std::unique_ptr<Backend>> make_docker_backend(const DockerOptions& options) {
  MODHOST_ASSIGN_OR_RETURN(std::unique_ptr<DockerBackend> b, DockerBackend::create(options));
  return std::unique_ptr<Backend>(std::move(b));
}

const std::string& DockerBackend::host() const { return impl_->client.address().url; }

Status DockerBackend::ping() {
  MODHOST_ASSIGN_OR_RETURN(HttpResponse r,
                           impl_->client.request(Method::get, "/_ping", {}, {}, std::chrono::seconds(10)));
  if (r.status != 200) {
    return Error(ErrorCode::unavailable,
                 impl_->client.unreachable_message("/_ping answered HTTP " + std::to_string(r.status)));
  }
  return ok_status();
}

Result<EnclaveInfo> DockerBackend::create_enclave(std::string_view name) {
  const std::string ctx = "failed to create enclave '" + std::string(name) + "'";
  if (!docker::valid_name(name)) {
    return Error(
        ErrorCode::invalid_argument,
        ctx + ": a name has 1-63 letters, digits, '.', '_' or '-' and starts with a letter or digit");
  }
  MODHOST_ASSIGN_OR_RETURN(std::vector<Enclave> all, impl_->enclave_networks());
  for (const auto& e : all) {
    if (e.info.name != name) continue;
    if (!e.info.complete) {
      return Error(ErrorCode::already_exists,
                   ctx + ": a half-made enclave with that name exists; remove it with 'modhost clean'");
    }
    return Error(ErrorCode::already_exists,
                 ctx + ": an enclave with that name exists (id " + e.info.id + ")");
  }
  const std::string id = docker::random_hex(32);
  const std::string created = docker::now_rfc3339();
  // The network is the only resource an enclave needs, so it is made ready in
  // one step: a network without io.modhost.state=ready is half-made (made by a
  // different version or by hand) and recover()/clean() deal with it.
  json::object labels = impl_->base_labels("enclave", id, name, created);
  labels[kLabelState] = "ready";
  json::object body;
  // Unique by the id as well: enclaves of one name in other scopes may be
  // made at the same moment, and Docker's duplicate check is best-effort.
  body["Name"] = "modhost-" + std::string(name) + "-" + id.substr(0, 12);
  body["CheckDuplicate"] = true;
  body["Driver"] = "bridge";
  body["Labels"] = std::move(labels);
  MODHOST_ASSIGN_OR_RETURN(HttpResponse r,
                           impl_->api(Method::post, "/networks/create", json::serialize(body)));
  if (!is_2xx(r)) return docker::engine_error(r, ctx);
  MODHOST_ASSIGN_OR_RETURN(json::value made, docker::parse_json(r.body, "network create"));
  const std::string net_id = docker::str_at(made, "Id");
  auto inspected = impl_->api_json(Method::get, "/networks/" + net_id, ctx);
  if (!inspected.ok()) {
    (void)impl_->api(Method::del, "/networks/" + net_id);
    return std::move(inspected).error();
  }
  Enclave e = impl_->enclave_from_network(inspected.value());
  impl_->log->info("created enclave '{}' ({}) on network {} {}", e.info.name, e.info.id, e.network_name,
                   e.info.subnet);
  return e.info;
}

Result<std::vector<EnclaveInfo>> DockerBackend::list_enclaves() {
  MODHOST_ASSIGN_OR_RETURN(std::vector<Enclave> all, impl_->enclave_networks());
  MODHOST_ASSIGN_OR_RETURN(
      json::value containers,
      impl_->api_json(Method::get, "/containers/json?all=1&" + impl_->filters({}), "cannot list enclaves"));
  std::map<std::string, std::pair<int, int>> counts;  // enclave -> (containers, active)
  if (const json::array* arr = containers.if_array()) {
    for (const auto& c : *arr) {
      if (docker::label_of(c, docker::kLabelRole) == "holder") continue;
      auto& [total, active] = counts[docker::label_of(c, kLabelEnclave)];
      ++total;
      if (container_active(c)) ++active;
    }
  }
  std::vector<EnclaveInfo> out;
  for (auto& e : all) {
    auto it = counts.find(e.info.id);
    if (it == counts.end()) {
      e.info.status = EnclaveStatus::empty;
    } else {
      e.info.status = it->second.second > 0 ? EnclaveStatus::running : EnclaveStatus::stopped;
    }
    out.push_back(std::move(e.info));
  }
  std::sort(out.begin(), out.end(), [](const EnclaveInfo& a, const EnclaveInfo& b) {
    return std::tie(a.created, a.name) < std::tie(b.created, b.name);
  });
  return out;
}

Result<EnclaveInfo> DockerBackend::find_enclave(std::string_view id_or_name) {
  MODHOST_ASSIGN_OR_RETURN(Enclave e, impl_->resolve_enclave(id_or_name, false));
  MODHOST_ASSIGN_OR_RETURN(std::shared_ptr<const json::value> listed,
                           impl_->cached_json(impl_->containers_path(e.info.id),
                                              "cannot list the containers of enclave " + e.info.id));
  int total = 0;
  int active = 0;
  if (const json::array* containers = listed->if_array()) {
    for (const auto& c : *containers) {
      if (docker::label_of(c, docker::kLabelRole) == "holder") continue;
      ++total;
      if (container_active(c)) ++active;
    }
  }
  e.info.status = total == 0   ? EnclaveStatus::empty
                  : active > 0 ? EnclaveStatus::running
                               : EnclaveStatus::stopped;
  return e.info;
}

Status DockerBackend::stop_enclave(std::string_view enclave_id) {
  MODHOST_ASSIGN_OR_RETURN(Enclave e, impl_->resolve_enclave(enclave_id, false));
  MODHOST_ASSIGN_OR_RETURN(std::vector<json::value> containers, impl_->enclave_containers(e.info.id));
  std::vector<std::string> ids;
  for (const auto& c : containers) {
    if (container_active(c)) ids.push_back(docker::str_at(c, "Id"));
  }
  const std::string ctx = "failed to stop enclave '" + e.info.name + "'";
  Impl& impl = *impl_;
  auto s = for_each_parallel(ids, [&impl, &ctx](const std::string& id) -> Status {
    // A paused container is thawed first so it can act on SIGTERM.
    (void)impl.api(Method::post, "/containers/" + id + "/unpause");
    MODHOST_ASSIGN_OR_RETURN(HttpResponse r, impl.api(Method::post, "/containers/" + id + "/stop?t=10"));
    if (is_2xx(r) || r.status == 304 || r.status == 404) return ok_status();
    return docker::engine_error(r, ctx, ErrorCode::failed_precondition);
  });
  if (s.ok()) impl_->log->info("stopped enclave '{}' ({} containers)", e.info.name, ids.size());
  return s;
}

Status DockerBackend::remove_enclave(std::string_view enclave_id, bool force) {
  MODHOST_ASSIGN_OR_RETURN(Enclave e, impl_->resolve_enclave(enclave_id, false));
  if (!force) {
    MODHOST_ASSIGN_OR_RETURN(std::vector<json::value> containers, impl_->enclave_containers(e.info.id));
    for (const auto& c : containers) {
      if (docker::label_of(c, docker::kLabelRole) != "holder" && container_active(c)) {
        return Error(ErrorCode::failed_precondition,
                     "enclave '" + e.info.name + "' has running services; stop it first or use -f");
      }
    }
  }
  return impl_->remove_enclave_resources(e);
}

// ---------------------------------------------------------------------------
// Services

Result<ServiceInfo> DockerBackend::add_service(std::string_view enclave_id, const ServiceConfig& config) {
  MODHOST_ASSIGN_OR_RETURN(Enclave e, impl_->resolve_enclave(enclave_id, true));
  const std::string ctx = "failed to start service '" + config.name + "' in enclave '" + e.info.name + "'";
  if (!docker::valid_name(config.name)) {
    return Error(
        ErrorCode::invalid_argument,
        ctx + ": a name has 1-63 letters, digits, '.', '_' or '-' and starts with a letter or digit");
  }
  if (!valid_reference(config.image)) {
    return Error(ErrorCode::invalid_argument, ctx + ": bad image reference '" + config.image + "'");
  }
  for (const auto& p : config.ports) {
    if (p.number == 0 || (p.protocol != "tcp" && p.protocol != "udp" && p.protocol != "sctp") ||
        (!p.name.empty() && !docker::valid_name(p.name))) {
      return Error(ErrorCode::invalid_argument,
                   ctx + ": bad port '" + p.name + ": " + std::to_string(p.number) + "/" + p.protocol + "'");
    }
  }
  for (const auto& [k, v] : config.labels) {
    if (k.starts_with("io.modhost.") && k != kLabelProtected) {
      return Error(ErrorCode::invalid_argument, ctx + ": label '" + k + "' is reserved for modhost");
    }
  }
  if (config.cpus < 0) return Error(ErrorCode::invalid_argument, ctx + ": cpus must not be negative");
  if (!backend::valid_user(config.user)) {
    return Error(ErrorCode::invalid_argument,
                 ctx + ": bad user '" + config.user + "': expected USER[:GROUP], each a number or a name");
  }

  const std::string cname = Impl::container_name(e.info.id, config.name);
  MODHOST_ASSIGN_OR_RETURN(HttpResponse existing, impl_->api(Method::get, "/containers/" + cname + "/json"));
  if (is_2xx(existing)) {
    return Error(ErrorCode::already_exists, ctx + ": a service with that name already exists");
  }
  MODHOST_ASSIGN_OR_RETURN(bool have_image, image_exists(config.image));
  if (!have_image) {
    return Error(ErrorCode::not_found,
                 ctx + ": image '" + config.image +
                     "' not found; load it with 'modhost image load' or 'modhost image pack'");
  }

  json::array mounts;
  for (const auto& f : config.files) {
    if (f.path.empty() || f.path.front() != '/') {
      return Error(ErrorCode::invalid_argument,
                   ctx + ": files artifact '" + f.artifact + "' needs an absolute mount path");
    }
    const std::string vol = Impl::artifact_volume(e.info.id, f.artifact);
    if (!docker::valid_name(f.artifact)) {
      return Error(ErrorCode::not_found,
                   ctx + ": files artifact '" + f.artifact + "' not found in the enclave");
    }
    MODHOST_ASSIGN_OR_RETURN(HttpResponse vr, impl_->api(Method::get, "/volumes/" + vol));
    if (vr.status == 404) {
      return Error(ErrorCode::not_found,
                   ctx + ": files artifact '" + f.artifact + "' not found in the enclave; upload it first");
    }
    if (!is_2xx(vr)) return docker::engine_error(vr, ctx);
    json::object m;
    m["Type"] = "volume";
    m["Source"] = vol;
    m["Target"] = f.path;
    m["ReadOnly"] = true;
    m["VolumeOptions"] = json::object{{"NoCopy", true}};
    mounts.push_back(std::move(m));
  }

  for (const auto& b : config.binds) {
    if (b.source.empty() || b.source[0] != '/' || b.target.empty() || b.target[0] != '/') {
      return Error(ErrorCode::invalid_argument, ctx + ": bind mount paths must be absolute");
    }
    mounts.push_back(json::object{
        {"Type", "bind"}, {"Source", b.source}, {"Target", b.target}, {"ReadOnly", b.read_only}});
  }

  if (config.kind != "service" && config.kind != "module" && config.kind != "helper") {
    return Error(ErrorCode::invalid_argument, ctx + ": unknown kind '" + config.kind + "'");
  }
  json::object labels = impl_->base_labels(config.kind, e.info.id, config.name, docker::now_rfc3339());
  for (const auto& [k, v] : config.labels) labels[k] = v;
  if (!config.ports.empty()) labels[docker::kLabelPorts] = encode_ports(config.ports);
  labels[docker::kLabelConfig] = encode_config(config);

  json::object body;
  body["Image"] = config.image;
  body["Hostname"] = config.name;
  body["Labels"] = std::move(labels);
  body["Tty"] = false;
  body["OpenStdin"] = false;
  json::array env;
  for (const auto& [k, v] : config.env) env.emplace_back(k + "=" + v);
  body["Env"] = std::move(env);
  if (!config.user.empty()) body["User"] = config.user;
  if (!config.entrypoint.empty()) {
    json::array a;
    for (const auto& s : config.entrypoint) a.emplace_back(s);
    body["Entrypoint"] = std::move(a);
  }
  if (!config.cmd.empty()) {
    json::array a;
    for (const auto& s : config.cmd) a.emplace_back(s);
    body["Cmd"] = std::move(a);
  }
  json::object exposed;
  json::object bindings;
  for (const auto& p : config.ports) {
    exposed[port_key(p)] = json::object{};
    // Published on loopback only, on a free port the engine picks.
    bindings[port_key(p)] = json::array{json::object{{"HostIp", "127.0.0.1"}, {"HostPort", ""}}};
  }
  json::object host;
  if (config.network_of.empty()) {
    body["ExposedPorts"] = std::move(exposed);
    host["NetworkMode"] = e.network_name;
    host["PortBindings"] = std::move(bindings);
  } else {
    // In another service's namespace: Docker takes no hostname, ports or
    // network endpoint of its own.
    if (!docker::valid_name(config.network_of)) {
      return Error(ErrorCode::invalid_argument, ctx + ": no service '" + config.network_of + "' to join");
    }
    body.erase("Hostname");
    host["NetworkMode"] = "container:" + Impl::container_name(e.info.id, config.network_of);
  }
  if (!config.cap_add.empty()) {
    json::array caps;
    for (const auto& c : config.cap_add) caps.emplace_back(c);
    host["CapAdd"] = std::move(caps);
  }
  host["Mounts"] = std::move(mounts);
  // An init process as PID 1 forwards signals and reaps zombies, so stop is
  // prompt even for programs that ignore SIGTERM as PID 1.
  host["Init"] = true;
  if (config.cpus > 0) host["NanoCpus"] = static_cast<std::int64_t>(config.cpus * 1e9);
  if (config.memory_bytes > 0) host["Memory"] = static_cast<std::int64_t>(config.memory_bytes);
  body["HostConfig"] = std::move(host);
  if (config.network_of.empty()) {
    json::object endpoint;
    endpoint["Aliases"] = json::array{json::value(config.name)};
    json::object endpoints;
    endpoints[e.network_name] = std::move(endpoint);
    body["NetworkingConfig"] = json::object{{"EndpointsConfig", std::move(endpoints)}};
  }

  MODHOST_ASSIGN_OR_RETURN(
      HttpResponse cr, impl_->api(Method::post, "/containers/create?name=" + cname, json::serialize(body)));
  if (!is_2xx(cr)) {
    if (cr.status == 409) {
      return Error(ErrorCode::already_exists, ctx + ": a service with that name already exists");
    }
    return docker::engine_error(cr, ctx);
  }
  MODHOST_ASSIGN_OR_RETURN(json::value created, docker::parse_json(cr.body, "container create"));
  const std::string id = docker::str_at(created, "Id");
  ContainerGuard guard(*impl_, id);

  MODHOST_ASSIGN_OR_RETURN(HttpResponse sr, impl_->api(Method::post, "/containers/" + id + "/start"));
  if (!is_2xx(sr) && sr.status != 304) return docker::engine_error(sr, ctx, ErrorCode::failed_precondition);

  // A container that dies at once is a failed start: report its last words.
  // A module container needs no start check: the engine polls IsAvailable
  // and reports an exit itself.
  const auto deadline = std::chrono::steady_clock::now() +
                        (config.kind == "module" ? milliseconds(0) : impl_->options.startup_check);
  json::value inspect;
  while (true) {
    MODHOST_ASSIGN_OR_RETURN(inspect, impl_->api_json(Method::get, "/containers/" + id + "/json", ctx));
    const json::value* state = docker::member(inspect, "State");
    const std::string status = state != nullptr ? docker::str_at(*state, "Status") : std::string();
    if (status != "running") {
      const auto code = state != nullptr ? docker::int_at(*state, "ExitCode") : -1;
      return Error(ErrorCode::failed_precondition, ctx + ": it exited at once with code " +
                                                       std::to_string(code) +
                                                       "; its last output: " + impl_->last_output(id));
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) break;
    // Look again at the deadline itself, not a whole interval past it.
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(milliseconds(50), deadline - now));
  }
  guard.release();
  ServiceInfo info = impl_->service_info(inspect, e);
  impl_->log->info("started service '{}' in enclave '{}' ({} at {})", config.name, e.info.name, config.image,
                   info.ip);
  return info;
}

namespace {

// An entry of GET /containers/json in the shape of GET /containers/{id}/json,
// for the fields service_info reads.
json::value inspect_shape(const json::value& c) {
  json::object config{{"Image", docker::str_at(c, "Image")}};
  if (const json::value* l = docker::member(c, "Labels")) config["Labels"] = *l;
  // "Exited (137) 2 minutes ago"
  std::int64_t exit_code = 0;
  const std::string status = docker::str_at(c, "Status");
  if (auto open = status.find('('); open != std::string::npos) {
    std::from_chars(status.data() + open + 1, status.data() + status.size(), exit_code);
  }
  json::object ports;
  if (const json::value* list = docker::member(c, "Ports"); list && list->is_array()) {
    for (const auto& p : list->get_array()) {
      if (!p.is_object() || !p.as_object().contains("PublicPort")) continue;
      const std::string key =
          std::to_string(docker::int_at(p, "PrivatePort")) + "/" + docker::str_at(p, "Type");
      auto& bindings = ports[key];
      if (!bindings.is_array()) bindings = json::array{};
      bindings.as_array().push_back(
          json::object{{"HostIp", docker::str_at(p, "IP")},
                       {"HostPort", std::to_string(docker::int_at(p, "PublicPort"))}});
    }
  }
  json::object settings{{"Ports", std::move(ports)}};
  if (const json::value* ns = docker::member(c, "NetworkSettings")) {
    if (const json::value* nets = docker::member(*ns, "Networks")) settings["Networks"] = *nets;
  }
  return json::object{
      {"Id", docker::str_at(c, "Id")},
      {"Config", std::move(config)},
      {"State", json::object{{"Status", docker::str_at(c, "State")}, {"ExitCode", exit_code}}},
      {"NetworkSettings", std::move(settings)}};
}

// The entry of container `cname` in a listing, if it is the service `name` of
// the enclave and inspect_shape() of it gives exactly what an inspect would:
// not when the listing shows an image id for a tag that moved since, nor for
// a state whose exit code the listing does not carry.
const json::value* listed_as_inspected(const json::value& listing, const std::string& cname,
                                       std::string_view enclave_id, std::string_view name) {
  const json::array* arr = listing.if_array();
  if (arr == nullptr) return nullptr;
  for (const auto& c : *arr) {
    const json::value* names = docker::member(c, "Names");
    if (names == nullptr || !names->is_array()) continue;
    const bool named =
        std::any_of(names->get_array().begin(), names->get_array().end(),
                    [&](const json::value& n) { return n.is_string() && n.get_string() == "/" + cname; });
    if (!named) continue;
    if (docker::label_of(c, kLabelEnclave) != enclave_id || docker::label_of(c, kLabelName) != name) {
      return nullptr;
    }
    if (docker::str_at(c, "Image").starts_with("sha256:")) return nullptr;
    const std::string state = docker::str_at(c, "State");
    if (state == "created" || state == "running" || state == "paused" || state == "restarting") return &c;
    // "Exited (137) 2 minutes ago"
    const std::string status = docker::str_at(c, "Status");
    const auto open = status.find('(');
    if (state == "exited" && open != std::string::npos && open + 1 < status.size() &&
        std::isdigit(static_cast<unsigned char>(status[open + 1])) != 0) {
      return &c;
    }
    return nullptr;
  }
  return nullptr;
}

}  // namespace

Result<std::vector<ServiceInfo>> DockerBackend::list_services(std::string_view enclave_id) {
  MODHOST_ASSIGN_OR_RETURN(Enclave e, impl_->resolve_enclave(enclave_id, false));
  MODHOST_ASSIGN_OR_RETURN(std::shared_ptr<const json::value> list,
                           impl_->cached_json(impl_->containers_path(e.info.id),
                                              "cannot list the services of enclave '" + e.info.name + "'"));
  std::vector<ServiceInfo> out;
  if (const json::array* arr = list->if_array()) {
    for (const auto& c : *arr) {
      // Services and module containers; never the artifact helpers.
      std::string kind;
      if (const json::value* l = docker::member(c, "Labels"); l && l->is_object()) {
        if (const json::value* k = l->as_object().if_contains(kLabelKind); k && k->is_string()) {
          kind = std::string(k->as_string());
        }
      }
      if (kind != "service" && kind != "module") continue;
      // The listing carries all a ServiceInfo needs: no inspect per container.
      out.push_back(impl_->service_info(inspect_shape(c), e));
    }
  }
  std::sort(out.begin(), out.end(),
            [](const ServiceInfo& a, const ServiceInfo& b) { return a.name < b.name; });
  return out;
}

Result<ServiceInfo> DockerBackend::inspect_service(std::string_view enclave_id, std::string_view name) {
  // From a current cached listing when its entry holds all an inspect would
  // give; an inspect otherwise. Never fetches a listing for it.
  MODHOST_ASSIGN_OR_RETURN(Enclave e, impl_->resolve_enclave(enclave_id, false));
  if (auto listed = impl_->cache->find(impl_->containers_path(e.info.id))) {
    if (const json::value* c =
            listed_as_inspected(*listed, Impl::container_name(e.info.id, name), e.info.id, name)) {
      return impl_->service_info(inspect_shape(*c), e);
    }
  }
  MODHOST_ASSIGN_OR_RETURN(ServiceRef s, impl_->resolve_service(e.info.id, name));
  return impl_->service_info(s.inspect, s.enclave);
}

Status DockerBackend::remove_service(std::string_view enclave_id, std::string_view name) {
  MODHOST_ASSIGN_OR_RETURN(ServiceRef s, impl_->resolve_service(enclave_id, name));
  if (auto st = impl_->remove_container(s.container_id); !st.ok()) {
    return st.error().context("failed to remove service '" + s.name + "' in enclave '" + s.enclave.info.name +
                              "'");
  }
  impl_->log->info("removed service '{}' in enclave '{}'", s.name, s.enclave.info.name);
  return ok_status();
}

Status DockerBackend::stop_service(std::string_view enclave_id, std::string_view name, int grace_seconds) {
  grace_seconds = std::max(0, grace_seconds);
  return impl_->simple_action(enclave_id, name, "stop", "/stop?t=" + std::to_string(grace_seconds),
                              impl_->options.request_timeout + std::chrono::seconds(grace_seconds));
}

Status DockerBackend::start_service(std::string_view enclave_id, std::string_view name) {
  return impl_->simple_action(enclave_id, name, "start", "/start", std::nullopt);
}

Status DockerBackend::restart_service(std::string_view enclave_id, std::string_view name) {
  return impl_->simple_action(enclave_id, name, "restart", "/restart?t=10", std::nullopt);
}

Status DockerBackend::pause_service(std::string_view enclave_id, std::string_view name) {
  return impl_->simple_action(enclave_id, name, "pause", "/pause", std::nullopt);
}

Status DockerBackend::unpause_service(std::string_view enclave_id, std::string_view name) {
  return impl_->simple_action(enclave_id, name, "unpause", "/unpause", std::nullopt);
}

Status DockerBackend::kill_service(std::string_view enclave_id, std::string_view name, int signal) {
  if (signal <= 0 || signal > 64) {
    return Error(ErrorCode::invalid_argument, "bad signal number " + std::to_string(signal));
  }
  return impl_->simple_action(enclave_id, name, "kill", "/kill?signal=" + std::to_string(signal),
                              std::nullopt);
}

Result<ExecResult> DockerBackend::exec(std::string_view enclave_id, std::string_view name,
                                       const std::vector<std::string>& argv) {
  MODHOST_ASSIGN_OR_RETURN(ServiceRef s, impl_->resolve_service(enclave_id, name));
  return impl_->run_exec(s, argv, std::nullopt);
}

Status DockerBackend::logs(std::string_view enclave_id, std::string_view name, bool follow,
                           const LogSink& sink) {
  MODHOST_ASSIGN_OR_RETURN(ServiceRef s, impl_->resolve_service(enclave_id, name));
  const json::value* config = docker::member(s.inspect, "Config");
  const bool tty = config != nullptr && docker::bool_at(*config, "Tty");
  docker::StreamDemuxer demux([&sink](int, std::string_view payload) { return sink(payload); });
  docker::ChunkSink chunk_sink = [&](std::string_view chunk) {
    return tty ? sink(chunk) : demux.feed(chunk);
  };
  MODHOST_ASSIGN_OR_RETURN(
      HttpResponse r,
      impl_->client.stream(
          Method::get,
          std::string(docker::kApiPrefix) + "/containers/" + s.container_id + "/logs?stdout=1&stderr=1" +
              (follow ? "&follow=1" : ""),
          {}, chunk_sink,
          follow ? std::nullopt : std::optional<milliseconds>(impl_->options.request_timeout)));
  if (!is_2xx(r)) {
    return docker::engine_error(
        r, "failed to read the logs of service '" + s.name + "' in enclave '" + s.enclave.info.name + "'");
  }
  return ok_status();
}

Status DockerBackend::wait_ready(std::string_view enclave_id, std::string_view name,
                                 const ReadinessCheck& check) {
  MODHOST_ASSIGN_OR_RETURN(ServiceRef s, impl_->resolve_service(enclave_id, name));
  const std::string ctx = "service '" + s.name + "' in enclave '" + s.enclave.info.name + "'";
  ReadinessProbes probes;
  probes.current = [&]() -> Result<ServiceInfo> {
    MODHOST_ASSIGN_OR_RETURN(json::value state,
                             impl_->api_json(Method::get, "/containers/" + s.container_id + "/json", ctx));
    return impl_->service_info(state, s.enclave);
  };
  probes.tcp = [](std::uint16_t port, milliseconds timeout) {
    return docker::local_tcp_probe(port, timeout);
  };
  probes.http = [](std::uint16_t port, const std::string& path,
                   milliseconds timeout) -> Result<std::pair<int, std::string>> {
    MODHOST_ASSIGN_OR_RETURN(HttpResponse r, docker::local_http_get(port, path, timeout));
    return std::pair<int, std::string>{static_cast<int>(r.status), std::move(r.body)};
  };
  probes.exec = [&](const std::vector<std::string>& argv, milliseconds timeout) {
    return impl_->run_exec(s, argv, timeout);
  };
  probes.log = [&](const std::string& line) { impl_->log->debug("{}", line); };
  probes.last_output = [&] { return impl_->last_output(s.container_id); };
  return wait_until_ready(ctx, check, impl_->service_info(s.inspect, s.enclave), probes);
}

// ---------------------------------------------------------------------------
// Images and network hooks

Status DockerBackend::Impl::check_image_load(const HttpResponse& r, const std::string& context) const {
  if (!is_2xx(r)) return docker::engine_error(r, context);
  std::string_view rest = r.body;
  while (!rest.empty()) {
    auto nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
    if (line.empty()) continue;
    boost::system::error_code ec;
    json::value v = json::parse(line, ec);
    if (ec) continue;
    if (const std::string err = docker::str_at(v, "error"); !err.empty()) {
      return Error(ErrorCode::invalid_argument, context + ": " + err);
    }
    if (std::string msg = docker::str_at(v, "stream"); !msg.empty()) {
      while (!msg.empty() && msg.back() == '\n') msg.pop_back();
      log->info("{}", msg);
    }
  }
  return ok_status();
}

Status DockerBackend::Impl::load_archive_bytes(std::string_view bytes, std::string_view what) {
  MODHOST_ASSIGN_OR_RETURN(
      HttpResponse r, api(Method::post, "/images/load?quiet=1", bytes, std::nullopt, "application/x-tar"));
  return check_image_load(r, "failed to load " + std::string(what));
}

Status DockerBackend::load_image(std::string_view archive_path) {
  MODHOST_ASSIGN_OR_RETURN(
      HttpResponse r,
      impl_->client.upload_file(Method::post, std::string(docker::kApiPrefix) + "/images/load?quiet=1",
                                std::string(archive_path), "application/x-tar"));
  return impl_->check_image_load(r, "failed to load image archive '" + std::string(archive_path) + "'");
}

Result<bool> DockerBackend::image_exists(std::string_view reference) {
  if (!valid_reference(reference)) {
    return Error(ErrorCode::invalid_argument, "bad image reference '" + std::string(reference) + "'");
  }
  MODHOST_ASSIGN_OR_RETURN(HttpResponse r,
                           impl_->api(Method::get, "/images/" + std::string(reference) + "/json"));
  if (r.status == 404) return false;
  if (!is_2xx(r)) return docker::engine_error(r, "cannot inspect image '" + std::string(reference) + "'");
  return true;
}

Status DockerBackend::events(std::string_view enclave_id, bool follow, const EventSink& sink) {
  MODHOST_ASSIGN_OR_RETURN(Enclave e, impl_->resolve_enclave(enclave_id, false));
  const auto created = docker::parse_rfc3339(e.info.created);
  const auto since = created ? std::chrono::system_clock::to_time_t(*created) - 1 : 0;
  const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now()) + 1;
  json::array labels{json::value(std::string(kLabelApp) + "=modhost"),
                     json::value(std::string(kLabelEnclave) + "=" + e.info.id)};
  if (!impl_->options.scope.empty())
    labels.emplace_back(std::string(kLabelScope) + "=" + impl_->options.scope);
  json::object f{{"type", json::array{"container"}}, {"label", std::move(labels)}};
  std::string target = std::string(docker::kApiPrefix) + "/events?since=" + std::to_string(since) +
                       (follow ? std::string() : "&until=" + std::to_string(now)) +
                       "&filters=" + url_encode(json::serialize(f));
  static const std::set<std::string> kActions = {"create", "start",   "kill",    "die", "stop",
                                                 "pause",  "unpause", "restart", "oom", "destroy"};
  // One JSON object per line; a chunk may end inside one.
  std::string pending;
  bool stopped = false;
  docker::ChunkSink chunk_sink = [&](std::string_view chunk) {
    pending.append(chunk);
    for (std::size_t nl; (nl = pending.find('\n')) != std::string::npos;) {
      std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      boost::system::error_code ec;
      json::value v = json::parse(line, ec);
      if (ec || !v.is_object()) continue;
      const std::string action = docker::str_at(v, "Action");
      if (!kActions.contains(action)) continue;
      EnclaveEvent ev;
      ev.action = action;
      ev.time_ns = docker::int_at(v, "timeNano");
      bool holder = false;
      if (const json::value* actor = docker::member(v, "Actor")) {
        if (const json::value* attrs = docker::member(*actor, "Attributes"); attrs && attrs->is_object()) {
          for (const auto& [k, x] : attrs->get_object()) {
            if (!x.is_string()) continue;
            if (k == kLabelName) ev.subject = std::string(x.get_string());
            if (k == kLabelKind) ev.kind = std::string(x.get_string());
            if (k == docker::kLabelRole) holder = true;
            if (k == "exitCode" || k == "signal") ev.attributes[std::string(k)] = std::string(x.get_string());
          }
        }
      }
      // The containers that hold artifacts are the backend's own business.
      if (holder || ev.kind == "artifact") continue;
      if (!sink(ev)) {
        stopped = true;
        return false;
      }
    }
    return true;
  };
  MODHOST_ASSIGN_OR_RETURN(
      HttpResponse r,
      impl_->client.stream(
          Method::get, target, {}, chunk_sink,
          follow ? std::nullopt : std::optional<milliseconds>(impl_->options.request_timeout)));
  if (!is_2xx(r) && !stopped)
    return docker::engine_error(r, "cannot read the events of enclave '" + e.info.name + "'");
  return ok_status();
}

Result<ServiceConfig> DockerBackend::service_config(std::string_view enclave_id, std::string_view name) {
  MODHOST_ASSIGN_OR_RETURN(ServiceRef s, impl_->resolve_service(enclave_id, name));
  const json::value* config = docker::member(s.inspect, "Config");
  static const json::value kEmpty;
  return decode_config(docker::label_of(config != nullptr ? *config : kEmpty, docker::kLabelConfig), s.name);
}

Status DockerBackend::copy_to_service(std::string_view enclave_id, std::string_view name,
                                      std::string_view dir, std::string_view tar) {
  MODHOST_ASSIGN_OR_RETURN(ServiceRef s, impl_->resolve_service(enclave_id, name));
  const std::string ctx = "failed to copy files into '" + std::string(dir) + "' of service '" + s.name + "'";
  if (dir.empty() || dir.front() != '/')
    return Error(ErrorCode::invalid_argument, ctx + ": the path must be absolute");
  MODHOST_ASSIGN_OR_RETURN(
      HttpResponse r,
      impl_->api(Method::put, "/containers/" + s.container_id + "/archive?path=" + url_encode(dir),
                 std::string(tar), std::nullopt, "application/x-tar"));
  if (r.status == 404) return Error(ErrorCode::not_found, ctx + ": no such directory in the service");
  if (!is_2xx(r)) return docker::engine_error(r, ctx, ErrorCode::failed_precondition);
  return ok_status();
}

// An engine reached over its unix socket runs its containers on this host.
bool DockerBackend::services_on_this_host() const {
  return impl_->client.address().kind == docker::EngineAddress::Kind::unix_socket;
}

Result<std::optional<int>> DockerBackend::network_namespace_pid(std::string_view enclave_id,
                                                                std::string_view name) {
  MODHOST_ASSIGN_OR_RETURN(ServiceRef s, impl_->resolve_service(enclave_id, name));
  if (impl_->client.address().kind != docker::EngineAddress::Kind::unix_socket) return std::optional<int>();
  const json::value* state = docker::member(s.inspect, "State");
  const auto pid = state != nullptr ? docker::int_at(*state, "Pid") : 0;
  if (pid <= 0) {
    return Error(ErrorCode::failed_precondition,
                 "service '" + s.name + "' in enclave '" + s.enclave.info.name + "' is not running");
  }
  return std::optional<int>(static_cast<int>(pid));
}

}  // namespace modhost::backend
