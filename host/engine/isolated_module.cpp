// Boost.Process v2 is compiled into this file (src.hpp below), not header-only.
#define BOOST_PROCESS_V2_SEPARATE_COMPILATION
#include "engine/isolated_module.hpp"

#include <grpcpp/grpcpp.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

// Boost.Process 1.81 uses these unqualified without including them.
#include <boost/optional.hpp>
#include <type_traits>
namespace boost::process::v2 {
using std::remove_pointer;
}

#include <boost/asio/io_context.hpp>
#include <boost/asio/readable_pipe.hpp>
#include <boost/json.hpp>
#include <boost/process/v2/environment.hpp>
#include <boost/process/v2/process.hpp>
#include <boost/process/v2/stdio.hpp>
// The out-of-line parts of Boost.Process v2 (compiled in this one file).
#include <boost/process/v2/src.hpp>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "enclave_convert.hpp"
#include "engine/handshake.hpp"
#include "engine/logging.hpp"
#include "engine/module_manager.hpp"
#include "executable_module_service.grpc.pb.h"

extern char** environ;

namespace modhost::engine {
namespace {

namespace bp = boost::process::v2;
namespace asio = boost::asio;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Runs in the child between fork and exec: the child dies with its parent.
struct DieWithParent {
  template <typename Launcher>
  bp::error_code on_exec_setup(Launcher&, const bp::filesystem::path&, const char* const*) {
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return bp::error_code(errno, bp::system_category());
    return {};
  }
};

std::string signal_name(int sig) {
  const char* d = ::strsignal(sig);
  return std::to_string(sig) + (d ? std::string(": ") + d : "");
}

spdlog::level::level_enum parse_child_level(std::string_view word) {
  if (word == "trace") return spdlog::level::trace;
  if (word == "debug") return spdlog::level::debug;
  if (word == "warning" || word == "warn") return spdlog::level::warn;
  if (word == "error" || word == "critical") return spdlog::level::err;
  return spdlog::level::info;
}

// Owns the child: its pid, its socket directory, the stderr forwarder.
class RunnerChild {
 public:
  RunnerChild(std::string name, std::string socket_dir)
      : name_(std::move(name)), socket_dir_(std::move(socket_dir)) {}

  ~RunnerChild() {
    stop(std::chrono::milliseconds(2000));
    if (stderr_thread_.joinable()) stderr_thread_.join();
    std::error_code ec;
    fs::remove_all(socket_dir_, ec);
  }

  Status spawn(const std::string& runner, const std::vector<std::string>& args,
               const std::vector<std::string>& extra_env) {
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) {
      std::string_view kv(*e);
      bool overridden = false;
      for (const std::string& x : extra_env) {
        if (kv.substr(0, kv.find('=') + 1) == std::string_view(x).substr(0, x.find('=') + 1))
          overridden = true;
      }
      if (!overridden) env.emplace_back(kv);
    }
    env.insert(env.end(), extra_env.begin(), extra_env.end());

    stdout_pipe_ = std::make_unique<asio::readable_pipe>(io_);
    stderr_pipe_ = std::make_unique<asio::readable_pipe>(io_);
    try {
      bp::process proc(io_, runner, args, bp::process_stdio{nullptr, *stdout_pipe_, *stderr_pipe_},
                       bp::process_environment(env), DieWithParent{});
      pid_ = proc.id();
      proc.detach();  // reaped here with waitpid, so the exit signal is known
    } catch (const std::exception& e) {
      return Error(ErrorCode::unavailable, "cannot start module runner '" + runner + "': " + e.what());
    }
    stderr_thread_ = std::thread([this] { forward_stderr(); });
    return ok_status();
  }

  // Reads the handshake line within the deadline.
  Result<std::string> read_handshake(Clock::time_point deadline) {
    std::string line;
    int fd = stdout_pipe_->native_handle();
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return Error(ErrorCode::timeout, "no handshake");
      pollfd p{fd, POLLIN, 0};
      int r = ::poll(&p, 1, static_cast<int>(left.count()));
      if (r < 0 && errno == EINTR) continue;
      if (r == 0) return Error(ErrorCode::timeout, "no handshake");
      char buf[512];
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Error(ErrorCode::unavailable, "stdout closed");
      line.append(buf, static_cast<size_t>(n));
      if (auto nl = line.find('\n'); nl != std::string::npos) return line.substr(0, nl);
      if (line.size() > 4096) return line;
    }
  }

  // Non-blocking check; returns the wait status once the child has ended.
  std::optional<int> poll_exit() {
    if (exited_) return status_;
    if (pid_ <= 0) return std::nullopt;
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      status_ = status;
      return status_;
    }
    return std::nullopt;
  }

  std::optional<int> wait_exit(std::chrono::milliseconds budget) {
    auto deadline = Clock::now() + budget;
    while (true) {
      if (auto s = poll_exit()) return s;
      if (Clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }

  void kill_now() {
    if (pid_ > 0 && !poll_exit()) ::kill(pid_, SIGKILL);
    wait_exit(std::chrono::milliseconds(5000));
  }

  // Graceful: SIGTERM, then SIGKILL after `grace`.
  void stop(std::chrono::milliseconds grace) {
    if (pid_ <= 0 || poll_exit()) return;
    ::kill(pid_, SIGTERM);
    if (!wait_exit(grace)) kill_now();
  }

  std::string describe_exit(int status) const {
    if (WIFSIGNALED(status)) return "crashed (signal " + signal_name(WTERMSIG(status)) + ")";
    return "exited with code " + std::to_string(WEXITSTATUS(status));
  }

  // Once the child has ended, its last stderr lines may still be in the pipe:
  // waits (briefly) for the forwarder to read them up to end-of-file.
  void wait_stderr_closed(std::chrono::milliseconds budget) {
    std::unique_lock lock(tail_mutex_);
    tail_closed_cv_.wait_for(lock, budget, [this] { return tail_closed_; });
  }

  std::string stderr_tail() {
    std::lock_guard lock(tail_mutex_);
    std::string out;
    for (const std::string& l : tail_) out += (out.empty() ? "" : " | ") + l;
    return out;
  }

  void rename(std::string name) {
    std::lock_guard lock(tail_mutex_);
    name_ = std::move(name);
  }

  const std::string& socket_dir() const { return socket_dir_; }

 private:
  void forward_stderr() {
    std::string pending;
    char buf[4096];
    int fd = stderr_pipe_->native_handle();
    while (true) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      pending.append(buf, static_cast<size_t>(n));
      size_t nl;
      while ((nl = pending.find('\n')) != std::string::npos) {
        emit(pending.substr(0, nl));
        pending.erase(0, nl + 1);
      }
    }
    if (!pending.empty()) emit(pending);
    std::lock_guard lock(tail_mutex_);
    tail_closed_ = true;
    tail_closed_cv_.notify_all();
  }

  // The runner writes "level|message"; anything else is logged as info.
  void emit(const std::string& line) {
    std::string name;
    {
      std::lock_guard lock(tail_mutex_);
      name = name_;
      tail_.push_back(line);
      if (tail_.size() > 5) tail_.erase(tail_.begin());
    }
    auto bar = line.find('|');
    auto log = logger("module." + name);
    if (bar != std::string::npos && bar < 10) {
      log->log(parse_child_level(std::string_view(line).substr(0, bar)), "{}", line.substr(bar + 1));
    } else {
      log->info("{}", line);
    }
  }

  asio::io_context io_;
  std::unique_ptr<asio::readable_pipe> stdout_pipe_;
  std::unique_ptr<asio::readable_pipe> stderr_pipe_;
  std::string name_;
  std::string socket_dir_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int status_ = 0;
  std::thread stderr_thread_;
  std::mutex tail_mutex_;
  std::vector<std::string> tail_;
  bool tail_closed_ = false;
  std::condition_variable tail_closed_cv_;
};

Error from_grpc(const grpc::Status& s, const std::string& name) {
  Error e = convert::to_error(s);
  return Error(e.code(), "module '" + name + "' failed: " + e.message());
}

class IsolatedModule final : public ModuleInstance {
 public:
  IsolatedModule(std::unique_ptr<RunnerChild> child, std::shared_ptr<grpc::Channel> channel,
                 ModuleMetadata meta)
      : child_(std::move(child)),
        stub_(module_api::ExecutableModuleService::NewStub(channel)),
        metadata_(std::move(meta)) {}

  const ModuleMetadata& metadata() const override { return metadata_; }

  Result<std::string> execute(EnclaveContext&, std::string_view params,
                              std::optional<std::chrono::milliseconds> timeout) override {
    const std::string& name = metadata_.name;
    if (auto status = child_->poll_exit()) {
      return Error(ErrorCode::unavailable,
                   "module '" + name + "' is no longer running (it " + child_->describe_exit(*status) + ")");
    }
    MODHOST_TRY(validate_params(metadata_, params, "execute params"));
    grpc::ClientContext ctx;
    if (timeout) ctx.set_deadline(std::chrono::system_clock::now() + *timeout);
    module_api::ExecuteArgs args;
    args.set_params_json(std::string(params));
    module_api::ExecuteResponse response;
    grpc::Status s = stub_->Execute(&ctx, args, &response);
    if (s.ok()) return std::move(*response.mutable_response_json());

    if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED && timeout) {
      child_->kill_now();
      return Error(ErrorCode::timeout, "module '" + name + "' did not finish within " +
                                           std::to_string(timeout->count()) + " ms; it was killed");
    }
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE || s.error_code() == grpc::StatusCode::INTERNAL ||
        s.error_code() == grpc::StatusCode::CANCELLED) {
      // Did the child die under the call?
      if (auto status = child_->wait_exit(std::chrono::milliseconds(2000))) {
        ErrorCode code = WIFSIGNALED(*status) ? ErrorCode::crashed : ErrorCode::unavailable;
        return Error(code, "module '" + name + "' " + child_->describe_exit(*status));
      }
    }
    return from_grpc(s, name);
  }

 private:
  std::unique_ptr<RunnerChild> child_;
  std::unique_ptr<module_api::ExecutableModuleService::Stub> stub_;
  ModuleMetadata metadata_;
};

Result<ModuleMetadata> read_metadata(const std::string& path, const std::string& source) {
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(text, ec);
  if (ec || !v.is_object()) return Error(ErrorCode::unavailable, "module runner wrote no valid metadata");
  const auto& o = v.as_object();
  auto str = [&](const char* key) -> std::string {
    const auto* p = o.if_contains(key);
    return p && p->is_string() ? std::string(p->as_string()) : std::string();
  };
  ModuleMetadata m;
  m.name = str("name");
  m.version = str("version");
  m.description = str("description");
  m.params_format = str("params_format") == "json" ? ParamsFormat::json : ParamsFormat::text;
  const auto* abi = o.if_contains("abi_version");
  m.abi_version = abi && abi->is_int64() ? static_cast<std::uint32_t>(abi->as_int64()) : 0;
  m.source = source;
  return m;
}

// A host killed with SIGKILL cannot remove its runners' directories: each
// holds the host's pid, and the next host removes those whose host is gone.
void sweep_stale_runtime_dirs(const fs::path& tmp) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(tmp, ec)) {
    if (entry.path().filename().string().rfind("modhost-runner-", 0) != 0) continue;
    std::ifstream in(entry.path() / "host.pid");
    pid_t owner = 0;
    if (!(in >> owner) || owner <= 0) continue;  // being created right now, or not ours
    if (::kill(owner, 0) == 0 || errno == EPERM) continue;
    std::error_code rm_ec;
    fs::remove_all(entry.path(), rm_ec);
    if (!rm_ec) logger("engine")->debug("removed stale runner directory {}", entry.path().string());
  }
}

}  // namespace

std::string find_runner() {
  if (const char* env = std::getenv("MODHOST_RUNNER"); env && *env) return env;
  return (fs::path(executable_dir()) / "modhost-module-runner").string();
}

Result<std::unique_ptr<ModuleInstance>> start_isolated(const std::string& module_arg, const std::string& name,
                                                       std::string_view load_params,
                                                       const LoadOptions& options) {
  std::string runner = find_runner();
  std::error_code ec;
  if (!fs::exists(runner, ec)) {
    return Error(
        ErrorCode::not_found,
        "module runner '" + runner + "' not found; install modhost-module-runner or set MODHOST_RUNNER");
  }
  fs::path tmp = fs::temp_directory_path(ec);
  sweep_stale_runtime_dirs(tmp);
  std::string tmpl = (tmp / "modhost-runner-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) {
    return Error(ErrorCode::unavailable,
                 std::string("cannot create a runtime directory: ") + std::strerror(errno));
  }
  std::ofstream(tmpl + "/host.pid") << ::getpid();
  auto child = std::make_unique<RunnerChild>(name, tmpl);

  std::string versions;
  for (int v : kModuleApiVersions) versions += (versions.empty() ? "" : ",") + std::to_string(v);
  std::vector<std::string> env = {
      std::string(kMagicCookieKey) + "=" + kMagicCookieValue,
      std::string(kApiVersionsKey) + "=" + versions,
      std::string(kParentPidKey) + "=" + std::to_string(::getpid()),
      std::string(kLoadParamsKey) + "=" + std::string(load_params),
  };
  std::vector<std::string> args = {"--module", module_arg,    "--socket-dir",
                                   tmpl,       "--log-level", options.log_level};
  MODHOST_TRY(child->spawn(runner, args, env));

  auto deadline = Clock::now() + options.start_timeout;
  auto fail = [&](ErrorCode code, const std::string& why) {
    std::string tail = child->stderr_tail();
    return Error(code, "module '" + name + "' did not start: " + why + (tail.empty() ? "" : ": " + tail));
  };
  Result<std::string> line = child->read_handshake(deadline);
  if (!line.ok()) {
    if (line.error().code() == ErrorCode::timeout) {
      child->kill_now();
      return fail(ErrorCode::timeout,
                  "no handshake within " + std::to_string(options.start_timeout.count()) + " ms");
    }
    // The child ended before its handshake; its stderr says why.
    auto status = child->wait_exit(std::chrono::milliseconds(2000));
    child->stop(std::chrono::milliseconds(0));
    if (status) child->wait_stderr_closed(std::chrono::milliseconds(1000));
    std::string how = status ? child->describe_exit(*status) : "closed its stdout";
    ErrorCode code = status && WIFSIGNALED(*status) ? ErrorCode::crashed : ErrorCode::failed_precondition;
    // Errors the runner reports carry their own code as "error|<code>|message".
    std::string tail = child->stderr_tail();
    for (auto c : {ErrorCode::invalid_argument, ErrorCode::not_found, ErrorCode::abi_mismatch,
                   ErrorCode::module_failed}) {
      if (tail.find("[" + std::string(to_string(c)) + "]") != std::string::npos) code = c;
    }
    return fail(code, "the runner " + how);
  }
  Result<Handshake> hs = parse_handshake(line.value());
  if (!hs.ok()) {
    child->kill_now();
    return fail(ErrorCode::unavailable, hs.error().message());
  }
  if (negotiate_api_version(std::to_string(hs->api_version),
                            {std::begin(kModuleApiVersions), std::end(kModuleApiVersions)}) == 0) {
    child->kill_now();
    return fail(ErrorCode::abi_mismatch, "the runner chose module API version " +
                                             std::to_string(hs->api_version) +
                                             ", which this host does not speak");
  }
  MODHOST_ASSIGN_OR_RETURN(
      ModuleMetadata meta,
      read_metadata(tmpl + "/module.json",
                    module_arg.rfind("builtin:", 0) == 0 ? std::string("builtin") : module_arg));
  child->rename(meta.name);

  std::string target = hs->network == "unix" ? "unix:" + hs->address : hs->address;
  auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  auto stub = module_api::ExecutableModuleService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + (deadline - Clock::now()));
  ctx.set_wait_for_ready(true);
  google::protobuf::Empty req, resp;
  grpc::Status s = stub->IsAvailable(&ctx, req, &resp);
  if (!s.ok()) {
    child->kill_now();
    return fail(ErrorCode::unavailable, "not available: " + s.error_message());
  }
  logger("engine")->debug("module '{}' is available in runner (api {})", meta.name, hs->api_version);
  return std::unique_ptr<ModuleInstance>(
      std::make_unique<IsolatedModule>(std::move(child), std::move(channel), std::move(meta)));
}

}  // namespace modhost::engine
