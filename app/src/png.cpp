#include "hilum/app/png.hpp"

#include "hilum/core/atomic_file.hpp"
#include "hilum/dicom/colour.hpp"

#include <png.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <system_error>

#include <unistd.h>

namespace fs = std::filesystem;

namespace hilum::app {
namespace {

struct FileCloser { void operator()(std::FILE* f) const { if (f) std::fclose(f); } };

void png_error_fn(png_structp png, png_const_charp msg) {
  auto* text = static_cast<std::string*>(png_get_error_ptr(png));
  if (text) *text = msg;
  png_longjmp(png, 1);
}
void png_warning_fn(png_structp, png_const_charp) {}

// Writes rows with libpng into `tmp`; returns "" or the reason.
std::string write_rows(const fs::path& tmp, int width, int height, int depth,
                       const std::vector<const png_byte*>& rows, int color_type = PNG_COLOR_TYPE_GRAY) {
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(tmp.c_str(), "wb"));
  if (!file) return "cannot create " + tmp.string() + ": " + std::strerror(errno);
  std::string error;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &error, png_error_fn, png_warning_fn);
  if (!png) return "libpng: out of memory";
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_write_struct(&png, nullptr);
    return "libpng: out of memory";
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return "PNG encoding failed: " + error;
  }
  png_init_io(png, file.get());
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), depth,
               color_type, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_set_compression_level(png, 6);
  png_write_info(png, info);
  if (depth == 16) png_set_swap(png);  // host little-endian -> PNG big-endian
  png_write_rows(png, const_cast<png_bytepp>(rows.data()), static_cast<png_uint_32>(height));
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  if (std::fflush(file.get()) != 0 || ::fsync(fileno(file.get())) != 0) {
    return "cannot write " + tmp.string() + ": " + std::strerror(errno);
  }
  if (std::fclose(file.release()) != 0) return "cannot close " + tmp.string() + ": " + std::strerror(errno);
  return {};
}

template <typename T>
Status write_png(const fs::path& path, int width, int height, const std::vector<T>& pixels, int depth,
                 int samples = 1) {
  if (width <= 0 || height <= 0 ||
      pixels.size() != static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * static_cast<std::size_t>(samples)) {
    return Error{ErrorKind::Invalid, "PNG " + path.string() + ": pixel count does not match " + std::to_string(width) + " x " +
                                         std::to_string(height)};
  }
  std::vector<const png_byte*> rows(static_cast<std::size_t>(height));
  for (int r = 0; r < height; ++r) {
    rows[static_cast<std::size_t>(r)] =
        reinterpret_cast<const png_byte*>(pixels.data() + static_cast<std::size_t>(r) * static_cast<std::size_t>(width) * static_cast<std::size_t>(samples));
  }
  // Write next to the target, then rename: a crash never leaves a half-written PNG behind.
  const fs::path tmp = core::temporary_path_beside(path);
  const std::string error = write_rows(tmp, width, height, depth, rows, samples == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY);
  if (!error.empty()) {
    std::error_code ec;
    fs::remove(tmp, ec);
    return Error{ErrorKind::Io, error};
  }
  if (auto moved = core::replace_with_temporary(tmp, path); !moved) return Error{ErrorKind::Io, moved.error().message};
  return core::Done{};
}

}  // namespace

Status write_png_gray8(const fs::path& path, int width, int height, const std::vector<std::uint8_t>& pixels) {
  return write_png(path, width, height, pixels, 8);
}

Status write_png_gray16(const fs::path& path, int width, int height, const std::vector<std::uint16_t>& pixels) {
  return write_png(path, width, height, pixels, 16);
}

Status write_png_rgb8(const fs::path& path, int width, int height, const std::vector<std::uint8_t>& rgb) {
  return write_png(path, width, height, rgb, 8, 3);
}

Result<GrayImage> read_png_gray(const fs::path& path) {
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (!file) return Error{ErrorKind::Io, "cannot open " + path.string() + ": " + std::strerror(errno)};
  // Everything libpng's longjmp may cross is constructed before setjmp, so that no destructor is
  // skipped when a damaged file stops the decoder half way.
  GrayImage out;
  std::string error;
  std::vector<png_byte> raw;
  std::vector<png_bytep> rows;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &error, png_error_fn, png_warning_fn);
  if (!png) return Error{ErrorKind::Io, "libpng: out of memory"};
  png_infop info = png_create_info_struct(png);
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return Error{ErrorKind::Invalid, "cannot decode the PNG " + path.string() + (error.empty() ? std::string() : ": " + error)};
  }
  png_init_io(png, file.get());
  png_read_info(png, info);
  // Whatever the PNG holds becomes 8- or 16-bit grey or RGB samples, without alpha.
  const int color = png_get_color_type(png, info);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8) png_set_expand_gray_1_2_4_to_8(png);
  png_set_strip_alpha(png);
  png_read_update_info(png, info);
  out.bit_depth = png_get_bit_depth(png, info);
  const int channels = png_get_channels(png, info);
  if ((channels != 1 && channels != 3) || (out.bit_depth != 8 && out.bit_depth != 16)) {
    png_destroy_read_struct(&png, &info, nullptr);
    return Error{ErrorKind::Invalid, path.string() + ": a PNG of " + std::to_string(channels) + " channels of " +
                                         std::to_string(out.bit_depth) + " bits cannot be read as grey"};
  }
  out.width = static_cast<int>(png_get_image_width(png, info));
  out.height = static_cast<int>(png_get_image_height(png, info));
  const std::size_t w = static_cast<std::size_t>(out.width), h = static_cast<std::size_t>(out.height);
  const std::size_t bytes = out.bit_depth == 16 ? 2 : 1;
  raw.resize(w * h * bytes * static_cast<std::size_t>(channels));
  rows.resize(h);
  for (std::size_t r = 0; r < h; ++r) rows[r] = raw.data() + r * w * bytes * static_cast<std::size_t>(channels);
  png_read_image(png, rows.data());
  png_destroy_read_struct(&png, &info, nullptr);
  auto sample = [&](std::size_t k) { return bytes == 2 ? static_cast<std::int32_t>((raw[2 * k] << 8) | raw[2 * k + 1]) : static_cast<std::int32_t>(raw[k]); };
  out.pixels.resize(w * h);
  if (channels == 1) {
    for (std::size_t i = 0; i < w * h; ++i) out.pixels[i] = static_cast<std::uint16_t>(sample(i));
    return out;
  }
  dicom::ColourPlanes planes;
  planes.red.resize(w * h);
  planes.green.resize(w * h);
  planes.blue.resize(w * h);
  for (std::size_t i = 0; i < w * h; ++i) {
    planes.red[i] = sample(3 * i);
    planes.green[i] = sample(3 * i + 1);
    planes.blue[i] = sample(3 * i + 2);
  }
  const auto grey = dicom::grey_of(planes, bytes == 2 ? 65535 : 255);
  for (std::size_t i = 0; i < w * h; ++i) out.pixels[i] = static_cast<std::uint16_t>(grey.grey[i]);
  out.coloured_share = grey.coloured_share;
  return out;
}

FloatImage downscale_to_fit(FloatImage image, int max_side) {
  if (max_side <= 0 || (image.width <= max_side && image.height <= max_side)) return image;
  const double factor = static_cast<double>(std::max(image.width, image.height)) / max_side;
  const int w = std::max(1, static_cast<int>(std::lround(image.width / factor)));
  const int h = std::max(1, static_cast<int>(std::lround(image.height / factor)));
  FloatImage out{w, h, std::vector<float>(static_cast<std::size_t>(w) * static_cast<std::size_t>(h))};
  const double sx = static_cast<double>(image.width) / w;
  const double sy = static_cast<double>(image.height) / h;
  // Each output pixel averages the input area it covers (exact box filter with fractional edges).
  for (int y = 0; y < h; ++y) {
    const double y0 = y * sy, y1 = (y + 1) * sy;
    for (int x = 0; x < w; ++x) {
      const double x0 = x * sx, x1 = (x + 1) * sx;
      double sum = 0.0, area = 0.0;
      for (int iy = static_cast<int>(y0); iy < std::min(image.height, static_cast<int>(std::ceil(y1))); ++iy) {
        const double wy = std::min<double>(iy + 1, y1) - std::max<double>(iy, y0);
        for (int ix = static_cast<int>(x0); ix < std::min(image.width, static_cast<int>(std::ceil(x1))); ++ix) {
          const double wx = std::min<double>(ix + 1, x1) - std::max<double>(ix, x0);
          sum += wx * wy * image.pixels[static_cast<std::size_t>(iy) * static_cast<std::size_t>(image.width) + static_cast<std::size_t>(ix)];
          area += wx * wy;
        }
      }
      out.pixels[static_cast<std::size_t>(y) * static_cast<std::size_t>(w) + static_cast<std::size_t>(x)] =
          static_cast<float>(area > 0 ? sum / area : 0.0);
    }
  }
  return out;
}

}  // namespace hilum::app
