#include "engine/events.hpp"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/engine.hpp"
#include "engine/network_control.hpp"

namespace modhost::engine {
namespace {

TimelineEvent from_backend(const backend::EnclaveEvent& e) {
  return TimelineEvent{e.time_ns, e.kind, e.subject, e.action, e.attributes};
}

TimelineEvent from_network(const NetworkControl::Event& e) {
  TimelineEvent t{e.time_ns, "network", "network", e.action, {}};
  if (!e.detail.empty()) t.attributes["detail"] = e.detail;
  return t;
}

}  // namespace

Status enclave_timeline(Engine& engine, const std::string& enclave_id, bool follow,
                        const TimelineSink& sink) {
  MODHOST_ASSIGN_OR_RETURN(backend::Backend * b, engine.backend());
  MODHOST_ASSIGN_OR_RETURN(NetworkControl * net, engine.network());

  // History: both sources, merged.
  std::vector<TimelineEvent> history;
  MODHOST_TRY(b->events(enclave_id, false, [&](const backend::EnclaveEvent& e) {
    history.push_back(from_backend(e));
    return true;
  }));
  for (const auto& e : net->events(enclave_id)) history.push_back(from_network(e));
  std::stable_sort(history.begin(), history.end(),
                   [](const TimelineEvent& x, const TimelineEvent& y) { return x.time_ns < y.time_ns; });
  std::int64_t last_backend = 0, last_network = 0;
  for (const TimelineEvent& e : history) {
    std::int64_t& last = e.kind == "network" ? last_network : last_backend;
    last = std::max(last, e.time_ns);
    if (!sink(e)) return ok_status();
  }
  if (!follow) return ok_status();

  // Live: the backend's stream, and network control's record looked at
  // every quarter second; one sink call at a time.
  std::mutex mutex;
  std::atomic<bool> stop{false};
  auto emit = [&](const TimelineEvent& e) {
    std::lock_guard lock(mutex);
    if (stop) return false;
    if (!sink(e)) stop = true;
    return !stop.load();
  };
  std::thread network_watch([&] {
    while (!stop) {
      for (const auto& e : net->events(enclave_id)) {
        if (e.time_ns <= last_network) continue;
        last_network = e.time_ns;
        if (!emit(from_network(e))) return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
  });
  Status s = b->events(enclave_id, true, [&](const backend::EnclaveEvent& e) {
    if (e.time_ns <= last_backend) return !stop.load();  // already shown
    return emit(from_backend(e));
  });
  stop = true;
  network_watch.join();
  return s;
}

}  // namespace modhost::engine
