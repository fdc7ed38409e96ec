// Hilum training: augmentations (see augment.hpp).
//
// Order of the random draws (so that a generator state gives one result): the crop (as
// torchvision's RandomResizedCrop.get_params: up to 10 attempts of area fraction, log-uniform
// aspect ratio, then the crop's top and left), the rotation angle, the flip (only when enabled),
// contrast, brightness, gamma.
//
// Pipeline: integer crop -> antialiased resize to the output size (inference::resize_antialiased,
// skipped when the sizes already match) -> flip -> rotation about the image centre (bilinear,
// border replicated; positive angles turn the content counter-clockwise as seen on screen) ->
// x = (x - mean) * contrast + mean + brightness, clamped to [0, 1] -> x^gamma -> clamp to [0, 1].
#include "hilum/training/augment.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numbers>
#include <stdexcept>

#include "hilum/inference/vit.hpp"

namespace hilum::training {

namespace {

struct Crop {
  int top = 0;
  int left = 0;
  int height = 0;
  int width = 0;
};

float uniform(std::mt19937_64& rng, float lo, float hi) {
  if (!(hi > lo)) return lo;
  return std::uniform_real_distribution<float>(lo, hi)(rng);
}

Crop random_resized_crop(int width, int height, const AugmentOptions& o, std::mt19937_64& rng) {
  const double area = static_cast<double>(width) * static_cast<double>(height);
  const float ratio_lo = std::min(o.crop_ratio_min, o.crop_ratio_max);
  const float ratio_hi = std::max(o.crop_ratio_min, o.crop_ratio_max);
  const float log_lo = std::log(ratio_lo);
  const float log_hi = std::log(ratio_hi);
  const float scale_lo = std::min(o.crop_scale_min, o.crop_scale_max);
  const float scale_hi = std::max(o.crop_scale_min, o.crop_scale_max);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = area * static_cast<double>(uniform(rng, scale_lo, scale_hi));
    const double aspect = std::exp(static_cast<double>(uniform(rng, log_lo, log_hi)));
    const int w = static_cast<int>(std::lround(std::sqrt(target_area * aspect)));
    const int h = static_cast<int>(std::lround(std::sqrt(target_area / aspect)));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      Crop c;
      c.height = h;
      c.width = w;
      c.top = std::uniform_int_distribution<int>(0, height - h)(rng);
      c.left = std::uniform_int_distribution<int>(0, width - w)(rng);
      return c;
    }
  }
  // Fallback: a central crop with the ratio clamped into the allowed range (torchvision).
  Crop c;
  const double in_ratio = static_cast<double>(width) / static_cast<double>(height);
  if (in_ratio < ratio_lo) {
    c.width = width;
    c.height = std::clamp(static_cast<int>(std::lround(width / static_cast<double>(ratio_lo))), 1, height);
  } else if (in_ratio > ratio_hi) {
    c.height = height;
    c.width = std::clamp(static_cast<int>(std::lround(height * static_cast<double>(ratio_hi))), 1, width);
  } else {
    c.width = width;
    c.height = height;
  }
  c.top = (height - c.height) / 2;
  c.left = (width - c.width) / 2;
  return c;
}

// Bilinear sample with the border replicated (coordinates clamped to the image).
float sample(const std::vector<float>& img, int width, int height, double x, double y) {
  x = std::clamp(x, 0.0, static_cast<double>(width - 1));
  y = std::clamp(y, 0.0, static_cast<double>(height - 1));
  const int x0 = std::min(static_cast<int>(x), width - 1);
  const int y0 = std::min(static_cast<int>(y), height - 1);
  const int x1 = std::min(x0 + 1, width - 1);
  const int y1 = std::min(y0 + 1, height - 1);
  const double fx = x - x0;
  const double fy = y - y0;
  const auto at = [&](int xx, int yy) {
    return static_cast<double>(img[static_cast<std::size_t>(yy) * static_cast<std::size_t>(width) + static_cast<std::size_t>(xx)]);
  };
  const double top = at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx;
  const double bottom = at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx;
  return static_cast<float>(top * (1.0 - fy) + bottom * fy);
}

}  // namespace

GreyImage augment(const GreyImage& image, int out_width, int out_height, const AugmentOptions& options,
                  std::mt19937_64& rng) {
  if (image.width <= 0 || image.height <= 0 ||
      image.data.size() != static_cast<std::size_t>(image.width) * static_cast<std::size_t>(image.height))
    throw std::invalid_argument("augment: the image's size does not match its data");
  if (out_width <= 0 || out_height <= 0) throw std::invalid_argument("augment: the output size must be positive");

  // 1. Random resized crop.
  const Crop crop = random_resized_crop(image.width, image.height, options, rng);
  std::vector<float> cropped(static_cast<std::size_t>(crop.width) * static_cast<std::size_t>(crop.height));
  for (int y = 0; y < crop.height; ++y) {
    const float* src = image.data.data() + static_cast<std::size_t>(crop.top + y) * static_cast<std::size_t>(image.width) +
                       static_cast<std::size_t>(crop.left);
    std::copy(src, src + crop.width, cropped.begin() + static_cast<std::ptrdiff_t>(y) * crop.width);
  }
  std::vector<float> resized = (crop.width == out_width && crop.height == out_height)
                                   ? std::move(cropped)
                                   : inference::resize_antialiased(cropped.data(), crop.width, crop.height, out_width, out_height);

  // 2. Geometry: flip and rotation.
  const float degrees = uniform(rng, -std::abs(options.rotation_degrees), std::abs(options.rotation_degrees));
  const bool flip = options.horizontal_flip && std::bernoulli_distribution(0.5)(rng);
  if (flip) {
    for (int y = 0; y < out_height; ++y) {
      auto row = resized.begin() + static_cast<std::ptrdiff_t>(y) * out_width;
      std::reverse(row, row + out_width);
    }
  }
  GreyImage out;
  out.width = out_width;
  out.height = out_height;
  if (degrees != 0.0f) {
    out.data.resize(resized.size());
    const double theta = static_cast<double>(degrees) * std::numbers::pi / 180.0;
    const double c = std::cos(theta);
    const double s = std::sin(theta);
    const double cx = 0.5 * (out_width - 1);
    const double cy = 0.5 * (out_height - 1);
    for (int y = 0; y < out_height; ++y) {
      for (int x = 0; x < out_width; ++x) {
        // Inverse map of a counter-clockwise (on screen, y down) rotation by theta.
        const double dx = x - cx;
        const double dy = y - cy;
        const double sx = cx + c * dx - s * dy;
        const double sy = cy + s * dx + c * dy;
        out.data[static_cast<std::size_t>(y) * static_cast<std::size_t>(out_width) + static_cast<std::size_t>(x)] =
            sample(resized, out_width, out_height, sx, sy);
      }
    }
  } else {
    out.data = std::move(resized);
  }

  // 3. Intensity.
  const float contrast = 1.0f + uniform(rng, -std::abs(options.contrast), std::abs(options.contrast));
  const float brightness = uniform(rng, -std::abs(options.brightness), std::abs(options.brightness));
  const float gamma = std::exp(uniform(rng, -std::abs(options.gamma), std::abs(options.gamma)));
  double mean = 0.0;
  if (contrast != 1.0f) {
    for (const float v : out.data) mean += static_cast<double>(v);
    mean /= static_cast<double>(out.data.size());
  }
  const float fmean = static_cast<float>(mean);
  for (float& v : out.data) {
    float x = v >= 0.0f ? std::min(v, 1.0f) : 0.0f;
    if (contrast != 1.0f) x = (x - fmean) * contrast + fmean;
    x = std::clamp(x + brightness, 0.0f, 1.0f);
    if (gamma != 1.0f) x = std::pow(x, gamma);
    v = x >= 0.0f ? std::min(x, 1.0f) : 0.0f;  // also maps a NaN input to 0
  }
  return out;
}

}  // namespace hilum::training
