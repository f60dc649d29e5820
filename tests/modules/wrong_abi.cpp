// Test module: built for a module ABI this host does not speak.
#define MODHOST_DESCRIPTOR_ABI_VERSION 999
#include "modhost/module.hpp"

namespace {
class WrongAbi final : public modhost::ExecutableModule {
 public:
  modhost::Result<std::string> execute(modhost::EnclaveContext&, std::string_view) override {
    return std::string("must never run");
  }
};
}  // namespace

MODHOST_MODULE(wrong_abi, WrongAbi, "0.0.1", "Built for ABI 999", modhost::ParamsFormat::text)
