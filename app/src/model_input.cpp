#include "hilum/app/model_input.hpp"

#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <system_error>

#include "hilum/app/hash.hpp"
#include "hilum/core/atomic_file.hpp"
#include "hilum/inference/vit.hpp"

namespace fs = std::filesystem;

namespace hilum::app {
namespace {

static_assert(std::endian::native == std::endian::little, "the cached inputs are little-endian floats");

// Bump when the display pipeline's default rendering or resize_antialiased changes what they compute.
constexpr const char* kVersion = "v1";
constexpr const char* kMagic = "hilum-model-input 1";
constexpr std::size_t kMaxSide = 4096;

bool is_hex_hash(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string header_of(InputSize size, const std::string& payload_hash) {
  return std::string(kMagic) + "\n" + model_input_key(size) + "\n" + std::to_string(size.width) + " " + std::to_string(size.height) + "\n" +
         payload_hash + "\n";
}

}  // namespace

std::string model_input_key(InputSize size) {
  return std::string(kVersion) + "-display-default-voi-aa-" + std::to_string(size.width) + "x" + std::to_string(size.height);
}

fs::path model_input_cache_dir(const fs::path& catalog_path) {
  if (catalog_path.empty() || catalog_path == ":memory:") return {};
  return catalog_path.parent_path() / "store" / "model-inputs";
}

std::vector<float> model_input_of(const float* display, int width, int height, InputSize size) {
  return inference::resize_antialiased(display, width, height, size.width, size.height);
}

fs::path cached_input_path(const fs::path& cache_dir, const std::string& content_hash, InputSize size) {
  return cache_dir / model_input_key(size) / (content_hash + ".f32");
}

Status write_cached_input(const fs::path& cache_dir, const std::string& content_hash, InputSize size, const std::vector<float>& input) {
  if (cache_dir.empty() || size.empty() || static_cast<std::size_t>(size.width) > kMaxSide || static_cast<std::size_t>(size.height) > kMaxSide) {
    return Error{ErrorKind::Invalid, "no cache folder or no input size"};
  }
  if (!is_hex_hash(content_hash)) return Error{ErrorKind::Invalid, "not a SHA-256: " + content_hash.substr(0, 80)};
  if (input.size() != static_cast<std::size_t>(size.width) * static_cast<std::size_t>(size.height)) {
    return Error{ErrorKind::Invalid, "the input has the wrong size"};
  }
  const fs::path path = cached_input_path(cache_dir, content_hash, size);
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec) return Error{ErrorKind::Io, "cannot create " + path.parent_path().string() + ": " + ec.message()};
  const std::size_t bytes = input.size() * sizeof(float);
  std::string content = header_of(size, sha256_hex(input.data(), bytes));
  const std::size_t at = content.size();
  content.resize(at + bytes);
  std::memcpy(content.data() + at, input.data(), bytes);
  if (auto written = core::write_file_atomically(path, content); !written) {
    return Error{ErrorKind::Io, written.error().message.empty() ? "cannot write " + path.string() : written.error().message};
  }
  return core::Done{};
}

std::optional<std::vector<float>> read_cached_input(const fs::path& cache_dir, const std::string& content_hash, InputSize size) {
  if (cache_dir.empty() || size.empty() || !is_hex_hash(content_hash)) return std::nullopt;
  if (static_cast<std::size_t>(size.width) > kMaxSide || static_cast<std::size_t>(size.height) > kMaxSide) return std::nullopt;
  std::ifstream in(cached_input_path(cache_dir, content_hash, size), std::ios::binary);
  if (!in) return std::nullopt;
  const std::size_t count = static_cast<std::size_t>(size.width) * static_cast<std::size_t>(size.height);
  // Header: four lines (magic, key, size, payload SHA-256), each checked against what is expected.
  std::string magic, key, dims, hash;
  if (!std::getline(in, magic) || !std::getline(in, key) || !std::getline(in, dims) || !std::getline(in, hash)) return std::nullopt;
  if (magic != kMagic || key != model_input_key(size) || dims != std::to_string(size.width) + " " + std::to_string(size.height) ||
      !is_hex_hash(hash)) {
    return std::nullopt;
  }
  std::vector<float> values(count);
  in.read(reinterpret_cast<char*>(values.data()), static_cast<std::streamsize>(count * sizeof(float)));
  if (static_cast<std::size_t>(in.gcount()) != count * sizeof(float)) return std::nullopt;
  if (in.peek() != std::ifstream::traits_type::eof()) return std::nullopt;  // trailing bytes: not ours
  if (sha256_hex(values.data(), count * sizeof(float)) != hash) return std::nullopt;
  // Display values resized: [0, 1] up to the filter's rounding (a white field can come out at
  // 1 + 1e-7); anything further out (or not a number) is not an input Hilum wrote.
  for (float v : values) {
    if (!(v >= -1e-3f && v <= 1.001f)) return std::nullopt;
  }
  return values;
}

}  // namespace hilum::app
