// Serving a module over the module API (gRPC `module_api.ExecutableModuleService`).
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "modhost/result.hpp"

namespace modhost {

struct ServeOptions {
  // gRPC address: "unix:/path/to.sock" or "0.0.0.0:1111".
  std::string address;
  // Called once the server listens, with the address it bound.
  std::function<void(const std::string& bound_address)> on_ready;
  // Stop on SIGTERM and SIGINT (graceful: in-flight calls finish first).
  bool handle_signals = true;
};

using ExecuteHandler = std::function<Result<std::string>(std::string_view params)>;

// Serves until SIGTERM/SIGINT (when handled) or until the process ends.
// Errors from `execute` become gRPC statuses carrying their message.
Status serve_module(const ExecuteHandler& execute, const ServeOptions& options);

}  // namespace modhost
