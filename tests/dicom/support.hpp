// Shared helpers of the dicom/ reader tests: a per-test temporary folder and pixel statistics.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <ostream>
#include <string>
#include <system_error>
#include <vector>

#include "hilum/dicom/display.hpp"
#include "hilum/dicom/error.hpp"
#include "hilum/dicom/radiograph.hpp"
#include "hilum/dicom/reader.hpp"
#include "hilum/testdata/phantom.hpp"
#include "temp_dir_test.hpp"

namespace hilum::testdata {
// Readable parameter values in gtest's output ("GetParam() = rle").
inline void PrintTo(Encoding e, std::ostream* os) { *os << to_string(e); }
}  // namespace hilum::testdata

namespace hilum::test {

namespace fs = std::filesystem;
namespace dcm = hilum::dicom;
namespace td = hilum::testdata;


// The error's text, or "ok" (for assertion messages).
template <typename T>
std::string describe(const dcm::Result<T>& r) {
  if (r.ok()) return "ok";
  return std::string(dcm::to_string(r.error().kind)) + ": " + r.error().message;
}

inline std::size_t index(int columns, int row, int column) {
  return static_cast<std::size_t>(row) * static_cast<std::size_t>(columns) + static_cast<std::size_t>(column);
}

template <typename V>
double box_mean(const std::vector<V>& values, int columns, const td::PixelBox& b) {
  double sum = 0.0;
  std::size_t n = 0;
  for (int r = b.row0; r < b.row1; ++r)
    for (int c = b.col0; c < b.col1; ++c) {
      sum += static_cast<double>(values[index(columns, r, c)]);
      ++n;
    }
  return n ? sum / static_cast<double>(n) : 0.0;
}

struct ErrorStats {
  double mean_abs = 0.0;
  std::int64_t max_abs = 0;
  std::size_t differing = 0;
  std::size_t first_difference = 0;  // index of the first differing pixel (valid when differing > 0)
  double correlation = 0.0;          // Pearson correlation of the two images
};

inline ErrorStats compare(const std::vector<std::int32_t>& expected, const std::vector<std::int32_t>& got) {
  ErrorStats s;
  const std::size_t n = std::min(expected.size(), got.size());
  if (n == 0) return s;
  double sum_abs = 0.0, se = 0.0, sg = 0.0, see = 0.0, sgg = 0.0, seg = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t d = static_cast<std::int64_t>(got[i]) - expected[i];
    const std::int64_t a = d < 0 ? -d : d;
    if (a != 0) {
      if (s.differing == 0) s.first_difference = i;
      ++s.differing;
    }
    s.max_abs = std::max(s.max_abs, a);
    sum_abs += static_cast<double>(a);
    const double e = expected[i], g = got[i];
    se += e;
    sg += g;
    see += e * e;
    sgg += g * g;
    seg += e * g;
  }
  const double dn = static_cast<double>(n);
  s.mean_abs = sum_abs / dn;
  const double cov = seg / dn - (se / dn) * (sg / dn);
  const double ve = see / dn - (se / dn) * (se / dn);
  const double vg = sgg / dn - (sg / dn) * (sg / dn);
  s.correlation = (ve > 0 && vg > 0) ? cov / std::sqrt(ve * vg) : 0.0;
  return s;
}

// Checks that `got` holds exactly `expected`, reporting the first difference instead of two
// hundred thousand numbers.
inline ::testing::AssertionResult same_values(const std::vector<std::int32_t>& expected,
                                              const std::vector<std::int32_t>& got) {
  if (expected.size() != got.size())
    return ::testing::AssertionFailure() << "expected " << expected.size() << " values, got " << got.size();
  const ErrorStats s = compare(expected, got);
  if (s.differing == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << s.differing << " of " << expected.size()
                                       << " values differ; first at index " << s.first_difference << ": expected "
                                       << expected[s.first_difference] << ", got " << got[s.first_difference]
                                       << "; max abs error " << s.max_abs;
}

// True when `text` contains the number n written plainly ("163840") or with thousands
// separators ("163,840", "163 840", "163.840", "163'840").
inline bool mentions_number(const std::string& text, std::uint64_t n) {
  const std::string digits = std::to_string(n);
  if (text.find(digits) != std::string::npos) return true;
  for (const char sep : {',', ' ', '.', '\''}) {
    std::string grouped;
    const std::size_t len = digits.size();
    for (std::size_t i = 0; i < len; ++i) {
      grouped.push_back(digits[i]);
      const std::size_t left = len - i - 1;
      if (left > 0 && left % 3 == 0) grouped.push_back(sep);
    }
    if (text.find(grouped) != std::string::npos) return true;
  }
  return false;
}

// The PhantomSpec used for a given bit layout.
inline td::PhantomSpec phantom(int bits_allocated, int bits_stored, int high_bit, bool is_signed = false,
                               bool monochrome1 = false) {
  td::PhantomSpec p;
  p.bits_allocated = bits_allocated;
  p.bits_stored = bits_stored;
  p.high_bit = high_bit;
  p.is_signed = is_signed;
  p.monochrome1 = monochrome1;
  return p;
}

}  // namespace hilum::test
