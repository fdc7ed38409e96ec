// Internal to app/: small text helpers shared by the workflows.
#pragma once

#include <array>
#include <cctype>
#include <charconv>
#include <string>

namespace hilum::app {

// ASCII lower case (finding names, headers, file extensions).
inline std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Without leading and trailing white space.
inline std::string trim(const std::string& s) {
  const char* space = " \t\r\n\f\v";
  const auto first = s.find_first_not_of(space);
  if (first == std::string::npos) return {};
  return s.substr(first, s.find_last_not_of(space) - first + 1);
}

// A number with `digits` decimals, '.' as the decimal point whatever the locale.
inline std::string fixed(double value, int digits) {
  std::array<char, 64> buffer{};
  const auto [end, ec] = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value, std::chars_format::fixed, digits);
  if (ec != std::errc{}) return "nan";
  return std::string(buffer.data(), end);
}

}  // namespace hilum::app
