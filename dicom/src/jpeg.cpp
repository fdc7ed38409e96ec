// Lossy 8-bit JPEG (DCT) frames decoded at 1/2, 1/4 or 1/8 of their size with libjpeg's DCT
// scaling (scale_num / scale_denom), for a consumer that needs a small image (issue 18). DCMTK's
// own JPEG decoders cannot scale; full-size decodes still go through them (reader.cpp).
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <optional>
#include <vector>

#include <jpeglib.h>

#include "internal.hpp"

namespace hilum::dicom::detail {

namespace {

struct JpegError {
  jpeg_error_mgr base;
  std::jmp_buf jump;
};

[[noreturn]] void on_error(j_common_ptr cinfo) {
  std::longjmp(reinterpret_cast<JpegError*>(cinfo->err)->jump, 1);
}

// Corrupt data is a warning to libjpeg (it fills in and goes on); here it ends the scaled decode,
// and the caller's full decode reports what is wrong.
void on_message(j_common_ptr cinfo, int level) {
  if (level < 0) std::longjmp(reinterpret_cast<JpegError*>(cinfo->err)->jump, 1);
}

// Runs `step` (libjpeg calls, trivially destructible locals only) with the error manager's jump
// target here: an error or a corrupt-data warning returns false, not exit() or abort().
template <typename F>
bool jpeg_step(JpegError& err, F&& step) {
  if (setjmp(err.jump)) return false;
  step();
  return true;
}

}  // namespace

std::optional<ScaledJpeg> decode_jpeg_scaled(const std::uint8_t* data, std::size_t size, int rows, int columns, int min_side) {
  if (min_side <= 0 || size == 0) return std::nullopt;
  // Cheap refusal before libjpeg: the film must be at least four times the needed side.
  if (reduction_levels(static_cast<std::uint64_t>(columns), static_cast<std::uint64_t>(rows), min_side, 3) == 0) return std::nullopt;
  jpeg_decompress_struct cinfo{};
  JpegError err{};
  cinfo.err = jpeg_std_error(&err.base);
  err.base.error_exit = on_error;
  err.base.emit_message = on_message;
  jpeg_create_decompress(&cinfo);
  struct Destroy {
    jpeg_decompress_struct* c;
    ~Destroy() { jpeg_destroy_decompress(c); }
  } destroy{&cinfo};
  bool lossy_grey = false;
  if (!jpeg_step(err, [&] {
        jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
        jpeg_read_header(&cinfo, TRUE);
        // Lossy 8-bit greyscale of the header's size only; anything else is left to DCMTK.
        lossy_grey = cinfo.data_precision == 8 && cinfo.num_components == 1 &&
                     cinfo.image_width == static_cast<JDIMENSION>(columns) && cinfo.image_height == static_cast<JDIMENSION>(rows);
        if (!lossy_grey) return;
        const unsigned d = 1u << reduction_levels(cinfo.image_width, cinfo.image_height, min_side, 3);  // 2, 4 or 8
        cinfo.out_color_space = JCS_GRAYSCALE;
        cinfo.scale_num = 1;
        cinfo.scale_denom = d;
        cinfo.dct_method = JDCT_ISLOW;  // the same arithmetic as DCMTK's full decode
        jpeg_start_decompress(&cinfo);
      }) ||
      !lossy_grey) {
    return std::nullopt;
  }
  const unsigned d = cinfo.scale_denom;
  const JDIMENSION w = cinfo.output_width, h = cinfo.output_height;
  if (cinfo.output_components != 1 || w != (cinfo.image_width + d - 1) / d || h != (cinfo.image_height + d - 1) / d) {
    return std::nullopt;
  }
  ScaledJpeg out;
  out.samples.resize(static_cast<std::size_t>(w) * h);
  std::vector<JSAMPLE> line(w);
  JSAMPROW row = line.data();
  std::int32_t* samples = out.samples.data();
  if (!jpeg_step(err, [&] {
        while (cinfo.output_scanline < h) {
          std::int32_t* dst = samples + static_cast<std::size_t>(cinfo.output_scanline) * w;
          if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) return;
          for (JDIMENSION x = 0; x < w; ++x) dst[x] = row[x];
        }
        jpeg_finish_decompress(&cinfo);
      }) ||
      cinfo.output_scanline != h) {
    return std::nullopt;
  }
  out.rows = static_cast<int>(h);
  out.columns = static_cast<int>(w);
  out.reduction = d == 8 ? 3 : d == 4 ? 2 : 1;
  return out;
}

}  // namespace hilum::dicom::detail
