// The built-in `chaos` module: kills, stops, pauses, restarts or removes
// services of its enclave, once or on a schedule, and restores what it paused
// or stopped. Run it as
//
//   modhost module exec builtin:chaos --enclave-id ENCLAVE --execute-params JSON
//
// Execute params (a JSON object; any other key is rejected):
//
//   action            "kill" | "stop" | "pause" | "restart" | "remove" (required)
//   signal            kill only: a name ("SIGKILL", "TERM", "usr1") or a number 1..64; default SIGKILL
//   grace_seconds     stop only: integer seconds between SIGTERM and SIGKILL; default 10
//   pause_seconds     pause only: seconds a service stays paused before it is unpaused; default 10
//   services          target names (every name must exist in the enclave)
//   regex             ECMAScript regex searched in service names (anchor with ^...$)
//   labels            object K -> V: a target carries every one of these labels
//                     At least one of services/regex/labels; a target satisfies all that are given.
//   count             integer >= 1: that many random targets among the matches (all if fewer)
//   percentage        0 < p <= 100: ceil(p% of the matches) random targets, at least 1
//                     (count and percentage exclude each other)
//   interval_seconds  > 0: a new round (targets reselected) every interval; needs
//                     duration_seconds and/or repeat
//   duration_seconds  >= 0: the run lasts this long; what it paused or stopped is restored when it ends
//   repeat            integer >= 1: at most this many rounds
//   seed              unsigned 64-bit integer seeding the one std::mt19937_64 behind every random
//                     choice; generated when absent; always printed in the report
//   dry_run           true: report what would be done (with planned times), change nothing
//
// Never targeted: services labelled io.modhost.protected=true, module
// containers (io.modhost.kind=module), services this run holds paused or
// stopped, and services whose state the action cannot apply to (kill, stop
// and pause need a running service; restart one that is not paused).
//
// The logic below is pure or works only through an EnclaveContext and a
// Clock, so it is tested without a container backend.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "modhost/enclave_context.hpp"
#include "modhost/result.hpp"
#include "modhost/types.hpp"
#include "run_support.hpp"

namespace modhost::chaos {

enum class Action { kill, stop, pause, restart, remove };
std::string_view to_string(Action action) noexcept;

struct Params {
  Action action = Action::kill;
  int signal = 9;                           // kill
  int grace_seconds = 10;                   // stop
  std::chrono::milliseconds pause{10'000};  // pause
  std::vector<std::string> services;        // sorted, unique
  std::string regex_text;                   // empty: no regex
  std::optional<std::regex> regex;          // compiled regex_text
  std::map<std::string, std::string> labels;
  std::optional<std::uint64_t> count;
  std::optional<double> percentage;
  std::optional<std::chrono::milliseconds> interval;
  std::optional<std::chrono::milliseconds> duration;
  std::optional<std::uint64_t> repeat;
  std::optional<std::uint64_t> seed;
  bool dry_run = false;
};

// The keys parse_params accepts, in documentation order.
const std::vector<std::string>& known_keys();

// Parses and validates execute params. Every error is invalid_argument.
Result<Params> parse_params(std::string_view json);

// "SIGKILL", "kill", "TERM", "9" -> the signal number; nullopt when unknown.
std::optional<int> parse_signal(std::string_view text);

// ceil(percentage% of n), at least 1 when n > 0, at most n.
std::size_t percentage_count(double percentage, std::size_t n) noexcept;

// A uniform integer in [0, bound) from the generator (bound > 0), the same on
// every standard library (unlike std::uniform_int_distribution).
std::uint64_t uniform_below(std::mt19937_64& rng, std::uint64_t bound);

// True for services chaos never touches: protected ones and module containers.
bool untouchable(const ServiceInfo& service);

// "services [a, b], regex '^db', labels {team=qa}"
std::string describe_targets(const Params& params);

// The services of one round that satisfy the target criteria, sorted by name,
// and why the other criteria-matching ones were left out.
struct Matches {
  std::vector<std::string> eligible;
  std::vector<std::string> untouchable;  // protected or module
  std::vector<std::string> held;         // paused or stopped by this run, not yet restored
  std::vector<std::string> wrong_state;  // "name (status)"
};
Matches match_services(const Params& params, const std::vector<ServiceInfo>& services,
                       const std::set<std::string>& held);

// invalid_argument naming the first entry of `services` the enclave lacks.
Status check_named_services(const Params& params, const std::vector<ServiceInfo>& services);

// The error message for an empty target set.
std::string no_match_message(const Params& params, const Matches& matches);

// Targets among `eligible` (sorted): all of them, or `count` / `percentage`
// of them chosen with `rng`, in the order drawn.
std::vector<std::string> choose_targets(const Params& params, std::vector<std::string> eligible,
                                        std::mt19937_64& rng);

// --- The report ---

struct ActionRecord {
  std::chrono::system_clock::time_point time;
  std::uint64_t round = 0;
  Action action = Action::kill;
  std::string service;
  std::optional<int> signal;                       // kill
  std::optional<int> grace_seconds;                // stop
  std::optional<std::chrono::milliseconds> pause;  // pause
  bool ok = true;
  std::string error;
};

struct RestoreRecord {
  std::chrono::system_clock::time_point time;
  std::uint64_t round = 0;  // the round that paused or stopped the service
  std::string action;       // "unpause" | "start"
  std::string service;
  bool ok = true;
  std::string error;
};

struct Report {
  std::uint64_t seed = 0;
  bool dry_run = false;
  bool cancelled = false;
  std::uint64_t rounds = 0;
  std::vector<ActionRecord> actions;
  std::vector<RestoreRecord> restored;
};

using modules::format_time;

// {"seed":..,"dryRun":..,"cancelled":..,"rounds":..,"actions":[..],"restored":[..]}
std::string to_json(const Report& report);

// --- Running ---

using modules::Clock;
using modules::kPollStep;
using modules::SystemClock;

// One run: checks the targets against the enclave (errors before anything
// changes), runs the rounds, releases pauses when due and restores what it
// still holds at the end, on cancellation (`cancelled()` turns true) or when
// the duration ends. Failures of single actions are recorded, not returned.
Result<Report> run(EnclaveContext& ctx, const Params& params, Clock& clock,
                   const std::function<bool()>& cancelled);

}  // namespace modhost::chaos
