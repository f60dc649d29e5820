// What a module may do to its enclave. In-process modules get a C++ object;
// out-of-process modules get the same operations over gRPC.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "modhost/partitioning.hpp"
#include "modhost/result.hpp"
#include "modhost/types.hpp"

namespace modhost {

class EnclaveContext {
 public:
  virtual ~EnclaveContext() = default;

  // The enclave this module acts on; empty when the module runs without one.
  virtual std::string enclave_id() const = 0;

  // Logs under the module's own logger ("module.<name>") in the host.
  virtual void log(LogLevel level, std::string_view message) = 0;

  virtual Result<ServiceInfo> add_service(const ServiceConfig& config) = 0;
  virtual Status remove_service(std::string_view name) = 0;
  virtual Result<std::vector<ServiceInfo>> list_services() = 0;
  virtual Result<ServiceInfo> inspect_service(std::string_view name) = 0;
  virtual Result<ExecResult> exec(std::string_view service, const std::vector<std::string>& argv) = 0;
  virtual Status stop_service(std::string_view name, int grace_seconds) = 0;
  virtual Status start_service(std::string_view name) = 0;
  virtual Status restart_service(std::string_view name) = 0;
  virtual Status pause_service(std::string_view name) = 0;
  virtual Status unpause_service(std::string_view name) = 0;
  virtual Status kill_service(std::string_view name, int signal) = 0;
  virtual Result<std::string> service_logs(std::string_view name) = 0;

  // Replaces the enclave's network partitioning with `plan` at once: pairs
  // whose connection does not change keep flowing. A plan that shapes nothing
  // heals the network (removes every rule of ours). Contexts without network
  // control say so.
  virtual Status repartition(const NetworkPartitioning& plan) {
    (void)plan;
    return Error(ErrorCode::failed_precondition, "this enclave context has no network control");
  }
};

}  // namespace modhost
