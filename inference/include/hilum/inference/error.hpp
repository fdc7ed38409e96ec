// Hilum inference: errors at the engine's boundary.
#pragma once

#include <string>

#include "hilum/core/expected.hpp"

namespace hilum::inference {

enum class ErrorKind {
  NotFound,     // missing file or tensor
  Invalid,      // malformed file, inconsistent shapes, unexpected tensor
  Unsupported,  // a dtype, activation or architecture we do not run
  TooLarge,     // declared sizes beyond the limits
  Io,           // reading / writing failed
};
[[nodiscard]] const char* to_string(ErrorKind kind);

struct Error {
  ErrorKind kind = ErrorKind::Invalid;
  std::string message;
};

template <typename T>
using Result = core::Expected<T, Error>;
using Status = Result<core::Done>;

}  // namespace hilum::inference
