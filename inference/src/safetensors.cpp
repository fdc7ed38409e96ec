#include "hilum/inference/safetensors.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <system_error>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "hilum/core/atomic_file.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace hilum::inference {

const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::NotFound: return "not-found";
    case ErrorKind::Invalid: return "invalid";
    case ErrorKind::Unsupported: return "unsupported";
    case ErrorKind::TooLarge: return "too-large";
    case ErrorKind::Io: return "io";
  }
  return "error";
}

namespace {

struct DTypeName {
  const char* name;
  DType dtype;
  std::size_t size;
};
constexpr DTypeName kDTypes[] = {
    {"F32", DType::F32, 4}, {"F16", DType::F16, 2}, {"BF16", DType::BF16, 2}, {"F64", DType::F64, 8},
    {"I64", DType::I64, 8}, {"I32", DType::I32, 4}, {"I16", DType::I16, 2},   {"I8", DType::I8, 1},
    {"U8", DType::U8, 1},   {"BOOL", DType::BOOL, 1},
};

Error invalid(const fs::path& p, const std::string& what) {
  return {ErrorKind::Invalid, p.filename().string() + ": " + what};
}

std::string shape_string(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

const char* to_string(DType d) {
  for (const auto& t : kDTypes) {
    if (t.dtype == d) return t.name;
  }
  return "?";
}

std::size_t dtype_size(DType d) {
  for (const auto& t : kDTypes) {
    if (t.dtype == d) return t.size;
  }
  return 0;
}

std::int64_t TensorInfo::numel() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1Fu;
  std::uint32_t mant = h & 0x3FFu;
  std::uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3FFu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

std::uint16_t float_to_half(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  const std::uint16_t sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t abs = x & 0x7FFFFFFFu;
  if (abs >= 0x7F800000u) return static_cast<std::uint16_t>(sign | 0x7C00u | (abs > 0x7F800000u ? 0x200u : 0u));
  if (abs >= 0x477FF000u) return static_cast<std::uint16_t>(sign | 0x7C00u);  // overflow -> inf
  if (abs < 0x38800000u) {                                                     // subnormal or zero
    if (abs < 0x33000000u) return sign;
    const std::uint32_t e = abs >> 23;
    const std::uint32_t m = (abs & 0x7FFFFFu) | 0x800000u;
    const std::uint32_t shift = 126 - e;  // 14 + (112 - e)
    std::uint32_t half = m >> shift;
    const std::uint32_t rem = m & ((1u << shift) - 1u);
    const std::uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    return static_cast<std::uint16_t>(sign | half);
  }
  std::uint32_t half = ((abs >> 13) - (112u << 10));
  const std::uint32_t rem = abs & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;
  return static_cast<std::uint16_t>(sign | half);
}

float bf16_to_float(std::uint16_t b) {
  const std::uint32_t bits = static_cast<std::uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

std::uint16_t float_to_bf16(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);  // NaN stays NaN
  const std::uint32_t rounding = 0x7FFFu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>((x + rounding) >> 16);
}

// ---- Reading -----------------------------------------------------------------------------

struct SafetensorsFile::Mapping {
  const std::byte* base = nullptr;
  std::size_t size = 0;
  std::uint64_t data_start = 0;
  ~Mapping() {
    if (base != nullptr) ::munmap(const_cast<std::byte*>(base), size);
  }
};

Result<SafetensorsFile> SafetensorsFile::open(const fs::path& path, const SafetensorsLimits& limits) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error{errno == ENOENT ? ErrorKind::NotFound : ErrorKind::Io, "cannot open " + path.string() + ": " + std::strerror(errno)};
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Error{ErrorKind::Io, path.string() + " is not a regular file"};
  }
  const auto file_size = static_cast<std::uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    return invalid(path, "file too short for a safetensors header (" + std::to_string(file_size) + " bytes)");
  }
  void* addr = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (addr == MAP_FAILED) return Error{ErrorKind::Io, "cannot map " + path.string() + ": " + std::strerror(errno)};
  auto mapping = std::make_shared<Mapping>();
  mapping->base = static_cast<const std::byte*>(addr);
  mapping->size = file_size;

  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<std::uint8_t>(mapping->base[i]);
  if (header_len > limits.max_header_bytes) {
    return Error{ErrorKind::TooLarge, path.filename().string() + ": header length " + std::to_string(header_len) + " exceeds the limit"};
  }
  if (header_len > file_size - 8) {
    return invalid(path, "header length " + std::to_string(header_len) + " runs past the end of the file (" +
                             std::to_string(file_size) + " bytes)");
  }
  mapping->data_start = 8 + header_len;
  const std::uint64_t data_size = file_size - mapping->data_start;

  json header;
  try {
    header = json::parse(reinterpret_cast<const char*>(mapping->base + 8), reinterpret_cast<const char*>(mapping->base + 8 + header_len));
  } catch (const json::exception& e) {
    return invalid(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) return invalid(path, "header is not a JSON object");

  SafetensorsFile file;
  file.path_ = path;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it.value().is_object()) return invalid(path, "__metadata__ is not an object");
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        if (!m.value().is_string()) return invalid(path, "__metadata__ values must be strings");
        file.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const json& t = it.value();
    const std::string& name = it.key();
    if (!t.is_object() || !t.contains("dtype") || !t.contains("shape") || !t.contains("data_offsets")) {
      return invalid(path, "tensor " + name + " lacks dtype, shape or data_offsets");
    }
    TensorInfo info;
    info.name = name;
    if (!t["dtype"].is_string()) return invalid(path, "tensor " + name + ": dtype is not a string");
    const std::string dtype = t["dtype"].get<std::string>();
    bool known = false;
    for (const auto& d : kDTypes) {
      if (dtype == d.name) {
        info.dtype = d.dtype;
        known = true;
      }
    }
    if (!known) return Error{ErrorKind::Unsupported, path.filename().string() + ": tensor " + name + " has unknown dtype " + dtype};
    if (!t["shape"].is_array() || t["shape"].size() > limits.max_dims) return invalid(path, "tensor " + name + ": bad shape");
    std::int64_t numel = 1;
    for (const auto& d : t["shape"]) {
      if (!d.is_number_integer() || d.get<std::int64_t>() < 0) return invalid(path, "tensor " + name + ": shape entries must be non-negative integers");
      const std::int64_t v = d.get<std::int64_t>();
      if (v > 0 && numel > limits.max_tensor_elements / v) {
        return Error{ErrorKind::TooLarge, path.filename().string() + ": tensor " + name + " has an absurd shape"};
      }
      numel *= v;
      info.shape.push_back(v);
    }
    const json& off = t["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
      return invalid(path, "tensor " + name + ": data_offsets must be two non-negative integers");
    }
    info.begin = off[0].get<std::uint64_t>();
    info.end = off[1].get<std::uint64_t>();
    if (info.begin > info.end || info.end > data_size) {
      return invalid(path, "tensor " + name + ": data offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
                               "] lie outside the " + std::to_string(data_size) + "-byte data buffer (truncated file?)");
    }
    const std::uint64_t expected = static_cast<std::uint64_t>(numel) * dtype_size(info.dtype);
    if (info.end - info.begin != expected) {
      return invalid(path, "tensor " + name + ": " + std::to_string(info.end - info.begin) + " bytes for " + to_string(info.dtype) +
                               " " + shape_string(info.shape) + " (expected " + std::to_string(expected) + ")");
    }
    file.tensors_.push_back(std::move(info));
  }
  // No two tensors may share bytes, and (as the format requires) the buffer has no holes.
  std::vector<const TensorInfo*> by_offset;
  for (const auto& t : file.tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->begin < b->begin || (a->begin == b->begin && a->end < b->end); });
  std::uint64_t cursor = 0;
  for (const auto* t : by_offset) {
    if (t->begin < cursor) return invalid(path, "tensor " + t->name + " overlaps another tensor's data");
    if (t->begin > cursor) return invalid(path, "the data buffer has a gap before tensor " + t->name);
    cursor = t->end;
  }
  if (cursor != data_size) {
    return invalid(path, "the data buffer holds " + std::to_string(data_size) + " bytes but the tensors use " + std::to_string(cursor));
  }
  std::sort(file.tensors_.begin(), file.tensors_.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  file.map_ = std::move(mapping);
  return file;
}

const std::vector<TensorInfo>& SafetensorsFile::tensors() const { return tensors_; }
const std::map<std::string, std::string>& SafetensorsFile::metadata() const { return metadata_; }
const fs::path& SafetensorsFile::path() const { return path_; }

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name, [](const TensorInfo& t, const std::string& n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

const std::byte* SafetensorsFile::data(const TensorInfo& t) const { return map_->base + map_->data_start + t.begin; }

void SafetensorsFile::release(const TensorInfo& t) const {
  static const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<std::uintptr_t>(data(t));
  const std::uintptr_t first = (begin + page - 1) / page * page;  // whole pages inside the tensor only
  const std::uintptr_t last = (begin + (t.end - t.begin)) / page * page;
  if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

Result<std::vector<float>> SafetensorsFile::read_f32(const std::string& name, const std::vector<std::int64_t>& expected_shape) const {
  const TensorInfo* t = find(name);
  if (t == nullptr) return Error{ErrorKind::NotFound, path_.filename().string() + ": missing tensor " + name};
  if (!expected_shape.empty() && t->shape != expected_shape) {
    return Error{ErrorKind::Invalid, path_.filename().string() + ": tensor " + name + " has shape " + shape_string(t->shape) +
                                         ", expected " + shape_string(expected_shape)};
  }
  const auto n = static_cast<std::size_t>(t->numel());
  std::vector<float> out(n);
  const std::byte* p = data(*t);
  switch (t->dtype) {
    case DType::F32:
      std::memcpy(out.data(), p, n * 4);
      break;
    case DType::F16:
    case DType::BF16:
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = t->dtype == DType::F16 ? half_to_float(h) : bf16_to_float(h);
      }
      break;
    default:
      return Error{ErrorKind::Unsupported, path_.filename().string() + ": tensor " + name + " is " + to_string(t->dtype) +
                                               " (weights must be F32, F16 or BF16)"};
  }
  // A NaN or an infinity is never a weight: it would make every output NaN (or 0 or 1) and look like an answer.
  if (const auto bad = std::find_if(out.begin(), out.end(), [](float x) { return !std::isfinite(x); }); bad != out.end()) {
    return Error{ErrorKind::Invalid, path_.filename().string() + ": tensor " + name + " holds a value that is not finite (" +
                                         (std::isnan(*bad) ? std::string("NaN") : std::string(*bad > 0 ? "+inf" : "-inf")) + " at index " +
                                         std::to_string(bad - out.begin()) + ")"};
  }
  return out;
}

// ---- Writing -----------------------------------------------------------------------------

Status write_safetensors(const fs::path& path, const std::vector<TensorToWrite>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  std::vector<const TensorToWrite*> sorted;
  for (const auto& t : tensors) {
    if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16) {
      return Error{ErrorKind::Unsupported, "can only write F32, F16 or BF16 tensors"};
    }
    sorted.push_back(&t);
  }
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->name < b->name; });
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const auto* t : sorted) {
    std::int64_t n = 1;
    for (auto d : t->shape) n *= d;
    const std::uint64_t bytes = static_cast<std::uint64_t>(n) * dtype_size(t->dtype);
    header[t->name] = {{"dtype", to_string(t->dtype)}, {"shape", t->shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  while ((text.size() + 8) % 8 != 0) text.push_back(' ');

  const fs::path tmp = core::temporary_path_beside(path);
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return Error{ErrorKind::Io, "cannot create " + tmp.string() + ": " + std::strerror(errno)};
  bool ok = true;
  std::uint8_t len[8];
  std::uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<std::uint8_t>(n >> (8 * i));
  ok = ok && std::fwrite(len, 1, 8, f) == 8;
  ok = ok && std::fwrite(text.data(), 1, text.size(), f) == text.size();
  std::vector<std::uint16_t> buf;
  for (const auto* t : sorted) {
    std::size_t count = 1;
    for (auto d : t->shape) count *= static_cast<std::size_t>(d);
    if (t->dtype == DType::F32) {
      ok = ok && std::fwrite(t->data, 4, count, f) == count;
    } else {
      buf.resize(count);
      for (std::size_t i = 0; i < count; ++i) buf[i] = t->dtype == DType::F16 ? float_to_half(t->data[i]) : float_to_bf16(t->data[i]);
      ok = ok && std::fwrite(buf.data(), 2, count, f) == count;
    }
  }
  ok = ok && std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
  ok = (std::fclose(f) == 0) && ok;
  std::error_code ec;
  if (!ok) {
    fs::remove(tmp, ec);
    return Error{ErrorKind::Io, "cannot write " + path.string() + ": " + std::strerror(errno)};
  }
  if (auto moved = core::replace_with_temporary(tmp, path); !moved) return Error{ErrorKind::Io, moved.error().message};
  return core::Done{};
}

}  // namespace hilum::inference
