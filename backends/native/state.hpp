// The native backend's state on disk, one directory per scope under the
// runtime directory: an enclave is enclaves/ID/enclave.json (its subnet),
// hosts, events and artifacts/; a service is services/NAME/service.json
// (its config, image, address), run.json (its processes and ports, written
// at each start), exit (its shim's record) and log. Everything a fresh
// process needs to find every enclave and service again, and what this
// backend says about them, is read from here.
#pragma once

#include <boost/json/value.hpp>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "backends/backend.hpp"

namespace modhost::backend::native {

class Cgroups;

class State {
 public:
  explicit State(const Cgroups& cgroups) : cgroups_(&cgroups) {}

  std::string scope;    // "" for none
  std::string runtime;  // the runtime dir (all scopes)
  std::string root;     // this scope's dir

  std::string scope_label() const { return scope.empty() ? "_" : scope; }
  std::string enclaves_dir() const { return root + "/enclaves"; }
  std::string enclave_dir(const std::string& id) const { return enclaves_dir() + "/" + id; }
  std::string service_dir(const std::string& eid, const std::string& name) const {
    return enclave_dir(eid) + "/services/" + name;
  }
  // A service's exec socket: short, whatever the names (a unix socket path
  // has 107 bytes at most).
  std::string ctl_socket(const std::string& service_id) const { return runtime + "/sock/" + service_id; }
  std::string cgroup_of(const std::string& service_id) const {
    return "modhost/" + scope_label() + "/" + service_id;
  }
  // The label on an enclave's bridge (its alias): "modhost SCOPE ID".
  std::string link_label(const std::string& id) const { return "modhost " + scope_label() + " " + id; }

  // --- Enclaves ---
  // Every enclave of the scope, half-made ones too (complete is false), oldest first.
  std::vector<EnclaveInfo> all_enclaves() const;
  EnclaveStatus enclave_status(const std::string& id) const;
  // By id, name or an id prefix of 4 or more characters.
  Result<EnclaveInfo> resolve_enclave(std::string_view ref) const;
  // Subnets of every enclave of every scope.
  std::set<std::string> used_subnets() const;

  // --- Services ---
  std::vector<std::string> service_names(const std::string& eid) const;
  boost::json::value service_state(const std::string& eid, const std::string& name) const;
  // The service as it is now: its state file, its processes, its exit record.
  ServiceInfo service_info(const std::string& eid, const std::string& name) const;
  // The service's directory, or not_found.
  Result<std::string> require_service(const std::string& eid, const std::string& name,
                                      const EnclaveInfo& e) const;
  // A free address of enclave E for a new service.
  Result<std::string> allocate_ip(const std::string& eid, const EnclaveInfo& e) const;
  // /etc/hosts of an enclave: every service by name.
  void write_hosts(const std::string& eid) const;
  // Appends to the enclave's event log (what events() reads).
  void event(const std::string& eid, const std::string& kind, const std::string& subject,
             const std::string& action, const std::map<std::string, std::string>& attributes = {}) const;

 private:
  const Cgroups* cgroups_;
};

}  // namespace modhost::backend::native
