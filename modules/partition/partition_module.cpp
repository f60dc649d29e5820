// `partition`: splits the enclave's network into partitions and blocks or
// degrades traffic between them, or heals it. Params and behaviour:
// partition.hpp and docs/modules/partition.md.
#include "modhost/module.hpp"
#include "partition.hpp"

namespace {

class PartitionModule final : public modhost::ExecutableModule {
 public:
  modhost::Result<std::string> execute(modhost::EnclaveContext& ctx, std::string_view params) override {
    MODHOST_ASSIGN_OR_RETURN(modhost::partition::Params p, modhost::partition::parse_params(params));
    if (ctx.enclave_id().empty()) {
      return modhost::Error(modhost::ErrorCode::invalid_argument,
                            "partition acts on an enclave's network: run it with --enclave-id ENCLAVE");
    }
    modhost::modules::CancelOnSignals on_signals;
    modhost::modules::SystemClock clock;
    MODHOST_ASSIGN_OR_RETURN(modhost::partition::Report report, modhost::partition::run(ctx, p, clock, [] {
                               return modhost::modules::CancelOnSignals::cancelled();
                             }));
    return modhost::partition::to_json(report);
  }
};

}  // namespace

MODHOST_MODULE(
    partition, PartitionModule, "1.0.0",
    "Splits the enclave network into partitions; blocks, delays or drops traffic between them; heals",
    modhost::ParamsFormat::json)
