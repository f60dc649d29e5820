// Resolves module references and loads modules: built-ins and plugins in this
// process, plugins in a runner child (--isolate), images in containers.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/module.hpp"

namespace modhost::engine {

// Built-in modules, by name. Checked before any dynamic load.
class ModuleRegistry {
 public:
  Status add(const ModuleDescriptor& descriptor);  // a duplicate name is an error
  const ModuleDescriptor* find(std::string_view name) const;
  const std::vector<const ModuleDescriptor*>& all() const { return descriptors_; }

 private:
  std::vector<const ModuleDescriptor*> descriptors_;
};

// REGISTRY, or an empty one when there is none.
const ModuleRegistry& registry_or_none(const ModuleRegistry* registry);

struct ModuleReference {
  enum class Kind { builtin, plugin, image };
  Kind kind = Kind::builtin;
  std::string value;  // builtin name, .so path or image reference
  std::string display() const;
};

// "builtin:NAME"; a path (absolute, ./, ../, or ending in .so); else an image.
Result<ModuleReference> parse_module_reference(std::string_view text);

struct LoadOptions {
  bool isolate = false;  // load a native module in modhost-module-runner
  std::chrono::milliseconds start_timeout{10000};
  std::string log_level = "info";  // for the runner child
};

struct ModuleListing {
  ModuleMetadata metadata;
  std::string error;  // set when a file on the search path is not a valid module
};

class ModuleManager {
 public:
  explicit ModuleManager(const ModuleRegistry& registry) : registry_(registry) {}

  Result<std::unique_ptr<ModuleInstance>> load(const ModuleReference& reference, std::string_view load_params,
                                               const LoadOptions& options) const;

  // Built-ins, then every .so in the search path with its metadata.
  std::vector<ModuleListing> list(const std::vector<std::string>& search_path) const;

 private:
  const ModuleRegistry& registry_;
};

// $MODHOST_MODULE_PATH (colon-separated), then <prefix>/lib/modhost/modules
// next to the running executable.
std::vector<std::string> default_module_search_path();

// The directory of the running executable.
std::string executable_dir();

}  // namespace modhost::engine
