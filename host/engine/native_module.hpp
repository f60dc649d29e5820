// Native modules in this process: built-ins, and plugins loaded with Boost.DLL.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "engine/module.hpp"

namespace modhost::engine {

// Validates a plugin file before any of its code runs where it can be
// avoided: the file exists, is an ELF shared library, exports the descriptor
// symbol; then loads it and checks ABI version and kind. Creates no module.
Result<ModuleMetadata> inspect_plugin(const std::string& path);

// Creates a module from a descriptor linked into this process.
Result<std::unique_ptr<ModuleInstance>> create_builtin(const ModuleDescriptor& descriptor,
                                                       std::string_view load_params);

// Validates, loads and creates a plugin module. The module object keeps its
// library loaded for as long as it lives.
Result<std::unique_ptr<ModuleInstance>> load_plugin(const std::string& path, std::string_view load_params);

// Checks a descriptor's ABI version and kind; the message names both versions.
Status check_descriptor(const ModuleDescriptor& descriptor, std::string_view source);

ModuleMetadata metadata_of(const ModuleDescriptor& descriptor, std::string source);

}  // namespace modhost::engine
