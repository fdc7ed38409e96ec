// Hilum app: a small JSON writer for the CLI's machine-readable output (one object per line).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace hilum::app {

// With the surrounding quotes; bytes that are not well-formed UTF-8 become U+FFFD (the output always parses).
[[nodiscard]] std::string json_escape(std::string_view s);

class JsonObject {
 public:
  JsonObject& add(std::string_view key, std::string_view value);
  JsonObject& add(std::string_view key, const char* value) { return add(key, std::string_view(value)); }
  JsonObject& add(std::string_view key, const std::string& value) { return add(key, std::string_view(value)); }
  JsonObject& add(std::string_view key, double value);
  JsonObject& add(std::string_view key, std::int64_t value);
  JsonObject& add(std::string_view key, int value) { return add(key, static_cast<std::int64_t>(value)); }
  JsonObject& add(std::string_view key, bool value);
  JsonObject& add_null(std::string_view key);
  JsonObject& add_raw(std::string_view key, std::string_view json);  // a nested object or array
  [[nodiscard]] std::string str() const { return "{" + body_ + "}"; }

 private:
  void key(std::string_view k);
  std::string body_;
};

}  // namespace hilum::app
