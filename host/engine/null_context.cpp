#include "engine/null_context.hpp"

#include <spdlog/spdlog.h>

#include "engine/logging.hpp"

namespace modhost::engine {

void NullEnclaveContext::log(LogLevel level, std::string_view message) {
  auto l = logger("module." + module_name_);
  switch (level) {
    case LogLevel::trace:
      l->trace("{}", message);
      break;
    case LogLevel::debug:
      l->debug("{}", message);
      break;
    case LogLevel::info:
      l->info("{}", message);
      break;
    case LogLevel::warn:
      l->warn("{}", message);
      break;
    case LogLevel::error:
      l->error("{}", message);
      break;
  }
}

Error NullEnclaveContext::no_enclave() const {
  return Error(
      ErrorCode::failed_precondition,
      "module '" + module_name_ + "' has no enclave: run it against an enclave on a container backend");
}

}  // namespace modhost::engine
