// Colour images (RGB, YBR_FULL, YBR_FULL_422, PALETTE COLOR; native and RLE) read as the grey of
// their colours, with the share of their pixels that are visibly in colour. Before, every one of
// them was refused ("unsupported photometric interpretation ... for a chest radiograph"): an
// ultrasound frame or a chest film sent as a colour secondary capture could not be opened at all.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdlib>
#include <string>

#include "support.hpp"

namespace hilum::test {
namespace {

class ColourTest : public TempDirTest {};

// A pattern with every kind of pixel: grey ramps (left half) and saturated colours (right half).
std::array<std::uint8_t, 3> pattern(int row, int column) {
  if (column < 32) {
    const auto v = static_cast<std::uint8_t>((row * 5 + column * 3) % 50 * 5);  // 50 greys: a palette holds them
    return {v, v, v};
  }
  static const std::array<std::array<std::uint8_t, 3>, 6> colours{{{255, 0, 0}, {0, 200, 0}, {0, 0, 255}, {240, 200, 20}, {20, 180, 220}, {160, 40, 200}}};
  return colours[static_cast<std::size_t>((row / 8 + column / 8) % 6)];
}

int expected_grey(const std::array<std::uint8_t, 3>& p) { return (299 * p[0] + 587 * p[1] + 114 * p[2] + 500) / 1000; }

struct Case {
  const char* name;
  const char* photometric;
  bool planar;
  bool rle;
  int tolerance;  // YBR is rounded once on the way in and once on the way out
};

class ColourCases : public ColourTest, public ::testing::WithParamInterface<Case> {};

TEST_P(ColourCases, ReadAsTheGreyOfTheirColours) {
  const Case c = GetParam();
  td::ColourDicomSpec spec;
  spec.photometric = c.photometric;
  spec.planar = c.planar;
  spec.rle = c.rle;
  spec.colour = pattern;
  const fs::path file = path(std::string(c.name) + ".dcm");
  td::write_colour_dicom(file, spec);
  auto r = dcm::read_radiograph(file);
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r->colour_photometric, c.photometric);
  EXPECT_EQ(r->photometric, dcm::Photometric::Monochrome2);
  ASSERT_EQ(r->rows, spec.rows);
  ASSERT_EQ(r->columns, spec.columns);
  // A palette of 16-bit entries gives 16-bit grey levels (each 8-bit colour v stored as 257 v).
  const double scale = std::string(c.photometric) == "PALETTE COLOR" ? 257.0 : 1.0;
  EXPECT_EQ(r->bits_stored, scale > 1.0 ? 16 : 8);
  int worst = 0;
  for (int row = 0; row < spec.rows; ++row) {
    // YBR_FULL_422 shares its chroma between two pixels: judge its grey half, where chroma is none.
    for (int column = 0; column < (std::string(c.photometric) == "YBR_FULL_422" ? 32 : spec.columns); ++column) {
      const int got = static_cast<int>(std::lround(r->modality_at(row, column) / scale));
      worst = std::max(worst, std::abs(got - expected_grey(pattern(row, column))));
    }
  }
  EXPECT_LE(worst, c.tolerance);
  // Half of the pixels are saturated colours, half are grey.
  EXPECT_NEAR(r->coloured_share, 0.5, 0.02);
  // One window: the grey levels as they are (0..255 shown as 0..255), which the viewer names.
  ASSERT_EQ(r->windows.size(), 1u);
  auto voi = dcm::resolve_voi(r.value(), {});
  ASSERT_TRUE(voi.ok());
  EXPECT_EQ(voi->source, "colour image in grey");
  auto shown = dcm::render_8bit(r.value(), {});
  ASSERT_TRUE(shown.ok()) << shown.error().message;
  EXPECT_LE(std::abs(int((*shown)[5]) - expected_grey(pattern(0, 5))), c.tolerance);
}

INSTANTIATE_TEST_SUITE_P(Layouts, ColourCases,
                         ::testing::Values(Case{"rgb", "RGB", false, false, 0}, Case{"rgb_planar", "RGB", true, false, 0},
                                           Case{"rgb_rle", "RGB", false, true, 0}, Case{"ybr_full", "YBR_FULL", false, false, 1},
                                           Case{"ybr_full_rle", "YBR_FULL", false, true, 1},
                                           Case{"ybr_full_422", "YBR_FULL_422", false, false, 1},
                                           Case{"palette", "PALETTE COLOR", false, false, 0},
                                           Case{"palette_rle", "PALETTE COLOR", false, true, 0}),
                         [](const ::testing::TestParamInfo<Case>& p) { return std::string(p.param.name); });

TEST_F(ColourTest, AGreyFilmStoredInColourHasNoColouredPixels) {
  td::ColourDicomSpec spec;
  spec.colour = [](int row, int column) {
    const auto v = static_cast<std::uint8_t>((row * 7 + column) % 256);
    return std::array<std::uint8_t, 3>{v, v, v};
  };
  for (const char* photometric : {"RGB", "YBR_FULL", "YBR_FULL_422"}) {
    spec.photometric = photometric;
    const fs::path file = path(std::string("grey-") + photometric + ".dcm");
    td::write_colour_dicom(file, spec);
    auto r = dcm::read_radiograph(file);
    ASSERT_TRUE(r.ok()) << describe(r);
    EXPECT_EQ(r->coloured_share, 0.0) << photometric;
    // Each grey pixel keeps its value exactly.
    EXPECT_EQ(static_cast<int>(r->modality_at(3, 10)), (3 * 7 + 10) % 256) << photometric;
  }
}

TEST_F(ColourTest, ColourWithTheWrongNumberOfSamplesIsCorrupt) {
  td::DicomSpec spec;
  spec.photometric_override = "YBR_FULL_422";  // a one-sample phantom that says it is colour
  const fs::path file = path("ybr-one-sample.dcm");
  (void)td::write_dicom(file, spec);
  auto r = dcm::read_radiograph(file);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, dcm::ErrorKind::Corrupt) << describe(r);
  EXPECT_NE(r.error().message.find("YBR_FULL_422"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("samples per pixel"), std::string::npos) << r.error().message;
}

TEST_F(ColourTest, AColourImageWithItsPixelDataCutShortIsTruncated) {
  td::ColourDicomSpec spec;
  spec.colour = pattern;
  const fs::path file = path("rgb-cut.dcm");
  td::write_colour_dicom(file, spec);
  // Pixel Data is last: keep two of its three bytes per pixel.
  fs::resize_file(file, fs::file_size(file) - static_cast<std::uintmax_t>(spec.rows * spec.columns));
  auto r = dcm::read_radiograph(file);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, dcm::ErrorKind::Truncated) << describe(r);
}

}  // namespace
}  // namespace hilum::test
