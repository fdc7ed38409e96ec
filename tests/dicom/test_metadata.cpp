// Identifying and descriptive attributes and the VOI/presentation attributes come back as written.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "support.hpp"

namespace hilum::test {
namespace {

class MetadataTest : public TempDirTest {
 protected:
  static td::DicomSpec rich_spec() {
    td::DicomSpec s;
    s.patient_name = "Doe^Jane^Q";
    s.patient_id = "PID-4711";
    s.study_instance_uid = "1.2.826.0.1.3680043.10.1234.1";
    s.series_instance_uid = "1.2.826.0.1.3680043.10.1234.1.2";
    s.sop_instance_uid = "1.2.826.0.1.3680043.10.1234.1.2.3";
    s.view_position = "AP";
    s.body_part = "CHEST";
    s.laterality = "L";
    s.pixel_spacing = std::make_pair(0.15, 0.175);
    s.study_description = "Chest AP portable";
    s.acquisition_date = "20250314";
    s.acquisition_time = "153045.25";
    s.modality = "CR";
    s.accession_number = "ACC-99";
    s.study_id = "S42";
    s.series_number = "7";
    s.instance_number = "3";
    s.windows = {{2048.0, 4096.0, "FULL"}, {1200.5, 800.0, "LUNG"}, {3000.0, 1500.25, "BONE"}};
    s.voi_lut_function = "LINEAR_EXACT";
    td::LutSpec a;
    a.first_mapped = 0;
    a.bits_per_entry = 12;
    a.explanation = "GAMMA 0.5";
    for (int i = 0; i < 4096; ++i)
      a.data.push_back(static_cast<std::uint16_t>(std::lround(4095.0 * std::sqrt(i / 4095.0))));
    td::LutSpec b;
    b.first_mapped = 512;
    b.bits_per_entry = 16;
    b.explanation = "SOFT";
    for (int i = 0; i < 1024; ++i) b.data.push_back(static_cast<std::uint16_t>(i * 64));
    s.voi_luts = {a, b};
    s.presentation_lut_shape = "INVERSE";
    return s;
  }
};

TEST_F(MetadataTest, AttributesComeBackAsWritten) {
  const td::DicomSpec s = rich_spec();
  const fs::path file = path("rich.dcm");
  (void)td::write_dicom(file, s);
  auto r = dcm::read_radiograph(file);
  ASSERT_TRUE(r.ok()) << describe(r);
  const dcm::Metadata& m = r->meta;
  EXPECT_EQ(m.patient_name, s.patient_name);
  EXPECT_EQ(m.patient_id, s.patient_id);
  EXPECT_EQ(m.study_instance_uid, s.study_instance_uid);
  EXPECT_EQ(m.series_instance_uid, s.series_instance_uid);
  EXPECT_EQ(m.sop_instance_uid, s.sop_instance_uid);
  EXPECT_EQ(m.sop_class_uid, s.sop_class_uid);
  // The standard's name is "Digital X-Ray Image Storage - For Presentation" (PS3.4 B.5).
  EXPECT_NE(m.sop_class_name.find("Digital X-Ray Image"), std::string::npos) << m.sop_class_name;
  EXPECT_NE(m.sop_class_name.find("For Presentation"), std::string::npos) << m.sop_class_name;
  EXPECT_EQ(m.modality, "CR");
  EXPECT_EQ(m.view_position, "AP");
  EXPECT_EQ(m.body_part_examined, "CHEST");
  EXPECT_EQ(m.laterality, "L");
  EXPECT_EQ(m.study_description, s.study_description);
  EXPECT_EQ(m.acquisition_date, "20250314");
  EXPECT_EQ(m.acquisition_time, "153045.25");
  EXPECT_EQ(m.accession_number, "ACC-99");
  EXPECT_EQ(m.study_id, "S42");
  EXPECT_EQ(m.series_number, "7");
  EXPECT_EQ(m.instance_number, "3");
  EXPECT_EQ(m.transfer_syntax_uid, "1.2.840.10008.1.2.1");
  ASSERT_TRUE(m.pixel_spacing.has_value());
  EXPECT_DOUBLE_EQ(m.pixel_spacing->row_mm, 0.15);
  EXPECT_DOUBLE_EQ(m.pixel_spacing->column_mm, 0.175);
  EXPECT_EQ(m.pixel_spacing->source, "PixelSpacing");

  // Window presets in order, with explanations and the VOI LUT Function in force.
  ASSERT_EQ(r->windows.size(), s.windows.size());
  for (std::size_t i = 0; i < s.windows.size(); ++i) {
    EXPECT_DOUBLE_EQ(r->windows[i].center, s.windows[i].center) << "window " << i;
    EXPECT_DOUBLE_EQ(r->windows[i].width, s.windows[i].width) << "window " << i;
    EXPECT_EQ(r->windows[i].explanation, s.windows[i].explanation) << "window " << i;
    EXPECT_EQ(r->windows[i].function, dcm::VoiFunction::LinearExact) << "window " << i;
  }
  // VOI LUT items.
  ASSERT_EQ(r->voi_luts.size(), s.voi_luts.size());
  for (std::size_t i = 0; i < s.voi_luts.size(); ++i) {
    EXPECT_EQ(r->voi_luts[i].first_mapped, s.voi_luts[i].first_mapped) << "VOI LUT " << i;
    EXPECT_EQ(r->voi_luts[i].bits_per_entry, s.voi_luts[i].bits_per_entry) << "VOI LUT " << i;
    EXPECT_EQ(r->voi_luts[i].explanation, s.voi_luts[i].explanation) << "VOI LUT " << i;
    EXPECT_EQ(r->voi_luts[i].data, s.voi_luts[i].data) << "VOI LUT " << i;
  }
  EXPECT_EQ(r->presentation_shape, dcm::PresentationShape::Inverse);
  EXPECT_TRUE(r->display_inverted()) << "MONOCHROME2 with Presentation LUT Shape INVERSE displays inverted";
}

TEST_F(MetadataTest, VoiFunctionsAndShapes) {
  struct Case {
    const char* function;
    dcm::VoiFunction expected;
    const char* shape;
    dcm::PresentationShape expected_shape;
  };
  const Case cases[] = {
      {"", dcm::VoiFunction::Linear, "", dcm::PresentationShape::Absent},
      {"LINEAR", dcm::VoiFunction::Linear, "IDENTITY", dcm::PresentationShape::Identity},
      {"SIGMOID", dcm::VoiFunction::Sigmoid, "INVERSE", dcm::PresentationShape::Inverse},
      {"LINEAR_EXACT", dcm::VoiFunction::LinearExact, "IDENTITY", dcm::PresentationShape::Identity},
  };
  int n = 0;
  for (const Case& c : cases) {
    td::DicomSpec s;
    s.phantom.rows = 64;
    s.phantom.columns = 48;
    s.windows = {{1000.0, 500.0, "A"}};
    s.voi_lut_function = c.function;
    s.presentation_lut_shape = c.shape;
    const fs::path file = path("f" + std::to_string(n++) + ".dcm");
    (void)td::write_dicom(file, s);
    auto r = dcm::read_radiograph(file);
    ASSERT_TRUE(r.ok()) << describe(r);
    ASSERT_EQ(r->windows.size(), 1u);
    EXPECT_EQ(r->windows[0].function, c.expected) << "VOI LUT Function '" << c.function << "'";
    EXPECT_EQ(r->presentation_shape, c.expected_shape) << "Presentation LUT Shape '" << c.shape << "'";
  }
}

TEST_F(MetadataTest, NoSpacingWhenNoneIsWritten) {
  // write_dicom writes Pixel Spacing and Imager Pixel Spacing, or neither.
  td::DicomSpec s;
  s.pixel_spacing.reset();
  const fs::path file = path("nospacing.dcm");
  (void)td::write_dicom(file, s);
  auto r = dcm::read_radiograph(file);
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_FALSE(r->meta.pixel_spacing.has_value());
}

TEST_F(MetadataTest, AttributesOnlyWithoutDecodingPixels) {
  td::DicomSpec s = rich_spec();
  s.encoding = td::Encoding::JpegLsLossless;
  const fs::path file = path("info.dcm");
  (void)td::write_dicom(file, s);
  dcm::ReadOptions options;
  options.decode_pixels = false;
  auto r = dcm::read_radiograph(file, options);
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r->rows, s.phantom.rows);
  EXPECT_EQ(r->columns, s.phantom.columns);
  EXPECT_EQ(r->meta.patient_id, s.patient_id);
  EXPECT_EQ(r->meta.transfer_syntax_uid, td::transfer_syntax_uid(td::Encoding::JpegLsLossless));
  EXPECT_EQ(r->windows.size(), 3u);
  EXPECT_TRUE(r->stored.empty());
}

}  // namespace
}  // namespace hilum::test
