// Hilum core: numbers as text for files, JSON, CSV and the catalog, independent of the locale.
// printf("%g"), std::to_string(double), streams and strtod follow LC_NUMERIC, which the GUI sets
// from the user's environment (Qt calls setlocale): under de_DE a region's 120.5 would be written
// as "120,5" and read back as 120. These use std::to_chars / std::from_chars, which never look at
// the locale. Header-only.
#pragma once

#include <charconv>
#include <cmath>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace hilum::core {

// `v` with at most `digits` significant digits, as printf's "%.<digits>g" writes it in the C
// locale ("120.5", "1e-07", "-0.25"); "" for NaN and infinities (no file format wants them).
inline std::string format_number(double v, int digits = 10) {
  if (!std::isfinite(v)) return {};
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general, digits);
  return r.ec == std::errc{} ? std::string(buf, r.ptr) : std::string();
}

// `v` with exactly `decimals` digits after the point, as "%.<decimals>f" in the C locale.
inline std::string format_fixed(double v, int decimals) {
  if (!std::isfinite(v)) return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
  char buf[400];
  const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, decimals);
  return r.ec == std::errc{} ? std::string(buf, r.ptr) : std::string();
}

// Reads a number at the start of [first, last) ("-12.5e3"; a leading '+' is accepted). Returns the
// end of the number, or nullptr when there is none or it is out of range.
inline const char* parse_number_prefix(const char* first, const char* last, double& out) {
  if (first != last && *first == '+') ++first;
  const auto r = std::from_chars(first, last, out, std::chars_format::general);
  return r.ec == std::errc{} ? r.ptr : nullptr;
}

// The whole of `text` as a finite number, or nothing.
inline std::optional<double> parse_number(std::string_view text) {
  double v = 0.0;
  const char* end = parse_number_prefix(text.data(), text.data() + text.size(), v);
  if (end == nullptr || end != text.data() + text.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

}  // namespace hilum::core
