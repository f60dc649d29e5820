// Test module: execute sleeps for the number of milliseconds in its params
// (default: an hour).
#include <chrono>
#include <string>
#include <thread>

#include "modhost/module.hpp"

namespace {
class Hang final : public modhost::ExecutableModule {
 public:
  modhost::Result<std::string> execute(modhost::EnclaveContext&, std::string_view params) override {
    long ms = params.empty() ? 3'600'000 : std::stol(std::string(params));
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return std::string("woke up");
  }
};
}  // namespace

MODHOST_MODULE(hang, Hang, "0.0.1", "Sleeps for PARAMS milliseconds", modhost::ParamsFormat::text)
