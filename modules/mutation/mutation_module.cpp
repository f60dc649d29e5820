// `mutation`: changes the state of services: exec, files, rolling config
// changes, scale. Params and behaviour: mutation.hpp and docs/modules/mutation.md.
#include "modhost/module.hpp"
#include "mutation.hpp"

namespace {

class MutationModule final : public modhost::ExecutableModule {
 public:
  modhost::Result<std::string> execute(modhost::EnclaveContext& ctx, std::string_view params) override {
    MODHOST_ASSIGN_OR_RETURN(modhost::mutation::Params p, modhost::mutation::parse_params(params));
    if (ctx.enclave_id().empty()) {
      return modhost::Error(modhost::ErrorCode::invalid_argument,
                            "mutation acts on an enclave's services: run it with --enclave-id ENCLAVE");
    }
    modhost::modules::SystemClock clock;
    MODHOST_ASSIGN_OR_RETURN(modhost::mutation::Report report, modhost::mutation::run(ctx, p, clock));
    return modhost::mutation::to_json(report);
  }
};

}  // namespace

MODHOST_MODULE(mutation, MutationModule, "1.0.0",
               "Changes services: exec, write files, rolling env/cmd/image changes, scale up or down",
               modhost::ParamsFormat::json)
