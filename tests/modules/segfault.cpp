// Test module: execute dereferences a null pointer (SIGSEGV).
#include <csignal>

#include "modhost/module.hpp"

namespace {
class Segfault final : public modhost::ExecutableModule {
 public:
  modhost::Result<std::string> execute(modhost::EnclaveContext&, std::string_view) override {
    std::raise(SIGSEGV);
    return std::string("unreachable");
  }
};
}  // namespace

MODHOST_MODULE(segfault, Segfault, "0.0.1", "Crashes with SIGSEGV", modhost::ParamsFormat::text)
