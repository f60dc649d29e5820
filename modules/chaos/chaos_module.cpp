// `chaos`: kills, stops, pauses, restarts or removes services of its enclave.
// Params and behaviour: chaos.hpp and docs/modules/chaos.md.
#include "chaos.hpp"
#include "modhost/module.hpp"

namespace {

class ChaosModule final : public modhost::ExecutableModule {
 public:
  modhost::Result<std::string> execute(modhost::EnclaveContext& ctx, std::string_view params) override {
    MODHOST_ASSIGN_OR_RETURN(modhost::chaos::Params p, modhost::chaos::parse_params(params));
    if (ctx.enclave_id().empty()) {
      return modhost::Error(modhost::ErrorCode::invalid_argument,
                            "chaos acts on an enclave's services: run it with --enclave-id ENCLAVE");
    }
    modhost::modules::CancelOnSignals on_signals;
    modhost::chaos::SystemClock clock;
    std::function<bool()> cancelled = [] { return modhost::modules::CancelOnSignals::cancelled(); };
    MODHOST_ASSIGN_OR_RETURN(modhost::chaos::Report report, modhost::chaos::run(ctx, p, clock, cancelled));
    return modhost::chaos::to_json(report);
  }
};

}  // namespace

MODHOST_MODULE(chaos, ChaosModule, "1.0.0",
               "Kills, stops, pauses, restarts or removes services on a schedule, and restores what it held",
               modhost::ParamsFormat::json)
