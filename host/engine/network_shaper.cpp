// The packet shaper of an enclave on this host: modhost-netshaper, started
// detached so that a partitioning outlives the command that applied it,
// reloaded by SIGHUP with a new table, stopped on heal.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <random>
#include <thread>

#include "engine/module_manager.hpp"
#include "engine/network_parts.hpp"

namespace modhost::engine::netctl {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

// The pid file may outlive its process, and the pid be reused.
bool is_shaper(int pid) {
  if (!alive(pid)) return false;
  std::string cmdline = read_file("/proc/" + std::to_string(pid) + "/cmdline");
  return cmdline.find("modhost-netshaper") != std::string::npos;
}

}  // namespace

json::object shaper_namespace(int pid, const partition::NamespaceRules& rules) {
  json::array queues;
  for (const auto& [num, c] : rules.queues) {
    queues.push_back(json::object{
        {"num", num},
        {"delay_us", c.delay.count()},
        {"jitter_us", c.jitter.count()},
        {"correlation", c.correlation_percent},
        {"distribution", c.distribution == Connection::Distribution::normal ? "normal" : "uniform"},
        {"loss", c.loss_percent}});
  }
  return json::object{{"pid", pid}, {"queues", std::move(queues)}};
}

std::int64_t fresh_seed() { return static_cast<std::int64_t>(std::random_device{}() & 0x7fffffff); }

Result<std::string> Shaper::program() const {
  if (!path_.empty()) return path_;
  fs::path here = fs::path(executable_dir()) / "modhost-netshaper";
  if (::access(here.c_str(), X_OK) == 0) return here.string();
  return find_program("modhost-netshaper", "modhost");
}

int Shaper::running(const fs::path& d) const {
  int pid = read_pid(d / "shaper.pid");
  return is_shaper(pid) ? pid : 0;
}

void Shaper::stop(const fs::path& d) const {
  int pid = running(d);
  if (pid == 0) return;
  ::kill(pid, SIGTERM);
  // Not our child (it outlives us): wait for it to go.
  for (auto deadline = std::chrono::steady_clock::now() + 3s;
       alive(pid) && std::chrono::steady_clock::now() < deadline;) {
    std::this_thread::sleep_for(2ms);
  }
  if (alive(pid) && is_shaper(pid)) ::kill(pid, SIGKILL);
}

Status Shaper::apply(const fs::path& d, const std::vector<Target>& targets,
                     const std::vector<partition::NamespaceRules>& rules) const {
  std::int64_t generation = 1;
  try {
    json::value old = json::parse(read_file(d / "shaper.json"));
    generation = old.as_object().at("generation").as_int64() + 1;
  } catch (const std::exception&) {
  }
  json::array namespaces;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    if (!rules[i].queues.empty()) namespaces.push_back(shaper_namespace(targets[i].pid, rules[i]));
  }
  json::object config{
      {"generation", generation}, {"seed", fresh_seed()}, {"namespaces", std::move(namespaces)}};
  MODHOST_TRY(write_file(d / "shaper.json", json::serialize(config)));

  int pid = running(d);
  if (pid != 0 && ::kill(pid, SIGHUP) != 0) pid = 0;
  if (pid == 0) {
    MODHOST_ASSIGN_OR_RETURN(pid, launch(d));
  }

  const std::string want = std::to_string(generation);
  for (auto deadline = std::chrono::steady_clock::now() + timeout_;;) {
    std::string applied = read_file(d / "shaper.applied");
    while (!applied.empty() && (applied.back() == '\n' || applied.back() == ' ')) applied.pop_back();
    if (applied == want) return ok_status();
    if (!alive(pid)) {
      return Error(ErrorCode::failed_precondition,
                   "the packet shaper failed: " + last_lines(read_file(d / "shaper.log"), 2));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return Error(ErrorCode::timeout, "the packet shaper did not take its rules within " +
                                           std::to_string(timeout_.count()) +
                                           " ms: " + last_lines(read_file(d / "shaper.log"), 2));
    }
    std::this_thread::sleep_for(1ms);
  }
}

// Started detached (its own session, not our child): a partitioning
// outlives the command that applied it.
Result<int> Shaper::launch(const fs::path& d) const {
  MODHOST_ASSIGN_OR_RETURN(std::string bin, program());
  std::error_code ec;
  fs::remove(d / "shaper.applied", ec);
  const std::string config = (d / "shaper.json").string(), pidf = (d / "shaper.pid").string(),
                    applied = (d / "shaper.applied").string(), log = (d / "shaper.log").string();
  std::vector<std::string> argv{bin, "--config", config, "--pid-file", pidf, "--applied-file", applied};
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  const int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (log_fd < 0 || null_fd < 0) {
    if (log_fd >= 0) ::close(log_fd);
    if (null_fd >= 0) ::close(null_fd);
    return Error(ErrorCode::internal, "cannot open " + log);
  }
  int pid_pipe[2];
  if (::pipe2(pid_pipe, O_CLOEXEC) != 0) {
    ::close(log_fd);
    ::close(null_fd);
    return Error(ErrorCode::internal, "cannot start the packet shaper: pipe failed");
  }
  const pid_t child = ::fork();
  if (child == 0) {
    ::setsid();
    const pid_t grandchild = ::fork();
    if (grandchild != 0) {
      // Tells the launcher which process to watch, then leaves it to init.
      (void)!::write(pid_pipe[1], &grandchild, sizeof grandchild);
      ::_exit(0);
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::dup2(null_fd, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    // It outlives us: it must not hold our pipes or sockets open.
    ::close_range(3, ~0u, 0);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(log_fd);
  ::close(null_fd);
  ::close(pid_pipe[1]);
  if (child < 0) {
    ::close(pid_pipe[0]);
    return Error(ErrorCode::internal, "cannot start the packet shaper: fork failed");
  }
  pid_t shaper = 0;
  ssize_t got = 0;
  do {
    got = ::read(pid_pipe[0], &shaper, sizeof shaper);
  } while (got < 0 && errno == EINTR);
  ::close(pid_pipe[0]);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (got != static_cast<ssize_t>(sizeof shaper) || shaper <= 0) {
    return Error(ErrorCode::internal, "cannot start the packet shaper: fork failed");
  }
  return static_cast<int>(shaper);
}

bool Shaper::namespaces_gone(const fs::path& d) const {
  if (running(d) == 0) return true;
  try {
    json::value config = json::parse(read_file(d / "shaper.json"));
    for (const json::value& ns : config.at("namespaces").as_array()) {
      if (alive(static_cast<int>(ns.at("pid").to_number<std::int64_t>()))) return false;
    }
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

}  // namespace modhost::engine::netctl
