#include "modhost/result.hpp"

#include "modhost/types.hpp"

namespace modhost {

std::string_view to_string(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::invalid_argument:
      return "invalid_argument";
    case ErrorCode::not_found:
      return "not_found";
    case ErrorCode::already_exists:
      return "already_exists";
    case ErrorCode::failed_precondition:
      return "failed_precondition";
    case ErrorCode::unavailable:
      return "unavailable";
    case ErrorCode::timeout:
      return "timeout";
    case ErrorCode::abi_mismatch:
      return "abi_mismatch";
    case ErrorCode::module_failed:
      return "module_failed";
    case ErrorCode::crashed:
      return "crashed";
    case ErrorCode::cancelled:
      return "cancelled";
    case ErrorCode::internal:
      return "internal";
  }
  return "unknown";
}

const char* to_string(ServiceStatus s) noexcept {
  switch (s) {
    case ServiceStatus::created:
      return "created";
    case ServiceStatus::running:
      return "running";
    case ServiceStatus::paused:
      return "paused";
    case ServiceStatus::stopped:
      return "stopped";
    case ServiceStatus::exited:
      return "exited";
    case ServiceStatus::unknown:
      return "unknown";
  }
  return "unknown";
}

}  // namespace modhost
