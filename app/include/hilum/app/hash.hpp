// Hilum app: SHA-256 of files and buffers (OpenSSL EVP), as lowercase hex. The catalog keys the
// content of an imported file by it (same SOP Instance UID + same hash = the same image).
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>

namespace hilum::app {

// SHA-256 of a file's bytes, read in 1 MiB pieces. Empty string on failure, with the reason in
// *error when error is not null.
[[nodiscard]] std::string sha256_file(const std::filesystem::path& path, std::string* error = nullptr);

// SHA-256 of a buffer.
[[nodiscard]] std::string sha256_hex(const void* data, std::size_t size);

}  // namespace hilum::app
