#include "engine/engine.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdlib>

#include "backends/docker/docker_backend.hpp"
#include "backends/image/image.hpp"
#include "backends/native/native_backend.hpp"
#include "engine/container_module.hpp"
#include "engine/logging.hpp"
#include "engine/module_manager.hpp"
#include "engine/network_control.hpp"

namespace modhost::engine {
namespace {

// The same operations a module has in-process and over the enclave API,
// each bound to one enclave.
class BackendEnclaveContext final : public EnclaveContext {
 public:
  BackendEnclaveContext(backend::Backend& b, NetworkControl& network, const ModuleRegistry* builtins,
                        std::string enclave_id, std::string module_name)
      : backend_(b),
        network_(network),
        builtins_(builtins),
        enclave_id_(std::move(enclave_id)),
        log_(logger("module." + module_name)) {}

  std::string enclave_id() const override { return enclave_id_; }

  void log(LogLevel level, std::string_view message) override {
    switch (level) {
      case LogLevel::trace:
        log_->trace("{}", message);
        break;
      case LogLevel::debug:
        log_->debug("{}", message);
        break;
      case LogLevel::info:
        log_->info("{}", message);
        break;
      case LogLevel::warn:
        log_->warn("{}", message);
        break;
      case LogLevel::error:
        log_->error("{}", message);
        break;
    }
  }

  Result<ServiceInfo> add_service(const ServiceConfig& config) override {
    return backend_.add_service(enclave_id_, config);
  }
  Status remove_service(std::string_view name) override { return backend_.remove_service(enclave_id_, name); }
  // The enclave's services; module containers are the engine's, not the module's.
  Result<std::vector<ServiceInfo>> list_services() override {
    MODHOST_ASSIGN_OR_RETURN(std::vector<ServiceInfo> all, backend_.list_services(enclave_id_));
    std::erase_if(all, [](const ServiceInfo& s) {
      auto k = s.labels.find(backend::kLabelKind);
      return k != s.labels.end() && k->second == "module";
    });
    return all;
  }
  Result<ServiceInfo> inspect_service(std::string_view name) override {
    return backend_.inspect_service(enclave_id_, name);
  }
  Result<ExecResult> exec(std::string_view service, const std::vector<std::string>& argv) override {
    return backend_.exec(enclave_id_, service, argv);
  }
  Status stop_service(std::string_view name, int grace_seconds) override {
    return backend_.stop_service(enclave_id_, name, grace_seconds);
  }
  Status start_service(std::string_view name) override { return backend_.start_service(enclave_id_, name); }
  Status restart_service(std::string_view name) override {
    return backend_.restart_service(enclave_id_, name);
  }
  Status pause_service(std::string_view name) override { return backend_.pause_service(enclave_id_, name); }
  Status unpause_service(std::string_view name) override {
    return backend_.unpause_service(enclave_id_, name);
  }
  Status kill_service(std::string_view name, int signal) override {
    return backend_.kill_service(enclave_id_, name, signal);
  }
  Result<std::string> service_logs(std::string_view name) override {
    std::string out;
    MODHOST_TRY(backend_.logs(enclave_id_, name, false, [&](std::string_view chunk) {
      out.append(chunk);
      return true;
    }));
    return out;
  }
  Status wait_ready(std::string_view name, const ReadinessCheck& check) override {
    return backend_.wait_ready(enclave_id_, name, check);
  }
  Result<ServiceConfig> service_config(std::string_view name) override {
    return backend_.service_config(enclave_id_, name);
  }
  Status copy_to_service(std::string_view name, std::string_view dir, std::string_view tar) override {
    return backend_.copy_to_service(enclave_id_, name, dir, tar);
  }
  Status write_file(std::string_view name, std::string_view path, std::string_view content,
                    std::uint32_t mode) override {
    const auto slash = path.rfind('/');
    if (path.empty() || path.front() != '/' || slash == path.size() - 1) {
      return Error(ErrorCode::invalid_argument, "the file path '" + std::string(path) + "' must be absolute");
    }
    image::TarWriter tar;
    tar.add_file(path.substr(slash + 1), content, mode);
    return backend_.copy_to_service(enclave_id_, name, slash == 0 ? "/" : path.substr(0, slash),
                                    tar.finish());
  }
  Result<std::string> download_artifact(std::string_view name) override {
    return backend_.download_artifact(enclave_id_, name);
  }
  Status store_artifact(std::string_view name, std::string_view tgz) override {
    MODHOST_TRY(backend_.store_artifact(enclave_id_, name, tgz));
    return ok_status();
  }
  Status store_from_service(std::string_view service, std::string_view path, std::string_view name) override {
    MODHOST_TRY(backend_.store_from_service(enclave_id_, service, path, name));
    return ok_status();
  }
  Result<std::string> execute_module(std::string_view reference, std::string_view load_params,
                                     std::string_view execute_params) override {
    MODHOST_ASSIGN_OR_RETURN(ModuleReference ref, parse_module_reference(reference));
    if (ref.kind == ModuleReference::Kind::image) {
      // A module container of its own in the same enclave, answered by a
      // context of its own; removed once it has run.
      BackendEnclaveContext inner(backend_, network_, builtins_, enclave_id_, ref.value);
      MODHOST_ASSIGN_OR_RETURN(
          std::unique_ptr<ModuleInstance> module,
          start_container_module(backend_, enclave_id_, ref.value, load_params, inner, {}));
      return module->execute(inner, execute_params, std::nullopt);
    }
    ModuleManager manager(registry_or_none(builtins_));
    MODHOST_ASSIGN_OR_RETURN(std::unique_ptr<ModuleInstance> module, manager.load(ref, load_params, {}));
    BackendEnclaveContext inner(backend_, network_, builtins_, enclave_id_, module->metadata().name);
    return module->execute(inner, execute_params, std::nullopt);
  }
  Status repartition(const NetworkPartitioning& plan) override {
    MODHOST_ASSIGN_OR_RETURN(PartitionApplied applied, network_.repartition(enclave_id_, plan));
    logger("engine")->debug("partitioning of enclave {}: {} rules, {} namespaces changed", enclave_id_,
                            applied.rules, applied.namespaces);
    return ok_status();
  }

 private:
  backend::Backend& backend_;
  NetworkControl& network_;
  const ModuleRegistry* builtins_;
  std::string enclave_id_;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace

// (constructor and destructor in loaded_modules.cpp, where Loaded is complete)

Result<std::unique_ptr<Engine>> Engine::create(const EngineOptions& options) {
  if (options.backend != "auto" && options.backend != "docker" && options.backend != "native") {
    return Error(ErrorCode::invalid_argument,
                 "unknown backend '" + options.backend + "': use auto, docker or native");
  }
  return std::unique_ptr<Engine>(new Engine(options));
}

Result<backend::Backend*> Engine::backend() {
  std::lock_guard lock(mutex_);
  if (backend_) return backend_.get();
  std::string scope = options_.scope;
  if (const char* env = std::getenv("MODHOST_SCOPE"); scope.empty() && env && *env) scope = env;
  if (options_.backend == "native") {
    backend::NativeOptions native;
    native.scope = scope;
    MODHOST_ASSIGN_OR_RETURN(backend_, backend::NativeBackend::create(native));
    logger("engine")->debug("using the native backend");
    return backend_.get();
  }
  backend::DockerOptions docker;
  docker.host = options_.docker_host;
  // Confines this engine to resources labelled with the scope: test suites
  // sharing one Docker engine stay out of each other's way.
  docker.scope = scope;
  MODHOST_ASSIGN_OR_RETURN(std::unique_ptr<backend::DockerBackend> d, backend::DockerBackend::create(docker));
  Status ping = d->ping();
  if (!ping.ok()) {
    if (options_.backend == "auto" && options_.docker_host.empty() && ::geteuid() == 0) {
      // No Docker, but root: the native backend needs no engine.
      backend::NativeOptions native;
      native.scope = scope;
      if (auto n = backend::NativeBackend::create(native); n.ok()) {
        logger("engine")->debug("no Docker engine answers; using the native backend");
        backend_ = std::move(n).value();
        return backend_.get();
      }
    }
    return Error(
        ErrorCode::unavailable,
        "no container backend is available: " + ping.error().message() +
            (options_.backend == "auto" ? "; or, as root, use --backend native (no engine needed)" : ""));
  }
  logger("engine")->debug("using the Docker backend at {}", d->host());
  backend_ = std::move(d);
  return backend_.get();
}

Result<backend::EnclaveInfo> Engine::find_enclave(std::string_view id_or_name) {
  MODHOST_ASSIGN_OR_RETURN(backend::Backend * b, backend());
  return b->find_enclave(id_or_name);
}

Result<NetworkControl*> Engine::network() {
  MODHOST_ASSIGN_OR_RETURN(backend::Backend * b, backend());
  std::lock_guard lock(mutex_);
  if (network_) return network_.get();
  network_ = std::make_unique<NetworkControl>(*b, NetworkControlOptions{});
  return network_.get();
}

Status Engine::remove_enclave(const std::string& enclave_id, bool force) {
  MODHOST_ASSIGN_OR_RETURN(backend::Backend * b, backend());
  // Modules loaded into it go first (their containers with them).
  if (auto loaded = loaded_modules(enclave_id); loaded.ok()) {
    for (const auto& m : loaded.value()) (void)unload_module(m.id);
  }
  MODHOST_TRY(b->remove_enclave(enclave_id, force));
  if (auto net = network(); net.ok()) net.value()->forget(enclave_id);
  return ok_status();
}

Result<backend::CleanReport> Engine::clean(bool all) {
  MODHOST_ASSIGN_OR_RETURN(backend::Backend * b, backend());
  MODHOST_ASSIGN_OR_RETURN(NetworkControl * net, network());
  // Partitions left by runs that are gone first: their enclaves may be among
  // those removed next.
  MODHOST_ASSIGN_OR_RETURN(std::vector<std::string> healed, net->clean_stale());
  auto before = b->list_enclaves();
  MODHOST_ASSIGN_OR_RETURN(backend::CleanReport report, b->clean(all));
  // What network control kept of the enclaves that went (timeline, state).
  if (before.ok()) {
    for (const auto& e : before.value()) {
      if (!b->find_enclave(e.id).ok()) net->forget(e.id);
    }
  }
  report.removed.insert(report.removed.begin(), healed.begin(), healed.end());
  // And the network state of enclaves that went just now.
  if (auto gone = net->clean_stale(); gone.ok()) {
    report.removed.insert(report.removed.end(), gone->begin(), gone->end());
  }
  return report;
}

Status Engine::timeline(const std::string& enclave_id, bool follow, const TimelineSink& sink) {
  return enclave_timeline(*this, enclave_id, follow, sink);
}

std::unique_ptr<EnclaveContext> Engine::enclave_context(const std::string& enclave_id,
                                                        const std::string& module_name) {
  auto network = this->network();
  return std::make_unique<BackendEnclaveContext>(*backend_, *network.value(), options_.builtins, enclave_id,
                                                 module_name);
}

}  // namespace modhost::engine
