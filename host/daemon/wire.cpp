#include "daemon/wire.hpp"

#include "enclave_convert.hpp"

namespace modhost::daemon::wire {

grpc::Status fail(grpc::ServerContext* ctx, const Error& e) {
  ctx->AddTrailingMetadata(kErrorCodeKey, std::string(to_string(e.code())));
  return convert::to_status(e);
}

grpc::Status done(grpc::ServerContext* ctx, const Status& s) {
  return s.ok() ? grpc::Status::OK : fail(ctx, s.error());
}

std::optional<ErrorCode> error_code_from(std::string_view word) {
  for (ErrorCode c :
       {ErrorCode::invalid_argument, ErrorCode::not_found, ErrorCode::already_exists,
        ErrorCode::failed_precondition, ErrorCode::unavailable, ErrorCode::timeout, ErrorCode::abi_mismatch,
        ErrorCode::module_failed, ErrorCode::crashed, ErrorCode::cancelled, ErrorCode::internal}) {
    if (to_string(c) == word) return c;
  }
  return std::nullopt;
}

Error error_of(const grpc::ClientContext& ctx, const grpc::Status& s, const std::string& where) {
  const auto& trailers = ctx.GetServerTrailingMetadata();
  if (auto it = trailers.find(kErrorCodeKey); it != trailers.end()) {
    if (auto code = error_code_from(std::string_view(it->second.data(), it->second.size()))) {
      return Error(*code, s.error_message());
    }
  }
  switch (s.error_code()) {
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      return Error(ErrorCode::failed_precondition, "the modhost engine at " + where +
                                                       " refused the call: " + s.error_message() +
                                                       " (check the token: --token-file or $MODHOST_TOKEN)");
    case grpc::StatusCode::CANCELLED:
      return Error(ErrorCode::cancelled, "the call to the modhost engine at " + where + " was cancelled");
    case grpc::StatusCode::UNAVAILABLE:
      return Error(ErrorCode::unavailable, "the modhost engine at " + where + " did not answer (" +
                                               s.error_message() + "); see 'modhost engine status'");
    default:
      return Error(ErrorCode::unavailable,
                   "the modhost engine at " + where + " failed the call: " + s.error_message());
  }
}

void to_proto(const backend::EnclaveInfo& in, engine_api::Enclave* out) {
  out->set_id(in.id);
  out->set_name(in.name);
  out->set_status(backend::to_string(in.status));
  out->set_created(in.created);
  out->set_subnet(in.subnet);
  out->set_gateway(in.gateway);
  out->set_complete(in.complete);
}

backend::EnclaveInfo from_proto(const engine_api::Enclave& in) {
  backend::EnclaveInfo e;
  e.id = in.id();
  e.name = in.name();
  e.status = in.status() == "running"   ? backend::EnclaveStatus::running
             : in.status() == "stopped" ? backend::EnclaveStatus::stopped
                                        : backend::EnclaveStatus::empty;
  e.created = in.created();
  e.subnet = in.subnet();
  e.gateway = in.gateway();
  e.complete = in.complete();
  return e;
}

void to_proto(const backend::ArtifactInfo& in, engine_api::Artifact* out) {
  out->set_name(in.name);
  out->set_enclave_id(in.enclave_id);
  out->set_size_bytes(in.size_bytes);
  out->set_created(in.created);
}

backend::ArtifactInfo from_proto(const engine_api::Artifact& in) {
  return {in.name(), in.enclave_id(), in.size_bytes(), in.created()};
}

void to_proto(const engine::TimelineEvent& in, engine_api::TimelineEvent* out) {
  out->set_time_ns(in.time_ns);
  out->set_kind(in.kind);
  out->set_subject(in.subject);
  out->set_action(in.action);
  for (const auto& [k, v] : in.attributes) (*out->mutable_attributes())[k] = v;
}

engine::TimelineEvent from_proto(const engine_api::TimelineEvent& in) {
  engine::TimelineEvent e;
  e.time_ns = in.time_ns();
  e.kind = in.kind();
  e.subject = in.subject();
  e.action = in.action();
  for (const auto& [k, v] : in.attributes()) e.attributes[k] = v;
  return e;
}

void to_proto(const engine::LoadedModule& in, engine_api::LoadedModule* out) {
  out->set_id(in.id);
  out->set_enclave_id(in.enclave_id);
  out->set_enclave_name(in.enclave_name);
  out->set_reference(in.reference);
  out->set_name(in.module.name);
  out->set_version(in.module.version);
  out->set_source(in.module.source);
  out->set_loaded(in.loaded);
  out->set_executions(in.executions);
}

engine::LoadedModule from_proto(const engine_api::LoadedModule& in) {
  engine::LoadedModule m;
  m.id = in.id();
  m.enclave_id = in.enclave_id();
  m.enclave_name = in.enclave_name();
  m.reference = in.reference();
  m.module.name = in.name();
  m.module.version = in.version();
  m.module.source = in.source();
  m.loaded = in.loaded();
  m.executions = in.executions();
  return m;
}

void to_proto(const engine::ModuleRunRequest& in, engine_api::RunModuleArgs* out) {
  out->set_reference(in.reference);
  out->set_load_params(in.load_params);
  out->set_execute_params(in.execute_params);
  out->set_enclave_id(in.enclave_id);
  out->set_isolate(in.isolate);
  if (in.timeout) out->set_timeout_ms(in.timeout->count());
  if (in.start_timeout) out->set_start_timeout_ms(in.start_timeout->count());
  out->set_log_level(in.log_level);
  out->set_with_output(in.with_output);
}

engine::ModuleRunRequest from_proto(const engine_api::RunModuleArgs& in) {
  engine::ModuleRunRequest r;
  r.reference = in.reference();
  r.load_params = in.load_params();
  r.execute_params = in.execute_params();
  r.enclave_id = in.enclave_id();
  r.isolate = in.isolate();
  if (in.timeout_ms() > 0) r.timeout = std::chrono::milliseconds(in.timeout_ms());
  if (in.start_timeout_ms() > 0) r.start_timeout = std::chrono::milliseconds(in.start_timeout_ms());
  r.log_level = in.log_level().empty() ? "warn" : in.log_level();
  r.with_output = in.with_output();
  return r;
}

}  // namespace modhost::daemon::wire
