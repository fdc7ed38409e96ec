#include "hilum/app/model_input.hpp"

#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string_view>
#include <system_error>

#include "hilum/app/hash.hpp"
#include "hilum/core/atomic_file.hpp"
#include "hilum/core/numbers.hpp"
#include "hilum/inference/vit.hpp"

namespace fs = std::filesystem;

namespace hilum::app {
namespace {

static_assert(std::endian::native == std::endian::little, "the cached inputs are little-endian floats");

// Bump when the display pipeline's default rendering or resize_antialiased changes what they compute.
constexpr const char* kVersion = "v1";
// Format 1: magic, key, size, payload SHA-256. Format 2 adds a line "coloured SHARE" before the
// checksum, which then covers that line and the payload.
constexpr const char* kMagic1 = "hilum-model-input 1";
constexpr const char* kMagic = "hilum-model-input 2";
constexpr std::size_t kMaxSide = 4096;

bool is_hex_hash(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string size_line(InputSize size) { return std::to_string(size.width) + " " + std::to_string(size.height); }

// "coloured 0.0123": 17 significant digits (the double back exactly), whatever the locale.
std::string coloured_line(double share) { return "coloured " + core::format_number(share, 17); }

std::optional<double> parse_coloured_line(const std::string& line) {
  constexpr std::string_view prefix = "coloured ";
  if (line.rfind(prefix, 0) != 0) return std::nullopt;
  const auto share = core::parse_number(std::string_view(line).substr(prefix.size()));
  if (!share || !(*share >= 0.0 && *share <= 1.0)) return std::nullopt;
  return share;
}

// SHA-256 of the share's line and the values (format 2).
std::string checksum_of(const std::string& coloured, const float* values, std::size_t count) {
  std::string bytes = coloured + "\n";
  const std::size_t at = bytes.size();
  bytes.resize(at + count * sizeof(float));
  std::memcpy(bytes.data() + at, values, count * sizeof(float));
  return sha256_hex(bytes.data(), bytes.size());
}

}  // namespace

InputSize input_size_of(const inference::ViTConfig& config) {
  InputSize size{config.input_width, config.input_height};
  if (config.centre_crop()) {
    size.resize_width = config.resize_width > 0 ? config.resize_width : config.input_width;
    size.resize_height = config.resize_height > 0 ? config.resize_height : config.input_height;
  }
  return size;
}

std::string model_input_key(InputSize size) {
  std::string key = std::string(kVersion) + "-display-default-voi-aa-" + std::to_string(size.width) + "x" + std::to_string(size.height);
  if (size.cropped()) {
    key += "-of-" + std::to_string(size.resize_width > 0 ? size.resize_width : size.width) + "x" +
           std::to_string(size.resize_height > 0 ? size.resize_height : size.height);
  }
  return key;
}

fs::path model_input_cache_dir(const fs::path& catalog_path) {
  if (catalog_path.empty() || catalog_path == ":memory:") return {};
  return catalog_path.parent_path() / "store" / "model-inputs";
}

std::vector<float> model_input_of(const float* display, int width, int height, InputSize size) {
  inference::ViTConfig view;  // only the preprocessing's geometry
  view.input_width = size.width;
  view.input_height = size.height;
  view.resize_width = size.resize_width;
  view.resize_height = size.resize_height;
  return inference::model_view(display, width, height, view);
}

fs::path cached_input_path(const fs::path& cache_dir, const std::string& content_hash, InputSize size) {
  return cache_dir / model_input_key(size) / (content_hash + ".f32");
}

Status write_cached_input(const fs::path& cache_dir, const std::string& content_hash, InputSize size, const std::vector<float>& input,
                          double coloured_share) {
  if (cache_dir.empty() || size.empty() || static_cast<std::size_t>(size.width) > kMaxSide || static_cast<std::size_t>(size.height) > kMaxSide) {
    return Error{ErrorKind::Invalid, "no cache folder or no input size"};
  }
  if (!is_hex_hash(content_hash)) return Error{ErrorKind::Invalid, "not a SHA-256: " + content_hash.substr(0, 80)};
  if (input.size() != static_cast<std::size_t>(size.width) * static_cast<std::size_t>(size.height)) {
    return Error{ErrorKind::Invalid, "the input has the wrong size"};
  }
  if (!(coloured_share >= 0.0 && coloured_share <= 1.0)) return Error{ErrorKind::Invalid, "a share in colour outside [0, 1]"};
  const fs::path path = cached_input_path(cache_dir, content_hash, size);
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec) return Error{ErrorKind::Io, "cannot create " + path.parent_path().string() + ": " + ec.message()};
  const std::size_t bytes = input.size() * sizeof(float);
  const std::string coloured = coloured_line(coloured_share);
  std::string content = std::string(kMagic) + "\n" + model_input_key(size) + "\n" + size_line(size) + "\n" + coloured + "\n" +
                        checksum_of(coloured, input.data(), input.size()) + "\n";
  const std::size_t at = content.size();
  content.resize(at + bytes);
  std::memcpy(content.data() + at, input.data(), bytes);
  if (auto written = core::write_file_atomically(path, content); !written) {
    return Error{ErrorKind::Io, written.error().message.empty() ? "cannot write " + path.string() : written.error().message};
  }
  return core::Done{};
}

std::optional<CachedInput> read_cached_input(const fs::path& cache_dir, const std::string& content_hash, InputSize size) {
  if (cache_dir.empty() || size.empty() || !is_hex_hash(content_hash)) return std::nullopt;
  if (static_cast<std::size_t>(size.width) > kMaxSide || static_cast<std::size_t>(size.height) > kMaxSide) return std::nullopt;
  std::ifstream in(cached_input_path(cache_dir, content_hash, size), std::ios::binary);
  if (!in) return std::nullopt;
  const std::size_t count = static_cast<std::size_t>(size.width) * static_cast<std::size_t>(size.height);
  // Header: magic, key, size, (format 2) share in colour, checksum; each checked against what is expected.
  std::string magic, key, dims, coloured, hash;
  if (!std::getline(in, magic) || (magic != kMagic && magic != kMagic1)) return std::nullopt;
  const bool first_format = magic == kMagic1;
  if (!std::getline(in, key) || !std::getline(in, dims) || (!first_format && !std::getline(in, coloured)) || !std::getline(in, hash)) {
    return std::nullopt;
  }
  if (key != model_input_key(size) || dims != size_line(size) || !is_hex_hash(hash)) return std::nullopt;
  CachedInput out;
  if (!first_format) {
    out.coloured_share = parse_coloured_line(coloured);
    if (!out.coloured_share) return std::nullopt;
  }
  std::vector<float> values(count);
  in.read(reinterpret_cast<char*>(values.data()), static_cast<std::streamsize>(count * sizeof(float)));
  if (static_cast<std::size_t>(in.gcount()) != count * sizeof(float)) return std::nullopt;
  if (in.peek() != std::ifstream::traits_type::eof()) return std::nullopt;  // trailing bytes: not ours
  const std::string expected = first_format ? sha256_hex(values.data(), count * sizeof(float)) : checksum_of(coloured, values.data(), count);
  if (expected != hash) return std::nullopt;
  // Display values resized: [0, 1] up to the filter's rounding (a white field can come out at
  // 1 + 1e-7); anything further out (or not a number) is not an input Hilum wrote.
  for (float v : values) {
    if (!(v >= -1e-3f && v <= 1.001f)) return std::nullopt;
  }
  out.values = std::move(values);
  return out;
}

}  // namespace hilum::app
