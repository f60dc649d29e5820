#include "backends/native/native_backend.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "backends/config_json.hpp"
#include "backends/image/image.hpp"
#include "backends/native/cgroups.hpp"
#include "backends/native/fd_io.hpp"
#include "backends/native/image_store.hpp"
#include "backends/native/netlink.hpp"
#include "backends/native/records.hpp"
#include "backends/net.hpp"
#include "backends/proc_stat.hpp"
#include "backends/readiness.hpp"

namespace modhost::backend {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;
using native::Cgroups;
using native::ImageStore;
using native::now_rfc3339;
using native::Records;

// --- Small helpers ------------------------------------------------------------

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

// A process's start time (field 22 of /proc/PID/stat): tells a live process
// from a later one that got the same pid.
std::string process_start(int pid) { return backend::process_start_time(pid); }

// Running: the process exists, is the one that started then, and is not a
// zombie waiting for its parent (a PID 1 that has ended but is not reaped).
bool alive(int pid, const std::string& start) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return false;
  const char state = stat[close + 2];
  return state != 'Z' && state != 'X' && process_start(pid) == start;
}

// Sends `sig` to `pid` only if `still_it()` holds once a pidfd pins the
// process: a pid reused in between (by a process of the host) is never
// signalled. False (errno set) when the signal was not sent.
template <class Check>
bool signal_pinned(int pid, int sig, Check still_it) {
  if (pid <= 0) {
    errno = ESRCH;
    return false;
  }
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return false;
  bool sent = false;
  if (still_it()) {
    sent = ::syscall(SYS_pidfd_send_signal, fd, sig, nullptr, 0) == 0;
  } else {
    errno = ESRCH;
  }
  const int err = errno;
  ::close(fd);
  errno = err;
  return sent;
}

// Signals `pid` only while it is the process that started at `start`.
bool signal_process(int pid, const std::string& start, int sig) {
  return signal_pinned(pid, sig, [&] { return process_start(pid) == start; });
}

// SIGKILLs a process of cgroup `relative` found in its cgroup.procs, only
// while it is still a member.
void kill_cgroup_member(int pid, const std::string& relative) {
  // The line ends in the cgroup's path (after the hierarchy's root, which
  // is more than "/" where this process runs in a container).
  (void)signal_pinned(pid, SIGKILL, [&] {
    return read_file("/proc/" + std::to_string(pid) + "/cgroup").find("/" + relative + "\n") !=
           std::string::npos;
  });
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

std::int64_t num(const json::value& v, std::string_view key, std::int64_t fallback = 0) {
  if (const auto* o = v.if_object()) {
    if (const auto* m = o->if_contains(key); m && m->is_number()) return m->to_number<std::int64_t>();
  }
  return fallback;
}

// Capabilities by name, for ServiceConfig::cap_add.
int capability(std::string name) {
  static const char* const kNames[] = {"CHOWN",
                                       "DAC_OVERRIDE",
                                       "DAC_READ_SEARCH",
                                       "FOWNER",
                                       "FSETID",
                                       "KILL",
                                       "SETGID",
                                       "SETUID",
                                       "SETPCAP",
                                       "LINUX_IMMUTABLE",
                                       "NET_BIND_SERVICE",
                                       "NET_BROADCAST",
                                       "NET_ADMIN",
                                       "NET_RAW",
                                       "IPC_LOCK",
                                       "IPC_OWNER",
                                       "SYS_MODULE",
                                       "SYS_RAWIO",
                                       "SYS_CHROOT",
                                       "SYS_PTRACE",
                                       "SYS_PACCT",
                                       "SYS_ADMIN",
                                       "SYS_BOOT",
                                       "SYS_NICE",
                                       "SYS_RESOURCE",
                                       "SYS_TIME",
                                       "SYS_TTY_CONFIG",
                                       "MKNOD",
                                       "LEASE",
                                       "AUDIT_WRITE",
                                       "AUDIT_CONTROL",
                                       "SETFCAP",
                                       "MAC_OVERRIDE",
                                       "MAC_ADMIN",
                                       "SYSLOG",
                                       "WAKE_ALARM",
                                       "BLOCK_SUSPEND",
                                       "AUDIT_READ",
                                       "PERFMON",
                                       "BPF",
                                       "CHECKPOINT_RESTORE"};
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::toupper(c); });
  if (name.rfind("CAP_", 0) == 0) name = name.substr(4);
  for (int i = 0; i < static_cast<int>(std::size(kNames)); ++i) {
    if (name == kNames[i]) return i;
  }
  return -1;
}

// What a container keeps by default: Docker's set without CAP_MKNOD. Docker
// can leave it because its device cgroup refuses new device nodes; here
// nothing else would stop root in a container from making the host's disks.
const std::vector<int> kDefaultCaps = {
    CAP_CHOWN,   CAP_DAC_OVERRIDE,     CAP_FOWNER,  CAP_FSETID,     CAP_KILL,        CAP_SETGID, CAP_SETUID,
    CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_NET_RAW, CAP_SYS_CHROOT, CAP_AUDIT_WRITE, CAP_SETFCAP};

// Opens PATH inside ROOT with every symlink resolved inside ROOT.
int open_in_root(const std::string& root, const std::string& path) {
  const int dir = ::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return -1;
  open_how how{};
  how.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK;  // a FIFO in an image must not block the host
  how.resolve = RESOLVE_IN_ROOT;
  const int fd = static_cast<int>(::syscall(SYS_openat2, dir, path.c_str(), &how, sizeof how));
  ::close(dir);
  struct stat st {};
  if (fd >= 0 && (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
    ::close(fd);
    return -1;
  }
  return fd;
}

std::string read_in_root(const std::string& root, const std::string& path) {
  const int fd = open_in_root(root, path);
  if (fd < 0) return {};
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return out;
}

// "user", "uid", "user:group", "uid:gid" resolved against the image's
// /etc/passwd and /etc/group.
Result<std::pair<unsigned, unsigned>> resolve_user(const std::string& rootfs, const std::string& user) {
  if (user.empty()) return std::pair<unsigned, unsigned>{0, 0};
  const auto colon = user.find(':');
  const std::string u = user.substr(0, colon);
  const std::string g = colon == std::string::npos ? std::string() : user.substr(colon + 1);
  auto numeric = [](const std::string& s) {
    return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
  };
  auto lookup = [&](const std::string& file, const std::string& name, int field) -> std::optional<unsigned> {
    std::istringstream in(read_in_root(rootfs, file));
    for (std::string line; std::getline(in, line);) {
      std::vector<std::string> parts;
      std::stringstream ls(line);
      for (std::string p; std::getline(ls, p, ':');) parts.push_back(p);
      if (parts.size() > static_cast<std::size_t>(field) && parts[0] == name &&
          numeric(parts[static_cast<std::size_t>(field)]))
        return static_cast<unsigned>(std::stoul(parts[static_cast<std::size_t>(field)]));
    }
    return std::nullopt;
  };
  unsigned uid = 0, gid = 0;
  if (numeric(u)) {
    uid = static_cast<unsigned>(std::stoul(u));
  } else {
    auto found = lookup("/etc/passwd", u, 2);
    if (!found)
      return Error(ErrorCode::invalid_argument, "user '" + u + "' is not in the image's /etc/passwd");
    uid = *found;
    gid = lookup("/etc/passwd", u, 3).value_or(0);
  }
  if (!g.empty()) {
    if (numeric(g)) {
      gid = static_cast<unsigned>(std::stoul(g));
    } else {
      auto found = lookup("/etc/group", g, 2);
      if (!found)
        return Error(ErrorCode::invalid_argument, "group '" + g + "' is not in the image's /etc/group");
      gid = *found;
    }
  }
  return std::pair<unsigned, unsigned>{uid, gid};
}

// A tail of a log file as one line: the error of a service that exited at once.
std::string last_words(const std::string& log_path) {
  return backend::output_as_one_line(read_file(log_path));
}

// argv as execve takes it (pointing into `argv`).
std::vector<char*> c_argv(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  return args;
}

// Runs a program (no shell) and returns its exit code, its output in `out`.
int run_program(const std::vector<std::string>& argv, std::string* out = nullptr) {
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

// With br_netfilter loaded (Docker loads it), bridged packets pass the
// host's FORWARD chain, whose policy Docker sets to DROP: an enclave's own
// traffic, bridge to same bridge, needs a rule there.
bool bridge_netfilter() {
  return read_file("/proc/sys/net/bridge/bridge-nf-call-iptables").rfind('1', 0) == 0;
}

// One rule for every enclave: frames bridged by a modhost bridge from one of
// its ports to another. A frame one bridge passes to another is routed, not
// bridged, so enclaves stay apart (and the bridges forward nothing anyway).
// One rule, not one per enclave, keeps iptables (milliseconds a call) out of
// enclave add and rm.
std::vector<std::string> forward_rule(const std::string& op) {
  return {"iptables",
          "-w",
          op,
          "FORWARD",
          "-i",
          "mhb+",
          "-o",
          "mhb+",
          "-m",
          "physdev",
          "--physdev-is-bridged",
          "-m",
          "comment",
          "--comment",
          "modhost bridges",
          "-j",
          "ACCEPT"};
}

// Runs a program detached: it is waited for only until it has started (it
// must fork and let its parent half exit at once), with no descriptor of
// ours, so nobody reading our output waits for it.
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

// An exclusive lock on a file (between processes) and a mutex (between
// threads: record locks belong to the process).
class DirLock {
 public:
  DirLock(std::mutex& m, const std::string& path) : guard_(m) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0 && errno == ENOENT) {  // clean() removed an empty scope's directory
      std::error_code ec;
      fs::create_directories(fs::path(path).parent_path(), ec);
      fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    }
    if (fd_ >= 0) {
      struct flock fl {};
      fl.l_type = F_WRLCK;
      fl.l_whence = SEEK_SET;
      while (::fcntl(fd_, F_SETLKW, &fl) != 0 && errno == EINTR) {
      }
    }
  }
  ~DirLock() {
    if (fd_ >= 0) ::close(fd_);  // releases the record lock
  }
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  std::lock_guard<std::mutex> guard_;
  int fd_ = -1;
};

}  // namespace

// --- State --------------------------------------------------------------------

struct NativeBackend::Impl {
  NativeOptions options;
  std::string runtime;  // the runtime dir (all scopes)
  std::string root;     // this scope's dir
  std::string spawn_binary, init_binary;
  bool overlay = true;  // rootfs as an overlay of the layers, else a copy
  Cgroups cgroups;
  std::mutex mutex;         // this process's mutations
  std::mutex global_mutex;  // subnet allocation (all scopes)
  std::mutex images_mutex;
  std::unique_ptr<ImageStore> images;

  std::string scope_label() const { return options.scope.empty() ? "_" : options.scope; }
  std::string enclaves_dir() const { return root + "/enclaves"; }
  std::string enclave_dir(const std::string& id) const { return enclaves_dir() + "/" + id; }
  std::string service_dir(const std::string& eid, const std::string& name) const {
    return enclave_dir(eid) + "/services/" + name;
  }
  // A service's exec socket: short, whatever the names (a unix socket path
  // has 107 bytes at most).
  std::string ctl_socket(const std::string& service_id) const { return runtime + "/sock/" + service_id; }
  std::string cgroup_of(const std::string& service_id) const {
    return "modhost/" + scope_label() + "/" + service_id;
  }
  static std::string bridge_name(const std::string& id) { return "mhb" + id.substr(0, 12); }
  // The label on an enclave's bridge (its alias): "modhost SCOPE ID".
  std::string link_label(const std::string& id) const { return "modhost " + scope_label() + " " + id; }

  // Deletes links (veths before the bridge they are on). The kernel takes
  // 15-50 ms to unregister a link (it waits out RCU grace periods on every
  // CPU); `detached` hands that wait to a helper process and returns at once.
  // A bridge keeps its label until it is gone, so recover() and clean()
  // still see it should the helper fail. A veth handed over is down first:
  // its service's address may go to the next service at once, while the
  // old network namespace, dismantled later by the kernel, still holds it;
  // down, it answers nothing on the bridge (never two answers to one ARP
  // request), and the bridge forgets its port.
  Status delete_links(std::vector<std::string> links, bool detached) {
    std::erase_if(links, [](const std::string& l) { return !native::netlink::link_exists(l); });
    if (links.empty()) return ok_status();
    if (detached) {
      for (const auto& l : links) {
        if (l.rfind("mhv", 0) == 0) (void)native::netlink::set_down(l);
      }
      std::vector<std::string> argv{spawn_binary, "delete-link"};
      argv.insert(argv.end(), links.begin(), links.end());
      if (run_detached(argv)) return ok_status();
    }
    for (const auto& l : links) MODHOST_TRY(native::netlink::delete_link(l));
    return ok_status();
  }

  // The FORWARD rule matches every modhost bridge on the host, whatever its
  // runtime directory: its lock is one for the host.
  static constexpr const char* kForwardRuleLock = "/run/modhost/.forward-rule.lock";

  // Lets bridged enclave traffic through FORWARD when br_netfilter would
  // send it there. Checked and inserted under the rule's lock (no second
  // copy), after the caller's bridge exists (clean() keeps the rule while
  // any bridge does).
  Status ensure_forward_rule() {
    if (!bridge_netfilter()) return ok_status();
    DirLock global(forward_rule_mutex(), kForwardRuleLock);
    if (run_program(forward_rule("-C")) == 0) return ok_status();
    std::string out;
    if (run_program(forward_rule("-I"), &out) != 0) {
      return Error(ErrorCode::failed_precondition,
                   "cannot let the enclave's traffic through iptables' FORWARD chain: " + out);
    }
    return ok_status();
  }

  // Deletes the rule when no modhost bridge (of any scope) is left.
  void remove_forward_rule_if_unused() {
    DirLock global(forward_rule_mutex(), kForwardRuleLock);
    auto links = native::netlink::list_links();
    if (!links.ok()) return;
    for (const auto& l : links.value()) {
      if (l.name.rfind("mhb", 0) == 0) return;
    }
    for (int copies = 0; copies < 16 && run_program(forward_rule("-D")) == 0; ++copies) {
    }
  }

  static std::mutex& forward_rule_mutex() {
    static std::mutex m;
    return m;
  }

  Result<ImageStore*> image_store() {
    std::lock_guard lock(images_mutex);
    if (!images) {
      MODHOST_ASSIGN_OR_RETURN(images, ImageStore::open(options.image_dir));
    }
    return images.get();
  }

  // --- Enclaves ---

  static EnclaveInfo enclave_info(const json::value& v) {
    EnclaveInfo e;
    e.id = str(v, "id");
    e.name = str(v, "name");
    e.created = str(v, "created");
    e.subnet = str(v, "subnet");
    e.gateway = str(v, "gateway");
    e.complete = str(v, "state") == "ready";
    return e;
  }

  std::vector<EnclaveInfo> all_enclaves() {
    std::vector<EnclaveInfo> out;
    std::error_code ec;
    for (const auto& d : fs::directory_iterator(enclaves_dir(), ec)) {
      json::value v = parse_json_file(d.path().string() + "/enclave.json");
      if (!v.is_object()) continue;
      EnclaveInfo e = enclave_info(v);
      e.status = enclave_status(e.id);
      out.push_back(std::move(e));
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.created < b.created; });
    return out;
  }

  EnclaveStatus enclave_status(const std::string& id) {
    bool any = false;
    for (const auto& name : service_names(id)) {
      any = true;
      const ServiceStatus s = service_info(id, name).status;
      if (s == ServiceStatus::running || s == ServiceStatus::paused) return EnclaveStatus::running;
    }
    return any ? EnclaveStatus::stopped : EnclaveStatus::empty;
  }

  Result<EnclaveInfo> resolve_enclave(std::string_view ref) {
    if (ref.empty()) return Error(ErrorCode::invalid_argument, "no enclave given");
    std::vector<EnclaveInfo> prefix;
    for (auto& e : all_enclaves()) {
      if (e.id == ref || e.name == ref) return e;
      if (ref.size() >= 4 && e.id.rfind(ref, 0) == 0) prefix.push_back(e);
    }
    if (prefix.size() == 1) return prefix.front();
    if (prefix.size() > 1)
      return Error(ErrorCode::invalid_argument, "enclave id prefix '" + std::string(ref) + "' is ambiguous");
    return Error(ErrorCode::not_found,
                 "no enclave '" + std::string(ref) + "'; list them with 'modhost enclave ls'");
  }

  // Subnets of every enclave of every scope, and every address on the host.
  std::set<std::string> used_subnets() {
    std::set<std::string> out;
    std::error_code ec;
    for (const auto& scope : fs::directory_iterator(runtime, ec)) {
      std::error_code ec2;
      for (const auto& e : fs::directory_iterator(scope.path() / "enclaves", ec2)) {
        json::value v = parse_json_file(e.path().string() + "/enclave.json");
        if (!str(v, "subnet").empty()) out.insert(str(v, "subnet"));
      }
    }
    return out;
  }

  Result<std::pair<std::string, std::string>> allocate_subnet() {
    const auto used = used_subnets();
    MODHOST_ASSIGN_OR_RETURN(std::vector<std::string> host_addresses, native::netlink::list_addresses());
    for (int third = 0; third < 256; ++third) {
      const std::string base = "10.213." + std::to_string(third) + ".";
      const std::string subnet = base + "0/24";
      if (used.count(subnet)) continue;
      bool clash = false;
      for (const auto& a : host_addresses) {
        const std::string ip = a.substr(0, a.find('/'));
        if (ip_in_subnet(ip, subnet) || ip_in_subnet(base + "1", a)) clash = true;
      }
      if (!clash) return std::pair<std::string, std::string>{subnet, base + "1"};
    }
    return Error(ErrorCode::failed_precondition, "no free subnet left in 10.213.0.0/16 for a new enclave");
  }

  // --- Services ---

  std::vector<std::string> service_names(const std::string& eid) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& d : fs::directory_iterator(enclave_dir(eid) + "/services", ec)) {
      if (fs::exists(d.path() / "service.json")) out.push_back(d.path().filename().string());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  json::value service_state(const std::string& eid, const std::string& name) {
    return parse_json_file(service_dir(eid, name) + "/service.json");
  }

  // The service as it is now: its state file, its processes, its exit record.
  ServiceInfo service_info(const std::string& eid, const std::string& name) {
    const std::string dir = service_dir(eid, name);
    const json::value st = parse_json_file(dir + "/service.json");
    ServiceInfo info;
    info.name = name;
    info.id = str(st, "id");
    info.enclave_id = eid;
    info.image = str(st, "image");
    info.ip = str(st, "ip");
    info.labels[kLabelApp] = "modhost";
    info.labels[kLabelKind] = str(st, "kind");
    info.labels[kLabelEnclave] = eid;
    info.labels[kLabelName] = name;
    info.labels[kLabelCreated] = str(st, "created");
    if (const auto* o = st.if_object()) {
      if (const auto* labels = o->if_contains("labels"); labels && labels->is_object()) {
        for (const auto& [k, v] : labels->get_object()) {
          if (v.is_string()) info.labels[std::string(k)] = std::string(v.get_string());
        }
      }
    }
    const json::value run = parse_json_file(dir + "/run.json");
    if (!run.is_object()) {
      info.status = ServiceStatus::created;
      return info;
    }
    const int pid = static_cast<int>(num(run, "pid"));
    if (alive(pid, str(run, "pid_start"))) {
      info.status = cgroups.frozen(cgroup_of(info.id)) ? ServiceStatus::paused : ServiceStatus::running;
      if (const auto* ports = run.as_object().if_contains("ports"); ports && ports->is_array()) {
        for (const auto& p : ports->get_array()) {
          PublishedPort pp;
          pp.port.name = str(p, "name");
          pp.port.number = static_cast<std::uint16_t>(num(p, "number"));
          pp.port.protocol = str(p, "protocol");
          pp.host_ip = "127.0.0.1";
          pp.host_port = static_cast<std::uint16_t>(num(p, "host_port"));
          info.ports.push_back(pp);
        }
      }
      return info;
    }
    // Not running: the ports it declares, without host ports.
    if (auto cfg = decode_config(str(st, "config"), name); cfg.ok()) {
      for (const auto& p : cfg->ports) info.ports.push_back(PublishedPort{p, "", 0});
    }
    // PID 1 is gone; its shim writes the exit record a moment later.
    if (const int shim = static_cast<int>(num(run, "spawn_pid")); shim > 0) {
      for (int i = 0; i < 100 && !fs::exists(dir + "/exit"); ++i) {
        (void)::waitpid(shim, nullptr, WNOHANG);  // ours to reap if this process spawned it
        if (::kill(shim, 0) != 0) break;
        std::this_thread::sleep_for(2ms);
      }
    }
    const Records exit = native::decode_records(read_file(dir + "/exit"));
    const std::string code = native::record(exit, "code");
    info.exit_code = code.empty() ? -1 : std::atoi(code.c_str());
    info.status = str(run, "stopped") == "yes" ? ServiceStatus::stopped : ServiceStatus::exited;
    return info;
  }

  Result<std::string> require_service(const std::string& eid, const std::string& name, const EnclaveInfo& e) {
    if (!valid_name(name) || !fs::exists(service_dir(eid, name) + "/service.json")) {
      return Error(ErrorCode::not_found, "no service '" + name + "' in enclave '" + e.name + "'");
    }
    return service_dir(eid, name);
  }

  void event(const std::string& eid, const std::string& kind, const std::string& subject,
             const std::string& action, const std::map<std::string, std::string>& attributes = {}) {
    json::object attrs;
    for (const auto& [k, v] : attributes) attrs[k] = v;
    json::object ev{{"timeNano", now_ns()},
                    {"kind", kind},
                    {"subject", subject},
                    {"action", action},
                    {"attributes", std::move(attrs)}};
    std::ofstream out(enclave_dir(eid) + "/events", std::ios::app);
    out << json::serialize(ev) << "\n";
  }

  // /etc/hosts of an enclave: every service by name. Rewritten in place (the
  // file is bind-mounted into every service, so its inode must stay).
  void write_hosts(const std::string& eid) {
    std::string text = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";
    for (const auto& name : service_names(eid)) {
      const json::value st = service_state(eid, name);
      if (!str(st, "ip").empty()) text += str(st, "ip") + "\t" + name + "\n";
    }
    const std::string path = enclave_dir(eid) + "/hosts";
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return;
    if (::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size())) {
      (void)::ftruncate(fd, static_cast<off_t>(text.size()));
    }
    ::close(fd);
  }

  Result<std::string> allocate_ip(const std::string& eid, const EnclaveInfo& e) {
    std::set<std::string> used{e.gateway};
    for (const auto& name : service_names(eid)) used.insert(str(service_state(eid, name), "ip"));
    const std::string base = e.subnet.substr(0, e.subnet.rfind('.') + 1);
    for (int host = 2; host < 255; ++host) {
      const std::string ip = base + std::to_string(host);
      if (!used.count(ip)) return ip;
    }
    return Error(ErrorCode::failed_precondition, "enclave '" + e.name + "' has no free address left");
  }

  // Starts stage2 for a service whose rootfs and cgroup exist; waits for its
  // report. Writes run.json.
  Status spawn(const std::string& eid, const std::string& name, const EnclaveInfo& e) {
    const std::string dir = service_dir(eid, name);
    const json::value st = service_state(eid, name);
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
    add("ctl", ctl_socket(id));
    add("exit_file", dir + "/exit");
    add("events", enclave_dir(eid) + "/events");
    for (const auto& d : cgroups.dirs(cgroup_of(id))) add("cgroup", d);
    add("oom_file", cgroups.oom_file(cgroup_of(id)));
    add("oom_key", cgroups.oom_key());
    if (!config.network_of.empty()) {
      const ServiceInfo other = service_info(eid, config.network_of);
      const json::value orun = parse_json_file(service_dir(eid, config.network_of) + "/run.json");
      if (other.status != ServiceStatus::running) {
        return Error(ErrorCode::failed_precondition, "service '" + config.network_of + "' is not running");
      }
      add("net", "join");
      add("join_pid", std::to_string(num(orun, "pid")));
    } else {
      add("net", "own");
      add("bridge", bridge_name(eid));
      add("veth", "mhv" + id.substr(0, 12));
      add("peer", "mhp" + id.substr(0, 12));
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
    add("mount", enclave_dir(eid) + "/hosts\x1f/etc/hosts\x1fro");
    for (const auto& f : config.files) {
      add("mount", enclave_dir(eid) + "/artifacts/" + f.artifact + ".d\x1f" + f.path + "\x1fro");
    }
    for (const auto& b : config.binds)
      add("mount", b.source + "\x1f" + b.target + "\x1f" + (b.read_only ? "ro" : "rw"));
    std::vector<int> caps = kDefaultCaps;
    for (const auto& c : config.cap_add) caps.push_back(capability(c));
    for (int c : caps) add("cap", std::to_string(c));
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
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          report_deadline - std::chrono::steady_clock::now());
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
    event(eid, config.kind, name, "start");
    return ok_status();
  }

  // Waits until the service's shim recorded its exit (or `budget` passes).
  bool wait_exit(const std::string& eid, const std::string& name, std::chrono::milliseconds budget) {
    const auto deadline = std::chrono::steady_clock::now() + budget;
    const std::string dir = service_dir(eid, name);
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

  // Stops a service's processes: SIGTERM to its PID 1 (forwarded to the
  // program), SIGKILL to all of them after `grace`.
  void stop_processes(const std::string& eid, const std::string& name, std::chrono::milliseconds grace,
                      bool mark_stopped) {
    const std::string dir = service_dir(eid, name);
    json::value run = parse_json_file(dir + "/run.json");
    if (!run.is_object()) return;
    const std::string id = str(service_state(eid, name), "id");
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
    if (cgroups.frozen(cgroup_of(id))) (void)cgroups.freeze(cgroup_of(id), false);
    if (grace.count() > 0) {
      (void)signal_process(pid, str(run, "pid_start"), SIGTERM);
      if (wait_exit(eid, name, grace)) return;
    }
    (void)signal_process(pid, str(run, "pid_start"), SIGKILL);
    for (int p : cgroups.pids(cgroup_of(id))) kill_cgroup_member(p, cgroup_of(id));
    (void)wait_exit(eid, name, 5000ms);
  }

  // Everything of a service but its directory's removal: processes, rootfs
  // mount, exec socket, cgroup, veth. The veth is deleted at once, or added
  // to `links` for the caller to delete.
  Status teardown(const std::string& eid, const std::string& name,
                  std::vector<std::string>* links = nullptr) {
    const std::string dir = service_dir(eid, name);
    const std::string id = str(service_state(eid, name), "id");
    stop_processes(eid, name, 0ms, false);
    if (::umount2((dir + "/rootfs").c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
      return Error(ErrorCode::internal,
                   "cannot unmount the rootfs of '" + name + "': " + std::strerror(errno));
    }
    if (!id.empty()) {
      ::unlink(ctl_socket(id).c_str());
      // A service whose start was cut short (the host process killed) has
      // processes but no record of them: its cgroup knows them all.
      for (int attempt = 0; attempt < 200; ++attempt) {
        const auto pids = cgroups.pids(cgroup_of(id));
        if (pids.empty()) break;
        if (cgroups.frozen(cgroup_of(id))) (void)cgroups.freeze(cgroup_of(id), false);
        for (int p : pids) kill_cgroup_member(p, cgroup_of(id));
        std::this_thread::sleep_for(5ms);
      }
      MODHOST_TRY(cgroups.remove(cgroup_of(id)));
      const std::string veth = "mhv" + id.substr(0, 12);
      if (links) {
        links->push_back(veth);
      } else {
        MODHOST_TRY(native::netlink::delete_link(veth));
      }
    }
    return ok_status();
  }

  // rm -rf, retried: a shim that is ending may still write its exit record
  // into the directory meanwhile.
  static Status remove_tree(const std::string& path, const std::string& what) {
    std::error_code ec;
    for (int attempt = 0; attempt < 20; ++attempt) {
      ec.clear();
      fs::remove_all(path, ec);
      if (!ec && !fs::exists(path)) return ok_status();
      std::this_thread::sleep_for(10ms);
    }
    return Error(ErrorCode::internal, "cannot remove " + what + ": " + ec.message());
  }

  Status remove_service_locked(const std::string& eid, const std::string& name, const std::string& kind,
                               std::vector<std::string>* links = nullptr) {
    MODHOST_TRY(teardown(eid, name, links));
    MODHOST_TRY(remove_tree(service_dir(eid, name), "the files of service '" + name + "'"));
    write_hosts(eid);
    event(eid, kind.empty() ? "service" : kind, name, "destroy");
    return ok_status();
  }

  Status remove_enclave_locked(const EnclaveInfo& e, bool detached) {
    std::vector<std::string> links;
    for (const auto& name : service_names(e.id)) {
      MODHOST_TRY(remove_service_locked(e.id, name, str(service_state(e.id, name), "kind"), &links));
    }
    // Services half-made by a crash have a directory but no service.json.
    std::error_code ec;
    for (const auto& d : fs::directory_iterator(enclave_dir(e.id) + "/services", ec)) {
      (void)::umount2((d.path() / "rootfs").c_str(), MNT_DETACH);
    }
    links.push_back(bridge_name(e.id));
    MODHOST_TRY(delete_links(std::move(links), detached));
    MODHOST_TRY(remove_tree(enclave_dir(e.id), "the files of enclave '" + e.name + "'"));
    return ok_status();
  }
};

NativeBackend::NativeBackend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
NativeBackend::~NativeBackend() = default;

const std::string& NativeBackend::state_dir() const { return impl_->root; }

Result<std::unique_ptr<NativeBackend>> NativeBackend::create(const NativeOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  auto env = [](const char* name, const char* fallback) {
    const char* v = std::getenv(name);
    return std::string(v && *v ? v : fallback);
  };
  if (impl->options.runtime_dir.empty())
    impl->options.runtime_dir = env("MODHOST_NATIVE_DIR", "/run/modhost/native");
  if (impl->options.image_dir.empty())
    impl->options.image_dir = env("MODHOST_NATIVE_IMAGES", "/var/lib/modhost/native");
  if (impl->options.scope.empty()) impl->options.scope = env("MODHOST_SCOPE", "");
  if (impl->options.helper_dir.empty()) {
    impl->options.helper_dir = env("MODHOST_NATIVE_HELPERS", "");
    if (impl->options.helper_dir.empty()) {
      std::error_code ec;
      impl->options.helper_dir = fs::read_symlink("/proc/self/exe", ec).parent_path().string();
    }
  }
  if (::geteuid() != 0) {
    return Error(
        ErrorCode::failed_precondition,
        "the native backend makes containers itself and needs root; run as root or use --backend docker");
  }
  impl->spawn_binary = impl->options.helper_dir + "/modhost-spawn";
  impl->init_binary = impl->options.helper_dir + "/modhost-init";
  for (const auto& b : {impl->spawn_binary, impl->init_binary}) {
    if (::access(b.c_str(), X_OK) != 0) {
      return Error(ErrorCode::failed_precondition,
                   "the native backend's helper " + b +
                       " is missing; install modhost completely or set "
                       "MODHOST_NATIVE_HELPERS to the directory of modhost-spawn and modhost-init");
    }
  }
  MODHOST_ASSIGN_OR_RETURN(impl->cgroups, Cgroups::detect());
  impl->runtime = impl->options.runtime_dir;
  // overlayfs when the kernel has it (MODHOST_NATIVE_ROOTFS=copy asks for
  // copies anyway).
  impl->overlay = read_file("/proc/filesystems").find("\toverlay\n") != std::string::npos &&
                  env("MODHOST_NATIVE_ROOTFS", "overlay") != "copy";
  const std::string scope = impl->options.scope.empty() ? "_" : impl->options.scope;
  if (!valid_name(scope) && scope != "_") {
    return Error(ErrorCode::invalid_argument, "scope '" + scope + "' is not a valid name");
  }
  impl->root = impl->runtime + "/" + scope;
  std::error_code ec;
  fs::create_directories(impl->root + "/enclaves", ec);
  fs::create_directories(impl->runtime + "/sock", ec);
  if (ec) return Error(ErrorCode::failed_precondition, "cannot make " + impl->root + ": " + ec.message());
  ::chmod(impl->runtime.c_str(), 0700);
  return std::unique_ptr<NativeBackend>(new NativeBackend(std::move(impl)));
}

// --- Enclaves -----------------------------------------------------------------

Result<EnclaveInfo> NativeBackend::create_enclave(std::string_view name_in) {
  std::string name(name_in);
  if (name.empty()) name = "enclave-" + random_hex(6);
  if (!valid_name(name)) {
    return Error(ErrorCode::invalid_argument,
                 "invalid enclave name '" + name + "': use letters, digits, '-', '_' and '.' (at most 63)");
  }
  DirLock lock(impl_->mutex, impl_->root + "/.lock");
  for (const auto& e : impl_->all_enclaves()) {
    if (e.name == name)
      return Error(ErrorCode::already_exists, "an enclave named '" + name + "' already exists");
  }
  EnclaveInfo e;
  e.id = random_hex(32);
  e.name = name;
  e.created = now_rfc3339();
  e.status = EnclaveStatus::empty;
  const std::string dir = impl_->enclave_dir(e.id);
  std::error_code ec;
  fs::create_directories(dir + "/services", ec);
  fs::create_directories(dir + "/artifacts", ec);
  if (ec) return Error(ErrorCode::internal, "cannot make " + dir + ": " + ec.message());
  // The subnet is chosen and written under the lock of every scope.
  {
    DirLock global(impl_->global_mutex, impl_->runtime + "/.subnets.lock");
    auto subnet = impl_->allocate_subnet();
    if (!subnet.ok()) {
      fs::remove_all(dir, ec);
      return subnet.error();
    }
    e.subnet = subnet->first;
    e.gateway = subnet->second;
    json::object state{{"id", e.id},         {"name", e.name},       {"created", e.created},
                       {"subnet", e.subnet}, {"gateway", e.gateway}, {"state", "creating"}};
    MODHOST_TRY(write_file_atomic(dir + "/enclave.json", json::serialize(state)));
  }
  const std::string bridge = Impl::bridge_name(e.id);
  Status s = native::netlink::create_bridge(bridge);
  if (s.ok()) s = native::netlink::set_alias(bridge, impl_->link_label(e.id));
  if (s.ok()) s = native::netlink::add_address(bridge, e.gateway, 24);
  if (s.ok()) s = native::netlink::set_up(bridge);
  // The host routes nothing that arrives on the bridge: a service that
  // crafts frames to the gateway (it has CAP_NET_RAW) reaches no other
  // network.
  if (s.ok()) {
    std::ofstream forwarding("/proc/sys/net/ipv4/conf/" + bridge + "/forwarding");
    forwarding << "0";
    forwarding.flush();
    if (!forwarding) s = Error(ErrorCode::internal, "cannot turn forwarding off on bridge " + bridge);
  }
  if (s.ok()) s = impl_->ensure_forward_rule();
  if (!s.ok()) {
    (void)native::netlink::delete_link(Impl::bridge_name(e.id));
    fs::remove_all(dir, ec);
    return s.error().context("cannot create enclave '" + name + "'");
  }
  impl_->write_hosts(e.id);
  json::object state{{"id", e.id},         {"name", e.name},       {"created", e.created},
                     {"subnet", e.subnet}, {"gateway", e.gateway}, {"state", "ready"}};
  MODHOST_TRY(write_file_atomic(dir + "/enclave.json", json::serialize(state)));
  return e;
}

Result<std::vector<EnclaveInfo>> NativeBackend::list_enclaves() {
  std::vector<EnclaveInfo> out;
  for (auto& e : impl_->all_enclaves()) {
    if (e.complete) out.push_back(std::move(e));
  }
  return out;
}

Result<EnclaveInfo> NativeBackend::find_enclave(std::string_view id_or_name) {
  return impl_->resolve_enclave(id_or_name);
}

Status NativeBackend::stop_enclave(std::string_view enclave_id) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  DirLock lock(impl_->mutex, impl_->root + "/.lock");
  for (const auto& name : impl_->service_names(e.id)) {
    if (impl_->service_info(e.id, name).status == ServiceStatus::running ||
        impl_->service_info(e.id, name).status == ServiceStatus::paused) {
      impl_->stop_processes(e.id, name, 2000ms, true);
      impl_->event(e.id, str(impl_->service_state(e.id, name), "kind"), name, "stop");
    }
  }
  return ok_status();
}

Status NativeBackend::remove_enclave(std::string_view enclave_id, bool force) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, impl_->resolve_enclave(enclave_id));
  DirLock lock(impl_->mutex, impl_->root + "/.lock");
  if (!force && impl_->enclave_status(e.id) == EnclaveStatus::running) {
    return Error(ErrorCode::failed_precondition,
                 "enclave '" + e.name + "' has running services; stop it first or use -f");
  }
  return impl_->remove_enclave_locked(e, /*detached=*/true);
}

// --- Services -------------------------------------------------------------------

Result<ServiceInfo> NativeBackend::add_service(std::string_view enclave_id, const ServiceConfig& config_in) {
  ServiceConfig config = config_in;
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string ctx = "failed to start service '" + config.name + "' in enclave '" + e.name + "'";
  if (!e.complete) {
    return Error(ErrorCode::failed_precondition,
                 ctx + ": the enclave is half-made; 'modhost clean' removes it");
  }
  if (!valid_name(config.name)) {
    return Error(ErrorCode::invalid_argument, "invalid service name '" + config.name +
                                                  "': use letters, digits, '-', '_' and '.' (at most 63)");
  }
  if (config.kind != "service" && config.kind != "module" && config.kind != "helper") {
    return Error(ErrorCode::invalid_argument, ctx + ": unknown kind '" + config.kind + "'");
  }
  for (const auto& p : config.ports) {
    if (p.protocol != "tcp" && p.protocol != "udp") {
      return Error(ErrorCode::invalid_argument,
                   ctx + ": port '" + p.name + "' has protocol '" + p.protocol + "'; use tcp or udp");
    }
    if (p.number == 0)
      return Error(ErrorCode::invalid_argument, ctx + ": invalid port spec '" + p.name + "'");
  }
  for (const auto& b : config.binds) {
    if (b.source.empty() || b.source[0] != '/' || b.target.empty() || b.target[0] != '/') {
      return Error(ErrorCode::invalid_argument, ctx + ": bind mount paths must be absolute");
    }
  }
  for (const auto& c : config.cap_add) {
    if (capability(c) < 0)
      return Error(ErrorCode::invalid_argument, ctx + ": unknown capability '" + c + "'");
  }
  if (!config.network_of.empty() && !config.ports.empty()) {
    return Error(ErrorCode::invalid_argument, ctx + ": a service in another's network publishes no ports");
  }
  if (!backend::valid_user(config.user)) {
    return Error(ErrorCode::invalid_argument,
                 ctx + ": bad user '" + config.user + "': expected USER[:GROUP], each a number or a name");
  }
  MODHOST_ASSIGN_OR_RETURN(ImageStore * store, impl_->image_store());
  auto image = store->find(config.image);
  if (!image.ok()) {
    if (image.error().code() == ErrorCode::not_found) {
      return Error(ErrorCode::not_found,
                   ctx + ": image '" + config.image +
                       "' not found; load it with 'modhost image load' or 'modhost image pack'");
    }
    return image.error().context(ctx);
  }

  // Held while names, addresses and the enclave's hosts file change, and
  // the container starts; not while the start check below watches it, so
  // services of one scope start side by side.
  std::optional<DirLock> lock(std::in_place, impl_->mutex, impl_->root + "/.lock");
  const std::string dir = impl_->service_dir(e.id, config.name);
  if (fs::exists(dir)) {
    return Error(ErrorCode::already_exists,
                 ctx + ": a service with that name already exists in enclave '" + e.name + "'");
  }
  for (const auto& f : config.files) {
    if (!fs::exists(impl_->enclave_dir(e.id) + "/artifacts/" + f.artifact + ".d")) {
      return Error(ErrorCode::not_found,
                   ctx + ": no files artifact '" + f.artifact + "' in enclave '" + e.name + "'");
    }
  }
  const std::string id = random_hex(32);
  std::string ip;
  if (config.network_of.empty()) {
    MODHOST_ASSIGN_OR_RETURN(ip, impl_->allocate_ip(e.id, e));
  } else {
    if (!fs::exists(impl_->service_dir(e.id, config.network_of) + "/service.json")) {
      return Error(ErrorCode::invalid_argument, ctx + ": no service '" + config.network_of + "' to join");
    }
  }

  // What it runs: Docker's rules for entrypoint and cmd.
  std::vector<std::string> argv = config.entrypoint.empty() ? image->entrypoint : config.entrypoint;
  const std::vector<std::string>& cmd =
      !config.cmd.empty() ? config.cmd
                          : (config.entrypoint.empty() ? image->cmd : std::vector<std::string>{});
  argv.insert(argv.end(), cmd.begin(), cmd.end());
  std::map<std::string, std::string> env_map;
  std::vector<std::string> env_order;
  auto set_env = [&](const std::string& k, const std::string& v) {
    if (!env_map.count(k)) env_order.push_back(k);
    env_map[k] = v;
  };
  set_env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  for (const auto& kv : image->env) {
    const auto eq = kv.find('=');
    if (eq != std::string::npos) set_env(kv.substr(0, eq), kv.substr(eq + 1));
  }
  set_env("HOSTNAME", config.name);
  for (const auto& [k, v] : config.env) set_env(k, v);
  json::array env_json, argv_json;
  for (const auto& k : env_order) env_json.emplace_back(k + "=" + env_map[k]);
  for (const auto& a : argv) argv_json.emplace_back(a);
  json::object labels;
  for (const auto& [k, v] : config.labels) labels[k] = v;

  // Everything made from here is undone if a later step fails.
  bool ok = false;
  struct Undo {
    Impl& impl;
    const std::string& eid;
    const std::string& name;
    const std::string& dir;
    bool& ok;
    ~Undo() {
      if (ok) return;
      (void)impl.teardown(eid, name);
      std::error_code ec;
      fs::remove_all(dir, ec);
      impl.write_hosts(eid);
    }
  } undo{*impl_, e.id, config.name, dir, ok};

  std::error_code ec;
  for (const char* sub : {"/rootfs", "/upper", "/work"}) fs::create_directories(dir + sub, ec);
  if (ec) return Error(ErrorCode::internal, ctx + ": cannot make " + dir + ": " + ec.message());
  json::object state{{"id", id},
                     {"name", config.name},
                     {"image", config.image},
                     {"kind", config.kind},
                     {"created", now_rfc3339()},
                     {"ip", ip},
                     {"argv", argv_json},
                     {"env", env_json},
                     {"workdir", image->workdir.empty() ? "/" : image->workdir},
                     {"labels", labels},
                     {"config", encode_config(config)},
                     {"state", "creating"}};
  MODHOST_TRY(write_file_atomic(dir + "/service.json", json::serialize(state)));

  // 1. Its cgroup.
  native::CgroupLimits limits;
  limits.memory_bytes = config.memory_bytes;
  limits.cpus = config.cpus;
  MODHOST_TRY(impl_->cgroups.create(impl_->cgroup_of(id), limits));

  // 2. The rootfs: the image's layers under a writable layer of its own, or,
  //    where overlayfs is missing, a copy of them applied in order.
  const auto layers = store->layer_dirs(*image);
  if (impl_->overlay) {
    std::string lower;
    for (auto it = layers.rbegin(); it != layers.rend(); ++it) lower += (lower.empty() ? "" : ":") + *it;
    const std::string opts = "lowerdir=" + lower + ",upperdir=" + dir + "/upper,workdir=" + dir + "/work";
    if (::mount("overlay", (dir + "/rootfs").c_str(), "overlay", MS_NODEV, opts.c_str()) != 0) {
      return Error(ErrorCode::internal, ctx + ": cannot mount its rootfs (overlay): " + std::strerror(errno));
    }
  } else {
    for (const auto& layer : layers) {
      if (Status copied = image::apply_layer_dir(layer, dir + "/rootfs"); !copied.ok()) {
        return copied.error().context(ctx + ": cannot copy its rootfs");
      }
    }
  }
  // 3. Its user (the config's, else the image's), from the image's own files.
  MODHOST_ASSIGN_OR_RETURN(auto ids,
                           resolve_user(dir + "/rootfs", config.user.empty() ? image->user : config.user));
  state["uid"] = ids.first;
  state["gid"] = ids.second;
  MODHOST_TRY(write_file_atomic(dir + "/service.json", json::serialize(state)));
  // 4. Its name in the enclave, then the container.
  impl_->write_hosts(e.id);
  impl_->event(e.id, config.kind, config.name, "create");
  if (Status s = impl_->spawn(e.id, config.name, e); !s.ok()) return s.error().context(ctx);

  // 5. A process that exits at once is a failed start: its last words. The
  //    container's PID 1 ends as soon as the program does; a pidfd says
  //    when, without polling.
  const auto window = config.kind == "module" ? 0ms : impl_->options.startup_check;
  lock.reset();
  {
    const json::value run = parse_json_file(dir + "/run.json");
    const int pid = static_cast<int>(num(run, "pid"));
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd >= 0) {
      if (alive(pid, str(run, "pid_start"))) {
        pollfd p{pidfd, POLLIN, 0};
        while (::poll(&p, 1, static_cast<int>(window.count())) < 0 && errno == EINTR) {
        }
      }
      ::close(pidfd);
    }
  }
  if (ServiceInfo now = impl_->service_info(e.id, config.name); now.status != ServiceStatus::running) {
    (void)impl_->wait_exit(e.id, config.name, 1000ms);
    now = impl_->service_info(e.id, config.name);
    lock.emplace(impl_->mutex, impl_->root + "/.lock");  // for the undo
    return Error(ErrorCode::failed_precondition, ctx + ": it exited at once with code " +
                                                     std::to_string(now.exit_code.value_or(-1)) +
                                                     "; its last output: " + last_words(dir + "/log"));
  }
  state["state"] = "ready";
  MODHOST_TRY(write_file_atomic(dir + "/service.json", json::serialize(state)));
  ok = true;
  return impl_->service_info(e.id, config.name);
}

Result<std::vector<ServiceInfo>> NativeBackend::list_services(std::string_view enclave_id) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  std::vector<ServiceInfo> out;
  for (const auto& name : impl_->service_names(e.id)) {
    if (str(impl_->service_state(e.id, name), "state") != "ready") continue;
    out.push_back(impl_->service_info(e.id, name));
  }
  return out;
}

Result<ServiceInfo> NativeBackend::inspect_service(std::string_view enclave_id, std::string_view name) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  MODHOST_TRY(impl_->require_service(e.id, std::string(name), e));
  return impl_->service_info(e.id, std::string(name));
}

Status NativeBackend::remove_service(std::string_view enclave_id, std::string_view name) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  DirLock lock(impl_->mutex, impl_->root + "/.lock");
  MODHOST_TRY(impl_->require_service(e.id, std::string(name), e));
  std::vector<std::string> links;
  MODHOST_TRY(impl_->remove_service_locked(
      e.id, std::string(name), str(impl_->service_state(e.id, std::string(name)), "kind"), &links));
  return impl_->delete_links(std::move(links), /*detached=*/true);
}

Status NativeBackend::stop_service(std::string_view enclave_id, std::string_view name_in, int grace_seconds) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  DirLock lock(impl_->mutex, impl_->root + "/.lock");
  MODHOST_TRY(impl_->require_service(e.id, name, e));
  impl_->stop_processes(e.id, name, std::chrono::seconds(std::max(0, grace_seconds)), true);
  impl_->event(e.id, str(impl_->service_state(e.id, name), "kind"), name, "stop");
  return ok_status();
}

Status NativeBackend::start_service(std::string_view enclave_id, std::string_view name_in) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  DirLock lock(impl_->mutex, impl_->root + "/.lock");
  MODHOST_TRY(impl_->require_service(e.id, name, e));
  const ServiceStatus s = impl_->service_info(e.id, name).status;
  if (s == ServiceStatus::running || s == ServiceStatus::paused) return ok_status();
  (void)impl_->wait_exit(e.id, name, 1000ms);
  if (Status started = impl_->spawn(e.id, name, e); !started.ok())
    return started.error().context("cannot start service '" + name + "'");
  return ok_status();
}

Status NativeBackend::restart_service(std::string_view enclave_id, std::string_view name_in) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  DirLock lock(impl_->mutex, impl_->root + "/.lock");
  MODHOST_TRY(impl_->require_service(e.id, name, e));
  impl_->stop_processes(e.id, name, 10000ms, false);
  if (impl_->service_info(e.id, name).status == ServiceStatus::running) {
    return Error(ErrorCode::failed_precondition, "service '" + name + "' did not stop; it was not restarted");
  }
  MODHOST_TRY(impl_->spawn(e.id, name, e));
  impl_->event(e.id, str(impl_->service_state(e.id, name), "kind"), name, "restart");
  return ok_status();
}

Status NativeBackend::pause_service(std::string_view enclave_id, std::string_view name_in) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  MODHOST_TRY(impl_->require_service(e.id, name, e));
  const ServiceInfo info = impl_->service_info(e.id, name);
  if (info.status != ServiceStatus::running) {
    return Error(ErrorCode::failed_precondition, "service '" + name + "' is not running");
  }
  MODHOST_TRY(impl_->cgroups.freeze(impl_->cgroup_of(info.id), true));
  impl_->event(e.id, str(impl_->service_state(e.id, name), "kind"), name, "pause");
  return ok_status();
}

Status NativeBackend::unpause_service(std::string_view enclave_id, std::string_view name_in) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  MODHOST_TRY(impl_->require_service(e.id, name, e));
  const ServiceInfo info = impl_->service_info(e.id, name);
  if (info.status != ServiceStatus::paused) {
    return Error(ErrorCode::failed_precondition, "service '" + name + "' is not paused");
  }
  MODHOST_TRY(impl_->cgroups.freeze(impl_->cgroup_of(info.id), false));
  impl_->event(e.id, str(impl_->service_state(e.id, name), "kind"), name, "unpause");
  return ok_status();
}

Status NativeBackend::kill_service(std::string_view enclave_id, std::string_view name_in, int signal) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  MODHOST_TRY(impl_->require_service(e.id, name, e));
  if (signal <= 0 || signal >= 65)
    return Error(ErrorCode::invalid_argument, "invalid signal " + std::to_string(signal));
  const json::value run = parse_json_file(impl_->service_dir(e.id, name) + "/run.json");
  const int pid = static_cast<int>(num(run, "pid"));
  if (!alive(pid, str(run, "pid_start"))) {
    return Error(ErrorCode::failed_precondition, "service '" + name + "' is not running");
  }
  impl_->event(e.id, str(impl_->service_state(e.id, name), "kind"), name, "kill",
               {{"signal", std::to_string(signal)}});
  if (!signal_process(pid, str(run, "pid_start"), signal)) {
    return Error(ErrorCode::internal, "cannot signal service '" + name + "': " + std::strerror(errno));
  }
  // SIGKILL ends PID 1 itself: the exit is known once the shim recorded it.
  if (signal == SIGKILL) (void)impl_->wait_exit(e.id, name, 5000ms);
  return ok_status();
}

Result<ExecResult> NativeBackend::exec(std::string_view enclave_id, std::string_view name,
                                       const std::vector<std::string>& argv) {
  return exec_with_timeout(enclave_id, name, argv, std::nullopt);
}

Result<ExecResult> NativeBackend::exec_with_timeout(std::string_view enclave_id, std::string_view name_in,
                                                    const std::vector<std::string>& argv,
                                                    std::optional<std::chrono::milliseconds> timeout) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  MODHOST_ASSIGN_OR_RETURN(std::string dir, impl_->require_service(e.id, name, e));
  if (argv.empty()) return Error(ErrorCode::invalid_argument, "exec needs a command");
  if (impl_->service_info(e.id, name).status != ServiceStatus::running) {
    return Error(ErrorCode::failed_precondition,
                 "service '" + name + "' in enclave '" + e.name + "' is not running");
  }
  const int sock = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path = impl_->ctl_socket(str(impl_->service_state(e.id, name), "id"));
  std::memcpy(addr.sun_path, path.c_str(), std::min(path.size() + 1, sizeof addr.sun_path - 1));
  if (sock < 0 || ::connect(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    if (sock >= 0) ::close(sock);
    return Error(ErrorCode::unavailable,
                 "cannot reach the init of service '" + name + "': " + std::strerror(err));
  }
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) {
    ::close(sock);
    return Error(ErrorCode::internal, std::string("pipe: ") + std::strerror(errno));
  }
  Records req;
  for (const auto& a : argv) req.emplace_back("argv", a);
  const std::string data = native::encode_records(req);
  iovec iov{const_cast<char*>(data.data()), data.size()};
  char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &out[1], sizeof(int));
  const ssize_t sent = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  ::close(out[1]);
  if (sent < 0) {
    const int err = errno;
    ::close(out[0]);
    ::close(sock);
    return Error(ErrorCode::unavailable, "cannot send the exec request: " + std::string(std::strerror(err)));
  }
  // Output and the exit code arrive on two channels: watch both. Once the
  // exit code is in, what is left in the pipe is read without waiting (a
  // process the command left in the background may hold it open for ever).
  ExecResult result;
  ::fcntl(out[0], F_SETFL, O_NONBLOCK);
  char buf[16384];
  char reply[4096];
  ssize_t n = 0;
  bool out_open = true, replied = false;
  const auto deadline = std::chrono::steady_clock::now() + timeout.value_or(std::chrono::hours(24 * 365));
  while (!replied || out_open) {
    pollfd fds[2] = {{out[0], static_cast<short>(out_open ? POLLIN : 0), 0},
                     {sock, static_cast<short>(replied ? 0 : POLLIN), 0}};
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      ::close(out[0]);
      ::close(sock);  // init kills the command when its socket closes
      return Error(ErrorCode::timeout,
                   "exec in service '" + name + "' did not finish within " +
                       std::to_string(timeout.value_or(std::chrono::milliseconds(0)).count()) + " ms");
    }
    const int ready =
        replied ? 0 : ::poll(fds, 2, static_cast<int>(std::min<long long>(left.count(), 1 << 30)));
    if (ready < 0 && errno != EINTR) break;
    if (out_open && (replied || (fds[0].revents & (POLLIN | POLLHUP | POLLERR)))) {
      while (true) {
        const ssize_t got = ::read(out[0], buf, sizeof buf);
        if (got > 0) {
          result.output.append(buf, static_cast<std::size_t>(got));
          continue;
        }
        if (got == 0 || replied || (errno != EAGAIN && errno != EINTR)) out_open = false;
        break;
      }
    }
    if (!replied && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      while ((n = ::recv(sock, reply, sizeof reply, 0)) < 0 && errno == EINTR) {
      }
      replied = true;
    }
  }
  ::close(out[0]);
  ::close(sock);
  if (n <= 0) {
    return Error(ErrorCode::unavailable, "service '" + name + "' ended during the exec");
  }
  const Records r = native::decode_records(std::string_view(reply, static_cast<std::size_t>(n)));
  result.exit_code = std::atoi(native::record(r, "exit", "-1").c_str());
  if (const std::string err = native::record(r, "error"); !err.empty()) result.output += err + "\n";
  return result;
}

Status NativeBackend::logs(std::string_view enclave_id, std::string_view name_in, bool follow,
                           const LogSink& sink) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  MODHOST_ASSIGN_OR_RETURN(std::string dir, impl_->require_service(e.id, name, e));
  const int fd = ::open((dir + "/log").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ok_status();  // never started: no output yet
  char buf[16384];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      if (!sink(std::string_view(buf, static_cast<std::size_t>(n)))) break;
      continue;
    }
    if (!follow) break;
    // At the end: done when the service is, else look again shortly.
    const ServiceStatus s = impl_->service_info(e.id, name).status;
    if (s != ServiceStatus::running && s != ServiceStatus::paused) {
      const ssize_t last = ::read(fd, buf, sizeof buf);
      if (last > 0 && sink(std::string_view(buf, static_cast<std::size_t>(last)))) continue;
      break;
    }
    if (!fs::exists(dir)) break;
    std::this_thread::sleep_for(20ms);
  }
  ::close(fd);
  return ok_status();
}

Status NativeBackend::wait_ready(std::string_view enclave_id, std::string_view name_in,
                                 const ReadinessCheck& check) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  MODHOST_TRY(impl_->require_service(e.id, name, e));
  const std::string ctx = "service '" + name + "' in enclave '" + e.name + "'";
  ReadinessProbes probes;
  probes.current = [&]() -> Result<ServiceInfo> { return impl_->service_info(e.id, name); };
  probes.tcp = loopback_tcp_probe;
  probes.http = loopback_http_get;
  probes.exec = [&](const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
    return exec_with_timeout(e.id, name, argv, timeout);
  };
  probes.last_output = [&] { return last_words(impl_->service_dir(e.id, name) + "/log"); };
  return wait_until_ready(ctx, check, impl_->service_info(e.id, name), probes);
}

Result<ServiceConfig> NativeBackend::service_config(std::string_view enclave_id, std::string_view name_in) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  MODHOST_TRY(impl_->require_service(e.id, name, e));
  return decode_config(str(impl_->service_state(e.id, name), "config"), name);
}

namespace {

// The host path of PATH inside ROOT, every symlink resolved inside ROOT (an
// image's symlink cannot lead out of it).
Result<std::string> resolve_in_root(const std::string& root, const std::string& path) {
  const int dir = ::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return Error(ErrorCode::internal, "cannot open " + root + ": " + std::strerror(errno));
  open_how how{};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  const int fd = static_cast<int>(::syscall(SYS_openat2, dir, path.c_str(), &how, sizeof how));
  const int err = errno;
  ::close(dir);
  if (fd < 0) {
    return Error(err == ENOENT || err == ENOTDIR ? ErrorCode::not_found : ErrorCode::internal,
                 "'" + path + "': " + std::strerror(err));
  }
  std::error_code ec;
  const std::string real = fs::read_symlink("/proc/self/fd/" + std::to_string(fd), ec).string();
  ::close(fd);
  if (ec || (real != root && real.rfind(root + "/", 0) != 0)) {
    return Error(ErrorCode::internal, "'" + path + "' resolves outside the service");
  }
  return real;
}

// A running service's processes frozen while the host reads or writes its
// files: none of them can swap a checked path for a symlink meanwhile. A
// paused service stays paused.
class FrozenWhile {
 public:
  FrozenWhile(const Cgroups& cgroups, std::string relative)
      : cgroups_(cgroups), relative_(std::move(relative)) {
    if (!cgroups_.frozen(relative_) && !cgroups_.pids(relative_).empty()) {
      thaw_ = cgroups_.freeze(relative_, true).ok();
    }
  }
  ~FrozenWhile() {
    if (thaw_) (void)cgroups_.freeze(relative_, false);
  }
  FrozenWhile(const FrozenWhile&) = delete;
  FrozenWhile& operator=(const FrozenWhile&) = delete;

 private:
  const Cgroups& cgroups_;
  std::string relative_;
  bool thaw_ = false;
};

bool is_gzip(std::string_view data) {
  return data.size() >= 2 && static_cast<unsigned char>(data[0]) == 0x1f &&
         static_cast<unsigned char>(data[1]) == 0x8b;
}

ArtifactInfo artifact_from(const json::value& v, const std::string& eid) {
  ArtifactInfo a;
  a.name = str(v, "name");
  a.enclave_id = eid;
  a.size_bytes = static_cast<std::uint64_t>(num(v, "size"));
  a.created = str(v, "created");
  return a;
}

}  // namespace

Status NativeBackend::copy_to_service(std::string_view enclave_id, std::string_view name_in,
                                      std::string_view dir, std::string_view tar) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  MODHOST_ASSIGN_OR_RETURN(std::string sdir, impl_->require_service(e.id, name, e));
  const std::string ctx = "cannot copy into '" + std::string(dir) + "' of service '" + name + "'";
  if (dir.empty() || dir[0] != '/')
    return Error(ErrorCode::invalid_argument, ctx + ": the path must be absolute");
  FrozenWhile frozen(impl_->cgroups, impl_->cgroup_of(str(impl_->service_state(e.id, name), "id")));
  auto target = resolve_in_root(sdir + "/rootfs", std::string(dir));
  if (!target.ok()) return target.error().context(ctx);
  std::string plain(tar);
  if (is_gzip(tar)) {
    auto unzipped = image::gzip_decompress(tar);
    if (!unzipped.ok()) return Error(ErrorCode::invalid_argument, ctx + ": " + unzipped.error().message());
    plain = std::move(unzipped).value();
  }
  if (Status s = image::extract_tar(plain, target.value()); !s.ok()) return s.error().context(ctx);
  return ok_status();
}

Result<ArtifactInfo> NativeBackend::store_artifact(std::string_view enclave_id, std::string_view name_in,
                                                   std::string_view tgz) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  const std::string ctx = "failed to store files artifact '" + name + "' in enclave '" + e.name + "'";
  if (!valid_name(name)) {
    return Error(
        ErrorCode::invalid_argument,
        ctx + ": a name has 1-63 letters, digits, '.', '_' or '-' and starts with a letter or digit");
  }
  if (!is_gzip(tgz)) {
    return Error(ErrorCode::invalid_argument, ctx + ": the content is not a gzip-compressed tar (.tgz)");
  }
  auto plain = image::gzip_decompress(tgz);
  if (!plain.ok()) return Error(ErrorCode::invalid_argument, ctx + ": " + plain.error().message());
  DirLock lock(impl_->mutex, impl_->root + "/.lock");
  const std::string base = impl_->enclave_dir(e.id) + "/artifacts/" + name;
  if (fs::exists(base + ".json")) {
    return Error(ErrorCode::already_exists, ctx + ": an artifact with that name already exists");
  }
  std::error_code ec;
  fs::remove_all(base + ".d", ec);
  if (Status s = image::extract_tar(plain.value(), base + ".d"); !s.ok()) {
    fs::remove_all(base + ".d", ec);
    return Error(ErrorCode::invalid_argument, ctx + ": " + s.error().message());
  }
  MODHOST_TRY(write_file_atomic(base + ".tgz", tgz));
  ArtifactInfo info{name, e.id, tgz.size(), now_rfc3339()};
  // Written last: an artifact without it is half-made and not listed.
  MODHOST_TRY(write_file_atomic(
      base + ".json",
      json::serialize(json::object{{"name", name}, {"size", info.size_bytes}, {"created", info.created}})));
  return info;
}

Result<std::vector<ArtifactInfo>> NativeBackend::list_artifacts(std::string_view enclave_id) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  std::vector<ArtifactInfo> out;
  std::error_code ec;
  for (const auto& f : fs::directory_iterator(impl_->enclave_dir(e.id) + "/artifacts", ec)) {
    if (f.path().extension() != ".json") continue;
    const json::value v = parse_json_file(f.path().string());
    if (v.is_object()) out.push_back(artifact_from(v, e.id));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

Result<std::string> NativeBackend::download_artifact(std::string_view enclave_id, std::string_view name_in) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  const std::string base = impl_->enclave_dir(e.id) + "/artifacts/" + name;
  if (!valid_name(name) || !fs::exists(base + ".json")) {
    return Error(ErrorCode::not_found, "no files artifact '" + name + "' in enclave '" + e.name + "'");
  }
  return read_file(base + ".tgz");
}

Status NativeBackend::remove_artifact(std::string_view enclave_id, std::string_view name_in) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  const std::string ctx = "failed to remove files artifact '" + name + "' from enclave '" + e.name + "'";
  const std::string base = impl_->enclave_dir(e.id) + "/artifacts/" + name;
  DirLock lock(impl_->mutex, impl_->root + "/.lock");
  if (!valid_name(name) || !fs::exists(base + ".json")) {
    return Error(ErrorCode::not_found, ctx + ": no such artifact; list them with 'modhost files ls'");
  }
  std::error_code ec;
  fs::remove(base + ".json", ec);  // first: an artifact without it is not listed
  if (ec) return Error(ErrorCode::internal, ctx + ": " + ec.message());
  fs::remove(base + ".tgz", ec);
  // Services bind-mount the unpacked tree: it moves aside, whole, and goes
  // with the enclave, so their files stay and the name is free at once.
  const std::string trash = impl_->enclave_dir(e.id) + "/artifacts/.removed";
  fs::create_directories(trash, ec);
  fs::rename(base + ".d", trash + "/" + name + "-" + random_hex(8), ec);
  if (ec) fs::remove_all(base + ".d", ec);
  return ok_status();
}

Result<ArtifactInfo> NativeBackend::store_from_service(std::string_view enclave_id, std::string_view service,
                                                       std::string_view path, std::string_view name) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string sname(service);
  MODHOST_ASSIGN_OR_RETURN(std::string sdir, impl_->require_service(e.id, sname, e));
  const std::string ctx = "cannot store '" + std::string(path) + "' of service '" + sname + "'";
  if (path.empty() || path[0] != '/')
    return Error(ErrorCode::invalid_argument, ctx + ": the path must be absolute");
  FrozenWhile frozen(impl_->cgroups, impl_->cgroup_of(str(impl_->service_state(e.id, sname), "id")));
  auto source = resolve_in_root(sdir + "/rootfs", std::string(path));
  if (!source.ok()) {
    if (source.error().code() == ErrorCode::not_found) {
      return Error(ErrorCode::not_found, ctx + ": no such path in the service");
    }
    return source.error().context(ctx);
  }
  // A directory keeps its own name, as Docker's archive API gives it.
  MODHOST_ASSIGN_OR_RETURN(std::string tar, image::tar_path(source.value()));
  MODHOST_ASSIGN_OR_RETURN(std::string tgz, image::gzip_compress(tar));
  return store_artifact(enclave_id, name, tgz);
}

// --- Images -------------------------------------------------------------------

Status NativeBackend::load_image(std::string_view archive_path) {
  MODHOST_ASSIGN_OR_RETURN(ImageStore * store, impl_->image_store());
  MODHOST_ASSIGN_OR_RETURN(auto loaded, store->load(std::string(archive_path)));
  (void)loaded;
  return ok_status();
}

Result<bool> NativeBackend::image_exists(std::string_view reference) {
  MODHOST_ASSIGN_OR_RETURN(ImageStore * store, impl_->image_store());
  auto found = store->find(reference);
  if (found.ok()) return true;
  if (found.error().code() == ErrorCode::not_found) return false;
  return found.error();
}

Result<std::vector<ImageInfo>> NativeBackend::list_images() {
  MODHOST_ASSIGN_OR_RETURN(ImageStore * store, impl_->image_store());
  MODHOST_ASSIGN_OR_RETURN(auto images, store->list());
  std::vector<ImageInfo> out;
  for (const auto& i : images) out.push_back(ImageInfo{i.id, i.references, i.size_bytes});
  return out;
}

Status NativeBackend::remove_image(std::string_view reference) {
  MODHOST_ASSIGN_OR_RETURN(ImageStore * store, impl_->image_store());
  // Layers in use by a service's rootfs stay on disk (the overlay holds
  // them open); refuse rather than pull them from under it.
  MODHOST_ASSIGN_OR_RETURN(native::StoredImage image, store->find(reference));
  for (const auto& e : impl_->all_enclaves()) {
    for (const auto& name : impl_->service_names(e.id)) {
      const std::string ref = str(impl_->service_state(e.id, name), "image");
      auto used = store->find(ref);
      if (used.ok() && used->id == image.id && image.references.size() <= 1) {
        return Error(ErrorCode::failed_precondition, "image '" + std::string(reference) +
                                                         "' is used by service '" + name + "' in enclave '" +
                                                         e.name + "'; remove it first");
      }
    }
  }
  return store->remove(reference);
}

// --- Events -------------------------------------------------------------------

Status NativeBackend::events(std::string_view enclave_id, bool follow, const EventSink& sink) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string path = impl_->enclave_dir(e.id) + "/events";
  std::ifstream in(path);
  std::string pending;
  while (true) {
    std::string line;
    if (std::getline(in, line)) {
      if (in.eof()) {  // a line still being written
        pending += line;
        in.clear();
        continue;
      }
      line = pending + line;
      pending.clear();
      boost::system::error_code ec;
      json::value v = json::parse(line, ec);
      if (ec) continue;
      EnclaveEvent ev;
      ev.time_ns = num(v, "timeNano");
      ev.kind = str(v, "kind");
      ev.subject = str(v, "subject");
      ev.action = str(v, "action");
      if (const auto* a = v.as_object().if_contains("attributes"); a && a->is_object()) {
        for (const auto& [k, x] : a->get_object()) {
          if (x.is_string()) ev.attributes[std::string(k)] = std::string(x.get_string());
        }
      }
      if (!sink(ev)) return ok_status();
      continue;
    }
    if (!follow || !fs::exists(impl_->enclave_dir(e.id))) return ok_status();
    in.clear();
    std::this_thread::sleep_for(50ms);
  }
}

Result<std::optional<int>> NativeBackend::network_namespace_pid(std::string_view enclave_id,
                                                                std::string_view name_in) {
  MODHOST_ASSIGN_OR_RETURN(EnclaveInfo e, find_enclave(enclave_id));
  const std::string name(name_in);
  MODHOST_ASSIGN_OR_RETURN(std::string dir, impl_->require_service(e.id, name, e));
  const json::value run = parse_json_file(dir + "/run.json");
  const int pid = static_cast<int>(num(run, "pid"));
  if (!alive(pid, str(run, "pid_start"))) {
    return Error(ErrorCode::failed_precondition,
                 "service '" + name + "' in enclave '" + e.name + "' is not running");
  }
  return std::optional<int>(pid);
}

// --- Recovery -----------------------------------------------------------------

Result<std::vector<std::string>> NativeBackend::recover() {
  std::vector<std::string> found;
  std::set<std::string> known_services, known_enclaves;
  for (const auto& e : impl_->all_enclaves()) {
    known_enclaves.insert(e.id);
    if (!e.complete) found.push_back("half-made enclave " + e.name + " (" + e.id.substr(0, 12) + ")");
    std::error_code ec;
    for (const auto& d : fs::directory_iterator(impl_->enclave_dir(e.id) + "/services", ec)) {
      const json::value st = parse_json_file(d.path().string() + "/service.json");
      if (!str(st, "id").empty()) known_services.insert(str(st, "id"));
      if (str(st, "state") != "ready") {
        found.push_back("half-made service " + d.path().filename().string() + " in enclave " + e.name);
      }
    }
  }
  // Cgroups and links of this scope that no state names.
  for (const auto& rel : impl_->cgroups.children("modhost/" + impl_->scope_label())) {
    const std::string id = rel.substr(rel.rfind('/') + 1);
    if (!known_services.count(id)) found.push_back("orphaned cgroup " + rel);
  }
  if (auto links = native::netlink::list_links(); links.ok()) {
    const std::string prefix = "modhost " + impl_->scope_label() + " ";
    for (const auto& l : links.value()) {
      if (l.alias.rfind(prefix, 0) != 0) continue;
      const std::string id = l.alias.substr(prefix.size());
      if (!known_enclaves.count(id)) found.push_back("orphaned bridge " + l.name);
    }
  }
  return found;
}

Result<CleanReport> NativeBackend::clean(bool all) {
  CleanReport report;
  DirLock lock(impl_->mutex, impl_->root + "/.lock");
  std::set<std::string> known_services, known_enclaves;
  for (const auto& e : impl_->all_enclaves()) {
    const bool remove = !e.complete || all || e.status != EnclaveStatus::running;
    if (remove) {
      MODHOST_TRY(impl_->remove_enclave_locked(e, /*detached=*/false));
      report.removed.push_back(std::string(e.complete ? "enclave " : "half-made enclave ") + e.name + " (" +
                               e.id + ")");
      continue;
    }
    known_enclaves.insert(e.id);
    for (const auto& name : impl_->service_names(e.id)) {
      const json::value st = impl_->service_state(e.id, name);
      known_services.insert(str(st, "id"));
      if (str(st, "state") != "ready") {
        MODHOST_TRY(impl_->remove_service_locked(e.id, name, str(st, "kind")));
        report.removed.push_back("half-made service " + name + " in enclave " + e.name);
      }
    }
  }
  for (const auto& rel : impl_->cgroups.children("modhost/" + impl_->scope_label())) {
    const std::string id = rel.substr(rel.rfind('/') + 1);
    if (known_services.count(id)) continue;
    for (int p : impl_->cgroups.pids(rel)) kill_cgroup_member(p, rel);
    if (impl_->cgroups.remove(rel).ok()) report.removed.push_back("cgroup " + rel);
  }
  if (auto links = native::netlink::list_links(); links.ok()) {
    const std::string prefix = "modhost " + impl_->scope_label() + " ";
    for (const auto& l : links.value()) {
      if (l.alias.rfind(prefix, 0) != 0 || known_enclaves.count(l.alias.substr(prefix.size()))) continue;
      if (native::netlink::delete_link(l.name).ok()) report.removed.push_back("bridge " + l.name);
    }
  }
  impl_->remove_forward_rule_if_unused();
  // A scope with nothing left leaves no directory either (its lock file goes
  // with it; the next use makes both again).
  std::error_code ec;
  if (known_enclaves.empty() && fs::is_empty(impl_->enclaves_dir(), ec)) {
    fs::remove(impl_->enclaves_dir(), ec);
    fs::remove(impl_->root + "/.lock", ec);
    fs::remove(impl_->root, ec);
  }
  return report;
}

}  // namespace modhost::backend
