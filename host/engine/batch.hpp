// Many services at once, with bounded parallelism.
#pragma once

#include <vector>

#include "backends/backend.hpp"

namespace modhost::engine {

// Adds every service with at most `parallelism` backend calls in flight.
// All or nothing: if one fails, the ones this call added are removed and the
// first error is returned. Results come in the order of `configs`.
Result<std::vector<ServiceInfo>> add_services(backend::Backend& backend, const std::string& enclave_id,
                                              const std::vector<ServiceConfig>& configs, int parallelism);

}  // namespace modhost::engine
