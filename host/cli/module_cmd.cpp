// `modhost module exec|ls`.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <optional>
#include <thread>

#include "cli/cancel_on_signal.hpp"
#include "cli/cli.hpp"
#include "daemon/client.hpp"
#include "engine/api.hpp"
#include "engine/builtins.hpp"
#include "engine/module_manager.hpp"

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

// What `module exec` and `module load` ask of the engine.
engine::ModuleRunRequest run_request(const GlobalOptions& g, const std::string& reference,
                                     const std::string& load_params, const std::string& enclave,
                                     bool isolate) {
  engine::ModuleRunRequest r;
  r.reference = reference;
  r.load_params = load_params;
  r.enclave_id = enclave;
  r.isolate = isolate;
  r.log_level = g.log_level;
  r.with_output = !g.json();
  return r;
}

int run_exec(const GlobalOptions& g, const ExecArgs& a) {
  Result<engine::ModuleReference> ref = engine::parse_module_reference(a.reference);
  if (!ref.ok()) return fail(g, ref.error());
  engine::ModuleRunRequest r = run_request(g, a.reference, a.load_params, a.enclave_id, a.isolate);
  r.execute_params = a.execute_params;
  if (!a.timeout.empty()) {
    auto t = parse_duration(a.timeout);
    if (!t.ok()) return fail(g, t.error());
    r.timeout = t.value();
  }
  auto start_timeout = parse_duration(a.start_timeout);
  if (!start_timeout.ok()) return fail(g, start_timeout.error());
  if (a.start_timeout_set) r.start_timeout = start_timeout.value();
  const bool image = ref->kind == engine::ModuleReference::Kind::image;

  auto started = std::chrono::steady_clock::now();
  // Before the engine is reached: a daemon's client makes threads, and the
  // signals must be blocked in every one of them.
  engine::CancelToken cancel;
  std::optional<CancelOnSignal> on_signal(std::in_place, cancel);
  auto api = get_api(g);
  if (!api.ok()) return fail(g, api.error());
  engine::ModuleRunObserver observer;
  observer.progress = [&g](std::string_view line) { progress(g, line); };
  observer.output = [](std::string_view chunk) {
    std::fwrite(chunk.data(), 1, chunk.size(), stderr);
    std::fflush(stderr);
  };
  engine::ModuleRunOutcome out = api.value()->run_module(r, observer, cancel);
  on_signal.reset();
  auto keep_note = [&] {
    if (image && !out.enclave_id.empty()) {
      progress(g, "The enclave '" + out.enclave_name + "' (" + out.enclave_id +
                      ") is kept; remove it with: modhost enclave rm -f " + out.enclave_name);
    }
  };
  if (!out.result.ok()) {
    int code = fail(g, out.result.error());
    keep_note();
    // An in-process call abandoned on timeout still runs: leave at once.
    if (!image && !a.isolate && out.result.error().code() == ErrorCode::timeout) std::_Exit(code);
    return code;
  }
  print_result(g, out.module, out.result.value(), started, out.enclave_id);
  keep_note();
  return kExitOk;
}

// Loaded modules live in the engine between commands: a daemon's.
Result<engine::EngineApi*> daemon_api(const GlobalOptions& g) {
  MODHOST_ASSIGN_OR_RETURN(engine::EngineApi * api, get_api(g));
  if (dynamic_cast<daemon::RemoteEngine*>(api) == nullptr) {
    return Error(
        ErrorCode::failed_precondition,
        "a loaded module lives in the engine between commands, so it needs the engine daemon: start it "
        "with 'modhost engine start' (or use 'modhost module exec')");
  }
  return api;
}

boost::json::object to_json(const engine::LoadedModule& m) {
  return {{"id", m.id},
          {"enclaveId", m.enclave_id},
          {"enclaveName", m.enclave_name},
          {"reference", m.reference},
          {"module",
           boost::json::object{
               {"name", m.module.name}, {"version", m.module.version}, {"source", m.module.source}}},
          {"loaded", m.loaded},
          {"executions", m.executions}};
}

struct LoadArgs {
  std::string enclave;
  std::string reference;
  std::string load_params;
  std::string start_timeout;
  bool isolate = false;
};

int run_load(const GlobalOptions& g, const LoadArgs& a) {
  if (auto ref = engine::parse_module_reference(a.reference); !ref.ok()) return fail(g, ref.error());
  engine::ModuleRunRequest r = run_request(g, a.reference, a.load_params, a.enclave, a.isolate);
  if (!a.start_timeout.empty()) {
    auto t = parse_duration(a.start_timeout);
    if (!t.ok()) return fail(g, t.error());
    r.start_timeout = t.value();
  }
  auto api = daemon_api(g);
  if (!api.ok()) return fail(g, api.error());
  progress(g, "Loading module " + a.reference + " into enclave '" + a.enclave + "'...");
  auto loaded = api.value()->load_module(r);
  if (!loaded.ok()) return fail(g, loaded.error());
  if (g.json()) {
    print_json(to_json(loaded.value()));
  } else {
    std::printf("Loaded module '%s' %s as %s in enclave '%s'\n", loaded->module.name.c_str(),
                loaded->module.version.c_str(), loaded->id.c_str(), loaded->enclave_name.c_str());
  }
  return kExitOk;
}

int run_execute(const GlobalOptions& g, const std::string& id, const std::string& params,
                const std::string& timeout_text) {
  std::optional<std::chrono::milliseconds> timeout;
  if (!timeout_text.empty()) {
    auto t = parse_duration(timeout_text);
    if (!t.ok()) return fail(g, t.error());
    timeout = t.value();
  }
  auto api = daemon_api(g);
  if (!api.ok()) return fail(g, api.error());
  auto all = api.value()->loaded_modules("");
  if (!all.ok()) return fail(g, all.error());
  engine::LoadedModule found;
  for (const auto& m : all.value()) {
    if (m.id == id) found = m;
  }
  auto started = std::chrono::steady_clock::now();
  progress(g,
           "Executing module '" + (found.module.name.empty() ? id : found.module.name) + "' (" + id + ")...");
  auto result = api.value()->execute_loaded(id, params, timeout);
  if (!result.ok()) return fail(g, result.error());
  print_result(g, found.module, result.value(), started, found.enclave_id);
  return kExitOk;
}

int run_unload(const GlobalOptions& g, const std::string& id) {
  auto api = daemon_api(g);
  if (!api.ok()) return fail(g, api.error());
  if (auto s = api.value()->unload_module(id); !s.ok()) return fail(g, s.error());
  if (g.json())
    print_json(boost::json::object{{"unloaded", id}});
  else
    std::printf("Unloaded module %s\n", id.c_str());
  return kExitOk;
}

int run_ls_loaded(const GlobalOptions& g, const std::string& enclave) {
  auto api = daemon_api(g);
  if (!api.ok()) return fail(g, api.error());
  auto b = api.value()->backend();
  if (!b.ok()) return fail(g, b.error());
  auto e = b.value()->find_enclave(enclave);
  if (!e.ok()) return fail(g, e.error());
  auto all = api.value()->loaded_modules(e->id);
  if (!all.ok()) return fail(g, all.error());
  if (g.json()) {
    boost::json::array arr;
    for (const auto& m : all.value()) arr.push_back(to_json(m));
    print_json(boost::json::object{{"modules", arr}});
    return kExitOk;
  }
  std::printf("%-14s %-14s %-9s %-10s %-22s %s\n", "ID", "NAME", "VERSION", "EXECUTED", "LOADED", "MODULE");
  for (const auto& m : all.value()) {
    std::printf("%-14s %-14s %-9s %-10llu %-22s %s\n", m.id.c_str(), m.module.name.c_str(),
                m.module.version.c_str(), static_cast<unsigned long long>(m.executions), m.loaded.c_str(),
                m.reference.c_str());
  }
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

  auto ls_enclave = std::make_shared<std::string>();
  CLI::App* ls = module->add_subcommand("ls",
                                        "List built-in modules and the modules on the search path "
                                        "($MODHOST_MODULE_PATH, then lib/modhost/modules);\n"
                                        "with ENCLAVE, the modules loaded in it (engine daemon)");
  ls->add_option("enclave", *ls_enclave, "An enclave: list the modules loaded in it");
  ls->callback(
      [&g, ls_enclave] { g_exit_code = ls_enclave->empty() ? run_ls(g) : run_ls_loaded(g, *ls_enclave); });

  auto l = std::make_shared<LoadArgs>();
  CLI::App* load = module->add_subcommand(
      "load",
      "Load a module into an enclave and keep it loaded (an image as a running module container);\n"
      "prints its id for 'module execute' and 'module unload'. Needs the engine daemon.");
  load->add_option("enclave", l->enclave, "The enclave (UUID, prefix or name)")->required();
  load->add_option("module", l->reference, "builtin:NAME, PATH.so or IMAGE")->required();
  load->add_option("--load-params", l->load_params, "Params given to the module when it is loaded (JSON)");
  load->add_option("--start-timeout", l->start_timeout, "How long the module may take to start (image: 60s)");
  load->add_flag("--isolate", l->isolate, "Run a native module in a child process");
  load->callback([&g, l] { g_exit_code = run_load(g, *l); });

  auto x_id = std::make_shared<std::string>();
  auto x_params = std::make_shared<std::string>();
  auto x_timeout = std::make_shared<std::string>();
  CLI::App* execute = module->add_subcommand("execute", "Execute a loaded module once (it stays loaded)");
  execute->add_option("id", *x_id, "The loaded module's id (from 'module load' or 'module ls ENCLAVE')")
      ->required();
  execute->add_option("--execute-params", *x_params, "Params given to execute (JSON)");
  execute->add_option("--timeout", *x_timeout, "Fail if execute takes longer (e.g. 30s)");
  execute->callback(
      [&g, x_id, x_params, x_timeout] { g_exit_code = run_execute(g, *x_id, *x_params, *x_timeout); });

  auto u_id = std::make_shared<std::string>();
  CLI::App* unload = module->add_subcommand("unload", "Unload a loaded module (its container is removed)");
  unload->add_option("id", *u_id, "The loaded module's id")->required();
  unload->callback([&g, u_id] { g_exit_code = run_unload(g, *u_id); });
}

}  // namespace modhost::cli
