// `modhost run` in the engine: a Starlark plan validated and executed against
// one enclave, over the backend, network control and the module host.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>

#include "backends/common.hpp"
#include "engine/api.hpp"
#include "engine/engine.hpp"
#include "engine/logging.hpp"
#include "engine/module_manager.hpp"
#include "engine/network_control.hpp"
#include "starlark/plan.hpp"
#include "starlark/run.hpp"

namespace modhost::engine {
namespace {

class EngineTarget final : public starlark::Target {
 public:
  EngineTarget(Engine& engine, backend::Backend& backend, const ModuleRegistry& builtins,
               std::optional<backend::EnclaveInfo> enclave, std::string name, CancelToken& cancel)
      : engine_(engine),
        backend_(backend),
        builtins_(builtins),
        enclave_(std::move(enclave)),
        name_(std::move(name)),
        cancel_(cancel) {}

  std::string backend_name() const override { return std::string(backend_.name()); }
  std::string enclave_name() const override { return enclave_ ? enclave_->name : name_; }
  bool enclave_exists() const override { return enclave_.has_value(); }

  Result<ServiceInfo> add_service(const ServiceConfig& config) override {
    return backend_.add_service(id(), config);
  }
  Result<ServiceInfo> inspect_service(const std::string& name) override {
    return backend_.inspect_service(id(), name);
  }
  Result<std::vector<ServiceInfo>> list_services() override { return backend_.list_services(id()); }
  Status remove_service(const std::string& name) override { return backend_.remove_service(id(), name); }
  Status start_service(const std::string& name) override { return backend_.start_service(id(), name); }
  Status stop_service(const std::string& name) override { return backend_.stop_service(id(), name, 10); }
  Result<ExecResult> exec(const std::string& service, const std::vector<std::string>& argv) override {
    return backend_.exec(id(), service, argv);
  }
  Status wait_ready(const std::string& service, const ReadinessCheck& check) override {
    return backend_.wait_ready(id(), service, check);
  }
  Result<std::vector<backend::ArtifactInfo>> list_artifacts() override {
    return backend_.list_artifacts(id());
  }
  Status store_artifact(const std::string& name, const std::string& tgz) override {
    MODHOST_TRY(backend_.store_artifact(id(), name, tgz));
    return ok_status();
  }
  Status remove_artifact(const std::string& name) override { return backend_.remove_artifact(id(), name); }
  Result<std::string> download_artifact(const std::string& name) override {
    return backend_.download_artifact(id(), name);
  }
  Status store_from_service(const std::string& service, const std::string& path,
                            const std::string& name) override {
    MODHOST_TRY(backend_.store_from_service(id(), service, path, name));
    return ok_status();
  }
  Result<bool> image_exists(const std::string& reference) override {
    return backend_.image_exists(reference);
  }
  Status repartition(const NetworkPartitioning& plan) override {
    MODHOST_ASSIGN_OR_RETURN(NetworkControl * network, engine_.network());
    MODHOST_TRY(network->repartition(id(), plan));
    return ok_status();
  }
  Status check_module(const std::string& reference) override {
    MODHOST_ASSIGN_OR_RETURN(ModuleReference ref, parse_module_reference(reference));
    if (ref.kind == ModuleReference::Kind::builtin && builtins_.find(ref.value) == nullptr) {
      std::string known;
      for (const auto* d : builtins_.all()) known += (known.empty() ? "" : ", ") + std::string(d->name);
      return Error(ErrorCode::not_found, "no built-in module '" + ref.value +
                                             "' (built in: " + (known.empty() ? "none" : known) + ")");
    }
    if (ref.kind == ModuleReference::Kind::image) {
      MODHOST_ASSIGN_OR_RETURN(bool present, backend_.image_exists(ref.value));
      if (!present) {
        return Error(ErrorCode::not_found, "module image '" + ref.value + "' is not on the " +
                                               backend_name() +
                                               " backend: load it first with 'modhost image load ARCHIVE'");
      }
    }
    return ok_status();
  }
  Result<std::string> run_module(const std::string& reference, const std::string& load_params,
                                 const std::string& params, std::optional<std::chrono::milliseconds> timeout,
                                 const std::function<void(std::string_view)>& progress) override {
    ModuleRunRequest r;
    r.reference = reference;
    r.load_params = load_params;
    r.execute_params = params;
    r.enclave_id = id();
    r.timeout = timeout;
    ModuleRunObserver observer;
    observer.progress = progress;
    observer.output = [&progress](std::string_view chunk) {
      while (!chunk.empty() && chunk.back() == '\n') chunk.remove_suffix(1);
      if (!chunk.empty() && progress) progress(chunk);
    };
    ModuleRunOutcome out = engine_.run_module(r, observer, cancel_);
    return std::move(out.result);
  }

 private:
  const std::string& id() const {
    static const std::string none;
    return enclave_ ? enclave_->id : none;
  }

  Engine& engine_;
  backend::Backend& backend_;
  const ModuleRegistry& builtins_;
  std::optional<backend::EnclaveInfo> enclave_;
  std::string name_;
  CancelToken& cancel_;
};

std::string new_enclave_name() { return "run-" + backend::random_hex(6); }

}  // namespace

StarlarkRunOutcome Engine::run_starlark(const StarlarkRunRequest& request, const StarlarkRunSink& sink,
                                        CancelToken& cancel) {
  StarlarkRunOutcome out;
  auto fail = [&](Error e) {
    out.status = std::move(e);
    return out;
  };
  auto plan = starlark::parse_plan(request.plan_json);
  if (!plan.ok()) return fail(plan.error());
  auto b = backend();
  if (!b.ok()) return fail(b.error());
  backend::Backend& be = *b.value();

  std::optional<backend::EnclaveInfo> enclave;
  std::string name = request.enclave;
  if (!request.enclave.empty()) {
    auto found = be.find_enclave(request.enclave);
    if (found.ok()) {
      enclave = found.value();
    } else if (found.error().code() != ErrorCode::not_found) {
      return fail(found.error());
    }
  } else {
    name = new_enclave_name();
  }
  auto say = [&](const std::string& line) {
    if (sink) sink(StarlarkRunEvent{StarlarkRunEvent::Kind::progress, 0, line});
  };
  if (!enclave && !request.dry_run) {
    say("Creating enclave '" + name + "'...");
    auto made = be.create_enclave(name);
    if (!made.ok()) return fail(made.error());
    enclave = made.value();
    out.enclave_created = true;
  }
  if (enclave) {
    out.enclave_id = enclave->id;
    out.enclave_name = enclave->name;
  } else {
    out.enclave_name = name;
  }

  EngineTarget target(*this, be, registry_or_none(options_.builtins), enclave, name, cancel);
  starlark::RunOptions options;
  options.dry_run = request.dry_run;
  options.parallelism = request.parallelism;
  options.skip_applied = request.skip_applied;
  auto forward = [&sink](const starlark::RunEvent& e) {
    if (!sink) return;
    StarlarkRunEvent ev;
    ev.kind = static_cast<StarlarkRunEvent::Kind>(static_cast<int>(e.kind));
    ev.index = e.index;
    ev.text = e.text;
    sink(ev);
  };
  starlark::RunReport report;
  Status ran = starlark::run(
      plan.value(), target, options, forward, [&cancel] { return cancel.cancelled(); }, report);
  out.executed = report.executed;
  out.skipped = report.skipped;
  if (!ran.ok()) {
    // A plan refused before anything changed leaves no enclave of its own behind.
    if (out.enclave_created && !report.validated) {
      (void)remove_enclave(out.enclave_id, true);
      out.enclave_id.clear();
      out.enclave_created = false;
    }
    return fail(ran.error());
  }
  out.output_json = boost::json::serialize(report.output);
  logger("engine")->info("starlark run in enclave '{}': {} instructions executed, {} skipped",
                         out.enclave_name, out.executed, out.skipped);
  return out;
}

}  // namespace modhost::engine
