// modhost-init: stage3 of the native backend, PID 1 of a service's
// containers. Statically linked: it runs inside any image, with or without
// a C library.
//
// It starts the service's program, forwards signals to it, reaps every
// zombie, runs exec requests (argv in, exit code and output out) on a unix
// socket, and exits with the program's exit code (128+N for a signal), which
// the shim outside records.
//
// Descriptors on entry (set up by stage2):
//   0        /dev/null             1, 2  the service's log file
//   3        its configuration (records: argv, env, workdir, uid, gid)
//   4        the exec socket (SOCK_SEQPACKET, listening)
//   5        the report pipe to the host: "started" or "error MESSAGE"
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "backends/native/fd_io.hpp"
#include "backends/native/records.hpp"

namespace {

using modhost::backend::native::all_records;
using modhost::backend::native::decode_records;
using modhost::backend::native::encode_records;
using modhost::backend::native::read_all;
using modhost::backend::native::record;
using modhost::backend::native::Records;
using modhost::backend::native::write_all;

constexpr int kConfigFd = 3;
constexpr int kExecSocketFd = 4;
constexpr int kReportFd = 5;

struct Process {
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string workdir = "/";
  uid_t uid = 0;
  gid_t gid = 0;
};

std::vector<char*> c_strings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// PATH lookup in the service's environment, as a shell would do it.
std::string resolve(const std::string& file, const std::vector<std::string>& env) {
  if (file.find('/') != std::string::npos) return file;
  std::string path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (const auto& e : env) {
    if (e.rfind("PATH=", 0) == 0) path = e.substr(5);
  }
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string candidate = (end > start ? path.substr(start, end - start) : ".") + "/" + file;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return file;
}

// In a fresh child: becomes the process and execs it; on failure writes why
// to `error_fd` and exits 127 (not found) or 126 (cannot run).
[[noreturn]] void become(Process p, int error_fd) {
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::setsid();
  if (::setgroups(0, nullptr) != 0 || ::setgid(p.gid) != 0 || ::setuid(p.uid) != 0) {
    const std::string msg =
        std::string("cannot switch to user ") + std::to_string(p.uid) + ": " + std::strerror(errno);
    write_all(error_fd, msg);
    ::_exit(126);
  }
  if (::chdir(p.workdir.c_str()) != 0) {
    write_all(error_fd, "cannot enter working directory " + p.workdir + ": " + std::strerror(errno));
    ::_exit(126);
  }
  if (p.argv.empty()) {
    write_all(error_fd, "no command to run (the image has no entrypoint or cmd)");
    ::_exit(127);
  }
  const std::string path = resolve(p.argv[0], p.env);
  auto argv = c_strings(p.argv);
  auto envp = c_strings(p.env);
  ::execve(path.c_str(), argv.data(), envp.data());
  const int err = errno;
  write_all(error_fd, "cannot run " + p.argv[0] + ": " + std::strerror(err));
  ::_exit(err == ENOENT ? 127 : 126);
}

// Starts `p` with the given stdout/stderr; returns its pid, or -1 with the
// reason in `why` when it could not be executed.
pid_t start(const Process& p, int out_fd, std::string& why) {
  int errpipe[2];
  if (::pipe2(errpipe, O_CLOEXEC) != 0) {
    why = std::string("pipe: ") + std::strerror(errno);
    return -1;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    why = std::string("fork: ") + std::strerror(errno);
    ::close(errpipe[0]);
    ::close(errpipe[1]);
    return -1;
  }
  if (pid == 0) {
    ::close(errpipe[0]);
    if (out_fd >= 0) {
      ::dup2(out_fd, 1);
      ::dup2(out_fd, 2);
    }
    become(p, errpipe[1]);
  }
  ::close(errpipe[1]);
  why = read_all(errpipe[0]);  // empty: the exec succeeded (the pipe closed on exec)
  ::close(errpipe[0]);
  if (!why.empty()) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    return -1;
  }
  return pid;
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 255;
}

// One exec request: its socket, and the process it runs.
struct ExecRun {
  int conn = -1;
  pid_t pid = -1;
};

}  // namespace

int main() {
  Records config = decode_records(read_all(kConfigFd));
  ::close(kConfigFd);
  Process service;
  service.argv = all_records(config, "argv");
  service.env = all_records(config, "env");
  service.workdir = record(config, "workdir", "/");
  service.uid = static_cast<uid_t>(std::strtoul(record(config, "uid", "0").c_str(), nullptr, 10));
  service.gid = static_cast<gid_t>(std::strtoul(record(config, "gid", "0").c_str(), nullptr, 10));
  ::fcntl(kExecSocketFd, F_SETFD, FD_CLOEXEC);
  ::fcntl(kReportFd, F_SETFD, FD_CLOEXEC);
  ::prctl(PR_SET_NAME, "modhost-init");

  // 1. Every signal the service may be sent arrives here first (PID 1 gets
  //    no default actions), through a signalfd read in the loop below.
  sigset_t handled;
  sigfillset(&handled);
  sigdelset(&handled, SIGKILL);
  sigdelset(&handled, SIGSTOP);
  for (int s : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP, SIGSYS}) sigdelset(&handled, s);
  ::sigprocmask(SIG_BLOCK, &handled, nullptr);
  const int sfd = ::signalfd(-1, &handled, SFD_CLOEXEC);

  // 2. The service's program, its output already the log file.
  std::string why;
  const pid_t main_pid = start(service, -1, why);
  if (main_pid < 0) {
    write_all(kReportFd, "error " + why + "\n");
    std::fprintf(stderr, "%s\n", why.c_str());
    return why.find("cannot run") == 0 && why.find("No such file") != std::string::npos ? 127 : 126;
  }
  write_all(kReportFd, "started " + std::to_string(main_pid) + "\n");
  ::close(kReportFd);

  // 3. Until the program exits: signals, zombies and exec requests.
  std::map<int, ExecRun> runs;  // by socket
  int main_status = -1;
  while (main_status < 0) {
    std::vector<pollfd> fds{{sfd, POLLIN, 0}, {kExecSocketFd, POLLIN, 0}};
    for (const auto& [conn, run] : runs) fds.push_back({conn, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo si{};
      if (::read(sfd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
        if (si.ssi_signo == SIGCHLD) {
          int status = 0;
          for (pid_t pid; (pid = ::waitpid(-1, &status, WNOHANG)) > 0;) {
            if (pid == main_pid) {
              main_status = status;
              continue;
            }
            for (auto& [conn, run] : runs) {
              if (run.pid != pid) continue;
              const std::string reply = encode_records({{"exit", std::to_string(exit_code(status))}});
              ::send(conn, reply.data(), reply.size(), MSG_NOSIGNAL);
              run.pid = -1;
            }
          }
        } else {
          ::kill(main_pid, static_cast<int>(si.ssi_signo));
        }
      }
    }
    if (fds[1].revents & POLLIN) {
      const int conn = ::accept4(kExecSocketFd, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn >= 0) runs[conn] = ExecRun{conn, -1};
    }
    for (std::size_t i = 2; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      ExecRun& run = runs[fds[i].fd];
      if (run.pid > 0 || !(fds[i].revents & POLLIN)) {
        // The client went away: its process with it.
        if (run.pid > 0) ::kill(-run.pid, SIGKILL);
        ::close(run.conn);
        runs.erase(fds[i].fd);
        continue;
      }
      // The request: one message of records, with the output descriptor.
      char data[65536];
      char control[CMSG_SPACE(sizeof(int))] = {};
      iovec iov{data, sizeof data};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      const ssize_t n = ::recvmsg(run.conn, &msg, MSG_CMSG_CLOEXEC);
      int out_fd = -1;
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
          std::memcpy(&out_fd, CMSG_DATA(c), sizeof out_fd);
      }
      if (n <= 0) {
        if (out_fd >= 0) ::close(out_fd);
        ::close(run.conn);
        runs.erase(fds[i].fd);
        continue;
      }
      Records req = decode_records(std::string_view(data, static_cast<std::size_t>(n)));
      Process p = service;
      p.argv = all_records(req, "argv");
      const pid_t pid = start(p, out_fd, why);
      if (out_fd >= 0) ::close(out_fd);
      if (pid < 0) {
        const std::string reply = encode_records(
            {{"error", why}, {"exit", why.find("No such file") != std::string::npos ? "127" : "126"}});
        ::send(run.conn, reply.data(), reply.size(), MSG_NOSIGNAL);
        ::close(run.conn);
        runs.erase(fds[i].fd);
        continue;
      }
      run.pid = pid;
    }
  }

  // 4. The program exited: whatever it left behind goes with the namespace.
  ::kill(-1, SIGKILL);
  return exit_code(main_status);
}
