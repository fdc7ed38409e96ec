// The pixel module in all its variants: bit depths, signed pixels, high bit not at the top,
// MONOCHROME1/2, ACR-NEMA files, and the Modality LUT stage (rescale and LUT sequence).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>

#include "support.hpp"

namespace hilum::test {
namespace {

// ---- bit layouts ---------------------------------------------------------------------------

struct Layout {
  int bits_allocated;
  int bits_stored;
  int high_bit;
  bool is_signed;
  td::Encoding encoding;
};

void PrintTo(const Layout& l, std::ostream* os) {
  *os << "bits allocated " << l.bits_allocated << ", stored " << l.bits_stored << ", high bit " << l.high_bit
      << (l.is_signed ? ", signed, " : ", unsigned, ") << td::to_string(l.encoding);
}

std::string layout_name(const ::testing::TestParamInfo<Layout>& info) {
  const Layout& l = info.param;
  std::string name = "alloc" + std::to_string(l.bits_allocated) + "_stored" + std::to_string(l.bits_stored) +
                     "_high" + std::to_string(l.high_bit) + (l.is_signed ? "_signed_" : "_unsigned_") +
                     td::to_string(l.encoding);
  for (char& c : name)
    if (c == '-') c = '_';
  return name;
}

class BitLayoutTest : public TempDirTest, public ::testing::WithParamInterface<Layout> {};

TEST_P(BitLayoutTest, StoredValuesComeBackExactly) {
  const Layout l = GetParam();
  td::DicomSpec spec;
  spec.encoding = l.encoding;
  spec.phantom = phantom(l.bits_allocated, l.bits_stored, l.high_bit, l.is_signed);
  const fs::path file = path("image.dcm");
  const auto written = td::write_dicom(file, spec);

  auto r = dcm::read_radiograph(file);
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r->bits_allocated, l.bits_allocated);
  EXPECT_EQ(r->bits_stored, l.bits_stored);
  EXPECT_EQ(r->high_bit, l.high_bit);
  EXPECT_EQ(r->is_signed, l.is_signed);
  EXPECT_TRUE(same_values(written, r->stored));

  const td::PhantomLayout layout = td::phantom_layout(spec.phantom);
  const auto [mn, mx] = std::minmax_element(r->stored.begin(), r->stored.end());
  EXPECT_GE(*mn, layout.min_stored);
  EXPECT_LE(*mx, layout.max_stored);
  EXPECT_EQ(*mx, layout.max_stored) << "the collimator border holds the largest stored value";
  if (l.is_signed) {
    // Signed pixels: the lungs are negative and must come back negative (sign extension from
    // bits_stored, not from the 16-bit word).
    const double lung = box_mean(r->stored, r->columns, layout.right_lung);
    EXPECT_LT(lung, 0.0);
    EXPECT_LT(*mn, 0);
    EXPECT_GT(std::count_if(r->stored.begin(), r->stored.end(), [](std::int32_t v) { return v < 0; }),
              static_cast<std::ptrdiff_t>(r->stored.size() / 10));
  } else {
    EXPECT_GE(*mn, 0);
  }
  // Modality values equal stored values (no rescale), sign included.
  for (std::size_t i = 0; i < r->stored.size(); i += 101) {
    ASSERT_FLOAT_EQ(r->modality[i], static_cast<float>(r->stored[i])) << "pixel " << i;
  }
  EXPECT_FLOAT_EQ(r->min_modality, static_cast<float>(*mn));
  EXPECT_FLOAT_EQ(r->max_modality, static_cast<float>(*mx));
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, BitLayoutTest,
    ::testing::Values(
        // Bits stored 8, 10, 12, 14, 16 in 8- and 16-bit words.
        Layout{8, 8, 7, false, td::Encoding::ExplicitLittle}, Layout{16, 8, 7, false, td::Encoding::ExplicitLittle},
        Layout{16, 10, 9, false, td::Encoding::ExplicitLittle},
        Layout{16, 12, 11, false, td::Encoding::ExplicitLittle},
        Layout{16, 14, 13, false, td::Encoding::ExplicitLittle},
        Layout{16, 16, 15, false, td::Encoding::ExplicitLittle},
        // Signed pixels.
        Layout{8, 8, 7, true, td::Encoding::ExplicitLittle}, Layout{16, 12, 11, true, td::Encoding::ExplicitLittle},
        Layout{16, 16, 15, true, td::Encoding::ExplicitLittle},
        // High bit not at the top of the stored bits' word (other bits zero).
        Layout{16, 10, 12, false, td::Encoding::ExplicitLittle},
        Layout{16, 12, 14, false, td::Encoding::ExplicitLittle}, Layout{8, 6, 6, false, td::Encoding::ExplicitLittle},
        Layout{16, 10, 13, true, td::Encoding::ExplicitLittle},
        // The same layouts through other byte orders and a codec that keeps whole words.
        Layout{8, 8, 7, false, td::Encoding::ExplicitBig}, Layout{16, 12, 11, true, td::Encoding::ExplicitBig},
        Layout{16, 10, 12, false, td::Encoding::ImplicitLittle}, Layout{16, 10, 12, false, td::Encoding::ExplicitBig},
        Layout{16, 16, 15, true, td::Encoding::Rle}, Layout{8, 8, 7, false, td::Encoding::Rle},
        Layout{16, 12, 11, true, td::Encoding::J2kLossless}, Layout{16, 16, 15, false, td::Encoding::J2kLossless},
        Layout{8, 8, 7, false, td::Encoding::J2kLossless}, Layout{16, 16, 15, false, td::Encoding::JpegLsLossless},
        Layout{8, 8, 7, false, td::Encoding::JpegLosslessSV1},
        Layout{16, 16, 15, false, td::Encoding::JpegLosslessSV1}),
    layout_name);

// ---- photometric interpretation ------------------------------------------------------------

class PhotometricTest : public TempDirTest, public ::testing::WithParamInterface<bool> {};

TEST_P(PhotometricTest, ReadsPolarityAndValues) {
  const bool mono1 = GetParam();
  td::DicomSpec spec;
  spec.phantom.monochrome1 = mono1;
  const fs::path file = path("image.dcm");
  const auto written = td::write_dicom(file, spec);
  auto r = dcm::read_radiograph(file);
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r->photometric, mono1 ? dcm::Photometric::Monochrome1 : dcm::Photometric::Monochrome2);
  EXPECT_EQ(r->display_inverted(), mono1);
  EXPECT_TRUE(same_values(written, r->stored));
  // Stored polarity: MONOCHROME1 keeps bone low and lungs high in the stored values.
  const td::PhantomLayout layout = td::phantom_layout(spec.phantom);
  const double lung = box_mean(r->stored, r->columns, layout.right_lung);
  const double spine = box_mean(r->stored, r->columns, layout.spine);
  if (mono1) {
    EXPECT_GT(lung, spine);
  } else {
    EXPECT_LT(lung, spine);
  }
}

INSTANTIATE_TEST_SUITE_P(Both, PhotometricTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return std::string(p.param ? "MONOCHROME1" : "MONOCHROME2");
                         });

// ---- ACR-NEMA ------------------------------------------------------------------------------

class AcrNemaTest : public TempDirTest {};

TEST_F(AcrNemaTest, ReadsAFileWithoutPreambleAndMetaHeader) {
  td::DicomSpec spec;
  spec.part10 = false;
  spec.encoding = td::Encoding::ImplicitLittle;
  spec.patient_id = "ACR-NEMA-1";
  const fs::path file = path("acrnema.dcm");
  const auto written = td::write_dicom(file, spec);
  auto r = dcm::read_radiograph(file);
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_FALSE(r->meta.has_part10_header);
  EXPECT_EQ(r->meta.transfer_syntax_uid, "1.2.840.10008.1.2");  // what such a file is
  EXPECT_EQ(r->meta.patient_id, "ACR-NEMA-1");
  EXPECT_EQ(r->rows, spec.phantom.rows);
  EXPECT_EQ(r->columns, spec.phantom.columns);
  EXPECT_TRUE(same_values(written, r->stored));
}

TEST_F(AcrNemaTest, Part10FileHasTheHeader) {
  td::DicomSpec spec;
  const fs::path file = path("part10.dcm");
  (void)td::write_dicom(file, spec);
  auto r = dcm::read_radiograph(file);
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_TRUE(r->meta.has_part10_header);
}

// ---- Modality LUT stage --------------------------------------------------------------------

class ModalityTest : public TempDirTest {};

TEST_F(ModalityTest, RescaleSlopeAndIntercept) {
  td::DicomSpec spec;
  spec.rescale_slope = 2.5;
  spec.rescale_intercept = -1024.0;
  const fs::path file = path("rescale.dcm");
  const auto written = td::write_dicom(file, spec);
  auto r = dcm::read_radiograph(file);
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_DOUBLE_EQ(r->rescale_slope, 2.5);
  EXPECT_DOUBLE_EQ(r->rescale_intercept, -1024.0);
  EXPECT_FALSE(r->modality_lut.has_value());
  ASSERT_TRUE(same_values(written, r->stored));  // rescale never touches stored values
  ASSERT_EQ(r->modality.size(), written.size());
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < written.size(); ++i) {
    const double expected = written[i] * 2.5 - 1024.0;  // exact in float for these magnitudes
    if (r->modality[i] != static_cast<float>(expected)) ++wrong;
  }
  EXPECT_EQ(wrong, 0u) << "modality must be stored * slope + intercept";
  const auto [mn, mx] = std::minmax_element(written.begin(), written.end());
  EXPECT_FLOAT_EQ(r->min_modality, static_cast<float>(*mn * 2.5 - 1024.0));
  EXPECT_FLOAT_EQ(r->max_modality, static_cast<float>(*mx * 2.5 - 1024.0));
}

TEST_F(ModalityTest, FractionalRescaleOnSignedPixels) {
  td::DicomSpec spec;
  spec.phantom = phantom(16, 12, 11, true);
  spec.rescale_slope = 0.5;
  spec.rescale_intercept = 100.25;
  const fs::path file = path("rescale-signed.dcm");
  const auto written = td::write_dicom(file, spec);
  auto r = dcm::read_radiograph(file);
  ASSERT_TRUE(r.ok()) << describe(r);
  ASSERT_EQ(r->modality.size(), written.size());
  for (std::size_t i = 0; i < written.size(); i += 53) {
    ASSERT_FLOAT_EQ(r->modality[i], static_cast<float>(written[i] * 0.5 + 100.25)) << "pixel " << i;
  }
}

// A LUT from stored values to modality values; inputs outside the table clamp to its ends
// (PS3.3 C.11.1.1.1).
void check_modality_lut(const dcm::Radiograph& r, const std::vector<std::int32_t>& written, const td::LutSpec& lut) {
  ASSERT_TRUE(r.modality_lut.has_value());
  EXPECT_EQ(r.modality_lut->first_mapped, lut.first_mapped);
  EXPECT_EQ(r.modality_lut->bits_per_entry, lut.bits_per_entry);
  EXPECT_EQ(r.modality_lut->data, lut.data);
  EXPECT_EQ(r.modality_lut->explanation, lut.explanation);
  EXPECT_EQ(r.modality_lut->lut_type, "US");
  ASSERT_EQ(r.modality.size(), written.size());
  const std::int64_t first = lut.first_mapped;
  const std::int64_t last = first + static_cast<std::int64_t>(lut.data.size()) - 1;
  std::size_t below = 0, above = 0, wrong = 0;
  for (std::size_t i = 0; i < written.size(); ++i) {
    const std::int64_t x = written[i];
    std::size_t k = 0;
    if (x <= first) {
      below += x < first;
      k = 0;
    } else if (x >= last) {
      above += x > last;
      k = lut.data.size() - 1;
    } else {
      k = static_cast<std::size_t>(x - first);
    }
    if (r.modality[i] != static_cast<float>(lut.data[k])) {
      if (wrong == 0)
        ADD_FAILURE() << "pixel " << i << ": stored " << x << ", expected modality " << lut.data[k] << ", got "
                      << r.modality[i];
      ++wrong;
    }
  }
  EXPECT_EQ(wrong, 0u);
  // The phantom reaches both sides of the table, so both clamps were exercised.
  EXPECT_GT(below, 0u);
  EXPECT_GT(above, 0u);
}

TEST_F(ModalityTest, ModalityLutSequenceMapsAndClamps) {
  td::DicomSpec spec;
  td::LutSpec lut;
  lut.first_mapped = 400;  // background (~160) lies below, spine and border (4095) above
  lut.bits_per_entry = 16;
  lut.explanation = "PHANTOM CURVE";
  for (int i = 0; i < 3000; ++i)  // non-linear and decreasing: a rescale could not fake it
    lut.data.push_back(static_cast<std::uint16_t>(60000 - std::lround(20.0 * i - 0.002 * i * i)));
  spec.modality_lut = lut;
  const fs::path file = path("mlut.dcm");
  const auto written = td::write_dicom(file, spec);
  auto r = dcm::read_radiograph(file);
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_TRUE(same_values(written, r->stored));
  check_modality_lut(r.value(), written, lut);
}

TEST_F(ModalityTest, ModalityLutWithSignedFirstMappedValue) {
  // Signed pixels: the LUT Descriptor is SS and its first mapped value is negative.
  td::DicomSpec spec;
  spec.phantom = phantom(16, 12, 11, true);
  td::LutSpec lut;
  lut.first_mapped = -1500;
  lut.bits_per_entry = 12;
  lut.explanation = "SIGNED CURVE";
  for (int i = 0; i < 3000; ++i)
    lut.data.push_back(static_cast<std::uint16_t>(std::lround(4095.0 * std::sqrt(i / 2999.0))));
  spec.modality_lut = lut;
  const fs::path file = path("mlut-signed.dcm");
  const auto written = td::write_dicom(file, spec);
  auto r = dcm::read_radiograph(file);
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_TRUE(same_values(written, r->stored));
  check_modality_lut(r.value(), written, lut);
}

}  // namespace
}  // namespace hilum::test
