// Network control: which namespaces a partitioning reaches (the enclave's
// running services, entered from this host by pid or through a helper
// container), what each must hold, and the apply, heal and clean that make
// them hold it. Its parts: network_state.cpp (the records), network_shaper.cpp
// (the local shaper), network_helpers.cpp (a remote engine).
#include "engine/network_control.hpp"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <map>

#include "backends/net.hpp"
#include "backends/proc_stat.hpp"
#include "engine/network_parts.hpp"

namespace modhost::engine {

using netctl::Target;
namespace fs = std::filesystem;

struct NetworkControl::Impl {
  backend::Backend& backend;
  NetworkControlOptions options;
  netctl::State state{options.runtime_dir};
  netctl::Shaper shaper{options.shaper_path, options.shaper_timeout};
  netctl::Helpers helpers{backend, options.shaper_timeout, options.parallelism};

  Status parallel(std::size_t n, const std::function<Status(std::size_t)>& work) const {
    return netctl::parallel(n, options.parallelism, work);
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
    std::map<std::string, netctl::State::KnownPid> known = state.read_pids(enclave.id), seen;
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
        out[i].helper = netctl::Helpers::name(out[i].service);
      }
      return ok_status();
    }));
    for (std::size_t i = 0; i < out.size(); ++i) {
      if (out[i].pid > 0 && !ids[i].empty())
        seen[out[i].service] =
            netctl::State::KnownPid{ids[i], out[i].pid, backend::process_start_time(out[i].pid)};
    }
    if (seen != known) state.write_pids(enclave.id, seen);
    if (!out.empty() && !out[0].helper.empty()) {
      if (ensure_helpers) {
        MODHOST_TRY(helpers.start(enclave.id, out));
      } else {
        std::erase_if(out, [&](const Target& t) { return !helpers.running(enclave.id, t.helper); });
      }
    }
    return out;
  }

  // Runs argv (with `input` on stdin) in the target's namespace.
  Result<CommandOutput> run(const std::string& enclave_id, const Target& t,
                            const std::vector<std::string>& argv, std::string_view input = {}) {
    if (t.helper.empty()) return run_in_netns(t.pid, argv, input);
    return helpers.run(enclave_id, t, argv, input);
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
                                                       t.service + "': " + netctl::last_lines(saved.err, 1));
    }
    const std::string input = partition::render_restore(rules, partition::parse_iptables_save(saved.out));
    if (input.empty()) return false;
    MODHOST_ASSIGN_OR_RETURN(CommandOutput restored, run(enclave_id, t, {restore_bin, "--noflush"}, input));
    if (restored.exit_code != 0) {
      return Error(ErrorCode::failed_precondition, "cannot install the partition rules of service '" +
                                                       t.service +
                                                       "': " + netctl::last_lines(restored.err, 2));
    }
    return true;
  }

  void forget(const std::string& enclave_id) {
    shaper.stop(state.dir(enclave_id));
    state.drop(enclave_id);
  }

  Status heal_targets(const std::string& enclave_id, const std::vector<Target>& ts) {
    const netctl::State::Record known = state.read_record(enclave_id);
    Status s = parallel(ts.size(), [&](std::size_t i) -> Status {
      partition::NamespaceRules none;
      none.service = ts[i].service;
      auto k = known.find(ts[i].key());
      auto r = apply_namespace(enclave_id, ts[i], none, k != known.end() ? &k->second : nullptr);
      if (!r.ok()) return r.error();
      return ok_status();
    });
    forget(enclave_id);
    helpers.remove(enclave_id, ts);
    return s;
  }

  Status heal(const std::string& enclave_id) {
    MODHOST_ASSIGN_OR_RETURN(std::vector<Target> ts, targets(enclave_id, nullptr, false));
    MODHOST_TRY(heal_targets(enclave_id, ts));
    state.record_event(enclave_id, "healed", std::to_string(ts.size()) + " services");
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

  const fs::path d = impl_->state.dir(enclave_id);
  MODHOST_TRY(impl_->state.make_dir(enclave_id));
  // A run that holds the partition for a while says so before it changes
  // anything: if it dies part way, `clean` finds its lease and heals what it
  // had applied (written after the rules, a SIGKILL between the two left
  // rules that nothing claimed).
  if (plan.temporary)
    MODHOST_TRY(netctl::write_file(impl_->state.lease(enclave_id), std::to_string(::getpid())));

  // The shaper takes its queues before any rule sends packets to them.
  const bool remote = !ts.empty() && !ts[0].helper.empty();
  if (any_queue || remote) {
    Status s =
        remote ? impl_->helpers.reload_shapers(enclave_id, ts, rules) : impl_->shaper.apply(d, ts, rules);
    if (!s.ok()) {
      (void)impl_->heal_targets(enclave_id, ts);
      return s.error();
    }
    applied.shaper_running = true;
  }

  const netctl::State::Record known = impl_->state.read_record(enclave_id);
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
  netctl::State::Record now;
  for (std::size_t i = 0; i < ts.size(); ++i) now[ts[i].key()] = partition::chain_rules(rules[i]);
  MODHOST_TRY(impl_->state.write_record(enclave_id, now));
  if (!any_queue && !remote) impl_->shaper.stop(d);

  impl_->state.record_event(
      enclave_id, "partition applied",
      std::to_string(applied.rules) + " rules over " + std::to_string(ts.size()) + " services");
  std::error_code ec;
  if (!plan.temporary) fs::remove(impl_->state.lease(enclave_id), ec);
  return applied;
}

void NetworkControl::forget(const std::string& enclave_id) {
  impl_->forget(enclave_id);
  std::error_code ec;
  fs::remove(impl_->state.events_file(enclave_id), ec);
}

std::vector<NetworkControl::Event> NetworkControl::events(const std::string& enclave_id) const {
  return impl_->state.events(enclave_id);
}

Status NetworkControl::heal(const std::string& enclave_id) { return impl_->heal(enclave_id); }

Result<std::vector<std::string>> NetworkControl::clean_stale() {
  std::vector<std::string> done;
  std::error_code ec;
  if (!fs::exists(impl_->state.root(), ec)) return done;
  for (const auto& entry : fs::directory_iterator(impl_->state.root(), ec)) {
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
      if (!tec && age > std::chrono::minutes(10) && impl_->shaper.namespaces_gone(entry.path()) &&
          !netctl::alive(netctl::read_pid(impl_->state.lease(id)))) {
        impl_->forget(id);
        done.push_back("network state of enclave " + id.substr(0, 12) + " (enclave gone)");
      }
      continue;
    }
    if (!fs::exists(impl_->state.lease(id))) continue;  // a lasting partitioning: heal removes it
    if (netctl::alive(netctl::read_pid(impl_->state.lease(id)))) continue;
    MODHOST_TRY(heal(id));
    done.push_back("partition of enclave " + enclave.value().name + " (" + id.substr(0, 12) +
                   ", its run is gone)");
  }
  return done;
}

}  // namespace modhost::engine
