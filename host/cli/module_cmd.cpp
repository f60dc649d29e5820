// `modhost module exec|ls`.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <thread>

#include "builtins.hpp"
#include "cli/cli.hpp"
#include "engine/container_module.hpp"
#include "engine/engine.hpp"
#include "engine/logging.hpp"
#include "engine/module_manager.hpp"
#include "engine/null_context.hpp"

namespace modhost::cli {
namespace {

struct ExecArgs {
  std::string reference;
  std::string load_params;
  std::string execute_params;
  std::string enclave_id;
  bool isolate = false;
  std::string timeout;
  std::string start_timeout = "10s";
  bool start_timeout_set = false;
  bool with_partitioning = false;
};

const char* format_name(ParamsFormat f) { return f == ParamsFormat::json ? "json" : "text"; }

boost::json::value result_value(const engine::ModuleMetadata& meta, const std::string& result) {
  // A result that is JSON (the convention) is embedded as JSON; anything
  // else as a string. Container modules declare no format, so parse always.
  (void)meta;
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(result, ec);
  if (!ec) return v;
  return boost::json::value(result);
}

void print_result(const GlobalOptions& g, const engine::ModuleMetadata& meta, const std::string& result,
                  std::chrono::steady_clock::time_point started, const std::string& enclave_id) {
  auto elapsed =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started);
  if (g.json()) {
    boost::json::object m{{"name", meta.name}, {"version", meta.version}, {"source", meta.source}};
    boost::json::object out{{"module", m},
                            {"result", result_value(meta, result)},
                            {"durationMs", static_cast<double>(elapsed.count()) / 1000.0}};
    if (!enclave_id.empty()) out["enclaveId"] = enclave_id;
    print_json(out);
  } else {
    progress(g, "Module '" + meta.name + "' returned:");
    std::fwrite(result.data(), 1, result.size(), stdout);
    std::fputc('\n', stdout);
  }
}

// Cancels a running module on SIGINT/SIGTERM. The signals are blocked in
// every thread made after construction and taken by one waiter thread.
class CancelOnSignal {
 public:
  CancelOnSignal() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGUSR2);  // wakes the waiter when done
    pthread_sigmask(SIG_BLOCK, &set_, &old_);
    waiter_ = std::thread([this] {
      int sig = 0;
      sigwait(&set_, &sig);
      if (sig == SIGUSR2) return;
      signalled_ = true;
      std::lock_guard lock(mutex_);
      if (target_) target_->cancel();
    });
  }
  ~CancelOnSignal() {
    pthread_kill(waiter_.native_handle(), SIGUSR2);
    waiter_.join();
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  void watch(engine::ModuleInstance* m) {
    std::lock_guard lock(mutex_);
    target_ = m;
    if (m && signalled_) m->cancel();
  }
  bool signalled() const { return signalled_; }

 private:
  sigset_t set_, old_;
  std::thread waiter_;
  std::mutex mutex_;
  engine::ModuleInstance* target_ = nullptr;
  std::atomic<bool> signalled_{false};
};

int run_exec_image(const GlobalOptions& g, const ExecArgs& a, const engine::ModuleReference& ref,
                   std::optional<std::chrono::milliseconds> timeout,
                   std::chrono::milliseconds start_timeout) {
  if (a.isolate) {
    return fail(g, Error(ErrorCode::invalid_argument,
                         "--isolate is for native modules; an image always runs in "
                         "its own container"));
  }
  auto started = std::chrono::steady_clock::now();
  auto engine = get_engine(g);
  if (!engine.ok()) return fail(g, engine.error());
  auto backend = engine.value()->backend();
  if (!backend.ok()) return fail(g, backend.error());
  CancelOnSignal cancel;

  backend::EnclaveInfo enclave;
  if (!a.enclave_id.empty()) {
    auto found = backend.value()->find_enclave(a.enclave_id);
    if (!found.ok()) return fail(g, found.error());
    enclave = found.value();
  } else {
    std::string name = "module-" + std::to_string(::getpid()) + "-" +
                       std::to_string(std::chrono::system_clock::now().time_since_epoch().count() % 100000);
    progress(g, "Creating enclave '" + name + "'...");
    auto created = backend.value()->create_enclave(name);
    if (!created.ok()) return fail(g, created.error());
    enclave = created.value();
  }
  auto keep_note = [&] {
    progress(g, "The enclave '" + enclave.name + "' (" + enclave.id +
                    ") is kept; remove it with: modhost enclave rm -f " + enclave.name);
  };

  auto api_context = engine.value()->enclave_context(enclave.id, ref.value);
  engine::ContainerModuleOptions options;
  options.start_timeout = start_timeout;
  options.api_log_level = g.log_level;
  if (!g.json()) {
    options.on_output = [](std::string_view chunk) {
      std::fwrite(chunk.data(), 1, chunk.size(), stderr);
      std::fflush(stderr);
    };
  }
  progress(g, "Starting module image '" + ref.value + "' in enclave '" + enclave.name + "'...");
  progress(g, "---------------------------------- module output ----------------------------------");
  auto module = engine::start_container_module(*backend.value(), enclave.id, ref.value, a.load_params,
                                               *api_context, options);
  if (!module.ok()) {
    progress(g, "-----------------------------------------------------------------------------------");
    int code = fail(g, module.error());
    keep_note();
    return code;
  }
  cancel.watch(module.value().get());
  Result<std::string> result = module.value()->execute(*api_context, a.execute_params, timeout);
  cancel.watch(nullptr);
  engine::ModuleMetadata meta = module.value()->metadata();
  module.value().reset();  // stops and removes the module container
  progress(g, "-----------------------------------------------------------------------------------");
  if (!result.ok()) {
    int code = fail(g, cancel.signalled()
                           ? Error(ErrorCode::cancelled, "interrupted: the module container was removed")
                           : result.error());
    keep_note();
    return code;
  }
  print_result(g, meta, result.value(), started, enclave.id);
  keep_note();
  return kExitOk;
}

int run_exec(const GlobalOptions& g, const ExecArgs& a) {
  Result<engine::ModuleReference> ref = engine::parse_module_reference(a.reference);
  if (!ref.ok()) return fail(g, ref.error());
  std::optional<std::chrono::milliseconds> timeout;
  if (!a.timeout.empty()) {
    auto t = parse_duration(a.timeout);
    if (!t.ok()) return fail(g, t.error());
    timeout = t.value();
  }
  auto start_timeout = parse_duration(a.start_timeout);
  if (!start_timeout.ok()) return fail(g, start_timeout.error());
  if (ref->kind == engine::ModuleReference::Kind::image) {
    return run_exec_image(g, a, ref.value(), timeout,
                          a.start_timeout_set ? start_timeout.value() : std::chrono::milliseconds(60'000));
  }

  std::string enclave_id;
  if (!a.enclave_id.empty()) {
    if (a.isolate) {
      return fail(
          g,
          Error(ErrorCode::failed_precondition,
                "--isolate cannot be combined with --enclave-id: an isolated module has no enclave API yet"));
    }
    auto engine = get_engine(g);
    if (!engine.ok()) return fail(g, engine.error());
    auto enclave = engine.value()->find_enclave(a.enclave_id);
    if (!enclave.ok()) return fail(g, enclave.error());
    enclave_id = enclave->id;
  }

  engine::LoadOptions options;
  options.isolate = a.isolate;
  options.start_timeout = start_timeout.value();
  options.log_level = g.log_level == "warn" ? "info" : g.log_level;

  auto started = std::chrono::steady_clock::now();
  progress(g, "Loading module " + ref->display() + (a.isolate ? " in an isolated runner" : "") + "...");
  engine::ModuleManager manager(builtin_registry());
  auto module = manager.load(ref.value(), a.load_params, options);
  if (!module.ok()) return fail(g, module.error());
  const engine::ModuleMetadata meta = module.value()->metadata();

  std::unique_ptr<EnclaveContext> ctx;
  if (enclave_id.empty())
    ctx = std::make_unique<engine::NullEnclaveContext>(meta.name);
  else
    ctx = get_engine(g).value()->enclave_context(enclave_id, meta.name);
  progress(g, "Executing module '" + meta.name + "' " + meta.version +
                  (enclave_id.empty() ? std::string() : " in enclave " + enclave_id) + "...");
  Result<std::string> result = module.value()->execute(*ctx, a.execute_params, timeout);
  if (!result.ok()) {
    int code = fail(g, result.error());
    // An in-process call abandoned on timeout still runs: leave at once.
    if (result.error().code() == ErrorCode::timeout && !a.isolate) std::_Exit(code);
    return code;
  }
  module.value().reset();  // unload before reporting
  print_result(g, meta, result.value(), started, enclave_id);
  return kExitOk;
}

int run_ls(const GlobalOptions& g) {
  engine::ModuleManager manager(builtin_registry());
  auto listings = manager.list(engine::default_module_search_path());
  if (g.json()) {
    boost::json::array arr;
    for (const auto& l : listings) {
      boost::json::object o{{"name", l.metadata.name}, {"source", l.metadata.source}};
      if (l.error.empty()) {
        o["version"] = l.metadata.version;
        o["description"] = l.metadata.description;
        o["abiVersion"] = l.metadata.abi_version;
        o["params"] = format_name(l.metadata.params_format);
      } else {
        o["error"] = l.error;
      }
      arr.push_back(std::move(o));
    }
    print_json(boost::json::object{{"modules", arr}});
    return kExitOk;
  }
  std::printf("%-14s %-9s %-6s %-40s %s\n", "NAME", "VERSION", "PARAMS", "SOURCE", "DESCRIPTION");
  for (const auto& l : listings) {
    if (!l.error.empty()) {
      std::printf("%-14s %-9s %-6s %-40s invalid: %s\n", l.metadata.name.c_str(), "-", "-",
                  l.metadata.source.c_str(), l.error.c_str());
      continue;
    }
    std::string ref = l.metadata.source == "builtin" ? "builtin:" + l.metadata.name : l.metadata.source;
    std::printf("%-14s %-9s %-6s %-40s %s\n", l.metadata.name.c_str(), l.metadata.version.c_str(),
                format_name(l.metadata.params_format), ref.c_str(), l.metadata.description.c_str());
  }
  return kExitOk;
}

}  // namespace

void add_module_commands(CLI::App& app, GlobalOptions& g) {
  CLI::App* module = app.add_subcommand("module", "Run and list modules");
  module->require_subcommand(1);

  auto a = std::make_shared<ExecArgs>();
  CLI::App* exec = module->add_subcommand("exec",
                                          "Load a module, execute it once and unload it.\n"
                                          "MODULE is builtin:NAME, a path to a .so, or an image name.");
  exec->add_option("module", a->reference, "builtin:NAME, PATH.so or IMAGE")->required();
  exec->add_option("--load-params", a->load_params, "Params given to the module when it is loaded (JSON)");
  exec->add_option("--execute-params", a->execute_params, "Params given to execute (JSON)");
  exec->add_option("--enclave-id", a->enclave_id,
                   "Run against this existing enclave (an image module otherwise gets a new one)");
  exec->add_flag("--isolate", a->isolate, "Run a native module in a child process (modhost-module-runner)");
  exec->add_option("--timeout", a->timeout, "Fail if execute takes longer (e.g. 30s, 500ms)");
  exec->add_option("--start-timeout", a->start_timeout,
                   "How long a module may take to start (isolated: 10s; image: 60s)")
      ->each([a](const std::string&) { a->start_timeout_set = true; });
  exec->add_flag("--with-partitioning", a->with_partitioning,
                 "Accepted for Kurtosis compatibility: every modhost enclave can be partitioned");
  exec->callback([&g, a] { g_exit_code = run_exec(g, *a); });

  CLI::App* ls = module->add_subcommand("ls",
                                        "List built-in modules and the modules on the search path "
                                        "($MODHOST_MODULE_PATH, then lib/modhost/modules)");
  ls->callback([&g] { g_exit_code = run_ls(g); });
}

}  // namespace modhost::cli
