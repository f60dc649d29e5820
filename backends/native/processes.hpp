// Processes of the native backend's containers as the host sees them: a
// pid with the start time that tells it from a later process given the same
// number, and signals sent only while a pidfd pins the process meant.
#pragma once

#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string>

namespace modhost::backend::native {

// A process's start time (field 22 of /proc/PID/stat): tells a live process
// from a later one that got the same pid.
std::string process_start(int pid);

// Running: the process exists, is the one that started then, and is not a
// zombie waiting for its parent (a PID 1 that has ended but is not reaped).
bool alive(int pid, const std::string& start);

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
bool signal_process(int pid, const std::string& start, int sig);

// SIGKILLs a process of cgroup `relative` found in its cgroup.procs, only
// while it is still a member.
void kill_cgroup_member(int pid, const std::string& relative);

}  // namespace modhost::backend::native
