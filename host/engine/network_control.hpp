// Network control of enclaves: applies a NetworkPartitioning as kernel rules
// inside each service's network namespace (entered from this host, so the
// backend must run here), runs the packet shaper the rules feed, and removes
// exactly what it made on heal, on `modhost clean`, and after a crash. An
// engine elsewhere is reached through helper containers instead.
//
// State kept on the host, per enclave, under the runtime dir:
//   pids.json / rules.json                                    where each namespace is, what it holds
//   shaper.json / shaper.pid / shaper.applied / shaper.log   the shaper
//   lease                                                     holder of a temporary partitioning
// and `<enclave>.events` beside them, the timeline.
//
// Its parts (network_parts.hpp): network_state.cpp, network_shaper.cpp,
// network_helpers.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backends/backend.hpp"
#include "modhost/partitioning.hpp"

namespace modhost::engine {

struct NetworkControlOptions {
  std::string runtime_dir = "/run/modhost/net";
  // modhost-netshaper; empty: next to the running executable, then PATH.
  std::string shaper_path;
  std::chrono::milliseconds shaper_timeout{5000};
  int parallelism = 8;
};

// What one apply did, for reports and progress.
struct PartitionApplied {
  int namespaces = 0;  // namespaces whose rules changed
  int rules = 0;       // destination rules in force
  bool shaper_running = false;
};

class NetworkControl {
 public:
  NetworkControl(backend::Backend& backend, NetworkControlOptions options);
  ~NetworkControl();
  NetworkControl(const NetworkControl&) = delete;
  NetworkControl& operator=(const NetworkControl&) = delete;

  // Validates `plan` against the enclave's services, then makes every running
  // service's namespace hold its rules. Each namespace switches in one
  // transaction; a failure heals the whole enclave and says what failed.
  Result<PartitionApplied> repartition(const std::string& enclave_id, const NetworkPartitioning& plan);

  // Removes every rule of ours from the enclave's services and stops its shaper.
  Status heal(const std::string& enclave_id);

  // Stops the enclave's shaper and drops its state and its events, for an
  // enclave being removed.
  void forget(const std::string& enclave_id);

  // What network control did to the enclave (applied, healed), oldest first.
  struct Event {
    std::int64_t time_ns = 0;
    std::string action;  // "partition applied" | "healed"
    std::string detail;  // e.g. "12 rules in 4 namespaces"
  };
  std::vector<Event> events(const std::string& enclave_id) const;

  // For `modhost clean`: heals enclaves whose temporary partitioning outlived
  // the process that held it, and forgets enclaves that are gone.
  Result<std::vector<std::string>> clean_stale();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace modhost::engine
