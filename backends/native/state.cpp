#include "backends/native/state.hpp"

#include <sys/wait.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "backends/common.hpp"
#include "backends/config_json.hpp"
#include "backends/native/cgroups.hpp"
#include "backends/native/network.hpp"
#include "backends/native/processes.hpp"
#include "backends/native/records.hpp"
#include "backends/native/support.hpp"

namespace modhost::backend::native {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

EnclaveInfo enclave_info(const json::value& v) {
  EnclaveInfo e;
  e.id = str(v, "id");
  e.name = str(v, "name");
  e.created = str(v, "created");
  e.subnet = str(v, "subnet");
  e.gateway = str(v, "gateway");
  e.complete = str(v, "state") == "ready";
  return e;
}

}  // namespace

std::vector<EnclaveInfo> State::all_enclaves() const {
  std::vector<EnclaveInfo> out;
  std::error_code ec;
  for (const auto& d : fs::directory_iterator(enclaves_dir(), ec)) {
    json::value v = parse_json_file(d.path().string() + "/enclave.json");
    if (!v.is_object()) continue;
    EnclaveInfo e = enclave_info(v);
    e.status = enclave_status(e.id);
    out.push_back(std::move(e));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.created < b.created; });
  return out;
}

EnclaveStatus State::enclave_status(const std::string& id) const {
  bool any = false;
  for (const auto& name : service_names(id)) {
    any = true;
    const ServiceStatus s = service_info(id, name).status;
    if (s == ServiceStatus::running || s == ServiceStatus::paused) return EnclaveStatus::running;
  }
  return any ? EnclaveStatus::stopped : EnclaveStatus::empty;
}

Result<EnclaveInfo> State::resolve_enclave(std::string_view ref) const {
  if (ref.empty()) return Error(ErrorCode::invalid_argument, "no enclave given");
  std::vector<EnclaveInfo> prefix;
  for (auto& e : all_enclaves()) {
    if (e.id == ref || e.name == ref) return e;
    if (ref.size() >= 4 && e.id.rfind(ref, 0) == 0) prefix.push_back(e);
  }
  if (prefix.size() == 1) return prefix.front();
  if (prefix.size() > 1)
    return Error(ErrorCode::invalid_argument, "enclave id prefix '" + std::string(ref) + "' is ambiguous");
  return Error(ErrorCode::not_found,
               "no enclave '" + std::string(ref) + "'; list them with 'modhost enclave ls'");
}

std::set<std::string> State::used_subnets() const {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& scope_dir : fs::directory_iterator(runtime, ec)) {
    std::error_code ec2;
    for (const auto& e : fs::directory_iterator(scope_dir.path() / "enclaves", ec2)) {
      json::value v = parse_json_file(e.path().string() + "/enclave.json");
      if (!str(v, "subnet").empty()) out.insert(str(v, "subnet"));
    }
  }
  return out;
}

std::vector<std::string> State::service_names(const std::string& eid) const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& d : fs::directory_iterator(enclave_dir(eid) + "/services", ec)) {
    if (fs::exists(d.path() / "service.json")) out.push_back(d.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

json::value State::service_state(const std::string& eid, const std::string& name) const {
  return parse_json_file(service_dir(eid, name) + "/service.json");
}

ServiceInfo State::service_info(const std::string& eid, const std::string& name) const {
  const std::string dir = service_dir(eid, name);
  const json::value st = parse_json_file(dir + "/service.json");
  ServiceInfo info;
  info.name = name;
  info.id = str(st, "id");
  info.enclave_id = eid;
  info.image = str(st, "image");
  info.ip = str(st, "ip");
  info.labels[kLabelApp] = "modhost";
  info.labels[kLabelKind] = str(st, "kind");
  info.labels[kLabelEnclave] = eid;
  info.labels[kLabelName] = name;
  info.labels[kLabelCreated] = str(st, "created");
  if (const auto* o = st.if_object()) {
    if (const auto* labels = o->if_contains("labels"); labels && labels->is_object()) {
      for (const auto& [k, v] : labels->get_object()) {
        if (v.is_string()) info.labels[std::string(k)] = std::string(v.get_string());
      }
    }
  }
  const json::value run = parse_json_file(dir + "/run.json");
  if (!run.is_object()) {
    info.status = ServiceStatus::created;
    return info;
  }
  const int pid = static_cast<int>(num(run, "pid"));
  if (alive(pid, str(run, "pid_start"))) {
    info.status = cgroups_->frozen(cgroup_of(info.id)) ? ServiceStatus::paused : ServiceStatus::running;
    if (const auto* ports = run.as_object().if_contains("ports"); ports && ports->is_array()) {
      for (const auto& p : ports->get_array()) {
        PublishedPort pp;
        pp.port.name = str(p, "name");
        pp.port.number = static_cast<std::uint16_t>(num(p, "number"));
        pp.port.protocol = str(p, "protocol");
        pp.host_ip = "127.0.0.1";
        pp.host_port = static_cast<std::uint16_t>(num(p, "host_port"));
        info.ports.push_back(pp);
      }
    }
    return info;
  }
  // Not running: the ports it declares, without host ports.
  if (auto cfg = decode_config(str(st, "config"), name); cfg.ok()) {
    for (const auto& p : cfg->ports) info.ports.push_back(PublishedPort{p, "", 0});
  }
  // PID 1 is gone; its shim writes the exit record a moment later.
  if (const int shim = static_cast<int>(num(run, "spawn_pid")); shim > 0) {
    for (int i = 0; i < 100 && !fs::exists(dir + "/exit"); ++i) {
      (void)::waitpid(shim, nullptr, WNOHANG);  // ours to reap if this process spawned it
      if (::kill(shim, 0) != 0) break;
      std::this_thread::sleep_for(2ms);
    }
  }
  const Records exit = native::decode_records(read_file(dir + "/exit"));
  const std::string code = native::record(exit, "code");
  info.exit_code = code.empty() ? -1 : std::atoi(code.c_str());
  info.status = str(run, "stopped") == "yes" ? ServiceStatus::stopped : ServiceStatus::exited;
  return info;
}

Result<std::string> State::require_service(const std::string& eid, const std::string& name,
                                           const EnclaveInfo& e) const {
  if (!valid_name(name) || !fs::exists(service_dir(eid, name) + "/service.json")) {
    return Error(ErrorCode::not_found, "no service '" + name + "' in enclave '" + e.name + "'");
  }
  return service_dir(eid, name);
}

Result<std::string> State::allocate_ip(const std::string& eid, const EnclaveInfo& e) const {
  std::set<std::string> used{e.gateway};
  for (const auto& name : service_names(eid)) used.insert(str(service_state(eid, name), "ip"));
  return free_address(e, used);
}

void State::write_hosts(const std::string& eid) const {
  std::vector<std::pair<std::string, std::string>> entries;
  for (const auto& name : service_names(eid)) {
    const json::value st = service_state(eid, name);
    if (!str(st, "ip").empty()) entries.emplace_back(str(st, "ip"), name);
  }
  write_hosts_file(enclave_dir(eid) + "/hosts", entries);
}

void State::event(const std::string& eid, const std::string& kind, const std::string& subject,
                  const std::string& action, const std::map<std::string, std::string>& attributes) const {
  json::object attrs;
  for (const auto& [k, v] : attributes) attrs[k] = v;
  json::object ev{{"timeNano", now_ns()},
                  {"kind", kind},
                  {"subject", subject},
                  {"action", action},
                  {"attributes", std::move(attrs)}};
  std::ofstream out(enclave_dir(eid) + "/events", std::ios::app);
  out << json::serialize(ev) << "\n";
}

}  // namespace modhost::backend::native
