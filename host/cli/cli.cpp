#include "cli/cli.hpp"

#include <boost/json.hpp>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>

#include "daemon/client.hpp"
#include "daemon/daemon.hpp"
#include "engine/builtins.hpp"
#include "engine/engine.hpp"

namespace modhost::cli {

int g_exit_code = kExitOk;

int exit_code_for(ErrorCode code) {
  switch (code) {
    case ErrorCode::invalid_argument:
      return kExitInvalidInput;
    case ErrorCode::not_found:
      return kExitNotFound;
    case ErrorCode::already_exists:
    case ErrorCode::failed_precondition:
      return kExitConflict;
    case ErrorCode::unavailable:
      return kExitUnavailable;
    case ErrorCode::timeout:
      return kExitTimeout;
    case ErrorCode::abi_mismatch:
      return kExitAbiMismatch;
    case ErrorCode::module_failed:
      return kExitModuleFailed;
    case ErrorCode::crashed:
      return kExitModuleCrashed;
    case ErrorCode::cancelled:
      return kExitCancelled;
    case ErrorCode::internal:
      return kExitInternal;
  }
  return kExitInternal;
}

int fail(const GlobalOptions& g, const Error& error) {
  int code = exit_code_for(error.code());
  if (g.json()) {
    boost::json::object e;
    e["code"] = std::string(to_string(error.code()));
    e["message"] = error.message();
    e["exitCode"] = code;
    print_json(boost::json::object{{"error", e}});
  } else {
    std::fprintf(stderr, "error: %s\n", error.message().c_str());
  }
  std::fflush(stdout);
  std::fflush(stderr);
  return code;
}

void progress(const GlobalOptions& g, std::string_view line) {
  if (g.json()) return;
  std::fprintf(stderr, "%.*s\n", static_cast<int>(line.size()), line.data());
}

void print_json(const boost::json::value& v) {
  std::string s = boost::json::serialize(v);
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

Result<std::chrono::milliseconds> parse_duration(std::string_view text, bool allow_zero) {
  auto bad = [&] {
    return Error(ErrorCode::invalid_argument,
                 "invalid duration '" + std::string(text) + "': use e.g. 500ms, 30s, 2m or 1h");
  };
  double value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || value < 0) return bad();
  std::string_view unit(ptr, static_cast<size_t>(text.data() + text.size() - ptr));
  double ms = 0;
  if (unit.empty() || unit == "s")
    ms = value * 1000;
  else if (unit == "ms")
    ms = value;
  else if (unit == "m")
    ms = value * 60'000;
  else if (unit == "h")
    ms = value * 3'600'000;
  else
    return bad();
  if (ms < 0 || (ms == 0 && !allow_zero)) return bad();
  return std::chrono::milliseconds(static_cast<long long>(ms));
}

namespace {

std::string env_or(const std::string& value, const char* name) {
  if (!value.empty()) return value;
  const char* v = std::getenv(name);
  return v ? v : "";
}

Result<std::unique_ptr<engine::EngineApi>> resolve_engine(const GlobalOptions& g) {
  if (!g.host.empty() && (!g.docker_host.empty() || g.backend != "auto")) {
    return Error(ErrorCode::invalid_argument,
                 "-H cannot be combined with --docker-host or --backend: the engine at " + g.host +
                     " uses its own backend");
  }
  // --docker-host or --backend ask for an engine in this process.
  const bool local_backend = !g.docker_host.empty() || g.backend != "auto";
  std::string host = local_backend ? g.host : env_or(g.host, "MODHOST_HOST");
  const daemon::Paths paths = daemon::default_paths();
  if (host.empty() && g.docker_host.empty() && g.backend == "auto" &&
      std::getenv("MODHOST_SCOPE") == nullptr && daemon::socket_answers(paths.socket())) {
    // A local daemon runs: use it ($MODHOST_SCOPE asks for an engine here:
    // a scope belongs to an engine).
    host = paths.address();
  }
  if (!host.empty()) {
    MODHOST_ASSIGN_OR_RETURN(std::unique_ptr<daemon::RemoteEngine> remote, connect_daemon(g, host));
    return std::unique_ptr<engine::EngineApi>(std::move(remote));
  }
  engine::EngineOptions o;
  o.builtins = &builtin_registry();
  o.backend = g.backend;
  o.docker_host = g.docker_host;
  MODHOST_ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> local, engine::Engine::create(o));
  return std::unique_ptr<engine::EngineApi>(std::move(local));
}

}  // namespace

Result<std::unique_ptr<daemon::RemoteEngine>> connect_daemon(const GlobalOptions& g,
                                                             const std::string& address) {
  daemon::Endpoint endpoint{address, env_or(g.tls_ca, "MODHOST_TLS_CA"), ""};
  if (address.rfind("tcp://", 0) == 0) {
    if (const char* t = std::getenv("MODHOST_TOKEN"); t && *t && g.token_file.empty()) {
      endpoint.token = t;
    } else if (!g.token_file.empty()) {
      std::ifstream in(g.token_file);
      if (!in) return Error(ErrorCode::invalid_argument, "cannot read the token file '" + g.token_file + "'");
      std::getline(in, endpoint.token);
    }
  }
  return daemon::connect(endpoint, std::chrono::milliseconds(3000));
}

namespace {
std::unique_ptr<engine::EngineApi>& api_instance() {
  static std::unique_ptr<engine::EngineApi> instance;
  return instance;
}
}  // namespace

void release_api() { api_instance().reset(); }

Result<engine::EngineApi*> get_api(const GlobalOptions& g) {
  std::unique_ptr<engine::EngineApi>& instance = api_instance();
  if (!instance) {
    MODHOST_ASSIGN_OR_RETURN(instance, resolve_engine(g));
  }
  return instance.get();
}

Result<backend::Backend*> get_backend(const GlobalOptions& g) {
  MODHOST_ASSIGN_OR_RETURN(engine::EngineApi * e, get_api(g));
  return e->backend();
}

Result<EnclaveTarget> open_enclave(const GlobalOptions& g, const std::string& ref) {
  MODHOST_ASSIGN_OR_RETURN(backend::Backend * b, get_backend(g));
  MODHOST_ASSIGN_OR_RETURN(backend::EnclaveInfo e, b->find_enclave(ref));
  return EnclaveTarget{b, e.id};
}

}  // namespace modhost::cli
