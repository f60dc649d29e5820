#include "run_support.hpp"

#include <signal.h>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <thread>

namespace modhost::modules {
namespace {

std::atomic<bool> g_cancel{false};
static_assert(std::atomic<bool>::is_always_lock_free, "the cancel flag is set from a signal handler");

extern "C" void modhost_module_on_signal(int) { g_cancel.store(true); }

std::mutex g_mutex;
int g_users = 0;
struct sigaction g_old_int {};
struct sigaction g_old_term {};

}  // namespace

std::chrono::steady_clock::time_point SystemClock::now() { return std::chrono::steady_clock::now(); }
std::chrono::system_clock::time_point SystemClock::wall_now() { return std::chrono::system_clock::now(); }
void SystemClock::sleep_for(std::chrono::milliseconds d) { std::this_thread::sleep_for(d); }

std::string format_time(std::chrono::system_clock::time_point t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  auto secs = static_cast<std::time_t>(ms / 1000);
  long frac = static_cast<long>(ms % 1000);
  if (frac < 0) {
    frac += 1000;
    --secs;
  }
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[40];
  std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%.*s.%03ldZ", static_cast<int>(n), buf, frac);
  return out;
}

CancelOnSignals::CancelOnSignals() {
  std::lock_guard lock(g_mutex);
  if (g_users++ > 0) return;
  g_cancel.store(false);
  struct sigaction sa {};
  sa.sa_handler = &modhost_module_on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &sa, &g_old_int);
  ::sigaction(SIGTERM, &sa, &g_old_term);
}

CancelOnSignals::~CancelOnSignals() {
  std::lock_guard lock(g_mutex);
  if (--g_users > 0) return;
  ::sigaction(SIGINT, &g_old_int, nullptr);
  ::sigaction(SIGTERM, &g_old_term, nullptr);
}

bool CancelOnSignals::cancelled() noexcept { return g_cancel.load(); }

}  // namespace modhost::modules
