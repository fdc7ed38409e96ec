// Colour images read as the grey of their colours (colour.hpp, internal.hpp): a chest film that reaches the
// workstation as an RGB or YBR secondary capture, and an ultrasound frame or photograph that is no
// radiograph at all but must open, show and be called outside the model's domain.
#include <algorithm>
#include <cmath>

#include "internal.hpp"

namespace hilum::dicom {
namespace {

std::int32_t clamped(double v, std::int32_t max_value) {
  return static_cast<std::int32_t>(std::clamp(std::lround(v), 0L, static_cast<long>(max_value)));
}

}  // namespace

// PS3.3 C.7.6.3.1.2: YBR_FULL (full range) and YBR_PARTIAL (Y 16..235 of 255) to RGB, scaled to
// the samples' range.
void rgb_of_ybr(std::int32_t y, std::int32_t cb, std::int32_t cr, bool partial, std::int32_t max_value, std::int32_t& r,
                std::int32_t& g, std::int32_t& b) {
  const double scale = (static_cast<double>(max_value) + 1.0) / 256.0;
  const double half = 128.0 * scale;
  double yy = y, pb = cb - half, pr = cr - half;
  if (partial) {
    yy = (y - 16.0 * scale) * (255.0 / 219.0);
    pb *= 255.0 / 224.0;
    pr *= 255.0 / 224.0;
  }
  r = clamped(yy + 1.402 * pr, max_value);
  g = clamped(yy - 0.344136 * pb - 0.714136 * pr, max_value);
  b = clamped(yy + 1.772 * pb, max_value);
}

GreyOfColour grey_of(const ColourPlanes& planes, std::int32_t max_value) {
  GreyOfColour out;
  const std::size_t n = planes.red.size();
  out.grey.resize(n);
  const std::int32_t visible = std::max<std::int32_t>(1, max_value / 10);
  std::size_t coloured = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::int32_t r = planes.red[i], g = planes.green[i], b = planes.blue[i];
    // In integers, rounded: a grey pixel stored in colour (v, v, v) keeps its value v exactly
    // (DCMTK's floating-point sum, truncated, gives v - 1 for some v; never more than 1 apart).
    out.grey[i] = static_cast<std::int32_t>((299LL * r + 587LL * g + 114LL * b + 500) / 1000);
    if (std::max({r, g, b}) - std::min({r, g, b}) > visible) ++coloured;
  }
  out.coloured_share = n > 0 ? static_cast<double>(coloured) / static_cast<double>(n) : 0.0;
  return out;
}

}  // namespace hilum::dicom

namespace hilum::dicom::detail {

ColourModel colour_model_of(const std::string& photometric) {
  // YBR_ICT / YBR_RCT occur only in JPEG 2000, whose decoder undoes the colour transform: RGB.
  if (photometric == "RGB" || photometric == "YBR_ICT" || photometric == "YBR_RCT") return ColourModel::Rgb;
  if (photometric == "YBR_FULL") return ColourModel::YbrFull;
  if (photometric == "YBR_FULL_422") return ColourModel::YbrFull422;
  if (photometric == "YBR_PARTIAL_422") return ColourModel::YbrPartial422;
  if (photometric == "PALETTE COLOR") return ColourModel::Palette;
  return ColourModel::None;
}

std::uint64_t stored_samples(ColourModel model, std::uint64_t pixels) {
  switch (model) {
    case ColourModel::None:
    case ColourModel::Palette: return pixels;
    case ColourModel::YbrFull422:
    case ColourModel::YbrPartial422: return 4 * ((pixels + 1) / 2);
    case ColourModel::Rgb:
    case ColourModel::YbrFull: return 3 * pixels;
  }
  return 3 * pixels;
}

dicom::ColourPlanes planes_of(const std::vector<std::int32_t>& samples, std::size_t pixels, ColourModel model, bool planar,
                       std::int32_t max_value) {
  dicom::ColourPlanes p;
  const bool pairs = model == ColourModel::YbrFull422 || model == ColourModel::YbrPartial422;
  if (model == ColourModel::None || model == ColourModel::Palette || samples.size() < stored_samples(model, pixels)) return p;
  p.red.resize(pixels);
  p.green.resize(pixels);
  p.blue.resize(pixels);
  if (pairs) {
    // Y1 Y2 Cb Cr for each two pixels in turn (PS3.3 C.7.6.3.1.2 wants an even row length; an odd
    // pixel count still ends with a whole pair, stored_samples).
    for (std::size_t i = 0; i < pixels; ++i) {
      const std::size_t pair = (i / 2) * 4;
      rgb_of_ybr(samples[pair + (i % 2)], samples[pair + 2], samples[pair + 3], model == ColourModel::YbrPartial422, max_value, p.red[i],
             p.green[i], p.blue[i]);
    }
    return p;
  }
  for (std::size_t i = 0; i < pixels; ++i) {
    const std::int32_t a = planar ? samples[i] : samples[3 * i];
    const std::int32_t b = planar ? samples[pixels + i] : samples[3 * i + 1];
    const std::int32_t c = planar ? samples[2 * pixels + i] : samples[3 * i + 2];
    if (model == ColourModel::YbrFull) {
      rgb_of_ybr(a, b, c, false, max_value, p.red[i], p.green[i], p.blue[i]);
    } else {
      p.red[i] = a;
      p.green[i] = b;
      p.blue[i] = c;
    }
  }
  return p;
}

}  // namespace hilum::dicom::detail
