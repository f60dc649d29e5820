#include "backends/confinement.hpp"

namespace modhost::backend {

Result<Confinement> confinement(const ServiceConfig& config) {
  Confinement c;
  if (config.privileged) {
    c.seccomp = false;
    c.no_new_privs = false;
    c.masked_paths = false;
    c.all_capabilities = true;
  }
  for (const std::string& opt : config.security_opt) {
    const auto sep = opt.find_first_of("=:");
    const std::string key = opt.substr(0, sep);
    const std::string value = sep == std::string::npos ? "" : opt.substr(sep + 1);
    if (key == "seccomp" && value == "unconfined") {
      c.seccomp = false;
    } else if (key == "no-new-privileges" && (value.empty() || value == "true")) {
      c.no_new_privs = true;
    } else if (key == "no-new-privileges" && value == "false") {
      c.no_new_privs = false;
    } else {
      return Error(ErrorCode::invalid_argument,
                   "unsupported security option '" + opt +
                       "': use seccomp=unconfined or no-new-privileges[=true|false]");
    }
  }
  return c;
}

}  // namespace modhost::backend
