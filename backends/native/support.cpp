#include "backends/native/support.hpp"

#include <spawn.h>
#include <sys/wait.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "backends/common.hpp"

namespace modhost::backend::native {

namespace json = boost::json;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Status write_file_atomic(const std::string& path, std::string_view data) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    out.flush();
    if (!out) return Error(ErrorCode::internal, "cannot write " + tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return Error(ErrorCode::internal, "cannot replace " + path + ": " + std::strerror(errno));
  }
  return ok_status();
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

json::value parse_json_file(const std::string& path) {
  boost::system::error_code ec;
  json::value v = json::parse(read_file(path), ec);
  return ec ? json::value() : v;
}

std::string str(const json::value& v, std::string_view key) {
  if (const auto* o = v.if_object()) {
    if (const auto* m = o->if_contains(key); m && m->is_string()) return std::string(m->get_string());
  }
  return {};
}

std::int64_t num(const json::value& v, std::string_view key, std::int64_t fallback) {
  if (const auto* o = v.if_object()) {
    if (const auto* m = o->if_contains(key); m && m->is_number()) return m->to_number<std::int64_t>();
  }
  return fallback;
}

std::string last_words(const std::string& log_path) {
  return backend::output_as_one_line(read_file(log_path));
}

std::vector<char*> c_argv(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  return args;
}

int run_program(const std::vector<std::string>& argv, std::string* out) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return -1;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 2);
  // The program from the system's directories, whatever this process's PATH
  // (a service manager's may lack /usr/sbin, where iptables is); elsewhere
  // (/usr/local/sbin, ...) through PATH; never the current directory.
  std::string program = argv[0];
  for (const char* dir : {"/usr/sbin/", "/usr/bin/", "/sbin/", "/bin/"}) {
    if (program.find('/') != std::string::npos) break;
    if (::access((dir + argv[0]).c_str(), X_OK) == 0) program = dir + argv[0];
  }
  std::vector<char*> args = c_argv(argv);
  char path_env[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
  char* envp[] = {path_env, nullptr};
  pid_t pid = -1;
  const int rc = program.find('/') != std::string::npos
                     ? ::posix_spawn(&pid, program.c_str(), &actions, nullptr, args.data(), envp)
                     : ::posix_spawnp(&pid, program.c_str(), &actions, nullptr, args.data(), envp);
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipe_fds[1]);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = ::read(pipe_fds[0], buf, sizeof buf)) != 0;) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(pipe_fds[0]);
  if (out) *out = text;
  if (rc != 0) return -1;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool run_detached(const std::vector<std::string>& argv) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  for (int fd = 0; fd < 3; ++fd) posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", O_RDWR, 0);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  std::vector<char*> args = c_argv(argv);
  char* envp[] = {nullptr};
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, args[0], &actions, nullptr, args.data(), envp);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return false;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace modhost::backend::native
