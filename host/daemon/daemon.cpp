#include "daemon/daemon.hpp"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/service_type.h>
#include <grpcpp/security/auth_metadata_processor.h>
#include <malloc.h>
#include <signal.h>
#include <spdlog/fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <thread>

#include "daemon/client.hpp"
#include "daemon/server.hpp"
#include "daemon/tls.hpp"
#include "engine/logging.hpp"

namespace modhost::daemon {
namespace fs = std::filesystem;

namespace {

constexpr int kMaxMessageBytes = 1 << 30;

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

Status write_private(const fs::path& p, std::string_view content) {
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return Error(ErrorCode::unavailable, "cannot write " + p.string() + ": " + std::strerror(errno));
  ssize_t n = ::write(fd, content.data(), content.size());
  ::fchmod(fd, 0600);
  ::close(fd);
  if (n != static_cast<ssize_t>(content.size()))
    return Error(ErrorCode::unavailable, "cannot write " + p.string());
  return ok_status();
}

Status make_private_dir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Error(ErrorCode::unavailable, "cannot create " + dir.string() + ": " + ec.message());
  ::chmod(dir.c_str(), 0700);
  return ok_status();
}

// The last lines of the engine's log, for a start that failed.
std::string log_tail(const fs::path& log, std::size_t lines) {
  std::string text = read_text(log);
  std::vector<std::string> all;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (!l.empty()) all.push_back(l);
  }
  std::string out;
  for (std::size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i)
    out += (out.empty() ? "" : " | ") + all[i];
  return out;
}

// Checks "authorization: Bearer TOKEN" on every call that comes over TCP.
class TokenCheck final : public grpc::AuthMetadataProcessor {
 public:
  explicit TokenCheck(std::string token) : expected_("Bearer " + std::move(token)) {}
  bool IsBlocking() const override { return false; }
  grpc::Status Process(const InputMetadata& metadata, grpc::AuthContext*, OutputMetadata*,
                       OutputMetadata*) override {
    auto it = metadata.find("authorization");
    if (it == metadata.end()) return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "no bearer token");
    std::string_view got(it->second.data(), it->second.size());
    // Compared in constant time.
    unsigned char diff = got.size() == expected_.size() ? 0 : 1;
    for (std::size_t i = 0; i < got.size() && i < expected_.size(); ++i)
      diff |= static_cast<unsigned char>(got[i] ^ expected_[i]);
    if (diff != 0) return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "wrong bearer token");
    return grpc::Status::OK;
  }

 private:
  std::string expected_;
};

// Holds the directory's lock for the life of the engine: a POSIX record
// lock, so that others can ask who holds it (F_GETLK) without taking it.
class DirLock {
 public:
  ~DirLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  // false: another process holds it.
  Result<bool> acquire(const fs::path& path) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0)
      return Error(ErrorCode::unavailable, "cannot open " + path.string() + ": " + std::strerror(errno));
    struct flock whole {};
    whole.l_type = F_WRLCK;
    whole.l_whence = SEEK_SET;
    if (::fcntl(fd_, F_SETLK, &whole) == 0) return true;
    if (errno == EACCES || errno == EAGAIN) return false;
    return Error(ErrorCode::unavailable, "cannot lock " + path.string() + ": " + std::strerror(errno));
  }

 private:
  int fd_ = -1;
};

std::string unix_target(const fs::path& socket) { return "unix:" + socket.string(); }

}  // namespace

Status check_listen(const std::vector<std::string>& listen) {
  for (const auto& l : listen) {
    if (l.rfind("tcp://", 0) != 0 || l.size() <= 6 || l.find(':', 6) == std::string::npos) {
      return Error(ErrorCode::invalid_argument, "invalid listen address '" + l + "': use tcp://HOST:PORT");
    }
  }
  return ok_status();
}

Paths default_paths() {
  if (const char* d = std::getenv("MODHOST_ENGINE_DIR"); d && *d) return Paths{d};
  return Paths{"/run/modhost/engine"};
}

bool socket_answers(const fs::path& socket) {
  sockaddr_un addr{};
  if (socket.string().size() >= sizeof addr.sun_path) return false;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket.c_str(), sizeof addr.sun_path - 1);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

std::optional<long> running_pid(const Paths& paths) {
  int fd = ::open(paths.lock().c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  struct flock probe {};
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  const bool asked = ::fcntl(fd, F_GETLK, &probe) == 0;
  ::close(fd);
  if (!asked || probe.l_type == F_UNLCK) return std::nullopt;
  return static_cast<long>(probe.l_pid);
}

Status ensure_credentials(const Paths& paths) {
  std::error_code ec;
  if (!fs::exists(paths.token(), ec)) {
    MODHOST_ASSIGN_OR_RETURN(std::string token, random_hex(32));
    MODHOST_TRY(write_private(paths.token(), token));
  }
  if (!fs::exists(paths.cert(), ec) || !fs::exists(paths.key(), ec)) {
    MODHOST_TRY(make_private_dir(paths.cert().parent_path()));
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    MODHOST_ASSIGN_OR_RETURN(KeyAndCertificate kc, make_self_signed({host}));
    MODHOST_TRY(write_private(paths.key(), kc.key_pem));
    MODHOST_TRY(write_private(paths.cert(), kc.cert_pem));
    ::chmod(paths.cert().c_str(), 0644);  // public: clients need it
  }
  return ok_status();
}

Status run(const RunOptions& options) {
  const Paths& paths = options.paths;
  auto log = engine::logger("engine");
  MODHOST_TRY(make_private_dir(paths.dir));
  DirLock lock;
  MODHOST_ASSIGN_OR_RETURN(bool mine, lock.acquire(paths.lock()));
  if (!mine) {
    const long pid = running_pid(paths).value_or(0);
    return Error(ErrorCode::already_exists, "an engine already runs (pid " + std::to_string(pid) + ") on " +
                                                paths.address() + "; stop it with 'modhost engine stop'");
  }
  MODHOST_TRY(check_listen(options.listen));

  MODHOST_ASSIGN_OR_RETURN(std::unique_ptr<engine::Engine> engine, engine::Engine::create(options.engine));
  MODHOST_ASSIGN_OR_RETURN(backend::Backend * backend, engine->backend());
  // Nothing to rebuild: every enclave is found from the backend's labels.
  if (auto found = backend->recover(); found.ok()) {
    auto enclaves = backend->list_enclaves();
    log->info("recovered {} enclave(s) from the {} backend; {} half-made resource(s) for 'modhost clean'",
              enclaves.ok() ? enclaves->size() : 0, backend->name(), found->size());
  }

  // We hold the lock: a socket file left here is a crashed engine's.
  std::error_code ec;
  if (fs::exists(paths.socket(), ec)) {
    log->warn("replacing the stale socket {}", paths.socket().string());
    fs::remove(paths.socket(), ec);
  }

  std::vector<std::string> listening = {paths.address()};
  ServerInfo info{options.version, engine::utc_now_rfc3339()};
  grpc::ServerBuilder builder;
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  mode_t old_mask = ::umask(0077);  // the socket is made 0600
  builder.AddListeningPort(unix_target(paths.socket()), grpc::InsecureServerCredentials());
  std::vector<int> tcp_ports(options.listen.size(), 0);
  if (!options.listen.empty()) {
    MODHOST_TRY(ensure_credentials(paths));
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({read_text(paths.key()), read_text(paths.cert())});
    auto creds = grpc::SslServerCredentials(ssl);
    creds->SetAuthMetadataProcessor(std::make_shared<TokenCheck>(read_text(paths.token())));
    for (std::size_t i = 0; i < options.listen.size(); ++i)
      builder.AddListeningPort(options.listen[i].substr(6), creds, &tcp_ports[i]);
  }
  std::unique_ptr<EngineService> service = make_engine_service(*engine, info);
  builder.RegisterService(service->service());
  // SIGTERM/SIGINT are taken by sigwait below, in no other thread.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ::umask(old_mask);
  if (!server) {
    return Error(ErrorCode::unavailable,
                 "the engine cannot listen on " + paths.address() +
                     (options.listen.empty() ? "" : " and " + options.listen.front()));
  }
  ::chmod(paths.socket().c_str(), 0600);
  for (std::size_t i = 0; i < options.listen.size(); ++i) {
    if (tcp_ports[i] == 0) {
      server->Shutdown();
      fs::remove(paths.socket(), ec);
      return Error(ErrorCode::unavailable, "the engine cannot listen on " + options.listen[i]);
    }
    const std::string& l = options.listen[i];
    listening.push_back(l.substr(0, l.rfind(':') + 1) + std::to_string(tcp_ports[i]));
  }
  service->set_listen(listening);
  MODHOST_TRY(write_private(paths.pid(), std::to_string(::getpid()) + "\n"));
  log->info("engine {} (pid {}) serving on {}", options.version, ::getpid(), fmt::join(listening, ", "));
  if (options.on_ready) options.on_ready(listening);

  // Waits for a stop signal; meanwhile hands memory freed after a burst of
  // calls (thread stacks, arenas) back to the system every few seconds.
  int sig = -1;
  const timespec every{5, 0};
  while (sig < 0) {
    sig = ::sigtimedwait(&stop_signals, nullptr, &every);
    if (sig < 0) ::malloc_trim(0);
  }
  log->info("stopping on signal {}", sig);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  fs::remove(paths.socket(), ec);
  fs::remove(paths.pid(), ec);
  return ok_status();
}

Result<RemoteInfo> start(const std::string& self_exe, const StartOptions& options) {
  const Paths& paths = options.paths;
  if (auto pid = running_pid(paths)) {
    return Error(ErrorCode::already_exists, "an engine already runs (pid " + std::to_string(*pid) + ") on " +
                                                paths.address() + "; stop it with 'modhost engine stop'");
  }
  MODHOST_TRY(check_listen(options.listen));
  MODHOST_TRY(make_private_dir(paths.dir));
  std::vector<std::string> args = {self_exe, "engine", "run"};
  for (const auto& l : options.listen) {
    args.push_back("--listen");
    args.push_back(l);
  }
  args.insert(args.end(), options.extra_args.begin(), options.extra_args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_t pid = ::fork();
  if (pid < 0)
    return Error(ErrorCode::unavailable, std::string("cannot start the engine: ") + std::strerror(errno));
  if (pid == 0) {
    // The engine: its own session, no terminal, its output to its log.
    ::setsid();
    int null = ::open("/dev/null", O_RDONLY);
    int out = ::open(paths.log().c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (null >= 0) ::dup2(null, 0);
    if (out >= 0) {
      ::dup2(out, 1);
      ::dup2(out, 2);
    }
    // Nothing of the caller's stays open in the engine (a pipe a caller
    // reads to its end would never end).
    ::close_range(3, ~0U, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execv(self_exe.c_str(), argv.data());
    ::_exit(127);
  }

  auto deadline = std::chrono::steady_clock::now() + options.timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      if (auto other = running_pid(paths)) {  // another start won the race
        return Error(ErrorCode::already_exists, "an engine already runs (pid " + std::to_string(*other) +
                                                    ") on " + paths.address() +
                                                    "; stop it with 'modhost engine stop'");
      }
      std::string tail = log_tail(paths.log(), 1);
      return Error(ErrorCode::unavailable,
                   "the engine did not start" + (tail.empty() ? std::string() : ": " + tail));
    }
    if (socket_answers(paths.socket())) {
      auto remote = connect(Endpoint{paths.address(), "", ""}, std::chrono::milliseconds(2000));
      auto info = remote.ok() ? remote.value()->info(std::chrono::milliseconds(2000))
                              : Result<RemoteInfo>(remote.error());
      // Ours, or one another start made at the same moment (ours then exits).
      if (info.ok() && info->pid == pid) return std::move(info).value();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return Error(ErrorCode::timeout, "the engine did not answer within " +
                                       std::to_string(options.timeout.count() / 1000) + " s; see " +
                                       paths.log().string());
}

namespace {

// The process exists and is not a zombie.
bool process_exists(pid_t pid) {
  if (::kill(pid, 0) != 0) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), {});
  const auto close = text.rfind(')');
  return close == std::string::npos || close + 2 >= text.size() ||
         (text[close + 2] != 'Z' && text[close + 2] != 'X');
}

}  // namespace

Result<long> stop(const Paths& paths, std::chrono::milliseconds grace) {
  auto pid = running_pid(paths);
  if (!pid || *pid <= 0) {
    return Error(ErrorCode::not_found, "no engine runs on " + paths.address());
  }
  ::kill(static_cast<pid_t>(*pid), SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (running_pid(paths)) {
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(static_cast<pid_t>(*pid), SIGKILL);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      std::error_code ec;
      fs::remove(paths.socket(), ec);
      fs::remove(paths.pid(), ec);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // The lock goes with the engine's last act; the process itself may still
  // be exiting (a sanitizer's leak check, say). Stopped means gone.
  const auto gone_by = std::chrono::steady_clock::now() + std::max(grace, std::chrono::milliseconds(5000));
  while (process_exists(static_cast<pid_t>(*pid)) && std::chrono::steady_clock::now() < gone_by) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return *pid;
}

}  // namespace modhost::daemon
