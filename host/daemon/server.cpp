#include "daemon/server.hpp"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "daemon/wire.hpp"
#include "enclave_convert.hpp"
#include "engine/engine.hpp"
#include "engine/logging.hpp"
#include "engine_api.grpc.pb.h"

namespace modhost::daemon {
namespace {

namespace api = engine_api;
using google::protobuf::Empty;
using grpc::ServerContext;
using grpc::Status;

// The enclave ids of the API are full ids; a prefix or a name is resolved by
// FindEnclave first, as the CLI does.
// The engine call of a bidirectional run (RunModule, RunStarlark): `body`
// runs it with a cancel token that a second request, or a client that goes
// away, cancels; its outcome is sent with `send`, then the client gets 5 s
// to half-close before it is cut off.
template <typename Request, typename Update, typename Send, typename Body>
void serve_cancellable(ServerContext* ctx, grpc::ServerReaderWriter<Update, Request>* stream, Send& send,
                       Body&& body) {
  engine::CancelToken cancel;
  std::atomic<bool> finished{false};
  std::atomic<bool> reader_done{false};
  std::thread reader([&] {
    Request next;
    bool more = stream->Read(&next);
    if (!finished) cancel.cancel();
    while (more) more = stream->Read(&next);  // until the client half-closes
    reader_done = true;
  });
  Update outcome = body(cancel);
  finished = true;
  send(outcome);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!reader_done && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (!reader_done) ctx->TryCancel();
  reader.join();
}

class EngineServiceImpl final : public api::EngineService::Service, public daemon::EngineService {
 public:
  grpc::Service* service() override { return this; }
  void set_listen(std::vector<std::string> listen) override {
    std::lock_guard lock(listen_mutex_);
    listen_ = std::move(listen);
  }

  EngineServiceImpl(engine::Engine& engine, ServerInfo info) : engine_(engine), info_(std::move(info)) {}

  Status Info(ServerContext*, const Empty*, api::EngineInfo* out) override {
    out->set_version(info_.version);
    auto b = engine_.backend();
    out->set_backend(b.ok() ? std::string(b.value()->name()) : "");
    out->set_pid(::getpid());
    {
      std::lock_guard lock(listen_mutex_);
      for (const auto& l : listen_) out->add_listen(l);
    }
    out->set_started(info_.started);
    return Status::OK;
  }

  // --- Enclaves ---
  Status CreateEnclave(ServerContext* ctx, const api::CreateEnclaveArgs* in, api::Enclave* out) override {
    return with_backend(ctx, [&](backend::Backend& b) -> modhost::Status {
      MODHOST_ASSIGN_OR_RETURN(backend::EnclaveInfo e, b.create_enclave(in->name()));
      wire::to_proto(e, out);
      return ok_status();
    });
  }
  Status ListEnclaves(ServerContext* ctx, const Empty*, api::EnclaveList* out) override {
    return with_backend(ctx, [&](backend::Backend& b) -> modhost::Status {
      MODHOST_ASSIGN_OR_RETURN(std::vector<backend::EnclaveInfo> all, b.list_enclaves());
      for (const auto& e : all) wire::to_proto(e, out->add_enclaves());
      return ok_status();
    });
  }
  Status FindEnclave(ServerContext* ctx, const api::EnclaveRef* in, api::Enclave* out) override {
    return with_backend(ctx, [&](backend::Backend& b) -> modhost::Status {
      MODHOST_ASSIGN_OR_RETURN(backend::EnclaveInfo e, b.find_enclave(in->id()));
      wire::to_proto(e, out);
      return ok_status();
    });
  }
  Status StopEnclave(ServerContext* ctx, const api::EnclaveRef* in, Empty*) override {
    return with_backend(ctx, [&](backend::Backend& b) { return b.stop_enclave(in->id()); });
  }
  Status RemoveEnclave(ServerContext* ctx, const api::RemoveEnclaveArgs* in, Empty*) override {
    return wire::done(ctx, engine_.remove_enclave(in->id(), in->force()));
  }
  Status Clean(ServerContext* ctx, const api::CleanArgs* in, api::CleanReport* out) override {
    auto report = engine_.clean(in->all());
    if (!report.ok()) return wire::fail(ctx, report.error());
    for (const auto& r : report->removed) out->add_removed(r);
    return Status::OK;
  }
  Status Recover(ServerContext* ctx, const Empty*, api::CleanReport* out) override {
    return with_backend(ctx, [&](backend::Backend& b) -> modhost::Status {
      MODHOST_ASSIGN_OR_RETURN(std::vector<std::string> found, b.recover());
      for (const auto& r : found) out->add_removed(r);
      return ok_status();
    });
  }
  Status Timeline(ServerContext* ctx, const api::TimelineArgs* in,
                  grpc::ServerWriter<api::TimelineEvent>* writer) override {
    return wire::done(ctx,
                      engine_.timeline(in->enclave_id(), in->follow(), [&](const engine::TimelineEvent& e) {
                        api::TimelineEvent m;
                        wire::to_proto(e, &m);
                        return !ctx->IsCancelled() && writer->Write(m);
                      }));
  }

  // --- Services ---
  Status AddService(ServerContext* ctx, const api::AddServiceArgs* in,
                    enclave_api::ServiceInfo* out) override {
    return with_backend(ctx, [&](backend::Backend& b) -> modhost::Status {
      MODHOST_ASSIGN_OR_RETURN(ServiceInfo s,
                               b.add_service(in->enclave_id(), convert::from_proto(in->config())));
      convert::to_proto(s, out);
      return ok_status();
    });
  }
  Status ListServices(ServerContext* ctx, const api::EnclaveRef* in,
                      enclave_api::ListServicesResponse* out) override {
    return with_backend(ctx, [&](backend::Backend& b) -> modhost::Status {
      MODHOST_ASSIGN_OR_RETURN(std::vector<ServiceInfo> all, b.list_services(in->id()));
      for (const auto& s : all) convert::to_proto(s, out->add_services());
      return ok_status();
    });
  }
  Status InspectService(ServerContext* ctx, const api::ServiceRef* in,
                        enclave_api::ServiceInfo* out) override {
    return with_backend(ctx, [&](backend::Backend& b) -> modhost::Status {
      MODHOST_ASSIGN_OR_RETURN(ServiceInfo s, b.inspect_service(in->enclave_id(), in->name()));
      convert::to_proto(s, out);
      return ok_status();
    });
  }
  Status RemoveService(ServerContext* ctx, const api::ServiceRef* in, Empty*) override {
    return with_backend(ctx,
                        [&](backend::Backend& b) { return b.remove_service(in->enclave_id(), in->name()); });
  }
  Status StopService(ServerContext* ctx, const api::StopServiceArgs* in, Empty*) override {
    return with_backend(ctx, [&](backend::Backend& b) {
      return b.stop_service(in->enclave_id(), in->name(), in->grace_seconds());
    });
  }
  Status StartService(ServerContext* ctx, const api::ServiceRef* in, Empty*) override {
    return with_backend(ctx,
                        [&](backend::Backend& b) { return b.start_service(in->enclave_id(), in->name()); });
  }
  Status RestartService(ServerContext* ctx, const api::ServiceRef* in, Empty*) override {
    return with_backend(ctx,
                        [&](backend::Backend& b) { return b.restart_service(in->enclave_id(), in->name()); });
  }
  Status PauseService(ServerContext* ctx, const api::ServiceRef* in, Empty*) override {
    return with_backend(ctx,
                        [&](backend::Backend& b) { return b.pause_service(in->enclave_id(), in->name()); });
  }
  Status UnpauseService(ServerContext* ctx, const api::ServiceRef* in, Empty*) override {
    return with_backend(ctx,
                        [&](backend::Backend& b) { return b.unpause_service(in->enclave_id(), in->name()); });
  }
  Status KillService(ServerContext* ctx, const api::KillServiceArgs* in, Empty*) override {
    return with_backend(
        ctx, [&](backend::Backend& b) { return b.kill_service(in->enclave_id(), in->name(), in->signal()); });
  }
  Status Exec(ServerContext* ctx, const api::ExecArgs* in, enclave_api::ExecResponse* out) override {
    return with_backend(ctx, [&](backend::Backend& b) -> modhost::Status {
      std::vector<std::string> argv(in->argv().begin(), in->argv().end());
      MODHOST_ASSIGN_OR_RETURN(ExecResult r, b.exec(in->enclave_id(), in->name(), argv));
      out->set_exit_code(r.exit_code);
      out->set_output(r.output);
      return ok_status();
    });
  }
  Status Logs(ServerContext* ctx, const api::LogsArgs* in, grpc::ServerWriter<api::Chunk>* writer) override {
    return with_backend(ctx, [&](backend::Backend& b) {
      return b.logs(in->enclave_id(), in->name(), in->follow(), [&](std::string_view chunk) {
        api::Chunk m;
        m.set_data(std::string(chunk));
        return !ctx->IsCancelled() && writer->Write(m);
      });
    });
  }
  Status WaitReady(ServerContext* ctx, const api::WaitReadyArgs* in, Empty*) override {
    return with_backend(ctx, [&](backend::Backend& b) {
      return b.wait_ready(in->enclave_id(), in->check().service(), convert::from_proto(in->check()));
    });
  }
  Status ServiceConfig(ServerContext* ctx, const api::ServiceRef* in,
                       enclave_api::AddServiceArgs* out) override {
    return with_backend(ctx, [&](backend::Backend& b) -> modhost::Status {
      MODHOST_ASSIGN_OR_RETURN(modhost::ServiceConfig c, b.service_config(in->enclave_id(), in->name()));
      convert::to_proto(c, out);
      return ok_status();
    });
  }
  Status CopyToService(ServerContext* ctx, const api::CopyToServiceArgs* in, Empty*) override {
    return with_backend(ctx, [&](backend::Backend& b) {
      return b.copy_to_service(in->enclave_id(), in->name(), in->dir(), in->tar());
    });
  }

  // --- Files artifacts ---
  Status StoreArtifact(ServerContext* ctx, const api::StoreArtifactArgs* in, api::Artifact* out) override {
    return with_backend(ctx, [&](backend::Backend& b) -> modhost::Status {
      MODHOST_ASSIGN_OR_RETURN(backend::ArtifactInfo a,
                               b.store_artifact(in->enclave_id(), in->name(), in->tgz()));
      wire::to_proto(a, out);
      return ok_status();
    });
  }
  Status ListArtifacts(ServerContext* ctx, const api::EnclaveRef* in, api::ArtifactList* out) override {
    return with_backend(ctx, [&](backend::Backend& b) -> modhost::Status {
      MODHOST_ASSIGN_OR_RETURN(std::vector<backend::ArtifactInfo> all, b.list_artifacts(in->id()));
      for (const auto& a : all) wire::to_proto(a, out->add_artifacts());
      return ok_status();
    });
  }
  Status DownloadArtifact(ServerContext* ctx, const api::ArtifactRef* in, api::Chunk* out) override {
    return with_backend(ctx, [&](backend::Backend& b) -> modhost::Status {
      MODHOST_ASSIGN_OR_RETURN(std::string tgz, b.download_artifact(in->enclave_id(), in->name()));
      out->set_data(std::move(tgz));
      return ok_status();
    });
  }
  Status RemoveArtifact(ServerContext* ctx, const api::ArtifactRef* in, Empty*) override {
    return with_backend(ctx,
                        [&](backend::Backend& b) { return b.remove_artifact(in->enclave_id(), in->name()); });
  }
  Status StoreFromService(ServerContext* ctx, const api::StoreFromServiceArgs* in,
                          api::Artifact* out) override {
    return with_backend(ctx, [&](backend::Backend& b) -> modhost::Status {
      MODHOST_ASSIGN_OR_RETURN(backend::ArtifactInfo a,
                               b.store_from_service(in->enclave_id(), in->service(), in->path(), in->name()));
      wire::to_proto(a, out);
      return ok_status();
    });
  }

  // --- Images ---
  Status LoadImage(ServerContext* ctx, grpc::ServerReader<api::Chunk>* reader, Empty*) override {
    return with_backend(ctx, [&](backend::Backend& b) -> modhost::Status {
      // The archive goes to a private file first: the engine API streams
      // it, the backend uploads a file.
      std::string path = (std::filesystem::temp_directory_path() / "modhost-image-XXXXXX").string();
      int fd = ::mkstemp(path.data());
      if (fd < 0) return Error(ErrorCode::unavailable, "cannot store the image archive: no temporary file");
      ::close(fd);
      struct Remove {
        std::string p;
        ~Remove() { std::remove(p.c_str()); }
      } remove{path};
      {
        std::ofstream file(path, std::ios::binary | std::ios::trunc);
        api::Chunk chunk;
        while (reader->Read(&chunk))
          file.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
        if (!file) return Error(ErrorCode::unavailable, "cannot store the image archive in " + path);
      }
      return b.load_image(path);
    });
  }
  Status ImageExists(ServerContext* ctx, const api::ImageRef* in, api::ImageExistsResponse* out) override {
    return with_backend(ctx, [&](backend::Backend& b) -> modhost::Status {
      MODHOST_ASSIGN_OR_RETURN(bool exists, b.image_exists(in->reference()));
      out->set_exists(exists);
      return ok_status();
    });
  }

  // --- Modules ---
  Status RunModule(ServerContext* ctx,
                   grpc::ServerReaderWriter<api::RunModuleUpdate, api::RunModuleRequest>* stream) override {
    api::RunModuleRequest first;
    if (!stream->Read(&first) || !first.has_start()) {
      return wire::fail(ctx, Error(ErrorCode::invalid_argument, "RunModule starts with a start request"));
    }
    const api::RunModuleArgs* in = &first.start();
    engine::ModuleRunRequest r = wire::from_proto(*in);
    std::mutex write_mutex;  // container output comes from another thread
    auto send = [&](api::RunModuleUpdate& u) {
      std::lock_guard lock(write_mutex);
      stream->Write(u);
    };
    engine::ModuleRunObserver observer;
    observer.progress = [&](std::string_view line) {
      api::RunModuleUpdate u;
      u.set_progress(std::string(line));
      send(u);
    };
    observer.output = [&](std::string_view chunk) {
      api::RunModuleUpdate u;
      u.set_output(std::string(chunk));
      send(u);
    };
    serve_cancellable(ctx, stream, send, [&](engine::CancelToken& cancel) {
      engine::ModuleRunOutcome outcome = engine_.run_module(r, observer, cancel);
      api::RunModuleUpdate u;
      auto* o = u.mutable_outcome();
      o->set_name(outcome.module.name);
      o->set_version(outcome.module.version);
      o->set_source(outcome.module.source);
      o->set_enclave_id(outcome.enclave_id);
      o->set_enclave_name(outcome.enclave_name);
      o->set_ok(outcome.result.ok());
      if (outcome.result.ok()) {
        o->set_result(outcome.result.value());
      } else {
        o->set_error_code(std::string(to_string(outcome.result.error().code())));
        o->set_error_message(outcome.result.error().message());
      }
      return u;
    });
    return Status::OK;
  }

  Status RunStarlark(
      ServerContext* ctx,
      grpc::ServerReaderWriter<api::RunStarlarkUpdate, api::RunStarlarkRequest>* stream) override {
    api::RunStarlarkRequest first;
    if (!stream->Read(&first) || !first.has_start()) {
      return wire::fail(ctx, Error(ErrorCode::invalid_argument, "RunStarlark starts with a start request"));
    }
    engine::StarlarkRunRequest r;
    r.enclave = first.start().enclave();
    r.plan_json = first.start().plan_json();
    r.dry_run = first.start().dry_run();
    if (first.start().parallelism() > 0) r.parallelism = first.start().parallelism();
    r.skip_applied = !first.start().no_skip();
    std::mutex write_mutex;  // events come from add_services' threads too
    auto send = [&](api::RunStarlarkUpdate& u) {
      std::lock_guard lock(write_mutex);
      stream->Write(u);
    };
    auto sink = [&](const engine::StarlarkRunEvent& e) {
      static const char* kinds[] = {"instruction", "result", "skipped", "progress"};
      api::RunStarlarkUpdate u;
      auto* ev = u.mutable_event();
      ev->set_kind(kinds[static_cast<int>(e.kind)]);
      ev->set_index(e.index);
      ev->set_text(e.text);
      send(u);
    };
    serve_cancellable(ctx, stream, send, [&](engine::CancelToken& cancel) {
      engine::StarlarkRunOutcome outcome = engine_.run_starlark(r, sink, cancel);
      api::RunStarlarkUpdate u;
      auto* o = u.mutable_outcome();
      o->set_enclave_id(outcome.enclave_id);
      o->set_enclave_name(outcome.enclave_name);
      o->set_enclave_created(outcome.enclave_created);
      o->set_output_json(outcome.output_json);
      o->set_executed(outcome.executed);
      o->set_skipped(outcome.skipped);
      o->set_ok(outcome.status.ok());
      if (!outcome.status.ok()) {
        o->set_error_code(std::string(to_string(outcome.status.error().code())));
        o->set_error_message(outcome.status.error().message());
      }
      return u;
    });
    return Status::OK;
  }

  Status LoadModule(ServerContext* ctx, const api::RunModuleArgs* in, api::LoadedModule* out) override {
    auto loaded = engine_.load_module(wire::from_proto(*in));
    if (!loaded.ok()) return wire::fail(ctx, loaded.error());
    wire::to_proto(loaded.value(), out);
    return Status::OK;
  }
  Status ExecuteLoaded(ServerContext* ctx, const api::ExecuteLoadedArgs* in,
                       api::ExecuteLoadedResponse* out) override {
    std::optional<std::chrono::milliseconds> timeout;
    if (in->timeout_ms() > 0) timeout = std::chrono::milliseconds(in->timeout_ms());
    auto result = engine_.execute_loaded(in->id(), in->params(), timeout);
    if (!result.ok()) return wire::fail(ctx, result.error());
    out->set_result(result.value());
    return Status::OK;
  }
  Status UnloadModule(ServerContext* ctx, const api::LoadedModuleRef* in, Empty*) override {
    return wire::done(ctx, engine_.unload_module(in->id()));
  }
  Status ListLoaded(ServerContext* ctx, const api::EnclaveRef* in, api::LoadedModuleList* out) override {
    auto all = engine_.loaded_modules(in->id());
    if (!all.ok()) return wire::fail(ctx, all.error());
    for (const auto& m : all.value()) wire::to_proto(m, out->add_modules());
    return Status::OK;
  }

 private:
  template <typename F>
  Status with_backend(ServerContext* ctx, F&& f) {
    auto b = engine_.backend();
    if (!b.ok()) return wire::fail(ctx, b.error());
    return wire::done(ctx, f(*b.value()));
  }

  engine::Engine& engine_;
  ServerInfo info_;
  std::mutex listen_mutex_;
  std::vector<std::string> listen_;
};

}  // namespace

std::unique_ptr<EngineService> make_engine_service(engine::Engine& engine, ServerInfo info) {
  return std::make_unique<EngineServiceImpl>(engine, std::move(info));
}

}  // namespace modhost::daemon
