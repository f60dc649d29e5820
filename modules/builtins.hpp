// The modules built into the host.
#pragma once

#include "engine/module_manager.hpp"

namespace modhost {

// Registers every built-in module (hello, and later chaos, partition, mutation).
const engine::ModuleRegistry& builtin_registry();

}  // namespace modhost
