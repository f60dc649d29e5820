// Starting and stopping a native service's processes (stage1's side of
// the launch): the spawn spec handed to modhost-spawn in a memfd, its
// report read back (the init's pid, the ports' host ports, or the error of
// a failed execve), run.json written; stops by SIGTERM then SIGKILL of the
// whole cgroup; waits for the shim's exit record.
#pragma once

#include <chrono>
#include <string>

#include "backends/backend.hpp"

namespace modhost::backend::native {

class Cgroups;
class State;

class Launcher {
 public:
  Launcher(const State& state, Cgroups& cgroups) : state_(state), cgroups_(cgroups) {}

  std::string spawn_binary;  // modhost-spawn (stage2)
  std::string init_binary;   // modhost-init (stage3)

  // Starts stage2 for a service whose rootfs and cgroup exist; waits for its
  // report. Writes run.json.
  Status spawn(const std::string& eid, const std::string& name, const EnclaveInfo& e) const;

  // Waits until the service's shim recorded its exit (or `budget` passes).
  bool wait_exit(const std::string& eid, const std::string& name, std::chrono::milliseconds budget) const;

  // Stops a service's processes: SIGTERM to its PID 1 (forwarded to the
  // program), SIGKILL to all of them after `grace`.
  void stop_processes(const std::string& eid, const std::string& name, std::chrono::milliseconds grace,
                      bool mark_stopped) const;

 private:
  const State& state_;
  Cgroups& cgroups_;
};

}  // namespace modhost::backend::native
