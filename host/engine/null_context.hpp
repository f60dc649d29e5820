// The context of a module that runs without an enclave: logging works, every
// enclave operation fails with one clear error.
#pragma once

#include <string>

#include "modhost/enclave_context.hpp"

namespace modhost::engine {

class NullEnclaveContext final : public EnclaveContext {
 public:
  explicit NullEnclaveContext(std::string module_name) : module_name_(std::move(module_name)) {}

  std::string enclave_id() const override { return {}; }
  void log(LogLevel level, std::string_view message) override;

  Result<ServiceInfo> add_service(const ServiceConfig&) override { return no_enclave(); }
  Status remove_service(std::string_view) override { return no_enclave(); }
  Result<std::vector<ServiceInfo>> list_services() override { return no_enclave(); }
  Result<ServiceInfo> inspect_service(std::string_view) override { return no_enclave(); }
  Result<ExecResult> exec(std::string_view, const std::vector<std::string>&) override { return no_enclave(); }
  Status stop_service(std::string_view, int) override { return no_enclave(); }
  Status start_service(std::string_view) override { return no_enclave(); }
  Status restart_service(std::string_view) override { return no_enclave(); }
  Status pause_service(std::string_view) override { return no_enclave(); }
  Status unpause_service(std::string_view) override { return no_enclave(); }
  Status kill_service(std::string_view, int) override { return no_enclave(); }
  Result<std::string> service_logs(std::string_view) override { return no_enclave(); }

 private:
  Error no_enclave() const;
  std::string module_name_;
};

}  // namespace modhost::engine
