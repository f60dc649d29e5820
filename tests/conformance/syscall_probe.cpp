// syscall-probe NAME...: makes each named syscall, with arguments that do no
// harm, and prints "NAME ok" or "NAME ERRNO" (EPERM, EINVAL, ...), one line
// each. Each in a child of its own, so that one (a new user namespace, say)
// does not change what the next may do. For the confinement tests: run
// inside a test container.
#include <linux/keyctl.h>
#include <linux/reboot.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

namespace {

// 0 or -1 with errno.
long probe(const std::string& name) {
  if (name == "keyctl") return ::syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 0);
  if (name == "unshare-user") return ::unshare(CLONE_NEWUSER);
  if (name == "unshare-mount") return ::unshare(CLONE_NEWNS);
  // A tmpfs over the container's own /tmp, in its own mount namespace.
  if (name == "mount") return ::mount("probe", "/tmp", "tmpfs", 0, nullptr);
  // Harmless when allowed: in a pid namespace other than the first, the
  // kernel answers EINVAL to anything but restart or power off.
  if (name == "reboot")
    return ::syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_CAD_OFF, 0);
  if (name == "vsock") {
    const int fd = ::socket(AF_VSOCK, SOCK_STREAM, 0);
    if (fd >= 0) ::close(fd);
    return fd < 0 ? -1 : 0;
  }
  errno = ENOSYS;
  return -2;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::fflush(stdout);
    const pid_t child = ::fork();
    if (child < 0) return 1;
    if (child == 0) {
      errno = 0;
      const long rc = probe(argv[i]);
      if (rc == -2) {
        std::fprintf(stderr, "syscall-probe: unknown probe '%s'\n", argv[i]);
        ::_exit(2);
      }
      const char* errname = ::strerrorname_np(errno);
      std::printf("%s %s\n", argv[i], rc >= 0 ? "ok" : (errname ? errname : "?"));
      std::fflush(stdout);
      ::_exit(0);
    }
    int status = 0;
    if (::waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 2;
  }
  return 0;
}
