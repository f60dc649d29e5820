#include "modhost/client.hpp"

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>

#include "daemon/client.hpp"
#include "engine/builtins.hpp"
#include "engine/engine.hpp"
#include "engine/logging.hpp"
#include "starlark/interpret.hpp"

namespace modhost {
namespace {

namespace json = boost::json;

json::array to_array(const std::vector<std::string>& v) {
  json::array a;
  for (const auto& s : v) a.emplace_back(s);
  return a;
}

json::object connection_json(const Connection& c) {
  json::object o;
  if (c.blocked) o["blocked"] = true;
  if (c.loss_percent > 0) o["loss"] = c.loss_percent;
  if (c.delay.count() > 0) o["delay_ms"] = static_cast<double>(c.delay.count()) / 1000.0;
  if (c.jitter.count() > 0) o["jitter_ms"] = static_cast<double>(c.jitter.count()) / 1000.0;
  if (c.correlation_percent > 0) o["correlation"] = c.correlation_percent;
  if (c.distribution == Connection::Distribution::normal) o["distribution"] = "normal";
  if (c.rate_bytes_per_second > 0) o["rate"] = c.rate_bytes_per_second;
  return o;
}

}  // namespace

std::string ChaosOptions::to_json() const {
  json::object o{{"action", action}};
  if (!services.empty()) o["services"] = to_array(services);
  if (!regex.empty()) o["regex"] = regex;
  if (!labels.empty()) {
    json::object l;
    for (const auto& [k, v] : labels) l[k] = v;
    o["labels"] = std::move(l);
  }
  if (signal) o["signal"] = *signal;
  if (grace_seconds) o["grace_seconds"] = *grace_seconds;
  if (pause_seconds) o["pause_seconds"] = *pause_seconds;
  if (count) o["count"] = *count;
  if (percentage) o["percentage"] = *percentage;
  if (interval_seconds) o["interval_seconds"] = *interval_seconds;
  if (duration_seconds) o["duration_seconds"] = *duration_seconds;
  if (repeat) o["repeat"] = *repeat;
  if (seed) o["seed"] = *seed;
  if (dry_run) o["dry_run"] = true;
  return json::serialize(o);
}

std::string PartitionOptions::to_json() const {
  json::object parts;
  for (const auto& [name, members] : partitions) parts[name] = to_array(members);
  json::array conns;
  for (const PartitionConnection& c : connections) {
    json::object o = connection_json(c.connection);
    o["between"] = json::array{json::value(c.a), json::value(c.b)};
    conns.push_back(std::move(o));
  }
  json::object o{{"partitions", std::move(parts)}, {"connections", std::move(conns)}};
  if (default_connection.shaped()) o["default"] = connection_json(default_connection);
  if (duration_seconds) o["duration_seconds"] = *duration_seconds;
  if (dry_run) o["dry_run"] = true;
  return json::serialize(o);
}

MutationOptions MutationOptions::exec(std::vector<std::string> services, std::vector<std::string> command) {
  return {json::serialize(
      json::object{{"action", "exec"}, {"services", to_array(services)}, {"command", to_array(command)}})};
}

MutationOptions MutationOptions::write_file(std::vector<std::string> services, std::string path,
                                            std::string content) {
  return {json::serialize(json::object{
      {"action", "write_file"}, {"services", to_array(services)}, {"path", path}, {"content", content}})};
}

MutationOptions MutationOptions::set_env(std::vector<std::string> services,
                                         std::map<std::string, std::string> env) {
  json::object e;
  for (const auto& [k, v] : env) e[k] = v;
  return {json::serialize(
      json::object{{"action", "update"}, {"services", to_array(services)}, {"env", std::move(e)}})};
}

MutationOptions MutationOptions::scale(std::string service, int replicas) {
  return {json::serialize(json::object{{"action", "scale"}, {"service", service}, {"replicas", replicas}})};
}

// --- Client ---

struct Client::Impl {
  std::unique_ptr<engine::EngineApi> api;  // an engine here, or a daemon's
};

struct Enclave::State {
  std::shared_ptr<Client::Impl> client;
  backend::EnclaveInfo info;
  bool owned = true;

  backend::Backend& backend() { return *client->api->backend().value(); }
};

Client::Client(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;
Client::~Client() = default;

Result<Client> Client::embedded(const ClientOptions& options) {
  engine::init_logging(options.log_level);
  engine::EngineOptions e;
  e.builtins = &builtin_registry();
  e.backend = options.backend;
  e.scope = options.scope;
  MODHOST_ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> engine, engine::Engine::create(e));
  auto impl = std::make_shared<Impl>();
  impl->api = std::move(engine);
  return Client(std::move(impl));
}

Result<Client> Client::connect(const std::string& address, const ConnectOptions& options) {
  MODHOST_ASSIGN_OR_RETURN(std::unique_ptr<daemon::RemoteEngine> remote,
                           daemon::connect(daemon::Endpoint{address, options.tls_ca_file, options.token},
                                           std::chrono::milliseconds(3000)));
  auto impl = std::make_shared<Impl>();
  impl->api = std::move(remote);
  return Client(std::move(impl));
}

Result<Client> Client::from_environment(const ClientOptions& options) {
  auto env = [](const char* name) {
    const char* v = std::getenv(name);
    return std::string(v ? v : "");
  };
  if (std::string host = env("MODHOST_HOST"); !host.empty()) {
    engine::init_logging(options.log_level);
    return connect(host, ConnectOptions{env("MODHOST_TLS_CA"), env("MODHOST_TOKEN")});
  }
  return embedded(options);
}

Status Client::ping() {
  MODHOST_ASSIGN_OR_RETURN(backend::Backend * b, impl_->api->backend());
  (void)b;
  return ok_status();
}

Result<Enclave> Client::create_enclave(std::string_view name) {
  MODHOST_ASSIGN_OR_RETURN(backend::Backend * b, impl_->api->backend());
  std::string n(name);
  if (n.empty()) {
    std::random_device rd;
    n = "enclave-" + std::to_string(rd() % 1000000);
  }
  MODHOST_ASSIGN_OR_RETURN(backend::EnclaveInfo info, b->create_enclave(n));
  auto state = std::make_unique<Enclave::State>();
  state->client = impl_;
  state->info = std::move(info);
  return Enclave(std::move(state));
}

Result<Enclave> Client::open_enclave(std::string_view id_or_name) {
  MODHOST_ASSIGN_OR_RETURN(backend::Backend * b, impl_->api->backend());
  MODHOST_ASSIGN_OR_RETURN(backend::EnclaveInfo info, b->find_enclave(id_or_name));
  auto state = std::make_unique<Enclave::State>();
  state->client = impl_;
  state->info = std::move(info);
  state->owned = false;
  return Enclave(std::move(state));
}

// --- Enclave ---

Enclave::Enclave(std::unique_ptr<State> state) : state_(std::move(state)) {}
Enclave::Enclave(Enclave&&) noexcept = default;
Enclave& Enclave::operator=(Enclave&&) noexcept = default;

Enclave::~Enclave() {
  if (!state_ || !state_->owned) return;
  (void)state_->client->api->remove_enclave(state_->info.id, true);
}

const std::string& Enclave::id() const { return state_->info.id; }
const std::string& Enclave::name() const { return state_->info.name; }
const std::string& Enclave::subnet() const { return state_->info.subnet; }
void Enclave::release() { state_->owned = false; }

Result<ServiceInfo> Enclave::add_service(const ServiceConfig& config) {
  return state_->backend().add_service(state_->info.id, config);
}
Status Enclave::remove_service(std::string_view name) {
  return state_->backend().remove_service(state_->info.id, name);
}
Result<ServiceInfo> Enclave::service(std::string_view name) {
  return state_->backend().inspect_service(state_->info.id, name);
}
Result<std::vector<ServiceInfo>> Enclave::services() {
  MODHOST_ASSIGN_OR_RETURN(std::vector<ServiceInfo> all, state_->backend().list_services(state_->info.id));
  // The enclave's services; module containers are the engine's.
  std::erase_if(all, [](const ServiceInfo& s) {
    auto k = s.labels.find(backend::kLabelKind);
    return k != s.labels.end() && k->second == "module";
  });
  return all;
}
Result<ExecResult> Enclave::exec(std::string_view service, const std::vector<std::string>& argv) {
  return state_->backend().exec(state_->info.id, service, argv);
}
Status Enclave::wait_ready(std::string_view service, const ReadinessCheck& check) {
  return state_->backend().wait_ready(state_->info.id, service, check);
}
Result<std::string> Enclave::logs(std::string_view service) {
  std::string out;
  MODHOST_TRY(state_->backend().logs(state_->info.id, service, false, [&](std::string_view chunk) {
    out.append(chunk);
    return true;
  }));
  return out;
}

Result<std::string> Enclave::run_module(std::string_view module, std::string_view execute_params) {
  engine::ModuleRunRequest r;
  r.reference = std::string(module);
  r.execute_params = std::string(execute_params);
  r.enclave_id = state_->info.id;
  r.with_output = false;
  engine::CancelToken cancel;
  return state_->client->api->run_module(r, {}, cancel).result;
}

Result<std::string> Enclave::chaos(const ChaosOptions& options) {
  return run_module("builtin:chaos", options.to_json());
}
Result<std::string> Enclave::partition(const PartitionOptions& options) {
  return run_module("builtin:partition", options.to_json());
}
Status Enclave::heal() {
  MODHOST_TRY(run_module("builtin:partition", R"({"action":"heal"})"));
  return ok_status();
}
Result<std::string> Enclave::mutate(const MutationOptions& options) {
  return run_module("builtin:mutation", options.json);
}

Result<StarlarkResult> Enclave::run_starlark(const std::string& path, const StarlarkOptions& options) {
  starlark::InterpretRequest ir;
  ir.path = path;
  ir.args_json = options.args_json;
  ir.main_file = options.main_file;
  ir.main_function = options.main_function;
  ir.package_dirs = options.package_dirs;
  MODHOST_ASSIGN_OR_RETURN(std::string plan, starlark::interpret(ir));
  engine::StarlarkRunRequest r;
  r.enclave = state_->info.id;
  r.plan_json = std::move(plan);
  r.dry_run = options.dry_run;
  r.parallelism = options.parallelism;
  StarlarkResult result;
  std::mutex mutex;
  auto sink = [&](const engine::StarlarkRunEvent& e) {
    std::lock_guard lock(mutex);
    result.log.push_back(e.text);
  };
  engine::CancelToken cancel;
  engine::StarlarkRunOutcome out = state_->client->api->run_starlark(r, sink, cancel);
  if (!out.status.ok()) return out.status.error();
  result.output_json = out.output_json;
  result.executed = out.executed;
  result.skipped = out.skipped;
  return result;
}

Status Enclave::dump(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Error(ErrorCode::failed_precondition, "cannot create " + dir + ": " + ec.message());
  MODHOST_ASSIGN_OR_RETURN(std::vector<ServiceInfo> all, services());
  for (const ServiceInfo& s : all) {
    std::ofstream(fs::path(dir) / (s.name + ".txt"))
        << "name: " << s.name << "\nid: " << s.id << "\nimage: " << s.image
        << "\nstatus: " << to_string(s.status) << "\nip: " << s.ip << "\n";
    auto l = logs(s.name);
    std::ofstream(fs::path(dir) / (s.name + ".log"))
        << (l.ok() ? l.value() : "(no logs: " + l.error().message() + ")");
  }
  return ok_status();
}

}  // namespace modhost
