#include "builtins.hpp"

#include <cstdlib>

const modhost::ModuleDescriptor& modhost_builtin_hello();

namespace modhost {

const engine::ModuleRegistry& builtin_registry() {
  static const engine::ModuleRegistry registry = [] {
    engine::ModuleRegistry r;
    for (const ModuleDescriptor* d : {&modhost_builtin_hello()}) {
      if (!r.add(*d).ok()) std::abort();  // two built-ins with one name: a build error
    }
    return r;
  }();
  return registry;
}

}  // namespace modhost
