// Real projection radiographs from ../shared/data/dicom: each decodes, renders, and its 8-bit
// rendering matches an independent decoder (DCMTK's dcmj2pnm; JPEG 2000 first made native by
// GDCM's gdcmconv --raw, since DCMTK 3.6.7 cannot decode it) with the same VOI choice.
// Tolerance: every pixel within 1 grey level of 255 (the two pipelines round differently).
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "hilum/dicom/display.hpp"
#include "hilum/dicom/reader.hpp"

namespace fs = std::filesystem;
namespace dcm = hilum::dicom;

namespace {

struct Case {
  const char* file;
  const char* dcmj2pnm_voi;  // dcmj2pnm's VOI option
  dcm::VoiChoice ours;       // the same choice in Hilum
  bool jpeg2000;
  const char* modality;
  dcm::Photometric photometric;
  int rows, columns;
};

std::string PrintToString(const Case& c) { return c.file; }

struct Pgm {
  int width = 0, height = 0;
  std::vector<unsigned char> pixels;
};

Pgm read_pgm(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::string magic;
  int maxval = 0;
  Pgm p;
  in >> magic >> p.width >> p.height >> maxval;
  in.get();
  if (magic != "P5" || maxval != 255) return {};
  p.pixels.resize(static_cast<std::size_t>(p.width) * static_cast<std::size_t>(p.height));
  in.read(reinterpret_cast<char*>(p.pixels.data()), static_cast<std::streamsize>(p.pixels.size()));
  if (!in) return {};
  return p;
}

int run(const std::string& command) { return std::system((command + " >/dev/null 2>&1").c_str()); }

class SharedDicom : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    tmp_ = fs::temp_directory_path() / ("hilum-shared-" + std::to_string(::getpid()) + "-" + GetParam().file);
    fs::create_directories(tmp_);
  }
  void TearDown() override { fs::remove_all(tmp_); }
  fs::path tmp_;
};

TEST_P(SharedDicom, DecodesAndMatchesIndependentDecoder) {
  const Case& c = GetParam();
  const fs::path file = fs::path(HILUM_SHARED_DICOM) / c.file;
  ASSERT_TRUE(fs::exists(file)) << file << " is missing: ../shared/data/dicom is incomplete";

  auto image = dcm::read_radiograph(file);
  ASSERT_TRUE(image.ok()) << image.error().message;
  EXPECT_EQ(image->meta.modality, c.modality);
  EXPECT_EQ(image->photometric, c.photometric);
  EXPECT_EQ(image->rows, c.rows);
  EXPECT_EQ(image->columns, c.columns);
  EXPECT_LT(image->min_modality, image->max_modality) << "a flat image means the pixels were not decoded";

  auto ours = dcm::render_8bit(image.value(), {c.ours, false});
  ASSERT_TRUE(ours.ok()) << ours.error().message;

  fs::path source = file;
  if (c.jpeg2000) {
    source = tmp_ / "raw.dcm";
    ASSERT_EQ(run(std::string(HILUM_GDCMCONV) + " --raw '" + file.string() + "' '" + source.string() + "'"), 0)
        << "gdcmconv could not decompress " << file;
  }
  const fs::path pgm = tmp_ / "reference.pgm";
  ASSERT_EQ(run(std::string(HILUM_DCMJ2PNM) + " " + c.dcmj2pnm_voi + " '" + source.string() + "' '" + pgm.string() + "'"), 0)
      << "dcmj2pnm failed on " << source;
  const Pgm ref = read_pgm(pgm);
  ASSERT_EQ(ref.width, image->columns);
  ASSERT_EQ(ref.height, image->rows);
  ASSERT_EQ(ref.pixels.size(), ours->size());

  int max_diff = 0;
  double sum = 0.0;
  for (std::size_t i = 0; i < ours->size(); ++i) {
    const int d = std::abs(static_cast<int>((*ours)[i]) - static_cast<int>(ref.pixels[i]));
    max_diff = std::max(max_diff, d);
    sum += d;
  }
  EXPECT_LE(max_diff, 1) << "mean difference " << sum / static_cast<double>(ours->size());
}

INSTANTIATE_TEST_SUITE_P(
    Real, SharedDicom,
    ::testing::Values(
        Case{"gdcm-CR-MONO1-10-chest.dcm", "+Wi 1", dcm::VoiChoice::preset(0), false, "CR", dcm::Photometric::Monochrome1, 440, 440},
        Case{"RSNA_pneumonia_CR.dcm", "+Wm", dcm::VoiChoice::min_max(), false, "CR", dcm::Photometric::Monochrome2, 1024, 1024},
        Case{"NIH_DX_nofinding_gcp.dcm", "+Wm", dcm::VoiChoice::min_max(), false, "DX", dcm::Photometric::Monochrome2, 1024, 1024},
        Case{"CR-ModalitySequenceLUT.dcm", "+Wm", dcm::VoiChoice::min_max(), false, "CR", dcm::Photometric::Monochrome1, 1576, 1976},
        Case{"RG3_J2KR.dcm", "+Wi 1", dcm::VoiChoice::preset(0), true, "CR", dcm::Photometric::Monochrome1, 1760, 1760},
        Case{"vlut_04.dcm", "+Wl 1", dcm::VoiChoice::lut(0), false, "OT", dcm::Photometric::Monochrome2, 512, 512},
        Case{"mlut_18.dcm", "+Wm", dcm::VoiChoice::min_max(), false, "OT", dcm::Photometric::Monochrome2, 512, 512}),
    [](const ::testing::TestParamInfo<Case>& param_info) {
      std::string name = fs::path(param_info.param.file).stem().string();
      for (char& ch : name) if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return name;
    });

// The real chest films carry what a worklist needs.
TEST(SharedDicomMetadata, ChestAttributes) {
  auto rsna = dcm::read_radiograph(fs::path(HILUM_SHARED_DICOM) / "RSNA_pneumonia_CR.dcm");
  ASSERT_TRUE(rsna.ok()) << rsna.error().message;
  EXPECT_EQ(rsna->meta.view_position, "PA");
  EXPECT_EQ(rsna->meta.body_part_examined, "CHEST");
  ASSERT_TRUE(rsna->meta.pixel_spacing.has_value());
  EXPECT_DOUBLE_EQ(rsna->meta.pixel_spacing->row_mm, 0.168);
  EXPECT_EQ(rsna->meta.transfer_syntax_uid, "1.2.840.10008.1.2.4.50");

  auto mlut = dcm::read_radiograph(fs::path(HILUM_SHARED_DICOM) / "CR-ModalitySequenceLUT.dcm");
  ASSERT_TRUE(mlut.ok()) << mlut.error().message;
  ASSERT_TRUE(mlut->modality_lut.has_value());
  EXPECT_EQ(mlut->meta.transfer_syntax_uid, "1.2.840.10008.1.2.4.70");

  auto j2k = dcm::read_radiograph(fs::path(HILUM_SHARED_DICOM) / "RG3_J2KR.dcm");
  ASSERT_TRUE(j2k.ok()) << j2k.error().message;
  ASSERT_EQ(j2k->windows.size(), 1u);
  EXPECT_DOUBLE_EQ(j2k->windows[0].center, 550.0);
  EXPECT_DOUBLE_EQ(j2k->windows[0].width, 1024.0);
}

}  // namespace
