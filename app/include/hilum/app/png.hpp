// Hilum app: PNG output, written atomically (temporary file in the same folder, then rename).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace hilum::app {

// Writes an 8-bit grayscale PNG. Returns an empty string on success, else the reason.
[[nodiscard]] std::string write_png_gray8(const std::filesystem::path& path, int width, int height,
                                          const std::vector<std::uint8_t>& pixels);
// Writes a 16-bit grayscale PNG (big-endian samples as PNG requires; input in host order).
[[nodiscard]] std::string write_png_gray16(const std::filesystem::path& path, int width, int height,
                                           const std::vector<std::uint16_t>& pixels);

// Writes an 8-bit RGB PNG (3 bytes per pixel, row-major).
[[nodiscard]] std::string write_png_rgb8(const std::filesystem::path& path, int width, int height,
                                         const std::vector<std::uint8_t>& rgb);

// Reads a grayscale PNG (8 or 16 bit) back, for tests and tools. Empty pixels and a reason on failure.
struct GrayImage {
  int width = 0;
  int height = 0;
  int bit_depth = 0;
  std::vector<std::uint16_t> pixels;
  std::string error;
};
[[nodiscard]] GrayImage read_png_gray(const std::filesystem::path& path);

// Area-averaging downscale of a row-major float image so that neither side exceeds max_side
// (aspect ratio kept); returns the input unchanged when it already fits.
struct FloatImage {
  int width = 0;
  int height = 0;
  std::vector<float> pixels;
};
[[nodiscard]] FloatImage downscale_to_fit(FloatImage image, int max_side);

}  // namespace hilum::app
