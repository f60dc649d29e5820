// The native backend: containers the host makes itself from Linux
// namespaces, cgroups, overlayfs and veth pairs on a bridge per enclave; no
// container engine. This is stage1 (see docs/architecture.md): it prepares
// the rootfs, cgroups and network of a service and starts stage2
// (modhost-spawn), which makes the container and stays as its shim; stage3
// (modhost-init) is PID 1 inside.
//
// State lives on disk under a runtime directory (one subdirectory per scope),
// so a fresh process, or one started after the host process was killed,
// finds every enclave and service again.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "backends/backend.hpp"

namespace modhost::backend {

struct NativeOptions {
  // Enclaves and services; empty: $MODHOST_NATIVE_DIR, else /run/modhost/native.
  std::string runtime_dir;
  // The image store; empty: $MODHOST_NATIVE_IMAGES, else /var/lib/modhost/native.
  std::string image_dir;
  // Confines the backend to the enclaves of this scope (test suites); empty: none.
  std::string scope;
  // Where modhost-spawn and modhost-init are; empty: $MODHOST_NATIVE_HELPERS,
  // else the directory of the running executable.
  std::string helper_dir;
  // How long a new service must stay up for add_service to call it started.
  // 0 (the default): started is when the program's execve succeeded (modhost-
  // init reports it through a close-on-exec pipe, as runc does), and a program
  // that cannot be run fails the add with its error. Later exits end any
  // readiness wait at once, with the service's output.
  std::chrono::milliseconds startup_check{0};
};

class NativeBackend final : public Backend {
 public:
  // Checks what the backend needs (root, overlayfs, cgroups, the helper
  // binaries) and says what is missing in one line.
  static Result<std::unique_ptr<NativeBackend>> create(const NativeOptions& options);
  ~NativeBackend() override;

  std::string_view name() const override { return "native"; }
  bool services_on_this_host() const override { return true; }

  Result<EnclaveInfo> create_enclave(std::string_view name) override;
  Result<std::vector<EnclaveInfo>> list_enclaves() override;
  Result<EnclaveInfo> find_enclave(std::string_view id_or_name) override;
  Status stop_enclave(std::string_view enclave_id) override;
  Status remove_enclave(std::string_view enclave_id, bool force) override;

  Result<ServiceInfo> add_service(std::string_view enclave_id, const ServiceConfig& config) override;
  Result<std::vector<ServiceInfo>> list_services(std::string_view enclave_id) override;
  Result<ServiceInfo> inspect_service(std::string_view enclave_id, std::string_view name) override;
  Status remove_service(std::string_view enclave_id, std::string_view name) override;
  Status stop_service(std::string_view enclave_id, std::string_view name, int grace_seconds) override;
  Status start_service(std::string_view enclave_id, std::string_view name) override;
  Status restart_service(std::string_view enclave_id, std::string_view name) override;
  Status pause_service(std::string_view enclave_id, std::string_view name) override;
  Status unpause_service(std::string_view enclave_id, std::string_view name) override;
  Status kill_service(std::string_view enclave_id, std::string_view name, int signal) override;
  Result<ExecResult> exec(std::string_view enclave_id, std::string_view name,
                          const std::vector<std::string>& argv) override;
  Status logs(std::string_view enclave_id, std::string_view name, bool follow, const LogSink& sink) override;
  Status wait_ready(std::string_view enclave_id, std::string_view name, const ReadinessCheck& check) override;
  Result<ServiceConfig> service_config(std::string_view enclave_id, std::string_view name) override;
  Status copy_to_service(std::string_view enclave_id, std::string_view name, std::string_view dir,
                         std::string_view tar) override;

  Result<ArtifactInfo> store_artifact(std::string_view enclave_id, std::string_view name,
                                      std::string_view tgz) override;
  Result<std::vector<ArtifactInfo>> list_artifacts(std::string_view enclave_id) override;
  Result<std::string> download_artifact(std::string_view enclave_id, std::string_view name) override;
  Result<ArtifactInfo> store_from_service(std::string_view enclave_id, std::string_view service,
                                          std::string_view path, std::string_view name) override;
  Status remove_artifact(std::string_view enclave_id, std::string_view name) override;

  Status load_image(std::string_view archive_path) override;
  Result<bool> image_exists(std::string_view reference) override;
  Result<std::vector<ImageInfo>> list_images() override;
  Status remove_image(std::string_view reference) override;

  Status events(std::string_view enclave_id, bool follow, const EventSink& sink) override;
  Result<std::optional<int>> network_namespace_pid(std::string_view enclave_id,
                                                   std::string_view name) override;

  Result<std::vector<std::string>> recover() override;
  Result<CleanReport> clean(bool all) override;

  // The runtime directory of this backend's scope.
  const std::string& state_dir() const;

 private:
  // exec, ended with a timeout error (and the command killed) after `timeout`.
  Result<ExecResult> exec_with_timeout(std::string_view enclave_id, std::string_view name,
                                       const std::vector<std::string>& argv,
                                       std::optional<std::chrono::milliseconds> timeout);
  struct Impl;
  explicit NativeBackend(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace modhost::backend
