// The built-in `partition` module: splits its enclave's network into named
// partitions and blocks or degrades traffic between them, or heals it. Run as
//
//   modhost module exec builtin:partition --enclave-id ENCLAVE --execute-params JSON
//
// Execute params (a JSON object; any other key is rejected):
//
//   action            "apply" (default) | "heal" (removes every rule of ours; takes no other key
//                     but dry_run)
//   partitions        object: partition name -> array of service names. Services named in no
//                     partition form the implicit partition "others".
//   connections       array of connection objects, each with "between": [A, B] (two distinct
//                     partitions, "others" included); a pair may be listed once
//   default           a connection object (without "between") for every pair not listed;
//                     absent: such pairs are allowed
//   duration_seconds  > 0: heal automatically after this long; the run waits, and heals early when
//                     cancelled (Ctrl-C / SIGTERM). Absent: the partitioning lasts until a heal.
//   dry_run           true: report the plan, change nothing
//
// A connection object:
//   blocked           true: no packet passes (takes no other key)
//   loss              percent 0..100 of packets dropped
//   delay_ms          >= 0 milliseconds added to each packet
//   jitter_ms         >= 0: uniform +-jitter, or the standard deviation for "normal"
//   correlation       percent 0..100: how much each packet's loss and jitter follow the previous one
//   distribution      "uniform" (default) | "normal"
//   rate              "100kbit", "1mbit", "1gbit" (bits/s), "64kbps", "1mbps" (bytes/s), or a
//                     number of bytes/s: traffic above it is dropped
// Every effect applies to each packet in each direction, so a round trip
// between two partitions crosses it twice (a 100 ms delay adds 200 ms to a
// ping). Services within one partition are never shaped.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "modhost/enclave_context.hpp"
#include "modhost/partitioning.hpp"
#include "modhost/result.hpp"
#include "run_support.hpp"

namespace modhost::partition {

struct Params {
  bool heal = false;
  NetworkPartitioning plan;
  std::optional<std::chrono::milliseconds> duration;
  bool dry_run = false;
};

// Parses and checks the params (not yet against the enclave's services).
// Every error is invalid_argument and names the offending key.
Result<Params> parse_params(std::string_view json);

// "1mbit" -> 125000 bytes/s; nullopt when malformed.
std::optional<std::uint64_t> parse_rate(std::string_view text);

struct Event {
  std::chrono::system_clock::time_point time;
  std::string what;    // "applied" | "healed" | "planned"
  std::string reason;  // healed: "requested" | "duration" | "cancelled" | "failed"
  bool ok = true;
  std::string error;
};

struct Report {
  std::string action;  // "apply" | "heal"
  bool dry_run = false;
  bool cancelled = false;
  // Every partition with its services, "others" included (when not empty).
  std::map<std::string, std::vector<std::string>> partitions;
  // Every shaped pair of non-empty partitions, with the connection in force.
  std::vector<PartitionConnection> pairs;
  std::vector<Event> events;
};

std::string to_json(const Report& report);

// One run: checks the plan against the enclave's services (errors before
// anything changes), applies it, and heals when the duration ends or the run
// is cancelled.
Result<Report> run(EnclaveContext& ctx, const Params& params, modules::Clock& clock,
                   const std::function<bool()>& cancelled);

}  // namespace modhost::partition
