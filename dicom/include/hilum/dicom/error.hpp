// Hilum: the dicom/ boundary's error type. Every DCMTK OFCondition and every decoder status is
// turned into one of these, with a reason a person understands.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace hilum::dicom {

enum class ErrorKind {
  FileNotFound,   // missing or unreadable file
  NotDicom,       // not a DICOM file at all
  NotAnImage,     // a DICOM object without pixel data (SR, presentation state, ...)
  Unsupported,    // an image we deliberately do not read (colour, 32-bit, multi-sample ...)
  Truncated,      // the file ends before the data it declares
  Corrupt,        // inconsistent or invalid attributes
  TooLarge,       // declared dimensions beyond the limits (protects memory)
  DecodeFailed,   // the codec rejected the compressed pixel data
};

[[nodiscard]] const char* to_string(ErrorKind kind);

struct Error {
  ErrorKind kind = ErrorKind::Corrupt;
  std::string message;  // e.g. "not an image: Basic Text SR"
};

// A value or an error (std::expected is C++23; this is the small part of it we need).
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}          // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}      // NOLINT(google-explicit-constructor)

  [[nodiscard]] bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }

  [[nodiscard]] T& value() & { assert(ok()); return std::get<T>(v_); }
  [[nodiscard]] const T& value() const& { assert(ok()); return std::get<T>(v_); }
  [[nodiscard]] T&& value() && { assert(ok()); return std::get<T>(std::move(v_)); }
  [[nodiscard]] const Error& error() const { assert(!ok()); return std::get<Error>(v_); }

  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Error> v_;
};

}  // namespace hilum::dicom
