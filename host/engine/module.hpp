// Loaded modules as the engine sees them, wherever they run.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "modhost/module.hpp"

namespace modhost::engine {

struct ModuleMetadata {
  std::string name;
  std::string version;
  std::string description;
  ModuleKind kind = ModuleKind::executable;
  ParamsFormat params_format = ParamsFormat::json;
  std::uint32_t abi_version = 0;
  std::string source;  // "builtin", the path of the .so, or the image
};

// One loaded module: in this process, in a runner child, or in a container.
class ModuleInstance {
 public:
  virtual ~ModuleInstance() = default;
  virtual const ModuleMetadata& metadata() const = 0;
  // Runs `execute` once. With a timeout, a call that takes longer fails with
  // ErrorCode::timeout (an out-of-process module is killed).
  virtual Result<std::string> execute(EnclaveContext& ctx, std::string_view params,
                                      std::optional<std::chrono::milliseconds> timeout) = 0;
  // Asks a running execute to return early with ErrorCode::cancelled, from any
  // thread. Out-of-process modules honour it; a native call cannot be
  // interrupted and ignores it.
  virtual void cancel() {}
};

// Checks params against the module's declared format: for JSON, they must parse.
Status validate_params(const ModuleMetadata& metadata, std::string_view params, std::string_view what);

}  // namespace modhost::engine
