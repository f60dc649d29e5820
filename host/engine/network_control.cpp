#include "engine/network_control.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "backends/image/image.hpp"
#include "backends/net.hpp"
#include "backends/proc_stat.hpp"
#include "engine/logging.hpp"
#include "engine/module_manager.hpp"
#include "engine/netns.hpp"
#include "engine/partition_rules.hpp"

namespace modhost::engine {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Written whole or not at all.
Status write_file(const fs::path& p, const std::string& content) {
  const fs::path tmp = p.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << content;
    if (!out.good()) return Error(ErrorCode::internal, "cannot write " + tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, p, ec);
  if (ec) return Error(ErrorCode::internal, "cannot write " + p.string() + ": " + ec.message());
  return ok_status();
}

int read_pid(const fs::path& p) {
  try {
    return std::stoi(read_file(p));
  } catch (const std::exception&) {
    return 0;
  }
}

bool alive(int pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

// The pid file may outlive its process, and the pid be reused.
bool is_shaper(int pid) {
  if (!alive(pid)) return false;
  std::string cmdline = read_file("/proc/" + std::to_string(pid) + "/cmdline");
  return cmdline.find("modhost-netshaper") != std::string::npos;
}

// A running service and how its namespace is entered: from this host by the
// pid of one of its processes, or through a helper container that shares it.
struct Target {
  std::string service;
  std::string ip;
  int pid = 0;
  std::string helper;  // the helper's service name, for engines not on this host
  // The record's key: what identifies this namespace across applies.
  std::string key() const { return helper.empty() ? "pid:" + std::to_string(pid) : "helper:" + helper; }
};

constexpr const char* kHelperImage = "modhost/netctl:1";
constexpr const char* kHelperArchive = "modhost-netctl.tar";
constexpr const char* kHelperShaperConfig = "/shaper.json";
constexpr const char* kHelperApplied = "/shaper.applied";

std::string base64(std::string_view in) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (unsigned char ch : in) {
    acc = (acc << 8) | ch;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += kAlphabet[(acc >> bits) & 0x3f];
    }
  }
  if (bits > 0) out += kAlphabet[(acc << (6 - bits)) & 0x3f];
  while (out.size() % 4 != 0) out += '=';
  return out;
}

// The shaper's config for one namespace, as the shaper reads it.
json::object shaper_namespace(int pid, const partition::NamespaceRules& rules) {
  json::array queues;
  for (const auto& [num, c] : rules.queues) {
    queues.push_back(json::object{
        {"num", num},
        {"delay_us", c.delay.count()},
        {"jitter_us", c.jitter.count()},
        {"correlation", c.correlation_percent},
        {"distribution", c.distribution == Connection::Distribution::normal ? "normal" : "uniform"},
        {"loss", c.loss_percent}});
  }
  return json::object{{"pid", pid}, {"queues", std::move(queues)}};
}

std::int64_t fresh_seed() { return static_cast<std::int64_t>(std::random_device{}() & 0x7fffffff); }

std::string last_lines(const std::string& text, int n) {
  std::size_t pos = text.size();
  while (n-- > 0 && pos > 0) {
    pos = text.rfind('\n', pos - 1);
    if (pos == std::string::npos) return text;
  }
  return text.substr(pos + 1);
}

}  // namespace

struct NetworkControl::Impl {
  backend::Backend& backend;
  NetworkControlOptions options;

  fs::path dir(const std::string& enclave_id) const { return fs::path(options.runtime_dir) / enclave_id; }
  // Kept apart from the state heal drops: the timeline outlives a partition.
  fs::path events_file(const std::string& enclave_id) const {
    return fs::path(options.runtime_dir) / (enclave_id + ".events");
  }

  void record_event(const std::string& enclave_id, const std::string& action, const std::string& detail) {
    std::error_code ec;
    fs::create_directories(options.runtime_dir, ec);
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
    std::ofstream out(events_file(enclave_id), std::ios::app);
    out << json::serialize(json::object{{"time_ns", ns}, {"action", action}, {"detail", detail}}) << "\n";
  }

  Result<std::string> shaper_path() const {
    if (!options.shaper_path.empty()) return options.shaper_path;
    fs::path here = fs::path(executable_dir()) / "modhost-netshaper";
    if (::access(here.c_str(), X_OK) == 0) return here.string();
    return find_program("modhost-netshaper", "modhost");
  }

  // Running services with their namespace pid, checked against the subnet.
  // With `ensure_helpers` false (healing), services whose helper is not
  // running are left out: nothing of ours can be in their namespace.
  Result<std::vector<Target>> targets(const std::string& enclave_id, std::vector<std::string>* all_names,
                                      bool ensure_helpers = true) {
    MODHOST_ASSIGN_OR_RETURN(backend::EnclaveInfo enclave, backend.find_enclave(enclave_id));
    MODHOST_ASSIGN_OR_RETURN(std::vector<ServiceInfo> services, backend.list_services(enclave.id));
    std::vector<Target> out;
    for (const ServiceInfo& s : services) {
      auto kind = s.labels.find(backend::kLabelKind);
      if (kind != s.labels.end() && kind->second == "module") continue;
      if (all_names != nullptr) all_names->push_back(s.name);
      if (s.status != ServiceStatus::running && s.status != ServiceStatus::paused) continue;
      // Never shape by an address that could match anything outside the enclave.
      if (!backend::ip_in_subnet(s.ip, enclave.subnet)) {
        return Error(ErrorCode::failed_precondition, "service '" + s.name + "' has address '" + s.ip +
                                                         "', not inside the enclave subnet " +
                                                         enclave.subnet);
      }
      out.push_back(Target{s.name, s.ip, 0, ""});
    }
    // A pid seen before for the same container, still its process (same
    // start time), costs a /proc read; the others are asked of the backend.
    std::map<std::string, KnownPid> known = read_pids(enclave.id), seen;
    std::vector<std::string> ids(out.size());
    for (std::size_t i = 0; i < out.size(); ++i) {
      for (const ServiceInfo& s : services) {
        if (s.name == out[i].service) ids[i] = s.id;
      }
      auto k = known.find(out[i].service);
      if (k != known.end() && !ids[i].empty() && k->second.id == ids[i] && k->second.pid > 0 &&
          backend::process_start_time(k->second.pid) == k->second.start) {
        out[i].pid = k->second.pid;
      }
    }
    MODHOST_TRY(parallel(out.size(), [&](std::size_t i) -> Status {
      if (out[i].pid != 0) return ok_status();
      MODHOST_ASSIGN_OR_RETURN(std::optional<int> pid,
                               backend.network_namespace_pid(enclave.id, out[i].service));
      if (pid) {
        out[i].pid = *pid;
      } else {
        out[i].helper = helper_name(out[i].service);
      }
      return ok_status();
    }));
    for (std::size_t i = 0; i < out.size(); ++i) {
      if (out[i].pid > 0 && !ids[i].empty())
        seen[out[i].service] = KnownPid{ids[i], out[i].pid, backend::process_start_time(out[i].pid)};
    }
    if (seen != known) write_pids(enclave.id, seen);
    if (!out.empty() && !out[0].helper.empty()) {
      if (ensure_helpers) {
        MODHOST_TRY(start_helpers(enclave.id, out));
      } else {
        std::erase_if(out, [&](const Target& t) {
          auto h = backend.inspect_service(enclave.id, t.helper);
          return !h.ok() || h->status != ServiceStatus::running;
        });
      }
    }
    return out;
  }

  // --- Helpers: the engine runs elsewhere ---
  // One container per service, in the service's network namespace, with
  // NET_ADMIN: iptables runs in it by exec, and its main process is the
  // shaper of that namespace (it starts with no queues).

  static std::string helper_name(const std::string& service) { return "netctl-" + service; }

  Status ensure_helper_image() {
    MODHOST_ASSIGN_OR_RETURN(bool present, backend.image_exists(kHelperImage));
    if (present) return ok_status();
    // Packed by the build; installed under share/modhost/images.
    const fs::path bin(executable_dir());
    for (const fs::path& archive : {bin / ".." / "images" / kHelperArchive,
                                    bin / ".." / "share" / "modhost" / "images" / kHelperArchive}) {
      if (fs::exists(archive)) return backend.load_image(archive.string());
    }
    return Error(ErrorCode::failed_precondition,
                 std::string("network control of a remote engine needs the image ") + kHelperImage +
                     ", and no " + kHelperArchive + " is next to modhost to load it from");
  }

  Status start_helpers(const std::string& enclave_id, const std::vector<Target>& ts) {
    std::set<std::string> running;
    for (const Target& t : ts) {
      auto h = backend.inspect_service(enclave_id, t.helper);
      if (h.ok() && h->status == ServiceStatus::running) running.insert(t.helper);
    }
    bool image_checked = false;
    for (const Target& t : ts) {
      if (running.contains(t.helper)) continue;
      if (!image_checked) MODHOST_TRY(ensure_helper_image());
      image_checked = true;
      (void)backend.remove_service(enclave_id, t.helper);  // a stopped one, if any
      ServiceConfig c;
      c.name = t.helper;
      c.kind = "helper";
      c.image = kHelperImage;
      c.network_of = t.service;
      c.cap_add = {"NET_ADMIN"};
      c.env["MODHOST_SHAPER_CONFIG"] = json::serialize(
          json::object{{"generation", 0}, {"namespaces", json::array{shaper_namespace(1, {})}}});
      c.entrypoint = {"/bin/sh", "-c",
                      std::string("echo \"$MODHOST_SHAPER_CONFIG\" > ") + kHelperShaperConfig +
                          " && exec /bin/modhost-netshaper --config " + kHelperShaperConfig +
                          " --pid-file /shaper.pid --applied-file " + kHelperApplied};
      auto added = backend.add_service(enclave_id, c);
      if (!added.ok())
        return added.error().context("cannot start the network helper of service '" + t.service + "'");
    }
    return ok_status();
  }

  // Helpers are not listed with services: they go by their names.
  void remove_helpers(const std::string& enclave_id, const std::vector<Target>& ts) {
    for (const Target& t : ts) {
      if (!t.helper.empty()) (void)backend.remove_service(enclave_id, t.helper);
    }
  }

  // Runs argv (with `input` on stdin) in the target's namespace.
  Result<CommandOutput> run(const std::string& enclave_id, const Target& t,
                            const std::vector<std::string>& argv, std::string_view input = {}) {
    if (t.helper.empty()) return run_in_netns(t.pid, argv, input);
    std::vector<std::string> cmd;
    const std::string name = fs::path(argv[0]).filename().string();
    if (input.empty()) {
      cmd = argv;
      cmd[0] = name;
    } else {
      // The exec API has no stdin: the input travels in base64 in the command.
      std::string line = "echo " + base64(input) + " | base64 -d | " + name;
      for (std::size_t i = 1; i < argv.size(); ++i) line += " " + argv[i];
      cmd = {"sh", "-c", line};
    }
    MODHOST_ASSIGN_OR_RETURN(ExecResult r, backend.exec(enclave_id, t.helper, cmd));
    return CommandOutput{r.exit_code, r.output, r.output};
  }

  // Gives each helper's shaper its table and waits until it took it.
  Status reload_helper_shapers(const std::string& enclave_id, const std::vector<Target>& ts,
                               const std::vector<partition::NamespaceRules>& rules) {
    const auto generation = static_cast<std::int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                          std::chrono::system_clock::now().time_since_epoch())
                                                          .count());
    return parallel(ts.size(), [&](std::size_t i) -> Status {
      const Target& t = ts[i];
      json::object config{{"generation", generation},
                          {"seed", fresh_seed()},
                          {"namespaces", json::array{shaper_namespace(1, rules[i])}}};
      MODHOST_TRY(backend.copy_to_service(enclave_id, t.helper, "/", [&] {
        image::TarWriter tar;
        tar.add_file(fs::path(kHelperShaperConfig).filename().string(), json::serialize(config), 0644);
        return tar.finish();
      }()));
      MODHOST_TRY(backend.kill_service(enclave_id, t.helper, SIGHUP));
      for (auto deadline = std::chrono::steady_clock::now() + options.shaper_timeout;;) {
        MODHOST_ASSIGN_OR_RETURN(ExecResult r, backend.exec(enclave_id, t.helper, {"cat", kHelperApplied}));
        if (r.exit_code == 0 && r.output == std::to_string(generation)) return ok_status();
        if (std::chrono::steady_clock::now() > deadline) {
          return Error(ErrorCode::timeout,
                       "the packet shaper of service '" + t.service + "' did not take its rules");
        }
        std::this_thread::sleep_for(10ms);
      }
    });
  }

  // Runs `work(i)` for i in [0, n) on up to `parallelism` threads; the first
  // error (by index) wins.
  Status parallel(std::size_t n, const std::function<Status(std::size_t)>& work) {
    std::vector<Status> results(n, ok_status());
    std::atomic<std::size_t> next{0};
    auto worker = [&] {
      for (std::size_t i = next++; i < n; i = next++) results[i] = work(i);
    };
    std::vector<std::thread> threads;
    const std::size_t k =
        std::min<std::size_t>(n, static_cast<std::size_t>(std::max(1, options.parallelism)));
    for (std::size_t t = 1; t < k; ++t) threads.emplace_back(worker);
    worker();
    for (std::thread& t : threads) t.join();
    for (Status& s : results) {
      if (!s.ok()) return s;
    }
    return ok_status();
  }

  // --- Where each namespace is ---
  // The namespace pid of each service at the last look, with the service's
  // container id and the pid's start time: a restarted service has a new
  // pid, and its old pid, if reused, another start time.
  struct KnownPid {
    std::string id;
    int pid = 0;
    std::string start;
    bool operator==(const KnownPid&) const = default;
  };

  std::map<std::string, KnownPid> read_pids(const std::string& enclave_id) const {
    std::map<std::string, KnownPid> out;
    try {
      json::value v = json::parse(read_file(dir(enclave_id) / "pids.json"));
      for (const auto& [name, p] : v.as_object()) {
        out[std::string(name)] = KnownPid{std::string(p.at("id").as_string()),
                                          static_cast<int>(p.at("pid").to_number<std::int64_t>()),
                                          std::string(p.at("start").as_string())};
      }
    } catch (const std::exception&) {
      out.clear();
    }
    return out;
  }

  // Best effort: without it the next look asks the backend again.
  void write_pids(const std::string& enclave_id, const std::map<std::string, KnownPid>& pids) const {
    json::object o;
    for (const auto& [name, p] : pids)
      o[name] = json::object{{"id", p.id}, {"pid", p.pid}, {"start", p.start}};
    std::error_code ec;
    fs::create_directories(dir(enclave_id), ec);
    (void)write_file(dir(enclave_id) / "pids.json", json::serialize(o));
  }

  // --- What each namespace holds ---
  // The rules of ours each namespace got from the last apply, by the pid it
  // was entered through (a restarted service has a new pid and a fresh
  // namespace). Saves reading the namespace back, and skips namespaces whose
  // rules do not change.
  using Record = std::map<std::string, std::string>;

  Record read_record(const std::string& enclave_id) const {
    Record r;
    try {
      json::value v = json::parse(read_file(dir(enclave_id) / "rules.json"));
      for (const auto& [key, rules] : v.as_object()) r[std::string(key)] = std::string(rules.as_string());
    } catch (const std::exception&) {
      r.clear();
    }
    return r;
  }

  Status write_record(const std::string& enclave_id, const Record& r) {
    json::object o;
    for (const auto& [key, rules] : r) o[key] = rules;
    return write_file(dir(enclave_id) / "rules.json", json::serialize(o));
  }

  // A program on this host, or by name in the helper.
  static Result<std::string> program(const Target& t, const char* name) {
    if (!t.helper.empty()) return std::string(name);
    return find_program(name, "iptables");
  }

  // Makes one namespace hold `rules` (none: nothing of ours). `known`: what
  // the record says it holds. Returns whether anything changed.
  Result<bool> apply_namespace(const std::string& enclave_id, const Target& t,
                               const partition::NamespaceRules& rules, const std::string* known) {
    const std::string want = partition::chain_rules(rules);
    MODHOST_ASSIGN_OR_RETURN(std::string restore_bin, program(t, "iptables-restore"));
    if (known != nullptr) {
      if (*known == want) return false;
      const bool installed = !known->empty();
      const std::string input = partition::render_restore(rules, {installed, installed});
      MODHOST_ASSIGN_OR_RETURN(CommandOutput restored, run(enclave_id, t, {restore_bin, "--noflush"}, input));
      if (restored.exit_code == 0) return true;
      // The namespace is not what the record says: read it and try again.
    }
    MODHOST_ASSIGN_OR_RETURN(std::string save_bin, program(t, "iptables-save"));
    MODHOST_ASSIGN_OR_RETURN(CommandOutput saved, run(enclave_id, t, {save_bin, "-t", "filter"}));
    if (saved.exit_code != 0) {
      return Error(ErrorCode::failed_precondition, "cannot read the netfilter rules of service '" +
                                                       t.service + "': " + last_lines(saved.err, 1));
    }
    const std::string input = partition::render_restore(rules, partition::parse_iptables_save(saved.out));
    if (input.empty()) return false;
    MODHOST_ASSIGN_OR_RETURN(CommandOutput restored, run(enclave_id, t, {restore_bin, "--noflush"}, input));
    if (restored.exit_code != 0) {
      return Error(ErrorCode::failed_precondition, "cannot install the partition rules of service '" +
                                                       t.service + "': " + last_lines(restored.err, 2));
    }
    return true;
  }

  // --- The shaper ---

  int running_shaper(const std::string& enclave_id) const {
    int pid = read_pid(dir(enclave_id) / "shaper.pid");
    return is_shaper(pid) ? pid : 0;
  }

  void stop_shaper(const std::string& enclave_id) {
    int pid = running_shaper(enclave_id);
    if (pid == 0) return;
    ::kill(pid, SIGTERM);
    // Not our child (it outlives us): wait for it to go.
    for (auto deadline = std::chrono::steady_clock::now() + 3s;
         alive(pid) && std::chrono::steady_clock::now() < deadline;) {
      std::this_thread::sleep_for(2ms);
    }
    if (alive(pid) && is_shaper(pid)) ::kill(pid, SIGKILL);
  }

  Status start_or_reload_shaper(const std::string& enclave_id, const std::vector<Target>& targets,
                                const std::vector<partition::NamespaceRules>& rules) {
    const fs::path d = dir(enclave_id);
    std::int64_t generation = 1;
    try {
      json::value old = json::parse(read_file(d / "shaper.json"));
      generation = old.as_object().at("generation").as_int64() + 1;
    } catch (const std::exception&) {
    }
    json::array namespaces;
    for (std::size_t i = 0; i < targets.size(); ++i) {
      if (!rules[i].queues.empty()) namespaces.push_back(shaper_namespace(targets[i].pid, rules[i]));
    }
    json::object config{
        {"generation", generation}, {"seed", fresh_seed()}, {"namespaces", std::move(namespaces)}};
    MODHOST_TRY(write_file(d / "shaper.json", json::serialize(config)));

    int pid = running_shaper(enclave_id);
    if (pid != 0 && ::kill(pid, SIGHUP) != 0) pid = 0;
    if (pid == 0) {
      MODHOST_ASSIGN_OR_RETURN(pid, launch_shaper(d));
    }

    const std::string want = std::to_string(generation);
    for (auto deadline = std::chrono::steady_clock::now() + options.shaper_timeout;;) {
      std::string applied = read_file(d / "shaper.applied");
      while (!applied.empty() && (applied.back() == '\n' || applied.back() == ' ')) applied.pop_back();
      if (applied == want) return ok_status();
      if (!alive(pid)) {
        return Error(ErrorCode::failed_precondition,
                     "the packet shaper failed: " + last_lines(read_file(d / "shaper.log"), 2));
      }
      if (std::chrono::steady_clock::now() > deadline) {
        return Error(ErrorCode::timeout, "the packet shaper did not take its rules within " +
                                             std::to_string(options.shaper_timeout.count()) +
                                             " ms: " + last_lines(read_file(d / "shaper.log"), 2));
      }
      std::this_thread::sleep_for(1ms);
    }
  }

  // Started detached (its own session, not our child): a partitioning
  // outlives the command that applied it.
  Result<int> launch_shaper(const fs::path& d) {
    MODHOST_ASSIGN_OR_RETURN(std::string bin, shaper_path());
    std::error_code ec;
    fs::remove(d / "shaper.applied", ec);
    const std::string config = (d / "shaper.json").string(), pidf = (d / "shaper.pid").string(),
                      applied = (d / "shaper.applied").string(), log = (d / "shaper.log").string();
    std::vector<std::string> argv{bin, "--config", config, "--pid-file", pidf, "--applied-file", applied};
    std::vector<char*> args;
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    const int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (log_fd < 0 || null_fd < 0) {
      if (log_fd >= 0) ::close(log_fd);
      if (null_fd >= 0) ::close(null_fd);
      return Error(ErrorCode::internal, "cannot open " + log);
    }
    int pid_pipe[2];
    if (::pipe2(pid_pipe, O_CLOEXEC) != 0) {
      ::close(log_fd);
      ::close(null_fd);
      return Error(ErrorCode::internal, "cannot start the packet shaper: pipe failed");
    }
    const pid_t child = ::fork();
    if (child == 0) {
      ::setsid();
      const pid_t grandchild = ::fork();
      if (grandchild != 0) {
        // Tells the launcher which process to watch, then leaves it to init.
        (void)!::write(pid_pipe[1], &grandchild, sizeof grandchild);
        ::_exit(0);
      }
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::dup2(null_fd, 0);
      ::dup2(log_fd, 1);
      ::dup2(log_fd, 2);
      // It outlives us: it must not hold our pipes or sockets open.
      ::close_range(3, ~0u, 0);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(log_fd);
    ::close(null_fd);
    ::close(pid_pipe[1]);
    if (child < 0) {
      ::close(pid_pipe[0]);
      return Error(ErrorCode::internal, "cannot start the packet shaper: fork failed");
    }
    pid_t shaper = 0;
    ssize_t got = 0;
    do {
      got = ::read(pid_pipe[0], &shaper, sizeof shaper);
    } while (got < 0 && errno == EINTR);
    ::close(pid_pipe[0]);
    int status = 0;
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    if (got != static_cast<ssize_t>(sizeof shaper) || shaper <= 0) {
      return Error(ErrorCode::internal, "cannot start the packet shaper: fork failed");
    }
    return static_cast<int>(shaper);
  }

  // True when no process the shaper serves is alive (or there is no shaper).
  bool namespaces_gone(const std::string& enclave_id) const {
    if (running_shaper(enclave_id) == 0) return true;
    try {
      json::value config = json::parse(read_file(dir(enclave_id) / "shaper.json"));
      for (const json::value& ns : config.at("namespaces").as_array()) {
        if (alive(static_cast<int>(ns.at("pid").to_number<std::int64_t>()))) return false;
      }
    } catch (const std::exception&) {
      return false;
    }
    return true;
  }

  void forget(const std::string& enclave_id) {
    stop_shaper(enclave_id);
    std::error_code ec;
    fs::remove_all(dir(enclave_id), ec);
  }

  Status heal_targets(const std::string& enclave_id, const std::vector<Target>& ts) {
    const Record known = read_record(enclave_id);
    Status s = parallel(ts.size(), [&](std::size_t i) -> Status {
      partition::NamespaceRules none;
      none.service = ts[i].service;
      auto k = known.find(ts[i].key());
      auto r = apply_namespace(enclave_id, ts[i], none, k != known.end() ? &k->second : nullptr);
      if (!r.ok()) return r.error();
      return ok_status();
    });
    forget(enclave_id);
    remove_helpers(enclave_id, ts);
    return s;
  }

  Status heal(const std::string& enclave_id) {
    MODHOST_ASSIGN_OR_RETURN(std::vector<Target> ts, targets(enclave_id, nullptr, false));
    MODHOST_TRY(heal_targets(enclave_id, ts));
    record_event(enclave_id, "healed", std::to_string(ts.size()) + " services");
    return ok_status();
  }
};

NetworkControl::NetworkControl(backend::Backend& backend, NetworkControlOptions options)
    : impl_(new Impl{backend, std::move(options)}) {}
NetworkControl::~NetworkControl() = default;

Result<PartitionApplied> NetworkControl::repartition(const std::string& enclave_id,
                                                     const NetworkPartitioning& plan) {
  // Nothing named, nothing shaped: a heal.
  if (plan.partitions.empty() && plan.empty()) {
    MODHOST_TRY(impl_->heal(enclave_id));
    return PartitionApplied{};
  }
  std::vector<std::string> names;
  MODHOST_ASSIGN_OR_RETURN(std::vector<Target> ts, impl_->targets(enclave_id, &names));
  MODHOST_TRY(validate(plan, names));
  std::vector<partition::Endpoint> endpoints;
  for (const Target& t : ts) endpoints.push_back(partition::Endpoint{t.service, t.ip});
  const std::vector<partition::NamespaceRules> rules = partition::compile(plan, endpoints);

  PartitionApplied applied;
  bool any_queue = false;
  for (const auto& r : rules) {
    applied.rules += static_cast<int>(r.rules.size());
    any_queue = any_queue || !r.queues.empty();
  }
  if (applied.rules == 0) {
    MODHOST_TRY(impl_->heal(enclave_id));
    return applied;
  }

  const fs::path d = impl_->dir(enclave_id);
  std::error_code ec;
  fs::create_directories(d, ec);
  if (ec) return Error(ErrorCode::failed_precondition, "cannot create " + d.string() + ": " + ec.message());
  ::chmod(d.c_str(), 0700);
  // A run that holds the partition for a while says so before it changes
  // anything: if it dies part way, `clean` finds its lease and heals what it
  // had applied (written after the rules, a SIGKILL between the two left
  // rules that nothing claimed).
  if (plan.temporary) MODHOST_TRY(write_file(d / "lease", std::to_string(::getpid())));

  // The shaper takes its queues before any rule sends packets to them.
  const bool remote = !ts.empty() && !ts[0].helper.empty();
  if (any_queue || remote) {
    Status s = remote ? impl_->reload_helper_shapers(enclave_id, ts, rules)
                      : impl_->start_or_reload_shaper(enclave_id, ts, rules);
    if (!s.ok()) {
      (void)impl_->heal_targets(enclave_id, ts);
      return s.error();
    }
    applied.shaper_running = true;
  }

  const Impl::Record known = impl_->read_record(enclave_id);
  std::atomic<int> changed{0};
  Status s = impl_->parallel(ts.size(), [&](std::size_t i) -> Status {
    auto k = known.find(ts[i].key());
    MODHOST_ASSIGN_OR_RETURN(
        bool c, impl_->apply_namespace(enclave_id, ts[i], rules[i], k != known.end() ? &k->second : nullptr));
    if (c) ++changed;
    return ok_status();
  });
  if (!s.ok()) {
    (void)impl_->heal_targets(enclave_id, ts);
    return Error(s.error().code(), s.error().message() + " (the enclave's network was healed)");
  }
  applied.namespaces = changed.load();
  Impl::Record now;
  for (std::size_t i = 0; i < ts.size(); ++i) now[ts[i].key()] = partition::chain_rules(rules[i]);
  MODHOST_TRY(impl_->write_record(enclave_id, now));
  if (!any_queue && !remote) impl_->stop_shaper(enclave_id);

  impl_->record_event(
      enclave_id, "partition applied",
      std::to_string(applied.rules) + " rules over " + std::to_string(ts.size()) + " services");
  if (!plan.temporary) fs::remove(d / "lease", ec);
  return applied;
}

void NetworkControl::forget(const std::string& enclave_id) {
  impl_->forget(enclave_id);
  std::error_code ec;
  fs::remove(impl_->events_file(enclave_id), ec);
}

std::vector<NetworkControl::Event> NetworkControl::events(const std::string& enclave_id) const {
  std::vector<Event> out;
  std::ifstream in(impl_->events_file(enclave_id));
  for (std::string line; std::getline(in, line);) {
    boost::system::error_code ec;
    json::value v = json::parse(line, ec);
    if (ec || !v.is_object()) continue;
    const json::object& o = v.as_object();
    if (!o.contains("time_ns") || !o.contains("action")) continue;
    Event e;
    e.time_ns = o.at("time_ns").to_number<std::int64_t>();
    e.action = std::string(o.at("action").as_string());
    if (const json::value* d = o.if_contains("detail"); d && d->is_string())
      e.detail = std::string(d->as_string());
    out.push_back(std::move(e));
  }
  return out;
}

Status NetworkControl::heal(const std::string& enclave_id) { return impl_->heal(enclave_id); }

Result<std::vector<std::string>> NetworkControl::clean_stale() {
  std::vector<std::string> done;
  std::error_code ec;
  if (!fs::exists(impl_->options.runtime_dir, ec)) return done;
  for (const auto& entry : fs::directory_iterator(impl_->options.runtime_dir, ec)) {
    if (entry.is_regular_file() && entry.path().extension() == ".events") {
      // The timeline of an enclave that is gone (or of another scope's: only
      // once it has been quiet for a while).
      const std::string id = entry.path().stem().string();
      auto enclave = impl_->backend.find_enclave(id);
      std::error_code tec;
      const auto age = fs::file_time_type::clock::now() - fs::last_write_time(entry.path(), tec);
      if ((!enclave.ok() || enclave.value().id != id) && !tec && age > std::chrono::minutes(10)) {
        fs::remove(entry.path(), tec);
      }
      continue;
    }
    if (!entry.is_directory()) continue;
    const std::string id = entry.path().filename().string();
    auto enclave = impl_->backend.find_enclave(id);
    if (!enclave.ok() || enclave.value().id != id) {
      // Possibly another scope's enclave, busy right now (an engine elsewhere
      // runs no local shaper to tell): only a crash's leftovers, quiet for a
      // while with nothing of theirs alive. Enclaves this process removes are
      // forgotten by the command that removes them.
      std::error_code tec;
      const auto age = fs::file_time_type::clock::now() - fs::last_write_time(entry.path(), tec);
      if (!tec && age > std::chrono::minutes(10) && impl_->namespaces_gone(id) &&
          !alive(read_pid(entry.path() / "lease"))) {
        impl_->forget(id);
        done.push_back("network state of enclave " + id.substr(0, 12) + " (enclave gone)");
      }
      continue;
    }
    if (!fs::exists(entry.path() / "lease")) continue;  // a lasting partitioning: heal removes it
    if (alive(read_pid(entry.path() / "lease"))) continue;
    MODHOST_TRY(heal(id));
    done.push_back("partition of enclave " + enclave.value().name + " (" + id.substr(0, 12) +
                   ", its run is gone)");
  }
  return done;
}

}  // namespace modhost::engine
