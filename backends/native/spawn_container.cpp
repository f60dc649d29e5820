// modhost-spawn's child: becomes the container, then stage3 (see
// spawn_main.cpp for the whole of stage2).
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
#include "backends/native/seccomp.hpp"
#include "backends/native/spawn.hpp"

namespace modhost::backend::native::spawn {
namespace {

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

// Docker's defaults (moby's oci/defaults), with /proc/kmsg masked too: the
// kernel's log is the host's.
constexpr const char* kMaskedPaths[] = {
    "/proc/asound",        "/proc/acpi",       "/proc/kcore",       "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi",          "/proc/kmsg",       "/sys/firmware",     "/sys/devices/virtual/powercap"};
constexpr const char* kReadOnlyPaths[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                          "/proc/sysrq-trigger"};

}  // namespace

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

  // The seccomp filter, while the parent makes the link (compiled once per
  // set of capabilities, then read from the cache: see seccomp.hpp).
  std::vector<bool> keep(CAP_LAST_CAP + 1, false);
  std::vector<int> kept;
  for (const std::string& c : all_records(spec, "cap")) {
    const int n = std::atoi(c.c_str());
    if (n >= 0 && n <= CAP_LAST_CAP && !keep[static_cast<std::size_t>(n)]) {
      keep[static_cast<std::size_t>(n)] = true;
      kept.push_back(n);
    }
  }
  seccomp::Program filter;
  const bool filtered = record(spec, "seccomp", "default") == "default";
  if (filtered) {
    if (std::string err = seccomp::prepare(kept, record(spec, "seccomp_cache"), &filter); !err.empty())
      fail(err, 0);
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
  //    /sys read-only. Root in here is root on the host (no user namespace):
  //    Docker's read-only and masked paths keep it from the kernel's knobs
  //    and from what reaches the host itself (a reboot trigger, its memory,
  //    its keys, its firmware). A privileged service gets them as they are.
  const bool confined = record(spec, "masked", "1") == "1";
  make_dirs("/proc");
  check(::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0,
        "cannot mount /proc");
  make_dirs("/sys");
  check(::mount("sysfs", "/sys", "sysfs", (confined ? MS_RDONLY : 0) | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                nullptr) == 0,
        "cannot mount /sys");
  if (confined) {
    for (const char* path : kReadOnlyPaths) {
      if (::access(path, F_OK) != 0) continue;
      check(::mount(path, path, nullptr, MS_BIND | MS_REC, nullptr) == 0, std::string("cannot bind ") + path);
      check(::mount(nullptr, path, nullptr,
                    MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0,
            std::string("cannot make ") + path + " read-only");
    }
    for (const char* path : kMaskedPaths) {
      struct stat st {};
      if (::stat(path, &st) != 0) continue;
      // A directory reads as empty, a file as /dev/null.
      const bool ok =
          S_ISDIR(st.st_mode)
              ? ::mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0") == 0
              : ::mount("/.modhost-oldroot/dev/null", path, nullptr, MS_BIND, nullptr) == 0;
      check(ok, std::string("cannot mask ") + path);
    }
  }
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
  // 9. No gaining privileges by exec (setuid files, file capabilities),
  //    then the seccomp filter, which the rest of stage2 and everything in
  //    the container runs under.
  if (record(spec, "no_new_privs", "1") == "1") {
    check(::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "cannot set no_new_privs");
  }
  if (filtered) {
    if (std::string err = seccomp::install(filter); !err.empty()) fail(err, 0);
  }
  // The shim ignores SIGPIPE; the service starts with the default.
  ::signal(SIGPIPE, SIG_DFL);

  // 10. Stage3's descriptors: 0 /dev/null, 1-2 the log, 3 its configuration,
  //     4 the exec socket, 5 the report pipe; nothing else survives exec.
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

  // 11. Stage3, from its read-only mount made before pivot_root: the
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

}  // namespace modhost::backend::native::spawn
