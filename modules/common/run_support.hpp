// What the built-in modules share while they run: a clock tests can replace,
// report timestamps, and cancellation by Ctrl-C / SIGTERM.
#pragma once

#include <chrono>
#include <string>

namespace modhost::modules {

// Time as a run sees it; tests and dry runs replace it.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::chrono::steady_clock::time_point now() = 0;
  virtual std::chrono::system_clock::time_point wall_now() = 0;
  virtual void sleep_for(std::chrono::milliseconds d) = 0;
};

class SystemClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point now() override;
  std::chrono::system_clock::time_point wall_now() override;
  void sleep_for(std::chrono::milliseconds d) override;
};

// How often a real run looks at the cancel flag while it waits.
inline constexpr std::chrono::milliseconds kPollStep{100};

// RFC 3339, UTC, milliseconds: 2024-05-01T12:00:00.123Z
std::string format_time(std::chrono::system_clock::time_point t);

// While one lives, SIGINT and SIGTERM set the cancel flag instead of ending
// the process, so a run can restore what it holds; the previous handlers come
// back when the last one goes. Runs in one process share the flag.
class CancelOnSignals {
 public:
  CancelOnSignals();
  ~CancelOnSignals();
  CancelOnSignals(const CancelOnSignals&) = delete;
  CancelOnSignals& operator=(const CancelOnSignals&) = delete;

  // True once SIGINT or SIGTERM arrived during a run.
  static bool cancelled() noexcept;
};

}  // namespace modhost::modules
