// The built-in `mutation` module: changes the state of services of its
// enclave. Run as
//
//   modhost module exec builtin:mutation --enclave-id ENCLAVE --execute-params JSON
//
// Execute params (a JSON object; any other key is rejected):
//
//   action        "exec" | "write_file" | "update" | "scale" (required)
//   services      target names (exec, write_file, update); or
//   regex         ECMAScript regex searched in service names (anchor with ^...$)
//   exec:         command      argv, array of strings (required)
//                 expect_exit  integer, default 0: another exit code fails the step
//   write_file:   path         absolute path in the service (required)
//                 content      the file's text; or
//                 artifact     a files artifact of the enclave, unpacked into `path` (a directory)
//                 mode         octal string, default "0644" (content only)
//   update:       env          object K -> string (set) or null (unset)
//                 cmd, entrypoint   arrays of strings (replace)
//                 image        string
//                 At least one of them. Each target is replaced by a service of the same
//                 name with the changed config, one at a time; with `wait`, the next
//                 starts once this one is ready (a rolling change).
//   scale:        service      the service to scale (required)
//                 replicas     integer >= 1: copies in all, the original included.
//                              Copies are named SERVICE-2, SERVICE-3, ... and carry the
//                              label kCopyLabel=SERVICE; scaling down removes the highest.
//   wait          update/scale: {"tcp": PORT} | {"http": PORT, "path": "/", "status": 200}
//                 | {"exec": [argv]}, with "timeout_seconds" (default 30)
//   dry_run       true: report the steps it would take, change nothing
//
// Steps run in order; the first that fails stops the run, and the error names
// it and lists every step already done.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "modhost/enclave_context.hpp"
#include "modhost/result.hpp"
#include "run_support.hpp"

namespace modhost::mutation {

inline constexpr const char* kCopyLabel = "mutation.modhost.io/copy-of";

enum class Action { exec, write_file, update, scale };

struct Params {
  Action action = Action::exec;
  std::vector<std::string> services;
  std::string regex_text;
  std::optional<std::regex> regex;
  // exec
  std::vector<std::string> command;
  int expect_exit = 0;
  // write_file
  std::string path;
  std::optional<std::string> content;
  std::string artifact;
  std::uint32_t mode = 0644;
  // update
  std::map<std::string, std::optional<std::string>> env;
  std::optional<std::vector<std::string>> cmd;
  std::optional<std::vector<std::string>> entrypoint;
  std::string image;
  // scale
  std::string service;
  int replicas = 1;
  // update, scale
  std::optional<ReadinessCheck> wait;
  bool dry_run = false;
};

Result<Params> parse_params(std::string_view json);

// The config `update` makes of a service's current one.
ServiceConfig updated(const ServiceConfig& current, const Params& p);

struct Step {
  std::chrono::system_clock::time_point time;
  std::string step;  // "exec" | "write" | "replace" | "ready" | "add" | "remove"
  std::string service;
  bool ok = true;
  std::string error;
  std::optional<int> exit_code;
  std::string output;  // exec, at most 4 KiB
};

struct Report {
  std::string action;
  bool dry_run = false;
  std::vector<Step> steps;
};

std::string to_json(const Report& report);

// One run. Targets are checked before anything changes; the first failed
// step ends the run with an error listing what was done.
Result<Report> run(EnclaveContext& ctx, const Params& params, modules::Clock& clock);

}  // namespace modhost::mutation
