// Shared by tests that write DICOM bytes themselves: little-endian integers appended to a string.
#pragma once

#include <cstdint>
#include <string>

namespace hilum::test {

inline void put16(std::string& out, std::uint32_t v) {
  out.push_back(static_cast<char>(v & 0xFF));
  out.push_back(static_cast<char>((v >> 8) & 0xFF));
}

inline void put32(std::string& out, std::uint32_t v) {
  put16(out, v & 0xFFFF);
  put16(out, v >> 16);
}

}  // namespace hilum::test
