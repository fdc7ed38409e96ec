// The test-data generator itself: deterministic phantoms that span the stored range, and loud
// refusals for what the encoders cannot write faithfully (the reader tests rely on both).
#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>

#include "support.hpp"

namespace hilum::test {
namespace {

TEST(Phantom, DeterministicPerSeed) {
  td::PhantomSpec p;
  const auto a = td::make_phantom(p);
  const auto b = td::make_phantom(p);
  EXPECT_EQ(a, b);
  p.seed = 2;
  const auto c = td::make_phantom(p);
  EXPECT_NE(a, c);
  EXPECT_EQ(a.size(), static_cast<std::size_t>(p.rows) * static_cast<std::size_t>(p.columns));
}

TEST(Phantom, SpansTheRangeWithAConstantBorder) {
  for (const bool is_signed : {false, true}) {
    for (const bool mono1 : {false, true}) {
      const td::PhantomSpec p = phantom(16, 12, 11, is_signed, mono1);
      const auto v = td::make_phantom(p);
      const td::PhantomLayout l = td::phantom_layout(p);
      const double range = l.max_stored - l.min_stored;
      const auto [mn, mx] = std::minmax_element(v.begin(), v.end());
      EXPECT_GE(*mn, l.min_stored);
      EXPECT_LE(*mx, l.max_stored);
      EXPECT_GT(*mx - *mn, 0.85 * range) << "signed " << is_signed << ", MONOCHROME1 " << mono1;
      // Border: every pixel outside the exposed field holds the border value, none inside does.
      std::size_t border_wrong = 0, inside_border_value = 0;
      for (int r = 0; r < p.rows; ++r)
        for (int c = 0; c < p.columns; ++c) {
          const bool inside = r >= l.exposed.row0 && r < l.exposed.row1 && c >= l.exposed.col0 && c < l.exposed.col1;
          const std::int32_t x = v[index(p.columns, r, c)];
          if (!inside && x != l.border_value) ++border_wrong;
          if (inside && x == l.border_value) ++inside_border_value;
        }
      EXPECT_EQ(border_wrong, 0u);
      EXPECT_EQ(inside_border_value, 0u);
      EXPECT_NEAR(l.border_rows, 0.06 * p.rows, 1.0);
      EXPECT_NEAR(l.border_columns, 0.06 * p.columns, 1.0);
      // Anatomy: lungs dark and spine bright in MONOCHROME2, the reverse in MONOCHROME1.
      const double lung = box_mean(v, p.columns, l.right_lung);
      const double spine = box_mean(v, p.columns, l.spine);
      EXPECT_GT((mono1 ? lung - spine : spine - lung), 0.4 * range);
      if (is_signed && !mono1) {
        EXPECT_LT(lung, 0.0);
      }
    }
  }
}

class WriterTest : public TempDirTest {};

TEST_F(WriterTest, RefusesWhatTheEncodersCannotWriteFaithfully) {
  td::DicomSpec s;  // 16/12 bits
  s.encoding = td::Encoding::JpegBaseline;
  EXPECT_THROW((void)td::write_dicom(path("a.dcm"), s), std::runtime_error);
  s.encoding = td::Encoding::JpegExtended12;
  s.phantom = phantom(16, 10, 9);
  EXPECT_THROW((void)td::write_dicom(path("b.dcm"), s), std::runtime_error);
  s.encoding = td::Encoding::Rle;
  s.part10 = false;
  EXPECT_THROW((void)td::write_dicom(path("c.dcm"), s), std::runtime_error);
  td::DicomSpec bad_bits;
  bad_bits.phantom = phantom(16, 12, 16);  // high bit outside the 16-bit word
  EXPECT_THROW((void)td::write_dicom(path("d.dcm"), bad_bits), std::runtime_error);
}

TEST_F(WriterTest, KeepsTheSopInstanceUidThroughLossyEncoding) {
  for (const td::Encoding e : {td::Encoding::JpegExtended12, td::Encoding::JpegLsNearLossless, td::Encoding::J2kLossy}) {
    td::DicomSpec s;
    s.encoding = e;
    s.sop_instance_uid = "1.2.826.0.1.3680043.10.1234.99";
    const fs::path file = path(std::string(td::to_string(e)) + ".dcm");
    (void)td::write_dicom(file, s);
    dcm::ReadOptions o;
    o.decode_pixels = false;
    auto r = dcm::read_radiograph(file, o);
    ASSERT_TRUE(r.ok()) << describe(r);
    EXPECT_EQ(r->meta.sop_instance_uid, s.sop_instance_uid) << td::to_string(e);
  }
}

}  // namespace
}  // namespace hilum::test
