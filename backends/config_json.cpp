#include "backends/config_json.hpp"

#include <boost/json.hpp>

namespace modhost::backend {

namespace json = boost::json;

std::string encode_config(const ServiceConfig& c) {
  auto strings = [](const std::vector<std::string>& v) {
    json::array a;
    for (const auto& x : v) a.emplace_back(x);
    return a;
  };
  json::object env, labels;
  for (const auto& [k, v] : c.env) env[k] = v;
  for (const auto& [k, v] : c.labels) labels[k] = v;
  json::array ports, files, binds;
  for (const auto& p : c.ports)
    ports.push_back(json::object{{"name", p.name}, {"number", p.number}, {"protocol", p.protocol}});
  for (const auto& f : c.files) files.push_back(json::object{{"artifact", f.artifact}, {"path", f.path}});
  for (const auto& b : c.binds) {
    binds.push_back(json::object{{"source", b.source}, {"target", b.target}, {"read_only", b.read_only}});
  }
  return json::serialize(json::object{{"image", c.image},
                                      {"entrypoint", strings(c.entrypoint)},
                                      {"cmd", strings(c.cmd)},
                                      {"env", std::move(env)},
                                      {"ports", std::move(ports)},
                                      {"files", std::move(files)},
                                      {"cpus", c.cpus},
                                      {"memory_bytes", c.memory_bytes},
                                      {"labels", std::move(labels)},
                                      {"binds", std::move(binds)},
                                      {"kind", c.kind},
                                      {"network_of", c.network_of},
                                      {"cap_add", strings(c.cap_add)},
                                      {"user", c.user},
                                      {"privileged", c.privileged},
                                      {"security_opt", strings(c.security_opt)}});
}

Result<ServiceConfig> decode_config(std::string_view text, const std::string& name) {
  try {
    json::object o = json::parse(text).as_object();
    ServiceConfig c;
    c.name = name;
    c.image = std::string(o.at("image").as_string());
    for (const auto& x : o.at("entrypoint").as_array()) c.entrypoint.emplace_back(x.as_string());
    for (const auto& x : o.at("cmd").as_array()) c.cmd.emplace_back(x.as_string());
    for (const auto& [k, v] : o.at("env").as_object()) c.env[std::string(k)] = std::string(v.as_string());
    for (const auto& p : o.at("ports").as_array()) {
      c.ports.push_back(PortSpec{std::string(p.at("name").as_string()),
                                 static_cast<std::uint16_t>(p.at("number").to_number<int>()),
                                 std::string(p.at("protocol").as_string())});
    }
    for (const auto& f : o.at("files").as_array()) {
      c.files.push_back(
          FileMount{std::string(f.at("artifact").as_string()), std::string(f.at("path").as_string())});
    }
    c.cpus = o.at("cpus").to_number<double>();
    c.memory_bytes = o.at("memory_bytes").to_number<std::uint64_t>();
    for (const auto& [k, v] : o.at("labels").as_object())
      c.labels[std::string(k)] = std::string(v.as_string());
    for (const auto& b : o.at("binds").as_array()) {
      c.binds.push_back(BindMount{std::string(b.at("source").as_string()),
                                  std::string(b.at("target").as_string()), b.at("read_only").as_bool()});
    }
    c.kind = std::string(o.at("kind").as_string());
    if (const json::value* n = o.if_contains("network_of")) c.network_of = std::string(n->as_string());
    if (const json::value* caps = o.if_contains("cap_add")) {
      for (const auto& x : caps->as_array()) c.cap_add.emplace_back(x.as_string());
    }
    if (const json::value* u = o.if_contains("user")) c.user = std::string(u->as_string());
    if (const json::value* p = o.if_contains("privileged")) c.privileged = p->as_bool();
    if (const json::value* opts = o.if_contains("security_opt")) {
      for (const auto& x : opts->as_array()) c.security_opt.emplace_back(x.as_string());
    }
    return c;
  } catch (const std::exception& e) {
    return Error(ErrorCode::failed_precondition,
                 "the config of service '" + name + "' cannot be read back (" + e.what() +
                     "); it was added by an older modhost: remove it and add it again");
  }
}

}  // namespace modhost::backend
