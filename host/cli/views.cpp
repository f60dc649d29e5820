#include "cli/views.hpp"

#include <boost/json.hpp>
#include <cstdio>

namespace modhost::cli {

const char* status_name(backend::EnclaveStatus s) { return backend::to_string(s); }

std::string format_port(const PublishedPort& p) {
  std::string s = p.port.name + ": " + std::to_string(p.port.number) + "/" + p.port.protocol;
  if (p.host_port != 0) s += " -> " + p.host_ip + ":" + std::to_string(p.host_port);
  return s;
}

boost::json::object to_json(const backend::EnclaveInfo& e) {
  return {{"id", e.id},           {"name", e.name},     {"status", status_name(e.status)},
          {"created", e.created}, {"subnet", e.subnet}, {"complete", e.complete}};
}

boost::json::object to_json(const ServiceInfo& s) {
  boost::json::array ports;
  for (const auto& p : s.ports) {
    boost::json::object o{{"name", p.port.name}, {"number", p.port.number}, {"protocol", p.port.protocol}};
    if (p.host_port != 0) {
      o["hostIp"] = p.host_ip;
      o["hostPort"] = p.host_port;
    }
    ports.push_back(std::move(o));
  }
  boost::json::object labels;
  for (const auto& [k, v] : s.labels) labels[k] = v;
  boost::json::object o{{"name", s.name},
                        {"id", s.id},
                        {"enclaveId", s.enclave_id},
                        {"image", s.image},
                        {"status", to_string(s.status)},
                        {"ip", s.ip},
                        {"ports", ports},
                        {"labels", labels}};
  if (s.exit_code) o["exitCode"] = *s.exit_code;
  return o;
}

boost::json::object to_json(const backend::ArtifactInfo& a) {
  return {{"name", a.name}, {"enclaveId", a.enclave_id}, {"sizeBytes", a.size_bytes}, {"created", a.created}};
}

void Table::print() const {
  std::vector<size_t> widths;
  for (const auto& r : rows_) {
    if (widths.size() < r.size()) widths.resize(r.size(), 0);
    for (size_t i = 0; i < r.size(); ++i) widths[i] = std::max(widths[i], r[i].size());
  }
  for (const auto& r : rows_) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(widths[i] - r[i].size() + 3, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
}

}  // namespace modhost::cli
