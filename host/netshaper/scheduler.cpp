#include "netshaper/scheduler.hpp"

#include <algorithm>

namespace modhost::netshaper {

namespace {

// std::*_heap keep the largest first; this puts the earliest first.
bool later(const Held& a, const Held& b) { return a.release > b.release; }

}  // namespace

void ReleaseScheduler::push(const Held& h) {
  heap_.push_back(h);
  std::push_heap(heap_.begin(), heap_.end(), later);
}

std::optional<Clock::time_point> ReleaseScheduler::next_release() const {
  if (heap_.empty()) return std::nullopt;
  return heap_.front().release;
}

std::vector<Held> ReleaseScheduler::pop_due(Clock::time_point now) {
  std::vector<Held> due;
  while (!heap_.empty() && heap_.front().release <= now) {
    std::pop_heap(heap_.begin(), heap_.end(), later);
    due.push_back(heap_.back());
    heap_.pop_back();
  }
  return due;
}

std::vector<Held> ReleaseScheduler::take_if(const std::function<bool(const Held&)>& pred) {
  auto keep_end = std::partition(heap_.begin(), heap_.end(), [&](const Held& h) { return !pred(h); });
  std::vector<Held> taken(keep_end, heap_.end());
  heap_.erase(keep_end, heap_.end());
  std::make_heap(heap_.begin(), heap_.end(), later);
  return taken;
}

}  // namespace modhost::netshaper
