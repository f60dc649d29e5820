// The engine: resolves the container backend and hands modules a context on
// their enclave. Front ends (the CLI, later the daemon) sit on top of it.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "backends/backend.hpp"
#include "engine/api.hpp"
#include "modhost/enclave_context.hpp"

namespace modhost::engine {

class NetworkControl;
class ModuleRegistry;

struct EngineOptions {
  // "auto" (Docker when its socket answers, else native when root), "docker" or "native".
  std::string backend = "auto";
  // Docker engine address; empty: $DOCKER_HOST, else unix:///var/run/docker.sock.
  std::string docker_host;
  // The modules a module may run by builtin:NAME (EnclaveContext::execute_module);
  // null: none.
  const ModuleRegistry* builtins = nullptr;
  // Label scope of every resource (test suites sharing one engine); empty: $MODHOST_SCOPE.
  std::string scope;
};

// Thread-safe: the daemon serves many clients from one engine.
class Engine final : public EngineApi {
 public:
  // No I/O: the backend is resolved on first use.
  static Result<std::unique_ptr<Engine>> create(const EngineOptions& options);
  ~Engine() override;
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // The backend, connected. A failure names every backend tried and how to
  // make one available.
  Result<backend::Backend*> backend() override;
  Status remove_enclave(const std::string& enclave_id, bool force) override;
  Result<backend::CleanReport> clean(bool all) override;
  Status timeline(const std::string& enclave_id, bool follow, const TimelineSink& sink) override;
  // In module_run.cpp.
  ModuleRunOutcome run_module(const ModuleRunRequest& request, const ModuleRunObserver& observer,
                              CancelToken& cancel) override;
  // In loaded_modules.cpp. Modules loaded here live as long as this engine.
  Result<LoadedModule> load_module(const ModuleRunRequest& request) override;
  Result<std::string> execute_loaded(const std::string& id, const std::string& params,
                                     std::optional<std::chrono::milliseconds> timeout) override;
  Status unload_module(const std::string& id) override;
  Result<std::vector<LoadedModule>> loaded_modules(const std::string& enclave_id) override;
  // In starlark_run.cpp.
  StarlarkRunOutcome run_starlark(const StarlarkRunRequest& request, const StarlarkRunSink& sink,
                                  CancelToken& cancel) override;

  // An enclave by id, id prefix or name.
  Result<backend::EnclaveInfo> find_enclave(std::string_view id_or_name);

  // Network control (partitions) over the backend.
  Result<NetworkControl*> network();

  // What a module sees of its enclave: every operation is scoped to it.
  std::unique_ptr<EnclaveContext> enclave_context(const std::string& enclave_id,
                                                  const std::string& module_name);

 private:
  explicit Engine(EngineOptions options);
  EngineOptions options_;
  std::mutex mutex_;  // guards the lazy making of backend_ and network_
  std::unique_ptr<backend::Backend> backend_;
  std::unique_ptr<NetworkControl> network_;
  struct Loaded;
  std::unique_ptr<Loaded> loaded_;  // modules kept loaded, by id
};

}  // namespace modhost::engine
