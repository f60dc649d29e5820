#include "backends/native/launcher.hpp"

#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <thread>

#include "backends/common.hpp"
#include "backends/config_json.hpp"
#include "backends/confinement.hpp"
#include "backends/native/cgroups.hpp"
#include "backends/native/network.hpp"
#include "backends/native/processes.hpp"
#include "backends/native/records.hpp"
#include "backends/native/security.hpp"
#include "backends/native/state.hpp"
#include "backends/native/support.hpp"
#include "backends/net.hpp"

namespace modhost::backend::native {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

Status Launcher::spawn(const std::string& eid, const std::string& name, const EnclaveInfo& e) const {
  const std::string dir = state_.service_dir(eid, name);
  const json::value st = state_.service_state(eid, name);
  MODHOST_ASSIGN_OR_RETURN(ServiceConfig config, decode_config(str(st, "config"), name));
  const std::string id = str(st, "id");
  Records spec;
  auto add = [&](const std::string& k, const std::string& v) { spec.emplace_back(k, v); };
  add("name", name);
  add("kind", config.kind);
  add("rootfs", dir + "/rootfs");
  add("init", init_binary);
  add("hostname", name);
  add("log", dir + "/log");
  add("ctl", state_.ctl_socket(id));
  add("exit_file", dir + "/exit");
  add("events", state_.enclave_dir(eid) + "/events");
  for (const auto& d : cgroups_.dirs(state_.cgroup_of(id))) add("cgroup", d);
  add("oom_file", cgroups_.oom_file(state_.cgroup_of(id)));
  add("oom_key", cgroups_.oom_key());
  if (!config.network_of.empty()) {
    const ServiceInfo other = state_.service_info(eid, config.network_of);
    const json::value orun = parse_json_file(state_.service_dir(eid, config.network_of) + "/run.json");
    if (other.status != ServiceStatus::running) {
      return Error(ErrorCode::failed_precondition, "service '" + config.network_of + "' is not running");
    }
    add("net", "join");
    add("join_pid", std::to_string(num(orun, "pid")));
  } else {
    add("net", "own");
    add("bridge", bridge_name(eid));
    add("veth", veth_name(id));
    add("peer", peer_name(id));
    const std::string ip = str(st, "ip");
    if (!ip_in_subnet(ip, e.subnet)) {
      return Error(ErrorCode::internal,
                   "service address '" + ip + "' is not in the enclave subnet " + e.subnet);
    }
    add("ip", ip);
    add("prefix", e.subnet.substr(e.subnet.find('/') + 1));
    add("gateway", e.gateway);
    for (const auto& p : config.ports) add("port", std::to_string(p.number) + "/" + p.protocol);
  }
  add("mount", state_.enclave_dir(eid) + "/hosts\x1f/etc/hosts\x1fro");
  for (const auto& f : config.files) {
    add("mount", state_.enclave_dir(eid) + "/artifacts/" + f.artifact + ".d\x1f" + f.path + "\x1fro");
  }
  for (const auto& b : config.binds)
    add("mount", b.source + "\x1f" + b.target + "\x1f" + (b.read_only ? "ro" : "rw"));
  MODHOST_ASSIGN_OR_RETURN(Confinement confined, backend::confinement(config));
  std::vector<int> caps = default_capabilities();
  for (const auto& c : config.cap_add) caps.push_back(capability(c));
  if (confined.all_capabilities) {
    caps.clear();
    for (int c = 0; c <= CAP_LAST_CAP; ++c) caps.push_back(c);
  }
  for (int c : caps) add("cap", std::to_string(c));
  add("seccomp", confined.seccomp ? "default" : "unconfined");
  add("no_new_privs", confined.no_new_privs ? "1" : "0");
  add("masked", confined.masked_paths ? "1" : "0");
  add("seccomp_cache", state_.runtime + "/seccomp");
  for (const auto& v : st.as_object().at("argv").as_array()) add("argv", std::string(v.as_string()));
  for (const auto& v : st.as_object().at("env").as_array()) add("env", std::string(v.as_string()));
  add("workdir", str(st, "workdir"));
  add("uid", std::to_string(num(st, "uid")));
  add("gid", std::to_string(num(st, "gid")));

  std::remove((dir + "/exit").c_str());
  // The spec in a memfd, the report through a pipe.
  const int spec_fd = ::memfd_create("modhost-spawn-spec", MFD_CLOEXEC);
  if (spec_fd < 0) return Error(ErrorCode::internal, std::string("memfd_create: ") + std::strerror(errno));
  const std::string encoded = native::encode_records(spec);
  if (::write(spec_fd, encoded.data(), encoded.size()) != static_cast<ssize_t>(encoded.size())) {
    ::close(spec_fd);
    return Error(ErrorCode::internal, "cannot write the spawn spec");
  }
  ::lseek(spec_fd, 0, SEEK_SET);
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) {
    ::close(spec_fd);
    return Error(ErrorCode::internal, std::string("pipe: ") + std::strerror(errno));
  }
  // fork+exec from a threaded process: the child only calls
  // async-signal-safe functions before exec.
  const char* argv[] = {"modhost-spawn", nullptr};
  const char* envp[] = {nullptr};
  const int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(null_fd, 0);
    ::dup2(null_fd, 1);
    ::dup2(null_fd, 2);
    ::dup2(spec_fd, 3);
    ::dup2(report[1], 4);
    ::syscall(SYS_close_range, 5, ~0U, 0);
    ::execve(spawn_binary.c_str(), const_cast<char* const*>(argv), const_cast<char* const*>(envp));
    ::_exit(127);
  }
  ::close(null_fd);
  ::close(spec_fd);
  ::close(report[1]);
  if (pid < 0) {
    ::close(report[0]);
    return Error(ErrorCode::internal, std::string("fork: ") + std::strerror(errno));
  }
  // Its report, within a bound: a start never takes seconds, and a mount
  // source that hangs must not hang this process.
  std::string text;
  char buf[4096];
  const auto report_deadline = std::chrono::steady_clock::now() + 30s;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(report_deadline -
                                                                            std::chrono::steady_clock::now());
    pollfd p{report[0], POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) == 0) {
      text += "\nerror the container did not report within 30 s\n";
      break;
    }
    const ssize_t got = ::read(report[0], buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    text.append(buf, static_cast<std::size_t>(got));
  }
  ::close(report[0]);
  // stage2's parent half stays as the shim: it is not our child to wait
  // for beyond this point (it setsid()s; its exit is reaped here if it
  // failed early, or by init later).
  int status = 0;
  (void)::waitpid(pid, &status, WNOHANG);
  json::object run{{"spawn_pid", pid}, {"started", now_rfc3339()}};
  json::array ports;
  std::string error;
  bool started = false;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream in(line);
    std::string word;
    in >> word;
    if (word == "pid") {
      int p = 0;
      in >> p;
      run["pid"] = p;
      run["pid_start"] = process_start(p);
    } else if (word == "port") {
      std::string spec_port;
      int host = 0;
      in >> spec_port >> host;
      const int number = std::atoi(spec_port.c_str());
      const std::string protocol = spec_port.substr(spec_port.find('/') + 1);
      for (const auto& p : config.ports) {
        if (p.number == number && p.protocol == protocol) {
          ports.push_back(json::object{
              {"name", p.name}, {"number", p.number}, {"protocol", p.protocol}, {"host_port", host}});
        }
      }
    } else if (word == "started") {
      started = true;
    } else if (word == "error") {
      error = line.substr(6);
    }
  }
  run["ports"] = std::move(ports);
  MODHOST_TRY(write_file_atomic(dir + "/run.json", json::serialize(run)));
  if (!error.empty() || !started) {
    // Whatever got made goes with the process.
    (void)signal_process(static_cast<int>(num(run, "pid")), str(run, "pid_start"), SIGKILL);
    (void)::waitpid(pid, &status, 0);
    return Error(
        ErrorCode::failed_precondition,
        error.empty() ? "the container did not start (modhost-spawn exited without a report)" : error);
  }
  state_.event(eid, config.kind, name, "start");
  return ok_status();
}

bool Launcher::wait_exit(const std::string& eid, const std::string& name,
                         std::chrono::milliseconds budget) const {
  const auto deadline = std::chrono::steady_clock::now() + budget;
  const std::string dir = state_.service_dir(eid, name);
  const json::value run = parse_json_file(dir + "/run.json");
  const int pid = static_cast<int>(num(run, "pid"));
  const int shim = static_cast<int>(num(run, "spawn_pid"));
  const std::string start = str(run, "pid_start");
  while (std::chrono::steady_clock::now() < deadline) {
    // Our own child if this process spawned it: reap it so it goes.
    if (shim > 0) (void)::waitpid(shim, nullptr, WNOHANG);
    if (!alive(pid, start) && (fs::exists(dir + "/exit") || shim <= 0 || ::kill(shim, 0) != 0)) return true;
    std::this_thread::sleep_for(2ms);
  }
  return false;
}

void Launcher::stop_processes(const std::string& eid, const std::string& name,
                              std::chrono::milliseconds grace, bool mark_stopped) const {
  const std::string dir = state_.service_dir(eid, name);
  json::value run = parse_json_file(dir + "/run.json");
  if (!run.is_object()) return;
  const std::string id = str(state_.service_state(eid, name), "id");
  const int pid = static_cast<int>(num(run, "pid"));
  if (mark_stopped) {
    run.as_object()["stopped"] = "yes";
    (void)write_file_atomic(dir + "/run.json", json::serialize(run));
  }
  if (!alive(pid, str(run, "pid_start"))) {
    (void)wait_exit(eid, name, 0ms);
    return;
  }
  // A frozen cgroup gets no signals delivered: thaw it first.
  if (cgroups_.frozen(state_.cgroup_of(id))) (void)cgroups_.freeze(state_.cgroup_of(id), false);
  if (grace.count() > 0) {
    (void)signal_process(pid, str(run, "pid_start"), SIGTERM);
    if (wait_exit(eid, name, grace)) return;
  }
  (void)signal_process(pid, str(run, "pid_start"), SIGKILL);
  for (int p : cgroups_.pids(state_.cgroup_of(id))) kill_cgroup_member(p, state_.cgroup_of(id));
  (void)wait_exit(eid, name, 5000ms);
}

}  // namespace modhost::backend::native
