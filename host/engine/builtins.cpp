#include "engine/builtins.hpp"

#include <cstdlib>

const modhost::ModuleDescriptor& modhost_builtin_hello();
const modhost::ModuleDescriptor& modhost_builtin_datastore_army();
const modhost::ModuleDescriptor& modhost_builtin_chaos();
const modhost::ModuleDescriptor& modhost_builtin_partition();
const modhost::ModuleDescriptor& modhost_builtin_mutation();

namespace modhost {

const engine::ModuleRegistry& builtin_registry() {
  static const engine::ModuleRegistry registry = [] {
    engine::ModuleRegistry r;
    for (const ModuleDescriptor* d :
         {&modhost_builtin_hello(), &modhost_builtin_datastore_army(), &modhost_builtin_chaos(),
          &modhost_builtin_partition(), &modhost_builtin_mutation()}) {
      if (!r.add(*d).ok()) std::abort();  // two built-ins with one name: a build error
    }
    return r;
  }();
  return registry;
}

}  // namespace modhost
