// `modhost module exec|ls`.
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "builtins.hpp"
#include "cli/cli.hpp"
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
};

const char* format_name(ParamsFormat f) { return f == ParamsFormat::json ? "json" : "text"; }

boost::json::value result_value(const engine::ModuleMetadata& meta, const std::string& result) {
  // A JSON module's result is embedded as JSON; anything else as a string.
  if (meta.params_format == ParamsFormat::json) {
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(result, ec);
    if (!ec) return v;
  }
  return boost::json::value(result);
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
  if (!a.enclave_id.empty()) {
    return fail(g,
                Error(ErrorCode::failed_precondition,
                      "enclave '" + a.enclave_id + "' cannot be used: no container backend is configured"));
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

  engine::NullEnclaveContext ctx(meta.name);
  progress(g, "Executing module '" + meta.name + "' " + meta.version + "...");
  Result<std::string> result = module.value()->execute(ctx, a.execute_params, timeout);
  if (!result.ok()) {
    int code = fail(g, result.error());
    // An in-process call abandoned on timeout still runs: leave at once.
    if (result.error().code() == ErrorCode::timeout && !a.isolate) std::_Exit(code);
    return code;
  }
  module.value().reset();  // unload before reporting
  auto elapsed =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started);

  if (g.json()) {
    boost::json::object m{{"name", meta.name}, {"version", meta.version}, {"source", meta.source}};
    print_json(boost::json::object{{"module", m},
                                   {"result", result_value(meta, result.value())},
                                   {"durationMs", static_cast<double>(elapsed.count()) / 1000.0}});
  } else {
    progress(g, "Module '" + meta.name + "' returned:");
    std::fwrite(result.value().data(), 1, result.value().size(), stdout);
    std::fputc('\n', stdout);
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
  exec->add_option("--enclave-id", a->enclave_id, "Run against this existing enclave");
  exec->add_flag("--isolate", a->isolate, "Run a native module in a child process (modhost-module-runner)");
  exec->add_option("--timeout", a->timeout, "Fail if execute takes longer (e.g. 30s, 500ms)");
  exec->add_option("--start-timeout", a->start_timeout, "How long an isolated module may take to start")
      ->capture_default_str();
  exec->callback([&g, a] { g_exit_code = run_exec(g, *a); });

  CLI::App* ls = module->add_subcommand("ls",
                                        "List built-in modules and the modules on the search path "
                                        "($MODHOST_MODULE_PATH, then lib/modhost/modules)");
  ls->callback([&g] { g_exit_code = run_ls(g); });
}

}  // namespace modhost::cli
