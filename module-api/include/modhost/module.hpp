// The module API: what every module implements, and how a native module
// describes itself to the host.
#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>

#include "modhost/enclave_context.hpp"
#include "modhost/result.hpp"

namespace modhost {

// Bumped whenever the descriptor, ExecutableModule or EnclaveContext layout
// changes. The host refuses a plugin built for another version.
inline constexpr std::uint32_t kAbiVersion = 1;

enum class ModuleKind : std::uint32_t { executable = 1 };

// How a module reads its params. For `json` the host rejects malformed JSON
// before any module code sees it.
enum class ParamsFormat : std::uint32_t { text = 0, json = 1 };

class ExecutableModule {
 public:
  virtual ~ExecutableModule() = default;
  // Runs once per call. `params` is the serialized execute params; the result
  // is a string (JSON by convention).
  virtual Result<std::string> execute(EnclaveContext& ctx, std::string_view params) = 0;
};

using CreateFn = Result<std::unique_ptr<ExecutableModule>> (*)(std::string_view load_params) noexcept;
using ExecuteFn = Result<std::string> (*)(ExecutableModule& module, EnclaveContext& ctx,
                                          std::string_view params) noexcept;

// Exported by every native module under the symbol `modhost_module_descriptor`.
// `abi_version` and `kind` come first so a host can read them from a plugin of
// any version before it trusts the rest.
struct ModuleDescriptor {
  std::uint32_t abi_version;
  ModuleKind kind;
  const char* name;
  const char* version;
  const char* description;
  ParamsFormat params_format;
  CreateFn create;    // never throws: exceptions become errors inside the plugin
  ExecuteFn execute;  // never throws: exceptions become errors inside the plugin
};

inline constexpr const char* kDescriptorSymbol = "modhost_module_descriptor";

namespace detail {

inline Error exception_error(const char* what_phase) {
  try {
    throw;
  } catch (const std::exception& e) {
    return Error(ErrorCode::module_failed,
                 std::string("module threw during ") + what_phase + ": " + e.what());
  } catch (...) {
    return Error(ErrorCode::module_failed,
                 std::string("module threw a non-standard exception during ") + what_phase);
  }
}

template <typename M>
Result<std::unique_ptr<ExecutableModule>> create_module(std::string_view load_params) noexcept {
  try {
    if constexpr (requires { M::create(load_params); }) {
      return M::create(load_params);
    } else if constexpr (std::is_constructible_v<M, std::string_view>) {
      return std::unique_ptr<ExecutableModule>(std::make_unique<M>(load_params));
    } else {
      return std::unique_ptr<ExecutableModule>(std::make_unique<M>());
    }
  } catch (...) {
    return exception_error("load");
  }
}

inline Result<std::string> execute_module(ExecutableModule& module, EnclaveContext& ctx,
                                          std::string_view params) noexcept {
  try {
    return module.execute(ctx, params);
  } catch (...) {
    return exception_error("execute");
  }
}

}  // namespace detail
}  // namespace modhost

#ifndef MODHOST_DESCRIPTOR_ABI_VERSION
#define MODHOST_DESCRIPTOR_ABI_VERSION ::modhost::kAbiVersion
#endif

// Defines the descriptor of module class CLASS under the name NAME.
// CLASS derives from ExecutableModule and has one of: a static
// `create(std::string_view) -> Result<std::unique_ptr<ExecutableModule>>`, a
// constructor taking the load params as std::string_view, or a default
// constructor. Built as a plugin (MODHOST_PLUGIN_EXPORT defined) it exports
// the descriptor through BOOST_DLL_ALIAS; built into the host it defines
// `modhost_builtin_<NAME>()` for the built-in registry.
#define MODHOST_MODULE(NAME, CLASS, VERSION, DESCRIPTION, PARAMS_FORMAT)                      \
  namespace modhost_module_##NAME {                                                           \
    const ::modhost::ModuleDescriptor descriptor = {MODHOST_DESCRIPTOR_ABI_VERSION,           \
                                                    ::modhost::ModuleKind::executable,        \
                                                    #NAME,                                    \
                                                    VERSION,                                  \
                                                    DESCRIPTION,                              \
                                                    PARAMS_FORMAT,                            \
                                                    &::modhost::detail::create_module<CLASS>, \
                                                    &::modhost::detail::execute_module};      \
  }                                                                                           \
  MODHOST_EXPORT_DESCRIPTOR_(NAME)

#ifdef MODHOST_PLUGIN_EXPORT
#include <boost/dll/alias.hpp>
#define MODHOST_EXPORT_DESCRIPTOR_(NAME) \
  BOOST_DLL_ALIAS(modhost_module_##NAME::descriptor, modhost_module_descriptor)
#else
#define MODHOST_EXPORT_DESCRIPTOR_(NAME) \
  const ::modhost::ModuleDescriptor& modhost_builtin_##NAME() { return modhost_module_##NAME::descriptor; }
#endif
