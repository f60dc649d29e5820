// Test module: writes to stdout and stderr while loading and executing, and
// logs through its context. Under --isolate none of it may break the handshake.
#include <cstdio>
#include <iostream>

#include "modhost/module.hpp"

namespace {
class Chatty final : public modhost::ExecutableModule {
 public:
  Chatty() {
    std::printf("chatty: stray stdout while loading\n");
    std::fflush(stdout);
  }
  modhost::Result<std::string> execute(modhost::EnclaveContext& ctx, std::string_view params) override {
    std::cout << "chatty: stray stdout while executing" << std::endl;
    std::cerr << "chatty: a line on stderr" << std::endl;
    ctx.log(modhost::LogLevel::warn, "chatty: a warning through the context");
    return std::string(params);
  }
};
}  // namespace

MODHOST_MODULE(chatty, Chatty, "0.0.1", "Prints on stdout and stderr", modhost::ParamsFormat::text)
