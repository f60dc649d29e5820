// An enclave's timeline: what its containers went through (from the backend)
// and what network control did to it, merged in time order.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "modhost/result.hpp"

namespace modhost::engine {

class Engine;

struct TimelineEvent {
  std::int64_t time_ns = 0;
  std::string kind;     // service | module | helper | network
  std::string subject;  // a container's name; "network" for network control
  std::string action;   // start, kill, die, ... | "partition applied" | "healed"
  std::map<std::string, std::string> attributes;
};

using TimelineSink = std::function<bool(const TimelineEvent&)>;

// Every event so far, oldest first; with `follow`, then new ones as they
// happen until the sink returns false (or the process ends).
Status enclave_timeline(Engine& engine, const std::string& enclave_id, bool follow, const TimelineSink& sink);

}  // namespace modhost::engine
