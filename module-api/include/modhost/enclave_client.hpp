// The EnclaveContext of an out-of-process module: the enclave API over gRPC.
#pragma once

#include <memory>
#include <string>

#include "modhost/enclave_context.hpp"

namespace modhost {

// Connects to the enclave API at ADDRESS ("unix:/path" or a unix socket
// path). No I/O happens until the first call.
std::unique_ptr<EnclaveContext> connect_enclave(const std::string& address, const std::string& enclave_id);

}  // namespace modhost
