// Modules kept loaded in an enclave between executions (`modhost module
// load|execute|unload|ls`, through the engine daemon).
#include <spdlog/spdlog.h>

#include <ctime>
#include <map>
#include <mutex>
#include <random>

#include "engine/container_module.hpp"
#include "engine/engine.hpp"
#include "engine/logging.hpp"
#include "engine/module_manager.hpp"
#include "engine/network_control.hpp"

namespace modhost::engine {

struct Engine::Loaded {
  struct Entry {
    LoadedModule info;
    std::unique_ptr<EnclaveContext> context;  // answers the module; outlives it
    std::unique_ptr<ModuleInstance> instance;
    bool image = false;
    std::mutex exec;  // one execution at a time
  };
  std::mutex mutex;
  std::map<std::string, std::shared_ptr<Entry>> by_id;
  // Native calls abandoned on their timeout still run: what they use stays.
  std::vector<std::shared_ptr<Entry>> abandoned;
};

Engine::Engine(EngineOptions options) : options_(std::move(options)), loaded_(std::make_unique<Loaded>()) {}

Engine::~Engine() {
  // Module containers go with the engine that loaded them.
  if (loaded_) {
    std::lock_guard lock(loaded_->mutex);
    for (auto& [id, entry] : loaded_->by_id) {
      std::lock_guard exec(entry->exec);
      entry->instance.reset();
    }
  }
}

namespace {

std::string new_id() {
  static std::mutex m;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard lock(m);
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(rng()));
  return std::string(buf, 12);
}

Error unknown(const std::string& id) {
  return Error(
      ErrorCode::not_found,
      "no loaded module '" + id + "'; 'modhost module ls ENCLAVE' lists the modules loaded in an enclave");
}

}  // namespace

Result<LoadedModule> Engine::load_module(const ModuleRunRequest& r) {
  if (r.enclave_id.empty()) {
    return Error(ErrorCode::invalid_argument, "a module is loaded into an enclave: name one");
  }
  MODHOST_ASSIGN_OR_RETURN(ModuleReference ref, parse_module_reference(r.reference));
  MODHOST_ASSIGN_OR_RETURN(backend::Backend * b, backend());
  MODHOST_ASSIGN_OR_RETURN(backend::EnclaveInfo enclave, b->find_enclave(r.enclave_id));
  auto entry = std::make_shared<Loaded::Entry>();
  entry->info.id = new_id();
  entry->info.enclave_id = enclave.id;
  entry->info.enclave_name = enclave.name;
  entry->info.reference = r.reference;
  entry->info.loaded = utc_now_rfc3339();

  entry->image = ref.kind == ModuleReference::Kind::image;
  if (entry->image) {
    if (r.isolate) {
      return Error(ErrorCode::invalid_argument,
                   "--isolate is for native modules; an image always runs in its own container");
    }
    entry->context = enclave_context(enclave.id, ref.value);
    ContainerModuleOptions options;
    options.start_timeout = r.start_timeout.value_or(std::chrono::milliseconds(60'000));
    options.api_log_level = r.log_level;
    MODHOST_ASSIGN_OR_RETURN(entry->instance, start_container_module(*b, enclave.id, ref.value, r.load_params,
                                                                     *entry->context, options));
  } else {
    if (r.isolate) {
      return Error(ErrorCode::failed_precondition,
                   "--isolate cannot be combined with an enclave: an isolated module has no enclave API yet");
    }
    ModuleManager manager(registry_or_none(options_.builtins));
    LoadOptions options;
    options.log_level = r.log_level == "warn" ? "info" : r.log_level;
    MODHOST_ASSIGN_OR_RETURN(entry->instance, manager.load(ref, r.load_params, options));
    entry->context = enclave_context(enclave.id, entry->instance->metadata().name);
  }
  entry->info.module = entry->instance->metadata();
  logger("engine")->info("loaded module '{}' ({}) into enclave '{}' as {}", entry->info.module.name,
                         r.reference, enclave.name, entry->info.id);
  std::lock_guard lock(loaded_->mutex);
  loaded_->by_id[entry->info.id] = entry;
  return entry->info;
}

Result<std::string> Engine::execute_loaded(const std::string& id, const std::string& params,
                                           std::optional<std::chrono::milliseconds> timeout) {
  std::shared_ptr<Loaded::Entry> entry;
  {
    std::lock_guard lock(loaded_->mutex);
    auto it = loaded_->by_id.find(id);
    if (it == loaded_->by_id.end()) return unknown(id);
    entry = it->second;
  }
  std::lock_guard exec(entry->exec);
  if (!entry->instance) return unknown(id);  // unloaded while this call waited
  Result<std::string> result = entry->instance->execute(*entry->context, params, timeout);
  {
    std::lock_guard lock(loaded_->mutex);
    ++entry->info.executions;
  }
  if (!result.ok() && result.error().code() == ErrorCode::timeout && !entry->image) {
    // An in-process call abandoned on timeout still runs: the module is
    // no longer usable, and what it holds must outlive the call.
    std::lock_guard lock(loaded_->mutex);
    loaded_->by_id.erase(id);
    loaded_->abandoned.push_back(entry);
    logger("engine")->warn("module '{}' ({}) still runs after its timeout and was dropped",
                           entry->info.module.name, id);
  }
  return result;
}

Status Engine::unload_module(const std::string& id) {
  std::shared_ptr<Loaded::Entry> entry;
  {
    std::lock_guard lock(loaded_->mutex);
    auto it = loaded_->by_id.find(id);
    if (it == loaded_->by_id.end()) return unknown(id);
    entry = it->second;
    loaded_->by_id.erase(it);
  }
  if (entry->instance) entry->instance->cancel();
  std::lock_guard exec(entry->exec);
  entry->instance.reset();  // a module container is stopped and removed
  logger("engine")->info("unloaded module '{}' ({})", entry->info.module.name, id);
  return ok_status();
}

Result<std::vector<LoadedModule>> Engine::loaded_modules(const std::string& enclave_id) {
  std::vector<LoadedModule> out;
  std::lock_guard lock(loaded_->mutex);
  for (const auto& [id, entry] : loaded_->by_id) {
    if (enclave_id.empty() || entry->info.enclave_id == enclave_id) out.push_back(entry->info);
  }
  return out;
}

}  // namespace modhost::engine
