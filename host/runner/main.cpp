// modhost-module-runner: loads one native module in its own process and serves
// it over the module API on a unix socket. Started by the host, never by hand.
//
// Protocol with the host:
//   1. The host sets the magic cookie, the module API versions it accepts,
//      its pid and the load params in the environment.
//   2. The runner keeps the real stdout for the handshake and points fd 1 at
//      stderr, so nothing a module prints can corrupt the handshake.
//   3. It loads the module (errors go to stderr as "error|[code] message",
//      exit code 3), writes module.json with the metadata, starts the gRPC
//      server and prints exactly one line: CORE|API|unix|SOCKET|grpc.
//   4. It serves until SIGTERM, and dies with the host (PR_SET_PDEATHSIG).
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>

#include "engine/builtins.hpp"
#include "engine/handshake.hpp"
#include "engine/logging.hpp"
#include "engine/null_context.hpp"
#include "modhost/serve.hpp"

using namespace modhost;

namespace {

int report(const Error& e) {
  // One line the host can attribute: level, code, message.
  std::fprintf(stderr, "error|[%s] %s\n", std::string(to_string(e.code())).c_str(), e.message().c_str());
  return 3;
}

const char* params_format_name(ParamsFormat f) { return f == ParamsFormat::json ? "json" : "text"; }

}  // namespace

int main(int argc, char** argv) {
  // Die with the host. The check after it closes the race with a host that
  // died before prctl ran.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);

  const char* cookie = std::getenv(engine::kMagicCookieKey);
  if (!cookie || std::string(cookie) != engine::kMagicCookieValue) {
    std::fprintf(
        stderr,
        "modhost-module-runner serves a native module for the modhost host; it is not meant to be run by "
        "hand.\nRun a module in isolation with: modhost module exec MODULE.so --isolate\n");
    return 1;
  }
  if (const char* ppid = std::getenv(engine::kParentPidKey); ppid && std::atoi(ppid) != ::getppid()) return 1;

  CLI::App app{"modhost module runner"};
  std::string module_arg, socket_dir, log_level = "info";
  app.add_option("--module", module_arg, "builtin:NAME or the path of a .so")->required();
  app.add_option("--socket-dir", socket_dir, "a private directory for the socket")->required();
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error");
  CLI11_PARSE(app, argc, argv);

  // fd 1 becomes stderr; the handshake goes to the original stdout.
  int handshake_fd = ::dup(STDOUT_FILENO);
  ::dup2(STDERR_FILENO, STDOUT_FILENO);
  FILE* handshake = ::fdopen(handshake_fd, "w");

  LogLevel level = LogLevel::info;
  engine::parse_log_level(log_level, level);
  engine::init_logging(level, "%l|%v");

  const char* offered = std::getenv(engine::kApiVersionsKey);
  int api = engine::negotiate_api_version(
      offered ? offered : "", {std::begin(engine::kModuleApiVersions), std::end(engine::kModuleApiVersions)});
  if (api == 0) {
    return report(Error(ErrorCode::abi_mismatch, std::string("the host offers module API versions '") +
                                                     (offered ? offered : "") + "', this runner speaks 1"));
  }

  Result<engine::ModuleReference> ref = engine::parse_module_reference(module_arg);
  if (!ref.ok()) return report(ref.error());
  const char* load_params = std::getenv(engine::kLoadParamsKey);
  engine::ModuleManager manager(builtin_registry());
  auto module = manager.load(ref.value(), load_params ? load_params : "", engine::LoadOptions{});
  if (!module.ok()) return report(module.error());
  const engine::ModuleMetadata& meta = module.value()->metadata();

  boost::json::object m;
  m["name"] = meta.name;
  m["version"] = meta.version;
  m["description"] = meta.description;
  m["params_format"] = params_format_name(meta.params_format);
  m["abi_version"] = meta.abi_version;
  std::ofstream(socket_dir + "/module.json") << boost::json::serialize(m);

  engine::NullEnclaveContext ctx(meta.name);
  std::string socket = socket_dir + "/module.sock";
  ServeOptions options;
  options.address = "unix:" + socket;
  options.on_ready = [&](const std::string&) {
    engine::Handshake h{engine::kHandshakeCoreVersion, api, "unix", socket, "grpc"};
    std::fprintf(handshake, "%s\n", engine::format_handshake(h).c_str());
    std::fflush(handshake);
  };
  Status served = serve_module(
      [&](std::string_view params) { return module.value()->execute(ctx, params, std::nullopt); }, options);
  if (!served.ok()) return report(served.error());
  return 0;
}
