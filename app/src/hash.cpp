#include "hilum/app/hash.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

namespace hilum::app {
namespace {

struct MdCtxFree { void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); } };
struct FileCloser { void operator()(std::FILE* f) const { if (f) std::fclose(f); } };

std::string to_hex(const unsigned char* digest, unsigned int length) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * static_cast<std::size_t>(length), '0');
  for (unsigned int i = 0; i < length; ++i) {
    out[2 * i] = kDigits[digest[i] >> 4];
    out[2 * i + 1] = kDigits[digest[i] & 0x0f];
  }
  return out;
}

}  // namespace

Result<std::string> sha256_file(const std::filesystem::path& path) {
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (!file) return Error{ErrorKind::Io, "cannot open " + path.string() + ": " + std::strerror(errno)};
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    return Error{ErrorKind::Io, "SHA-256 of " + path.string() + ": cannot initialise OpenSSL's digest"};
  }
  std::vector<unsigned char> buffer(std::size_t{1} << 20);
  for (;;) {
    const std::size_t n = std::fread(buffer.data(), 1, buffer.size(), file.get());
    if (n > 0 && EVP_DigestUpdate(ctx.get(), buffer.data(), n) != 1) {
      return Error{ErrorKind::Io, "SHA-256 of " + path.string() + ": digest update failed"};
    }
    if (n < buffer.size()) {
      if (std::ferror(file.get())) return Error{ErrorKind::Io, "cannot read " + path.string() + ": " + std::strerror(errno)};
      break;
    }
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_DigestFinal_ex(ctx.get(), digest, &length) != 1) {
    return Error{ErrorKind::Io, "SHA-256 of " + path.string() + ": digest finalisation failed"};
  }
  return to_hex(digest, length);
}

std::string sha256_hex(const void* data, std::size_t size) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), data, size) != 1 || EVP_DigestFinal_ex(ctx.get(), digest, &length) != 1) {
    return {};
  }
  return to_hex(digest, length);
}

// HMAC-SHA256(secret, domain NUL key), first 8 bytes as a big-endian integer.
std::uint64_t keyed_hash(const std::string& secret, const std::string& domain, const std::string& key) {
  std::string message = domain;
  message.push_back('\0');
  message += key;
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  const unsigned char* ok =
      HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), digest.data(), &length);
  if (ok == nullptr || length < 8) {
    // OpenSSL without SHA-256 is not a configuration Hilum runs on; fall back to plain SHA-256
    // of the same keyed message so that the result stays stable.
    const std::string hex = sha256_hex((secret + message).data(), secret.size() + message.size());
    return std::stoull(hex.substr(0, 16), nullptr, 16);
  }
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | digest[static_cast<std::size_t>(i)];
  return v;
}

std::string patient_key(const std::string& patient_id, const std::string& patient_name, const std::string& study_instance_uid) {
  if (!patient_id.empty()) return patient_id;
  if (!patient_name.empty()) return "name:" + patient_name;
  return "study:" + study_instance_uid;
}

}  // namespace hilum::app
