#include "netshaper/config.hpp"

#include <boost/json.hpp>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <set>
#include <sstream>

namespace modhost::netshaper {

namespace json = boost::json;

namespace {

// A value as the user wrote it, near enough: 1.5, not Boost's 1.5E0.
std::string show(const json::value& v) {
  if (!v.is_double()) return json::serialize(v);
  std::ostringstream out;
  out << v.get_double();
  return out.str();
}

// Parsing stops at the first error; `error` holds it.
struct Reader {
  std::string error;

  bool fail(const std::string& where, const std::string& what) {
    error = where + ": " + what;
    return false;
  }

  const json::object* object(const json::value& v, const std::string& where) {
    if (const auto* o = v.if_object()) return o;
    fail(where, "must be an object");
    return nullptr;
  }

  bool only_keys(const json::object& o, const std::string& where,
                 std::initializer_list<std::string_view> keys) {
    for (const auto& kv : o) {
      bool known = false;
      for (auto k : keys) known = known || kv.key() == k;
      if (!known) {
        std::string list;
        for (auto k : keys) list += (list.empty() ? "" : ", ") + std::string(k);
        return fail(where, "unknown key '" + std::string(kv.key()) + "' (known: " + list + ")");
      }
    }
    return true;
  }

  // An integer in [lo, hi]; `required` or else left as it is.
  bool integer(const json::object& o, std::string_view key, const std::string& where, std::int64_t lo,
               std::int64_t hi, bool required, std::int64_t& out) {
    const json::value* v = o.if_contains(key);
    std::string at = where.empty() ? std::string(key) : where + "." + std::string(key);
    if (!v) return required ? fail(at, "missing") : true;
    std::int64_t x = 0;
    if (v->is_int64()) {
      x = v->get_int64();
    } else if (v->is_uint64()) {
      return fail(at, "must be at most " + std::to_string(hi) + ", got " + std::to_string(v->get_uint64()));
    } else {
      return fail(at, "must be an integer, got " + show(*v));
    }
    if (x < lo || x > hi) {
      return fail(at, "must be between " + std::to_string(lo) + " and " + std::to_string(hi) + ", got " +
                          std::to_string(x));
    }
    out = x;
    return true;
  }

  bool unsigned64(const json::object& o, std::string_view key, bool required, std::uint64_t& out) {
    const json::value* v = o.if_contains(key);
    std::string at(key);
    if (!v) return required ? fail(at, "missing") : true;
    if (v->is_uint64()) {
      out = v->get_uint64();
    } else if (v->is_int64() && v->get_int64() >= 0) {
      out = static_cast<std::uint64_t>(v->get_int64());
    } else if (v->is_int64()) {
      return fail(at, "must not be negative, got " + std::to_string(v->get_int64()));
    } else {
      return fail(at, "must be an integer, got " + show(*v));
    }
    return true;
  }

  // A percentage: any number in [0, 100].
  bool percent(const json::object& o, std::string_view key, const std::string& where, double& out) {
    const json::value* v = o.if_contains(key);
    std::string at = where + "." + std::string(key);
    if (!v) return true;
    if (!v->is_number()) return fail(at, "must be a number, got " + show(*v));
    double x = v->to_number<double>();
    if (!(x >= 0 && x <= 100)) return fail(at, "must be between 0 and 100, got " + show(*v));
    out = x;
    return true;
  }

  const json::array* array(const json::object& o, std::string_view key, const std::string& where) {
    const json::value* v = o.if_contains(key);
    std::string at = where.empty() ? std::string(key) : where + "." + std::string(key);
    if (!v) {
      fail(at, "missing");
      return nullptr;
    }
    if (const auto* a = v->if_array()) return a;
    fail(at, "must be an array");
    return nullptr;
  }

  bool queue(const json::value& v, const std::string& where, QueueConfig& q) {
    const auto* o = object(v, where);
    if (!o ||
        !only_keys(*o, where, {"num", "delay_us", "jitter_us", "correlation", "distribution", "loss"})) {
      return false;
    }
    std::int64_t num = 0;
    if (!integer(*o, "num", where, 0, 65535, true, num)) return false;
    q.num = static_cast<std::uint16_t>(num);
    Profile& p = q.profile;
    if (!integer(*o, "delay_us", where, 0, kMaxDelayUs, false, p.delay_us)) return false;
    if (!integer(*o, "jitter_us", where, 0, kMaxDelayUs, false, p.jitter_us)) return false;
    if (!percent(*o, "correlation", where, p.correlation_percent)) return false;
    if (!percent(*o, "loss", where, p.loss_percent)) return false;
    if (const json::value* d = o->if_contains("distribution")) {
      const json::string* s = d->if_string();
      if (s && *s == "uniform") {
        p.distribution = Distribution::uniform;
      } else if (s && *s == "normal") {
        p.distribution = Distribution::normal;
      } else {
        return fail(where + ".distribution",
                    "unknown distribution " + show(*d) + " (known: \"uniform\", \"normal\")");
      }
    }
    return true;
  }

  bool space(const json::value& v, const std::string& where, NamespaceConfig& ns) {
    const auto* o = object(v, where);
    if (!o || !only_keys(*o, where, {"pid", "queues"})) return false;
    std::int64_t pid = 0;
    if (!integer(*o, "pid", where, 1, 0x7fffffff, true, pid)) return false;
    ns.pid = static_cast<int>(pid);
    const auto* queues = array(*o, "queues", where);
    if (!queues) return false;
    std::set<std::uint16_t> seen;
    for (std::size_t i = 0; i < queues->size(); ++i) {
      std::string at = where + ".queues[" + std::to_string(i) + "]";
      QueueConfig q;
      if (!queue((*queues)[i], at, q)) return false;
      if (!seen.insert(q.num).second) return fail(at + ".num", "queue " + std::to_string(q.num) + " twice");
      ns.queues.push_back(q);
    }
    return true;
  }

  bool config(const json::value& v, Config& c) {
    const auto* o = v.if_object();
    if (!o) return fail("config", "must be a JSON object");
    if (!only_keys(*o, "config", {"generation", "seed", "namespaces"})) return false;
    if (!unsigned64(*o, "generation", true, c.generation)) return false;
    std::uint64_t seed = 0;
    if (o->contains("seed")) {
      if (!unsigned64(*o, "seed", true, seed)) return false;
      c.seed = seed;
    }
    const auto* spaces = array(*o, "namespaces", "");
    if (!spaces) return false;
    std::set<int> pids;
    for (std::size_t i = 0; i < spaces->size(); ++i) {
      std::string at = "namespaces[" + std::to_string(i) + "]";
      NamespaceConfig ns;
      if (!space((*spaces)[i], at, ns)) return false;
      if (!pids.insert(ns.pid).second) return fail(at + ".pid", "pid " + std::to_string(ns.pid) + " twice");
      c.namespaces.push_back(std::move(ns));
    }
    return true;
  }
};

// "line L column C" of byte `offset` in `text`.
std::string position(std::string_view text, std::size_t offset) {
  std::size_t line = 1, column = 1;
  for (std::size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return "line " + std::to_string(line) + " column " + std::to_string(column);
}

}  // namespace

ConfigResult parse_config(std::string_view text) {
  ConfigResult r;
  json::parser p;
  boost::system::error_code ec;
  std::size_t used = p.write_some(text.data(), text.size(), ec);
  while (!ec && used < text.size() && std::isspace(static_cast<unsigned char>(text[used]))) ++used;
  if (!ec && used < text.size()) ec = json::error::extra_data;
  if (ec) {
    r.error = "not valid JSON at " + position(text, used) + ": " + ec.message();
    return r;
  }
  Reader reader;
  Config c;
  if (!reader.config(p.release(), c)) {
    r.error = reader.error;
    return r;
  }
  r.config = std::move(c);
  return r;
}

ConfigResult load_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {std::nullopt, path + ": cannot open: " + std::strerror(errno)};
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return {std::nullopt, path + ": cannot read: " + std::strerror(errno)};
  ConfigResult r = parse_config(ss.str());
  if (!r.config) r.error = path + ": " + r.error;
  return r;
}

}  // namespace modhost::netshaper
