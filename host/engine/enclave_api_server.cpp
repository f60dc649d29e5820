#include "engine/enclave_api_server.hpp"

#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "enclave_api.grpc.pb.h"
#include "enclave_convert.hpp"

namespace modhost::engine {
namespace {

namespace fs = std::filesystem;
using google::protobuf::Empty;

grpc::Status done(const Status& s) { return s.ok() ? grpc::Status::OK : convert::to_status(s.error()); }

class EnclaveServiceImpl final : public enclave_api::EnclaveService::Service {
 public:
  explicit EnclaveServiceImpl(EnclaveContext& ctx) : ctx_(ctx) {}

  grpc::Status AddService(grpc::ServerContext*, const enclave_api::AddServiceArgs* in,
                          enclave_api::ServiceInfo* out) override {
    auto r = ctx_.add_service(convert::from_proto(*in));
    if (!r.ok()) return convert::to_status(r.error());
    convert::to_proto(r.value(), out);
    return grpc::Status::OK;
  }
  grpc::Status RemoveService(grpc::ServerContext*, const enclave_api::ServiceRef* in, Empty*) override {
    return done(ctx_.remove_service(in->name()));
  }
  grpc::Status ListServices(grpc::ServerContext*, const Empty*,
                            enclave_api::ListServicesResponse* out) override {
    auto r = ctx_.list_services();
    if (!r.ok()) return convert::to_status(r.error());
    for (const auto& s : r.value()) convert::to_proto(s, out->add_services());
    return grpc::Status::OK;
  }
  grpc::Status InspectService(grpc::ServerContext*, const enclave_api::ServiceRef* in,
                              enclave_api::ServiceInfo* out) override {
    auto r = ctx_.inspect_service(in->name());
    if (!r.ok()) return convert::to_status(r.error());
    convert::to_proto(r.value(), out);
    return grpc::Status::OK;
  }
  grpc::Status Exec(grpc::ServerContext*, const enclave_api::ExecArgs* in,
                    enclave_api::ExecResponse* out) override {
    auto r = ctx_.exec(in->service(), {in->argv().begin(), in->argv().end()});
    if (!r.ok()) return convert::to_status(r.error());
    out->set_exit_code(r->exit_code);
    out->set_output(r->output);
    return grpc::Status::OK;
  }
  grpc::Status StopService(grpc::ServerContext*, const enclave_api::StopServiceArgs* in, Empty*) override {
    return done(ctx_.stop_service(in->name(), in->grace_seconds()));
  }
  grpc::Status StartService(grpc::ServerContext*, const enclave_api::ServiceRef* in, Empty*) override {
    return done(ctx_.start_service(in->name()));
  }
  grpc::Status RestartService(grpc::ServerContext*, const enclave_api::ServiceRef* in, Empty*) override {
    return done(ctx_.restart_service(in->name()));
  }
  grpc::Status PauseService(grpc::ServerContext*, const enclave_api::ServiceRef* in, Empty*) override {
    return done(ctx_.pause_service(in->name()));
  }
  grpc::Status UnpauseService(grpc::ServerContext*, const enclave_api::ServiceRef* in, Empty*) override {
    return done(ctx_.unpause_service(in->name()));
  }
  grpc::Status KillService(grpc::ServerContext*, const enclave_api::KillServiceArgs* in, Empty*) override {
    return done(ctx_.kill_service(in->name(), in->signal()));
  }
  grpc::Status ServiceLogs(grpc::ServerContext*, const enclave_api::ServiceRef* in,
                           enclave_api::ServiceLogsResponse* out) override {
    auto r = ctx_.service_logs(in->name());
    if (!r.ok()) return convert::to_status(r.error());
    out->set_logs(std::move(r).value());
    return grpc::Status::OK;
  }
  grpc::Status Log(grpc::ServerContext*, const enclave_api::LogArgs* in, Empty*) override {
    const std::string& l = in->level();
    LogLevel level = l == "trace"   ? LogLevel::trace
                     : l == "debug" ? LogLevel::debug
                     : l == "warn"  ? LogLevel::warn
                     : l == "error" ? LogLevel::error
                                    : LogLevel::info;
    ctx_.log(level, in->message());
    return grpc::Status::OK;
  }
  grpc::Status WaitReady(grpc::ServerContext*, const enclave_api::WaitReadyArgs* in, Empty*) override {
    return done(ctx_.wait_ready(in->service(), convert::from_proto(*in)));
  }
  grpc::Status ServiceConfig(grpc::ServerContext*, const enclave_api::ServiceRef* in,
                             enclave_api::AddServiceArgs* out) override {
    auto r = ctx_.service_config(in->name());
    if (!r.ok()) return convert::to_status(r.error());
    convert::to_proto(r.value(), out);
    return grpc::Status::OK;
  }
  grpc::Status CopyToService(grpc::ServerContext*, const enclave_api::CopyToServiceArgs* in,
                             Empty*) override {
    return done(ctx_.copy_to_service(in->service(), in->dir(), in->tar()));
  }
  grpc::Status WriteFile(grpc::ServerContext*, const enclave_api::WriteFileArgs* in, Empty*) override {
    return done(ctx_.write_file(in->service(), in->path(), in->content(), in->mode()));
  }
  grpc::Status DownloadArtifact(grpc::ServerContext*, const enclave_api::ArtifactRef* in,
                                enclave_api::ArtifactData* out) override {
    auto r = ctx_.download_artifact(in->name());
    if (!r.ok()) return convert::to_status(r.error());
    out->set_tgz(std::move(r).value());
    return grpc::Status::OK;
  }
  grpc::Status StoreArtifact(grpc::ServerContext*, const enclave_api::StoreArtifactArgs* in,
                             Empty*) override {
    return done(ctx_.store_artifact(in->name(), in->tgz()));
  }
  grpc::Status StoreFromService(grpc::ServerContext*, const enclave_api::StoreFromServiceArgs* in,
                                Empty*) override {
    return done(ctx_.store_from_service(in->service(), in->path(), in->name()));
  }
  grpc::Status ExecuteModule(grpc::ServerContext*, const enclave_api::ExecuteModuleArgs* in,
                             enclave_api::ExecuteModuleResponse* out) override {
    auto r = ctx_.execute_module(in->reference(), in->load_params(), in->execute_params());
    if (!r.ok()) return convert::to_status(r.error());
    out->set_result(std::move(r).value());
    return grpc::Status::OK;
  }
  grpc::Status Repartition(grpc::ServerContext*, const enclave_api::Partitioning* in, Empty*) override {
    return done(ctx_.repartition(convert::from_proto(*in)));
  }

 private:
  EnclaveContext& ctx_;
};

}  // namespace

struct EnclaveApiServer::Impl {
  explicit Impl(EnclaveContext& ctx) : service(ctx) {}
  EnclaveServiceImpl service;
  std::unique_ptr<grpc::Server> server;
  std::string directory;
  std::string socket;
};

EnclaveApiServer::EnclaveApiServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

EnclaveApiServer::~EnclaveApiServer() {
  if (impl_->server) impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  std::error_code ec;
  fs::remove_all(impl_->directory, ec);
}

const std::string& EnclaveApiServer::directory() const { return impl_->directory; }
const std::string& EnclaveApiServer::socket_path() const { return impl_->socket; }

Result<std::unique_ptr<EnclaveApiServer>> EnclaveApiServer::start(EnclaveContext& context) {
  auto impl = std::make_unique<Impl>(context);
  std::error_code ec;
  std::string tmpl = (fs::temp_directory_path(ec) / "modhost-enclave-api-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) {
    return Error(ErrorCode::unavailable,
                 std::string("cannot create the enclave API directory: ") + std::strerror(errno));
  }
  // Module containers may run as any user; the directory is only ever
  // mounted into this enclave's module containers.
  ::chmod(tmpl.c_str(), 0755);
  impl->directory = tmpl;
  impl->socket = tmpl + "/" + kEnclaveApiSocketName;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + impl->socket, grpc::InsecureServerCredentials());
  builder.RegisterService(&impl->service);
  impl->server = builder.BuildAndStart();
  if (!impl->server) {
    fs::remove_all(tmpl, ec);
    return Error(ErrorCode::unavailable, "cannot serve the enclave API on '" + impl->socket + "'");
  }
  ::chmod(impl->socket.c_str(), 0666);
  return std::unique_ptr<EnclaveApiServer>(new EnclaveApiServer(std::move(impl)));
}

}  // namespace modhost::engine
