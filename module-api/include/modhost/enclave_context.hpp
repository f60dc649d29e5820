// What a module may do to its enclave. In-process modules get a C++ object;
// out-of-process modules get the same operations over gRPC.
#pragma once

#include <cstdint>
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

  // Waits until the service passes `check` (tcp port open, HTTP answer, or
  // command exit 0), within the check's retries.
  virtual Status wait_ready(std::string_view name, const ReadinessCheck& check) {
    (void)name;
    (void)check;
    return unsupported("readiness waits");
  }
  // The config the service was added with, to add it again changed.
  virtual Result<ServiceConfig> service_config(std::string_view name) {
    (void)name;
    return unsupported("service configs");
  }
  // Unpacks a tar archive (plain or gzip) into directory `dir` of the service.
  virtual Status copy_to_service(std::string_view name, std::string_view dir, std::string_view tar) {
    (void)name;
    (void)dir;
    (void)tar;
    return unsupported("copying files into services");
  }
  // Writes one file (creating or replacing it) into the service.
  virtual Status write_file(std::string_view name, std::string_view path, std::string_view content,
                            std::uint32_t mode) {
    (void)name;
    (void)path;
    (void)content;
    (void)mode;
    return unsupported("writing files into services");
  }
  // A files artifact of the enclave, as its .tgz bytes.
  virtual Result<std::string> download_artifact(std::string_view name) {
    (void)name;
    return unsupported("files artifacts");
  }

  // Stores a .tgz as a files artifact of the enclave.
  virtual Status store_artifact(std::string_view name, std::string_view tgz) {
    (void)name;
    (void)tgz;
    return unsupported("files artifacts");
  }
  // Copies `path` out of a service into a new files artifact.
  virtual Status store_from_service(std::string_view service, std::string_view path, std::string_view name) {
    (void)service;
    (void)path;
    (void)name;
    return unsupported("files artifacts");
  }

  // Loads another module (builtin:NAME or a plugin path), executes it once
  // against this enclave and unloads it: modules compose. Its result.
  virtual Result<std::string> execute_module(std::string_view reference, std::string_view load_params,
                                             std::string_view execute_params) {
    (void)reference;
    (void)load_params;
    (void)execute_params;
    return unsupported("running other modules");
  }

  // Replaces the enclave's network partitioning with `plan` at once: pairs
  // whose connection does not change keep flowing. A plan that shapes nothing
  // heals the network (removes every rule of ours). Contexts without network
  // control say so.
  virtual Status repartition(const NetworkPartitioning& plan) {
    (void)plan;
    return unsupported("network control");
  }

 protected:
  static Error unsupported(const char* what) {
    return Error(ErrorCode::failed_precondition, std::string("this enclave context has no ") + what);
  }
};

}  // namespace modhost
