#include "backends/native/processes.hpp"

#include <signal.h>

#include "backends/native/support.hpp"
#include "backends/proc_stat.hpp"

namespace modhost::backend::native {

std::string process_start(int pid) { return backend::process_start_time(pid); }

bool alive(int pid, const std::string& start) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return false;
  const char state = stat[close + 2];
  return state != 'Z' && state != 'X' && process_start(pid) == start;
}

bool signal_process(int pid, const std::string& start, int sig) {
  return signal_pinned(pid, sig, [&] { return process_start(pid) == start; });
}

void kill_cgroup_member(int pid, const std::string& relative) {
  // The line ends in the cgroup's path (after the hierarchy's root, which
  // is more than "/" where this process runs in a container).
  (void)signal_pinned(pid, SIGKILL, [&] {
    return read_file("/proc/" + std::to_string(pid) + "/cgroup").find("/" + relative + "\n") !=
           std::string::npos;
  });
}

}  // namespace modhost::backend::native
