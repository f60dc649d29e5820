#include "daemon/client.hpp"

#include <grpcpp/grpcpp.h>

#include <fstream>
#include <mutex>
#include <sstream>

#include "daemon/wire.hpp"
#include "enclave_convert.hpp"
#include "engine_api.grpc.pb.h"

namespace modhost::daemon {
namespace {

namespace api = engine_api;
using google::protobuf::Empty;

constexpr int kMaxMessageBytes = 1 << 30;          // artifacts and image archives travel whole
constexpr std::size_t kImageChunkBytes = 1 << 20;  // image archives go up in these

Result<std::string> read_whole(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return Error(ErrorCode::invalid_argument, "cannot read the " + std::string(what) + " '" + path + "'");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// One cancellable bidirectional call (RunModule, RunStarlark): `start` goes
// first, a cancel request follows when `cancel` fires, and `on_update` sees
// each update until it returns true (the outcome). The call's final status.
template <typename Request, typename Update, typename Stream>
grpc::Status cancellable_call(Stream& stream, const Request& start, engine::CancelToken& cancel,
                              const std::function<bool(const Update&)>& on_update) {
  std::mutex write_mutex;
  bool closed = false;
  stream->Write(start);
  cancel.on_cancel([&] {
    std::lock_guard lock(write_mutex);
    if (closed) return;
    Request stop;
    stop.set_cancel(true);
    stream->Write(stop);
  });
  Update u;
  while (stream->Read(&u)) {
    if (on_update(u)) break;  // the engine ends the call once this side half-closes
  }
  cancel.on_cancel({});
  {
    std::lock_guard lock(write_mutex);
    closed = true;
    stream->WritesDone();
  }
  return stream->Finish();
}

class Remote final : public RemoteEngine, public backend::Backend {
 public:
  Remote(std::string address, std::shared_ptr<grpc::Channel> channel)
      : address_(std::move(address)),
        channel_(std::move(channel)),
        stub_(api::EngineService::NewStub(channel_)) {}

  const std::string& address() const override { return address_; }

  Result<RemoteInfo> info(std::chrono::milliseconds timeout) override {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + timeout);
    ctx.set_wait_for_ready(true);  // rides out the socket appearing a moment late
    Empty in;
    api::EngineInfo out;
    grpc::Status s = stub_->Info(&ctx, in, &out);
    if (!s.ok()) {
      if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
          s.error_code() == grpc::StatusCode::UNAVAILABLE) {
        return Error(ErrorCode::unavailable,
                     "no modhost engine answers at " + address_ + ": start one with 'modhost engine start'");
      }
      return wire::error_of(ctx, s, address_);
    }
    RemoteInfo i;
    i.version = out.version();
    i.backend = out.backend();
    i.pid = out.pid();
    i.listen.assign(out.listen().begin(), out.listen().end());
    i.started = out.started();
    return i;
  }

  // --- EngineApi ---
  Result<backend::Backend*> backend() override { return static_cast<backend::Backend*>(this); }

  Status remove_enclave(const std::string& enclave_id, bool force) override {
    api::RemoveEnclaveArgs in;
    in.set_id(enclave_id);
    in.set_force(force);
    return call(&Stub::RemoveEnclave, in);
  }

  // (also Backend::clean: the engine's clean is the backend's and more)
  Result<backend::CleanReport> clean(bool all) override {
    api::CleanArgs in;
    in.set_all(all);
    MODHOST_ASSIGN_OR_RETURN(api::CleanReport out, call<api::CleanReport>(&Stub::Clean, in));
    return backend::CleanReport{{out.removed().begin(), out.removed().end()}};
  }

  Status timeline(const std::string& enclave_id, bool follow, const engine::TimelineSink& sink) override {
    api::TimelineArgs in;
    in.set_enclave_id(enclave_id);
    in.set_follow(follow);
    grpc::ClientContext ctx;
    auto reader = stub_->Timeline(&ctx, in);
    api::TimelineEvent e;
    while (reader->Read(&e)) {
      if (!sink(wire::from_proto(e))) {
        ctx.TryCancel();
        break;
      }
    }
    grpc::Status s = reader->Finish();
    if (!s.ok() && s.error_code() != grpc::StatusCode::CANCELLED) return wire::error_of(ctx, s, address_);
    return ok_status();
  }

  engine::ModuleRunOutcome run_module(const engine::ModuleRunRequest& r,
                                      const engine::ModuleRunObserver& observer,
                                      engine::CancelToken& cancel) override {
    api::RunModuleArgs in;
    wire::to_proto(r, &in);

    engine::ModuleRunOutcome out;
    grpc::ClientContext ctx;
    auto stream = stub_->RunModule(&ctx);
    api::RunModuleRequest start;
    *start.mutable_start() = in;
    bool have_outcome = false;
    std::function<bool(const api::RunModuleUpdate&)> on_update = [&](const api::RunModuleUpdate& u) {
      if (u.has_progress() && observer.progress) observer.progress(u.progress());
      if (u.has_output() && observer.output) observer.output(u.output());
      if (!u.has_outcome()) return false;
      const auto& o = u.outcome();
      have_outcome = true;
      out.module.name = o.name();
      out.module.version = o.version();
      out.module.source = o.source();
      out.enclave_id = o.enclave_id();
      out.enclave_name = o.enclave_name();
      if (o.ok()) {
        out.result = o.result();
      } else {
        out.result =
            Error(wire::error_code_from(o.error_code()).value_or(ErrorCode::internal), o.error_message());
      }
      return true;
    };
    grpc::Status s = cancellable_call(stream, start, cancel, on_update);
    if (!have_outcome) {
      out.result = cancel.cancelled()
                       ? Error(ErrorCode::cancelled, "interrupted: the engine cancelled the module")
                       : wire::error_of(ctx, s, address_);
    }
    return out;
  }

  engine::StarlarkRunOutcome run_starlark(const engine::StarlarkRunRequest& r,
                                          const engine::StarlarkRunSink& sink,
                                          engine::CancelToken& cancel) override {
    api::RunStarlarkRequest start;
    auto* in = start.mutable_start();
    in->set_enclave(r.enclave);
    in->set_plan_json(r.plan_json);
    in->set_dry_run(r.dry_run);
    in->set_parallelism(r.parallelism);
    in->set_no_skip(!r.skip_applied);
    engine::StarlarkRunOutcome out;
    grpc::ClientContext ctx;
    auto stream = stub_->RunStarlark(&ctx);
    bool have_outcome = false;
    std::function<bool(const api::RunStarlarkUpdate&)> on_update = [&](const api::RunStarlarkUpdate& u) {
      if (u.has_event() && sink) {
        const auto& e = u.event();
        engine::StarlarkRunEvent ev;
        ev.kind = e.kind() == "instruction" ? engine::StarlarkRunEvent::Kind::instruction
                  : e.kind() == "result"    ? engine::StarlarkRunEvent::Kind::result
                  : e.kind() == "skipped"   ? engine::StarlarkRunEvent::Kind::skipped
                                            : engine::StarlarkRunEvent::Kind::progress;
        ev.index = e.index();
        ev.text = e.text();
        sink(ev);
      }
      if (!u.has_outcome()) return false;
      const auto& o = u.outcome();
      have_outcome = true;
      out.enclave_id = o.enclave_id();
      out.enclave_name = o.enclave_name();
      out.enclave_created = o.enclave_created();
      out.output_json = o.output_json().empty() ? "null" : o.output_json();
      out.executed = o.executed();
      out.skipped = o.skipped();
      if (!o.ok()) {
        out.status =
            Error(wire::error_code_from(o.error_code()).value_or(ErrorCode::internal), o.error_message());
      }
      return true;
    };
    grpc::Status s = cancellable_call(stream, start, cancel, on_update);
    if (!have_outcome) {
      out.status = cancel.cancelled()
                       ? Error(ErrorCode::cancelled, "interrupted: the engine cancelled the run")
                       : Status(wire::error_of(ctx, s, address_));
    }
    return out;
  }

  Result<engine::LoadedModule> load_module(const engine::ModuleRunRequest& r) override {
    api::RunModuleArgs in;
    wire::to_proto(r, &in);
    MODHOST_ASSIGN_OR_RETURN(api::LoadedModule out, call<api::LoadedModule>(&Stub::LoadModule, in));
    return wire::from_proto(out);
  }
  Result<std::string> execute_loaded(const std::string& id, const std::string& params,
                                     std::optional<std::chrono::milliseconds> timeout) override {
    api::ExecuteLoadedArgs in;
    in.set_id(id);
    in.set_params(params);
    if (timeout) in.set_timeout_ms(timeout->count());
    MODHOST_ASSIGN_OR_RETURN(api::ExecuteLoadedResponse out,
                             call<api::ExecuteLoadedResponse>(&Stub::ExecuteLoaded, in));
    return out.result();
  }
  Status unload_module(const std::string& id) override {
    api::LoadedModuleRef in;
    in.set_id(id);
    return call(&Stub::UnloadModule, in);
  }
  Result<std::vector<engine::LoadedModule>> loaded_modules(const std::string& enclave_id) override {
    MODHOST_ASSIGN_OR_RETURN(api::LoadedModuleList out,
                             call<api::LoadedModuleList>(&Stub::ListLoaded, enclave_ref(enclave_id)));
    std::vector<engine::LoadedModule> all;
    for (const auto& m : out.modules()) all.push_back(wire::from_proto(m));
    return all;
  }

  // --- backend::Backend ---
  std::string_view name() const override { return "daemon"; }

  Result<backend::EnclaveInfo> create_enclave(std::string_view name) override {
    api::CreateEnclaveArgs in;
    in.set_name(std::string(name));
    MODHOST_ASSIGN_OR_RETURN(api::Enclave out, call<api::Enclave>(&Stub::CreateEnclave, in));
    return wire::from_proto(out);
  }
  Result<std::vector<backend::EnclaveInfo>> list_enclaves() override {
    MODHOST_ASSIGN_OR_RETURN(api::EnclaveList out, call<api::EnclaveList>(&Stub::ListEnclaves, Empty()));
    std::vector<backend::EnclaveInfo> all;
    for (const auto& e : out.enclaves()) all.push_back(wire::from_proto(e));
    return all;
  }
  Result<backend::EnclaveInfo> find_enclave(std::string_view id_or_name) override {
    MODHOST_ASSIGN_OR_RETURN(api::Enclave out,
                             call<api::Enclave>(&Stub::FindEnclave, enclave_ref(id_or_name)));
    return wire::from_proto(out);
  }
  Status stop_enclave(std::string_view enclave_id) override {
    return call(&Stub::StopEnclave, enclave_ref(enclave_id));
  }
  Status remove_enclave(std::string_view enclave_id, bool force) override {
    return remove_enclave(std::string(enclave_id), force);
  }

  Result<ServiceInfo> add_service(std::string_view enclave_id, const ServiceConfig& config) override {
    api::AddServiceArgs in;
    in.set_enclave_id(std::string(enclave_id));
    convert::to_proto(config, in.mutable_config());
    MODHOST_ASSIGN_OR_RETURN(enclave_api::ServiceInfo out,
                             call<enclave_api::ServiceInfo>(&Stub::AddService, in));
    return convert::from_proto(out);
  }
  Result<std::vector<ServiceInfo>> list_services(std::string_view enclave_id) override {
    MODHOST_ASSIGN_OR_RETURN(
        enclave_api::ListServicesResponse out,
        call<enclave_api::ListServicesResponse>(&Stub::ListServices, enclave_ref(enclave_id)));
    std::vector<ServiceInfo> all;
    for (const auto& s : out.services()) all.push_back(convert::from_proto(s));
    return all;
  }
  Result<ServiceInfo> inspect_service(std::string_view enclave_id, std::string_view name) override {
    MODHOST_ASSIGN_OR_RETURN(
        enclave_api::ServiceInfo out,
        call<enclave_api::ServiceInfo>(&Stub::InspectService, service_ref(enclave_id, name)));
    return convert::from_proto(out);
  }
  Status remove_service(std::string_view enclave_id, std::string_view name) override {
    return call(&Stub::RemoveService, service_ref(enclave_id, name));
  }
  Status stop_service(std::string_view enclave_id, std::string_view name, int grace_seconds) override {
    api::StopServiceArgs in;
    in.set_enclave_id(std::string(enclave_id));
    in.set_name(std::string(name));
    in.set_grace_seconds(grace_seconds);
    return call(&Stub::StopService, in);
  }
  Status start_service(std::string_view enclave_id, std::string_view name) override {
    return call(&Stub::StartService, service_ref(enclave_id, name));
  }
  Status restart_service(std::string_view enclave_id, std::string_view name) override {
    return call(&Stub::RestartService, service_ref(enclave_id, name));
  }
  Status pause_service(std::string_view enclave_id, std::string_view name) override {
    return call(&Stub::PauseService, service_ref(enclave_id, name));
  }
  Status unpause_service(std::string_view enclave_id, std::string_view name) override {
    return call(&Stub::UnpauseService, service_ref(enclave_id, name));
  }
  Status kill_service(std::string_view enclave_id, std::string_view name, int signal) override {
    api::KillServiceArgs in;
    in.set_enclave_id(std::string(enclave_id));
    in.set_name(std::string(name));
    in.set_signal(signal);
    return call(&Stub::KillService, in);
  }
  Result<ExecResult> exec(std::string_view enclave_id, std::string_view name,
                          const std::vector<std::string>& argv) override {
    api::ExecArgs in;
    in.set_enclave_id(std::string(enclave_id));
    in.set_name(std::string(name));
    for (const auto& a : argv) in.add_argv(a);
    MODHOST_ASSIGN_OR_RETURN(enclave_api::ExecResponse out, call<enclave_api::ExecResponse>(&Stub::Exec, in));
    return ExecResult{out.exit_code(), out.output()};
  }
  Status logs(std::string_view enclave_id, std::string_view name, bool follow,
              const backend::LogSink& sink) override {
    api::LogsArgs in;
    in.set_enclave_id(std::string(enclave_id));
    in.set_name(std::string(name));
    in.set_follow(follow);
    grpc::ClientContext ctx;
    auto reader = stub_->Logs(&ctx, in);
    api::Chunk c;
    while (reader->Read(&c)) {
      if (!sink(c.data())) {
        ctx.TryCancel();
        break;
      }
    }
    grpc::Status s = reader->Finish();
    if (!s.ok() && s.error_code() != grpc::StatusCode::CANCELLED) return wire::error_of(ctx, s, address_);
    return ok_status();
  }
  Status wait_ready(std::string_view enclave_id, std::string_view name,
                    const ReadinessCheck& check) override {
    api::WaitReadyArgs in;
    in.set_enclave_id(std::string(enclave_id));
    convert::to_proto(check, in.mutable_check());
    in.mutable_check()->set_service(std::string(name));
    return call(&Stub::WaitReady, in);
  }
  Result<ServiceConfig> service_config(std::string_view enclave_id, std::string_view name) override {
    MODHOST_ASSIGN_OR_RETURN(
        enclave_api::AddServiceArgs out,
        call<enclave_api::AddServiceArgs>(&Stub::ServiceConfig, service_ref(enclave_id, name)));
    return convert::from_proto(out);
  }
  Status copy_to_service(std::string_view enclave_id, std::string_view name, std::string_view dir,
                         std::string_view tar) override {
    api::CopyToServiceArgs in;
    in.set_enclave_id(std::string(enclave_id));
    in.set_name(std::string(name));
    in.set_dir(std::string(dir));
    in.set_tar(std::string(tar));
    return call(&Stub::CopyToService, in);
  }

  Result<backend::ArtifactInfo> store_artifact(std::string_view enclave_id, std::string_view name,
                                               std::string_view tgz) override {
    api::StoreArtifactArgs in;
    in.set_enclave_id(std::string(enclave_id));
    in.set_name(std::string(name));
    in.set_tgz(std::string(tgz));
    MODHOST_ASSIGN_OR_RETURN(api::Artifact out, call<api::Artifact>(&Stub::StoreArtifact, in));
    return wire::from_proto(out);
  }
  Result<std::vector<backend::ArtifactInfo>> list_artifacts(std::string_view enclave_id) override {
    MODHOST_ASSIGN_OR_RETURN(api::ArtifactList out,
                             call<api::ArtifactList>(&Stub::ListArtifacts, enclave_ref(enclave_id)));
    std::vector<backend::ArtifactInfo> all;
    for (const auto& a : out.artifacts()) all.push_back(wire::from_proto(a));
    return all;
  }
  Result<std::string> download_artifact(std::string_view enclave_id, std::string_view name) override {
    api::ArtifactRef in;
    in.set_enclave_id(std::string(enclave_id));
    in.set_name(std::string(name));
    MODHOST_ASSIGN_OR_RETURN(api::Chunk out, call<api::Chunk>(&Stub::DownloadArtifact, in));
    return std::move(*out.mutable_data());
  }
  Status remove_artifact(std::string_view enclave_id, std::string_view name) override {
    api::ArtifactRef in;
    in.set_enclave_id(std::string(enclave_id));
    in.set_name(std::string(name));
    return call(&Stub::RemoveArtifact, in);
  }
  Result<backend::ArtifactInfo> store_from_service(std::string_view enclave_id, std::string_view service,
                                                   std::string_view path, std::string_view name) override {
    api::StoreFromServiceArgs in;
    in.set_enclave_id(std::string(enclave_id));
    in.set_service(std::string(service));
    in.set_path(std::string(path));
    in.set_name(std::string(name));
    MODHOST_ASSIGN_OR_RETURN(api::Artifact out, call<api::Artifact>(&Stub::StoreFromService, in));
    return wire::from_proto(out);
  }

  Status load_image(std::string_view archive_path) override {
    // Read here: the archive is on this machine, the engine may not be.
    MODHOST_ASSIGN_OR_RETURN(std::string archive, read_whole(std::string(archive_path), "image archive"));
    grpc::ClientContext ctx;
    Empty out;
    auto writer = stub_->LoadImage(&ctx, &out);
    for (std::size_t at = 0; at < archive.size(); at += kImageChunkBytes) {
      api::Chunk c;
      c.set_data(archive.substr(at, kImageChunkBytes));
      if (!writer->Write(c)) break;
    }
    writer->WritesDone();
    grpc::Status s = writer->Finish();
    if (!s.ok()) return wire::error_of(ctx, s, address_);
    return ok_status();
  }
  Result<bool> image_exists(std::string_view reference) override {
    api::ImageRef in;
    in.set_reference(std::string(reference));
    MODHOST_ASSIGN_OR_RETURN(api::ImageExistsResponse out,
                             call<api::ImageExistsResponse>(&Stub::ImageExists, in));
    return out.exists();
  }

  Status events(std::string_view enclave_id, bool follow, const backend::EventSink& sink) override {
    // The timeline's container events are the backend's events.
    return timeline(std::string(enclave_id), follow, [&](const engine::TimelineEvent& t) {
      if (t.kind == "network") return true;
      return sink(backend::EnclaveEvent{t.time_ns, t.kind, t.subject, t.action, t.attributes});
    });
  }

  Result<std::optional<int>> network_namespace_pid(std::string_view, std::string_view) override {
    // Network control runs in the engine, on its own host.
    return std::optional<int>();
  }

  Result<std::vector<std::string>> recover() override {
    MODHOST_ASSIGN_OR_RETURN(api::CleanReport out, call<api::CleanReport>(&Stub::Recover, Empty()));
    return std::vector<std::string>(out.removed().begin(), out.removed().end());
  }

 private:
  using Stub = api::EngineService::Stub;

  static api::EnclaveRef enclave_ref(std::string_view id) {
    api::EnclaveRef r;
    r.set_id(std::string(id));
    return r;
  }
  static api::ServiceRef service_ref(std::string_view enclave_id, std::string_view name) {
    api::ServiceRef r;
    r.set_enclave_id(std::string(enclave_id));
    r.set_name(std::string(name));
    return r;
  }

  // One unary call; the reply, or the error as the engine said it.
  template <typename Out, typename In>
  Result<Out> call(grpc::Status (Stub::*method)(grpc::ClientContext*, const In&, Out*), const In& in) {
    grpc::ClientContext ctx;
    Out out;
    grpc::Status s = (stub_.get()->*method)(&ctx, in, &out);
    if (!s.ok()) return wire::error_of(ctx, s, address_);
    return out;
  }
  template <typename In>
  Status call(grpc::Status (Stub::*method)(grpc::ClientContext*, const In&, Empty*), const In& in) {
    MODHOST_TRY(call<Empty>(method, in));
    return ok_status();
  }

  std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Stub> stub_;
};

}  // namespace

Result<std::unique_ptr<RemoteEngine>> connect(const Endpoint& endpoint, std::chrono::milliseconds timeout) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  std::shared_ptr<grpc::ChannelCredentials> creds;
  std::string target;
  if (endpoint.address.rfind("unix://", 0) == 0) {
    target = "unix:" + endpoint.address.substr(7);
    creds = grpc::InsecureChannelCredentials();  // the socket's 0600 is the guard
  } else if (endpoint.address.rfind("tcp://", 0) == 0) {
    target = endpoint.address.substr(6);
    if (endpoint.tls_ca_file.empty()) {
      return Error(ErrorCode::invalid_argument,
                   "an engine over TCP needs its certificate: pass --tls-ca FILE (the "
                   "engine's tls/cert.pem) or set $MODHOST_TLS_CA");
    }
    if (endpoint.token.empty()) {
      return Error(ErrorCode::invalid_argument,
                   "an engine over TCP needs its token: pass --token-file FILE (the engine's token) or set "
                   "$MODHOST_TOKEN");
    }
    MODHOST_ASSIGN_OR_RETURN(std::string ca, read_whole(endpoint.tls_ca_file, "engine certificate"));
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ca;
    // The engine's certificate names it "modhost-engine" whatever address it has.
    args.SetSslTargetNameOverride("modhost-engine");
    creds = grpc::CompositeChannelCredentials(grpc::SslCredentials(ssl),
                                              grpc::AccessTokenCredentials(endpoint.token));
  } else {
    return Error(ErrorCode::invalid_argument,
                 "invalid engine address '" + endpoint.address + "': use unix:///PATH or tcp://HOST:PORT");
  }
  auto channel = grpc::CreateCustomChannel(target, creds, args);
  auto remote = std::make_unique<Remote>(endpoint.address, channel);
  MODHOST_TRY(remote->info(timeout));
  return std::unique_ptr<RemoteEngine>(std::move(remote));
}

}  // namespace modhost::daemon
