// Hilum inference: the safetensors format (Hugging Face), read through a memory map and written
// atomically. The reader is a security boundary: every size and offset is checked against the
// file before anything is touched, so a hostile or truncated file gives an Error, never a crash
// or a huge allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hilum/inference/error.hpp"

namespace hilum::inference {

enum class DType { F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL };
[[nodiscard]] const char* to_string(DType d);
[[nodiscard]] std::size_t dtype_size(DType d);

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;  // byte offsets inside the data buffer
  std::uint64_t end = 0;
  [[nodiscard]] std::int64_t numel() const;
};

struct SafetensorsLimits {
  std::uint64_t max_header_bytes = 100ull << 20;  // 100 MiB of JSON
  std::int64_t max_tensor_elements = 4ll << 30;   // 4 G elements
  std::size_t max_dims = 8;
};

class SafetensorsFile {
 public:
  static Result<SafetensorsFile> open(const std::filesystem::path& path, const SafetensorsLimits& limits = {});

  [[nodiscard]] const std::vector<TensorInfo>& tensors() const;
  [[nodiscard]] const TensorInfo* find(const std::string& name) const;
  [[nodiscard]] const std::map<std::string, std::string>& metadata() const;
  [[nodiscard]] const std::filesystem::path& path() const;

  // The tensor's raw bytes inside the mapping (valid while this object lives).
  [[nodiscard]] const std::byte* data(const TensorInfo& t) const;
  // Drops the tensor's pages from this process's memory (they are read again from the file if
  // touched): a loader that has copied a tensor calls this so that the weights are never held
  // twice at the peak.
  void release(const TensorInfo& t) const;
  // The tensor converted to F32 (F32, F16 and BF16 are accepted), checked against `shape` when given;
  // a tensor holding a NaN or an infinity is an error naming it (no weight or state is ever non-finite).
  [[nodiscard]] Result<std::vector<float>> read_f32(const std::string& name,
                                                    const std::vector<std::int64_t>& expected_shape = {}) const;

 private:
  struct Mapping;
  std::shared_ptr<Mapping> map_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
  std::filesystem::path path_;
};

// One tensor to write: F32 data, stored as `dtype` (F32, F16 or BF16; rounded to nearest even).
struct TensorToWrite {
  std::string name;
  std::vector<std::int64_t> shape;
  const float* data = nullptr;
  DType dtype = DType::F32;
};

// Writes a safetensors file atomically (temporary file, fsync, rename).
[[nodiscard]] Status write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// Conversions (exposed for tests).
[[nodiscard]] float half_to_float(std::uint16_t h);
[[nodiscard]] std::uint16_t float_to_half(float f);
[[nodiscard]] float bf16_to_float(std::uint16_t b);
[[nodiscard]] std::uint16_t float_to_bf16(float f);

}  // namespace hilum::inference
