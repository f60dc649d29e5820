#include "modhost/module_main.hpp"

#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "modhost/enclave_client.hpp"
#include "modhost/serve.hpp"

namespace modhost {
namespace {

std::string env_or(const char* key, const std::string& fallback) {
  const char* v = std::getenv(key);
  return v && *v ? std::string(v) : fallback;
}

struct Settings {
  std::string enclave_id;
  std::string listen = "0.0.0.0:1111";
  std::string api_socket;
  std::string load_params;
};

Result<Settings> read_settings() {
  Settings s;
  if (const char* serialized = std::getenv("SERIALIZED_ARGS"); serialized && *serialized) {
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(serialized, ec);
    if (ec || !v.is_object()) {
      return Error(ErrorCode::invalid_argument, "SERIALIZED_ARGS is not a JSON object: " + ec.message());
    }
    const auto& o = v.as_object();
    if (auto* p = o.if_contains("enclaveId"); p && p->is_string()) s.enclave_id = std::string(p->as_string());
    if (auto* p = o.if_contains("listenPortNum"); p && p->is_int64()) {
      s.listen = "0.0.0.0:" + std::to_string(p->as_int64());
    }
    if (auto* p = o.if_contains("apiContainerSocket"); p && p->is_string()) {
      s.api_socket = std::string(p->as_string());
    }
    if (auto* p = o.if_contains("serializedCustomParams"); p && p->is_string()) {
      s.load_params = std::string(p->as_string());
    }
  }
  s.enclave_id = env_or("MODHOST_ENCLAVE_ID", s.enclave_id);
  s.listen = env_or("MODHOST_LISTEN_ADDRESS", s.listen);
  s.api_socket = env_or("MODHOST_ENCLAVE_API", s.api_socket);
  s.load_params = env_or("MODHOST_LOAD_PARAMS", s.load_params);
  if (s.api_socket.empty()) {
    return Error(
        ErrorCode::invalid_argument,
        "no enclave API address: a module image is started by 'modhost module exec IMAGE', which sets "
        "SERIALIZED_ARGS (or MODHOST_ENCLAVE_API)");
  }
  return s;
}

}  // namespace

int run_module(const ModuleDescriptor& descriptor) {
  const char* name = descriptor.name ? descriptor.name : "module";
  auto settings = read_settings();
  if (!settings.ok()) {
    std::fprintf(stderr, "%s: %s\n", name, settings.error().message().c_str());
    return 2;
  }
  auto module = descriptor.create(settings->load_params);
  if (!module.ok()) {
    std::fprintf(stderr, "%s: failed to load: %s\n", name, module.error().message().c_str());
    return 3;
  }
  std::unique_ptr<EnclaveContext> ctx = connect_enclave(settings->api_socket, settings->enclave_id);
  ServeOptions options;
  options.address = settings->listen;
  options.on_ready = [&](const std::string& bound) {
    std::fprintf(stderr, "%s %s: serving the module API on %s\n", name, descriptor.version, bound.c_str());
  };
  Status served = serve_module(
      [&](std::string_view params) -> Result<std::string> {
        // As in the host: a JSON module never sees malformed JSON.
        if (descriptor.params_format == ParamsFormat::json && !params.empty()) {
          boost::system::error_code ec;
          boost::json::parse(params, ec);
          if (ec) {
            return Error(
                ErrorCode::invalid_argument,
                std::string("malformed JSON in execute params for module '") + name + "': " + ec.message());
          }
        }
        return descriptor.execute(*module.value(), *ctx, params);
      },
      options);
  if (!served.ok()) {
    std::fprintf(stderr, "%s: %s\n", name, served.error().message().c_str());
    return 1;
  }
  std::fprintf(stderr, "%s: stopped\n", name);
  return 0;
}

}  // namespace modhost
