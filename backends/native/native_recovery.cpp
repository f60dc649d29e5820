// What the native backend finds and removes after a crash: half-made
// enclaves and services, cgroups and bridges of the scope that no state
// names, and the FORWARD rule once no modhost bridge is left.
#include <boost/json.hpp>
#include <filesystem>
#include <set>

#include "backends/native/native_impl.hpp"
#include "backends/native/netlink.hpp"
#include "backends/native/network.hpp"
#include "backends/native/processes.hpp"

namespace modhost::backend {

Result<std::vector<std::string>> NativeBackend::recover() {
  std::vector<std::string> found;
  std::set<std::string> known_services, known_enclaves;
  for (const auto& e : impl_->state.all_enclaves()) {
    known_enclaves.insert(e.id);
    if (!e.complete) found.push_back("half-made enclave " + e.name + " (" + e.id.substr(0, 12) + ")");
    std::error_code ec;
    for (const auto& d : fs::directory_iterator(impl_->state.enclave_dir(e.id) + "/services", ec)) {
      const json::value st = parse_json_file(d.path().string() + "/service.json");
      if (!str(st, "id").empty()) known_services.insert(str(st, "id"));
      if (str(st, "state") != "ready") {
        found.push_back("half-made service " + d.path().filename().string() + " in enclave " + e.name);
      }
    }
  }
  // Cgroups and links of this scope that no state names.
  for (const auto& rel : impl_->cgroups.children("modhost/" + impl_->state.scope_label())) {
    const std::string id = rel.substr(rel.rfind('/') + 1);
    if (!known_services.count(id)) found.push_back("orphaned cgroup " + rel);
  }
  if (auto links = native::netlink::list_links(); links.ok()) {
    const std::string prefix = "modhost " + impl_->state.scope_label() + " ";
    for (const auto& l : links.value()) {
      if (l.alias.rfind(prefix, 0) != 0) continue;
      const std::string id = l.alias.substr(prefix.size());
      if (!known_enclaves.count(id)) found.push_back("orphaned bridge " + l.name);
    }
  }
  return found;
}

Result<CleanReport> NativeBackend::clean(bool all) {
  CleanReport report;
  DirLock lock(impl_->mutex, impl_->state.root + "/.lock");
  std::set<std::string> known_services, known_enclaves;
  for (const auto& e : impl_->state.all_enclaves()) {
    const bool remove = !e.complete || all || e.status != EnclaveStatus::running;
    if (remove) {
      MODHOST_TRY(impl_->remove_enclave_locked(e, /*detached=*/false));
      report.removed.push_back(std::string(e.complete ? "enclave " : "half-made enclave ") + e.name + " (" +
                               e.id + ")");
      continue;
    }
    known_enclaves.insert(e.id);
    for (const auto& name : impl_->state.service_names(e.id)) {
      const json::value st = impl_->state.service_state(e.id, name);
      known_services.insert(str(st, "id"));
      if (str(st, "state") != "ready") {
        MODHOST_TRY(impl_->remove_service_locked(e.id, name, str(st, "kind")));
        report.removed.push_back("half-made service " + name + " in enclave " + e.name);
      }
    }
  }
  for (const auto& rel : impl_->cgroups.children("modhost/" + impl_->state.scope_label())) {
    const std::string id = rel.substr(rel.rfind('/') + 1);
    if (known_services.count(id)) continue;
    for (int p : impl_->cgroups.pids(rel)) kill_cgroup_member(p, rel);
    if (impl_->cgroups.remove(rel).ok()) report.removed.push_back("cgroup " + rel);
  }
  if (auto links = native::netlink::list_links(); links.ok()) {
    const std::string prefix = "modhost " + impl_->state.scope_label() + " ";
    for (const auto& l : links.value()) {
      if (l.alias.rfind(prefix, 0) != 0 || known_enclaves.count(l.alias.substr(prefix.size()))) continue;
      if (native::netlink::delete_link(l.name).ok()) report.removed.push_back("bridge " + l.name);
    }
  }
  native::remove_forward_rule_if_unused();
  // A scope with nothing left leaves no directory either (its lock file goes
  // with it; the next use makes both again).
  std::error_code ec;
  if (known_enclaves.empty() && fs::is_empty(impl_->state.enclaves_dir(), ec)) {
    fs::remove(impl_->state.enclaves_dir(), ec);
    fs::remove(impl_->state.root + "/.lock", ec);
    fs::remove(impl_->state.root, ec);
  }
  return report;
}

}  // namespace modhost::backend
