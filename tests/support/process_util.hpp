// Helpers for tests that run processes and look for leftovers.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace modhost::test {

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs argv with /bin/sh-free fork/exec, capturing stdout and stderr.
inline CommandResult run_command(const std::vector<std::string>& argv) {
  int out_pipe[2], err_pipe[2];
  if (::pipe(out_pipe) != 0 || ::pipe(err_pipe) != 0) return {};
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  CommandResult r;
  auto drain = [](int fd, std::string& into) {
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) into.append(buf, static_cast<size_t>(n));
    ::close(fd);
  };
  // Small outputs: reading one pipe to EOF then the other is fine here.
  drain(out_pipe[0], r.out);
  drain(err_pipe[0], r.err);
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

// Pids of processes whose parent is `parent`.
inline std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    pid_t pid = std::atoi(e->d_name);
    if (pid <= 0) continue;
    std::ifstream stat("/proc/" + std::string(e->d_name) + "/stat");
    std::string line;
    std::getline(stat, line);
    auto close_paren = line.rfind(')');
    if (close_paren == std::string::npos) continue;
    std::istringstream rest(line.substr(close_paren + 2));
    char state;
    pid_t ppid;
    rest >> state >> ppid;
    if (ppid == parent && state != 'Z') out.push_back(pid);
  }
  ::closedir(d);
  return out;
}

inline bool process_alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  auto close_paren = line.rfind(')');
  return close_paren != std::string::npos && line[close_paren + 2] != 'Z';
}

// Runtime directories of isolated runners in the temp dir; with `owner`,
// only those made by that host process.
inline std::vector<std::string> runner_dirs(pid_t owner = 0) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::temp_directory_path(), ec)) {
    if (e.path().filename().string().rfind("modhost-runner-", 0) != 0) continue;
    if (owner != 0) {
      std::ifstream in(e.path() / "host.pid");
      pid_t pid = 0;
      if (!(in >> pid) || pid != owner) continue;
    }
    out.push_back(e.path().string());
  }
  return out;
}

}  // namespace modhost::test

namespace modhost::test {

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A process run in the background, its output in files under the test temp dir.
struct Background {
  pid_t pid = -1;
  std::string out_path;
  std::string err_path;
};

inline Background spawn(const std::vector<std::string>& argv, const std::string& tag) {
  Background b;
  b.out_path = std::filesystem::temp_directory_path().string() + "/modhost-bg-" + tag + ".out";
  b.err_path = std::filesystem::temp_directory_path().string() + "/modhost-bg-" + tag + ".err";
  b.pid = ::fork();
  if (b.pid == 0) {
    int out = ::open(b.out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int err = ::open(b.err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(out, 1);
    ::dup2(err, 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return b;
}

// The exit code, or nullopt when the process still runs after `timeout`.
inline std::optional<int> wait_exit(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (r < 0 || std::chrono::steady_clock::now() > deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// Under AddressSanitizer a SIGSEGV is caught and turned into "exit 1"; the
// crash tests need the child to die from the signal itself, as in a normal
// build. Children inherit this; it changes nothing without ASan.
inline void let_children_die_from_signals() {
  const char* old = std::getenv("ASAN_OPTIONS");
  std::string v = old ? std::string(old) + ":" : std::string();
  ::setenv("ASAN_OPTIONS", (v + "handle_segv=0").c_str(), 1);
}

}  // namespace modhost::test
