#include "starlark/internal.hpp"

#include <charconv>
#include <cmath>

#include "starlark/run.hpp"

namespace modhost::starlark::detail {

std::string str(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

std::vector<std::string> strings(const json::object& o, std::string_view key) {
  std::vector<std::string> out;
  if (const json::value* v = o.if_contains(key); v && v->is_array()) {
    for (const auto& e : v->get_array()) {
      if (e.is_string())
        out.emplace_back(e.get_string());
      else
        out.push_back(json::serialize(e));
    }
  }
  return out;
}

std::map<std::string, std::string> string_map(const json::object& o, std::string_view key) {
  std::map<std::string, std::string> out;
  if (const json::object* m = object(o, key)) {
    for (const auto& [k, v] : *m)
      out[std::string(k)] = v.is_string() ? std::string(v.get_string()) : json::serialize(v);
  }
  return out;
}

std::int64_t integer(const json::object& o, std::string_view key, std::int64_t fallback) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr) return fallback;
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64()) return static_cast<std::int64_t>(v->get_uint64());
  if (v->is_double()) return static_cast<std::int64_t>(std::llround(v->get_double()));
  return fallback;
}

double number(const json::object& o, std::string_view key, double fallback) {
  const json::value* v = o.if_contains(key);
  return v && v->is_number() ? v->to_number<double>() : fallback;
}

bool boolean(const json::object& o, std::string_view key, bool fallback) {
  const json::value* v = o.if_contains(key);
  return v && v->is_bool() ? v->get_bool() : fallback;
}

const json::object* object(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v && v->is_object() ? &v->get_object() : nullptr;
}

Result<milliseconds> parse_go_duration(std::string_view text) {
  auto bad = [&] {
    return Error(ErrorCode::invalid_argument,
                 "invalid duration '" + std::string(text) + "': use e.g. \"500ms\", \"10s\" or \"2m30s\"");
  };
  if (text == "0") return milliseconds(0);
  if (text.empty()) return bad();
  double total_ms = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    double n = 0;
    auto [p, ec] = std::from_chars(text.data() + i, text.data() + text.size(), n);
    if (ec != std::errc() || n < 0) return bad();
    i = static_cast<std::size_t>(p - text.data());
    std::size_t j = i;
    while (j < text.size() && !(text[j] >= '0' && text[j] <= '9') && text[j] != '.') ++j;
    const std::string_view unit = text.substr(i, j - i);
    double scale = 0;
    if (unit == "h")
      scale = 3'600'000;
    else if (unit == "m")
      scale = 60'000;
    else if (unit == "s")
      scale = 1000;
    else if (unit == "ms")
      scale = 1;
    else if (unit == "us" || unit == "\u00b5s")
      scale = 0.001;
    else if (unit == "ns")
      scale = 0.000001;
    else
      return bad();
    total_ms += n * scale;
    i = j;
  }
  return milliseconds(static_cast<milliseconds::rep>(std::llround(total_ms)));
}

std::string format_duration(milliseconds d) {
  if (d.count() % 60'000 == 0 && d.count() > 0) return std::to_string(d.count() / 60'000) + "m";
  if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + "s";
  return std::to_string(d.count()) + "ms";
}

Result<std::optional<milliseconds>> duration(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return std::optional<milliseconds>();
  if (!v->is_string())
    return Error(ErrorCode::invalid_argument, std::string(key) + " must be a duration string");
  MODHOST_ASSIGN_OR_RETURN(milliseconds d, parse_go_duration(v->get_string()));
  return std::optional<milliseconds>(d);
}

Result<ServiceConfig> service_config(const std::string& name, const json::object& config) {
  ServiceConfig c;
  c.name = name;
  c.image = str(config, "image");
  c.entrypoint = strings(config, "entrypoint");
  c.cmd = strings(config, "cmd");
  for (auto& [k, v] : string_map(config, "env_vars")) c.env[k] = v;
  std::string protocols;
  if (const json::object* ports = object(config, "ports")) {
    for (const auto& [id, pv] : *ports) {
      if (!pv.is_object()) continue;
      const json::object& p = pv.get_object();
      PortSpec spec;
      spec.name = std::string(id);
      spec.number = static_cast<std::uint16_t>(integer(p, "number"));
      std::string proto = str(p, "transport_protocol");
      for (char& ch : proto) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      spec.protocol = proto.empty() ? "tcp" : proto;
      c.ports.push_back(spec);
      const std::string app = str(p, "application_protocol");
      if (!app.empty()) protocols += (protocols.empty() ? "" : ",") + spec.name + "=" + app;
    }
  }
  if (const json::object* files = object(config, "files")) {
    for (const auto& [dir, fv] : *files) {
      if (!fv.is_object()) continue;
      for (const auto& a : strings(fv.get_object(), "artifact_names"))
        c.files.push_back(FileMount{a, std::string(dir)});
    }
  }
  const std::int64_t cpu = integer(config, "max_cpu");
  if (cpu > 0) c.cpus = static_cast<double>(cpu) / 1000.0;
  const std::int64_t mem = integer(config, "max_memory");
  if (mem > 0) c.memory_bytes = static_cast<std::uint64_t>(mem) << 20;
  for (auto& [k, v] : string_map(config, "labels")) c.labels[k] = v;
  if (const json::object* user = object(config, "user")) {
    // User(uid, gid): "UID" takes the group of the image's passwd entry, as
    // Kurtosis leaves it to the container engine.
    c.user = std::to_string(integer(*user, "uid"));
    if (const json::value* gid = user->if_contains("gid"); gid && !gid->is_null())
      c.user += ":" + std::to_string(integer(*user, "gid"));
  }
  c.labels[kLabelStarlark] = "true";
  if (!protocols.empty()) c.labels[kLabelAppProtocols] = protocols;
  if (const std::string sub = subnetwork(config); !sub.empty()) c.labels[kLabelSubnetwork] = sub;
  return c;
}

std::string subnetwork(const json::object& config) { return str(config, "subnetwork"); }

std::vector<PortWait> port_waits(const json::object& config) {
  std::vector<PortWait> out;
  if (const json::object* ports = object(config, "ports")) {
    for (const auto& [id, pv] : *ports) {
      if (!pv.is_object()) continue;
      const json::object& p = pv.get_object();
      std::string proto = str(p, "transport_protocol");
      if (!proto.empty() && proto != "TCP" && proto != "tcp") continue;  // only TCP can be probed
      const json::value* w = p.if_contains("wait");
      milliseconds timeout(15'000);
      if (w != nullptr) {
        if (w->is_null()) continue;
        if (w->is_string()) {
          auto d = parse_go_duration(w->get_string());
          if (d.ok()) timeout = d.value();
        }
      }
      out.push_back(PortWait{std::string(id), timeout});
    }
  }
  return out;
}

std::vector<std::int64_t> acceptable_codes(const json::object& args, bool http) {
  std::vector<std::int64_t> out;
  if (const json::value* v = args.if_contains("acceptable_codes");
      v && v->is_array() && !v->get_array().empty()) {
    for (const auto& e : v->get_array()) {
      if (e.is_int64()) out.push_back(e.get_int64());
    }
    return out;
  }
  if (http) return {200, 201, 202, 203, 204, 205, 206, 207, 208, 226};
  return {0};
}

Connection connection(const json::object& conn) {
  Connection c;
  const double loss = number(conn, "packet_loss_percentage");
  if (loss >= 100) {
    c.blocked = true;
    return c;
  }
  c.loss_percent = loss;
  if (const json::object* d = object(conn, "delay")) {
    auto us = [](double ms) {
      return std::chrono::microseconds(static_cast<std::int64_t>(std::llround(ms * 1000)));
    };
    if (str(*d, "distribution") == "normal") {
      c.distribution = Connection::Distribution::normal;
      c.delay = us(number(*d, "mean_ms"));
      c.jitter = us(number(*d, "std_dev_ms"));
      c.correlation_percent = number(*d, "correlation");
    } else {
      c.delay = us(number(*d, "ms"));
      c.jitter = us(number(*d, "jitter_ms"));
    }
  }
  return c;
}

bool produces(const std::string& kind, const json::object& args, const std::string& field) {
  if (kind == "add_service" || kind == "get_service") return field == "ip_address" || field == "hostname";
  if (kind == "add_services") {
    const auto dot = field.rfind('.');
    if (dot == std::string::npos) return false;
    const std::string name = field.substr(0, dot), rest = field.substr(dot + 1);
    const json::object* configs = object(args, "configs");
    return configs && configs->contains(name) && (rest == "ip_address" || rest == "hostname");
  }
  if (kind == "exec_module") return field == "result";
  if (kind == "exec" || kind == "request" || kind == "wait" || kind == "run_sh") {
    if (field == "code") return true;
    if (field == "output") return kind != "request";
    if (field == "body") return kind == "request" || kind == "wait";
    if (field.rfind("extract.", 0) == 0) {
      const json::object* recipe = object(args, "recipe");
      const json::object* extract = recipe ? object(*recipe, "extract") : nullptr;
      return extract && extract->contains(field.substr(8));
    }
  }
  return false;
}

}  // namespace modhost::starlark::detail
