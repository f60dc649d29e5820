// Errors are values: every fallible operation returns Result<T>.
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace modhost {

// Broad classes of failure. The CLI maps each to a documented exit code.
enum class ErrorCode {
  invalid_argument = 1,  // the caller's input is wrong
  not_found,             // a named thing does not exist
  already_exists,        // a name is taken
  failed_precondition,   // the system is not in a state to do this
  unavailable,           // a backend, engine or child does not answer
  timeout,               // a deadline passed
  abi_mismatch,          // a plugin was built for another ABI
  module_failed,         // a module returned an error or threw
  crashed,               // a module process died from a signal
  cancelled,             // the user interrupted the operation
  internal,              // a bug in modhost
};

std::string_view to_string(ErrorCode code) noexcept;

class Error {
 public:
  Error(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  ErrorCode code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }

  // Adds context as the error rises: "failed to load 'x': " + message.
  Error context(std::string_view prefix) const { return Error(code_, std::string(prefix) + ": " + message_); }

 private:
  ErrorCode code_;
  std::string message_;
};

// Either a T or an Error. Accessing the wrong alternative is a bug (asserted).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}      // NOLINT: implicit by design
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & {
    assert(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }

  const Error& error() const& {
    assert(!ok());
    return std::get<1>(v_);
  }
  Error&& error() && {
    assert(!ok());
    return std::get<1>(std::move(v_));
  }

 private:
  std::variant<T, Error> v_;
};

struct Ok {};

// Result<void> spelled as Status for readability.
using Status = Result<Ok>;
inline Status ok_status() { return Ok{}; }

}  // namespace modhost

// Propagates an error from a Result-returning expression.
#define MODHOST_TRY(expr)                                                         \
  do {                                                                            \
    auto modhost_try_result_ = (expr);                                            \
    if (!modhost_try_result_.ok()) return std::move(modhost_try_result_).error(); \
  } while (false)

#define MODHOST_CONCAT_INNER_(a, b) a##b
#define MODHOST_CONCAT_(a, b) MODHOST_CONCAT_INNER_(a, b)
// Declares `lhs` from a Result's value, or returns its error.
#define MODHOST_ASSIGN_OR_RETURN(lhs, expr) \
  MODHOST_ASSIGN_OR_RETURN_IMPL_(MODHOST_CONCAT_(modhost_r_, __LINE__), lhs, expr)
#define MODHOST_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return std::move(tmp).error();        \
  lhs = std::move(tmp).value()
