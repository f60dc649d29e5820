// The record a run leaves in the enclave (the artifact kRecordArtifact), so
// that a rerun of the same plan skips the prefix already applied, as
// `kurtosis run` does. Internal to the Starlark executor.
#pragma once

#include <boost/json/object.hpp>
#include <set>
#include <string>
#include <vector>

#include "modhost/result.hpp"
#include "starlark/plan.hpp"
#include "starlark/target.hpp"

namespace modhost::starlark::detail {

// One applied instruction: what it was and the values it produced.
struct RecordEntry {
  std::string fingerprint;
  std::string kind;
  boost::json::object values;
};

std::string fingerprint_hash(const Instruction& i);

// The enclave's record; empty when there is none or it cannot be read.
std::vector<RecordEntry> load_record(Target& t);
Status save_record(Target& t, const std::vector<RecordEntry>& record);

// Whether what `i` made is still there (its services, its artifacts): a
// recorded instruction whose effect was undone since runs again.
bool still_applied(const Instruction& i, const std::set<std::string>& services,
                   const std::set<std::string>& artifacts);

}  // namespace modhost::starlark::detail
