// Hilum: colour pictures as grey. A colour DICOM image (reader.hpp), an RGB PNG or a colour JPEG
// is read as the grey of its colours, with the share of its pixels that are visibly in colour: a
// chest film sent in colour has none; a photograph, a Doppler ultrasound or a map does.
#pragma once

#include <cstdint>
#include <vector>

namespace hilum::dicom {

// Red, green and blue of a picture, row-major, each 0..max_value.
struct ColourPlanes {
  std::vector<std::int32_t> red, green, blue;
};

// Full-range Y, Cb, Cr (DICOM YBR_FULL, JPEG's JFIF) to RGB with PS3.3 C.7.6.3.1.2's equations,
// rounded and clamped to 0..max_value; YBR_PARTIAL's (Y 16..235) with partial = true.
void rgb_of_ybr(std::int32_t y, std::int32_t cb, std::int32_t cr, bool partial, std::int32_t max_value, std::int32_t& r,
                std::int32_t& g, std::int32_t& b);

// The grey of each pixel, 0.299 R + 0.587 G + 0.114 B rounded (the weights of DCMTK's
// createMonochromeImage, dcm2pnm +G), and the share of pixels whose colour is visibly not grey: the
// spread of R, G and B above a tenth of the full scale (a grey film stored in colour, even
// JPEG-compressed, has none).
struct GreyOfColour {
  std::vector<std::int32_t> grey;
  double coloured_share = 0.0;
};
[[nodiscard]] GreyOfColour grey_of(const ColourPlanes& planes, std::int32_t max_value);

}  // namespace hilum::dicom
