// Test module: execute throws a std::runtime_error.
#include <stdexcept>

#include "modhost/module.hpp"

namespace {
class Throws final : public modhost::ExecutableModule {
 public:
  modhost::Result<std::string> execute(modhost::EnclaveContext&, std::string_view) override {
    throw std::runtime_error("boom from the throws module");
  }
};
}  // namespace

MODHOST_MODULE(throws, Throws, "0.0.1", "Throws from execute", modhost::ParamsFormat::text)
