// What executing a plan needs of one enclave: the engine gives it over its
// backend, network control and module host; unit tests give a fake.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backends/backend.hpp"
#include "modhost/partitioning.hpp"
#include "modhost/result.hpp"
#include "modhost/types.hpp"

namespace modhost::starlark {

class Target {
 public:
  virtual ~Target() = default;

  virtual std::string backend_name() const = 0;
  virtual std::string enclave_name() const = 0;
  // False for a dry run against an enclave that does not exist yet.
  virtual bool enclave_exists() const = 0;

  virtual Result<ServiceInfo> add_service(const ServiceConfig& config) = 0;
  virtual Result<ServiceInfo> inspect_service(const std::string& name) = 0;
  virtual Result<std::vector<ServiceInfo>> list_services() = 0;
  virtual Status remove_service(const std::string& name) = 0;
  virtual Status start_service(const std::string& name) = 0;
  virtual Status stop_service(const std::string& name) = 0;
  virtual Result<ExecResult> exec(const std::string& service, const std::vector<std::string>& argv) = 0;
  virtual Status wait_ready(const std::string& service, const ReadinessCheck& check) = 0;

  virtual Result<std::vector<backend::ArtifactInfo>> list_artifacts() = 0;
  virtual Status store_artifact(const std::string& name, const std::string& tgz) = 0;
  virtual Status remove_artifact(const std::string& name) = 0;
  virtual Result<std::string> download_artifact(const std::string& name) = 0;
  virtual Status store_from_service(const std::string& service, const std::string& path,
                                    const std::string& name) = 0;
  virtual Result<bool> image_exists(const std::string& reference) = 0;

  // Replaces the enclave's network partitioning (persistent).
  virtual Status repartition(const NetworkPartitioning& plan) = 0;
  // Whether REF names a module this engine could run (builtin:NAME, a .so, an image).
  virtual Status check_module(const std::string& reference) = 0;
  // Runs a module against the enclave once; its result.
  virtual Result<std::string> run_module(const std::string& reference, const std::string& load_params,
                                         const std::string& params,
                                         std::optional<std::chrono::milliseconds> timeout,
                                         const std::function<void(std::string_view)>& progress) = 0;
};

}  // namespace modhost::starlark
