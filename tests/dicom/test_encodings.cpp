// Every transfer syntax the reader supports: a phantom written in it reads back with the right
// geometry, photometric interpretation and transfer syntax, and the stored values come back
// exactly (lossless) or within a stated error (lossy).
#include <gtest/gtest.h>

#include <string>

#include "support.hpp"

namespace hilum::test {
namespace {

class EncodingTest : public TempDirTest, public ::testing::WithParamInterface<td::Encoding> {};

td::DicomSpec spec_for(td::Encoding e) {
  td::DicomSpec s;
  s.encoding = e;
  s.phantom.rows = 320;
  s.phantom.columns = 256;
  if (e == td::Encoding::JpegBaseline) {  // baseline JPEG is 8-bit only
    s.phantom = phantom(8, 8, 7);
  } else {
    s.phantom = phantom(16, 12, 11);
  }
  s.phantom.rows = 320;
  s.phantom.columns = 256;
  s.near_lossless_error = 2;
  s.j2k_lossy_ratio = 10;
  return s;
}

TEST_P(EncodingTest, ReadsGeometryAndStoredValues) {
  const td::Encoding e = GetParam();
  const td::DicomSpec spec = spec_for(e);
  const fs::path file = path("image.dcm");
  const std::vector<std::int32_t> written = td::write_dicom(file, spec);

  auto r = dcm::read_radiograph(file);
  ASSERT_TRUE(r.ok()) << td::to_string(e) << ": " << describe(r);
  const dcm::Radiograph& img = r.value();
  EXPECT_EQ(img.rows, spec.phantom.rows);
  EXPECT_EQ(img.columns, spec.phantom.columns);
  EXPECT_EQ(img.bits_allocated, spec.phantom.bits_allocated);
  EXPECT_EQ(img.bits_stored, spec.phantom.bits_stored);
  EXPECT_EQ(img.high_bit, spec.phantom.high_bit);
  EXPECT_FALSE(img.is_signed);
  EXPECT_EQ(img.photometric, dcm::Photometric::Monochrome2);
  EXPECT_EQ(img.meta.transfer_syntax_uid, td::transfer_syntax_uid(e));
  EXPECT_FALSE(img.meta.transfer_syntax_name.empty());
  EXPECT_TRUE(img.meta.has_part10_header);
  ASSERT_EQ(img.stored.size(), written.size());
  ASSERT_EQ(img.modality.size(), written.size());

  const td::PhantomLayout layout = td::phantom_layout(spec.phantom);
  const double range = static_cast<double>(layout.max_stored - layout.min_stored);
  if (td::is_lossless(e)) {
    EXPECT_TRUE(same_values(written, img.stored)) << td::to_string(e);
  } else {
    const ErrorStats s = compare(written, img.stored);
    // Lossy encodings at the writer's settings (JPEG quality 90, JPEG 2000 10:1, JPEG-LS NEAR=2)
    // are "visually lossless": a mean absolute error under 1 % of the stored range is about
    // 2.5 grey levels of an 8-bit display. (Measured: 0.02-0.3 %.)
    EXPECT_LT(s.mean_abs, 0.01 * range) << td::to_string(e) << ": mean abs error " << s.mean_abs;
    // The decoded image must be the same picture, not merely the right amount of noise.
    EXPECT_GT(s.correlation, 0.99) << td::to_string(e);
    if (e == td::Encoding::JpegLsNearLossless) {
      // JPEG-LS near-lossless guarantees |error| <= NEAR for every sample (ISO 14495-1).
      EXPECT_LE(s.max_abs, spec.near_lossless_error) << "JPEG-LS near-lossless NEAR=" << spec.near_lossless_error;
    }
  }
  // Anatomy in the right place: lungs dark, spine bright (MONOCHROME2), at least 30 % of the
  // range apart (the phantom puts them about 60 % apart).
  const double lung = box_mean(img.stored, img.columns, layout.right_lung);
  const double lung2 = box_mean(img.stored, img.columns, layout.left_lung);
  const double spine = box_mean(img.stored, img.columns, layout.spine);
  EXPECT_GT(spine - lung, 0.3 * range) << "lung " << lung << ", spine " << spine;
  EXPECT_GT(spine - lung2, 0.3 * range) << "lung " << lung2 << ", spine " << spine;
  // The collimator border keeps its value (lossy coders may smear its edge: sample its middle).
  const std::size_t corner = index(img.columns, layout.border_rows / 2, img.columns / 2);
  EXPECT_NEAR(img.stored[corner], layout.border_value, td::is_lossless(e) ? 0.0 : 0.01 * range);
  // No rescale in the file: modality values are the stored values.
  for (std::size_t i = 0; i < img.stored.size(); i += 97) {
    ASSERT_FLOAT_EQ(img.modality[i], static_cast<float>(img.stored[i])) << "pixel " << i;
  }
}

std::string encoding_name(const ::testing::TestParamInfo<td::Encoding>& info) {
  std::string name = td::to_string(info.param);
  for (char& c : name)
    if (c == '-') c = '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(AllEncodings, EncodingTest, ::testing::ValuesIn(td::all_encodings()), encoding_name);

// MONOCHROME1 through every lossless encoding (compressed MONOCHROME1 is common on CR systems):
// the stored values, not a rendered or inverted version of them, must come back.
class Monochrome1EncodingTest : public TempDirTest, public ::testing::WithParamInterface<td::Encoding> {};

TEST_P(Monochrome1EncodingTest, StoredValuesSurvive) {
  const td::Encoding e = GetParam();
  td::DicomSpec spec = spec_for(e);
  spec.phantom.monochrome1 = true;
  const fs::path file = path("mono1.dcm");
  const auto written = td::write_dicom(file, spec);
  auto r = dcm::read_radiograph(file);
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r->photometric, dcm::Photometric::Monochrome1);
  EXPECT_EQ(r->meta.transfer_syntax_uid, td::transfer_syntax_uid(e));
  EXPECT_TRUE(same_values(written, r->stored));
}

std::vector<td::Encoding> lossless_encodings() {
  std::vector<td::Encoding> out;
  for (const td::Encoding e : td::all_encodings())
    if (td::is_lossless(e)) out.push_back(e);
  return out;
}

INSTANTIATE_TEST_SUITE_P(Lossless, Monochrome1EncodingTest, ::testing::ValuesIn(lossless_encodings()), encoding_name);

TEST(Encodings, EveryEncodingIsListedAsSupported) {
  const auto supported = dcm::supported_transfer_syntaxes();
  for (const td::Encoding e : td::all_encodings()) {
    bool found = false;
    for (const auto& ts : supported) found = found || ts.uid == td::transfer_syntax_uid(e);
    EXPECT_TRUE(found) << td::to_string(e) << " (" << td::transfer_syntax_uid(e) << ") is not in supported_transfer_syntaxes()";
  }
}

}  // namespace
}  // namespace hilum::test
