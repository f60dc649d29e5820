#include "engine/module_manager.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "engine/isolated_module.hpp"
#include "engine/native_module.hpp"

namespace modhost::engine {

const ModuleRegistry& registry_or_none(const ModuleRegistry* registry) {
  static const ModuleRegistry kNone;
  return registry != nullptr ? *registry : kNone;
}

namespace fs = std::filesystem;

Status ModuleRegistry::add(const ModuleDescriptor& descriptor) {
  std::string name = descriptor.name ? descriptor.name : "";
  if (find(name))
    return Error(ErrorCode::already_exists, "built-in module '" + name + "' is registered twice");
  descriptors_.push_back(&descriptor);
  return ok_status();
}

const ModuleDescriptor* ModuleRegistry::find(std::string_view name) const {
  for (const ModuleDescriptor* d : descriptors_) {
    if (d->name && name == d->name) return d;
  }
  return nullptr;
}

std::string ModuleReference::display() const {
  switch (kind) {
    case Kind::builtin:
      return "builtin:" + value;
    case Kind::plugin:
    case Kind::image:
      return value;
  }
  return value;
}

Result<ModuleReference> parse_module_reference(std::string_view text) {
  if (text.empty()) {
    return Error(ErrorCode::invalid_argument,
                 "empty module reference: give builtin:NAME, a path to a .so, or an image");
  }
  constexpr std::string_view kBuiltin = "builtin:";
  if (text.substr(0, kBuiltin.size()) == kBuiltin) {
    std::string name(text.substr(kBuiltin.size()));
    if (name.empty())
      return Error(ErrorCode::invalid_argument, "'builtin:' needs a module name, e.g. builtin:hello");
    return ModuleReference{ModuleReference::Kind::builtin, name};
  }
  std::string s(text);
  bool looks_like_path = s[0] == '/' || s.rfind("./", 0) == 0 || s.rfind("../", 0) == 0 ||
                         s.ends_with(".so") || s.find(".so.") != std::string::npos;
  if (looks_like_path) return ModuleReference{ModuleReference::Kind::plugin, s};
  return ModuleReference{ModuleReference::Kind::image, s};
}

Result<std::unique_ptr<ModuleInstance>> ModuleManager::load(const ModuleReference& reference,
                                                            std::string_view load_params,
                                                            const LoadOptions& options) const {
  switch (reference.kind) {
    case ModuleReference::Kind::builtin: {
      const ModuleDescriptor* descriptor = registry_.find(reference.value);
      if (!descriptor) {
        std::string known;
        for (const ModuleDescriptor* d : registry_.all())
          known += (known.empty() ? "" : ", ") + std::string(d->name);
        return Error(ErrorCode::not_found, "unknown built-in module '" + reference.value +
                                               "' (built-ins: " + known + "; 'modhost module ls' lists all)");
      }
      if (options.isolate) return start_isolated(reference.display(), reference.value, load_params, options);
      return create_builtin(*descriptor, load_params);
    }
    case ModuleReference::Kind::plugin: {
      if (options.isolate) {
        // Fail fast on a missing file; everything else is checked in the child.
        std::error_code ec;
        if (!fs::exists(reference.value, ec)) {
          return Error(ErrorCode::not_found, "module file '" + reference.value + "' not found");
        }
        std::string absolute = fs::absolute(reference.value, ec).string();
        return start_isolated(absolute, fs::path(reference.value).stem().string(), load_params, options);
      }
      return load_plugin(reference.value, load_params);
    }
    case ModuleReference::Kind::image:
      return Error(ErrorCode::failed_precondition,
                   "'" + reference.value +
                       "' is an image reference: running image modules needs a container backend enclave; "
                       "for native modules use builtin:NAME or a path to a .so");
  }
  return Error(ErrorCode::internal, "unknown module reference kind");
}

std::vector<ModuleListing> ModuleManager::list(const std::vector<std::string>& search_path) const {
  std::vector<ModuleListing> out;
  for (const ModuleDescriptor* d : registry_.all()) out.push_back({metadata_of(*d, "builtin"), {}});
  for (const std::string& dir : search_path) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      if (entry.path().extension() == ".so") files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    for (const fs::path& file : files) {
      Result<ModuleMetadata> meta = inspect_plugin(file.string());
      if (meta.ok()) {
        out.push_back({std::move(meta).value(), {}});
      } else {
        ModuleListing bad;
        bad.metadata.name = file.stem().string();
        bad.metadata.source = file.string();
        bad.error = meta.error().message();
        out.push_back(std::move(bad));
      }
    }
  }
  return out;
}

std::string executable_dir() {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : self.parent_path().string();
}

std::vector<std::string> default_module_search_path() {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("MODHOST_MODULE_PATH")) {
    std::string s(env);
    size_t start = 0;
    while (start <= s.size()) {
      size_t end = s.find(':', start);
      if (end == std::string::npos) end = s.size();
      if (end > start) dirs.push_back(s.substr(start, end - start));
      start = end + 1;
    }
  }
  dirs.push_back(
      (fs::path(executable_dir()) / ".." / "lib" / "modhost" / "modules").lexically_normal().string());
  return dirs;
}

}  // namespace modhost::engine
