// Hilum app: PNG output, written atomically (temporary file in the same folder, then rename).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "hilum/app/catalog.hpp"  // Result, Status, Error

namespace hilum::app {

// The writers fail with ErrorKind::Invalid when the pixels do not match the size, and Io, naming
// the file, when it cannot be written; nothing is left behind then.
// Writes an 8-bit grayscale PNG.
[[nodiscard]] Status write_png_gray8(const std::filesystem::path& path, int width, int height,
                                     const std::vector<std::uint8_t>& pixels);
// Writes a 16-bit grayscale PNG (big-endian samples as PNG requires; input in host order).
[[nodiscard]] Status write_png_gray16(const std::filesystem::path& path, int width, int height,
                                      const std::vector<std::uint16_t>& pixels);

// Writes an 8-bit RGB PNG (3 bytes per pixel, row-major).
[[nodiscard]] Status write_png_rgb8(const std::filesystem::path& path, int width, int height,
                                    const std::vector<std::uint8_t>& rgb);

// Reads a PNG as grey: greyscale as it is (1-, 2- and 4-bit expanded to 8), a colour one (RGB,
// palette) as the grey of its colours with the share of its pixels visibly in colour
// (dicom::grey_of); alpha is ignored. ErrorKind::Io when the file cannot be opened, Invalid when
// it is not a PNG or is damaged.
struct GrayImage {
  int width = 0;
  int height = 0;
  int bit_depth = 0;  // 8 or 16
  std::vector<std::uint16_t> pixels;
  double coloured_share = 0.0;
};
[[nodiscard]] Result<GrayImage> read_png_gray(const std::filesystem::path& path);

// Area-averaging downscale of a row-major float image so that neither side exceeds max_side
// (aspect ratio kept); returns the input unchanged when it already fits.
struct FloatImage {
  int width = 0;
  int height = 0;
  std::vector<float> pixels;
};
[[nodiscard]] FloatImage downscale_to_fit(FloatImage image, int max_side);

}  // namespace hilum::app
