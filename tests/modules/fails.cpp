// Test module: execute returns an error value; load params "fail" fail the load.
#include "modhost/module.hpp"

namespace {
class Fails final : public modhost::ExecutableModule {
 public:
  static modhost::Result<std::unique_ptr<modhost::ExecutableModule>> create(std::string_view load_params) {
    if (load_params == "fail") return modhost::Error(modhost::ErrorCode::invalid_argument, "load refused");
    return std::unique_ptr<modhost::ExecutableModule>(std::make_unique<Fails>());
  }
  modhost::Result<std::string> execute(modhost::EnclaveContext&, std::string_view) override {
    return modhost::Error(modhost::ErrorCode::module_failed, "the fails module always fails");
  }
};
}  // namespace

MODHOST_MODULE(fails, Fails, "0.0.1", "Returns an error", modhost::ParamsFormat::text)
