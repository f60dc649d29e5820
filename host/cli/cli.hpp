// Shared pieces of the `modhost` command: global options, output, exit codes.
#pragma once

#include <CLI/CLI.hpp>
#include <boost/json/value.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "cli/specs.hpp"
#include "modhost/result.hpp"
#include "modhost/types.hpp"

namespace modhost::engine {
class Engine;
class EngineApi;
}  // namespace modhost::engine
namespace modhost::backend {
class Backend;
}  // namespace modhost::backend
namespace modhost::daemon {
class RemoteEngine;
}  // namespace modhost::daemon

namespace modhost::cli {

// Exit codes, documented in docs/cli.md.
enum ExitCode : int {
  kExitOk = 0,
  kExitInternal = 1,
  kExitUsage = 2,
  kExitInvalidInput = 3,
  kExitNotFound = 4,
  kExitConflict = 5,
  kExitUnavailable = 6,
  kExitTimeout = 7,
  kExitAbiMismatch = 8,
  kExitModuleFailed = 9,
  kExitModuleCrashed = 10,
  kExitCancelled = 130,
};

int exit_code_for(ErrorCode code);

struct GlobalOptions {
  std::string output = "text";  // text | json
  std::string log_level = "warn";
  std::string backend = "auto";  // auto | docker
  std::string docker_host;       // empty: $DOCKER_HOST or the local socket
  // The engine daemon to use (unix:///PATH or tcp://HOST:PORT); empty:
  // $MODHOST_HOST, else the local daemon when one runs, else an engine in
  // this process.
  std::string host;
  std::string tls_ca;      // tcp: the engine's certificate; empty: $MODHOST_TLS_CA
  std::string token_file;  // tcp: the engine's token; empty: $MODHOST_TOKEN
  bool json() const { return output == "json"; }
};

// Prints an error as one line on stderr ("error: ..."), or as a JSON object on
// stdout with --output json, and returns its exit code.
int fail(const GlobalOptions& g, const Error& error);

// Prints a progress line on stderr (text mode only).
void progress(const GlobalOptions& g, std::string_view line);

// Prints a JSON value on stdout.
void print_json(const boost::json::value& v);

// "500ms", "30s", "2m", "1h", or a bare number of seconds; zero only when allowed.
Result<std::chrono::milliseconds> parse_duration(std::string_view text, bool allow_zero = false);

// The engine, resolved on first use: a daemon (-H, $MODHOST_HOST, or the
// local one when it answers) or an engine in this process.
Result<engine::EngineApi*> get_api(const GlobalOptions& g);
// Closes the engine (a daemon's channel, an engine's backend) while the
// process is whole, before static destruction.
void release_api();
// The engine daemon at ADDRESS, with the TLS certificate and token of the
// global options (or $MODHOST_TLS_CA, $MODHOST_TOKEN) for tcp://.
Result<std::unique_ptr<daemon::RemoteEngine>> connect_daemon(const GlobalOptions& g,
                                                             const std::string& address);
// The engine's backend, connected.
Result<backend::Backend*> get_backend(const GlobalOptions& g);

// The backend and the id of ENCLAVE (a UUID, a unique UUID prefix or a name).
struct EnclaveTarget {
  backend::Backend* backend = nullptr;
  std::string id;
};
Result<EnclaveTarget> open_enclave(const GlobalOptions& g, const std::string& ref);

// Verb groups: each adds its subcommands to `app`.
void add_module_commands(CLI::App& app, GlobalOptions& g);
void add_version_command(CLI::App& app, GlobalOptions& g);
void add_enclave_commands(CLI::App& app, GlobalOptions& g);
void add_service_commands(CLI::App& app, GlobalOptions& g);
void add_files_commands(CLI::App& app, GlobalOptions& g);
void add_image_commands(CLI::App& app, GlobalOptions& g);
void add_clean_command(CLI::App& app, GlobalOptions& g);
void add_engine_commands(CLI::App& app, GlobalOptions& g);
void add_run_command(CLI::App& app, GlobalOptions& g);

// Set by a verb's callback; main returns it.
extern int g_exit_code;

}  // namespace modhost::cli
