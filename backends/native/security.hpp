// What a native container may do: the capabilities it keeps by default and
// those a service adds by name (ServiceConfig::cap_add).
#pragma once

#include <string>
#include <vector>

namespace modhost::backend::native {

// The capability's number for a name ("NET_ADMIN", "cap_net_admin"), or -1.
int capability(std::string name);

// What a container keeps by default: Docker's set without CAP_MKNOD. Docker
// can leave it because its device cgroup refuses new device nodes; here
// nothing else would stop root in a container from making the host's disks.
const std::vector<int>& default_capabilities();

}  // namespace modhost::backend::native
