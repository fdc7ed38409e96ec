// The grayscale display pipeline (display.hpp) against the formulas of PS3.3 C.11.2.1.2/3,
// computed here independently of the library.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>

#include "support.hpp"

namespace hilum::test {
namespace {

// PS3.3 C.11.2.1.2.1, output range [0, 1].
double linear(double c, double w, double x) {
  if (x <= c - 0.5 - (w - 1.0) / 2.0) return 0.0;
  if (x > c - 0.5 + (w - 1.0) / 2.0) return 1.0;
  return (x - (c - 0.5)) / (w - 1.0) + 0.5;
}

// PS3.3 C.11.2.1.3.2.
double linear_exact(double c, double w, double x) {
  if (x <= c - w / 2.0) return 0.0;
  if (x > c + w / 2.0) return 1.0;
  return (x - c) / w + 0.5;
}

// PS3.3 C.11.2.1.3.1.
double sigmoid(double c, double w, double x) { return 1.0 / (1.0 + std::exp(-4.0 * (x - c) / w)); }

// render_float returns floats; 1e-5 is far below one grey level of a 16-bit display (1.5e-5)
// and far above float rounding of values in [0, 1] (6e-8).
constexpr double kTol = 1e-5;

class DisplayTest : public TempDirTest {
 protected:
  dcm::Radiograph read(const td::DicomSpec& spec, const std::string& name = "image.dcm") {
    const fs::path file = path(name);
    written_ = td::write_dicom(file, spec);
    auto r = dcm::read_radiograph(file);
    EXPECT_TRUE(r.ok()) << describe(r);
    if (!r.ok()) return {};
    return std::move(r.value());
  }

  // Checks every pixel's display value against expected(modality value); returns how many
  // pixels fell on the sloped part (0 < y < 1) so the caller can check the ramp was exercised.
  std::size_t check_all(const dcm::Radiograph& img, const dcm::DisplayOptions& options,
                        const std::function<double(double)>& expected, const std::string& what) {
    auto out = dcm::render_float(img, options);
    EXPECT_TRUE(out.ok()) << what << ": " << describe(out);
    if (!out.ok()) return 0;
    EXPECT_EQ(out->size(), img.pixel_count());
    std::size_t wrong = 0, ramp = 0;
    for (std::size_t i = 0; i < std::min(out->size(), img.modality.size()); ++i) {
      const double x = img.modality[i];
      const double y = expected(x);
      if (y > 0.0 && y < 1.0) ++ramp;
      if (std::abs((*out)[i] - y) > kTol) {
        if (wrong == 0)
          ADD_FAILURE() << what << ": pixel " << i << " modality " << x << ": expected " << y << ", got " << (*out)[i];
        ++wrong;
      }
    }
    EXPECT_EQ(wrong, 0u) << what;
    return ramp;
  }

  std::vector<std::int32_t> written_;
};

TEST_F(DisplayTest, LinearWindowFollowsTheStandard) {
  td::DicomSpec spec;
  spec.rescale_slope = 2.0;  // the window applies to modality values, not stored values
  spec.rescale_intercept = -1024.0;
  spec.windows = {{2600.0, 2000.0, "SOFT"}, {1800.0, 1.0, "STEP"}, {-300.5, 5000.0, "WIDE"}};
  const dcm::Radiograph img = read(spec);
  ASSERT_EQ(img.windows.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const double c = spec.windows[static_cast<std::size_t>(i)].center;
    const double w = spec.windows[static_cast<std::size_t>(i)].width;
    dcm::DisplayOptions o;
    o.voi = dcm::VoiChoice::preset(i);
    const std::size_t ramp = check_all(img, o, [&](double x) { return linear(c, w, x); }, "window " + std::to_string(i));
    if (w > 1.0) {
      EXPECT_GT(ramp, 1000u) << "window " << i << " should put many pixels on its slope";
    }
  }
  // A few values by hand (C.11.2.1.2.1 with c = 2600, w = 2000): below, at the centre, above.
  EXPECT_DOUBLE_EQ(dcm::apply_window(img.windows[0], 1500.0), 0.0);
  EXPECT_NEAR(dcm::apply_window(img.windows[0], 2599.5), 0.5, 1e-12);
  EXPECT_NEAR(dcm::apply_window(img.windows[0], 3000.0), (3000.0 - 2599.5) / 1999.0 + 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(dcm::apply_window(img.windows[0], 3700.0), 1.0);
}

TEST_F(DisplayTest, LinearExactWindowFollowsTheStandard) {
  td::DicomSpec spec;
  spec.voi_lut_function = "LINEAR_EXACT";
  spec.windows = {{1800.0, 1200.0, "A"}, {2000.5, 0.5, "NARROW"}};
  const dcm::Radiograph img = read(spec);
  ASSERT_EQ(img.windows.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    const double c = spec.windows[static_cast<std::size_t>(i)].center;
    const double w = spec.windows[static_cast<std::size_t>(i)].width;
    dcm::DisplayOptions o;
    o.voi = dcm::VoiChoice::preset(i);
    const std::size_t ramp =
        check_all(img, o, [&](double x) { return linear_exact(c, w, x); }, "LINEAR_EXACT window " + std::to_string(i));
    if (i == 0) {
      EXPECT_GT(ramp, 1000u);
    }
  }
}

TEST_F(DisplayTest, SigmoidWindowFollowsTheStandard) {
  td::DicomSpec spec;
  spec.voi_lut_function = "SIGMOID";
  spec.windows = {{1800.0, 1200.0, "S"}};
  const dcm::Radiograph img = read(spec);
  dcm::DisplayOptions o;
  o.voi = dcm::VoiChoice::preset(0);
  check_all(img, o, [](double x) { return sigmoid(1800.0, 1200.0, x); }, "SIGMOID");
}

TEST_F(DisplayTest, CustomWindowsWithEachFunction) {
  td::DicomSpec spec;  // no window in the file
  const dcm::Radiograph img = read(spec);
  dcm::DisplayOptions o;
  o.voi = dcm::VoiChoice::custom(1500.0, 900.0, dcm::VoiFunction::Linear);
  check_all(img, o, [](double x) { return linear(1500.0, 900.0, x); }, "custom LINEAR");
  o.voi = dcm::VoiChoice::custom(1500.0, 900.0, dcm::VoiFunction::LinearExact);
  check_all(img, o, [](double x) { return linear_exact(1500.0, 900.0, x); }, "custom LINEAR_EXACT");
  o.voi = dcm::VoiChoice::custom(1500.0, 900.0, dcm::VoiFunction::Sigmoid);
  check_all(img, o, [](double x) { return sigmoid(1500.0, 900.0, x); }, "custom SIGMOID");
}

TEST_F(DisplayTest, VoiLutSelectionMapsThroughTheTable) {
  td::DicomSpec spec;
  td::LutSpec gamma;  // covers every stored value
  gamma.first_mapped = 0;
  gamma.bits_per_entry = 12;
  gamma.explanation = "GAMMA";
  for (int i = 0; i < 4096; ++i)
    gamma.data.push_back(static_cast<std::uint16_t>(std::lround(4095.0 * std::sqrt(i / 4095.0))));
  td::LutSpec ramp;  // covers part of the range: clamps below 1000 and above 2999
  ramp.first_mapped = 1000;
  ramp.bits_per_entry = 16;
  ramp.explanation = "RAMP";
  for (int i = 0; i < 2000; ++i) ramp.data.push_back(static_cast<std::uint16_t>(i * 32));
  spec.voi_luts = {gamma, ramp};
  spec.windows = {{2048.0, 4096.0, "FULL"}};  // present, but a LUT is asked for
  const dcm::Radiograph img = read(spec);
  ASSERT_EQ(img.voi_luts.size(), 2u);
  for (int k = 0; k < 2; ++k) {
    const td::LutSpec& lut = spec.voi_luts[static_cast<std::size_t>(k)];
    const double top = std::pow(2.0, lut.bits_per_entry) - 1.0;  // LUT output range -> [0, 1]
    dcm::DisplayOptions o;
    o.voi = dcm::VoiChoice::lut(k);
    const auto expected = [&](double x) {
      const double idx = std::clamp(std::floor(x) - lut.first_mapped, 0.0, static_cast<double>(lut.data.size() - 1));
      return lut.data[static_cast<std::size_t>(idx)] / top;
    };
    check_all(img, o, expected, "VOI LUT " + std::to_string(k));
    auto resolved = dcm::resolve_voi(img, o.voi);
    ASSERT_TRUE(resolved.ok()) << describe(resolved);
    EXPECT_TRUE(resolved->is_lut);
    EXPECT_EQ(resolved->lut_index, k);
  }
}

TEST_F(DisplayTest, Render8BitIsTheRoundedFloatRendering) {
  td::DicomSpec spec;
  spec.windows = {{1800.0, 1200.0, "A"}};
  const dcm::Radiograph img = read(spec);
  auto f = dcm::render_float(img);
  auto b = dcm::render_8bit(img);
  ASSERT_TRUE(f.ok() && b.ok()) << describe(f) << " / " << describe(b);
  ASSERT_EQ(b->size(), f->size());
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < f->size(); ++i) {
    const double scaled = std::clamp(static_cast<double>((*f)[i]), 0.0, 1.0) * 255.0;
    const double frac = scaled - std::floor(scaled);
    if (std::abs(frac - 0.5) < 1e-3) continue;  // a tie: either neighbour is a correct rounding
    if ((*b)[i] != static_cast<std::uint8_t>(std::lround(scaled))) ++wrong;
  }
  EXPECT_EQ(wrong, 0u);
}

// Bone is white on screen whatever the photometric interpretation.
class PolarityTest : public DisplayTest, public ::testing::WithParamInterface<bool> {};

TEST_P(PolarityTest, BoneIsBrightOnScreen) {
  const bool mono1 = GetParam();
  td::DicomSpec spec;
  spec.phantom.monochrome1 = mono1;
  spec.windows = {{2048.0, 4096.0, "FULL"}};
  const dcm::Radiograph img = read(spec);
  ASSERT_EQ(img.photometric, mono1 ? dcm::Photometric::Monochrome1 : dcm::Photometric::Monochrome2);
  const td::PhantomLayout layout = td::phantom_layout(spec.phantom);

  auto shown = dcm::render_8bit(img);
  ASSERT_TRUE(shown.ok()) << describe(shown);
  const double lung = box_mean(*shown, img.columns, layout.right_lung);
  const double spine = box_mean(*shown, img.columns, layout.spine);
  EXPECT_GT(spine, lung + 0.3 * 255) << "spine " << spine << ", lung " << lung;
  // MONOCHROME1: the display value is 1 - window(x) (PS3.3 C.7.6.3.1.2: minimum is white).
  dcm::DisplayOptions o;
  check_all(img, o, [&](double x) { const double y = linear(2048.0, 4096.0, x); return mono1 ? 1.0 - y : y; },
            mono1 ? "MONOCHROME1" : "MONOCHROME2");

  // The user's invert toggle flips the display on top of the file's polarity.
  o.invert = true;
  check_all(img, o, [&](double x) { const double y = linear(2048.0, 4096.0, x); return mono1 ? y : 1.0 - y; },
            "inverted");
  auto flipped = dcm::render_8bit(img, o);
  ASSERT_TRUE(flipped.ok()) << describe(flipped);
  EXPECT_LT(box_mean(*flipped, img.columns, layout.spine), box_mean(*flipped, img.columns, layout.right_lung));
}

INSTANTIATE_TEST_SUITE_P(Both, PolarityTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return std::string(p.param ? "MONOCHROME1" : "MONOCHROME2");
                         });

TEST_F(DisplayTest, PresentationLutShapeInverseInvertsMonochrome2) {
  td::DicomSpec spec;
  spec.presentation_lut_shape = "INVERSE";
  spec.windows = {{2048.0, 4096.0, "FULL"}};
  const dcm::Radiograph img = read(spec);
  EXPECT_TRUE(img.display_inverted());
  dcm::DisplayOptions o;
  check_all(img, o, [](double x) { return 1.0 - linear(2048.0, 4096.0, x); }, "INVERSE");
}

TEST_F(DisplayTest, AutoWindowIgnoresTheCollimatorBorder) {
  for (const bool mono1 : {false, true}) {
    td::DicomSpec spec;  // no window in the file
    spec.phantom.monochrome1 = mono1;
    const dcm::Radiograph img = read(spec, mono1 ? "mono1.dcm" : "mono2.dcm");
    const td::PhantomLayout layout = td::phantom_layout(spec.phantom);
    const double range = layout.max_stored - layout.min_stored;
    const dcm::Window w = dcm::auto_window(img);
    const double lower = w.center - w.width / 2.0;
    const double upper = w.center + w.width / 2.0;
    const double lung = box_mean(img.modality, img.columns, layout.right_lung);
    const double spine = box_mean(img.modality, img.columns, layout.spine);
    SCOPED_TRACE(std::string(mono1 ? "MONOCHROME1" : "MONOCHROME2") + ": window [" + std::to_string(lower) + ", " +
                 std::to_string(upper) + "], lung " + std::to_string(lung) + ", spine " + std::to_string(spine));
    // The anatomy stays within [2 %, 92 %] of the range; the border sits at 100 % (MONOCHROME2)
    // or 0 % (MONOCHROME1). A window that ignores it stops at least 4 % of the range short.
    if (mono1) {
      EXPECT_GT(lower, layout.border_value + 0.04 * range);
    } else {
      EXPECT_LT(upper, layout.border_value - 0.04 * range);
    }
    // ... and still spans the anatomy from lung to spine.
    EXPECT_LT(lower, std::min(lung, spine));
    EXPECT_GT(upper, std::max(lung, spine) - 0.05 * range);
    EXPECT_GT(w.width, 0.3 * range);

    // The same through render: Automatic resolves to that window.
    auto resolved = dcm::resolve_voi(img, dcm::VoiChoice::automatic());
    ASSERT_TRUE(resolved.ok()) << describe(resolved);
    EXPECT_FALSE(resolved->is_lut);
    EXPECT_DOUBLE_EQ(resolved->window.center, w.center);
    EXPECT_DOUBLE_EQ(resolved->window.width, w.width);
    // Without any window or LUT in the file, Default is automatic too.
    auto def = dcm::resolve_voi(img, dcm::VoiChoice{});
    ASSERT_TRUE(def.ok()) << describe(def);
    EXPECT_DOUBLE_EQ(def->window.center, w.center);
    EXPECT_DOUBLE_EQ(def->window.width, w.width);
  }
}

TEST_F(DisplayTest, AutoWindowMatchesTheBorderlessPhantom) {
  // Excluding the border should give about the window of the same anatomy without a border.
  td::DicomSpec with;
  td::DicomSpec without;
  without.phantom.collimator_border = false;
  const dcm::Radiograph a = read(with, "with.dcm");
  const dcm::Radiograph b = read(without, "without.dcm");
  const dcm::Window wa = dcm::auto_window(a);
  const dcm::Window wb = dcm::auto_window(b);
  const double range = 4095.0;
  // 5 % of the range: the bordered image shows 22 % less of the field (its edges), which moves
  // the percentiles a little but nowhere near the 8 % gap between anatomy and border.
  EXPECT_NEAR(wa.center + wa.width / 2.0, wb.center + wb.width / 2.0, 0.05 * range);
  EXPECT_NEAR(wa.center - wa.width / 2.0, wb.center - wb.width / 2.0, 0.05 * range);
}

TEST_F(DisplayTest, DefaultIsTheFirstWindowThenTheFirstLut) {
  td::DicomSpec spec;
  spec.windows = {{1700.0, 900.0, "FIRST"}, {2000.0, 4000.0, "SECOND"}};
  const dcm::Radiograph img = read(spec, "windows.dcm");
  auto def = dcm::resolve_voi(img, dcm::VoiChoice{});
  ASSERT_TRUE(def.ok()) << describe(def);
  EXPECT_FALSE(def->is_lut);
  EXPECT_DOUBLE_EQ(def->window.center, 1700.0);
  EXPECT_DOUBLE_EQ(def->window.width, 900.0);
  check_all(img, dcm::DisplayOptions{}, [](double x) { return linear(1700.0, 900.0, x); }, "default");

  td::DicomSpec lut_only;
  td::LutSpec lut;
  lut.first_mapped = 0;
  lut.bits_per_entry = 16;
  for (int i = 0; i < 4096; ++i) lut.data.push_back(static_cast<std::uint16_t>(65535 - i * 16));
  lut_only.voi_luts = {lut};
  const dcm::Radiograph img2 = read(lut_only, "lut.dcm");
  auto def2 = dcm::resolve_voi(img2, dcm::VoiChoice{});
  ASSERT_TRUE(def2.ok()) << describe(def2);
  EXPECT_TRUE(def2->is_lut);
  EXPECT_EQ(def2->lut_index, 0);
}

TEST_F(DisplayTest, MinMaxWindowSpansTheModalityRange) {
  td::DicomSpec spec;
  spec.rescale_slope = 3.0;
  spec.rescale_intercept = -500.0;
  const dcm::Radiograph img = read(spec);
  dcm::DisplayOptions o;
  o.voi = dcm::VoiChoice::min_max();
  auto out = dcm::render_float(img, o);
  ASSERT_TRUE(out.ok()) << describe(out);
  const auto [mn, mx] = std::minmax_element(img.modality.begin(), img.modality.end());
  const std::size_t imin = static_cast<std::size_t>(mn - img.modality.begin());
  const std::size_t imax = static_cast<std::size_t>(mx - img.modality.begin());
  EXPECT_LT((*out)[imin], 0.01f);
  EXPECT_GT((*out)[imax], 0.99f);
}

TEST_F(DisplayTest, OutOfRangePresetOrLutIsAnError) {
  td::DicomSpec spec;
  spec.windows = {{2048.0, 4096.0, "FULL"}, {1500.0, 2200.0, "LUNG"}};
  const dcm::Radiograph img = read(spec);
  for (const dcm::VoiChoice& bad : {dcm::VoiChoice::preset(2), dcm::VoiChoice::preset(-1), dcm::VoiChoice::preset(99),
                                    dcm::VoiChoice::lut(0)}) {
    dcm::DisplayOptions o;
    o.voi = bad;
    auto r8 = dcm::render_8bit(img, o);
    EXPECT_FALSE(r8.ok()) << "VOI choice kind " << static_cast<int>(bad.kind) << " index " << bad.index;
    if (!r8.ok()) {
      EXPECT_FALSE(r8.error().message.empty());
    }
    EXPECT_FALSE(dcm::render_float(img, o).ok());
    EXPECT_FALSE(dcm::resolve_voi(img, bad).ok());
  }
  // In-range presets work.
  dcm::DisplayOptions ok;
  ok.voi = dcm::VoiChoice::preset(1);
  EXPECT_TRUE(dcm::render_8bit(img, ok).ok());
}

// Pixel Padding Value marks pixels that are not image (e.g. outside a rotated detector): the
// automatic window ignores them, wherever they are and whatever their value. Here the padding
// value (500) is not the image minimum, so only the padding information can exclude it.
TEST(AutoWindowPadding, PaddingPixelsAreIgnored) {
  dcm::Radiograph img;
  img.rows = 200;
  img.columns = 200;
  img.stored.resize(img.pixel_count());
  for (int r = 0; r < img.rows; ++r) {
    for (int c = 0; c < img.columns; ++c) {
      const bool pad = (r + c) % 7 == 0 || c > 150 + (r % 13);  // scattered and irregular, ~30%
      const bool dark_speck = !pad && (r * 31 + c * 17) % 500 == 0;  // 0.2% of real pixels at 100
      std::int32_t v = 1000 + (r * 5 + c * 3) % 1000;                // the image: 1000..1999
      if (dark_speck) v = 100;
      if (pad) v = 500;
      img.stored[static_cast<std::size_t>(r * img.columns + c)] = v;
    }
  }
  img.modality.assign(img.stored.begin(), img.stored.end());
  img.min_modality = 100.0f;
  img.max_modality = 1999.0f;

  const dcm::Window unaware = dcm::auto_window(img);
  img.pixel_padding_value = 500;
  const dcm::Window aware = dcm::auto_window(img);
  const double lower = aware.center - aware.width / 2.0;
  const double upper = aware.center + aware.width / 2.0;
  EXPECT_GT(lower, 990.0);
  EXPECT_LT(lower, 1030.0);
  EXPECT_GT(upper, 1960.0);
  EXPECT_LT(upper, 2010.0);
  // Without the padding information the padding mass drags the lower edge down to ~500.
  EXPECT_LT(unaware.center - unaware.width / 2.0, 600.0);
}

}  // namespace
}  // namespace hilum::test
