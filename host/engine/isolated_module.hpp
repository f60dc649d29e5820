// A native module loaded in `modhost-module-runner`, a child process that
// serves it over gRPC on a unix socket.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "engine/module.hpp"

namespace modhost::engine {

struct LoadOptions;

// `module_arg` is "builtin:NAME" or the absolute path of a .so; `name` is used
// in messages and for the child's logger until its metadata arrives.
Result<std::unique_ptr<ModuleInstance>> start_isolated(const std::string& module_arg, const std::string& name,
                                                       std::string_view load_params,
                                                       const LoadOptions& options);

// The runner executable: $MODHOST_RUNNER, else next to this executable.
std::string find_runner();

}  // namespace modhost::engine
