// A Starlark plan (docs/starlark-plan.md): the instructions the interpreter
// produced, in order, as data. Parsed once, validated against an enclave,
// then executed; nothing here does I/O.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "modhost/result.hpp"

namespace modhost::starlark {

struct Instruction {
  std::size_t index = 0;
  std::string kind;         // add_service, exec, ... (plan.assert arrives as verify)
  std::string position;     // FILE:LINE:COL
  std::string text;         // the call, for display
  std::string description;  // what Kurtosis prints as the instruction's header
  boost::json::object args;
  // "kind" + canonical args: equal for the same call with the same arguments.
  std::string fingerprint() const;
};

struct Plan {
  int version = 1;
  std::string package;  // kurtosis.yml name; empty for a script
  std::string main_file;
  std::vector<Instruction> instructions;
  boost::json::value output;  // what run() returned (may hold future references)
};

// Every instruction kind the engine executes.
const std::vector<std::string>& known_kinds();

// Parses the interpreter's plan JSON; a malformed plan names what is wrong.
Result<Plan> parse_plan(std::string_view json);

// The plan as JSON again (what `--dry-run --output json` prints).
boost::json::value to_json(const Plan& plan);

// Error that the instruction at `position` failed: "main.star:3:5: MESSAGE".
Error at(const Instruction& i, ErrorCode code, const std::string& message);

}  // namespace modhost::starlark
