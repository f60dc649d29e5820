#include "starlark/interpret.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace modhost::starlark {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

constexpr const char* kInterpreter = "modhost-starlark";

struct Output {
  int status = -1;
  bool timed_out = false;
  std::string out, err;
};

// Runs `program` with `input` on stdin and an empty environment; kills it
// after `timeout`.
Result<Output> run_interpreter(const std::string& program, const std::string& input,
                               std::chrono::milliseconds timeout) {
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0)
    return Error(ErrorCode::internal, std::string("pipe: ") + std::strerror(errno));
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    return Error(ErrorCode::internal, std::string("pipe: ") + std::strerror(errno));
  }
  const pid_t pid = ::fork();
  if (pid < 0) return Error(ErrorCode::internal, std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    const char* argv[] = {program.c_str(), "interpret", nullptr};
    const char* envp[] = {"GOGC=400", nullptr};
    ::execve(program.c_str(), const_cast<char* const*>(argv), const_cast<char* const*>(envp));
    const char msg[] = "cannot execute the Starlark interpreter\n";
    (void)!::write(2, msg, sizeof msg - 1);
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  ::fcntl(in[1], F_SETFL, O_NONBLOCK);
  Output o;
  std::size_t written = 0;
  int in_fd = in[1];
  if (input.empty()) {
    ::close(in_fd);
    in_fd = -1;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int open_fds = 2;
  while (open_fds > 0 || in_fd >= 0) {
    pollfd p[3];
    int n = 0;
    if (out[0] >= 0) p[n++] = {out[0], POLLIN, 0};
    if (err[0] >= 0) p[n++] = {err[0], POLLIN, 0};
    if (in_fd >= 0) p[n++] = {in_fd, POLLOUT, 0};
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      o.timed_out = true;
      break;
    }
    if (::poll(p, static_cast<nfds_t>(n), static_cast<int>(left.count())) < 0 && errno != EINTR) break;
    for (int k = 0; k < n; ++k) {
      if (p[k].revents == 0) continue;
      if (p[k].fd == in_fd) {
        const ssize_t w = ::write(in_fd, input.data() + written, input.size() - written);
        if (w > 0) written += static_cast<std::size_t>(w);
        if (w < 0 && errno != EAGAIN && errno != EINTR) written = input.size();
        if (written >= input.size()) {
          ::close(in_fd);
          in_fd = -1;
        }
        continue;
      }
      char buf[65536];
      const ssize_t r = ::read(p[k].fd, buf, sizeof buf);
      if (r > 0) {
        (p[k].fd == out[0] ? o.out : o.err).append(buf, static_cast<std::size_t>(r));
      } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
        ::close(p[k].fd);
        (p[k].fd == out[0] ? out[0] : err[0]) = -1;
        --open_fds;
      }
    }
  }
  if (in_fd >= 0) ::close(in_fd);
  if (out[0] >= 0) ::close(out[0]);
  if (err[0] >= 0) ::close(err[0]);
  if (o.timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  o.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return o;
}

std::vector<std::string> split_paths(const char* value) {
  std::vector<std::string> out;
  if (value == nullptr) return out;
  std::string s(value);
  for (std::size_t start = 0; start <= s.size();) {
    std::size_t end = s.find(':', start);
    if (end == std::string::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::string absolute(const std::string& p) {
  std::error_code ec;
  fs::path a = fs::absolute(p, ec);
  return ec ? p : a.lexically_normal().string();
}

}  // namespace

Result<std::string> find_interpreter(const std::string& configured) {
  if (!configured.empty()) return configured;
  if (const char* env = std::getenv("MODHOST_STARLARK"); env && *env) return std::string(env);
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path near = self.parent_path() / kInterpreter;
    if (::access(near.c_str(), X_OK) == 0) return near.string();
  }
  for (const auto& dir : split_paths(std::getenv("PATH"))) {
    if (dir.empty() || dir[0] != '/') continue;
    const fs::path p = fs::path(dir) / kInterpreter;
    if (::access(p.c_str(), X_OK) == 0) return p.string();
  }
  return Error(ErrorCode::unavailable,
               std::string("the Starlark interpreter '") + kInterpreter +
                   "' is neither next to modhost nor on PATH: build it with the project "
                   "(it needs Debian's golang-go and golang-starlark-dev)");
}

Result<std::string> interpret(const InterpretRequest& r) {
  MODHOST_ASSIGN_OR_RETURN(std::string program, find_interpreter(r.interpreter));
  std::error_code ec;
  fs::path path = fs::path(absolute(r.path));
  if (!fs::exists(path, ec)) {
    return Error(ErrorCode::not_found, "no package or script at '" + r.path +
                                           "': give a package folder (with kurtosis.yml) or a .star file");
  }
  if (path.filename() == "kurtosis.yml") path = path.parent_path();
  json::object req;
  if (fs::is_directory(path, ec)) {
    if (!fs::exists(path / "kurtosis.yml", ec)) {
      return Error(ErrorCode::invalid_argument,
                   "'" + r.path + "' is a folder without kurtosis.yml: a package needs one (with its name:)");
    }
    req["package_dir"] = path.string();
    req["script"] = "";
  } else {
    req["package_dir"] = "";
    req["script"] = path.string();
  }
  boost::system::error_code jec;
  json::value args =
      json::parse(r.args_json.empty() ? std::string_view("{}") : std::string_view(r.args_json), jec);
  if (jec || !args.is_object()) {
    return Error(ErrorCode::invalid_argument, "the args must be a JSON object, e.g. '{\"name\": \"x\"}'");
  }
  req["args"] = std::move(args);
  req["main_file"] = r.main_file.empty() ? "main.star" : r.main_file;
  req["main_function"] = r.main_function.empty() ? "run" : r.main_function;
  json::array dirs;
  for (const auto& d : r.package_dirs) dirs.emplace_back(absolute(d));
  for (const auto& d : split_paths(std::getenv("MODHOST_PACKAGES"))) dirs.emplace_back(absolute(d));
  req["package_dirs"] = std::move(dirs);
  req["max_steps"] = r.max_steps;
  req["timeout_ms"] = r.timeout_ms;
  MODHOST_ASSIGN_OR_RETURN(Output o, run_interpreter(program, json::serialize(req),
                                                     std::chrono::milliseconds(r.timeout_ms + 5000)));
  if (o.timed_out) {
    return Error(ErrorCode::timeout, "the Starlark interpreter did not answer within " +
                                         std::to_string(r.timeout_ms / 1000 + 5) + " s");
  }
  if (o.status == 0) {
    json::value reply = json::parse(o.out, jec);
    if (!jec && reply.is_object()) {
      if (const json::value* plan = reply.get_object().if_contains("plan")) return json::serialize(*plan);
    }
    return Error(ErrorCode::internal, "the Starlark interpreter gave no plan");
  }
  if (o.status == 1) {
    json::value reply = json::parse(o.out, jec);
    const json::value* errors =
        !jec && reply.is_object() ? reply.get_object().if_contains("errors") : nullptr;
    if (errors && errors->is_array() && !errors->get_array().empty()) {
      const auto& list = errors->get_array();
      std::string message =
          list.size() == 1 ? "" : "the package has " + std::to_string(list.size()) + " errors:";
      ErrorCode code = ErrorCode::invalid_argument;
      for (const auto& e : list) {
        if (!e.is_object()) continue;
        const json::object& o2 = e.get_object();
        auto s = [&](const char* k) {
          const json::value* v = o2.if_contains(k);
          return v && v->is_string() ? std::string(v->get_string()) : std::string();
        };
        if (s("kind") == "package") code = ErrorCode::not_found;
        std::string line = (s("position").empty() ? "" : s("position") + ": ") + s("message");
        message += (list.size() == 1 ? "" : "\n  ") + line;
      }
      return Error(code, message);
    }
  }
  std::string why = o.err.empty() ? o.out : o.err;
  while (!why.empty() && why.back() == '\n') why.pop_back();
  return Error(ErrorCode::internal, "the Starlark interpreter failed (exit " + std::to_string(o.status) +
                                        ")" + (why.empty() ? "" : ": " + why));
}

}  // namespace modhost::starlark
