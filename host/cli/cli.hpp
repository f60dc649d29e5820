// Shared pieces of the `modhost` command: global options, output, exit codes.
#pragma once

#include <CLI/CLI.hpp>
#include <boost/json/value.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "modhost/result.hpp"

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
  bool json() const { return output == "json"; }
};

// Prints an error as one line on stderr ("error: ..."), or as a JSON object on
// stdout with --output json, and returns its exit code.
int fail(const GlobalOptions& g, const Error& error);

// Prints a progress line on stderr (text mode only).
void progress(const GlobalOptions& g, std::string_view line);

// Prints a JSON value on stdout.
void print_json(const boost::json::value& v);

// "500ms", "30s", "2m", "1h", or a bare number of seconds.
Result<std::chrono::milliseconds> parse_duration(std::string_view text);

// Verb groups: each adds its subcommands to `app`.
void add_module_commands(CLI::App& app, GlobalOptions& g);
void add_version_command(CLI::App& app, GlobalOptions& g);

// Set by a verb's callback; main returns it.
extern int g_exit_code;

}  // namespace modhost::cli
