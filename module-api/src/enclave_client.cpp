#include "modhost/enclave_client.hpp"

#include <grpcpp/grpcpp.h>

#include <cstdio>

#include "enclave_api.grpc.pb.h"
#include "enclave_convert.hpp"

namespace modhost {
namespace {

using google::protobuf::Empty;

class GrpcEnclaveContext final : public EnclaveContext {
 public:
  GrpcEnclaveContext(std::shared_ptr<grpc::Channel> channel, std::string enclave_id)
      : stub_(enclave_api::EnclaveService::NewStub(std::move(channel))), enclave_id_(std::move(enclave_id)) {}

  std::string enclave_id() const override { return enclave_id_; }

  void log(LogLevel level, std::string_view message) override {
    static const char* words[] = {"trace", "debug", "info", "warn", "error"};
    enclave_api::LogArgs args;
    args.set_level(words[static_cast<int>(level)]);
    args.set_message(std::string(message));
    Empty out;
    grpc::ClientContext ctx;
    if (!stub_->Log(&ctx, args, &out).ok()) {
      // The host is gone: stderr is the last place left to say it.
      std::fprintf(stderr, "%s: %.*s\n", words[static_cast<int>(level)], static_cast<int>(message.size()),
                   message.data());
    }
  }

  Result<ServiceInfo> add_service(const ServiceConfig& config) override {
    enclave_api::AddServiceArgs args;
    convert::to_proto(config, &args);
    MODHOST_ASSIGN_OR_RETURN(enclave_api::ServiceInfo out, call(&Stub::AddService, args));
    return convert::from_proto(out);
  }

  Status remove_service(std::string_view name) override {
    return done(call(&Stub::RemoveService, ref(name)));
  }

  Result<std::vector<ServiceInfo>> list_services() override {
    MODHOST_ASSIGN_OR_RETURN(enclave_api::ListServicesResponse out, call(&Stub::ListServices, Empty{}));
    std::vector<ServiceInfo> v;
    for (const auto& i : out.services()) v.push_back(convert::from_proto(i));
    return v;
  }

  Result<ServiceInfo> inspect_service(std::string_view name) override {
    MODHOST_ASSIGN_OR_RETURN(enclave_api::ServiceInfo out, call(&Stub::InspectService, ref(name)));
    return convert::from_proto(out);
  }

  Result<ExecResult> exec(std::string_view service, const std::vector<std::string>& argv) override {
    enclave_api::ExecArgs args;
    args.set_service(std::string(service));
    for (const auto& a : argv) args.add_argv(a);
    MODHOST_ASSIGN_OR_RETURN(enclave_api::ExecResponse out, call(&Stub::Exec, args));
    return ExecResult{out.exit_code(), out.output()};
  }

  Status stop_service(std::string_view name, int grace_seconds) override {
    enclave_api::StopServiceArgs args;
    args.set_name(std::string(name));
    args.set_grace_seconds(grace_seconds);
    return done(call(&Stub::StopService, args));
  }

  Status start_service(std::string_view name) override { return done(call(&Stub::StartService, ref(name))); }
  Status restart_service(std::string_view name) override {
    return done(call(&Stub::RestartService, ref(name)));
  }
  Status pause_service(std::string_view name) override { return done(call(&Stub::PauseService, ref(name))); }
  Status unpause_service(std::string_view name) override {
    return done(call(&Stub::UnpauseService, ref(name)));
  }

  Status kill_service(std::string_view name, int signal) override {
    enclave_api::KillServiceArgs args;
    args.set_name(std::string(name));
    args.set_signal(signal);
    return done(call(&Stub::KillService, args));
  }

  Result<std::string> service_logs(std::string_view name) override {
    MODHOST_ASSIGN_OR_RETURN(enclave_api::ServiceLogsResponse out, call(&Stub::ServiceLogs, ref(name)));
    return out.logs();
  }

  Status wait_ready(std::string_view name, const ReadinessCheck& check) override {
    enclave_api::WaitReadyArgs args;
    convert::to_proto(check, &args);
    args.set_service(std::string(name));
    return done(call(&Stub::WaitReady, args));
  }

  Result<ServiceConfig> service_config(std::string_view name) override {
    MODHOST_ASSIGN_OR_RETURN(enclave_api::AddServiceArgs out, call(&Stub::ServiceConfig, ref(name)));
    return convert::from_proto(out);
  }

  Status copy_to_service(std::string_view name, std::string_view dir, std::string_view tar) override {
    enclave_api::CopyToServiceArgs args;
    args.set_service(std::string(name));
    args.set_dir(std::string(dir));
    args.set_tar(std::string(tar));
    return done(call(&Stub::CopyToService, args));
  }

  Status write_file(std::string_view name, std::string_view path, std::string_view content,
                    std::uint32_t mode) override {
    enclave_api::WriteFileArgs args;
    args.set_service(std::string(name));
    args.set_path(std::string(path));
    args.set_content(std::string(content));
    args.set_mode(mode);
    return done(call(&Stub::WriteFile, args));
  }

  Result<std::string> download_artifact(std::string_view name) override {
    enclave_api::ArtifactRef args;
    args.set_name(std::string(name));
    MODHOST_ASSIGN_OR_RETURN(enclave_api::ArtifactData out, call(&Stub::DownloadArtifact, args));
    return std::move(*out.mutable_tgz());
  }

  Status store_artifact(std::string_view name, std::string_view tgz) override {
    enclave_api::StoreArtifactArgs args;
    args.set_name(std::string(name));
    args.set_tgz(std::string(tgz));
    return done(call(&Stub::StoreArtifact, args));
  }

  Status store_from_service(std::string_view service, std::string_view path, std::string_view name) override {
    enclave_api::StoreFromServiceArgs args;
    args.set_service(std::string(service));
    args.set_path(std::string(path));
    args.set_name(std::string(name));
    return done(call(&Stub::StoreFromService, args));
  }

  Result<std::string> execute_module(std::string_view reference, std::string_view load_params,
                                     std::string_view execute_params) override {
    enclave_api::ExecuteModuleArgs args;
    args.set_reference(std::string(reference));
    args.set_load_params(std::string(load_params));
    args.set_execute_params(std::string(execute_params));
    MODHOST_ASSIGN_OR_RETURN(enclave_api::ExecuteModuleResponse out, call(&Stub::ExecuteModule, args));
    return std::move(*out.mutable_result());
  }

  Status repartition(const NetworkPartitioning& plan) override {
    enclave_api::Partitioning args;
    convert::to_proto(plan, &args);
    return done(call(&Stub::Repartition, args));
  }

 private:
  using Stub = enclave_api::EnclaveService::Stub;

  // One unary call: the response, or the host's error.
  template <typename In, typename Out>
  Result<Out> call(grpc::Status (Stub::*method)(grpc::ClientContext*, const In&, Out*), const In& in) {
    Out out;
    grpc::ClientContext ctx;
    if (auto s = ((*stub_).*method)(&ctx, in, &out); !s.ok()) return convert::to_error(s);
    return out;
  }

  // For calls that answer nothing.
  static Status done(const Result<Empty>& r) { return r.ok() ? ok_status() : Status(r.error()); }

  static enclave_api::ServiceRef ref(std::string_view name) {
    enclave_api::ServiceRef r;
    r.set_name(std::string(name));
    return r;
  }

  std::unique_ptr<Stub> stub_;
  std::string enclave_id_;
};

}  // namespace

std::unique_ptr<EnclaveContext> connect_enclave(const std::string& address, const std::string& enclave_id) {
  std::string target = address.rfind("unix:", 0) == 0 ? address : "unix:" + address;
  return std::make_unique<GrpcEnclaveContext>(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()),
                                              enclave_id);
}

}  // namespace modhost
