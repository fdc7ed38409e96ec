// Augmentations: determinism, size and range, identity when switched off, crop, rotation geometry
// (on a linear ramp, which bilinear interpolation reproduces exactly, and an off-centre blob),
// border replication, flips and intensity.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <random>
#include <vector>

#include "hilum/training/augment.hpp"

namespace {

using hilum::training::augment;
using hilum::training::AugmentOptions;
using hilum::training::GreyImage;

GreyImage make_image(int w, int h, const auto& f) {
  GreyImage img;
  img.width = w;
  img.height = h;
  img.data.resize(static_cast<std::size_t>(w) * static_cast<std::size_t>(h));
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) img.data[static_cast<std::size_t>(y * w + x)] = static_cast<float>(f(x, y));
  return img;
}

float at(const GreyImage& img, int x, int y) { return img.data[static_cast<std::size_t>(y * img.width + x)]; }

AugmentOptions all_off() {
  AugmentOptions o;
  o.crop_scale_min = o.crop_scale_max = 1.0f;
  o.rotation_degrees = 0.0f;
  o.brightness = 0.0f;
  o.contrast = 0.0f;
  o.gamma = 0.0f;
  o.horizontal_flip = false;
  return o;
}

GreyImage noise_image(int w, int h, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  return make_image(w, h, [&](int, int) { return u(rng); });
}

TEST(Augment, DeterministicForAGeneratorState) {
  const GreyImage img = noise_image(96, 80, 1);
  std::mt19937_64 a(42);
  std::mt19937_64 b(42);
  std::mt19937_64 c(43);
  const GreyImage ra = augment(img, 48, 40, {}, a);
  const GreyImage rb = augment(img, 48, 40, {}, b);
  const GreyImage rc = augment(img, 48, 40, {}, c);
  EXPECT_EQ(ra.data, rb.data);
  EXPECT_NE(ra.data, rc.data);
  // The generator advanced: the next draw differs from the first.
  const GreyImage ra2 = augment(img, 48, 40, {}, a);
  EXPECT_NE(ra.data, ra2.data);
}

TEST(Augment, OutputSizeAndRange) {
  const GreyImage img = noise_image(120, 90, 2);
  AugmentOptions strong;
  strong.brightness = 0.9f;
  strong.contrast = 0.9f;
  strong.gamma = 1.5f;
  strong.rotation_degrees = 45.0f;
  for (std::uint64_t seed = 0; seed < 10; ++seed) {
    std::mt19937_64 rng(seed);
    const GreyImage out = augment(img, 64, 48, strong, rng);
    EXPECT_EQ(out.width, 64);
    EXPECT_EQ(out.height, 48);
    ASSERT_EQ(out.data.size(), 64u * 48u);
    for (const float v : out.data) {
      EXPECT_GE(v, 0.0f);
      EXPECT_LE(v, 1.0f);
    }
  }
}

TEST(Augment, IdentityWhenEverythingIsOff) {
  for (const auto& [w, h] : {std::pair{32, 32}, std::pair{40, 30}}) {
    const GreyImage img = noise_image(w, h, 3);
    for (std::uint64_t seed = 0; seed < 5; ++seed) {
      std::mt19937_64 rng(seed);
      const GreyImage out = augment(img, w, h, all_off(), rng);
      ASSERT_EQ(out.data.size(), img.data.size());
      for (std::size_t i = 0; i < img.data.size(); ++i) ASSERT_NEAR(out.data[i], img.data[i], 1e-6f) << w << "x" << h;
    }
  }
}

TEST(Augment, CropIsASubWindow) {
  // A horizontal ramp: a crop keeps every row a (shorter) increasing ramp inside [0, 1].
  const GreyImage img = make_image(100, 100, [](int x, int) { return x / 99.0; });
  AugmentOptions o = all_off();
  o.crop_scale_min = 0.3f;
  o.crop_scale_max = 0.6f;
  int narrower = 0;
  for (std::uint64_t seed = 0; seed < 10; ++seed) {
    std::mt19937_64 rng(seed);
    const GreyImage out = augment(img, 50, 50, o, rng);
    for (int y = 0; y < 50; ++y) {
      for (int x = 1; x < 50; ++x) ASSERT_GT(at(out, x, y), at(out, x - 1, y));
      ASSERT_NEAR(at(out, 7, y), at(out, 7, 0), 1e-6f);  // rows identical: no vertical change
    }
    const float span = at(out, 49, 0) - at(out, 0, 0);
    // Width fraction of the crop: sqrt(scale * ratio) in [sqrt(0.3 * 3/4), sqrt(0.6 * 4/3)] ~ [0.47, 0.9].
    EXPECT_GT(span, 0.4f);
    EXPECT_LT(span, 0.92f);
    narrower += span < 0.9f ? 1 : 0;
  }
  EXPECT_EQ(narrower, 10);
}

// Plane fit a + gx x + gy y over the pixels within `radius` of the centre; returns the residual.
double fit_plane(const GreyImage& img, double radius, double& gx, double& gy) {
  const double cx = 0.5 * (img.width - 1);
  const double cy = 0.5 * (img.height - 1);
  double sxx = 0, sxy = 0, syy = 0, sx = 0, sy = 0, sv = 0, sxv = 0, syv = 0, n = 0;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) {
      const double dx = x - cx;
      const double dy = y - cy;
      if (dx * dx + dy * dy > radius * radius) continue;
      const double v = at(img, x, y);
      sxx += dx * dx, sxy += dx * dy, syy += dy * dy, sx += dx, sy += dy, sv += v, sxv += dx * v, syv += dy * v, n += 1;
    }
  // Symmetric disc: sx = sy = sxy = 0 up to rounding, so the normal equations decouple.
  gx = sxv / sxx;
  gy = syv / syy;
  const double a = sv / n;
  double worst = 0.0;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) {
      const double dx = x - cx;
      const double dy = y - cy;
      if (dx * dx + dy * dy > radius * radius) continue;
      worst = std::max(worst, std::abs(at(img, x, y) - (a + gx * dx + gy * dy)));
    }
  (void)sx, (void)sy, (void)sxy;
  return worst;
}

TEST(Augment, RotationIsARotationAboutTheCentre) {
  const int size = 65;
  const double c = 32.0;
  const GreyImage ramp = make_image(size, size, [&](int x, int) { return 0.5 + 0.01 * (x - c); });
  const GreyImage blob = make_image(size, size, [&](int x, int y) {
    const double dx = x - (c + 15.0);
    const double dy = y - c;
    return std::exp(-(dx * dx + dy * dy) / (2.0 * 2.5 * 2.5));
  });
  AugmentOptions o = all_off();
  o.rotation_degrees = 25.0f;
  int positive = 0;
  int negative = 0;
  double largest = 0.0;
  for (std::uint64_t seed = 0; seed < 12; ++seed) {
    std::mt19937_64 r1(seed);
    std::mt19937_64 r2(seed);  // same draws: the same angle for both images
    const GreyImage rr = augment(ramp, size, size, o, r1);
    const GreyImage rb = augment(blob, size, size, o, r2);
    double gx = 0.0;
    double gy = 0.0;
    // Bilinear interpolation reproduces a linear ramp exactly away from the border.
    EXPECT_LT(fit_plane(rr, 20.0, gx, gy), 1e-5);
    EXPECT_NEAR(std::hypot(gx, gy), 0.01, 1e-6);  // a rotation keeps the slope
    // Content turned counter-clockwise by theta on screen: value = 0.5 + 0.01 (cos t dx - sin t dy).
    const double theta = std::atan2(-gy, gx);
    EXPECT_LE(std::abs(theta), 25.0 * std::numbers::pi / 180.0 + 1e-6);
    positive += theta > 0.01 ? 1 : 0;
    negative += theta < -0.01 ? 1 : 0;
    largest = std::max(largest, std::abs(theta));
    // The blob at (+15, 0) from the centre moves to (15 cos t, -15 sin t).
    double m = 0.0;
    double mx = 0.0;
    double my = 0.0;
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x) {
        const double v = at(rb, x, y);
        m += v, mx += v * (x - c), my += v * (y - c);
      }
    EXPECT_NEAR(mx / m, 15.0 * std::cos(theta), 0.05);
    EXPECT_NEAR(my / m, -15.0 * std::sin(theta), 0.05);
  }
  EXPECT_GT(positive, 0);
  EXPECT_GT(negative, 0);
  EXPECT_GT(largest, 10.0 * std::numbers::pi / 180.0);
}

TEST(Augment, RotationReplicatesTheBorder) {
  // A constant image stays constant: corners are filled from the border, not with black.
  const GreyImage img = make_image(40, 30, [](int, int) { return 0.7; });
  AugmentOptions o = all_off();
  o.rotation_degrees = 40.0f;
  for (std::uint64_t seed = 0; seed < 5; ++seed) {
    std::mt19937_64 rng(seed);
    const GreyImage out = augment(img, 40, 30, o, rng);
    for (const float v : out.data) ASSERT_NEAR(v, 0.7f, 1e-6f);
  }
}

TEST(Augment, NoFlipByDefaultFlipWhenAsked) {
  const GreyImage img = make_image(30, 20, [](int x, int y) { return (x + 0.3 * y) / 40.0; });
  EXPECT_FALSE(AugmentOptions{}.horizontal_flip);
  AugmentOptions o = all_off();
  o.crop_ratio_min = o.crop_ratio_max = 1.5f;  // the whole 30 x 20 image
  int flipped = 0;
  int kept = 0;
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    std::mt19937_64 rng(seed);
    const GreyImage out = augment(img, 30, 20, o, rng);
    EXPECT_NEAR(at(out, 0, 5), at(img, 0, 5), 1e-6f);  // never mirrored when off
    o.horizontal_flip = true;
    std::mt19937_64 rng2(seed);
    const GreyImage f = augment(img, 30, 20, o, rng2);
    o.horizontal_flip = false;
    if (std::abs(at(f, 0, 5) - at(img, 29, 5)) < 1e-6f) ++flipped;
    if (std::abs(at(f, 0, 5) - at(img, 0, 5)) < 1e-6f) ++kept;
  }
  EXPECT_GT(flipped, 0);
  EXPECT_GT(kept, 0);
  EXPECT_EQ(flipped + kept, 20);
}

TEST(Augment, IntensityChangesAreBounded) {
  const GreyImage flat = make_image(16, 16, [](int, int) { return 0.5; });
  AugmentOptions o = all_off();
  o.brightness = 0.1f;
  std::vector<float> seen;
  for (std::uint64_t seed = 0; seed < 10; ++seed) {
    std::mt19937_64 rng(seed);
    const GreyImage out = augment(flat, 16, 16, o, rng);
    for (const float v : out.data) ASSERT_EQ(v, out.data[0]);  // a shift, the same everywhere
    EXPECT_LE(std::abs(out.data[0] - 0.5f), 0.1f + 1e-6f);
    seen.push_back(out.data[0]);
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_GT(seen.back() - seen.front(), 0.02f);
  // Contrast only: the mean is kept and the spread scales by at most 1 +- c.
  const GreyImage ramp = make_image(16, 16, [](int x, int) { return 0.3 + 0.02 * x; });
  o = all_off();
  o.contrast = 0.2f;
  for (std::uint64_t seed = 0; seed < 5; ++seed) {
    std::mt19937_64 rng(seed);
    const GreyImage out = augment(ramp, 16, 16, o, rng);
    double mean_in = 0.0;
    double mean_out = 0.0;
    for (std::size_t i = 0; i < ramp.data.size(); ++i) mean_in += ramp.data[i], mean_out += out.data[i];
    EXPECT_NEAR(mean_out, mean_in, 1e-3);
    const double factor = (at(out, 15, 0) - at(out, 0, 0)) / (at(ramp, 15, 0) - at(ramp, 0, 0));
    EXPECT_GE(factor, 0.8 - 1e-5);
    EXPECT_LE(factor, 1.2 + 1e-5);
  }
  // Gamma only keeps 0 and 1 fixed and is monotone.
  o = all_off();
  o.gamma = 0.5f;
  o.crop_ratio_min = o.crop_ratio_max = 2.0f;  // the whole 2 x 1 image
  const GreyImage two = make_image(2, 1, [](int x, int) { return x; });
  std::mt19937_64 rng(1);
  const GreyImage g = augment(two, 2, 1, o, rng);
  EXPECT_FLOAT_EQ(g.data[0], 0.0f);
  EXPECT_FLOAT_EQ(g.data[1], 1.0f);
}

}  // namespace
