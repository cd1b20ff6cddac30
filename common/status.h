// Status and StatusOr<T>: errors as values.
//
// Every fallible function returns Status or StatusOr<T>. A Status carries a code and a message that
// says what was wrong and where (file, tensor name, byte offset, config key, peer rank).
// Thread-safety: values; copying is cheap enough for error paths and free for OK.
#pragma once

#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace switchyard {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,
  kNotFound,
  kAlreadyExists,
  kOutOfRange,
  kFailedPrecondition,
  kUnimplemented,
  kInternal,
  kUnavailable,
  kDeadlineExceeded,
  kDataLoss,
  kResourceExhausted,
  kCancelled,
};

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "CODE: message", or "OK".
  std::string ToString() const;
  // Returns a copy whose message is "prefix: message" (context added on the way up).
  Status WithContext(const std::string& prefix) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status OkStatus() { return Status(); }
Status InvalidArgumentError(std::string msg);
Status NotFoundError(std::string msg);
Status OutOfRangeError(std::string msg);
Status FailedPreconditionError(std::string msg);
Status UnimplementedError(std::string msg);
Status InternalError(std::string msg);
Status UnavailableError(std::string msg);
Status DeadlineExceededError(std::string msg);
Status DataLossError(std::string msg);
Status ResourceExhaustedError(std::string msg);
Status CancelledError(std::string msg);

// Holds either a T or a non-OK Status. Accessing value() of an error aborts (a broken invariant).
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(const Status& status) : data_(status) { CheckNotOk(); }  // NOLINT: implicit by design
  StatusOr(Status&& status) : data_(std::move(status)) { CheckNotOk(); }  // NOLINT
  StatusOr(const T& value) : data_(value) {}                              // NOLINT
  StatusOr(T&& value) : data_(std::move(value)) {}                        // NOLINT

  bool ok() const { return std::holds_alternative<T>(data_); }
  Status status() const { return ok() ? OkStatus() : std::get<Status>(data_); }

  T& value() & {
    CheckOk();
    return std::get<T>(data_);
  }
  const T& value() const& {
    CheckOk();
    return std::get<T>(data_);
  }
  T&& value() && {
    CheckOk();
    return std::get<T>(std::move(data_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  void CheckNotOk() const;
  void CheckOk() const;
  std::variant<Status, T> data_;
};

[[noreturn]] void StatusOrAbort(const char* what, const Status* status);

template <typename T>
void StatusOr<T>::CheckNotOk() const {
  if (std::get<Status>(data_).ok()) StatusOrAbort("StatusOr constructed from OK status", nullptr);
}
template <typename T>
void StatusOr<T>::CheckOk() const {
  if (!ok()) StatusOrAbort("value() on error StatusOr", &std::get<Status>(data_));
}

}  // namespace switchyard

#define SY_CONCAT_INNER(a, b) a##b
#define SY_CONCAT(a, b) SY_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function if `expr` is not OK.
#define RETURN_IF_ERROR(expr)                 \
  do {                                        \
    ::switchyard::Status sy_status_ = (expr); \
    if (!sy_status_.ok()) return sy_status_;  \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, F());` declares x from F()'s value, or returns F()'s error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  SY_ASSIGN_OR_RETURN_IMPL(SY_CONCAT(sy_statusor_, __LINE__), lhs, expr)
#define SY_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(tmp).value()

// For broken invariants only (never for bad input): prints and aborts.
#define SY_CHECK(cond)                                                 \
  do {                                                                 \
    if (!(cond)) ::switchyard::CheckFailed(__FILE__, __LINE__, #cond); \
  } while (0)

namespace switchyard {
[[noreturn]] void CheckFailed(const char* file, int line, const char* cond);
}  // namespace switchyard
