// The parts network control (network_control.cpp) composes, each in its own
// file: the state it keeps per enclave on the host (network_state.cpp), the
// packet shaper process it runs here (network_shaper.cpp), and the helper
// containers through which it reaches an engine that runs elsewhere
// (network_helpers.cpp). For the engine's own use; not installed.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "backends/backend.hpp"
#include "engine/netns.hpp"
#include "engine/network_control.hpp"
#include "engine/partition_rules.hpp"

namespace boost::json {
class object;
}

namespace modhost::engine::netctl {

namespace fs = std::filesystem;

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

// --- Small things the parts share (network_state.cpp) ---

std::string read_file(const fs::path& p);
// Written whole or not at all.
Status write_file(const fs::path& p, const std::string& content);
int read_pid(const fs::path& p);  // 0 when missing or not a number
bool alive(int pid);
std::string last_lines(const std::string& text, int n);
// Runs `work(i)` for i in [0, n) on up to `parallelism` threads; the first
// error (by index) wins.
Status parallel(std::size_t n, int parallelism, const std::function<Status(std::size_t)>& work);

// --- The state kept per enclave (network_state.cpp) ---
// Under the runtime dir: `<enclave>/` holds what heal drops (the records,
// the shaper's files, the lease), `<enclave>.events` the timeline, which
// outlives a partition.
class State {
 public:
  explicit State(fs::path runtime_dir) : root_(std::move(runtime_dir)) {}

  const fs::path& root() const { return root_; }
  fs::path dir(const std::string& enclave_id) const { return root_ / enclave_id; }
  fs::path events_file(const std::string& enclave_id) const { return root_ / (enclave_id + ".events"); }
  // Creates the enclave's directory, readable by root alone.
  Status make_dir(const std::string& enclave_id) const;
  // Drops the enclave's directory (not its timeline).
  void drop(const std::string& enclave_id) const;

  void record_event(const std::string& enclave_id, const std::string& action,
                    const std::string& detail) const;
  std::vector<NetworkControl::Event> events(const std::string& enclave_id) const;

  // The namespace pid of each service at the last look, with the service's
  // container id and the pid's start time: a restarted service has a new
  // pid, and its old pid, if reused, another start time.
  struct KnownPid {
    std::string id;
    int pid = 0;
    std::string start;
    bool operator==(const KnownPid&) const = default;
  };
  std::map<std::string, KnownPid> read_pids(const std::string& enclave_id) const;
  // Best effort: without it the next look asks the backend again.
  void write_pids(const std::string& enclave_id, const std::map<std::string, KnownPid>& pids) const;

  // The rules of ours each namespace got from the last apply, by Target::key
  // (a restarted service has a new pid and a fresh namespace). Saves reading
  // the namespace back, and skips namespaces whose rules do not change.
  using Record = std::map<std::string, std::string>;
  Record read_record(const std::string& enclave_id) const;
  Status write_record(const std::string& enclave_id, const Record& r) const;

  // A run that holds a temporary partitioning leaves its pid here.
  fs::path lease(const std::string& enclave_id) const { return dir(enclave_id) / "lease"; }

 private:
  fs::path root_;
};

// --- The packet shaper on this host (network_shaper.cpp) ---

// The shaper's config for one namespace, as the shaper reads it.
boost::json::object shaper_namespace(int pid, const partition::NamespaceRules& rules);
std::int64_t fresh_seed();

// One modhost-netshaper per enclave, serving the queues of every namespace
// that has any. Its files live in the enclave's state directory:
// shaper.json (its table), shaper.pid, shaper.applied (the generation it
// took), shaper.log.
class Shaper {
 public:
  // `path` empty: next to the running executable, then PATH.
  Shaper(std::string path, std::chrono::milliseconds timeout) : path_(std::move(path)), timeout_(timeout) {}

  // Gives the shaper of directory `d` the queues of `rules` (one per
  // target), starting it if none runs, and waits until it took them.
  Status apply(const fs::path& d, const std::vector<Target>& targets,
               const std::vector<partition::NamespaceRules>& rules) const;
  // Stops the shaper of `d`, if one runs.
  void stop(const fs::path& d) const;
  // True when no process the shaper serves is alive (or there is no shaper).
  bool namespaces_gone(const fs::path& d) const;

 private:
  int running(const fs::path& d) const;
  Result<std::string> program() const;
  Result<int> launch(const fs::path& d) const;

  std::string path_;
  std::chrono::milliseconds timeout_;
};

// --- Helpers: the engine runs elsewhere (network_helpers.cpp) ---
// One container per service, in the service's network namespace, with
// NET_ADMIN: iptables runs in it by exec, and its main process is the shaper
// of that namespace (it starts with no queues). Helpers are not listed with
// services: they go by their names.
class Helpers {
 public:
  Helpers(backend::Backend& backend, std::chrono::milliseconds timeout, int parallelism)
      : backend_(backend), timeout_(timeout), parallelism_(parallelism) {}

  static std::string name(const std::string& service) { return "netctl-" + service; }

  // Starts the helper of each target whose helper is not running.
  Status start(const std::string& enclave_id, const std::vector<Target>& ts) const;
  bool running(const std::string& enclave_id, const std::string& helper) const;
  void remove(const std::string& enclave_id, const std::vector<Target>& ts) const;
  // Runs argv (with `input` on stdin) in the target's helper.
  Result<CommandOutput> run(const std::string& enclave_id, const Target& t,
                            const std::vector<std::string>& argv, std::string_view input) const;
  // Gives each helper's shaper its table and waits until it took it.
  Status reload_shapers(const std::string& enclave_id, const std::vector<Target>& ts,
                        const std::vector<partition::NamespaceRules>& rules) const;

 private:
  Status ensure_image() const;

  backend::Backend& backend_;
  std::chrono::milliseconds timeout_;
  int parallelism_;
};

}  // namespace modhost::engine::netctl
