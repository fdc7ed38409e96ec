// Hilum training: augmentations suited to radiographs, applied to display values in [0, 1]
// (before inference::preprocess, which resizes and normalises -- the same path as inference).
#pragma once

#include <random>
#include <vector>

namespace hilum::training {

struct AugmentOptions {
  float crop_scale_min = 0.5f;   // random resized crop: area fraction in [min, max]
  float crop_scale_max = 1.0f;
  float crop_ratio_min = 3.0f / 4.0f;  // aspect ratio range of the crop
  float crop_ratio_max = 4.0f / 3.0f;
  float rotation_degrees = 7.0f;  // uniform in [-r, r]
  float brightness = 0.1f;        // additive, uniform in [-b, b]
  float contrast = 0.15f;         // multiplicative around the mean, 1 +- c
  float gamma = 0.15f;            // exponent exp(uniform(-g, g))
  bool horizontal_flip = false;   // off by default: the heart is on the left
};

struct GreyImage {
  int width = 0;
  int height = 0;
  std::vector<float> data;  // row-major, values in [0, 1]
};

// Random resized crop + rotation (bilinear, border replicated) to out_width x out_height, then
// intensity changes, clamped to [0, 1]. Deterministic for a given generator state.
[[nodiscard]] GreyImage augment(const GreyImage& image, int out_width, int out_height, const AugmentOptions& options,
                                std::mt19937_64& rng);

}  // namespace hilum::training
