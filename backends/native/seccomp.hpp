// The seccomp filter of a native container: the same syscalls allowed as by
// Docker's default profile (everything else fails with EPERM), including
// the ones it allows only to holders of a capability (mount and unshare for
// CAP_SYS_ADMIN, reboot for CAP_SYS_BOOT, ...). Built with libseccomp by
// modhost-spawn, in the container, which installs it just before it becomes
// stage3.
#pragma once

#include <linux/filter.h>

#include <string>
#include <vector>

namespace modhost::backend::native::seccomp {

// A compiled filter, as the kernel takes it.
using Program = std::vector<sock_filter>;

// The default filter for a process that keeps `caps` (capability numbers)
// in its bounding set. Compiling one takes libseccomp about 10 ms, so each
// compiled filter is kept in `cache_dir` (root's alone; empty: no cache)
// under a name made of the rules and the capabilities, and read from there
// next time. Returns an empty string, or what failed.
std::string prepare(const std::vector<int>& caps, const std::string& cache_dir, Program* out);

// Installs `program` on the calling thread. Does not set no_new_privs: the
// caller decides (installing a filter without it needs CAP_SYS_ADMIN,
// which stage2 still has). Returns an empty string, or what failed.
std::string install(const Program& program);

}  // namespace modhost::backend::native::seccomp
