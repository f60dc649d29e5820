// modhost-spawn: stage2 of the native backend. A small single-threaded
// program the host (stage1) starts for each service; it makes the
// container and then stays as its shim.
//
//   host (stage1) --exec--> modhost-spawn --clone(new pid, mount, uts, ipc,
//   net namespaces)--> child --pivot_root, mounts, caps--> exec modhost-init
//   (stage3, PID 1) --> the service's program
//
// The parent half, once the child runs, is the shim: it reaps the container's
// PID 1 and records its exit code (and whether the kernel's OOM killer
// struck), and forwards the service's published ports (tcp and udp) from
// 127.0.0.1.
//
// Descriptors on entry: 3 = the spec (records, see native_backend.cpp),
// 4 = the report pipe to stage1 ("pid N", "port P/tcp HOSTPORT", then
// stage3's "started PID" or an "error MESSAGE" line).
//
// `modhost-spawn delete-link NAME...` is its other use: deleting links in the
// background (see delete_links_detached).
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <list>
#include <string>
#include <vector>

#include "backends/native/fd_io.hpp"
#include "backends/native/netlink.hpp"
#include "backends/native/records.hpp"

namespace {

using namespace modhost::backend::native;

constexpr int kSpecFd = 3;
constexpr int kReportFd = 4;

// Reports why the container could not be made and ends this process.
[[noreturn]] void fail(const std::string& what, int err = errno) {
  write_all(kReportFd,
            "error " + what + (err != 0 ? std::string(": ") + std::strerror(err) : std::string()) + "\n");
  ::_exit(1);
}

void check(bool ok, const std::string& what) {
  if (!ok) fail(what);
}

void check(const modhost::Status& s) {
  if (!s.ok()) fail(s.error().message(), 0);
}

// mkdir -p, inside the current root.
void make_dirs(const std::string& path, mode_t mode = 0755) {
  for (std::size_t i = 1; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      const std::string part = path.substr(0, i);
      if (::mkdir(part.c_str(), mode) != 0 && errno != EEXIST) fail("cannot make directory " + part);
    }
  }
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    const auto end = s.find(sep, start);
    out.push_back(s.substr(start, end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

// --- The child: becomes the container, then stage3 -------------------------

[[noreturn]] void container(const Records& spec, int go_fd, int init_fd, int ctl_fd, int log_fd,
                            int join_fd) {
  // 0. Into the service's cgroups ("0": the writer itself), while the
  //    parent makes the network link: the kernel's first write to a
  //    cgroup.procs after a while waits out an RCU grace period.
  for (const std::string& dir : all_records(spec, "cgroup")) {
    const std::string procs = dir + "/cgroup.procs";
    const int fd = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ::write(fd, "0", 1) != 1) fail("cannot join cgroup " + dir);
    ::close(fd);
  }

  // 1. Wait until the parent has given us our network link. End of file:
  //    the parent failed and reported why.
  char go = 0;
  if (::read(go_fd, &go, 1) != 1) ::_exit(1);
  ::close(go_fd);

  // 2. Mounts made from here on stay in this mount namespace.
  check(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0, "cannot make mounts private");

  // 3. The network: our own namespace with the veth end the parent moved in,
  //    or another service's namespace.
  const std::string net = record(spec, "net", "own");
  if (net == "join") {
    check(::setns(join_fd, CLONE_NEWNET) == 0, "cannot join the network namespace of the service");
    ::close(join_fd);
  }
  check(netlink::set_up("lo"));
  if (net == "own") {
    check(netlink::rename_link(record(spec, "peer"), "eth0"));
    check(netlink::add_address("eth0", record(spec, "ip"), std::atoi(record(spec, "prefix", "24").c_str())));
    check(netlink::set_up("eth0"));
  }

  // 4. Our own hostname (the service's name).
  const std::string hostname = record(spec, "hostname");
  if (net != "join") check(::sethostname(hostname.data(), hostname.size()) == 0, "cannot set the hostname");

  // 5. Into the rootfs: pivot_root needs it to be a mount point; the old root
  //    stays reachable at /.modhost-oldroot until the bind mounts below are
  //    made, so their targets resolve inside the new root (symlinks in the
  //    image cannot point them at the host).
  const std::string rootfs = record(spec, "rootfs");
  check(::mount(rootfs.c_str(), rootfs.c_str(), nullptr, MS_BIND | MS_REC, nullptr) == 0,
        "cannot bind the rootfs");
  check(::chdir(rootfs.c_str()) == 0, "cannot enter the rootfs");
  constexpr const char* kOld = ".modhost-oldroot";
  if (::mkdir(kOld, 0700) != 0 && errno != EEXIST) fail("cannot make the old-root directory");
  check(::syscall(SYS_pivot_root, ".", kOld) == 0, "pivot_root");
  check(::chdir("/") == 0, "chdir /");

  // 6. The kernel's file systems: /proc of our pid namespace, a minimal /dev,
  //    /sys read-only.
  make_dirs("/proc");
  check(::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0,
        "cannot mount /proc");
  // Root in here is root on the host (no user namespace): the kernel's knobs
  // under /proc/sys are read-only, and the files that reach the host itself
  // (a reboot trigger, its memory, its keys) read as /dev/null, as in runc.
  check(::mount("/proc/sys", "/proc/sys", nullptr, MS_BIND | MS_REC, nullptr) == 0, "cannot bind /proc/sys");
  check(::mount(nullptr, "/proc/sys", nullptr,
                MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0,
        "cannot make /proc/sys read-only");
  for (const char* masked : {"/proc/sysrq-trigger", "/proc/kcore", "/proc/keys", "/proc/timer_list",
                             "/proc/kmsg", "/proc/sched_debug"}) {
    if (::access(masked, F_OK) != 0) continue;
    check(::mount("/.modhost-oldroot/dev/null", masked, nullptr, MS_BIND, nullptr) == 0,
          std::string("cannot mask ") + masked);
  }
  make_dirs("/sys");
  check(::mount("sysfs", "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0,
        "cannot mount /sys");
  make_dirs("/dev");
  check(::mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k") == 0,
        "cannot mount /dev");
  struct Node {
    const char* path;
    unsigned major, minor;
  };
  for (const Node& n : {Node{"/dev/null", 1, 3}, Node{"/dev/zero", 1, 5}, Node{"/dev/full", 1, 7},
                        Node{"/dev/random", 1, 8}, Node{"/dev/urandom", 1, 9}, Node{"/dev/tty", 5, 0}}) {
    check(::mknod(n.path, S_IFCHR | 0666, makedev(n.major, n.minor)) == 0, std::string("mknod ") + n.path);
    ::chmod(n.path, 0666);  // whatever the umask
  }
  for (const char* d : {"/dev/pts", "/dev/shm", "/dev/mqueue"}) make_dirs(d);
  check(::mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                "newinstance,ptmxmode=0666,mode=620") == 0,
        "cannot mount /dev/pts");
  check(::symlink("pts/ptmx", "/dev/ptmx") == 0, "symlink /dev/ptmx");
  check(::mount("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k") == 0,
        "cannot mount /dev/shm");
  check(::mount("mqueue", "/dev/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0,
        "cannot mount /dev/mqueue");
  ::symlink("/proc/self/fd", "/dev/fd");
  ::symlink("/proc/self/fd/0", "/dev/stdin");
  ::symlink("/proc/self/fd/1", "/dev/stdout");
  ::symlink("/proc/self/fd/2", "/dev/stderr");

  // 7. Bind mounts (/etc/hosts, files artifacts, the caller's binds): the
  //    source from the old root, the target made and opened from the new
  //    root with every symlink resolved inside it and no mount crossed (the
  //    old root is still mounted at /.modhost-oldroot: an image's symlink
  //    into it would reach the host). Nothing of the image runs yet, so
  //    what is checked is what is used.
  const int root_fd = ::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  check(root_fd >= 0, "cannot open the new root");
  auto open_in_root = [&](const std::string& path, int flags, bool cross_mounts) {
    open_how how{};
    how.flags = static_cast<std::uint64_t>(flags | O_CLOEXEC);
    how.resolve = RESOLVE_IN_ROOT | (cross_mounts ? 0 : RESOLVE_NO_XDEV);
    return static_cast<int>(::syscall(SYS_openat2, root_fd, path.c_str(), &how, sizeof how));
  };
  // mkdir -p of `dir` through open_in_root, one component at a time.
  auto make_dirs_in_root = [&](const std::string& dir) {
    std::string prefix;
    for (const auto& part : split(dir, '/')) {
      if (part.empty()) continue;
      const std::string parent = prefix.empty() ? "/" : prefix;
      prefix += "/" + part;
      int fd = open_in_root(prefix, O_PATH | O_DIRECTORY, false);
      if (fd < 0 && errno == ENOENT) {
        const int pfd = open_in_root(parent, O_PATH | O_DIRECTORY, false);
        check(pfd >= 0, "cannot open " + parent + " inside the container");
        if (::mkdirat(pfd, part.c_str(), 0755) != 0 && errno != EEXIST) fail("cannot make " + prefix);
        ::close(pfd);
        fd = open_in_root(prefix, O_PATH | O_DIRECTORY, false);
      }
      check(fd >= 0, "cannot open " + prefix + " inside the container");
      ::close(fd);
    }
  };
  for (const std::string& m : all_records(spec, "mount")) {
    const auto parts = split(m, '\x1f');
    if (parts.size() != 3) fail("bad mount record '" + m + "'", 0);
    const std::string source = std::string("/") + kOld + parts[0];
    const std::string& target = parts[1];
    struct stat st {};
    check(::stat(source.c_str(), &st) == 0, "cannot find mount source " + parts[0]);
    const auto slash = target.rfind('/');
    const std::string parent = slash > 0 ? target.substr(0, slash) : "/";
    make_dirs_in_root(parent);
    if (S_ISDIR(st.st_mode)) {
      make_dirs_in_root(target);
    } else {
      const int pfd = open_in_root(parent, O_PATH | O_DIRECTORY, false);
      check(pfd >= 0, "cannot open " + parent + " inside the container");
      const int fd =
          ::openat(pfd, target.substr(slash + 1).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
      if (fd < 0 && errno != EISDIR) fail("cannot make mount point " + target);
      if (fd >= 0) ::close(fd);
      ::close(pfd);
    }
    const int tfd = open_in_root(target, O_PATH, false);
    check(tfd >= 0, "cannot open mount point " + target + " inside the container");
    const std::string at = "/proc/self/fd/" + std::to_string(tfd);
    check(::mount(source.c_str(), at.c_str(), nullptr, MS_BIND | MS_REC, nullptr) == 0,
          "cannot mount " + parts[0] + " at " + target);
    ::close(tfd);
    if (parts[2] == "ro") {
      const int mfd = open_in_root(target, O_PATH, true);  // the new mount itself
      check(mfd >= 0, "cannot open " + target + " inside the container");
      const std::string mounted = "/proc/self/fd/" + std::to_string(mfd);
      check(::mount(nullptr, mounted.c_str(), nullptr,
                    MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr) == 0,
            "cannot make " + target + " read-only");
      ::close(mfd);
    }
  }
  ::close(root_fd);
  check(::umount2(kOld, MNT_DETACH) == 0, "cannot detach the old root");
  ::rmdir((std::string("/") + kOld).c_str());

  // 8. Capabilities: only those a container gets (Docker's default set,
  //    plus what the service asked for) stay in the bounding set.
  std::vector<bool> keep(CAP_LAST_CAP + 1, false);
  for (const std::string& c : all_records(spec, "cap")) {
    const int n = std::atoi(c.c_str());
    if (n >= 0 && n <= CAP_LAST_CAP) keep[static_cast<std::size_t>(n)] = true;
  }
  for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) {
    if (keep[static_cast<std::size_t>(cap)]) continue;
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) fail("cannot drop a capability");
  }
  // Nothing inherited from the host's own sets either: no ambient
  // capabilities, an empty inheritable set.
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    fail("cannot clear the ambient capabilities");
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  check(::syscall(SYS_capget, &header, data) == 0, "capget");
  data[0].inheritable = data[1].inheritable = 0;
  check(::syscall(SYS_capset, &header, data) == 0, "cannot clear the inheritable capabilities");
  // The shim ignores SIGPIPE; the service starts with the default.
  ::signal(SIGPIPE, SIG_DFL);

  // 9. Stage3's descriptors: 0 /dev/null, 1-2 the log, 3 its configuration,
  //    4 the exec socket, 5 the report pipe; nothing else survives exec.
  Records config;
  for (const char* key : {"argv", "env", "workdir", "uid", "gid"}) {
    for (const auto& v : all_records(spec, key)) config.emplace_back(key, v);
  }
  const int config_fd = ::memfd_create("modhost-init-config", MFD_CLOEXEC);
  check(config_fd >= 0, "memfd_create");
  write_all(config_fd, encode_records(config));
  ::lseek(config_fd, 0, SEEK_SET);
  const int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  check(null_fd >= 0, "cannot open /dev/null");
  // Out of the way first, so no dup2 below overwrites one still needed.
  const int moved_config = ::fcntl(config_fd, F_DUPFD_CLOEXEC, 100);
  const int moved_ctl = ::fcntl(ctl_fd, F_DUPFD_CLOEXEC, 100);
  const int moved_report = ::fcntl(kReportFd, F_DUPFD_CLOEXEC, 100);
  const int moved_log = ::fcntl(log_fd, F_DUPFD_CLOEXEC, 100);
  const int moved_null = ::fcntl(null_fd, F_DUPFD_CLOEXEC, 100);
  const int moved_init = ::fcntl(init_fd, F_DUPFD_CLOEXEC, 100);
  check(moved_config >= 0 && moved_ctl >= 0 && moved_report >= 0 && moved_log >= 0 && moved_null >= 0 &&
            moved_init >= 0,
        "cannot arrange descriptors");
  for (int fd = 0; fd < 100; ++fd) ::close(fd);
  ::dup2(moved_null, 0);
  ::dup2(moved_log, 1);
  ::dup2(moved_log, 2);
  ::dup2(moved_config, 3);
  ::dup2(moved_ctl, 4);
  ::dup2(moved_report, 5);

  // 10. Stage3, from its read-only mount made before pivot_root: the
  //     binary need not exist in the image.
  char arg0[] = "modhost-init";
  char* argv[] = {arg0, nullptr};
  char* envp[] = {nullptr};
  ::syscall(SYS_execveat, moved_init, "", argv, envp, AT_EMPTY_PATH);
  const int err = errno;
  write_all(5, std::string("error cannot start modhost-init: ") + std::strerror(err) + "\n");
  ::_exit(1);
}

// Stage3's binary on a read-only mount of its own: a detached clone of a
// bind mount of the file (open_tree), made read-only, held by an O_PATH
// descriptor the child execs from. The container's /proc/1/exe then leads
// to a file on a read-only mount, so nothing in the container can rewrite
// the host's binary through it (CVE-2019-5736); runc does the same. No copy:
// every container shares the host's page cache of the file. -1 with errno
// on failure.
int read_only_binary(const std::string& path) {
  const int tree = ::open_tree(AT_FDCWD, path.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (tree < 0) return -1;
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
  if (::mount_setattr(tree, "", AT_EMPTY_PATH, &attr, sizeof attr) != 0) {
    const int err = errno;
    ::close(tree);
    errno = err;
    return -1;
  }
  return tree;
}

// --- The shim: port forwarding and the exit record -------------------------

// One direction of a forwarded connection.
struct Flow {
  std::string buf;
  bool eof = false;   // the reading side ended
  bool shut = false;  // and the writing side was told
};

struct Link {
  int client = -1;
  int upstream = -1;
  bool connecting = true;
  Flow up;    // client -> upstream
  Flow down;  // upstream -> client
};

struct Listener {
  int fd = -1;
  int port = 0;  // inside the container
  bool udp = false;
};

// A UDP "connection": datagrams from one client to one published port go out
// of a socket of its own, connected to the service, so replies find their
// way back to that client. Forgotten after kUdpIdle without traffic (as
// Docker's proxy does).
struct UdpFlow {
  int listener = -1;  // the published socket (replies leave from it)
  sockaddr_in client{};
  int upstream = -1;
  std::chrono::steady_clock::time_point last;
};
constexpr auto kUdpIdle = std::chrono::seconds(90);
constexpr std::size_t kUdpMaxFlows = 256;  // a descriptor each; TCP links need theirs too

// Moves what `from` has into `flow` and what `flow` holds into `to`.
// False: the link is broken.
bool pump(int from, int to, Flow& flow, short from_events, short to_events) {
  if ((from_events & (POLLIN | POLLHUP)) && !flow.eof && flow.buf.size() < 65536) {
    char tmp[16384];
    const ssize_t n = ::read(from, tmp, sizeof tmp);
    if (n > 0)
      flow.buf.append(tmp, static_cast<std::size_t>(n));
    else if (n == 0)
      flow.eof = true;
    else if (errno != EAGAIN && errno != EINTR)
      return false;
  }
  if ((to_events & POLLOUT) && !flow.buf.empty()) {
    const ssize_t n = ::send(to, flow.buf.data(), flow.buf.size(), MSG_NOSIGNAL);
    if (n > 0)
      flow.buf.erase(0, static_cast<std::size_t>(n));
    else if (n < 0 && errno != EAGAIN && errno != EINTR)
      return false;
  }
  if (flow.eof && flow.buf.empty() && !flow.shut) {
    ::shutdown(to, SHUT_WR);
    flow.shut = true;
  }
  return true;
}

// The kernel's count of OOM kills in the service's memory cgroup.
long oom_kills(const Records& spec) {
  const std::string file = record(spec, "oom_file");
  if (file.empty()) return 0;
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  const std::string text = read_all(fd);
  ::close(fd);
  const std::string key = record(spec, "oom_key", "oom_kill") + " ";
  for (std::size_t pos = 0; (pos = text.find(key, pos)) != std::string::npos; pos += key.size()) {
    if (pos == 0 || text[pos - 1] == '\n') return std::atol(text.c_str() + pos + key.size());
  }
  return 0;
}

// The service's address and port `port`.
sockaddr_in service_address(const std::string& ip, int port) {
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, ip.c_str(), &to.sin_addr);
  return to;
}

// Datagrams waiting on a published UDP socket, each sent on to the service
// through its client's flow (made on its first datagram).
void forward_udp_in(const Listener& l, const std::string& ip, std::list<UdpFlow>& flows) {
  char buf[65536];
  for (int budget = 0; budget < 64; ++budget) {
    sockaddr_in from{};
    socklen_t len = sizeof from;
    const ssize_t n = ::recvfrom(l.fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n < 0) return;  // EAGAIN: drained
    auto f = std::find_if(flows.begin(), flows.end(), [&](const UdpFlow& x) {
      return x.listener == l.fd && x.client.sin_addr.s_addr == from.sin_addr.s_addr &&
             x.client.sin_port == from.sin_port;
    });
    if (f == flows.end()) {
      if (flows.size() >= kUdpMaxFlows) continue;  // dropped, as an overloaded network would
      const int u = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      const sockaddr_in to = service_address(ip, l.port);
      if (u < 0 || ::connect(u, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) {
        if (u >= 0) ::close(u);
        continue;
      }
      f = flows.insert(flows.end(), UdpFlow{l.fd, from, u, {}});
    }
    f->last = std::chrono::steady_clock::now();
    // A datagram that found no listener earlier left ECONNREFUSED on the
    // socket, and the next send reports it instead of sending: once more.
    if (::send(f->upstream, buf, static_cast<std::size_t>(n), 0) < 0 && errno == ECONNREFUSED)
      (void)::send(f->upstream, buf, static_cast<std::size_t>(n), 0);
  }
}

// The service's replies on one flow, back to its client from the published
// socket.
void forward_udp_out(UdpFlow& f) {
  char buf[65536];
  for (int budget = 0; budget < 64; ++budget) {
    const ssize_t n = ::recv(f.upstream, buf, sizeof buf, 0);
    if (n < 0 && errno == ECONNREFUSED) continue;  // nothing listened yet: read, the error is cleared
    if (n < 0) return;                             // drained
    f.last = std::chrono::steady_clock::now();
    (void)::sendto(f.listener, buf, static_cast<std::size_t>(n), 0,
                   reinterpret_cast<const sockaddr*>(&f.client), sizeof f.client);
  }
}

[[noreturn]] void shim(const Records& spec, pid_t child, std::vector<Listener> listeners, int sfd) {
  const std::string ip = record(spec, "ip");
  const long oom_before = oom_kills(spec);
  std::list<Link> links;
  std::list<UdpFlow> flows;
  int status = 0;
  while (true) {
    std::vector<pollfd> fds{{sfd, POLLIN, 0}};
    for (const auto& l : listeners) fds.push_back({l.fd, POLLIN, 0});
    for (const auto& f : flows) fds.push_back({f.upstream, POLLIN, 0});
    for (auto& k : links) {
      if (k.connecting) {
        fds.push_back({k.client, 0, 0});
        fds.push_back({k.upstream, POLLOUT, 0});
        continue;
      }
      short ce = 0, ue = 0;
      if (!k.up.eof && k.up.buf.size() < 65536) ce |= POLLIN;
      if (!k.down.buf.empty()) ce |= POLLOUT;
      if (!k.down.eof && k.down.buf.size() < 65536) ue |= POLLIN;
      if (!k.up.buf.empty()) ue |= POLLOUT;
      fds.push_back({k.client, ce, 0});
      fds.push_back({k.upstream, ue, 0});
    }
    // With UDP flows, wake once a second to forget idle ones.
    if (::poll(fds.data(), fds.size(), flows.empty() ? -1 : 1000) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo si{};
      if (::read(sfd, &si, sizeof si) == static_cast<ssize_t>(sizeof si) && si.ssi_signo == SIGCHLD) {
        if (::waitpid(child, &status, WNOHANG) == child) break;
      }
    }
    // UDP flows, then TCP links (every one was polled), then the listeners'
    // new ones.
    std::size_t i = 1 + listeners.size();
    const auto now = std::chrono::steady_clock::now();
    for (UdpFlow& f : flows) {
      // POLLERR too: an ICMP "port unreachable" is pending until read, and
      // would wake poll at once forever.
      if (fds[i++].revents & (POLLIN | POLLERR)) forward_udp_out(f);
      if (now - f.last > kUdpIdle) {
        ::close(f.upstream);
        f.upstream = -1;
      }
    }
    flows.remove_if([](const UdpFlow& f) { return f.upstream < 0; });
    for (Link& k : links) {
      const short ce = fds[i].revents, ue = fds[i + 1].revents;
      i += 2;
      bool broken = false;
      if (k.connecting) {
        if (ue & (POLLOUT | POLLERR | POLLHUP)) {
          int err = 0;
          socklen_t len = sizeof err;
          ::getsockopt(k.upstream, SOL_SOCKET, SO_ERROR, &err, &len);
          if (err != 0)
            broken = true;
          else
            k.connecting = false;
        }
        if (ce & (POLLERR | POLLHUP)) broken = true;
      } else {
        broken = !pump(k.client, k.upstream, k.up, ce, ue) || !pump(k.upstream, k.client, k.down, ue, ce) ||
                 ((ce | ue) & POLLERR);
      }
      if (broken || (k.up.shut && k.down.shut)) {
        ::close(k.client);
        ::close(k.upstream);
        k.client = k.upstream = -1;
      }
    }
    i = 1;
    for (const auto& l : listeners) {
      if (!(fds[i++].revents & POLLIN)) continue;
      if (l.udp) {
        forward_udp_in(l, ip, flows);
        continue;
      }
      const int c = ::accept4(l.fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (c < 0) {
        // Out of descriptors: the listener stays readable; do not spin.
        if (errno == EMFILE || errno == ENFILE) ::usleep(10000);
        continue;
      }
      const int u = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      const sockaddr_in to = service_address(ip, l.port);
      if (u < 0 ||
          (::connect(u, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0 && errno != EINPROGRESS)) {
        ::close(c);
        if (u >= 0) ::close(u);
        continue;
      }
      links.push_back(Link{c, u, true, {}, {}});
    }
    links.remove_if([](const Link& k) { return k.client < 0; });
  }
  // The container's PID 1 is gone (and with it every process of the
  // container): record how it ended, for stage1.
  int code = 255;
  if (WIFEXITED(status)) code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) code = 128 + WTERMSIG(status);
  const bool oom = oom_kills(spec) > oom_before;
  // As events of the enclave first (names are [a-z0-9-], nothing to
  // escape), then the exit record: whoever sees the record sees the events.
  const std::string events = record(spec, "events");
  const int efd =
      events.empty() ? -1 : ::open(events.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (efd >= 0) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
    const std::string head = "{\"timeNano\":" + std::to_string(ns) + ",\"kind\":\"" + record(spec, "kind") +
                             "\",\"subject\":\"" + record(spec, "name") + "\",\"action\":\"";
    std::string lines;
    if (oom) lines += head + "oom\",\"attributes\":{}}\n";
    lines += head + "die\",\"attributes\":{\"exitCode\":\"" + std::to_string(code) + "\"}}\n";
    write_all(efd, lines);
    ::close(efd);
  }
  const std::string exit_file = record(spec, "exit_file");
  const std::string tmp = exit_file + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd >= 0) {
    write_all(fd,
              encode_records(
                  {{"code", std::to_string(code)}, {"oom", oom ? "1" : "0"}, {"finished", now_rfc3339()}}));
    ::fsync(fd);
    ::close(fd);
    ::rename(tmp.c_str(), exit_file.c_str());
  }
  ::_exit(0);
}

// `modhost-spawn delete-link NAME...`: deletes the native backend's links in
// the background. The kernel takes tens of milliseconds to unregister a
// link; the host starts this, which forks and returns at once, and the
// child (reparented to init) waits for the kernel, one link after another.
int delete_links_detached(int count, char** names) {
  for (int i = 0; i < count; ++i) {
    if (std::strncmp(names[i], "mh", 2) != 0) return 2;  // only links the backend names
  }
  const pid_t child = ::fork();
  if (child != 0) return child > 0 ? 0 : 1;
  ::setsid();
  int failed = 0;
  for (int i = 0; i < count; ++i) failed += netlink::delete_link(names[i]).ok() ? 0 : 1;
  ::_exit(failed == 0 ? 0 : 1);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::strcmp(argv[1], "delete-link") == 0) return delete_links_detached(argc - 2, argv + 2);
  const Records spec = decode_records(read_all(kSpecFd));
  ::close(kSpecFd);
  ::prctl(PR_SET_NAME, "modhost-shim");

  // 1. Out of the caller's session: a Ctrl-C at its terminal, or its exit,
  //    does not reach the container.
  ::setsid();
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);

  // 2. What the child needs from the host's view: stage3's binary (on a
  //    read-only mount), the log file, the exec socket, the network
  //    namespace to join.
  const int init_fd = read_only_binary(record(spec, "init"));
  check(init_fd >= 0, "cannot make a read-only mount of " + record(spec, "init"));
  const int log_fd = ::open(record(spec, "log").c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  check(log_fd >= 0, "cannot open the log file " + record(spec, "log"));
  const std::string ctl = record(spec, "ctl");
  const int ctl_fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  check(ctl_fd >= 0, "socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (ctl.size() >= sizeof addr.sun_path) fail("exec socket path too long: " + ctl, 0);
  std::memcpy(addr.sun_path, ctl.c_str(), ctl.size() + 1);
  ::unlink(ctl.c_str());
  check(::bind(ctl_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0, "cannot bind " + ctl);
  ::chmod(ctl.c_str(), 0600);
  check(::listen(ctl_fd, 16) == 0, "listen");
  const std::string net = record(spec, "net", "own");
  int join_fd = -1;
  if (net == "join") {
    const std::string ns = "/proc/" + record(spec, "join_pid") + "/ns/net";
    join_fd = ::open(ns.c_str(), O_RDONLY | O_CLOEXEC);
    check(join_fd >= 0, "cannot open " + ns);
  }
  int go[2];
  check(::pipe2(go, O_CLOEXEC) == 0, "pipe");

  // 3. The child, in new pid, mount, uts, ipc and (unless it joins one)
  //    network namespaces.
  unsigned long flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | SIGCHLD;
  if (net != "join") flags |= CLONE_NEWNET;
  const long child = ::syscall(SYS_clone, flags, nullptr, nullptr, nullptr, nullptr);
  check(child >= 0, "clone");
  if (child == 0) {
    ::close(go[1]);
    ::sigprocmask(SIG_UNBLOCK, &mask, nullptr);
    container(spec, go[0], init_fd, ctl_fd, log_fd, join_fd);
  }
  ::close(go[0]);
  ::close(init_fd);
  ::close(ctl_fd);
  ::close(log_fd);
  if (join_fd >= 0) ::close(join_fd);
  const pid_t pid = static_cast<pid_t>(child);
  const int sfd = ::signalfd(-1, &mask, SFD_CLOEXEC);
  check(sfd >= 0, "signalfd");

  // 4. Its network link: a veth pair, one end on the enclave's bridge, the
  //    other moved into the child's namespace (it names it eth0).
  if (net == "own") {
    const std::string veth = record(spec, "veth"), peer = record(spec, "peer");
    // The container's MAC address follows from its IP address (as Docker
    // does): a service that gets the address of a removed one also gets its
    // MAC, so the neighbour entries the host and the other services still
    // hold for that address stay right (else connections to it wait up to
    // ~30 s for them to expire).
    in_addr a{};
    std::string mac;
    if (::inet_pton(AF_INET, record(spec, "ip").c_str(), &a) == 1) {
      const auto* b = reinterpret_cast<const unsigned char*>(&a.s_addr);
      mac = {'\x02',
             '\x6d',
             static_cast<char>(b[0]),
             static_cast<char>(b[1]),
             static_cast<char>(b[2]),
             static_cast<char>(b[3])};
    }
    // The kernel tears a dead container's network namespace down in the
    // background: the veth of this service's previous run may still exist.
    modhost::Status s = netlink::delete_link(veth);
    if (s.ok()) s = netlink::create_veth(veth, peer, pid, mac);
    if (s.ok()) s = netlink::set_master(veth, record(spec, "bridge"));
    if (s.ok()) s = netlink::set_up(veth);
    if (!s.ok()) {
      ::kill(pid, SIGKILL);
      (void)netlink::delete_link(veth);
      fail(s.error().message(), 0);
    }
  }

  // 5. Its published ports: a socket on 127.0.0.1 at a free port each (a
  //    TCP listener, or a UDP socket).
  std::vector<Listener> listeners;
  std::string ports_report;
  for (const std::string& p : all_records(spec, "port")) {
    const int inner = std::atoi(p.c_str());
    const bool udp = p.size() > 4 && p.compare(p.size() - 4, 4, "/udp") == 0;
    const int fd = ::socket(AF_INET, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        (!udp && ::listen(fd, 128) != 0) || ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      const int err = errno;
      ::kill(pid, SIGKILL);
      fail("cannot publish port " + p, err);
    }
    listeners.push_back(Listener{fd, inner, udp});
    ports_report += "port " + p + " " + std::to_string(ntohs(a.sin_port)) + "\n";
  }

  // 6. Go. The report pipe then belongs to stage3, which says whether the
  //    service's program started.
  write_all(kReportFd, "pid " + std::to_string(pid) + "\n" + ports_report);
  check(::write(go[1], "g", 1) == 1, "cannot wake the container");
  ::close(go[1]);
  ::close(kReportFd);
  const int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd >= 0) {
    ::dup2(null_fd, 0);
    ::dup2(null_fd, 1);
    ::dup2(null_fd, 2);
  }
  ::chdir("/");
  shim(spec, pid, std::move(listeners), sfd);
}
