// The mutation module's logic: params, targets, steps, report.
#include "mutation.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <charconv>
#include <cmath>

namespace modhost::mutation {
namespace {

namespace json = boost::json;

Error invalid(std::string message) { return Error(ErrorCode::invalid_argument, std::move(message)); }

Result<std::vector<std::string>> strings(const json::value& v, const std::string& key, bool allow_empty) {
  if (!v.is_array()) return invalid(key + " must be an array of strings");
  std::vector<std::string> out;
  for (const json::value& e : v.as_array()) {
    if (!e.is_string()) return invalid(key + " must be an array of strings");
    out.emplace_back(e.as_string());
  }
  if (out.empty() && !allow_empty) return invalid(key + " must not be empty");
  return out;
}

Result<std::int64_t> integer(const json::value& v, const std::string& key, std::int64_t min,
                             std::int64_t max) {
  std::int64_t n = 0;
  if (v.is_int64()) {
    n = v.as_int64();
  } else if (v.is_uint64() && v.as_uint64() <= static_cast<std::uint64_t>(max)) {
    n = static_cast<std::int64_t>(v.as_uint64());
  } else {
    return invalid(key + " must be an integer");
  }
  if (n < min || n > max) {
    return invalid(key + " " + std::to_string(n) + " is outside " + std::to_string(min) + ".." +
                   std::to_string(max));
  }
  return n;
}

Result<ReadinessCheck> parse_wait(const json::value& v) {
  if (!v.is_object())
    return invalid("wait must be an object: {\"tcp\": PORT}, {\"http\": PORT} or {\"exec\": [argv]}");
  ReadinessCheck c;
  c.interval = std::chrono::milliseconds(250);
  double timeout_s = 30;
  int kinds = 0;
  auto port = [](const json::value& p) -> std::optional<std::string> {
    if (p.is_string() && !p.as_string().empty()) return std::string(p.as_string());
    if (p.is_int64() && p.as_int64() > 0 && p.as_int64() < 65536) return std::to_string(p.as_int64());
    return std::nullopt;
  };
  for (const auto& [k, x] : v.as_object()) {
    const std::string key(k);
    if (key == "tcp" || key == "http") {
      auto p = port(x);
      if (!p) return invalid("wait." + key + " must be a port name or number");
      c.kind = key == "tcp" ? ReadinessCheck::Kind::tcp : ReadinessCheck::Kind::http;
      c.port = *p;
      ++kinds;
    } else if (key == "exec") {
      MODHOST_ASSIGN_OR_RETURN(c.command, strings(x, "wait.exec", false));
      c.kind = ReadinessCheck::Kind::exec;
      ++kinds;
    } else if (key == "path") {
      if (!x.is_string() || !x.as_string().starts_with("/")) return invalid("wait.path must start with '/'");
      c.path = std::string(x.as_string());
    } else if (key == "status") {
      MODHOST_ASSIGN_OR_RETURN(std::int64_t st, integer(x, "wait.status", 100, 599));
      c.expected_status = static_cast<int>(st);
    } else if (key == "timeout_seconds") {
      if (!x.is_number() || x.to_number<double>() <= 0 || x.to_number<double>() > 3600) {
        return invalid("wait.timeout_seconds must be a number in (0, 3600]");
      }
      timeout_s = x.to_number<double>();
    } else {
      return invalid("unknown key 'wait." + key +
                     "' (known: tcp, http, exec, path, status, timeout_seconds)");
    }
  }
  if (kinds != 1) return invalid("wait needs exactly one of tcp, http and exec");
  c.retries =
      std::max(1, static_cast<int>(std::ceil(timeout_s * 1000 / static_cast<double>(c.interval.count()))));
  return c;
}

bool valid_service_name(std::string_view n) {
  return !n.empty() && n.size() <= 63 && std::all_of(n.begin(), n.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-';
  });
}

std::string_view action_name(Action a) {
  switch (a) {
    case Action::exec:
      return "exec";
    case Action::write_file:
      return "write_file";
    case Action::update:
      return "update";
    case Action::scale:
      return "scale";
  }
  return "exec";
}

}  // namespace

Result<Params> parse_params(std::string_view text) {
  boost::system::error_code ec;
  json::value root = json::parse(text, ec);
  if (ec) return invalid("execute params are not valid JSON: " + ec.message());
  if (!root.is_object()) return invalid("execute params must be a JSON object");
  Params p;
  bool has_action = false;
  std::vector<std::string> given;
  for (const auto& [k, v] : root.as_object()) {
    const std::string key(k);
    given.push_back(key);
    if (key == "action") {
      has_action = true;
      const std::string a = v.is_string() ? std::string(v.as_string()) : "";
      if (a == "exec")
        p.action = Action::exec;
      else if (a == "write_file")
        p.action = Action::write_file;
      else if (a == "update")
        p.action = Action::update;
      else if (a == "scale")
        p.action = Action::scale;
      else
        return invalid("action must be one of exec, write_file, update, scale");
    } else if (key == "services") {
      MODHOST_ASSIGN_OR_RETURN(p.services, strings(v, "services", false));
      std::sort(p.services.begin(), p.services.end());
      p.services.erase(std::unique(p.services.begin(), p.services.end()), p.services.end());
    } else if (key == "regex") {
      if (!v.is_string() || v.as_string().empty()) return invalid("regex must be a non-empty string");
      p.regex_text = std::string(v.as_string());
      try {
        p.regex.emplace(p.regex_text, std::regex::ECMAScript);
      } catch (const std::regex_error& e) {
        return invalid("regex '" + p.regex_text + "' is not valid: " + e.what());
      }
    } else if (key == "command") {
      MODHOST_ASSIGN_OR_RETURN(p.command, strings(v, "command", false));
    } else if (key == "expect_exit") {
      MODHOST_ASSIGN_OR_RETURN(std::int64_t n, integer(v, "expect_exit", 0, 255));
      p.expect_exit = static_cast<int>(n);
    } else if (key == "path") {
      if (!v.is_string() || !v.as_string().starts_with("/") || v.as_string().size() < 2) {
        return invalid("path must be an absolute path in the service");
      }
      p.path = std::string(v.as_string());
    } else if (key == "content") {
      if (!v.is_string()) return invalid("content must be a string");
      p.content = std::string(v.as_string());
    } else if (key == "artifact") {
      if (!v.is_string() || v.as_string().empty()) return invalid("artifact must be a files artifact name");
      p.artifact = std::string(v.as_string());
    } else if (key == "mode") {
      unsigned m = 0;
      const std::string s = v.is_string() ? std::string(v.as_string()) : "";
      auto [end, err] = std::from_chars(s.data(), s.data() + s.size(), m, 8);
      if (s.empty() || err != std::errc() || end != s.data() + s.size() || m > 07777) {
        return invalid("mode must be an octal string like \"0644\"");
      }
      p.mode = m;
    } else if (key == "env") {
      if (!v.is_object()) return invalid("env must be an object: NAME -> string, or null to unset");
      for (const auto& [name, value] : v.as_object()) {
        if (name.empty() || name.find('=') != json::string_view::npos) {
          return invalid("env name '" + std::string(name) + "' is not valid");
        }
        if (value.is_null()) {
          p.env[std::string(name)] = std::nullopt;
        } else if (value.is_string()) {
          p.env[std::string(name)] = std::string(value.as_string());
        } else {
          return invalid("env." + std::string(name) + " must be a string or null");
        }
      }
    } else if (key == "cmd") {
      MODHOST_ASSIGN_OR_RETURN(p.cmd, strings(v, "cmd", true));
    } else if (key == "entrypoint") {
      MODHOST_ASSIGN_OR_RETURN(p.entrypoint, strings(v, "entrypoint", true));
    } else if (key == "image") {
      if (!v.is_string() || v.as_string().empty()) return invalid("image must be an image reference");
      p.image = std::string(v.as_string());
    } else if (key == "service") {
      if (!v.is_string() || v.as_string().empty()) return invalid("service must be a service name");
      p.service = std::string(v.as_string());
    } else if (key == "replicas") {
      MODHOST_ASSIGN_OR_RETURN(std::int64_t n, integer(v, "replicas", 1, 100));
      p.replicas = static_cast<int>(n);
    } else if (key == "wait") {
      MODHOST_ASSIGN_OR_RETURN(p.wait, parse_wait(v));
    } else if (key == "dry_run") {
      if (!v.is_bool()) return invalid("dry_run must be true or false");
      p.dry_run = v.as_bool();
    } else {
      return invalid(
          "unknown key '" + key +
          "' (known: action, services, regex, command, expect_exit, path, content, artifact, mode, env, "
          "cmd, entrypoint, image, service, replicas, wait, dry_run)");
    }
  }
  if (!has_action) return invalid("action is required: exec, write_file, update or scale");

  // Keys that belong to another action are mistakes, not silently ignored.
  const std::map<Action, std::vector<std::string>> allowed = {
      {Action::exec, {"action", "services", "regex", "command", "expect_exit", "dry_run"}},
      {Action::write_file, {"action", "services", "regex", "path", "content", "artifact", "mode", "dry_run"}},
      {Action::update,
       {"action", "services", "regex", "env", "cmd", "entrypoint", "image", "wait", "dry_run"}},
      {Action::scale, {"action", "service", "replicas", "wait", "dry_run"}}};
  const auto& ok = allowed.at(p.action);
  for (const std::string& k : given) {
    if (std::find(ok.begin(), ok.end(), k) == ok.end()) {
      return invalid("action \"" + std::string(action_name(p.action)) + "\" takes no '" + k + "'");
    }
  }
  if (p.action != Action::scale && p.services.empty() && !p.regex) {
    return invalid("give the target services: services (names) or regex");
  }
  switch (p.action) {
    case Action::exec:
      if (p.command.empty()) return invalid("exec needs command: [\"argv0\", ...]");
      break;
    case Action::write_file:
      if (p.path.empty()) return invalid("write_file needs path");
      if (p.content.has_value() == !p.artifact.empty())
        return invalid("write_file needs one of content and artifact");
      if (p.content && p.path.back() == '/') return invalid("path must name a file, not a directory");
      break;
    case Action::update:
      if (p.env.empty() && !p.cmd && !p.entrypoint && p.image.empty()) {
        return invalid("update needs at least one of env, cmd, entrypoint and image");
      }
      break;
    case Action::scale:
      if (p.service.empty()) return invalid("scale needs service");
      if (!valid_service_name(p.service + "-100"))
        return invalid("service '" + p.service + "' is not a valid name");
      if (!root.as_object().contains("replicas"))
        return invalid("scale needs replicas (copies in all, >= 1)");
      break;
  }
  return p;
}

ServiceConfig updated(const ServiceConfig& current, const Params& p) {
  ServiceConfig c = current;
  for (const auto& [k, v] : p.env) {
    if (v) {
      c.env[k] = *v;
    } else {
      c.env.erase(k);
    }
  }
  if (p.cmd) c.cmd = *p.cmd;
  if (p.entrypoint) c.entrypoint = *p.entrypoint;
  if (!p.image.empty()) c.image = p.image;
  return c;
}

std::string to_json(const Report& r) {
  json::array steps;
  for (const Step& s : r.steps) {
    json::object o{
        {"time", modules::format_time(s.time)}, {"step", s.step}, {"service", s.service}, {"ok", s.ok}};
    if (!s.error.empty()) o["error"] = s.error;
    if (s.exit_code) o["exitCode"] = *s.exit_code;
    if (!s.output.empty()) o["output"] = s.output;
    steps.push_back(std::move(o));
  }
  return json::serialize(
      json::object{{"action", r.action}, {"dryRun", r.dry_run}, {"steps", std::move(steps)}});
}

namespace {

// Copies of `service` by number (2, 3, ...), from the enclave's listing.
std::map<int, std::string> copies_of(const std::string& service, const std::vector<ServiceInfo>& services) {
  std::map<int, std::string> out;
  for (const ServiceInfo& s : services) {
    auto l = s.labels.find(kCopyLabel);
    if (l == s.labels.end() || l->second != service) continue;
    if (!s.name.starts_with(service + "-")) continue;
    int n = 0;
    const std::string tail = s.name.substr(service.size() + 1);
    auto [end, err] = std::from_chars(tail.data(), tail.data() + tail.size(), n);
    if (err == std::errc() && end == tail.data() + tail.size() && n >= 2) out[n] = s.name;
  }
  return out;
}

class Runner {
 public:
  Runner(EnclaveContext& ctx, const Params& p, modules::Clock& clock) : ctx_(ctx), p_(p), clock_(clock) {
    report_.action = std::string(action_name(p.action));
    report_.dry_run = p.dry_run;
  }

  Result<Report> run() {
    MODHOST_ASSIGN_OR_RETURN(std::vector<ServiceInfo> services, ctx_.list_services());
    if (p_.action == Action::scale) return scale(services);
    MODHOST_ASSIGN_OR_RETURN(std::vector<std::string> targets, select(services));
    for (const std::string& t : targets) {
      switch (p_.action) {
        case Action::exec:
          MODHOST_TRY(exec(t));
          break;
        case Action::write_file:
          MODHOST_TRY(write(t));
          break;
        case Action::update:
          MODHOST_TRY(update(t));
          break;
        case Action::scale:
          break;
      }
    }
    return report_;
  }

 private:
  Result<std::vector<std::string>> select(const std::vector<ServiceInfo>& services) {
    std::vector<std::string> names;
    for (const ServiceInfo& s : services) names.push_back(s.name);
    for (const std::string& n : p_.services) {
      if (std::find(names.begin(), names.end(), n) == names.end()) {
        return invalid("unknown service '" + n + "' (the enclave has: " + join(names) + ")");
      }
    }
    std::vector<std::string> out;
    for (const std::string& n : names) {
      if (!p_.services.empty() && !std::binary_search(p_.services.begin(), p_.services.end(), n)) continue;
      if (p_.regex && !std::regex_search(n, *p_.regex)) continue;
      out.push_back(n);
    }
    std::sort(out.begin(), out.end());
    if (out.empty()) return invalid("no service matches regex '" + p_.regex_text + "'");
    return out;
  }

  static std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s.empty() ? "no services" : s;
  }

  // Records a step; a failed one ends the run with an error that lists what
  // was done before it.
  Status record(std::string step, std::string service, const Status& s, std::optional<int> exit_code = {},
                std::string output = {}) {
    if (output.size() > 4096) output = output.substr(0, 4096) + "...";
    report_.steps.push_back(Step{clock_.wall_now(), std::move(step), std::move(service), s.ok(),
                                 s.ok() ? "" : s.error().message(), exit_code, std::move(output)});
    if (s.ok()) return s;
    std::string done;
    for (std::size_t i = 0; i + 1 < report_.steps.size(); ++i) {
      done += (done.empty() ? "" : ", ") + report_.steps[i].step + " " + report_.steps[i].service;
    }
    const Step& last = report_.steps.back();
    return Error(s.error().code(), "mutation stopped at " + last.step + " of '" + last.service +
                                       "': " + s.error().message() +
                                       "; done before it: " + (done.empty() ? "nothing" : done));
  }

  Status exec(const std::string& t) {
    if (p_.dry_run) return record("exec", t, ok_status());
    auto r = ctx_.exec(t, p_.command);
    if (!r.ok()) return record("exec", t, r.error());
    Status s = r->exit_code == p_.expect_exit
                   ? ok_status()
                   : Status(Error(ErrorCode::failed_precondition,
                                  "exited with code " + std::to_string(r->exit_code) + ", expected " +
                                      std::to_string(p_.expect_exit)));
    return record("exec", t, s, r->exit_code, r->output);
  }

  Status write(const std::string& t) {
    if (p_.dry_run) return record("write", t, ok_status());
    if (p_.content) return record("write", t, ctx_.write_file(t, p_.path, *p_.content, p_.mode));
    if (tgz_.empty()) {
      auto a = ctx_.download_artifact(p_.artifact);
      if (!a.ok()) return record("write", t, a.error());
      tgz_ = std::move(a).value();
    }
    return record("write", t, ctx_.copy_to_service(t, p_.path, tgz_));
  }

  Status update(const std::string& t) {
    auto current = ctx_.service_config(t);
    if (!current.ok()) return record("replace", t, current.error());
    if (p_.dry_run) return record("replace", t, ok_status());
    const ServiceConfig next = updated(current.value(), p_);
    MODHOST_TRY(record("remove", t, ctx_.remove_service(t)));
    auto added = ctx_.add_service(next);
    if (!added.ok()) {
      // Put the old one back, so a bad image or command leaves the service as it was.
      auto back = ctx_.add_service(current.value());
      return record(
          "replace", t,
          Error(added.error().code(),
                added.error().message() + (back.ok() ? " (the previous config was restored)"
                                                     : " (and restoring the previous config failed: " +
                                                           back.error().message() + ")")));
    }
    MODHOST_TRY(record("replace", t, ok_status()));
    if (p_.wait) MODHOST_TRY(record("ready", t, ctx_.wait_ready(t, *p_.wait)));
    return ok_status();
  }

  Result<Report> scale(const std::vector<ServiceInfo>& services) {
    auto original = std::find_if(services.begin(), services.end(),
                                 [&](const ServiceInfo& s) { return s.name == p_.service; });
    if (original == services.end()) return invalid("unknown service '" + p_.service + "'");
    std::map<int, std::string> copies = copies_of(p_.service, services);
    const int have = 1 + static_cast<int>(copies.size());
    if (p_.replicas > have) {
      auto base = ctx_.service_config(p_.service);
      if (!base.ok()) return base.error();
      for (int n = 2; static_cast<int>(copies.size()) + 1 < p_.replicas; ++n) {
        if (copies.contains(n)) continue;
        ServiceConfig c = base.value();
        c.name = p_.service + "-" + std::to_string(n);
        c.labels[kCopyLabel] = p_.service;
        copies[n] = c.name;
        if (p_.dry_run) {
          MODHOST_TRY(record("add", c.name, ok_status()));
          continue;
        }
        auto added = ctx_.add_service(c);
        MODHOST_TRY(record("add", c.name, added.ok() ? ok_status() : Status(added.error())));
        if (p_.wait) MODHOST_TRY(record("ready", c.name, ctx_.wait_ready(c.name, *p_.wait)));
      }
    } else {
      // Highest numbers go first.
      for (auto it = copies.rbegin();
           it != copies.rend() && static_cast<int>(copies.size()) + 1 > p_.replicas;) {
        const std::string name = it->second;
        MODHOST_TRY(record("remove", name, p_.dry_run ? ok_status() : ctx_.remove_service(name)));
        it = decltype(it)(copies.erase(std::next(it).base()));
      }
    }
    return report_;
  }

  EnclaveContext& ctx_;
  const Params& p_;
  modules::Clock& clock_;
  Report report_;
  std::string tgz_;  // the artifact, fetched once
};

}  // namespace

Result<Report> run(EnclaveContext& ctx, const Params& params, modules::Clock& clock) {
  return Runner(ctx, params, clock).run();
}

}  // namespace modhost::mutation
