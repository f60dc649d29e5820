// The chaos module's logic: params, target selection, schedule, report.
#include "chaos.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <charconv>
#include <cmath>
#include <csignal>
#include <ctime>
#include <limits>
#include <thread>

namespace modhost::chaos {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;
using SteadyTime = std::chrono::steady_clock::time_point;

constexpr double kMaxSeconds = 365.0 * 24 * 3600;  // one year: keeps every duration far from overflow
constexpr const char* kLabelProtected = "io.modhost.protected";
constexpr const char* kLabelKind = "io.modhost.kind";

Error invalid(std::string message) { return Error(ErrorCode::invalid_argument, std::move(message)); }

std::string join(const std::vector<std::string>& items, std::string_view sep = ", ") {
  std::string out;
  for (const auto& s : items) {
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

// Whether `action` can apply to a service in state `s`.
bool applies(Action action, ServiceStatus s) noexcept {
  switch (action) {
    case Action::kill:
    case Action::stop:
    case Action::pause:
      return s == ServiceStatus::running;
    case Action::restart:
      return s != ServiceStatus::paused;
    case Action::remove:
      return true;
  }
  return false;
}

// A JSON number as seconds in [0, kMaxSeconds].
Result<milliseconds> seconds_value(const json::value& v, std::string_view key) {
  double s = 0;
  if (v.is_int64())
    s = static_cast<double>(v.get_int64());
  else if (v.is_uint64())
    s = static_cast<double>(v.get_uint64());
  else if (v.is_double())
    s = v.get_double();
  else
    return invalid("'" + std::string(key) + "' must be a number of seconds");
  if (!std::isfinite(s) || s < 0) return invalid("'" + std::string(key) + "' must not be negative");
  if (s > kMaxSeconds) return invalid("'" + std::string(key) + "' must be at most 31536000 (one year)");
  return milliseconds(std::llround(s * 1000.0));
}

// A JSON integer in [min, max].
Result<std::uint64_t> integer_value(const json::value& v, std::string_view key, std::uint64_t min,
                                    std::uint64_t max) {
  std::string range = "an integer >= " + std::to_string(min);
  if (max != std::numeric_limits<std::uint64_t>::max()) range += " and <= " + std::to_string(max);
  std::uint64_t n = 0;
  if (v.is_uint64()) {
    n = v.get_uint64();
  } else if (v.is_int64() && v.get_int64() >= 0) {
    n = static_cast<std::uint64_t>(v.get_int64());
  } else if (v.is_double() && v.get_double() >= 0 && v.get_double() < 1e15 &&
             std::floor(v.get_double()) == v.get_double()) {
    n = static_cast<std::uint64_t>(v.get_double());
  } else {
    return invalid("'" + std::string(key) + "' must be " + range);
  }
  if (n < min || n > max) return invalid("'" + std::string(key) + "' must be " + range);
  return n;
}

struct SignalName {
  const char* name;
  int number;
};
constexpr SignalName kSignals[] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},     {"QUIT", SIGQUIT}, {"ILL", SIGILL},   {"TRAP", SIGTRAP},
    {"ABRT", SIGABRT}, {"BUS", SIGBUS},     {"FPE", SIGFPE},   {"KILL", SIGKILL}, {"USR1", SIGUSR1},
    {"SEGV", SIGSEGV}, {"USR2", SIGUSR2},   {"PIPE", SIGPIPE}, {"ALRM", SIGALRM}, {"TERM", SIGTERM},
    {"CHLD", SIGCHLD}, {"CONT", SIGCONT},   {"STOP", SIGSTOP}, {"TSTP", SIGTSTP}, {"TTIN", SIGTTIN},
    {"TTOU", SIGTTOU}, {"URG", SIGURG},     {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ}, {"VTALRM", SIGVTALRM},
    {"PROF", SIGPROF}, {"WINCH", SIGWINCH}, {"IO", SIGIO},     {"PWR", SIGPWR},   {"SYS", SIGSYS},
};

}  // namespace

std::string_view to_string(Action action) noexcept {
  switch (action) {
    case Action::kill:
      return "kill";
    case Action::stop:
      return "stop";
    case Action::pause:
      return "pause";
    case Action::restart:
      return "restart";
    case Action::remove:
      return "remove";
  }
  return "unknown";
}

const std::vector<std::string>& known_keys() {
  static const std::vector<std::string> keys = {
      "action", "signal",     "grace_seconds",    "pause_seconds",    "services", "regex", "labels",
      "count",  "percentage", "interval_seconds", "duration_seconds", "repeat",   "seed",  "dry_run"};
  return keys;
}

std::optional<int> parse_signal(std::string_view text) {
  std::string upper;
  for (char c : text) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  std::string_view name = upper;
  if (name.substr(0, 3) == "SIG") name.remove_prefix(3);
  for (const auto& s : kSignals) {
    if (name == s.name) return s.number;
  }
  int n = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec == std::errc() && ptr == text.data() + text.size() && n >= 1 && n <= 64) return n;
  return std::nullopt;
}

Result<Params> parse_params(std::string_view text) {
  json::error_code ec;
  json::value root = json::parse(text, ec);
  if (ec || !root.is_object()) {
    return invalid(
        "chaos params must be a JSON object, e.g. {\"action\":\"kill\",\"services\":[\"db\"]}; got " +
        (text.empty() ? std::string("nothing") : "'" + std::string(text.substr(0, 80)) + "'"));
  }
  const json::object& o = root.get_object();
  for (const auto& [key, value] : o) {
    const auto& keys = known_keys();
    if (std::find(keys.begin(), keys.end(), std::string_view(key)) == keys.end()) {
      return invalid("unknown chaos param '" + std::string(key) + "': known params are " + join(keys));
    }
  }

  Params p;
  const json::value* action = o.if_contains("action");
  if (action == nullptr) return invalid("'action' is required: kill, stop, pause, restart or remove");
  const json::string* action_name = action->if_string();
  static constexpr Action kActions[] = {Action::kill, Action::stop, Action::pause, Action::restart,
                                        Action::remove};
  bool found = false;
  for (Action a : kActions) {
    if (action_name != nullptr && *action_name == to_string(a)) {
      p.action = a;
      found = true;
    }
  }
  if (!found) {
    return invalid("unknown action " + json::serialize(*action) +
                   ": use kill, stop, pause, restart or remove");
  }

  auto only_for = [&](const char* key, Action a) -> Status {
    if (o.contains(key) && p.action != a) {
      return invalid("'" + std::string(key) + "' applies only to action " + std::string(to_string(a)));
    }
    return ok_status();
  };
  MODHOST_TRY(only_for("signal", Action::kill));
  MODHOST_TRY(only_for("grace_seconds", Action::stop));
  MODHOST_TRY(only_for("pause_seconds", Action::pause));

  if (const json::value* v = o.if_contains("signal")) {
    std::optional<int> sig;
    if (const json::string* s = v->if_string())
      sig = parse_signal(*s);
    else if (v->is_int64() && v->get_int64() >= 1 && v->get_int64() <= 64)
      sig = static_cast<int>(v->get_int64());
    if (!sig) return invalid("unknown signal " + json::serialize(*v) + ": use e.g. SIGKILL, TERM or 9");
    p.signal = *sig;
  }
  if (const json::value* v = o.if_contains("grace_seconds")) {
    MODHOST_ASSIGN_OR_RETURN(std::uint64_t g, integer_value(*v, "grace_seconds", 0, 3600));
    p.grace_seconds = static_cast<int>(g);
  }
  if (const json::value* v = o.if_contains("pause_seconds")) {
    MODHOST_ASSIGN_OR_RETURN(p.pause, seconds_value(*v, "pause_seconds"));
  }

  // Targets.
  if (const json::value* v = o.if_contains("services")) {
    const json::array* arr = v->if_array();
    if (arr == nullptr || arr->empty())
      return invalid("'services' must be a non-empty list of service names");
    for (const auto& e : *arr) {
      const json::string* s = e.if_string();
      if (s == nullptr || s->empty()) return invalid("'services' must be a non-empty list of service names");
      p.services.emplace_back(*s);
    }
    std::sort(p.services.begin(), p.services.end());
    p.services.erase(std::unique(p.services.begin(), p.services.end()), p.services.end());
  }
  if (const json::value* v = o.if_contains("regex")) {
    const json::string* s = v->if_string();
    if (s == nullptr || s->empty()) return invalid("'regex' must be a non-empty string");
    p.regex_text = std::string(*s);
    try {
      p.regex.emplace(p.regex_text, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      return invalid("invalid regex '" + p.regex_text + "': " + e.what());
    }
  }
  if (const json::value* v = o.if_contains("labels")) {
    const json::object* labels = v->if_object();
    if (labels == nullptr || labels->empty()) {
      return invalid("'labels' must be a non-empty object of label names to values");
    }
    for (const auto& [k, lv] : *labels) {
      const json::string* s = lv.if_string();
      if (s == nullptr) return invalid("label '" + std::string(k) + "' must have a string value");
      p.labels[std::string(k)] = std::string(*s);
    }
  }
  if (p.services.empty() && !p.regex && p.labels.empty()) {
    return invalid(
        "no targets: give 'services', 'regex' and/or 'labels' (e.g. \"regex\": \".*\" for every service)");
  }
  if (o.contains("count") && o.contains("percentage")) {
    return invalid("'count' and 'percentage' exclude each other: give one");
  }
  if (const json::value* v = o.if_contains("count")) {
    MODHOST_ASSIGN_OR_RETURN(p.count,
                             integer_value(*v, "count", 1, std::numeric_limits<std::uint64_t>::max()));
  }
  if (const json::value* v = o.if_contains("percentage")) {
    double pct = 0;
    if (v->is_number()) pct = v->to_number<double>();
    if (!v->is_number() || !(pct > 0 && pct <= 100)) {
      return invalid("'percentage' must be a number with 0 < percentage <= 100");
    }
    p.percentage = pct;
  }

  // Schedule.
  if (const json::value* v = o.if_contains("interval_seconds")) {
    MODHOST_ASSIGN_OR_RETURN(p.interval, seconds_value(*v, "interval_seconds"));
    if (p.interval->count() <= 0) return invalid("'interval_seconds' must be greater than 0");
  }
  if (const json::value* v = o.if_contains("duration_seconds")) {
    MODHOST_ASSIGN_OR_RETURN(p.duration, seconds_value(*v, "duration_seconds"));
  }
  if (const json::value* v = o.if_contains("repeat")) {
    MODHOST_ASSIGN_OR_RETURN(p.repeat,
                             integer_value(*v, "repeat", 1, std::numeric_limits<std::uint64_t>::max()));
  }
  if (p.interval && !p.duration && !p.repeat) {
    return invalid("'interval_seconds' needs 'duration_seconds' and/or 'repeat', or the run never ends");
  }
  if (p.repeat && *p.repeat > 1 && !p.interval) {
    return invalid("'repeat' needs 'interval_seconds': the time between rounds");
  }

  if (const json::value* v = o.if_contains("seed")) {
    if (v->is_uint64())
      p.seed = v->get_uint64();
    else if (v->is_int64() && v->get_int64() >= 0)
      p.seed = static_cast<std::uint64_t>(v->get_int64());
    else
      return invalid("'seed' must be an unsigned 64-bit integer");
  }
  if (const json::value* v = o.if_contains("dry_run")) {
    if (!v->is_bool()) return invalid("'dry_run' must be true or false");
    p.dry_run = v->get_bool();
  }
  return p;
}

std::size_t percentage_count(double percentage, std::size_t n) noexcept {
  if (n == 0) return 0;
  // The epsilon keeps 10% of 30 at 3 although 0.1 * 30 is not exact.
  double exact = percentage * static_cast<double>(n) / 100.0;
  auto k = static_cast<std::size_t>(std::ceil(exact - 1e-9));
  return std::clamp<std::size_t>(k, 1, n);
}

std::uint64_t uniform_below(std::mt19937_64& rng, std::uint64_t bound) {
  // Rejects the low values that would make the modulo uneven.
  const std::uint64_t threshold = (std::numeric_limits<std::uint64_t>::max() - bound + 1) % bound;
  for (;;) {
    std::uint64_t r = rng();
    if (r >= threshold) return r % bound;
  }
}

bool untouchable(const ServiceInfo& service) {
  auto label = [&](const char* key) -> std::string_view {
    auto it = service.labels.find(key);
    return it == service.labels.end() ? std::string_view() : std::string_view(it->second);
  };
  return label(kLabelProtected) == "true" || label(kLabelKind) == "module";
}

std::string describe_targets(const Params& p) {
  std::vector<std::string> parts;
  if (!p.services.empty()) parts.push_back("services [" + join(p.services) + "]");
  if (p.regex) parts.push_back("regex '" + p.regex_text + "'");
  if (!p.labels.empty()) {
    std::vector<std::string> kv;
    for (const auto& [k, v] : p.labels) kv.push_back(k + "=" + v);
    parts.push_back("labels {" + join(kv) + "}");
  }
  return join(parts);
}

Matches match_services(const Params& p, const std::vector<ServiceInfo>& services,
                       const std::set<std::string>& held) {
  Matches m;
  for (const ServiceInfo& s : services) {
    if (!p.services.empty() && !std::binary_search(p.services.begin(), p.services.end(), s.name)) continue;
    if (p.regex && !std::regex_search(s.name, *p.regex)) continue;
    bool labels_match = std::all_of(p.labels.begin(), p.labels.end(), [&](const auto& kv) {
      auto it = s.labels.find(kv.first);
      return it != s.labels.end() && it->second == kv.second;
    });
    if (!labels_match) continue;
    if (untouchable(s))
      m.untouchable.push_back(s.name);
    else if (held.count(s.name) != 0)
      m.held.push_back(s.name);
    else if (!applies(p.action, s.status))
      m.wrong_state.push_back(s.name + " (" + std::string(modhost::to_string(s.status)) + ")");
    else
      m.eligible.push_back(s.name);
  }
  for (auto* v : {&m.eligible, &m.untouchable, &m.held, &m.wrong_state}) std::sort(v->begin(), v->end());
  return m;
}

Status check_named_services(const Params& p, const std::vector<ServiceInfo>& services) {
  std::vector<std::string> names;
  for (const auto& s : services) names.push_back(s.name);
  std::sort(names.begin(), names.end());
  for (const auto& wanted : p.services) {
    if (!std::binary_search(names.begin(), names.end(), wanted)) {
      return invalid("unknown service '" + wanted + "' in 'services': the enclave has " +
                     (names.empty() ? std::string("no services") : join(names)));
    }
  }
  return ok_status();
}

std::string no_match_message(const Params& p, const Matches& m) {
  std::string msg = "no service matches the targets: " + describe_targets(p);
  std::vector<std::string> why;
  if (!m.untouchable.empty()) why.push_back("protected: " + join(m.untouchable));
  if (!m.held.empty()) why.push_back("held by this run: " + join(m.held));
  if (!m.wrong_state.empty()) {
    why.push_back(std::string(p.action == Action::restart ? "paused" : "not running") + ": " +
                  join(m.wrong_state));
  }
  if (!why.empty()) msg += " (" + join(why, "; ") + ")";
  return msg;
}

std::vector<std::string> choose_targets(const Params& p, std::vector<std::string> eligible,
                                        std::mt19937_64& rng) {
  std::size_t k = eligible.size();
  if (p.count)
    k = static_cast<std::size_t>(std::min<std::uint64_t>(*p.count, eligible.size()));
  else if (p.percentage)
    k = percentage_count(*p.percentage, eligible.size());
  else
    return eligible;
  // A partial Fisher-Yates shuffle: the first k are the choice, in draw order.
  for (std::size_t i = 0; i < k; ++i) {
    std::size_t j = i + static_cast<std::size_t>(uniform_below(rng, eligible.size() - i));
    std::swap(eligible[i], eligible[j]);
  }
  eligible.resize(k);
  return eligible;
}

std::string to_json(const Report& r) {
  json::array actions;
  for (const auto& a : r.actions) {
    json::object o;
    o["time"] = format_time(a.time);
    o["round"] = a.round;
    o["action"] = to_string(a.action);
    o["service"] = a.service;
    if (a.signal) o["signal"] = *a.signal;
    if (a.grace_seconds) o["graceSeconds"] = *a.grace_seconds;
    if (a.pause) {
      // Whole seconds print as integers (Boost.JSON writes any double as 1.5E0).
      if (a.pause->count() % 1000 == 0)
        o["pauseSeconds"] = a.pause->count() / 1000;
      else
        o["pauseSeconds"] = static_cast<double>(a.pause->count()) / 1000.0;
    }
    o["ok"] = a.ok;
    o["error"] = a.error;
    actions.push_back(std::move(o));
  }
  json::array restored;
  for (const auto& x : r.restored) {
    restored.push_back(json::object{{"time", format_time(x.time)},
                                    {"round", x.round},
                                    {"action", x.action},
                                    {"service", x.service},
                                    {"ok", x.ok},
                                    {"error", x.error}});
  }
  json::object out;
  out["seed"] = r.seed;
  out["dryRun"] = r.dry_run;
  out["cancelled"] = r.cancelled;
  out["rounds"] = r.rounds;
  out["actions"] = std::move(actions);
  out["restored"] = std::move(restored);
  return json::serialize(out);
}

namespace {

// A dry run's clock: time passes only when it "sleeps", so the report shows
// the planned times without waiting.
class VirtualClock final : public Clock {
 public:
  VirtualClock(SteadyTime start, std::chrono::system_clock::time_point wall)
      : start_(start), now_(start), wall_(wall) {}
  SteadyTime now() override { return now_; }
  std::chrono::system_clock::time_point wall_now() override {
    return wall_ + std::chrono::duration_cast<std::chrono::system_clock::duration>(now_ - start_);
  }
  void sleep_for(milliseconds d) override { now_ += d; }

 private:
  SteadyTime start_;
  SteadyTime now_;
  std::chrono::system_clock::time_point wall_;
};

// What this run paused or stopped and has not restored yet.
struct Hold {
  std::string service;
  Action action;  // pause or stop
  std::uint64_t round;
  std::optional<SteadyTime> until;  // pause: when it is released
};

class Run {
 public:
  Run(EnclaveContext& ctx, const Params& p, Clock& clock, const std::function<bool()>& cancelled)
      : ctx_(ctx), p_(p), clock_(clock), cancelled_(cancelled) {}

  Result<Report> go() {
    report_.dry_run = p_.dry_run;
    if (p_.seed) {
      report_.seed = *p_.seed;
    } else {
      std::random_device rd;
      report_.seed = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    }
    rng_.seed(report_.seed);

    // Everything that can be wrong with the input is found before any change.
    auto listed = ctx_.list_services();
    if (!listed.ok()) return std::move(listed).error().context("failed to list the enclave's services");
    MODHOST_TRY(check_named_services(p_, listed.value()));
    Matches first = match_services(p_, listed.value(), {});
    if (first.eligible.empty()) return invalid(no_match_message(p_, first));
    simulated_ = listed.value();

    ctx_.log(LogLevel::info, "chaos: " + std::string(to_string(p_.action)) + " on " + describe_targets(p_) +
                                 ", seed " + std::to_string(report_.seed) + (p_.dry_run ? " (dry run)" : ""));
    const SteadyTime start = clock_.now();
    std::optional<std::vector<ServiceInfo>> listing = std::move(listed).value();
    for (std::uint64_t round = 1;; ++round) {
      if (cancelled_()) break;
      if (!listing) listing = list();
      if (listing) do_round(round, *listing);
      listing.reset();
      report_.rounds = round;
      if (!p_.interval) break;
      if (p_.repeat && round >= *p_.repeat) break;
      SteadyTime next = start + *p_.interval * static_cast<std::int64_t>(round);
      if (p_.duration && next >= start + *p_.duration) break;
      if (!wait_until(next)) break;
    }

    // The run lasts its duration; without one, until the last pause is due.
    SteadyTime end = clock_.now();
    if (p_.duration) {
      end = start + *p_.duration;
    } else {
      for (const Hold& h : holds_) {
        if (h.until) end = std::max(end, *h.until);
      }
    }
    if (!cancelled_()) wait_until(end);
    while (!holds_.empty()) release(holds_.begin());
    report_.cancelled = cancelled_();
    if (report_.cancelled) ctx_.log(LogLevel::warn, "chaos: cancelled; everything held was restored");
    return report_;
  }

 private:
  // The enclave's services for a later round; in a dry run, the first
  // listing with the planned changes applied.
  std::optional<std::vector<ServiceInfo>> list() {
    if (p_.dry_run) return simulated_;
    auto listed = ctx_.list_services();
    if (!listed.ok()) {
      ctx_.log(LogLevel::warn, "chaos: skipping a round: cannot list services: " + listed.error().message());
      return std::nullopt;
    }
    return std::move(listed).value();
  }

  void simulate(const std::string& service, std::optional<ServiceStatus> status) {
    auto it =
        std::find_if(simulated_.begin(), simulated_.end(), [&](const auto& s) { return s.name == service; });
    if (it == simulated_.end()) return;
    if (status)
      it->status = *status;
    else
      simulated_.erase(it);
  }

  std::set<std::string> held() const {
    std::set<std::string> out;
    for (const Hold& h : holds_) out.insert(h.service);
    return out;
  }

  void do_round(std::uint64_t round, const std::vector<ServiceInfo>& services) {
    Matches m = match_services(p_, services, held());
    if (m.eligible.empty()) {
      ctx_.log(LogLevel::info, "chaos: round " + std::to_string(round) + ": " + no_match_message(p_, m));
      return;
    }
    for (const std::string& name : choose_targets(p_, std::move(m.eligible), rng_)) {
      if (cancelled_()) return;
      act(round, name);
    }
  }

  void act(std::uint64_t round, const std::string& name) {
    ActionRecord rec;
    rec.time = clock_.wall_now();
    rec.round = round;
    rec.action = p_.action;
    rec.service = name;
    Status st = ok_status();
    std::optional<ServiceStatus> after;  // for the dry run's simulation; nullopt: gone
    switch (p_.action) {
      case Action::kill:
        rec.signal = p_.signal;
        after = ServiceStatus::exited;
        if (!p_.dry_run) st = ctx_.kill_service(name, p_.signal);
        break;
      case Action::stop:
        rec.grace_seconds = p_.grace_seconds;
        after = ServiceStatus::stopped;
        if (!p_.dry_run) st = ctx_.stop_service(name, p_.grace_seconds);
        break;
      case Action::pause:
        rec.pause = p_.pause;
        after = ServiceStatus::paused;
        if (!p_.dry_run) st = ctx_.pause_service(name);
        break;
      case Action::restart:
        after = ServiceStatus::running;
        if (!p_.dry_run) st = ctx_.restart_service(name);
        break;
      case Action::remove:
        if (!p_.dry_run) st = ctx_.remove_service(name);
        break;
    }
    rec.ok = st.ok();
    if (!st.ok()) rec.error = st.error().message();
    ctx_.log(rec.ok ? LogLevel::info : LogLevel::warn,
             "chaos: round " + std::to_string(round) + ": " + std::string(to_string(p_.action)) + " '" +
                 name + "'" + (p_.dry_run ? " (dry run)" : "") + (rec.ok ? ": ok" : ": " + rec.error));
    report_.actions.push_back(std::move(rec));
    if (!st.ok()) return;
    if (p_.dry_run) simulate(name, after);
    if (p_.action == Action::pause) holds_.push_back({name, Action::pause, round, clock_.now() + p_.pause});
    if (p_.action == Action::stop) holds_.push_back({name, Action::stop, round, std::nullopt});
  }

  // Unpauses or starts a held service and forgets it.
  void release(std::vector<Hold>::iterator it) {
    Hold h = *it;
    holds_.erase(it);
    RestoreRecord rec;
    rec.time = clock_.wall_now();
    rec.round = h.round;
    rec.service = h.service;
    rec.action = h.action == Action::pause ? "unpause" : "start";
    Status st = ok_status();
    if (!p_.dry_run)
      st = h.action == Action::pause ? ctx_.unpause_service(h.service) : ctx_.start_service(h.service);
    rec.ok = st.ok();
    if (!st.ok()) rec.error = st.error().message();
    ctx_.log(rec.ok ? LogLevel::info : LogLevel::error,
             "chaos: " + rec.action + " '" + h.service + "'" + (rec.ok ? ": ok" : ": " + rec.error));
    if (p_.dry_run) simulate(h.service, ServiceStatus::running);
    report_.restored.push_back(std::move(rec));
  }

  // Waits until `target`, releasing pauses as they fall due. False when
  // cancelled first.
  bool wait_until(SteadyTime target) {
    for (;;) {
      SteadyTime now = clock_.now();
      for (auto it = holds_.begin(); it != holds_.end();) {
        if (it->until && *it->until <= now) {
          auto index = it - holds_.begin();
          release(it);
          it = holds_.begin() + index;
        } else {
          ++it;
        }
      }
      if (now >= target) return true;
      if (cancelled_()) return false;
      SteadyTime wake = target;
      for (const Hold& h : holds_) {
        if (h.until) wake = std::min(wake, *h.until);
      }
      auto step = std::chrono::ceil<milliseconds>(wake - now);
      if (!p_.dry_run) step = std::min(step, kPollStep);
      clock_.sleep_for(std::max(step, milliseconds(1)));
    }
  }

  EnclaveContext& ctx_;
  const Params& p_;
  Clock& clock_;
  const std::function<bool()>& cancelled_;
  std::mt19937_64 rng_;
  Report report_;
  std::vector<Hold> holds_;
  std::vector<ServiceInfo> simulated_;
};

}  // namespace

Result<Report> run(EnclaveContext& ctx, const Params& params, Clock& clock,
                   const std::function<bool()>& cancelled) {
  if (params.dry_run) {
    VirtualClock virtual_clock(clock.now(), clock.wall_now());
    std::function<bool()> never = [] { return false; };
    return Run(ctx, params, virtual_clock, never).go();
  }
  return Run(ctx, params, clock, cancelled).go();
}

}  // namespace modhost::chaos
