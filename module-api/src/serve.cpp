#include "modhost/serve.hpp"

#include <grpcpp/grpcpp.h>
#include <pthread.h>
#include <signal.h>

#include <thread>

#include "enclave_convert.hpp"
#include "executable_module_service.grpc.pb.h"

namespace modhost {
namespace {

class ModuleService final : public module_api::ExecutableModuleService::Service {
 public:
  explicit ModuleService(const ExecuteHandler& execute) : execute_(execute) {}

  grpc::Status IsAvailable(grpc::ServerContext*, const google::protobuf::Empty*,
                           google::protobuf::Empty*) override {
    return grpc::Status::OK;
  }

  grpc::Status Execute(grpc::ServerContext*, const module_api::ExecuteArgs* args,
                       module_api::ExecuteResponse* response) override {
    Result<std::string> result = [&]() -> Result<std::string> {
      try {
        return execute_(args->params_json());
      } catch (const std::exception& e) {
        return Error(ErrorCode::module_failed, std::string("module threw: ") + e.what());
      } catch (...) {
        return Error(ErrorCode::module_failed, "module threw a non-standard exception");
      }
    }();
    if (!result.ok()) return convert::to_status(result.error());
    response->set_response_json(std::move(result).value());
    return grpc::Status::OK;
  }

 private:
  const ExecuteHandler& execute_;
};

}  // namespace

Status serve_module(const ExecuteHandler& execute, const ServeOptions& options) {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGUSR2);  // internal wake-up
  if (options.handle_signals) {
    // Blocked before gRPC starts its threads, so only the waiter receives them.
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  }

  ModuleService service(execute);
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(options.address, grpc::InsecureServerCredentials(), &bound_port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    return Error(ErrorCode::unavailable, "cannot listen on '" + options.address + "'");
  }
  std::string bound = options.address;
  if (bound.rfind("unix:", 0) != 0 && bound_port > 0) {
    bound = bound.substr(0, bound.rfind(':') + 1) + std::to_string(bound_port);
  }
  if (options.on_ready) options.on_ready(bound);

  if (!options.handle_signals) {
    server->Wait();
    return ok_status();
  }
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  });
  server->Wait();
  // Wait() returned without a signal only if Shutdown came from elsewhere.
  pthread_kill(waiter.native_handle(), SIGUSR2);
  waiter.join();
  return ok_status();
}

}  // namespace modhost
