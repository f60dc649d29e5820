// Cgroups of native services, v1 or v2, whichever the host mounts: memory,
// pids, cpu, the freezer, and the device rules (v1: the devices controller
// where it is mounted; v2: a BPF program attached to the service's cgroup).
// A service's cgroup is modhost/<scope>/<id> in each hierarchy.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "modhost/result.hpp"

namespace modhost::backend::native {

struct CgroupLimits {
  std::uint64_t memory_bytes = 0;  // 0: none
  double cpus = 0;                 // 0: none
  int pids = 0;                    // 0: none
};

class Cgroups {
 public:
  // Finds the mounted hierarchies; an error names what is missing.
  static Result<Cgroups> detect();

  bool v2() const { return v2_; }
  // The directories of a cgroup (one per v1 hierarchy, one for v2).
  std::vector<std::string> dirs(const std::string& relative) const;
  // Makes the cgroup and applies the limits.
  Status create(const std::string& relative, const CgroupLimits& limits) const;
  // Removes it; its processes must be gone. Missing is fine.
  Status remove(const std::string& relative) const;
  // Every process in it.
  std::vector<int> pids(const std::string& relative) const;
  Status freeze(const std::string& relative, bool frozen) const;
  bool frozen(const std::string& relative) const;
  // The file the kernel counts OOM kills in, and the key of the count.
  std::string oom_file(const std::string& relative) const;
  std::string oom_key() const { return "oom_kill"; }
  // The relative paths of cgroups under `relative` (one level).
  std::vector<std::string> children(const std::string& relative) const;

 private:
  Status remove_one(const std::string& relative) const;
  bool v2_ = false;
  std::string unified;                                   // v2 root
  std::vector<std::string> v2_controllers_;              // of memory, pids and cpu, those v2 has here
  std::string memory, pids_root, cpu, freezer, devices;  // v1 mount points (devices optional)
};

}  // namespace modhost::backend::native
