// Hilum app: SHA-256 of files and buffers (OpenSSL EVP), as lowercase hex. The catalog keys the
// content of an imported file by it (same SOP Instance UID + same hash = the same image).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

#include "hilum/app/catalog.hpp"  // Result, Error

namespace hilum::app {

// SHA-256 of a file's bytes, read in 1 MiB pieces; ErrorKind::Io naming the file when it cannot
// be opened or read.
[[nodiscard]] Result<std::string> sha256_file(const std::filesystem::path& path);

// SHA-256 of a buffer (in memory, it cannot fail but for OpenSSL running out of memory, which
// gives "").
[[nodiscard]] std::string sha256_hex(const void* data, std::size_t size);

// HMAC-SHA256(secret, domain NUL key), first 8 bytes as a big-endian integer: stable, keyed
// buckets (patient-level splits, date shifts) that cannot be recomputed without the secret.
[[nodiscard]] std::uint64_t keyed_hash(const std::string& secret, const std::string& domain, const std::string& key);

// The key that groups a patient's images: Patient ID, else the name, else the study.
[[nodiscard]] std::string patient_key(const std::string& patient_id, const std::string& patient_name,
                                      const std::string& study_instance_uid);

}  // namespace hilum::app
