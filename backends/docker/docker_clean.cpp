// recover() and clean(): what a crash left, found from labels alone.
//
// Half-made or orphaned:
//   - an enclave network without io.modhost.state=ready;
//   - a container or volume whose enclave network no longer exists;
//   - an artifact holder container older than kInProgressGrace (holders live
//     only during one store/download);
//   - an artifact with one of its two volumes (older than kInProgressGrace).
#include <map>
#include <set>

#include "backends/docker/docker_impl.hpp"

namespace modhost::backend {

namespace {

bool older_than_grace(const json::value& owner) {
  auto created = docker::parse_rfc3339(docker::label_of(owner, kLabelCreated));
  if (!created) return true;
  return std::chrono::system_clock::now() - *created > docker::kInProgressGrace;
}

std::string container_name_of(const json::value& c) {
  if (const json::value* names = docker::member(c, "Names"); names != nullptr && names->is_array()) {
    for (const auto& n : names->get_array()) {
      if (!n.is_string()) continue;
      std::string s(n.get_string());
      if (!s.empty() && s.front() == '/') s.erase(0, 1);
      return s;
    }
  }
  return docker::str_at(c, "Id").substr(0, 12);
}

bool container_active(const json::value& c) {
  const std::string state = docker::str_at(c, "State");
  return state == "running" || state == "paused" || state == "restarting";
}

struct Leftover {
  enum class Kind { enclave, container, volume } kind;
  std::string description;
  std::string id;   // container id / volume name
  Enclave enclave;  // for kind == enclave
};

struct Survey {
  std::vector<Enclave> enclaves;                // complete ones
  std::map<std::string, bool> enclave_running;  // id -> any active container
  std::vector<Leftover> leftovers;
};

Result<Survey> survey(const DockerBackend::Impl& impl) {
  Survey out;
  MODHOST_ASSIGN_OR_RETURN(std::vector<Enclave> networks, impl.enclave_networks());
  std::set<std::string> known;
  for (auto& e : networks) {
    known.insert(e.info.id);
    if (e.info.complete) {
      out.enclave_running[e.info.id] = false;
      out.enclaves.push_back(e);
    } else {
      Leftover l{
          Leftover::Kind::enclave,
          "half-made enclave '" + e.info.name + "' (network " + e.network_name + ", id " + e.info.id + ")",
          "", e};
      out.leftovers.push_back(std::move(l));
    }
  }

  MODHOST_ASSIGN_OR_RETURN(json::value containers,
                           impl.api_json(Method::get, "/containers/json?all=1&" + impl.filters({}),
                                         "cannot list modhost containers"));
  if (const json::array* arr = containers.if_array()) {
    for (const auto& c : *arr) {
      const std::string enclave = docker::label_of(c, kLabelEnclave);
      const std::string name = container_name_of(c);
      const std::string id = docker::str_at(c, "Id");
      if (!known.contains(enclave)) {
        out.leftovers.push_back({Leftover::Kind::container,
                                 "orphan container " + name + " (" + docker::label_of(c, kLabelKind) + " '" +
                                     docker::label_of(c, kLabelName) + "' of enclave " + enclave +
                                     ", which no longer exists)",
                                 id,
                                 {}});
        continue;
      }
      if (docker::label_of(c, docker::kLabelRole) == "holder") {
        if (older_than_grace(c)) {
          out.leftovers.push_back(
              {Leftover::Kind::container, "leftover artifact holder container " + name, id, {}});
        }
        continue;
      }
      if (container_active(c)) out.enclave_running[enclave] = true;
    }
  }

  MODHOST_ASSIGN_OR_RETURN(json::value vols, impl.api_json(Method::get, "/volumes?" + impl.filters({}),
                                                           "cannot list modhost volumes"));
  // (enclave, artifact) -> roles present
  std::map<std::pair<std::string, std::string>, std::vector<const json::value*>> artifacts;
  if (const json::value* arr = docker::member(vols, "Volumes"); arr != nullptr && arr->is_array()) {
    for (const auto& v : arr->get_array()) {
      const std::string enclave = docker::label_of(v, kLabelEnclave);
      const std::string name = docker::str_at(v, "Name");
      if (!known.contains(enclave)) {
        out.leftovers.push_back({Leftover::Kind::volume,
                                 "orphan volume " + name + " (artifact '" + docker::label_of(v, kLabelName) +
                                     "' of enclave " + enclave + ", which no longer exists)",
                                 name,
                                 {}});
        continue;
      }
      if (docker::label_of(v, kLabelKind) == "artifact") {
        artifacts[{enclave, docker::label_of(v, kLabelName)}].push_back(&v);
      }
    }
  }
  for (const auto& [key, volumes] : artifacts) {
    if (volumes.size() >= 2) continue;
    const json::value& v = *volumes.front();
    if (!older_than_grace(v)) continue;
    const std::string name = docker::str_at(v, "Name");
    out.leftovers.push_back({Leftover::Kind::volume,
                             "half-made files artifact '" + key.second + "' of enclave " + key.first +
                                 " (volume " + name + " without its pair)",
                             name,
                             {}});
  }
  return out;
}

}  // namespace

Result<std::vector<std::string>> DockerBackend::recover() {
  MODHOST_ASSIGN_OR_RETURN(Survey s, survey(*impl_));
  std::vector<std::string> out;
  for (const auto& l : s.leftovers) out.push_back(l.description);
  return out;
}

Result<CleanReport> DockerBackend::clean(bool all) {
  MODHOST_ASSIGN_OR_RETURN(Survey s, survey(*impl_));
  CleanReport report;
  std::vector<std::string> failures;
  for (const auto& e : s.enclaves) {
    if (!all && s.enclave_running[e.info.id]) continue;
    if (auto st = impl_->remove_enclave_resources(e); !st.ok()) {
      failures.push_back(st.error().message());
      continue;
    }
    report.removed.push_back("enclave " + e.info.name + " (" + e.info.id + ")");
  }
  for (const auto& l : s.leftovers) {
    Status st = ok_status();
    switch (l.kind) {
      case Leftover::Kind::enclave:
        st = impl_->remove_enclave_resources(l.enclave);
        break;
      case Leftover::Kind::container:
        st = impl_->remove_container(l.id);
        break;
      case Leftover::Kind::volume: {
        auto r = impl_->api(Method::del, "/volumes/" + url_encode(l.id) + "?force=1");
        if (!r.ok()) {
          st = std::move(r).error();
        } else if (!is_2xx(r.value()) && r->status != 404) {
          st = docker::engine_error(r.value(), "cannot remove volume " + l.id);
        }
        break;
      }
    }
    if (!st.ok()) {
      failures.push_back(st.error().message());
      continue;
    }
    report.removed.push_back(l.description);
  }
  if (!failures.empty()) {
    std::string msg = "clean removed " + std::to_string(report.removed.size()) + " resources but failed on " +
                      std::to_string(failures.size()) + ": " + failures.front();
    return Error(ErrorCode::failed_precondition, msg);
  }
  impl_->log->info("clean removed {} resources", report.removed.size());
  return report;
}

}  // namespace modhost::backend
