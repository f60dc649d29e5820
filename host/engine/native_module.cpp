#include "engine/native_module.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/dll/library_info.hpp>
#include <boost/dll/shared_library.hpp>
#include <boost/json/parse.hpp>
#include <filesystem>
#include <future>
#include <thread>

#include "engine/logging.hpp"

namespace modhost::engine {
namespace {

namespace fs = std::filesystem;

// The module object and what keeps its code loaded. Shared with a worker
// thread so that a call abandoned on timeout never runs on unloaded code.
struct NativeState {
  std::shared_ptr<boost::dll::shared_library> library;  // null for built-ins
  const ModuleDescriptor* descriptor = nullptr;
  std::shared_ptr<ExecutableModule> module;  // its deleter holds `library`
};

class NativeModule final : public ModuleInstance {
 public:
  NativeModule(std::shared_ptr<NativeState> state, ModuleMetadata metadata)
      : state_(std::move(state)), metadata_(std::move(metadata)) {}

  const ModuleMetadata& metadata() const override { return metadata_; }

  Result<std::string> execute(EnclaveContext& ctx, std::string_view params,
                              std::optional<std::chrono::milliseconds> timeout) override {
    MODHOST_TRY(validate_params(metadata_, params, "execute params"));
    if (!timeout) return state_->descriptor->execute(*state_->module, ctx, params);

    // A native call cannot be interrupted: on timeout it is abandoned and
    // keeps running on its own thread, which owns a reference to the module.
    auto promise = std::make_shared<std::promise<Result<std::string>>>();
    auto future = promise->get_future();
    std::thread([state = state_, promise, &ctx, p = std::string(params)] {
      promise->set_value(state->descriptor->execute(*state->module, ctx, p));
    }).detach();
    if (future.wait_for(*timeout) == std::future_status::timeout) {
      return Error(
          ErrorCode::timeout,
          "module '" + metadata_.name + "' did not finish within " + std::to_string(timeout->count()) +
              " ms (it runs in this process and cannot be killed; use --isolate to kill it on timeout)");
    }
    return future.get();
  }

 private:
  std::shared_ptr<NativeState> state_;
  ModuleMetadata metadata_;
};

Result<std::unique_ptr<ModuleInstance>> instantiate(std::shared_ptr<boost::dll::shared_library> library,
                                                    const ModuleDescriptor& descriptor, std::string source,
                                                    std::string_view load_params) {
  ModuleMetadata metadata = metadata_of(descriptor, std::move(source));
  MODHOST_TRY(validate_params(metadata, load_params, "load params"));
  Result<std::unique_ptr<ExecutableModule>> created = descriptor.create(load_params);
  if (!created.ok()) {
    return std::move(created).error().context("failed to load module '" + metadata.name + "'");
  }
  if (!created.value()) {
    return Error(ErrorCode::module_failed, "module '" + metadata.name + "' created no module object");
  }
  auto state = std::make_shared<NativeState>();
  state->library = library;
  state->descriptor = &descriptor;
  // The deleter keeps the library loaded until the object is gone.
  state->module = std::shared_ptr<ExecutableModule>(created.value().release(),
                                                    [library](ExecutableModule* m) { delete m; });
  return std::unique_ptr<ModuleInstance>(
      std::make_unique<NativeModule>(std::move(state), std::move(metadata)));
}

struct LoadedPlugin {
  std::shared_ptr<boost::dll::shared_library> library;
  const ModuleDescriptor* descriptor = nullptr;
};

Result<LoadedPlugin> open_plugin(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    return Error(ErrorCode::not_found, "module file '" + path + "' not found");
  }
  if (!fs::is_regular_file(path, ec)) {
    return Error(ErrorCode::invalid_argument, "'" + path + "' is not a regular file");
  }
  // Read the symbol table from the file itself: no plugin code runs yet.
  std::vector<std::string> symbols;
  try {
    boost::dll::library_info info(fs::path(path), /*throw_if_not_native=*/true);
    symbols = info.symbols();
  } catch (const std::exception&) {
    return Error(ErrorCode::invalid_argument,
                 "'" + path + "' is not a shared library (not a native ELF file)");
  }
  if (std::find(symbols.begin(), symbols.end(), kDescriptorSymbol) == symbols.end()) {
    return Error(ErrorCode::invalid_argument, "'" + path + "' is not a modhost module: it exports no '" +
                                                  kDescriptorSymbol + "' (define one with MODHOST_MODULE)");
  }
  auto library = std::make_shared<boost::dll::shared_library>();
  boost::dll::fs::error_code load_error;
  library->load(fs::path(path), boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local,
                load_error);
  if (load_error) {
    return Error(ErrorCode::invalid_argument, "cannot load '" + path + "': " + load_error.message());
  }
  // BOOST_DLL_ALIAS exports a pointer to the descriptor.
  const ModuleDescriptor* descriptor = &library->get_alias<const ModuleDescriptor>(kDescriptorSymbol);
  MODHOST_TRY(check_descriptor(*descriptor, path));
  return LoadedPlugin{std::move(library), descriptor};
}

}  // namespace

ModuleMetadata metadata_of(const ModuleDescriptor& descriptor, std::string source) {
  ModuleMetadata m;
  m.name = descriptor.name ? descriptor.name : "";
  m.version = descriptor.version ? descriptor.version : "";
  m.description = descriptor.description ? descriptor.description : "";
  m.kind = descriptor.kind;
  m.params_format = descriptor.params_format;
  m.abi_version = descriptor.abi_version;
  m.source = std::move(source);
  return m;
}

Status check_descriptor(const ModuleDescriptor& descriptor, std::string_view source) {
  // Only the first two fields are read before the version is known to match.
  if (descriptor.abi_version != kAbiVersion) {
    return Error(ErrorCode::abi_mismatch,
                 "module '" + std::string(source) + "' was built for module ABI version " +
                     std::to_string(descriptor.abi_version) + ", but this host supports ABI version " +
                     std::to_string(kAbiVersion) + "; rebuild it against this modhost SDK");
  }
  if (descriptor.kind != ModuleKind::executable) {
    return Error(ErrorCode::abi_mismatch, "module '" + std::string(source) + "' is of kind " +
                                              std::to_string(static_cast<std::uint32_t>(descriptor.kind)) +
                                              ", but this host runs only executable modules (kind 1)");
  }
  if (!descriptor.create || !descriptor.execute || !descriptor.name || !*descriptor.name) {
    return Error(ErrorCode::abi_mismatch,
                 "module '" + std::string(source) + "' has an incomplete descriptor");
  }
  return ok_status();
}

Status validate_params(const ModuleMetadata& metadata, std::string_view params, std::string_view what) {
  if (metadata.params_format != ParamsFormat::json) return ok_status();
  if (params.empty()) return ok_status();  // absent params: the module sees ""
  boost::system::error_code ec;
  boost::json::parse(params, ec);
  if (ec) {
    return Error(ErrorCode::invalid_argument, "malformed JSON in " + std::string(what) + " for module '" +
                                                  metadata.name + "': " + ec.message());
  }
  return ok_status();
}

Result<ModuleMetadata> inspect_plugin(const std::string& path) {
  MODHOST_ASSIGN_OR_RETURN(LoadedPlugin plugin, open_plugin(path));
  return metadata_of(*plugin.descriptor, path);
}

Result<std::unique_ptr<ModuleInstance>> create_builtin(const ModuleDescriptor& descriptor,
                                                       std::string_view load_params) {
  MODHOST_TRY(
      check_descriptor(descriptor, std::string("builtin:") + (descriptor.name ? descriptor.name : "")));
  return instantiate(nullptr, descriptor, "builtin", load_params);
}

Result<std::unique_ptr<ModuleInstance>> load_plugin(const std::string& path, std::string_view load_params) {
  MODHOST_ASSIGN_OR_RETURN(LoadedPlugin plugin, open_plugin(path));
  logger("engine")->debug("loaded plugin '{}' ({} {})", path, plugin.descriptor->name,
                          plugin.descriptor->version);
  return instantiate(std::move(plugin.library), *plugin.descriptor, path, load_params);
}

}  // namespace modhost::engine
