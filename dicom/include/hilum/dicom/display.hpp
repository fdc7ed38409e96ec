// Hilum: the grayscale display pipeline of PS3.3 C.11 / PS3.4 N.2, in the standard's order:
// stored value -> Modality LUT (or Rescale) -> VOI LUT or window -> Presentation LUT Shape
// (MONOCHROME1 inversion) -> display value.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "hilum/dicom/error.hpp"
#include "hilum/dicom/radiograph.hpp"

namespace hilum::dicom {

// Which VOI transformation to apply.
struct VoiChoice {
  enum class Kind {
    Default,   // the file's first window, else its first VOI LUT, else automatic
    Window,    // the file's window preset `index`
    Lut,       // the file's VOI LUT `index`
    Custom,    // `window` given by the caller
    Automatic, // histogram-based, ignoring collimator borders (auto_window)
    MinMax,    // full range of modality values
  };
  Kind kind = Kind::Default;
  int index = 0;
  Window window;

  static VoiChoice preset(int i) { return {Kind::Window, i, {}}; }
  static VoiChoice lut(int i) { return {Kind::Lut, i, {}}; }
  static VoiChoice custom(double center, double width,
                          VoiFunction function = VoiFunction::Linear) {
    return {Kind::Custom, 0, Window{center, width, "custom", function}};
  }
  static VoiChoice automatic() { return {Kind::Automatic, 0, {}}; }
  static VoiChoice min_max() { return {Kind::MinMax, 0, {}}; }
};

// The VOI step that was actually applied (for "info" and the viewer's status line).
struct ResolvedVoi {
  bool is_lut = false;
  int lut_index = -1;
  Window window;          // meaningful when !is_lut
  std::string source;     // "file window 1", "VOI LUT 1", "automatic", "custom", "min-max", "colour image in grey"
};

[[nodiscard]] Result<ResolvedVoi> resolve_voi(const Radiograph& image, const VoiChoice& choice);

// VOI output for one modality value in [0, 1] (before presentation inversion).
[[nodiscard]] double apply_window(const Window& window, double x);
[[nodiscard]] double apply_voi_lut(const LookupTable& lut, double x);

// A sensible window when the file has none: percentiles of the modality-value histogram over
// the exposed field (collimator/shutter borders and padding values excluded).
[[nodiscard]] Window auto_window(const Radiograph& image);

struct DisplayOptions {
  VoiChoice voi;
  bool invert = false;  // the user's invert toggle, on top of the file's polarity
};

// Display values in [0, 1], row-major, 1 = white. MONOCHROME1 is shown bone-white.
[[nodiscard]] Result<std::vector<float>> render_float(const Radiograph& image,
                                                      const DisplayOptions& options = {});

// 8-bit display rendering (rounded render_float), row-major.
[[nodiscard]] Result<std::vector<std::uint8_t>> render_8bit(const Radiograph& image,
                                                            const DisplayOptions& options = {});

}  // namespace hilum::dicom
