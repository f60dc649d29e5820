// What a front end (the CLI, the C++ SDK) asks of an engine, wherever it runs:
// in this process (Engine) or in a daemon reached over the engine API
// (daemon::connect). One interface, so both give the same results.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backends/backend.hpp"
#include "engine/events.hpp"
#include "engine/module.hpp"
#include "modhost/result.hpp"

namespace modhost::engine {

// Now, as RFC 3339 UTC to the second ("2026-11-23T17:40:01Z").
std::string utc_now_rfc3339();

// A module run: load, execute once, unload.
struct ModuleRunRequest {
  std::string reference;  // builtin:NAME, a .so path, or an image
  std::string load_params;
  std::string execute_params;
  // Native modules: the enclave they act on (empty: none). Images: the
  // enclave to start in (empty: a new one, which is kept).
  std::string enclave_id;
  bool isolate = false;
  std::optional<std::chrono::milliseconds> timeout;
  // Empty: 10 s for an isolated runner, 60 s for an image.
  std::optional<std::chrono::milliseconds> start_timeout;
  std::string log_level = "warn";
  bool with_output = true;  // pass a module container's output to the observer
};

struct ModuleRunOutcome {
  ModuleMetadata module;  // name, version, source; empty when it never loaded
  // The enclave the module ran against (an image module's is kept afterwards).
  std::string enclave_id;
  std::string enclave_name;
  Result<std::string> result = Error(ErrorCode::internal, "the module did not run");
};

// Progress lines and a module container's output, as they happen.
struct ModuleRunObserver {
  std::function<void(std::string_view line)> progress;
  std::function<void(std::string_view chunk)> output;
};

// Cancels a module run from any thread (Ctrl-C, a client that went away).
class CancelToken {
 public:
  void cancel();
  bool cancelled() const;
  // The module to cancel; null: none. One cancelled before is cancelled at once.
  void watch(ModuleInstance* module);
  // Called once, on the first cancel (or at once if already cancelled),
  // under the token's lock: keep it short. An empty one removes it.
  void on_cancel(std::function<void()> callback);

 private:
  mutable std::mutex mutex_;
  bool cancelled_ = false;
  ModuleInstance* target_ = nullptr;
  std::function<void()> callback_;
};

// A module loaded into an enclave, kept loaded between executions.
struct LoadedModule {
  std::string id;  // 12 hex chars, unique in the engine
  std::string enclave_id;
  std::string enclave_name;
  std::string reference;
  ModuleMetadata module;
  std::string loaded;  // RFC 3339 UTC
  std::uint64_t executions = 0;
};

// A Starlark run (`modhost run`): a plan the interpreter made, validated
// against the enclave, then executed instruction by instruction.
struct StarlarkRunRequest {
  // The enclave (id, id prefix or name); made when absent. Empty: a new one.
  std::string enclave;
  std::string plan_json;  // docs/starlark-plan.md
  bool dry_run = false;   // validate and list, change nothing
  int parallelism = 4;    // add_services
  bool skip_applied = true;
};

struct StarlarkRunEvent {
  enum class Kind { instruction, result, skipped, progress };
  Kind kind = Kind::progress;
  std::size_t index = 0;  // of the instruction
  std::string text;
};
using StarlarkRunSink = std::function<void(const StarlarkRunEvent&)>;

struct StarlarkRunOutcome {
  std::string enclave_id;  // empty when no enclave was used (a dry run of a new one)
  std::string enclave_name;
  bool enclave_created = false;
  std::string output_json = "null";  // run()'s value, resolved
  std::size_t executed = 0;
  std::size_t skipped = 0;
  Status status = ok_status();
};

class EngineApi {
 public:
  virtual ~EngineApi() = default;

  // The backend (enclaves, services, files, images), connected. A failure
  // says how to make one available.
  virtual Result<backend::Backend*> backend() = 0;
  // Removes an enclave and what network control kept of it.
  virtual Status remove_enclave(const std::string& enclave_id, bool force) = 0;
  // Heals partitions whose run is gone, then removes stopped enclaves (or
  // all) and anything half-made.
  virtual Result<backend::CleanReport> clean(bool all) = 0;
  // The enclave's timeline (container events and network control actions).
  virtual Status timeline(const std::string& enclave_id, bool follow, const TimelineSink& sink) = 0;
  virtual ModuleRunOutcome run_module(const ModuleRunRequest& request, const ModuleRunObserver& observer,
                                      CancelToken& cancel) = 0;

  // Loads a module into an enclave (`request.enclave_id` required; its
  // execute params unused) and keeps it loaded: an image as a running module
  // container, a native module in the engine (or its runner).
  virtual Result<LoadedModule> load_module(const ModuleRunRequest& request) = 0;
  // Executes a loaded module once; its result.
  virtual Result<std::string> execute_loaded(const std::string& id, const std::string& params,
                                             std::optional<std::chrono::milliseconds> timeout) = 0;
  virtual Status unload_module(const std::string& id) = 0;
  // The modules loaded into an enclave (empty id: every enclave).
  virtual Result<std::vector<LoadedModule>> loaded_modules(const std::string& enclave_id) = 0;

  // Validates a Starlark plan against the enclave, then executes it; one
  // event per instruction and per result, as they happen.
  virtual StarlarkRunOutcome run_starlark(const StarlarkRunRequest& request, const StarlarkRunSink& sink,
                                          CancelToken& cancel) = 0;
};

}  // namespace modhost::engine
