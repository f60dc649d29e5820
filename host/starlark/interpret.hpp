// The first phase of `modhost run`: a package or script and its args in, a
// plan (docs/starlark-plan.md) out. Runs modhost-starlark, the sandboxed
// interpreter built from go.starlark.net; nothing here talks to a backend.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "modhost/result.hpp"

namespace modhost::starlark {

struct InterpretRequest {
  // A package folder (with kurtosis.yml), its kurtosis.yml, or a .star script.
  std::string path;
  std::string args_json = "{}";  // a JSON object
  std::string main_file = "main.star";
  std::string main_function = "run";
  // Where other packages are found (plus $MODHOST_PACKAGES, ':'-separated).
  std::vector<std::string> package_dirs;
  std::uint64_t max_steps = 10'000'000;
  int timeout_ms = 30'000;
  // modhost-starlark; empty: next to the running executable, then PATH.
  std::string interpreter;
};

// The plan as JSON text. Interpretation errors come back together, one per
// line, each with its position ("main.star:3:5: ...").
Result<std::string> interpret(const InterpretRequest& request);

// Where modhost-starlark is, or why it cannot be found.
Result<std::string> find_interpreter(const std::string& configured);

}  // namespace modhost::starlark
