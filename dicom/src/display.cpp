// The grayscale display pipeline (PS3.3 C.11, PS3.4 N.2): modality values -> VOI -> polarity.
#include "hilum/dicom/display.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace hilum::dicom {
namespace {

int effective_lut_bits(const LookupTable& lut) {
  // Some writers declare fewer bits than their entries use: never clip a value the table holds.
  const std::uint16_t mx = lut.data.empty() ? 0 : *std::max_element(lut.data.begin(), lut.data.end());
  int bits = lut.bits_per_entry;
  while (bits < 16 && (std::uint32_t{1} << bits) <= mx) ++bits;
  return bits;
}

}  // namespace

double apply_window(const Window& window, double x) {
  const double c = window.center;
  const double w = window.width;
  switch (window.function) {
    case VoiFunction::Linear: {  // C.11.2.1.2.1
      if (x <= c - 0.5 - (w - 1.0) / 2.0) return 0.0;
      if (x > c - 0.5 + (w - 1.0) / 2.0) return 1.0;
      return (x - (c - 0.5)) / (w - 1.0) + 0.5;
    }
    case VoiFunction::LinearExact: {  // C.11.2.1.3.2
      if (x <= c - w / 2.0) return 0.0;
      if (x > c + w / 2.0) return 1.0;
      return (x - c) / w + 0.5;
    }
    case VoiFunction::Sigmoid:  // C.11.2.1.3.1
      return 1.0 / (1.0 + std::exp(-4.0 * (x - c) / w));
  }
  return 0.0;
}

double apply_voi_lut(const LookupTable& lut, double x) {
  const double top = static_cast<double>((std::uint32_t{1} << effective_lut_bits(lut)) - 1u);
  return static_cast<double>(lut.lookup(x)) / top;
}

Window auto_window(const Radiograph& image) {
  Window fallback{(image.min_modality + image.max_modality) / 2.0,
                  std::max(1.0, static_cast<double>(image.max_modality) - image.min_modality), "automatic",
                  VoiFunction::Linear};
  const int rows = image.rows;
  const int cols = image.columns;
  if (image.modality.size() != image.pixel_count() || rows < 8 || cols < 8) return fallback;
  const double range = static_cast<double>(image.max_modality) - image.min_modality;
  if (range <= 0.0) return fallback;

  // 1. The exposed field: drop border rows/columns that are (nearly) uniform, i.e. collimator
  //    blades, shutters and padding. A line is uniform when its spread is under 2% of the range.
  const double flat = 0.02 * range;
  const auto row_flat = [&](int r, int c0, int c1) {
    float lo = image.modality_at(r, c0), hi = lo;
    for (int c = c0; c < c1; ++c) { const float v = image.modality_at(r, c); lo = std::min(lo, v); hi = std::max(hi, v); }
    return hi - lo <= flat;
  };
  const auto col_flat = [&](int c, int r0, int r1) {
    float lo = image.modality_at(r0, c), hi = lo;
    for (int r = r0; r < r1; ++r) { const float v = image.modality_at(r, c); lo = std::min(lo, v); hi = std::max(hi, v); }
    return hi - lo <= flat;
  };
  int top = 0, bottom = rows, left = 0, right = cols;
  while (top < bottom - 1 && row_flat(top, 0, cols)) ++top;
  while (bottom - 1 > top && row_flat(bottom - 1, 0, cols)) --bottom;
  while (left < right - 1 && col_flat(left, top, bottom)) ++left;
  while (right - 1 > left && col_flat(right - 1, top, bottom)) --right;
  if ((bottom - top) < rows / 8 || (right - left) < cols / 8) { top = 0; bottom = rows; left = 0; right = cols; }

  // Padding pixels (Pixel Padding Value) are not part of the image.
  const bool has_padding = image.pixel_padding_value.has_value() && image.stored.size() == image.pixel_count();
  const auto padded = [&](int r, int c) {
    return has_padding && image.stored[static_cast<std::size_t>(r) * static_cast<std::size_t>(cols) +
                                       static_cast<std::size_t>(c)] == *image.pixel_padding_value;
  };

  // 2. Histogram of the field. Values piled up at the very ends (saturation, round shutters,
  //    burned-in masks) are left out when they hold more than 0.5% of the field.
  float lo = std::numeric_limits<float>::max(), hi = std::numeric_limits<float>::lowest();
  std::uint64_t total = 0;
  for (int r = top; r < bottom; ++r)
    for (int c = left; c < right; ++c) {
      if (padded(r, c)) continue;
      const float v = image.modality_at(r, c);
      lo = std::min(lo, v);
      hi = std::max(hi, v);
      ++total;
    }
  if (total == 0 || hi <= lo) return fallback;
  constexpr int kBins = 4096;
  std::vector<std::uint64_t> hist(kBins, 0);
  const double scale = (kBins - 1) / (static_cast<double>(hi) - lo);
  for (int r = top; r < bottom; ++r)
    for (int c = left; c < right; ++c)
      if (!padded(r, c)) ++hist[static_cast<std::size_t>((image.modality_at(r, c) - lo) * scale)];
  int first = 0, last = kBins - 1;
  if (hist[0] * 200 > total) { total -= hist[0]; first = 1; }
  if (hist[kBins - 1] * 200 > total) { total -= hist[kBins - 1]; last = kBins - 2; }
  if (total == 0 || first > last) return fallback;

  // 3. The 0.5th and 99.5th percentiles bound the window.
  const auto percentile = [&](double p) {
    const auto target = static_cast<std::uint64_t>(p * static_cast<double>(total));
    std::uint64_t acc = 0;
    for (int b = first; b <= last; ++b) {
      acc += hist[static_cast<std::size_t>(b)];
      if (acc > target) return lo + b / scale;
    }
    return lo + last / scale;
  };
  const double p_lo = percentile(0.005);
  const double p_hi = percentile(0.995) + 1.0 / scale;
  Window w;
  w.center = (p_lo + p_hi) / 2.0;
  w.width = std::max(1.0, p_hi - p_lo);
  w.explanation = "automatic";
  w.function = VoiFunction::Linear;
  return w;
}

Result<ResolvedVoi> resolve_voi(const Radiograph& image, const VoiChoice& choice) {
  ResolvedVoi out;
  switch (choice.kind) {
    case VoiChoice::Kind::Default:
      if (!image.windows.empty()) return resolve_voi(image, VoiChoice::preset(0));
      if (!image.voi_luts.empty()) return resolve_voi(image, VoiChoice::lut(0));
      return resolve_voi(image, VoiChoice::automatic());
    case VoiChoice::Kind::Window:
      if (choice.index < 0 || choice.index >= static_cast<int>(image.windows.size())) {
        return Error{ErrorKind::Corrupt, "no window preset " + std::to_string(choice.index + 1) + ": the file has " +
                                             std::to_string(image.windows.size())};
      }
      out.window = image.windows[static_cast<std::size_t>(choice.index)];
      // A colour image's one window is the reader's (its grey levels as they are), not the file's.
      out.source = image.colour_photometric.empty() ? "file window " + std::to_string(choice.index + 1) : std::string("colour image in grey");
      return out;
    case VoiChoice::Kind::Lut:
      if (choice.index < 0 || choice.index >= static_cast<int>(image.voi_luts.size())) {
        return Error{ErrorKind::Corrupt, "no VOI LUT " + std::to_string(choice.index + 1) + ": the file has " +
                                             std::to_string(image.voi_luts.size())};
      }
      out.is_lut = true;
      out.lut_index = choice.index;
      out.source = "VOI LUT " + std::to_string(choice.index + 1);
      return out;
    case VoiChoice::Kind::Custom:
      if (!(choice.window.width > 0.0) || (choice.window.function == VoiFunction::Linear && choice.window.width < 1.0)) {
        return Error{ErrorKind::Corrupt, "window width must be at least 1"};
      }
      out.window = choice.window;
      out.source = "custom";
      return out;
    case VoiChoice::Kind::Automatic:
      out.window = auto_window(image);
      out.source = "automatic";
      return out;
    case VoiChoice::Kind::MinMax:
      // With LINEAR, centre (min+max+1)/2 and width max-min+1 map min to 0 and max to 1 exactly.
      out.window = Window{(static_cast<double>(image.min_modality) + image.max_modality + 1.0) / 2.0,
                          std::max(1.0, static_cast<double>(image.max_modality) - image.min_modality + 1.0), "min-max",
                          VoiFunction::Linear};
      out.source = "min-max";
      return out;
  }
  return Error{ErrorKind::Corrupt, "unknown VOI choice"};
}

namespace {

// The display pipeline evaluated once per stored code (stored values span at most 2^16 codes,
// through the same modality transformation the reader applied), or, for an image that carries
// only modality values, per pixel.
struct DisplayTable {
  std::int32_t lowest = 0;
  std::vector<float> values;  // display value of code lowest + k, in [0, 1]
};

Result<DisplayTable> display_table(const Radiograph& image, const DisplayOptions& options, bool& per_code) {
  if (image.modality.size() != image.pixel_count() || image.modality.empty()) {
    return Error{ErrorKind::Corrupt, "the image has no decoded pixels"};
  }
  auto voi = resolve_voi(image, options.voi);
  if (!voi) return voi.error();
  const bool invert = image.display_inverted() != options.invert;
  const auto voi_of = [&](double modality_value) {
    const double y = voi->is_lut ? apply_voi_lut(image.voi_luts[static_cast<std::size_t>(voi->lut_index)], modality_value)
                                 : apply_window(voi->window, modality_value);
    return static_cast<float>(invert ? 1.0 - y : y);
  };
  DisplayTable t;
  per_code = image.stored.size() == image.modality.size();
  if (per_code) {
    const auto [mn, mx] = std::minmax_element(image.stored.begin(), image.stored.end());
    t.lowest = *mn;
    t.values.resize(static_cast<std::size_t>(*mx - *mn) + 1);
    for (std::size_t k = 0; k < t.values.size(); ++k) {
      const std::int32_t code = t.lowest + static_cast<std::int32_t>(k);
      const double m = image.modality_lut
                           ? static_cast<double>(image.modality_lut->lookup(code))
                           : static_cast<double>(static_cast<float>(code * image.rescale_slope + image.rescale_intercept));
      t.values[k] = voi_of(m);
    }
  } else {
    t.values.resize(image.modality.size());
    for (std::size_t i = 0; i < t.values.size(); ++i) t.values[i] = voi_of(image.modality[i]);
  }
  return t;
}

}  // namespace

Result<std::vector<float>> render_float(const Radiograph& image, const DisplayOptions& options) {
  bool per_code = false;
  auto table = display_table(image, options, per_code);
  if (!table) return table.error();
  if (!per_code) return std::move(table->values);
  std::vector<float> out(image.stored.size());
  const auto& values = table->values;
  const std::int32_t lowest = table->lowest;
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = values[static_cast<std::size_t>(image.stored[i] - lowest)];
  return out;
}

Result<std::vector<std::uint8_t>> render_8bit(const Radiograph& image, const DisplayOptions& options) {
  bool per_code = false;
  auto table = display_table(image, options, per_code);
  if (!table) return table.error();
  const auto to_byte = [](float v) { return static_cast<std::uint8_t>(std::lround(std::clamp(v, 0.0f, 1.0f) * 255.0f)); };
  const auto& values = table->values;
  if (!per_code) {
    std::vector<std::uint8_t> out(values.size());
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = to_byte(values[i]);
    return out;
  }
  std::vector<std::uint8_t> bytes(values.size());
  for (std::size_t k = 0; k < bytes.size(); ++k) bytes[k] = to_byte(values[k]);
  std::vector<std::uint8_t> out(image.stored.size());
  const std::int32_t lowest = table->lowest;
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = bytes[static_cast<std::size_t>(image.stored[i] - lowest)];
  return out;
}

}  // namespace hilum::dicom
