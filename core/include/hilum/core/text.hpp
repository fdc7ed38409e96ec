// Small text helpers shared by the catalog and the workflows (ASCII case, UTF-8 checks, excerpts).
#pragma once

#include <cctype>
#include <cstddef>
#include <string>
#include <string_view>

namespace hilum::core {

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

// The length of the well-formed UTF-8 sequence that starts at s[i] (RFC 3629: no overlong forms,
// no surrogates, nothing above U+10FFFF), or 0 when the bytes there are not one.
inline std::size_t utf8_sequence(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const auto cont = [&](std::size_t k) { return i + k < s.size() && (b(k) & 0xC0) == 0x80; };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(1) < 0xA0) return 0;  // overlong
    if (c == 0xED && b(1) > 0x9F) return 0;  // UTF-16 surrogates
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;  // overlong
    if (c == 0xF4 && b(1) > 0x8F) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

inline bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = utf8_sequence(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// A value from a file quoted in a message: at most `limit` bytes of it (cut between characters),
// then how long it was, so that a megabyte-long field is never echoed whole ("\"abc...\"... (1048576 bytes)").
inline std::string quoted_excerpt(std::string_view value, std::size_t limit = 60) {
  if (value.size() <= limit) return "\"" + std::string(value) + "\"";
  std::size_t cut = limit;
  while (cut > 0 && (static_cast<unsigned char>(value[cut]) & 0xC0) == 0x80) --cut;  // not inside a UTF-8 sequence
  return "\"" + std::string(value.substr(0, cut)) + "\"... (" + std::to_string(value.size()) + " bytes)";
}

// nlohmann::json's dump for documents that may hold bytes from files: invalid UTF-8 becomes U+FFFD
// instead of an exception, so that what Hilum writes always parses.
template <typename Json>
std::string dump_json(const Json& j, int indent = -1) {
  return j.dump(indent, ' ', false, Json::error_handler_t::replace);
}

}  // namespace hilum::core
