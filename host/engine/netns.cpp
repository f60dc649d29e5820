#include "engine/netns.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace modhost::engine {
namespace {

namespace fs = std::filesystem;

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

Error sys_error(const std::string& what) {
  return Error(ErrorCode::internal, what + ": " + std::strerror(errno));
}

}  // namespace

Result<std::string> find_program(std::string_view name, std::string_view package) {
  std::string path = std::getenv("PATH") != nullptr ? std::getenv("PATH") : "";
  path += ":/usr/sbin:/sbin:/usr/bin:/bin";
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    if (end > start) {
      fs::path candidate = fs::path(path.substr(start, end - start)) / name;
      if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
    }
    start = end + 1;
  }
  return Error(ErrorCode::failed_precondition, "'" + std::string(name) +
                                                   "' is not installed: apt-get install " +
                                                   std::string(package) + " (or run scripts/setup)");
}

Result<CommandOutput> run_in_netns(int pid, const std::vector<std::string>& argv, std::string_view input) {
  if (argv.empty()) return Error(ErrorCode::internal, "run_in_netns: empty argv");
  const std::string ns_path = "/proc/" + std::to_string(pid) + "/ns/net";
  Fd ns(::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (ns.get() < 0) {
    if (errno == ENOENT) {
      return Error(ErrorCode::failed_precondition, "process " + std::to_string(pid) + " is gone");
    }
    return sys_error("cannot open " + ns_path);
  }
  int in[2], out[2], err[2];
  // A socket for stdin: a send to a child that exited early fails with EPIPE
  // instead of raising SIGPIPE in the host.
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) != 0) return sys_error("socketpair");
  Fd in_r(in[0]), in_w(in[1]);
  if (::pipe2(out, O_CLOEXEC) != 0) return sys_error("pipe");
  Fd out_r(out[0]), out_w(out[1]);
  if (::pipe2(err, O_CLOEXEC) != 0) return sys_error("pipe");
  Fd err_r(err[0]), err_w(err[1]);

  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  const pid_t child = ::fork();
  if (child < 0) return sys_error("fork");
  if (child == 0) {
    // Only async-signal-safe calls from here to exec.
    if (::setns(ns.get(), CLONE_NEWNET) != 0) ::_exit(126);
    if (::dup2(in_r.get(), 0) < 0 || ::dup2(out_w.get(), 1) < 0 || ::dup2(err_w.get(), 2) < 0) ::_exit(126);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  in_r.reset();
  out_w.reset();
  err_w.reset();

  // Feed stdin and drain both outputs together, so no pipe fills up.
  CommandOutput result;
  std::size_t written = 0;
  if (input.empty()) in_w.reset();
  while (out_r.get() >= 0 || err_r.get() >= 0) {
    pollfd fds[3];
    nfds_t n = 0;
    if (in_w.get() >= 0) fds[n++] = {in_w.get(), POLLOUT, 0};
    if (out_r.get() >= 0) fds[n++] = {out_r.get(), POLLIN, 0};
    if (err_r.get() >= 0) fds[n++] = {err_r.get(), POLLIN, 0};
    if (::poll(fds, n, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (nfds_t i = 0; i < n; ++i) {
      if (fds[i].revents == 0) continue;
      if (fds[i].fd == in_w.get()) {
        ssize_t w = ::send(in_w.get(), input.data() + written, input.size() - written, MSG_NOSIGNAL);
        if (w < 0 && errno != EINTR && errno != EAGAIN) in_w.reset();
        if (w > 0) written += static_cast<std::size_t>(w);
        if (written == input.size()) in_w.reset();
        continue;
      }
      char buf[4096];
      ssize_t r = ::read(fds[i].fd, buf, sizeof buf);
      if (r < 0 && errno == EINTR) continue;
      bool is_out = fds[i].fd == out_r.get();
      if (r <= 0) {
        (is_out ? out_r : err_r).reset();
        continue;
      }
      (is_out ? result.out : result.err).append(buf, static_cast<std::size_t>(r));
    }
  }
  in_w.reset();
  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) return sys_error("waitpid");
  }
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
    if (result.exit_code == 126 && result.err.empty()) {
      return Error(ErrorCode::failed_precondition,
                   "cannot enter the network namespace of process " + std::to_string(pid) + " (needs root)");
    }
    if (result.exit_code == 127 && result.err.empty())
      return Error(ErrorCode::internal, "cannot run " + argv[0]);
  } else {
    result.exit_code = 128 + WTERMSIG(status);
  }
  return result;
}

}  // namespace modhost::engine
