// Serves the enclave API (gRPC EnclaveService) for one enclave on a unix
// socket: the transport out-of-process modules use. Every call goes to one
// EnclaveContext, the same object an in-process module would get.
#pragma once

#include <memory>
#include <string>

#include "modhost/enclave_context.hpp"

namespace modhost::engine {

class EnclaveApiServer {
 public:
  // Listens on DIR/api.sock, DIR being a new private directory. `context`
  // must outlive the server.
  static Result<std::unique_ptr<EnclaveApiServer>> start(EnclaveContext& context);
  ~EnclaveApiServer();  // stops serving and removes the directory

  // The directory holding the socket (bind-mounted into module containers).
  const std::string& directory() const;
  const std::string& socket_path() const;

  struct Impl;

 private:
  explicit EnclaveApiServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Where module containers find the enclave API socket.
inline constexpr const char* kEnclaveApiMountDir = "/run/modhost";
inline constexpr const char* kEnclaveApiSocketName = "api.sock";

}  // namespace modhost::engine
