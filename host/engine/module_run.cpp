// One module run (load, execute once, unload) for every front end: the CLI's
// `module exec`, the daemon's RunModule, the SDK.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <string>

#include "engine/api.hpp"
#include "engine/container_module.hpp"
#include "engine/engine.hpp"
#include "engine/logging.hpp"
#include "engine/module_manager.hpp"
#include "engine/null_context.hpp"

namespace modhost::engine {

std::string utc_now_rfc3339() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void CancelToken::cancel() {
  // The callback runs under the lock, so one replaced by on_cancel (its
  // owner going away) is never called after.
  std::lock_guard lock(mutex_);
  if (cancelled_) return;
  cancelled_ = true;
  if (target_) target_->cancel();
  if (callback_) callback_();
}

bool CancelToken::cancelled() const {
  std::lock_guard lock(mutex_);
  return cancelled_;
}

void CancelToken::watch(ModuleInstance* module) {
  std::lock_guard lock(mutex_);
  target_ = module;
  if (module && cancelled_) module->cancel();
}

void CancelToken::on_cancel(std::function<void()> callback) {
  std::lock_guard lock(mutex_);
  if (cancelled_) {
    if (callback) callback();
    return;
  }
  callback_ = std::move(callback);
}

namespace {

constexpr const char* kBanner =
    "---------------------------------- module output ----------------------------------";
constexpr const char* kBannerEnd =
    "-----------------------------------------------------------------------------------";

void say(const ModuleRunObserver& o, const std::string& line) {
  if (o.progress) o.progress(line);
}

ModuleRunOutcome run_image(Engine& engine, const ModuleRunRequest& r, const ModuleReference& ref,
                           const ModuleRunObserver& observer, CancelToken& cancel) {
  ModuleRunOutcome out;
  if (r.isolate) {
    out.result = Error(ErrorCode::invalid_argument,
                       "--isolate is for native modules; an image always runs in its own container");
    return out;
  }
  auto backend = engine.backend();
  if (!backend.ok()) {
    out.result = backend.error();
    return out;
  }
  backend::EnclaveInfo enclave;
  if (!r.enclave_id.empty()) {
    auto found = backend.value()->find_enclave(r.enclave_id);
    if (!found.ok()) {
      out.result = found.error();
      return out;
    }
    enclave = found.value();
  } else {
    std::string name = "module-" + std::to_string(::getpid()) + "-" +
                       std::to_string(std::chrono::system_clock::now().time_since_epoch().count() % 100000);
    say(observer, "Creating enclave '" + name + "'...");
    auto created = backend.value()->create_enclave(name);
    if (!created.ok()) {
      out.result = created.error();
      return out;
    }
    enclave = created.value();
  }
  out.enclave_id = enclave.id;
  out.enclave_name = enclave.name;

  auto api_context = engine.enclave_context(enclave.id, ref.value);
  ContainerModuleOptions options;
  options.start_timeout = r.start_timeout.value_or(std::chrono::milliseconds(60'000));
  options.api_log_level = r.log_level;
  if (r.with_output) options.on_output = observer.output;
  say(observer, "Starting module image '" + ref.value + "' in enclave '" + enclave.name + "'...");
  say(observer, kBanner);
  auto module =
      start_container_module(*backend.value(), enclave.id, ref.value, r.load_params, *api_context, options);
  if (!module.ok()) {
    say(observer, kBannerEnd);
    out.result = module.error();
    return out;
  }
  cancel.watch(module.value().get());
  out.result = module.value()->execute(*api_context, r.execute_params, r.timeout);
  cancel.watch(nullptr);
  out.module = module.value()->metadata();
  module.value().reset();  // stops and removes the module container
  say(observer, kBannerEnd);
  if (!out.result.ok() && cancel.cancelled()) {
    out.result = Error(ErrorCode::cancelled, "interrupted: the module container was removed");
  }
  return out;
}

}  // namespace

ModuleRunOutcome Engine::run_module(const ModuleRunRequest& r, const ModuleRunObserver& observer,
                                    CancelToken& cancel) {
  ModuleRunOutcome out;
  Result<ModuleReference> ref = parse_module_reference(r.reference);
  if (!ref.ok()) {
    out.result = ref.error();
    return out;
  }
  if (ref->kind == ModuleReference::Kind::image) return run_image(*this, r, ref.value(), observer, cancel);

  std::string enclave_id;
  if (!r.enclave_id.empty()) {
    if (r.isolate) {
      out.result =
          Error(ErrorCode::failed_precondition,
                "--isolate cannot be combined with --enclave-id: an isolated module has no enclave API yet");
      return out;
    }
    auto enclave = find_enclave(r.enclave_id);
    if (!enclave.ok()) {
      out.result = enclave.error();
      return out;
    }
    enclave_id = enclave->id;
    out.enclave_id = enclave->id;
    out.enclave_name = enclave->name;
  }

  LoadOptions options;
  options.isolate = r.isolate;
  options.start_timeout = r.start_timeout.value_or(std::chrono::milliseconds(10'000));
  options.log_level = r.log_level == "warn" ? "info" : r.log_level;

  say(observer, "Loading module " + ref->display() + (r.isolate ? " in an isolated runner" : "") + "...");
  ModuleManager manager(registry_or_none(options_.builtins));
  auto module = manager.load(ref.value(), r.load_params, options);
  if (!module.ok()) {
    out.result = module.error();
    return out;
  }
  out.module = module.value()->metadata();

  std::unique_ptr<EnclaveContext> ctx;
  if (enclave_id.empty())
    ctx = std::make_unique<NullEnclaveContext>(out.module.name);
  else
    ctx = enclave_context(enclave_id, out.module.name);
  say(observer, "Executing module '" + out.module.name + "' " + out.module.version +
                    (enclave_id.empty() ? std::string() : " in enclave " + enclave_id) + "...");
  cancel.watch(module.value().get());
  out.result = module.value()->execute(*ctx, r.execute_params, r.timeout);
  cancel.watch(nullptr);
  if (!out.result.ok() && out.result.error().code() == ErrorCode::timeout && !r.isolate) {
    // An in-process call abandoned on timeout still runs on its own thread:
    // its module and context must outlive it.
    logger("engine")->warn("module '{}' still runs after its timeout; run untrusted modules with --isolate",
                           out.module.name);
    (void)module.value().release();
    (void)ctx.release();
    return out;
  }
  module.value().reset();  // unload before reporting
  return out;
}

}  // namespace modhost::engine
