// Hilum app: small preview images kept in the catalog (8-bit grayscale PNG bytes in memory).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "hilum/app/catalog.hpp"  // Result, Error
#include "hilum/dicom/radiograph.hpp"

namespace hilum::app {

// Encodes an 8-bit grayscale image (row-major, width * height bytes) as PNG, in memory.
// ErrorKind::Invalid when the pixels do not match the size, Io when libpng fails.
[[nodiscard]] Result<std::vector<std::uint8_t>> encode_png_gray8(int width, int height, const std::vector<std::uint8_t>& pixels);

// The display image (automatic window over the exposed field, MONOCHROME1 shown bone-white),
// area-averaged so that neither side exceeds max_side, as PNG bytes. Needs decoded pixels
// (ErrorKind::Invalid without them).
[[nodiscard]] Result<std::vector<std::uint8_t>> make_thumbnail(const dicom::Radiograph& image, int max_side = 128);

// The same with a window the caller already has (e.g. dicom::auto_window(image), computed once).
[[nodiscard]] Result<std::vector<std::uint8_t>> make_thumbnail(const dicom::Radiograph& image, const dicom::Window& window,
                                                               int max_side = 128);

}  // namespace hilum::app
