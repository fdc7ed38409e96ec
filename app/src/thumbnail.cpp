#include "hilum/app/thumbnail.hpp"

#include <png.h>

#include <algorithm>
#include <csetjmp>

#include "hilum/app/png.hpp"
#include "hilum/dicom/display.hpp"

namespace hilum::app {
namespace {

struct PngState {
  std::vector<std::uint8_t>* out = nullptr;
  std::string error;
};

void on_error(png_structp png, png_const_charp msg) {
  auto* state = static_cast<PngState*>(png_get_error_ptr(png));
  if (state) state->error = msg;
  png_longjmp(png, 1);
}
void on_warning(png_structp, png_const_charp) {}

void on_write(png_structp png, png_bytep data, png_size_t length) {
  auto* out = static_cast<std::vector<std::uint8_t>*>(png_get_io_ptr(png));
  out->insert(out->end(), data, data + length);
}
void on_flush(png_structp) {}

}  // namespace

Result<std::vector<std::uint8_t>> encode_png_gray8(int width, int height, const std::vector<std::uint8_t>& pixels) {
  if (width <= 0 || height <= 0 ||
      pixels.size() != static_cast<std::size_t>(width) * static_cast<std::size_t>(height)) {
    return Error{ErrorKind::Invalid, "PNG: pixel count does not match " + std::to_string(width) + " x " + std::to_string(height)};
  }
  std::vector<const png_byte*> rows(static_cast<std::size_t>(height));
  for (std::size_t r = 0; r < rows.size(); ++r) rows[r] = pixels.data() + r * static_cast<std::size_t>(width);

  // Kept outside the setjmp scope so that longjmp cannot leave them in an unspecified state.
  std::vector<std::uint8_t> out;
  PngState state;
  state.out = &out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &state, on_error, on_warning);
  if (!png) return Error{ErrorKind::Io, "libpng: out of memory"};
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_write_struct(&png, nullptr);
    return Error{ErrorKind::Io, "libpng: out of memory"};
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return Error{ErrorKind::Io, "PNG encoding failed: " + state.error};
  }
  png_set_write_fn(png, &out, on_write, on_flush);
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), 8, PNG_COLOR_TYPE_GRAY,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  // Thumbnails are small and written once per imported file: fast deflate, one row filter.
  png_set_compression_level(png, 3);
  png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_FILTER_PAETH);
  png_write_info(png, info);
  png_write_rows(png, const_cast<png_bytepp>(rows.data()), static_cast<png_uint_32>(height));
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  return out;
}

namespace {

Result<std::vector<std::uint8_t>> thumbnail_with(const dicom::Radiograph& image, const dicom::VoiChoice& voi, int max_side) {
  if (image.rows <= 0 || image.columns <= 0 || image.modality.size() != image.pixel_count()) {
    return Error{ErrorKind::Invalid, "thumbnail: the image has no decoded pixels"};
  }
  auto shown = dicom::render_float(image, {voi, false});
  if (!shown) return Error{ErrorKind::Invalid, "thumbnail: " + shown.error().message};
  FloatImage small = downscale_to_fit(FloatImage{image.columns, image.rows, std::move(shown.value())}, max_side);
  std::vector<std::uint8_t> bytes(small.pixels.size());
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    const float v = std::clamp(small.pixels[i], 0.0f, 1.0f);
    bytes[i] = static_cast<std::uint8_t>(v * 255.0f + 0.5f);
  }
  return encode_png_gray8(small.width, small.height, bytes);
}

}  // namespace

Result<std::vector<std::uint8_t>> make_thumbnail(const dicom::Radiograph& image, int max_side) {
  return thumbnail_with(image, dicom::VoiChoice::automatic(), max_side);
}

Result<std::vector<std::uint8_t>> make_thumbnail(const dicom::Radiograph& image, const dicom::Window& window, int max_side) {
  return thumbnail_with(image, dicom::VoiChoice::custom(window.center, window.width, window.function), max_side);
}

}  // namespace hilum::app
