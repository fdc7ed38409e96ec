// Hilum core: a value or an error (std::expected is C++23; this is the small part of it we use).
// Header-only; every library defines its own error type and a Result<T> alias over this.
#pragma once

#include <cassert>
#include <utility>
#include <variant>

namespace hilum::core {

template <typename T, typename E>
class Expected {
 public:
  Expected(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Expected(E error) : v_(std::move(error)) {}      // NOLINT(google-explicit-constructor)

  [[nodiscard]] bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }

  [[nodiscard]] T& value() & { assert(ok()); return std::get<T>(v_); }
  [[nodiscard]] const T& value() const& { assert(ok()); return std::get<T>(v_); }
  [[nodiscard]] T&& value() && { assert(ok()); return std::get<T>(std::move(v_)); }
  [[nodiscard]] const E& error() const { assert(!ok()); return std::get<E>(v_); }

  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, E> v_;
};

// For operations that return nothing but can fail.
struct Done {};

}  // namespace hilum::core
