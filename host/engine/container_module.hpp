// A module that runs as a container in its enclave and serves the module API
// over gRPC (Kurtosis' executable-module protocol).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "backends/backend.hpp"
#include "engine/module.hpp"

namespace modhost::engine {

struct ContainerModuleOptions {
  std::chrono::milliseconds start_timeout{std::chrono::seconds(60)};  // container start to IsAvailable
  int listen_port = 1111;
  std::string api_log_level = "info";  // passed to the module as MODHOST_LOG_LEVEL
  // Receives the module container's output while it runs (nullptr: dropped).
  std::function<void(std::string_view chunk)> on_output;
};

// Starts IMAGE as a labelled module container in ENCLAVE, serves the enclave
// API to it on a unix socket bind-mounted at /run/modhost, and waits for
// IsAvailable. `api_context` answers the module's enclave API calls and must
// outlive the instance. Destroying the instance stops and removes the
// container and the socket; the enclave stays.
Result<std::unique_ptr<ModuleInstance>> start_container_module(
    backend::Backend& backend, const std::string& enclave_id, const std::string& image,
    std::string_view load_params, EnclaveContext& api_context, const ContainerModuleOptions& options);

// The label value io.modhost.kind takes on module containers.
inline constexpr const char* kModuleKind = "module";

}  // namespace modhost::engine
