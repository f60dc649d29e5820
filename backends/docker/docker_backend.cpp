// The Docker backend's engine calls and enclaves (a labelled bridge network
// each) and images; services are in docker_services.cpp, exec, logs,
// readiness and events in docker_exec.cpp, files in docker_artifacts.cpp.
#include "backends/docker/docker_backend.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <thread>
#include <utility>

#include "backends/config_json.hpp"
#include "backends/docker/docker_impl.hpp"
#include "backends/docker/mux_stream.hpp"
#include "backends/readiness.hpp"

namespace modhost::backend {

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
      Enclave e = docker::enclave_from_network(net);
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
  Enclave e = docker::enclave_from_network(inspected.value());
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
  if (!docker::valid_reference(reference)) {
    return Error(ErrorCode::invalid_argument, "bad image reference '" + std::string(reference) + "'");
  }
  MODHOST_ASSIGN_OR_RETURN(HttpResponse r,
                           impl_->api(Method::get, "/images/" + std::string(reference) + "/json"));
  if (r.status == 404) return false;
  if (!is_2xx(r)) return docker::engine_error(r, "cannot inspect image '" + std::string(reference) + "'");
  return true;
}

// An engine reached over its unix socket runs its containers on this host.
bool DockerBackend::services_on_this_host() const {
  return impl_->client.address().kind == docker::EngineAddress::Kind::unix_socket;
}

}  // namespace modhost::backend
