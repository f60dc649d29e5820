// What the Docker backend reads from the engine's answers: container and
// network inspects (and listings in their shape) as services and enclaves,
// and the ports label. Pure; nothing here talks to the engine.
#include <charconv>

#include "backends/docker/docker_impl.hpp"

namespace modhost::backend::docker {

ServiceStatus service_status(std::string_view s) {
  if (s == "created") return ServiceStatus::created;
  if (s == "running" || s == "restarting") return ServiceStatus::running;
  if (s == "paused") return ServiceStatus::paused;
  if (s == "exited" || s == "dead") return ServiceStatus::exited;
  return ServiceStatus::unknown;
}

std::string port_key(const PortSpec& p) { return std::to_string(p.number) + "/" + p.protocol; }

std::string encode_ports(const std::vector<PortSpec>& ports) {
  std::string out;
  for (const auto& p : ports) {
    if (!out.empty()) out += ',';
    out += p.name + ":" + port_key(p);
  }
  return out;
}

std::vector<PortSpec> decode_ports(std::string_view s) {
  std::vector<PortSpec> out;
  while (!s.empty()) {
    auto comma = s.find(',');
    std::string_view item = s.substr(0, comma);
    s = comma == std::string_view::npos ? std::string_view{} : s.substr(comma + 1);
    auto colon = item.rfind(':');
    auto slash = item.rfind('/');
    if (colon == std::string_view::npos || slash == std::string_view::npos || slash < colon) continue;
    PortSpec p;
    p.name = std::string(item.substr(0, colon));
    const std::string_view number = item.substr(colon + 1, slash - colon - 1);
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
    if (ec != std::errc() || end != number.data() + number.size() || value == 0 || value > 65535) continue;
    p.number = static_cast<std::uint16_t>(value);
    p.protocol = std::string(item.substr(slash + 1));
    out.push_back(std::move(p));
  }
  return out;
}

ServiceInfo service_info(const json::value& inspect, const Enclave& e) {
  ServiceInfo info;
  info.id = str_at(inspect, "Id");
  const json::value* config = member(inspect, "Config");
  static const json::value kEmpty;
  const json::value& cfg = config != nullptr ? *config : kEmpty;
  info.name = label_of(cfg, kLabelName);
  info.enclave_id = label_of(cfg, kLabelEnclave);
  info.image = str_at(cfg, "Image");
  if (const json::value* labels = member(cfg, "Labels"); labels != nullptr && labels->is_object()) {
    for (const auto& [k, v] : labels->get_object()) {
      // The saved config is the backend's own (service_config reads it).
      if (v.is_string() && k != kLabelConfig) info.labels[std::string(k)] = std::string(v.get_string());
    }
  }
  if (const json::value* state = member(inspect, "State")) {
    info.status = service_status(str_at(*state, "Status"));
    if (info.status == ServiceStatus::exited) info.exit_code = static_cast<int>(int_at(*state, "ExitCode"));
  }
  const json::value* settings = member(inspect, "NetworkSettings");
  if (settings != nullptr) {
    if (const json::value* nets = member(*settings, "Networks"); nets != nullptr && nets->is_object()) {
      for (const auto& [netname, ep] : nets->get_object()) {
        if (netname == e.network_name || str_at(ep, "NetworkID") == e.network_id) {
          info.ip = str_at(ep, "IPAddress");
        }
      }
    }
  }
  const json::value* bindings = settings != nullptr ? member(*settings, "Ports") : nullptr;
  for (const PortSpec& p : decode_ports(label_of(cfg, kLabelPorts))) {
    PublishedPort pp;
    pp.port = p;
    pp.host_ip = "127.0.0.1";
    if (bindings != nullptr) {
      if (const json::value* list = member(*bindings, port_key(p)); list != nullptr && list->is_array()) {
        for (const auto& b : list->get_array()) {
          if (str_at(b, "HostIp") != "127.0.0.1") continue;
          // Not a port number: left at 0, as if not published yet.
          const std::string hp = str_at(b, "HostPort");
          unsigned value = 0;
          const auto [end, ec] = std::from_chars(hp.data(), hp.data() + hp.size(), value);
          if (ec == std::errc() && end == hp.data() + hp.size() && value <= 65535)
            pp.host_port = static_cast<std::uint16_t>(value);
          break;
        }
      }
    }
    info.ports.push_back(std::move(pp));
  }
  return info;
}

Enclave enclave_from_network(const json::value& net) {
  Enclave e;
  e.network_id = str_at(net, "Id");
  e.network_name = str_at(net, "Name");
  e.info.id = label_of(net, kLabelEnclave);
  e.info.name = label_of(net, kLabelName);
  e.info.created = label_of(net, kLabelCreated);
  e.info.complete = label_of(net, kLabelState) == "ready";
  if (const json::value* ipam = member(net, "IPAM")) {
    if (const json::value* cfg = member(*ipam, "Config"); cfg != nullptr && cfg->is_array()) {
      for (const auto& c : cfg->get_array()) {
        e.info.subnet = str_at(c, "Subnet");
        e.info.gateway = str_at(c, "Gateway");
        if (!e.info.subnet.empty()) break;
      }
    }
  }
  return e;
}

}  // namespace modhost::backend::docker
