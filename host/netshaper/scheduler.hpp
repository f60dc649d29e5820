// Packets held back, in the order they are due.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

namespace modhost::netshaper {

using Clock = std::chrono::steady_clock;

// One held packet: when it may go, and how to name it in the verdict.
struct Held {
  Clock::time_point release;
  std::uint64_t namespace_key = 0;  // stable across reloads, never reused
  std::uint16_t queue = 0;
  std::uint32_t packet_id = 0;
};

// A min-heap on the release time. Packets of one queue may leave in another
// order than they came (jitter reorders, as netem does with jitter).
class ReleaseScheduler {
 public:
  void push(const Held& h);
  bool empty() const { return heap_.empty(); }
  std::size_t size() const { return heap_.size(); }
  // The earliest release time, if anything is held.
  std::optional<Clock::time_point> next_release() const;
  // Removes and returns every packet due at `now`, earliest first.
  std::vector<Held> pop_due(Clock::time_point now);
  // Removes and returns every held packet that `pred` selects, in no order.
  std::vector<Held> take_if(const std::function<bool(const Held&)>& pred);

 private:
  std::vector<Held> heap_;
};

}  // namespace modhost::netshaper
