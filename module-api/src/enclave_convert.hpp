// Conversions between the SDK's plain types and the enclave API's messages,
// and between Error and grpc::Status. Shared by the client (SDK) and the
// server (host) so both sides speak exactly one mapping. Internal.
#pragma once

#include <grpcpp/support/status.h>

#include "enclave_api.pb.h"
#include "modhost/partitioning.hpp"
#include "modhost/result.hpp"
#include "modhost/types.hpp"

namespace modhost::convert {

grpc::Status to_status(const Error& e);
Error to_error(const grpc::Status& s);

void to_proto(const ServiceConfig& in, enclave_api::AddServiceArgs* out);
ServiceConfig from_proto(const enclave_api::AddServiceArgs& in);
void to_proto(const ServiceInfo& in, enclave_api::ServiceInfo* out);
ServiceInfo from_proto(const enclave_api::ServiceInfo& in);

ServiceStatus status_from_word(const std::string& s);

void to_proto(const NetworkPartitioning& in, enclave_api::Partitioning* out);
void to_proto(const ReadinessCheck& in, enclave_api::WaitReadyArgs* out);
ReadinessCheck from_proto(const enclave_api::WaitReadyArgs& in);
NetworkPartitioning from_proto(const enclave_api::Partitioning& in);

}  // namespace modhost::convert
