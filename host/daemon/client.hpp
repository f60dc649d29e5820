// A client of the engine daemon: the same EngineApi as the engine in this
// process, over the engine API (gRPC on a unix socket, or TCP with TLS and a
// bearer token). gRPC stays behind this header.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "engine/api.hpp"

namespace modhost::daemon {

struct Endpoint {
  std::string address;      // unix:///path or tcp://HOST:PORT
  std::string tls_ca_file;  // tcp: the engine's certificate (PEM)
  std::string token;        // tcp: the bearer token
};

struct RemoteInfo {
  std::string version;
  std::string backend;
  long long pid = 0;
  std::vector<std::string> listen;
  std::string started;
};

class RemoteEngine : public engine::EngineApi {
 public:
  // What the engine says of itself.
  virtual Result<RemoteInfo> info(std::chrono::milliseconds timeout) = 0;
  virtual const std::string& address() const = 0;
};

// Connects and checks the engine answers within `timeout`; the error says
// how to start one.
Result<std::unique_ptr<RemoteEngine>> connect(const Endpoint& endpoint, std::chrono::milliseconds timeout);

}  // namespace modhost::daemon
