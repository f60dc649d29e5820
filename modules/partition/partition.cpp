// The partition module's logic: params, plan, report, and the run.
#include "partition.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <set>

namespace modhost::partition {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;

Error invalid(std::string message) { return Error(ErrorCode::invalid_argument, std::move(message)); }

Result<double> number(const json::value& v, const std::string& key, double min, double max) {
  double d = 0;
  if (v.is_int64()) {
    d = static_cast<double>(v.as_int64());
  } else if (v.is_uint64()) {
    d = static_cast<double>(v.as_uint64());
  } else if (v.is_double()) {
    d = v.as_double();
  } else {
    return invalid(key + " must be a number");
  }
  if (!std::isfinite(d) || d < min || d > max) {
    char range[64];
    std::snprintf(range, sizeof range, "%g..%g", min, max);
    return invalid(key + " " + json::serialize(v) + " is outside " + range);
  }
  return d;
}

Result<std::chrono::microseconds> millis(const json::value& v, const std::string& key) {
  if (v.is_number()) {
    double d = v.is_double() ? v.as_double() : v.is_int64() ? static_cast<double>(v.as_int64()) : 0;
    if (d < 0) return invalid(key + " must not be negative");
  }
  MODHOST_ASSIGN_OR_RETURN(double ms, number(v, key, 0, 60'000));
  return std::chrono::microseconds(static_cast<std::int64_t>(std::llround(ms * 1000.0)));
}

Result<Connection> parse_connection(const json::object& o, const std::string& where, bool allow_between) {
  Connection c;
  for (const auto& [k, v] : o) {
    const std::string key(k);
    const std::string name = where + "." + key;
    if (key == "between" && allow_between) continue;
    if (key == "blocked") {
      if (!v.is_bool()) return invalid(name + " must be true or false");
      c.blocked = v.as_bool();
    } else if (key == "loss") {
      MODHOST_ASSIGN_OR_RETURN(c.loss_percent, number(v, name, 0, 100));
    } else if (key == "delay_ms") {
      MODHOST_ASSIGN_OR_RETURN(c.delay, millis(v, name));
    } else if (key == "jitter_ms") {
      MODHOST_ASSIGN_OR_RETURN(c.jitter, millis(v, name));
    } else if (key == "correlation") {
      MODHOST_ASSIGN_OR_RETURN(c.correlation_percent, number(v, name, 0, 100));
    } else if (key == "distribution") {
      if (!v.is_string() || (v.as_string() != "uniform" && v.as_string() != "normal")) {
        return invalid(name + " must be \"uniform\" or \"normal\"");
      }
      c.distribution =
          v.as_string() == "normal" ? Connection::Distribution::normal : Connection::Distribution::uniform;
    } else if (key == "rate") {
      std::optional<std::uint64_t> r;
      if (v.is_string()) r = parse_rate(v.as_string());
      if (v.is_int64() && v.as_int64() > 0) r = static_cast<std::uint64_t>(v.as_int64());
      if (v.is_uint64() && v.as_uint64() > 0) r = v.as_uint64();
      if (!r || *r == 0) {
        return invalid(name +
                       " must be like \"1mbit\", \"100kbit\", \"64kbps\" or a number of bytes/s above 0");
      }
      c.rate_bytes_per_second = *r;
    } else {
      return invalid("unknown key '" + name +
                     "' (known: blocked, loss, delay_ms, jitter_ms, correlation, distribution, rate" +
                     (allow_between ? ", between)" : ")"));
    }
  }
  MODHOST_TRY(validate(c, where));
  return c;
}

Result<std::vector<std::string>> string_array(const json::value& v, const std::string& name) {
  if (!v.is_array()) return invalid(name + " must be an array of strings");
  std::vector<std::string> out;
  for (const json::value& e : v.as_array()) {
    if (!e.is_string() || e.as_string().empty())
      return invalid(name + " must be an array of non-empty strings");
    out.emplace_back(e.as_string());
  }
  return out;
}

json::object connection_json(const Connection& c) {
  json::object o;
  if (c.blocked) {
    o["blocked"] = true;
    return o;
  }
  auto ms = [](std::chrono::microseconds us) -> json::value {
    if (us.count() % 1000 == 0) return us.count() / 1000;
    return static_cast<double>(us.count()) / 1000.0;
  };
  if (c.loss_percent > 0) o["loss"] = c.loss_percent;
  if (c.delay.count() > 0) o["delay_ms"] = ms(c.delay);
  if (c.jitter.count() > 0) o["jitter_ms"] = ms(c.jitter);
  if (c.correlation_percent > 0) o["correlation"] = c.correlation_percent;
  if (c.jitter.count() > 0)
    o["distribution"] = c.distribution == Connection::Distribution::normal ? "normal" : "uniform";
  if (c.rate_bytes_per_second > 0) o["rate_bytes_per_second"] = c.rate_bytes_per_second;
  return o;
}

}  // namespace

std::optional<std::uint64_t> parse_rate(std::string_view text) {
  std::uint64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || n == 0) return std::nullopt;
  std::string unit(end, text.data() + text.size());
  std::transform(unit.begin(), unit.end(), unit.begin(), [](unsigned char ch) { return std::tolower(ch); });
  struct Unit {
    const char* name;
    std::uint64_t bits_num;  // bytes/s = n * bits_num / 8 for bit units; n * bytes for byte units
    bool bits;
  };
  static const Unit units[] = {
      {"bit", 1, true},  {"kbit", 1000, true},  {"mbit", 1000'000, true},  {"gbit", 1000'000'000, true},
      {"bps", 1, false}, {"kbps", 1000, false}, {"mbps", 1000'000, false}, {"gbps", 1000'000'000, false}};
  for (const Unit& u : units) {
    if (unit != u.name) continue;
    if (n > UINT64_MAX / u.bits_num) return std::nullopt;
    std::uint64_t v = n * u.bits_num;
    if (u.bits) v /= 8;
    if (v == 0) return std::nullopt;
    return v;
  }
  return std::nullopt;
}

Result<Params> parse_params(std::string_view text) {
  boost::system::error_code ec;
  json::value root = json::parse(text.empty() ? std::string_view("{}") : text, ec);
  if (ec) return invalid("execute params are not valid JSON: " + ec.message());
  if (!root.is_object()) return invalid("execute params must be a JSON object");
  const json::object& o = root.as_object();
  Params p;
  bool has_plan_keys = false;
  for (const auto& [k, v] : o) {
    const std::string key(k);
    if (key == "action") {
      if (!v.is_string() || (v.as_string() != "apply" && v.as_string() != "heal")) {
        return invalid("action must be \"apply\" or \"heal\"");
      }
      p.heal = v.as_string() == "heal";
    } else if (key == "partitions") {
      has_plan_keys = true;
      if (!v.is_object()) return invalid("partitions must be an object: name -> array of service names");
      for (const auto& [name, members] : v.as_object()) {
        MODHOST_ASSIGN_OR_RETURN(p.plan.partitions[std::string(name)],
                                 string_array(members, "partitions." + std::string(name)));
      }
    } else if (key == "connections") {
      has_plan_keys = true;
      if (!v.is_array()) return invalid("connections must be an array of objects");
      std::size_t i = 0;
      for (const json::value& c : v.as_array()) {
        const std::string where = "connections[" + std::to_string(i++) + "]";
        if (!c.is_object()) return invalid(where + " must be an object");
        const json::value* between = c.as_object().if_contains("between");
        if (between == nullptr) return invalid(where + " needs \"between\": [PARTITION, PARTITION]");
        MODHOST_ASSIGN_OR_RETURN(std::vector<std::string> pair, string_array(*between, where + ".between"));
        if (pair.size() != 2) return invalid(where + ".between must name two partitions");
        MODHOST_ASSIGN_OR_RETURN(Connection conn, parse_connection(c.as_object(), where, true));
        p.plan.connections.push_back(PartitionConnection{pair[0], pair[1], conn});
      }
    } else if (key == "default") {
      has_plan_keys = true;
      if (!v.is_object()) return invalid("default must be a connection object");
      MODHOST_ASSIGN_OR_RETURN(p.plan.default_connection, parse_connection(v.as_object(), "default", false));
    } else if (key == "duration_seconds") {
      has_plan_keys = true;
      MODHOST_ASSIGN_OR_RETURN(double s, number(v, "duration_seconds", 0, 365.0 * 24 * 3600));
      if (s <= 0) return invalid("duration_seconds must be above 0");
      p.duration = milliseconds(static_cast<std::int64_t>(std::llround(s * 1000.0)));
    } else if (key == "dry_run") {
      if (!v.is_bool()) return invalid("dry_run must be true or false");
      p.dry_run = v.as_bool();
    } else {
      return invalid("unknown key '" + key +
                     "' (known: action, partitions, connections, default, duration_seconds, dry_run)");
    }
  }
  if (p.heal && has_plan_keys)
    return invalid("action \"heal\" takes no partitions, connections, default or duration");
  if (!p.heal) {
    if (p.plan.partitions.empty()) {
      return invalid("partitions is missing or empty: name at least one partition of services");
    }
    // Names and pairs are checked against the enclave later; what needs no
    // enclave is checked now.
    std::vector<std::string> every;
    for (const auto& [_, members] : p.plan.partitions)
      every.insert(every.end(), members.begin(), members.end());
    std::sort(every.begin(), every.end());
    every.erase(std::unique(every.begin(), every.end()), every.end());
    MODHOST_TRY(validate(p.plan, every));
    p.plan.temporary = p.duration.has_value();
  }
  return p;
}

std::string to_json(const Report& r) {
  json::object partitions;
  for (const auto& [name, members] : r.partitions) {
    json::array a;
    for (const std::string& s : members) a.emplace_back(s);
    partitions[name] = std::move(a);
  }
  json::array pairs;
  for (const PartitionConnection& c : r.pairs) {
    json::object o = connection_json(c.connection);
    o["between"] = json::array{json::value(c.a), json::value(c.b)};
    pairs.push_back(std::move(o));
  }
  json::array events;
  for (const Event& e : r.events) {
    json::object o{{"time", modules::format_time(e.time)}, {"event", e.what}, {"ok", e.ok}};
    if (!e.reason.empty()) o["reason"] = e.reason;
    if (!e.error.empty()) o["error"] = e.error;
    events.push_back(std::move(o));
  }
  return json::serialize(json::object{{"action", r.action},
                                      {"dryRun", r.dry_run},
                                      {"cancelled", r.cancelled},
                                      {"partitions", std::move(partitions)},
                                      {"connections", std::move(pairs)},
                                      {"events", std::move(events)}});
}

Result<Report> run(EnclaveContext& ctx, const Params& params, modules::Clock& clock,
                   const std::function<bool()>& cancelled) {
  Report report;
  report.action = params.heal ? "heal" : "apply";
  report.dry_run = params.dry_run;
  auto event = [&](std::string what, std::string reason, const Status& s) {
    report.events.push_back(Event{clock.wall_now(), std::move(what), std::move(reason), s.ok(),
                                  s.ok() ? "" : s.error().message()});
  };

  if (params.heal) {
    if (!params.dry_run) {
      Status s = ctx.repartition(NetworkPartitioning{});
      event("healed", "requested", s);
      if (!s.ok()) return s.error();
    } else {
      event("planned", "", ok_status());
    }
    return report;
  }

  // Checked against the enclave before anything changes.
  MODHOST_ASSIGN_OR_RETURN(std::vector<ServiceInfo> services, ctx.list_services());
  std::vector<std::string> names;
  for (const ServiceInfo& s : services) names.push_back(s.name);
  MODHOST_TRY(validate(params.plan, names));
  for (const auto& [service, part] : partition_of(params.plan, names))
    report.partitions[part].push_back(service);
  std::vector<std::string> parts;
  for (const auto& [name, _] : report.partitions) parts.push_back(name);
  for (std::size_t i = 0; i < parts.size(); ++i) {
    for (std::size_t j = i + 1; j < parts.size(); ++j) {
      Connection c = connection_between(params.plan, parts[i], parts[j]);
      if (c.shaped()) report.pairs.push_back(PartitionConnection{parts[i], parts[j], c});
    }
  }
  if (report.pairs.empty()) {
    return invalid("nothing to shape: every pair of partitions is allowed (give connections or a default)");
  }
  if (params.dry_run) {
    event("planned", "", ok_status());
    return report;
  }

  Status applied = ctx.repartition(params.plan);
  event("applied", "", applied);
  if (!applied.ok()) return applied.error();
  if (!params.duration) return report;

  const auto end = clock.now() + *params.duration;
  while (clock.now() < end) {
    if (cancelled()) {
      report.cancelled = true;
      break;
    }
    auto left = std::chrono::duration_cast<milliseconds>(end - clock.now());
    clock.sleep_for(std::min(left, modules::kPollStep));
  }
  Status healed = ctx.repartition(NetworkPartitioning{});
  event("healed", report.cancelled ? "cancelled" : "duration", healed);
  if (!healed.ok()) return healed.error();
  return report;
}

}  // namespace modhost::partition
