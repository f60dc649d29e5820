// The engine API's messages <-> the engine's types, and errors both ways
// without losing their code (the CLI's exit code depends on it). Shared by
// the daemon and its client; internal.
#pragma once

#include <grpcpp/client_context.h>
#include <grpcpp/server_context.h>

#include "backends/backend.hpp"
#include "engine/api.hpp"
#include "engine/events.hpp"
#include "engine_api.pb.h"

namespace modhost::daemon::wire {

// Trailing metadata that carries an error's modhost code next to the status.
inline constexpr const char* kErrorCodeKey = "modhost-error-code";

// For a handler: the status to return, with the code in trailing metadata.
grpc::Status fail(grpc::ServerContext* ctx, const Error& e);
grpc::Status done(grpc::ServerContext* ctx, const Status& s);

// For a client: the Error of a failed call. A status the engine did not send
// (the connection broke, nobody listens) says where the engine was.
Error error_of(const grpc::ClientContext& ctx, const grpc::Status& s, const std::string& where);

std::optional<ErrorCode> error_code_from(std::string_view word);

void to_proto(const backend::EnclaveInfo& in, engine_api::Enclave* out);
backend::EnclaveInfo from_proto(const engine_api::Enclave& in);
void to_proto(const backend::ArtifactInfo& in, engine_api::Artifact* out);
backend::ArtifactInfo from_proto(const engine_api::Artifact& in);
void to_proto(const engine::TimelineEvent& in, engine_api::TimelineEvent* out);
engine::TimelineEvent from_proto(const engine_api::TimelineEvent& in);
void to_proto(const engine::LoadedModule& in, engine_api::LoadedModule* out);
engine::LoadedModule from_proto(const engine_api::LoadedModule& in);
// The request fields RunModule and LoadModule share.
void to_proto(const engine::ModuleRunRequest& in, engine_api::RunModuleArgs* out);
engine::ModuleRunRequest from_proto(const engine_api::RunModuleArgs& in);

}  // namespace modhost::daemon::wire
