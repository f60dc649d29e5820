// The engine API served over gRPC: each call runs on the daemon's engine.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace grpc {
class Service;
}

namespace modhost::engine {
class Engine;
}

namespace modhost::daemon {

struct ServerInfo {
  std::string version;
  std::string started;  // RFC 3339 UTC
};

// The EngineService implementation; `engine` must outlive it.
class EngineService {
 public:
  virtual ~EngineService() = default;
  virtual grpc::Service* service() = 0;
  // Where it listens, once the ports are bound (Info reports it).
  virtual void set_listen(std::vector<std::string> listen) = 0;
};
std::unique_ptr<EngineService> make_engine_service(engine::Engine& engine, ServerInfo info);

}  // namespace modhost::daemon
