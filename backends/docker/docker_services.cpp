// The Docker backend's services: a container each, named and labelled for
// its enclave, on the enclave's network, its ports published on loopback;
// found again by listing (one call for many) or inspect, and their
// lifecycle (stop, start, restart, pause, kill, remove).
#include <algorithm>
#include <cctype>
#include <charconv>
#include <map>
#include <set>
#include <thread>
#include <utility>

#include "backends/config_json.hpp"
#include "backends/confinement.hpp"
#include "backends/docker/docker_backend.hpp"
#include "backends/docker/docker_impl.hpp"
#include "backends/docker/mux_stream.hpp"
#include "backends/readiness.hpp"

namespace modhost::backend {

namespace {

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
// Services

Result<ServiceInfo> DockerBackend::add_service(std::string_view enclave_id, const ServiceConfig& config) {
  MODHOST_ASSIGN_OR_RETURN(Enclave e, impl_->resolve_enclave(enclave_id, true));
  const std::string ctx = "failed to start service '" + config.name + "' in enclave '" + e.info.name + "'";
  if (!docker::valid_name(config.name)) {
    return Error(
        ErrorCode::invalid_argument,
        ctx + ": a name has 1-63 letters, digits, '.', '_' or '-' and starts with a letter or digit");
  }
  if (!docker::valid_reference(config.image)) {
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
  auto confined = backend::confinement(config);
  if (!confined.ok()) return Error(ErrorCode::invalid_argument, ctx + ": " + confined.error().message());
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
    const std::string vol = docker::artifact_volume(e.info.id, f.artifact);
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
  if (!config.ports.empty()) labels[docker::kLabelPorts] = docker::encode_ports(config.ports);
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
    exposed[docker::port_key(p)] = json::object{};
    // Published on loopback only, on a free port the engine picks.
    bindings[docker::port_key(p)] = json::array{json::object{{"HostIp", "127.0.0.1"}, {"HostPort", ""}}};
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
  // The engine's own defaults (its seccomp profile, masked paths) unless
  // opted out; no_new_privs too, as the native backend does.
  if (config.privileged) host["Privileged"] = true;
  json::array security;
  if (!confined->seccomp && !config.privileged) security.emplace_back("seccomp=unconfined");
  if (confined->no_new_privs) security.emplace_back("no-new-privileges=true");
  if (!security.empty()) host["SecurityOpt"] = std::move(security);
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
  ServiceInfo info = docker::service_info(inspect, e);
  impl_->log->info("started service '{}' in enclave '{}' ({} at {})", config.name, e.info.name, config.image,
                   info.ip);
  return info;
}

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
      out.push_back(docker::service_info(inspect_shape(c), e));
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
      return docker::service_info(inspect_shape(*c), e);
    }
  }
  MODHOST_ASSIGN_OR_RETURN(ServiceRef s, impl_->resolve_service(e.info.id, name));
  return docker::service_info(s.inspect, s.enclave);
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

Result<ServiceConfig> DockerBackend::service_config(std::string_view enclave_id, std::string_view name) {
  MODHOST_ASSIGN_OR_RETURN(ServiceRef s, impl_->resolve_service(enclave_id, name));
  const json::value* config = docker::member(s.inspect, "Config");
  static const json::value kEmpty;
  return decode_config(docker::label_of(config != nullptr ? *config : kEmpty, docker::kLabelConfig), s.name);
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
