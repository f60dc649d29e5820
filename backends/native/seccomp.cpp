#include "backends/native/seccomp.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <string_view>

namespace modhost::backend::native::seccomp {
namespace {

// What any container may call. Docker's default profile, name for name
// (older and other-architecture names included: libseccomp skips those this
// machine does not have).
constexpr const char* kAlways[] = {
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
    // Since Linux 4.8 ptrace cannot be used to get around seccomp.
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
#if defined(__x86_64__) || defined(__i386__)
    "arch_prctl",
    "modify_ldt",
#endif
#if defined(__aarch64__) || defined(__arm__)
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "sync_file_range2",
    "breakpoint",
    "cacheflush",
    "set_tls",
#endif
};

// What only the holder of a capability may call (the kernel checks the
// capability too: this keeps the rest of the syscall's surface out of reach
// of those without it).
struct ByCapability {
  int cap;
  std::initializer_list<const char*> names;
};
const ByCapability kByCapability[] = {
    {CAP_DAC_READ_SEARCH, {"open_by_handle_at"}},
    {CAP_SYS_ADMIN,
     {"bpf",       "clone",           "clone3",         "fanotify_init", "fsconfig",      "fsmount",
      "fsopen",    "fspick",          "lookup_dcookie", "mount",         "mount_setattr", "move_mount",
      "open_tree", "perf_event_open", "quotactl",       "quotactl_fd",   "setdomainname", "sethostname",
      "setns",     "syslog",          "umount",         "umount2",       "unshare"}},
    {CAP_SYS_BOOT, {"reboot"}},
    {CAP_SYS_CHROOT, {"chroot"}},
    {CAP_SYS_MODULE, {"delete_module", "init_module", "finit_module"}},
    {CAP_SYS_PACCT, {"acct"}},
    {CAP_SYS_PTRACE, {"kcmp", "pidfd_getfd", "process_madvise"}},
    {CAP_SYS_RAWIO, {"iopl", "ioperm"}},
    {CAP_SYS_TIME, {"settimeofday", "stime", "clock_settime", "clock_settime64"}},
    {CAP_SYS_TTY_CONFIG, {"vhangup"}},
    {CAP_SYS_NICE, {"get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"}},
    {CAP_SYSLOG, {"syslog"}},
    {CAP_BPF, {"bpf"}},
    {CAP_PERFMON, {"perf_event_open"}},
};

// The personas a program may switch to: the default, 32-bit addresses, no
// address randomisation, both; and 0xffffffff, which only reads the current one.
constexpr unsigned long kPersonas[] = {0x0, 0x0008, 0x20000, 0x20008, 0xffffffff};

// The namespace flags a clone without CAP_SYS_ADMIN must not carry.
constexpr scmp_datum_t kNamespaceFlags =
    CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP;

// The whole of a file, from its first byte.
std::string read_from_start(int fd) {
  std::string out;
  char buf[16384];
  for (off_t at = 0;;) {
    const ssize_t n = ::pread(fd, buf, sizeof buf, at);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    at += n;
  }
  return out;
}

// `bytes` as a program the kernel could take: whole instructions, at least
// one, at most BPF_MAXINSNS.
bool as_program(const std::string& bytes, Program* out) {
  if (bytes.empty() || bytes.size() % sizeof(sock_filter) != 0 ||
      bytes.size() / sizeof(sock_filter) > BPF_MAXINSNS) {
    return false;
  }
  out->resize(bytes.size() / sizeof(sock_filter));
  std::memcpy(out->data(), bytes.data(), bytes.size());
  return true;
}

bool has(const std::vector<int>& caps, int cap) {
  return std::find(caps.begin(), caps.end(), cap) != caps.end();
}

class Filter {
 public:
  Filter() : ctx_(::seccomp_init(SCMP_ACT_ERRNO(EPERM))) {}
  ~Filter() {
    if (ctx_ != nullptr) ::seccomp_release(ctx_);
  }
  Filter(const Filter&) = delete;
  Filter& operator=(const Filter&) = delete;

  scmp_filter_ctx get() const { return ctx_; }

  // Adds a rule for `name` if this machine knows the syscall.
  std::string add(const char* name, std::uint32_t action, std::initializer_list<scmp_arg_cmp> args = {}) {
    const int nr = ::seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) return "";
    const int rc = ::seccomp_rule_add_array(ctx_, action, nr, static_cast<unsigned>(args.size()),
                                            args.size() ? args.begin() : nullptr);
    // -EEXIST: an unconditional rule for it is already in (a name listed twice).
    if (rc != 0 && rc != -EEXIST)
      return std::string("cannot add the seccomp rule for ") + name + ": " + std::strerror(-rc);
    return "";
  }

 private:
  scmp_filter_ctx ctx_;
};

}  // namespace

namespace {

// Compiles the filter with libseccomp into `out`.
std::string compile(const std::vector<int>& caps, Program* out) {
  Filter f;
  if (f.get() == nullptr) return "cannot make a seccomp filter";
  // The caller sets no_new_privs, or not (security_opt no-new-privileges=false).
  if (int rc = ::seccomp_attr_set(f.get(), SCMP_FLTATR_CTL_NNP, 0); rc != 0) {
    return std::string("seccomp: ") + std::strerror(-rc);
  }
  // 32-bit programs too, under the same rules (each syscall by its number there).
#if defined(__x86_64__)
  for (std::uint32_t arch : {SCMP_ARCH_X86, SCMP_ARCH_X32}) {
#elif defined(__aarch64__)
  for (std::uint32_t arch : {SCMP_ARCH_ARM}) {
#else
  for (std::uint32_t arch : std::initializer_list<std::uint32_t>{}) {
#endif
    if (int rc = ::seccomp_arch_add(f.get(), arch); rc != 0 && rc != -EEXIST) {
      return std::string("seccomp: cannot add an architecture: ") + std::strerror(-rc);
    }
  }
  std::string err;
  auto add = [&](const char* name, std::uint32_t action, std::initializer_list<scmp_arg_cmp> args = {}) {
    if (err.empty()) err = f.add(name, action, args);
  };
  for (const char* name : kAlways) add(name, SCMP_ACT_ALLOW);
  for (const auto& [cap, names] : kByCapability) {
    if (!has(caps, cap)) continue;
    for (const char* name : names) add(name, SCMP_ACT_ALLOW);
  }
  if (!has(caps, CAP_SYS_ADMIN)) {
    // New threads and processes, but no new namespaces; clone3 hides its
    // flags in memory a filter cannot read, so it says ENOSYS and the C
    // library falls back to clone.
    add("clone", SCMP_ACT_ALLOW, {SCMP_A0(SCMP_CMP_MASKED_EQ, kNamespaceFlags, 0)});
    add("clone3", SCMP_ACT_ERRNO(ENOSYS));
  }
  add("socket", SCMP_ACT_ALLOW, {SCMP_A0(SCMP_CMP_NE, AF_VSOCK)});
  for (unsigned long persona : kPersonas) add("personality", SCMP_ACT_ALLOW, {SCMP_A0(SCMP_CMP_EQ, persona)});
  if (!err.empty()) return err;
  const int fd = ::memfd_create("modhost-seccomp", MFD_CLOEXEC);
  if (fd < 0) return std::string("memfd_create: ") + std::strerror(errno);
  const int rc = ::seccomp_export_bpf(f.get(), fd);
  std::string bytes = rc == 0 ? read_from_start(fd) : "";
  ::close(fd);
  if (rc != 0) return std::string("cannot compile the seccomp filter: ") + std::strerror(-rc);
  if (!as_program(bytes, out)) return "libseccomp made an empty seccomp filter";
  return "";
}

// What the compiled filter depends on: the rules above, the capabilities
// and libseccomp (which knows the syscalls by name).
std::string cache_name(const std::vector<int>& caps) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a
  auto mix = [&](std::string_view text) {
    for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
  };
  for (const char* name : kAlways) mix(name);
  for (const auto& [cap, names] : kByCapability) {
    mix(std::to_string(cap));
    for (const char* name : names) mix(name);
  }
  for (unsigned long persona : kPersonas) mix(std::to_string(persona));
  mix(std::to_string(kNamespaceFlags));
  const scmp_version* v = ::seccomp_version();
  mix(std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->micro));
  std::string set;
  for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) set += has(caps, cap) ? '1' : '0';
  mix(set);
  char name[40];
  std::snprintf(name, sizeof name, "%016llx.bpf", static_cast<unsigned long long>(h));
  return name;
}

}  // namespace

std::string prepare(const std::vector<int>& caps, const std::string& cache_dir, Program* out) {
  // A filter is only as good as the directory it comes from: ours, and
  // writable by us alone.
  struct stat st {};
  const bool trusted = !cache_dir.empty() && (::mkdir(cache_dir.c_str(), 0700) == 0 || errno == EEXIST) &&
                       ::lstat(cache_dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) &&
                       st.st_uid == ::geteuid() && (st.st_mode & 022) == 0;
  const std::string path = trusted ? cache_dir + "/" + cache_name(caps) : "";
  if (!path.empty()) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0) {
      const std::string bytes = read_from_start(fd);
      ::close(fd);
      if (as_program(bytes, out)) return "";
    }
  }
  if (std::string err = compile(caps, out); !err.empty()) return err;
  if (path.empty()) return "";
  // Best effort: without it the next container compiles its own. Written
  // whole under another name, then renamed: a reader never sees a part.
  const std::string tmp = path + "." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return "";
  const auto size = static_cast<ssize_t>(out->size() * sizeof(sock_filter));
  const bool written = ::write(fd, out->data(), static_cast<std::size_t>(size)) == size;
  ::close(fd);
  if (!written || ::rename(tmp.c_str(), path.c_str()) != 0) ::unlink(tmp.c_str());
  return "";
}

std::string install(const Program& program) {
  sock_fprog prog{};
  prog.len = static_cast<unsigned short>(program.size());
  prog.filter = const_cast<sock_filter*>(program.data());
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
    return std::string("cannot install the seccomp filter: ") + std::strerror(errno);
  }
  return "";
}

}  // namespace modhost::backend::native::seccomp
