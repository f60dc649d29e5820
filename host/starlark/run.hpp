// Validating and executing a Starlark plan against one enclave.
#pragma once

#include <atomic>
#include <boost/json/value.hpp>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "modhost/result.hpp"
#include "starlark/plan.hpp"
#include "starlark/target.hpp"

namespace modhost::starlark {

// The artifact where an enclave keeps what runs applied to it (for reruns).
inline constexpr const char* kRecordArtifact = "modhost-starlark-plan";
// Labels on services a plan added.
inline constexpr const char* kLabelStarlark = "modhost.starlark";           // "true"
inline constexpr const char* kLabelSubnetwork = "modhost.subnetwork";       // its subnetwork
inline constexpr const char* kLabelAppProtocols = "modhost.app-protocols";  // "id=proto,..."

struct RunOptions {
  bool dry_run = false;
  int parallelism = 4;  // add_services
  // Skip instructions an earlier run of the same plan applied (Kurtosis' idempotent runs).
  bool skip_applied = true;
};

struct RunEvent {
  enum class Kind { instruction, result, skipped, progress };
  Kind kind = Kind::progress;
  std::size_t index = 0;
  std::string text;  // instruction: its description; result: what it did; progress: a line
};
using RunSink = std::function<void(const RunEvent&)>;

struct RunReport {
  boost::json::value output;  // run()'s value, resolved
  std::size_t executed = 0;
  std::size_t skipped = 0;
  std::vector<std::string> results;  // per instruction, what it did ("" when not reached)
  bool validated = false;            // false: refused before anything changed
};

// One problem found by validation.
struct Problem {
  std::string position;
  std::string message;
};

// What is in the enclave before a run: its services and artifacts (both
// empty for an enclave that does not exist yet).
struct EnclaveSnapshot {
  std::vector<ServiceInfo> services;
  std::vector<backend::ArtifactInfo> artifacts;
};
Result<EnclaveSnapshot> snapshot(Target& target);

// Every problem of the plan against the enclave as `enclave` shows it, in
// plan order; none when it may run. `skip` instructions at the start are
// already applied.
std::vector<Problem> validate(const Plan& plan, Target& target, std::size_t skip,
                              const EnclaveSnapshot& enclave);

// Validates, then (unless a dry run) executes instruction by instruction,
// stopping at the first failure (its error names the instruction's position;
// what ran stays, as Kurtosis keeps the enclave). `cancelled` is polled
// between instructions and in waits.
// `report` says how far it got, also on failure.
Status run(const Plan& plan, Target& target, const RunOptions& options, const RunSink& sink,
           const std::function<bool()>& cancelled, RunReport& report);

}  // namespace modhost::starlark
