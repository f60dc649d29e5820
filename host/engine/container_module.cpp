#include "engine/container_module.hpp"

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/json.hpp>
#include <random>
#include <thread>

#include "backends/net.hpp"
#include "engine/enclave_api_server.hpp"
#include "engine/logging.hpp"
#include "executable_module_service.grpc.pb.h"

namespace modhost::engine {
namespace {

using Clock = std::chrono::steady_clock;

std::string random_suffix() {
  std::random_device rd;
  std::uniform_int_distribution<int> d(0, 15);
  std::string s;
  for (int i = 0; i < 8; ++i) s += "0123456789abcdef"[d(rd)];
  return s;
}

// Container output as one line for an error message: lines joined by " | ".
std::string one_line(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  std::string out;
  for (char c : text) {
    if (c == '\r') continue;
    if (c == '\n')
      out += " | ";
    else
      out += c;
  }
  return out;
}

// The host reaches a module only through its port published on loopback.
Result<std::string> loopback_target(const ServiceInfo& info, int port) {
  for (const auto& p : info.ports) {
    if (p.port.number != port) continue;
    in_addr addr{};
    if (p.host_ip.empty() || ::inet_pton(AF_INET, p.host_ip.c_str(), &addr) != 1 ||
        (ntohl(addr.s_addr) >> 24) != 127 || p.host_port == 0) {
      return Error(ErrorCode::internal, "module port published at '" + p.host_ip + ":" +
                                            std::to_string(p.host_port) + "', not on 127.0.0.0/8; refusing");
    }
    return p.host_ip + ":" + std::to_string(p.host_port);
  }
  return Error(ErrorCode::internal, "the module container has no published port " + std::to_string(port));
}

class ContainerModule final : public ModuleInstance {
 public:
  ContainerModule(backend::Backend& b, std::string enclave_id, std::string service,
                  std::unique_ptr<EnclaveApiServer> api, ModuleMetadata meta)
      : backend_(b),
        enclave_id_(std::move(enclave_id)),
        service_(std::move(service)),
        api_(std::move(api)),
        metadata_(std::move(meta)) {}

  ~ContainerModule() override {
    // SIGTERM (SIGKILL after 1 s): the module shuts down, its log stream
    // ends after delivering everything it wrote, then the container goes.
    (void)backend_.stop_service(enclave_id_, service_, 1);
    if (log_thread_.joinable()) log_thread_.join();
    Status removed = backend_.remove_service(enclave_id_, service_);
    if (!removed.ok())
      logger("engine")->warn("cannot remove module container: {}", removed.error().message());
  }

  void attach(std::shared_ptr<grpc::Channel> channel) {
    stub_ = module_api::ExecutableModuleService::NewStub(channel);
  }

  void follow_output(std::function<void(std::string_view)> sink) {
    if (!sink) return;
    log_thread_ = std::thread([this, sink = std::move(sink)] {
      (void)backend_.logs(enclave_id_, service_, true, [&](std::string_view chunk) {
        sink(chunk);
        return true;
      });
    });
  }

  const ModuleMetadata& metadata() const override { return metadata_; }

  Result<std::string> execute(EnclaveContext&, std::string_view params,
                              std::optional<std::chrono::milliseconds> timeout) override {
    MODHOST_TRY(validate_params(metadata_, params, "execute params"));
    grpc::ClientContext ctx;
    if (timeout) ctx.set_deadline(std::chrono::system_clock::now() + *timeout);
    {
      std::lock_guard lock(cancel_mutex_);
      if (cancelled_) return Error(ErrorCode::cancelled, "cancelled");
      current_ = &ctx;
    }
    module_api::ExecuteArgs args;
    args.set_params_json(std::string(params));
    module_api::ExecuteResponse response;
    grpc::Status s = stub_->Execute(&ctx, args, &response);
    {
      std::lock_guard lock(cancel_mutex_);
      current_ = nullptr;
      if (cancelled_) return Error(ErrorCode::cancelled, "module '" + metadata_.name + "' was cancelled");
    }
    if (s.ok()) return std::move(*response.mutable_response_json());
    if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED && timeout) {
      return Error(ErrorCode::timeout, "module '" + metadata_.name + "' did not finish within " +
                                           std::to_string(timeout->count()) + " ms");
    }
    // A module container that died under the call crashed. A broken
    // connection is how that looks from here; the engine may take a moment
    // to see the exit.
    auto info = backend_.inspect_service(enclave_id_, service_);
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE || s.error_code() == grpc::StatusCode::INTERNAL ||
        s.error_code() == grpc::StatusCode::CANCELLED) {
      for (int i = 0; i < 100 && info.ok() && info->status == ServiceStatus::running; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(30));
        info = backend_.inspect_service(enclave_id_, service_);
      }
    }
    if (info.ok() && info->status != ServiceStatus::running) {
      std::string logs;
      (void)backend_.logs(enclave_id_, service_, false, [&](std::string_view c) {
        logs.append(c);
        return true;
      });
      if (logs.size() > 2000) logs = "..." + logs.substr(logs.size() - 2000);
      logs = one_line(logs);
      return Error(ErrorCode::crashed,
                   "module '" + metadata_.name + "' crashed (its container exited with code " +
                       std::to_string(info->exit_code.value_or(-1)) + "); its last output: " + logs);
    }
    return Error(s.error_code() == grpc::StatusCode::INVALID_ARGUMENT ? ErrorCode::invalid_argument
                                                                      : ErrorCode::module_failed,
                 "module '" + metadata_.name + "' failed: " + s.error_message());
  }

  void cancel() override {
    std::lock_guard lock(cancel_mutex_);
    cancelled_ = true;
    if (current_) current_->TryCancel();
  }

 private:
  backend::Backend& backend_;
  std::string enclave_id_;
  std::string service_;
  std::unique_ptr<EnclaveApiServer> api_;
  ModuleMetadata metadata_;
  std::unique_ptr<module_api::ExecutableModuleService::Stub> stub_;
  std::thread log_thread_;
  std::mutex cancel_mutex_;
  grpc::ClientContext* current_ = nullptr;
  bool cancelled_ = false;
};

}  // namespace

Result<std::unique_ptr<ModuleInstance>> start_container_module(
    backend::Backend& backend, const std::string& enclave_id, const std::string& image,
    std::string_view load_params, EnclaveContext& api_context, const ContainerModuleOptions& options) {
  MODHOST_ASSIGN_OR_RETURN(bool present, backend.image_exists(image));
  if (!present) {
    return Error(ErrorCode::not_found, "image '" + image +
                                           "' not found; load it with 'modhost image load' or make it with "
                                           "'modhost image pack'");
  }
  MODHOST_ASSIGN_OR_RETURN(std::unique_ptr<EnclaveApiServer> api, EnclaveApiServer::start(api_context));

  const std::string api_socket = std::string(kEnclaveApiMountDir) + "/" + kEnclaveApiSocketName;
  boost::json::object serialized{{"enclaveId", enclave_id},
                                 {"listenPortNum", options.listen_port},
                                 {"apiContainerSocket", api_socket},
                                 {"serializedCustomParams", std::string(load_params)}};
  ServiceConfig config;
  config.name = "module-" + random_suffix();
  config.image = image;
  config.env["SERIALIZED_ARGS"] = boost::json::serialize(serialized);
  config.env["MODHOST_ENCLAVE_ID"] = enclave_id;
  config.env["MODHOST_ENCLAVE_API"] = api_socket;
  config.env["MODHOST_LOG_LEVEL"] = options.api_log_level;
  // On this host the engine connects to the module's address in the
  // enclave subnet; otherwise through a port published on loopback (which
  // costs Docker a proxy process to start and stop).
  const bool direct = backend.services_on_this_host();
  std::string subnet;
  if (direct) {
    MODHOST_ASSIGN_OR_RETURN(backend::EnclaveInfo enclave, backend.find_enclave(enclave_id));
    subnet = enclave.subnet;
  } else {
    config.ports.push_back(PortSpec{"grpc", static_cast<std::uint16_t>(options.listen_port), "tcp"});
  }
  config.kind = kModuleKind;
  config.labels["module-image"] = image;
  config.binds.push_back(BindMount{api->directory(), kEnclaveApiMountDir, true});

  auto deadline = Clock::now() + options.start_timeout;
  MODHOST_ASSIGN_OR_RETURN(ServiceInfo info, backend.add_service(enclave_id, config));

  ModuleMetadata meta;
  meta.name = image;
  meta.version = "";
  meta.params_format = ParamsFormat::text;  // a container module validates its own params
  meta.source = image;
  auto module = std::make_unique<ContainerModule>(backend, enclave_id, config.name, std::move(api), meta);
  module->follow_output(options.on_output);

  std::string target;
  if (direct) {
    if (!backend::ip_in_subnet(info.ip, subnet)) {
      return Error(ErrorCode::internal, "module container address '" + info.ip +
                                            "' is not in the enclave subnet " + subnet +
                                            "; refusing to connect");
    }
    target = info.ip + ":" + std::to_string(options.listen_port);
  } else {
    MODHOST_ASSIGN_OR_RETURN(target, loopback_target(info, options.listen_port));
  }
  // The module listens a few milliseconds after its container starts; until
  // it does, connections are refused (or, through a published port, accepted
  // by Docker's proxy and dropped). gRPC then backs off (100 ms at least,
  // whatever the channel arguments say), so the loop resets the backoff.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 10);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 10);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 100);
  auto channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  auto stub = module_api::ExecutableModuleService::NewStub(channel);
  // Ask IsAvailable, each time waiting up to 15 ms for the channel to
  // connect (the call goes out the moment it does); every 100 ms, a
  // container that exited fails the start at once.
  auto next_look = Clock::now() + std::chrono::milliseconds(100);
  while (true) {
    const auto now = Clock::now();
    if (now >= deadline) {
      return Error(ErrorCode::timeout, "module image '" + image + "' did not become available within " +
                                           std::to_string(options.start_timeout.count()) + " ms");
    }
    grpc::ClientContext ctx;
    ctx.set_wait_for_ready(true);
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::min<Clock::duration>(deadline - now, std::chrono::milliseconds(15)));
    google::protobuf::Empty req, resp;
    if (stub->IsAvailable(&ctx, req, &resp).ok()) break;
    grpc::experimental::ChannelResetConnectionBackoff(channel.get());
    if (Clock::now() >= next_look) {
      next_look = Clock::now() + std::chrono::milliseconds(100);
      auto now_info = backend.inspect_service(enclave_id, config.name);
      if (now_info.ok() && now_info->status != ServiceStatus::running) {
        std::string logs;
        (void)backend.logs(enclave_id, config.name, false, [&](std::string_view c) {
          logs.append(c);
          return true;
        });
        logs = one_line(logs);
        return Error(ErrorCode::failed_precondition,
                     "module image '" + image + "' exited before it became available (code " +
                         std::to_string(now_info->exit_code.value_or(-1)) +
                         "); its output: " + (logs.empty() ? "(none)" : logs));
      }
    }
    // A call that failed without waiting (the module answered with an
    // error): do not spin.
    if (Clock::now() - now < std::chrono::milliseconds(5))
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  module->attach(channel);
  return std::unique_ptr<ModuleInstance>(std::move(module));
}

}  // namespace modhost::engine
