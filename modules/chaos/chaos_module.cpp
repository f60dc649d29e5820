// `chaos`: kills, stops, pauses, restarts or removes services of its enclave.
// Params and behaviour: chaos.hpp and docs/modules/chaos.md.
#include <signal.h>

#include <atomic>
#include <mutex>

#include "chaos.hpp"
#include "modhost/module.hpp"

namespace {

// Set by SIGINT/SIGTERM while a run is under way; the run then restores what
// it holds and reports "cancelled": true.
std::atomic<bool> g_cancel{false};
static_assert(std::atomic<bool>::is_always_lock_free, "the cancel flag is set from a signal handler");

extern "C" void chaos_on_signal(int) { g_cancel.store(true); }

// Installs the handler for the length of a run, and puts back the previous
// ones afterwards. Runs in one process share it.
class CancelOnSignals {
 public:
  CancelOnSignals() {
    std::lock_guard lock(mutex());
    if (users()++ > 0) return;
    g_cancel.store(false);
    struct sigaction sa {};
    sa.sa_handler = &chaos_on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    ::sigaction(SIGINT, &sa, &old_int());
    ::sigaction(SIGTERM, &sa, &old_term());
  }
  ~CancelOnSignals() {
    std::lock_guard lock(mutex());
    if (--users() > 0) return;
    ::sigaction(SIGINT, &old_int(), nullptr);
    ::sigaction(SIGTERM, &old_term(), nullptr);
  }
  CancelOnSignals(const CancelOnSignals&) = delete;
  CancelOnSignals& operator=(const CancelOnSignals&) = delete;

 private:
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  static int& users() {
    static int n = 0;
    return n;
  }
  static struct sigaction& old_int() {
    static struct sigaction s {};
    return s;
  }
  static struct sigaction& old_term() {
    static struct sigaction s {};
    return s;
  }
};

class ChaosModule final : public modhost::ExecutableModule {
 public:
  modhost::Result<std::string> execute(modhost::EnclaveContext& ctx, std::string_view params) override {
    MODHOST_ASSIGN_OR_RETURN(modhost::chaos::Params p, modhost::chaos::parse_params(params));
    if (ctx.enclave_id().empty()) {
      return modhost::Error(modhost::ErrorCode::invalid_argument,
                            "chaos acts on an enclave's services: run it with --enclave-id ENCLAVE");
    }
    CancelOnSignals on_signals;
    modhost::chaos::SystemClock clock;
    std::function<bool()> cancelled = [] { return g_cancel.load(); };
    MODHOST_ASSIGN_OR_RETURN(modhost::chaos::Report report, modhost::chaos::run(ctx, p, clock, cancelled));
    return modhost::chaos::to_json(report);
  }
};

}  // namespace

MODHOST_MODULE(chaos, ChaosModule, "1.0.0",
               "Kills, stops, pauses, restarts or removes services on a schedule, and restores what it held",
               modhost::ParamsFormat::json)
