// The modules built into the host: the host registers them; they know only
// the module API.
#pragma once

#include "engine/module_manager.hpp"

namespace modhost {

// Every built-in module (hello, datastore_army, chaos, partition, mutation).
const engine::ModuleRegistry& builtin_registry();

}  // namespace modhost
