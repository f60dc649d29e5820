// How far a service is confined, from its ServiceConfig (privileged,
// security_opt), read the same way by both backends: each applies it its
// own way (the Docker engine's HostConfig, the native backend's stage2).
#pragma once

#include <string>
#include <vector>

#include "modhost/result.hpp"
#include "modhost/types.hpp"

namespace modhost::backend {

struct Confinement {
  bool seccomp = true;       // the default seccomp filter (Docker's profile)
  bool no_new_privs = true;  // PR_SET_NO_NEW_PRIVS before the service's exec
  bool masked_paths = true;  // Docker's masked and read-only paths, /sys read-only
  bool all_capabilities = false;
};

// The confinement `config` asks for; an error naming the option that is not
// one of: seccomp=unconfined, no-new-privileges[=true|false] (":" for "="
// too, as Docker takes it).
Result<Confinement> confinement(const ServiceConfig& config);

}  // namespace modhost::backend
