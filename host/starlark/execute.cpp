// Executing a validated plan, instruction by instruction, as `kurtosis run`
// does: each instruction's references resolved just before it runs, one
// event for it and one for its result, the first failure stops the run.
#include <algorithm>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "backends/image/image.hpp"
#include "backends/readiness.hpp"
#include "starlark/internal.hpp"
#include "starlark/rerun.hpp"
#include "starlark/run.hpp"
#include "starlark/values.hpp"

namespace modhost::starlark {
namespace {

using namespace detail;
using Clock = std::chrono::steady_clock;

Result<std::string> base64_decode(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  out.reserve(in.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=' || c == '\n' || c == '\r') continue;
    const int v = value(c);
    if (v < 0) return Error(ErrorCode::invalid_argument, "an uploaded file's content is not base64");
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

std::string first_line(std::string_view s, std::size_t max = 200) {
  std::string t(s.substr(0, std::min(s.find('\n'), max)));
  if (t.size() < s.size()) t += "...";
  return t;
}

std::string codes_text(const std::vector<std::int64_t>& codes) {
  std::string s = "[";
  for (std::size_t k = 0; k < codes.size(); ++k) s += (k ? ", " : "") + std::to_string(codes[k]);
  return s + "]";
}

// Which subnetwork each service is in, and how they connect: replayed over
// the whole plan, applied whenever it changes what is in force.
struct NetState {
  std::map<std::string, std::string> subnetwork_of;
  std::map<std::pair<std::string, std::string>, Connection> pairs;
  Connection default_connection;
  bool shaped = false;  // some connection instruction is in the plan

  static std::pair<std::string, std::string> key(std::string a, std::string b) {
    if (b < a) std::swap(a, b);
    return {a, b};
  }
  NetworkPartitioning partitioning() const {
    NetworkPartitioning p;
    for (const auto& [service, sub] : subnetwork_of)
      p.partitions[sub.empty() ? "default" : sub].push_back(service);
    for (const auto& [k, c] : pairs) {
      if (p.partitions.count(k.first) && p.partitions.count(k.second)) {
        p.connections.push_back(PartitionConnection{k.first, k.second, c});
      }
    }
    p.default_connection = default_connection;
    return p;
  }
};

class Executor {
 public:
  Executor(const Plan& plan, Target& target, const RunOptions& options, const RunSink& sink,
           const std::function<bool()>& cancelled)
      : plan_(plan), target_(target), options_(options), sink_(sink), cancelled_(cancelled) {}

  Status run(RunReport& report) {
    std::vector<RecordEntry> record =
        options_.skip_applied ? load_record(target_) : std::vector<RecordEntry>();
    MODHOST_ASSIGN_OR_RETURN(EnclaveSnapshot enclave, snapshot(target_));
    std::set<std::string> services, artifacts;
    for (const auto& s : enclave.services) {
      services.insert(s.name);
      auto sub = s.labels.find(kLabelSubnetwork);
      net_.subnetwork_of[s.name] = sub == s.labels.end() ? "" : sub->second;
    }
    for (const auto& a : enclave.artifacts) artifacts.insert(a.name);
    // The prefix an earlier run applied, as long as what it made is still there.
    std::size_t skip = 0;
    while (skip < record.size() && skip < plan_.instructions.size()) {
      const Instruction& i = plan_.instructions[skip];
      if (record[skip].fingerprint != fingerprint_hash(i) || !still_applied(i, services, artifacts)) break;
      ++skip;
    }
    std::vector<Problem> problems = validate(plan_, target_, skip, enclave);
    if (!problems.empty()) {
      std::string message = problems.size() == 1
                                ? "the plan is invalid: "
                                : "the plan has " + std::to_string(problems.size()) + " problems:";
      for (const auto& p : problems) {
        message +=
            (problems.size() == 1 ? "" : "\n  ") + (p.position.empty() ? "" : p.position + ": ") + p.message;
      }
      return Error(ErrorCode::invalid_argument, message);
    }
    report.validated = true;
    report.results.resize(plan_.instructions.size());
    if (options_.dry_run) {
      for (const Instruction& i : plan_.instructions) {
        emit(RunEvent::Kind::instruction, i.index, header(i));
        if (i.index < skip) {
          emit(RunEvent::Kind::skipped, i.index,
               "SKIPPED - This instruction has already been run in this enclave");
          ++report.skipped;
        }
      }
      report.output = plan_.output;
      return ok_status();
    }
    std::vector<RecordEntry> done(record.begin(), record.begin() + static_cast<std::ptrdiff_t>(skip));
    Status failure = ok_status();
    for (const Instruction& i : plan_.instructions) {
      if (cancelled_ && cancelled_()) {
        failure = at(i, ErrorCode::cancelled, "interrupted before plan." + i.kind);
        break;
      }
      emit(RunEvent::Kind::instruction, i.index, header(i));
      if (i.index < skip) {
        replay(i, record[i.index]);
        emit(RunEvent::Kind::skipped, i.index,
             "SKIPPED - This instruction has already been run in this enclave");
        ++report.skipped;
        continue;
      }
      Result<std::string> r = execute(i);
      if (!r.ok()) {
        failure = at(i, r.error().code(), "plan." + i.kind + ": " + r.error().message());
        break;
      }
      report.results[i.index] = r.value();
      emit(RunEvent::Kind::result, i.index, r.value());
      ++report.executed;
      done.push_back(RecordEntry{fingerprint_hash(i), i.kind, futures_.fields_of(i.index)});
    }
    if (report.executed > 0 || done.size() != record.size()) {
      if (Status s = save_record(target_, done); !s.ok()) {
        emit(RunEvent::Kind::progress, 0,
             "warning: cannot record the run for reruns: " + s.error().message());
      }
    }
    if (!failure.ok()) return failure.error();
    auto output = futures_.resolve(plan_.output);
    if (!output.ok()) return output.error();

    report.output = std::move(output).value();
    return ok_status();
  }

 private:
  static std::string header(const Instruction& i) {
    return i.description.empty() ? "> " + i.text : i.description;
  }

  void emit(RunEvent::Kind kind, std::size_t index, std::string text) {
    if (sink_) sink_(RunEvent{kind, index, std::move(text)});
  }

  // An instruction an earlier run applied: its values again, and its effect
  // on the network state.
  void replay(const Instruction& i, const RecordEntry& r) {
    for (const auto& [k, v] : r.values) futures_.set(i.index, std::string(k), v);
    const json::object& a = i.args;
    if (i.kind == "add_service" || i.kind == "get_service") {
      const std::string name = str(a, "name");
      if (auto info = target_.inspect_service(name); info.ok())
        futures_.set(i.index, "ip_address", json::value(info->ip));
      futures_.set(i.index, "hostname", json::value(name));
    }
    if (i.kind == "add_services") {
      if (const json::object* configs = object(a, "configs")) {
        for (const auto& [n, c] : *configs) {
          const std::string name(n);
          if (auto info = target_.inspect_service(name); info.ok()) {
            futures_.set(i.index, name + ".ip_address", json::value(info->ip));
          }
          futures_.set(i.index, name + ".hostname", json::value(name));
        }
      }
    }
    (void)net_change(i, false);
  }

  // The network state after `i`; applies it when `apply` and it matters.
  Status net_change(const Instruction& i, bool apply) {
    const json::object& a = i.args;
    bool changed = false;
    if (i.kind == "set_connection" || i.kind == "remove_connection") {
      net_.shaped = true;
      changed = true;
      const auto subs = strings(a, "subnetworks");
      if (i.kind == "remove_connection") {
        if (subs.size() == 2) net_.pairs.erase(NetState::key(subs[0], subs[1]));
      } else if (const json::object* conn = object(a, "config")) {
        if (subs.size() == 2)
          net_.pairs[NetState::key(subs[0], subs[1])] = connection(*conn);
        else
          net_.default_connection = connection(*conn);
      }
    } else if (i.kind == "add_service") {
      const json::object* config = object(a, "config");
      net_.subnetwork_of[str(a, "name")] = config ? subnetwork(*config) : "";
      changed = net_.shaped;
    } else if (i.kind == "add_services") {
      if (const json::object* configs = object(a, "configs")) {
        for (const auto& [n, c] : *configs) {
          net_.subnetwork_of[std::string(n)] = c.is_object() ? subnetwork(c.get_object()) : "";
        }
      }
      changed = net_.shaped;
    } else if (i.kind == "remove_service") {
      net_.subnetwork_of.erase(str(a, "name"));
      changed = net_.shaped;
    }
    if (!apply || !changed) return ok_status();
    return target_.repartition(net_.partitioning());
  }

  Result<json::object> resolved_args(const Instruction& i) {
    MODHOST_ASSIGN_OR_RETURN(json::value v, futures_.resolve(json::value(i.args)));
    return std::move(v.as_object());
  }

  Result<std::string> execute(const Instruction& i) {
    MODHOST_ASSIGN_OR_RETURN(json::object a, resolved_args(i));
    const std::string& k = i.kind;
    Result<std::string> r = Error(ErrorCode::internal, "unknown instruction");
    if (k == "add_service")
      r = add_service(i, a);
    else if (k == "add_services")
      r = add_services(i, a);
    else if (k == "get_service")
      r = get_service(i, a);
    else if (k == "remove_service")
      r = remove_service(a);
    else if (k == "start_service")
      r = simple(target_.start_service(str(a, "name")), "Service '" + str(a, "name") + "' started");
    else if (k == "stop_service")
      r = simple(target_.stop_service(str(a, "name")), "Service '" + str(a, "name") + "' stopped");
    else if (k == "exec")
      r = exec(i, a);
    else if (k == "request")
      r = request(i, a);
    else if (k == "wait")
      r = wait(i, a);
    else if (k == "verify")
      r = verify(a);
    else if (k == "print")
      r = display(a.contains("msg") ? a.at("msg") : json::value(""));
    else if (k == "upload_files")
      r = upload_files(a);
    else if (k == "render_templates")
      r = render_templates(a);
    else if (k == "store_service_files")
      r = store_service_files(a);
    else if (k == "run_sh")
      r = run_sh(i, a);
    else if (k == "set_connection" || k == "remove_connection")
      r = connection_change(i, a);
    else if (k == "exec_module")
      r = exec_module(i, a);
    if (!r.ok()) return r;
    if (k == "add_service" || k == "add_services" || k == "remove_service") {
      if (Status s = net_change(i, true); !s.ok()) {
        return Error(s.error().code(), r.value() + ", but its network rules failed: " + s.error().message());
      }
    }
    return r;
  }

  static Result<std::string> simple(const Status& s, std::string text) {
    if (!s.ok()) return s.error();
    return text;
  }

  // --- services ---

  Status wait_for_ports(const std::string& name, const json::object& config) {
    for (const PortWait& w : port_waits(config)) {
      ReadinessCheck c;
      c.kind = ReadinessCheck::Kind::tcp;
      c.port = w.port;
      c.interval = std::chrono::milliseconds(100);
      c.timeout = std::chrono::milliseconds(1000);
      c.retries = static_cast<int>(std::max<std::int64_t>(1, w.timeout.count() / 100));
      if (Status s = target_.wait_ready(name, c); !s.ok()) {
        return Error(ErrorCode::timeout, "port '" + w.port + "' of service '" + name +
                                             "' did not open within " + format_duration(w.timeout) + ": " +
                                             s.error().message());
      }
    }
    return ok_status();
  }

  Result<ServiceInfo> add_one(const std::string& name, const json::object& config) {
    MODHOST_ASSIGN_OR_RETURN(ServiceConfig c, service_config(name, config));
    if (auto existing = target_.inspect_service(name); existing.ok()) {
      // A service an earlier run added, with another config now: replaced.
      MODHOST_TRY(target_.remove_service(name));
    }
    MODHOST_ASSIGN_OR_RETURN(ServiceInfo info, target_.add_service(c));
    Status ready = wait_for_ports(name, config);
    if (ready.ok()) {
      if (const json::object* cond = object(config, "ready_conditions")) {
        auto r = wait_until(name, *cond, milliseconds(15 * 60'000));
        if (!r.ok())
          ready =
              Error(r.error().code(), "ready condition of service '" + name + "': " + r.error().message());
      }
    }
    if (!ready.ok()) {
      (void)target_.remove_service(name);  // nothing half-made
      return ready.error();
    }
    return target_.inspect_service(name);
  }

  void service_futures(std::size_t index, const std::string& prefix, const ServiceInfo& info) {
    futures_.set(index, prefix + "ip_address", json::value(info.ip));
    futures_.set(index, prefix + "hostname", json::value(info.name));
  }

  Result<std::string> add_service(const Instruction& i, const json::object& a) {
    const std::string name = str(a, "name");
    const json::object* config = object(a, "config");
    MODHOST_ASSIGN_OR_RETURN(ServiceInfo info, add_one(name, *config));
    service_futures(i.index, "", info);
    return "Service '" + name + "' added with service UUID '" + info.id + "'";
  }

  Result<std::string> add_services(const Instruction& i, const json::object& a) {
    const json::object* configs = object(a, "configs");
    std::vector<std::pair<std::string, const json::object*>> work;
    for (const auto& [n, c] : *configs) work.emplace_back(std::string(n), &c.get_object());
    std::vector<std::optional<Result<ServiceInfo>>> results(work.size());
    std::mutex mutex;
    std::size_t next = 0;
    auto worker = [&] {
      for (;;) {
        std::size_t k;
        {
          std::lock_guard lock(mutex);
          if (next >= work.size()) return;
          k = next++;
        }
        results[k] = add_one(work[k].first, *work[k].second);
      }
    };
    const std::size_t n =
        std::min<std::size_t>(work.size(), static_cast<std::size_t>(std::max(1, options_.parallelism)));
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < n; ++t) threads.emplace_back(worker);
    for (auto& t : threads) t.join();
    std::string failures;
    for (std::size_t k = 0; k < work.size(); ++k) {
      if (!results[k]->ok()) failures += (failures.empty() ? "" : "; ") + results[k]->error().message();
    }
    if (!failures.empty()) {
      // All or nothing, as Kurtosis: the ones that started go again.
      for (std::size_t k = 0; k < work.size(); ++k) {
        if (results[k]->ok()) (void)target_.remove_service(work[k].first);
      }
      return Error(ErrorCode::failed_precondition, failures);
    }
    std::string text = "Successfully added the following '" + std::to_string(work.size()) + "' services:";
    for (std::size_t k = 0; k < work.size(); ++k) {
      const ServiceInfo& info = results[k]->value();
      service_futures(i.index, work[k].first + ".", info);
      text += "\n  Service '" + work[k].first + "' added with UUID '" + info.id + "'";
    }
    return text;
  }

  Result<std::string> get_service(const Instruction& i, const json::object& a) {
    MODHOST_ASSIGN_OR_RETURN(ServiceInfo info, target_.inspect_service(str(a, "name")));
    service_futures(i.index, "", info);
    return "Fetched service '" + info.name + "'";
  }

  Result<std::string> remove_service(const json::object& a) {
    const std::string name = str(a, "name");
    MODHOST_ASSIGN_OR_RETURN(ServiceInfo info, target_.inspect_service(name));
    MODHOST_TRY(target_.remove_service(name));
    return "Service '" + name + "' with service UUID '" + info.id + "' removed";
  }

  // --- recipes ---

  struct RecipeRun {
    json::object fields;  // code, output | body, extract.KEY
    std::string text;
  };

  Result<RecipeRun> run_recipe(const std::string& service, const json::object& recipe, milliseconds timeout) {
    RecipeRun out;
    const std::string type = str(recipe, "type");
    json::value extract_input;
    if (type == "exec") {
      MODHOST_ASSIGN_OR_RETURN(ExecResult r, target_.exec(service, strings(recipe, "command")));
      out.fields["code"] = r.exit_code;
      out.fields["output"] = r.output;
      extract_input = json::value(r.output);
    } else {
      MODHOST_ASSIGN_OR_RETURN(ServiceInfo info, target_.inspect_service(service));
      const std::string port_id = str(recipe, "port_id");
      std::uint16_t host_port = 0;
      for (const auto& p : info.ports) {
        if (p.port.name == port_id) host_port = p.host_port;
      }
      if (host_port == 0) {
        return Error(ErrorCode::failed_precondition, "port '" + port_id + "' of service '" + service +
                                                         "' is not published (is the service running?)");
      }
      backend::HttpRequest req;
      req.method = type == "post" ? "POST" : "GET";
      req.path = str(recipe, "endpoint");
      if (type == "post") {
        req.body = str(recipe, "body");
        req.content_type = str(recipe, "content_type");
        if (req.content_type.empty()) req.content_type = "application/json";
      }
      req.headers = string_map(recipe, "headers");
      MODHOST_ASSIGN_OR_RETURN(auto r, backend::loopback_http_request(host_port, req, timeout));
      out.fields["code"] = r.first;
      out.fields["body"] = r.second;
      if (object(recipe, "extract") && !object(recipe, "extract")->empty()) {
        boost::system::error_code ec;
        extract_input = json::parse(r.second, ec);
        if (ec) {
          return Error(
              ErrorCode::failed_precondition,
              "the response body is not JSON, so nothing can be extracted from it: " + first_line(r.second));
        }
      }
    }
    if (const json::object* extract = object(recipe, "extract")) {
      for (const auto& [k, v] : *extract) {
        MODHOST_ASSIGN_OR_RETURN(Extractor x, Extractor::compile(v.as_string()));
        MODHOST_ASSIGN_OR_RETURN(json::value got, x.apply(extract_input));
        out.fields["extract." + std::string(k)] = std::move(got);
      }
    }
    return out;
  }

  static std::string recipe_text(const json::object& fields) {
    std::string text;
    if (const json::value* body = fields.if_contains("body")) {
      text = "Request had response code '" + display(fields.at("code")) + "' and body \"" + display(*body) +
             "\"";
    } else {
      const std::string output = display(fields.at("output"));
      if (output.empty()) {
        text = "Command returned with exit code '" + display(fields.at("code")) + "' with no output";
      } else if (output.find('\n') != std::string::npos && output.find('\n') + 1 != output.size()) {
        text = "Command returned with exit code '" + display(fields.at("code")) +
               "' and the following output:\n"
               "--------------------\n" +
               output + (output.back() == '\n' ? "" : "\n") + "--------------------";
      } else {
        std::string one = output;
        if (!one.empty() && one.back() == '\n') one.pop_back();
        text = "Command returned with exit code '" + display(fields.at("code")) +
               "' and the following output: " + one;
      }
    }
    bool first = true;
    for (const auto& [k, v] : fields) {
      if (std::string_view(k).rfind("extract.", 0) != 0) continue;
      text += (first ? ", with extracted fields:" : "");
      text += "\n'" + std::string(k) + "': " + display(v);
      first = false;
    }
    return text;
  }

  void set_fields(std::size_t index, const json::object& fields) {
    for (const auto& [k, v] : fields) futures_.set(index, std::string(k), v);
  }

  Status check_code(const json::object& a, const json::object& fields, bool http) {
    if (boolean(a, "skip_code_check")) return ok_status();
    const auto codes = acceptable_codes(a, http);
    const std::int64_t code = fields.at("code").to_number<std::int64_t>();
    if (std::find(codes.begin(), codes.end(), code) != codes.end()) return ok_status();
    if (http) {
      return Error(ErrorCode::module_failed, "Request returned status code '" + std::to_string(code) +
                                                 "' that is not part of the acceptable status codes '" +
                                                 codes_text(codes) +
                                                 "', with body: " + first_line(display(fields.at("body"))));
    }
    return Error(ErrorCode::module_failed, "Exec returned exit code '" + std::to_string(code) +
                                               "' that is not part of the acceptable status codes '" +
                                               codes_text(codes) +
                                               "', with output: " + display(fields.at("output")));
  }

  Result<std::string> exec(const Instruction& i, const json::object& a) {
    MODHOST_ASSIGN_OR_RETURN(RecipeRun r,
                             run_recipe(str(a, "service_name"), *object(a, "recipe"), milliseconds(30'000)));
    MODHOST_TRY(check_code(a, r.fields, false));
    set_fields(i.index, r.fields);
    return recipe_text(r.fields);
  }

  Result<std::string> request(const Instruction& i, const json::object& a) {
    MODHOST_ASSIGN_OR_RETURN(RecipeRun r,
                             run_recipe(str(a, "service_name"), *object(a, "recipe"), milliseconds(30'000)));
    MODHOST_TRY(check_code(a, r.fields, true));
    set_fields(i.index, r.fields);
    return recipe_text(r.fields);
  }

  // Runs a recipe until FIELD ASSERTION TARGET holds (wait, ready conditions).
  struct Waited {
    RecipeRun last;
    int tries = 0;
    milliseconds took{0};
  };
  Result<Waited> wait_until(const std::string& service, const json::object& cond,
                            milliseconds default_timeout) {
    MODHOST_ASSIGN_OR_RETURN(auto interval, duration(cond, "interval"));
    MODHOST_ASSIGN_OR_RETURN(auto timeout, duration(cond, "timeout"));
    const milliseconds every = interval.value_or(milliseconds(1000));
    const milliseconds limit = timeout.value_or(default_timeout);
    const std::string field = str(cond, "field"), op = str(cond, "assertion");
    const json::value target = cond.contains("target_value") ? cond.at("target_value") : json::value(nullptr);
    const json::object& recipe = *object(cond, "recipe");
    const auto start = Clock::now();
    const auto deadline = start + limit;
    Waited w;
    std::string last;
    for (;;) {
      ++w.tries;
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
      auto r = run_recipe(service, recipe, std::clamp(left, milliseconds(100), milliseconds(10'000)));
      if (r.ok()) {
        const json::value* v = r->fields.if_contains(field);
        const json::value value = v ? *v : json::value(nullptr);
        auto holds = compare(value, op, target);
        if (holds.ok() && holds.value()) {
          w.last = std::move(r).value();
          w.took = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
          return w;
        }
        last = "'" + field + "' was '" + display(value) + "'" +
               (holds.ok() ? "" : " (" + holds.error().message() + ")");
      } else {
        last = r.error().message();
      }
      if (cancelled_ && cancelled_()) return Error(ErrorCode::cancelled, "interrupted while waiting");
      const auto now = Clock::now();
      if (now + std::min(every, milliseconds(1)) >= deadline) break;
      std::this_thread::sleep_for(std::min<Clock::duration>(every, deadline - now));
      if (Clock::now() >= deadline) break;
    }
    return Error(ErrorCode::timeout, "the condition '" + field + "' " + op + " '" + display(target) +
                                         "' did not hold within " + format_duration(limit) + " (" +
                                         std::to_string(w.tries) + " tries); last: " + last);
  }

  Result<std::string> wait(const Instruction& i, const json::object& a) {
    MODHOST_ASSIGN_OR_RETURN(Waited w, wait_until(str(a, "service_name"), a, milliseconds(10'000)));
    set_fields(i.index, w.last.fields);
    char took[32];
    std::snprintf(took, sizeof took, "%.2fs", static_cast<double>(w.took.count()) / 1000.0);
    return "Wait took " + std::to_string(w.tries) + " tries (" + took +
           " in total). Assertion passed with following:\n" + recipe_text(w.last.fields);
  }

  Result<std::string> verify(const json::object& a) {
    const json::value value = a.contains("value") ? a.at("value") : json::value(nullptr);
    const json::value target = a.contains("target_value") ? a.at("target_value") : json::value(nullptr);
    const std::string op = str(a, "assertion");
    auto holds = compare(value, op, target);
    if (!holds.ok())
      return Error(ErrorCode::module_failed, "Verification failed: " + holds.error().message());
    if (!holds.value()) {
      std::string why = "Verification failed '" + display(value) + "' '" + op + "' '" + display(target) + "'";
      if (type_of(value) != type_of(target) && (op == "==" || op == "!=")) {
        why += " ('" + display(value) + "' is a " + type_of(value) + ", '" + display(target) + "' a " +
               type_of(target) + ")";
      }
      return Error(ErrorCode::module_failed, why);
    }
    return "Verification succeeded. Value is '" + display(value) + "'.";
  }

  // --- files ---

  // An artifact an earlier run made under this name goes first (an update).
  Status remove_if_present(const std::string& name) {
    auto existing = target_.list_artifacts();
    if (!existing.ok()) return existing.error();
    for (const auto& x : existing.value()) {
      if (x.name == name) return target_.remove_artifact(name);
    }
    return ok_status();
  }

  Status replace_artifact(const std::string& name, const std::string& tgz) {
    MODHOST_TRY(remove_if_present(name));
    return target_.store_artifact(name, tgz);
  }

  Result<std::string> upload_files(const json::object& a) {
    const std::string name = str(a, "name");
    image::TarWriter w;
    std::size_t count = 0, bytes = 0;
    if (const json::value* files = a.if_contains("files"); files && files->is_array()) {
      for (const auto& f : files->get_array()) {
        const json::object& o = f.as_object();
        MODHOST_ASSIGN_OR_RETURN(std::string content, base64_decode(str(o, "content_base64")));
        w.add_file(str(o, "path"), content, static_cast<std::uint32_t>(integer(o, "mode", 0644)) & 07777);
        ++count;
        bytes += content.size();
      }
    }
    MODHOST_ASSIGN_OR_RETURN(std::string tgz, image::gzip_compress(w.finish()));
    MODHOST_TRY(replace_artifact(name, tgz));
    return "Files with artifact name '" + name + "' uploaded (" + std::to_string(count) + " files, " +
           std::to_string(bytes) + " bytes)";
  }

  Result<std::string> render_templates(const json::object& a) {
    const std::string name = str(a, "name");
    image::TarWriter w;
    if (const json::value* files = a.if_contains("files"); files && files->is_array()) {
      for (const auto& f : files->get_array()) {
        const json::object& o = f.as_object();
        w.add_file(str(o, "path"), str(o, "content"),
                   static_cast<std::uint32_t>(integer(o, "mode", 0644)) & 07777);
      }
    }
    MODHOST_ASSIGN_OR_RETURN(std::string tgz, image::gzip_compress(w.finish()));
    MODHOST_TRY(replace_artifact(name, tgz));
    return "Templates artifact name '" + name + "' rendered";
  }

  Result<std::string> store_service_files(const json::object& a) {
    const std::string name = str(a, "name"), service = str(a, "service_name"), src = str(a, "src");
    MODHOST_TRY(remove_if_present(name));
    MODHOST_TRY(target_.store_from_service(service, src, name));
    return "Files with artifact name '" + name + "' stored from service '" + service + "' at '" + src + "'";
  }

  // --- tasks ---

  Result<std::string> run_sh(const Instruction& i, const json::object& a) {
    const std::string name = str(a, "name");
    ServiceConfig c;
    c.name = name;
    c.image = str(a, "image");
    c.entrypoint = {"/bin/sh", "-c"};
    // Idle until the script has run through exec and its files are stored.
    c.cmd = {"trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"};
    for (auto& [k, v] : string_map(a, "env_vars")) c.env[k] = v;
    for (auto& [dir, art] : string_map(a, "files")) c.files.push_back(FileMount{art, dir});
    c.labels[kLabelStarlark] = "task";
    MODHOST_ASSIGN_OR_RETURN(ServiceInfo info, target_.add_service(c));
    (void)info;
    struct Remove {
      Target& t;
      std::string n;
      ~Remove() { (void)t.remove_service(n); }
    } remove{target_, name};
    MODHOST_ASSIGN_OR_RETURN(auto wait, duration(a, "wait"));
    std::vector<std::string> argv = {"/bin/sh", "-c", str(a, "run")};
    auto job = std::async(std::launch::async, [this, &name, argv] { return target_.exec(name, argv); });
    if (wait && job.wait_for(*wait) != std::future_status::ready) {
      (void)target_.remove_service(name);  // ends the exec
      (void)job.get();
      return Error(ErrorCode::timeout, "the script did not finish within " + format_duration(*wait));
    }
    MODHOST_ASSIGN_OR_RETURN(ExecResult r, job.get());
    json::object fields{{"code", r.exit_code}, {"output", r.output}};
    MODHOST_TRY(check_code(a, fields, false));
    std::vector<std::string> stored;
    if (const json::value* store = a.if_contains("store"); store && store->is_array()) {
      for (const auto& s : store->get_array()) {
        const json::object& o = s.as_object();
        const std::string art = str(o, "name");
        MODHOST_TRY(remove_if_present(art));
        MODHOST_TRY(target_.store_from_service(name, str(o, "src"), art));
        stored.push_back(art);
      }
    }
    set_fields(i.index, fields);
    std::string text = recipe_text(fields);
    for (const auto& s : stored) text += "\nStored files artifact '" + s + "'";
    return text;
  }

  Result<std::string> connection_change(const Instruction& i, const json::object& a) {
    MODHOST_TRY(net_change(i, true));
    const auto subs = strings(a, "subnetworks");
    if (i.kind == "remove_connection") {
      return "Removed subnetwork connection override between '" + subs[0] + "' and '" + subs[1] + "'";
    }
    if (subs.size() == 2)
      return "Configured subnetwork connection between '" + subs[0] + "' and '" + subs[1] + "'";
    return std::string("Configured default subnetwork connection");
  }

  Result<std::string> exec_module(const Instruction& i, const json::object& a) {
    MODHOST_ASSIGN_OR_RETURN(auto timeout, duration(a, "timeout"));
    const std::string ref = str(a, "module");
    auto progress = [this, &i](std::string_view line) {
      emit(RunEvent::Kind::progress, i.index, std::string(line));
    };
    MODHOST_ASSIGN_OR_RETURN(std::string result, target_.run_module(ref, str(a, "load_params"),
                                                                    str(a, "params"), timeout, progress));
    futures_.set(i.index, "result", json::value(result));
    return "Module '" + ref + "' returned: " + result;
  }

  const Plan& plan_;
  Target& target_;
  const RunOptions& options_;
  const RunSink& sink_;
  const std::function<bool()>& cancelled_;
  Futures futures_;
  NetState net_;
};

}  // namespace

Status run(const Plan& plan, Target& target, const RunOptions& options, const RunSink& sink,
           const std::function<bool()>& cancelled, RunReport& report) {
  report = RunReport{};
  return Executor(plan, target, options, sink, cancelled).run(report);
}

}  // namespace modhost::starlark
