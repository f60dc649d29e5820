// Runs a module as its own process: the entrypoint of a module image. The same
// module source builds as a plugin (.so) and, with this, as an executable.
#pragma once

#include "modhost/module.hpp"

namespace modhost {

// Reads the load params and addresses from the environment, connects to the
// enclave API, and serves the module API until SIGTERM/SIGINT.
//
// Environment (Kurtosis-compatible):
//   SERIALIZED_ARGS  {"enclaveId": ..., "listenPortNum": 1111,
//                     "apiContainerSocket": "/run/modhost/api.sock",
//                     "serializedCustomParams": "<load params>"}
// or modhost's own variables, which take precedence when set:
//   MODHOST_ENCLAVE_ID, MODHOST_LISTEN_ADDRESS (e.g. 0.0.0.0:1111 or
//   unix:/path), MODHOST_ENCLAVE_API (unix socket path), MODHOST_LOAD_PARAMS.
// Returns the process exit code.
int run_module(const ModuleDescriptor& descriptor);

}  // namespace modhost

// Defines main() for the module NAME built into this executable.
#define MODHOST_MODULE_MAIN(NAME)                              \
  const ::modhost::ModuleDescriptor& modhost_builtin_##NAME(); \
  int main() { return ::modhost::run_module(modhost_builtin_##NAME()); }
