// The DICOM test files that ship in Debian's python3-pydicom package: a corpus of real-world
// variety (big endian, deflate, RLE, JPEG, JPEG-LS, JPEG 2000, truncated, SR, RT, colour, no meta
// header, DICOMDIR variants). Every file reads or gives a typed error -- never a crash -- and every
// grayscale image renders within 1 grey level of DCMTK's dcmj2pnm/dcml2pnm (after gdcmconv --raw
// for JPEG 2000) with the same min-max window. Every colour image reads as the grey of its colours
// within 1 grey level of dcmj2pnm +G (2 for uncompressed YBR_FULL_422, whose conversion to RGB
// DCMTK rounds differently), at the file's own grey levels.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

#include "hilum/dicom/dicomdir.hpp"
#include "hilum/dicom/display.hpp"
#include "hilum/dicom/reader.hpp"

namespace fs = std::filesystem;
namespace dcm = hilum::dicom;

namespace {

const fs::path kCorpus = HILUM_PYDICOM_FILES;

int run(const std::string& command) { return std::system((command + " >/dev/null 2>&1").c_str()); }

std::vector<unsigned char> read_pgm(const fs::path& path, int& width, int& height) {
  std::ifstream in(path, std::ios::binary);
  std::string magic;
  int maxval = 0;
  in >> magic >> width >> height >> maxval;
  in.get();
  std::vector<unsigned char> px(static_cast<std::size_t>(std::max(0, width)) * static_cast<std::size_t>(std::max(0, height)));
  if (magic != "P5" || maxval != 255) return {};
  in.read(reinterpret_cast<char*>(px.data()), static_cast<std::streamsize>(px.size()));
  return in ? px : std::vector<unsigned char>{};
}

// The largest difference between our 8-bit rendering of `file` and DCMTK's (dcmj2pnm, or
// dcml2pnm for JPEG-LS, with `options`, e.g. "+Wm" or "+G"), or -1 and why not. JPEG 2000 files are
// made native by GDCM first (DCMTK 3.6.7 has no JPEG 2000 decoder), and so is a file DCMTK refuses
// (SC_rgb_gdcm_KY.dcm's odd Pixel Data length).
std::pair<int, std::string> difference_from_dcmtk(const fs::path& file, const dcm::Radiograph& image, const std::vector<std::uint8_t>& ours,
                                                  const std::string& options) {
  const fs::path tmp = fs::temp_directory_path() / ("hilum-pydicom-" + std::to_string(::getpid()) + "-" + file.filename().string());
  fs::create_directories(tmp);
  struct Remove {
    fs::path dir;
    ~Remove() { fs::remove_all(dir); }
  } remove{tmp};
  const std::string ts = image.meta.transfer_syntax_uid;
  const std::string tool = ts == "1.2.840.10008.1.2.4.80" || ts == "1.2.840.10008.1.2.4.81" ? HILUM_DCML2PNM : HILUM_DCMJ2PNM;
  const fs::path raw = tmp / "raw.dcm", pgm = tmp / "ref.pgm";
  auto gdcm_raw = [&] { return run(std::string(HILUM_GDCMCONV) + " --raw '" + file.string() + "' '" + raw.string() + "'") == 0; };
  auto dcmtk = [&](const fs::path& source) { return run(tool + " " + options + " '" + source.string() + "' '" + pgm.string() + "'") == 0; };
  const bool j2k = ts.rfind("1.2.840.10008.1.2.4.9", 0) == 0;
  const bool rendered = j2k ? gdcm_raw() && dcmtk(raw) : dcmtk(file) || (gdcm_raw() && dcmtk(raw));
  if (!rendered) return {-1, tool + " failed on " + file.string()};
  int w = 0, h = 0;
  const auto ref = read_pgm(pgm, w, h);
  if (w != image.columns || h != image.rows || ref.size() != ours.size()) return {-1, "DCMTK's rendering has another size"};
  int max_diff = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) max_diff = std::max(max_diff, std::abs(int(ref[i]) - int(ours[i])));
  return {max_diff, ""};
}

// "SC_rgb_dcmtk_+eb+cr.dcm" -> "SC_rgb_dcmtk__eb_cr" (gtest's parameter names).
std::string param_name(const ::testing::TestParamInfo<std::string>& p) {
  std::string n = fs::path(p.param).stem().string();
  for (char& ch : n) if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
}

// What each file must give. Files not listed must still return (ok or error) without crashing.
const std::map<std::string, dcm::ErrorKind>& expected_errors() {
  static const std::map<std::string, dcm::ErrorKind> m{
      {"reportsi.dcm", dcm::ErrorKind::NotAnImage},
      {"test-SR.dcm", dcm::ErrorKind::NotAnImage},
      {"rtplan.dcm", dcm::ErrorKind::NotAnImage},
      {"rtstruct.dcm", dcm::ErrorKind::NotAnImage},
      {"waveform_ecg.dcm", dcm::ErrorKind::NotAnImage},
      {"MR_truncated.dcm", dcm::ErrorKind::Truncated},
      {"SC_rgb_rle_32bit.dcm", dcm::ErrorKind::Unsupported},
      {"rtdose.dcm", dcm::ErrorKind::Unsupported},
      {"liver_1frame.dcm", dcm::ErrorKind::Unsupported},
  };
  return m;
}

const std::set<std::string>& expected_images() {
  static const std::set<std::string> s{
      "693_J2KI.dcm", "CT_small.dcm", "J2K_pixelrep_mismatch.dcm", "JPEG-lossy.dcm", "JPEG2000.dcm",
      "JPGExtended.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm",
      "MR_small_implicit.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
      "MR_small_padded.dcm", "image_dfl.dcm"};
  return s;
}

// Colour images: RGB (interleaved and planar, 8 and 16 bits, big endian), YBR_FULL, YBR_FULL_422
// (uncompressed and JPEG), YBR_RCT (JPEG 2000), JPEG without a colour transform, RLE, odd sizes.
const std::set<std::string>& expected_colour_images() {
  static const std::set<std::string> s{
      "ExplVR_BigEnd.dcm", "GDCMJ2K_TextGBR.dcm", "SC_jpeg_no_color_transform.dcm", "SC_jpeg_no_color_transform_2.dcm",
      "SC_rgb_dcmtk_+eb+cr.dcm", "SC_rgb_dcmtk_+eb+cy+n1.dcm", "SC_rgb_dcmtk_+eb+cy+n2.dcm", "SC_rgb_dcmtk_+eb+cy+np.dcm",
      "SC_rgb_dcmtk_+eb+cy+s2.dcm", "SC_rgb_dcmtk_+eb+cy+s4.dcm", "SC_rgb_gdcm_KY.dcm", "SC_rgb_jpeg_app14_dcmd.dcm",
      "SC_rgb_jpeg_dcmd.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_jpeg_gdcm.dcm", "SC_rgb_jpeg_lossy_gdcm.dcm", "SC_rgb_rle.dcm",
      "SC_rgb_rle_16bit.dcm", "SC_rgb_rle_16bit_2frame.dcm", "SC_rgb_rle_2frame.dcm", "SC_rgb_small_odd.dcm",
      "SC_rgb_small_odd_jpeg.dcm", "SC_ybr_full_422_uncompressed.dcm"};
  return s;
}

TEST(PydicomCorpus, EveryFileReadsOrSaysWhy) {
  ASSERT_TRUE(fs::is_directory(kCorpus)) << kCorpus << " is missing (Debian package python3-pydicom)";
  int files = 0, images = 0;
  for (const auto& entry : fs::directory_iterator(kCorpus)) {
    if (entry.path().extension() != ".dcm") continue;
    ++files;
    const std::string name = entry.path().filename().string();
    auto r = dcm::read_radiograph(entry.path());
    const bool colour = expected_colour_images().count(name) > 0;
    if (r.ok()) {
      ++images;
      EXPECT_TRUE(expected_images().count(name) || colour) << name << " read, but was expected to fail";
      EXPECT_EQ(r->modality.size(), r->pixel_count()) << name;
      EXPECT_EQ(r->colour_photometric.empty(), !colour) << name << ": " << r->colour_photometric;
    } else {
      EXPECT_FALSE(expected_images().count(name) || colour) << name << ": " << r.error().message;
      EXPECT_FALSE(r.error().message.empty()) << name;
      const auto it = expected_errors().find(name);
      if (it != expected_errors().end()) {
        EXPECT_EQ(r.error().kind, it->second) << name << ": " << r.error().message;
      }
    }
  }
  EXPECT_GE(files, 60);
  EXPECT_EQ(images, static_cast<int>(expected_images().size() + expected_colour_images().size()));
}

class PydicomImage : public ::testing::TestWithParam<std::string> {};

TEST_P(PydicomImage, MatchesDcmtkRendering) {
  const std::string name = GetParam();
  const fs::path file = kCorpus / name;
  auto image = dcm::read_radiograph(file);
  ASSERT_TRUE(image.ok()) << image.error().message;
  auto ours = dcm::render_8bit(image.value(), {dcm::VoiChoice::min_max(), false});
  ASSERT_TRUE(ours.ok()) << ours.error().message;

  const auto [max_diff, why] = difference_from_dcmtk(file, image.value(), ours.value(), "+Wm");
  ASSERT_GE(max_diff, 0) << why;
  EXPECT_LE(max_diff, 1);
}

INSTANTIATE_TEST_SUITE_P(Images, PydicomImage, ::testing::ValuesIn(std::vector<std::string>(expected_images().begin(), expected_images().end())),
                         param_name);

class PydicomColourImage : public ::testing::TestWithParam<std::string> {};

TEST_P(PydicomColourImage, IsTheGreyOfDcmtksColourImage) {
  const std::string name = GetParam();
  const fs::path file = kCorpus / name;
  auto image = dcm::read_radiograph(file);
  ASSERT_TRUE(image.ok()) << image.error().message;
  ASSERT_FALSE(image->colour_photometric.empty());
  auto ours = dcm::render_8bit(image.value(), {});  // the grey levels as they are
  ASSERT_TRUE(ours.ok()) << ours.error().message;

  const auto [max_diff, why] = difference_from_dcmtk(file, image.value(), ours.value(), "+G");
  ASSERT_GE(max_diff, 0) << why;
  EXPECT_LE(max_diff, name == "SC_ybr_full_422_uncompressed.dcm" ? 2 : 1);
}

INSTANTIATE_TEST_SUITE_P(Colour, PydicomColourImage,
                         ::testing::ValuesIn(std::vector<std::string>(expected_colour_images().begin(), expected_colour_images().end())),
                         param_name);

// Every DICOMDIR variant (explicit/implicit/big endian, missing offsets, reordered records)
// lists the same 31 images, all of which exist and read.
TEST(PydicomCorpus, DicomdirVariantsAgree) {
  std::vector<std::string> reference;
  for (const char* variant : {"DICOMDIR", "DICOMDIR-bigEnd", "DICOMDIR-implicit", "DICOMDIR-nooffset", "DICOMDIR-reordered"}) {
    const fs::path path = kCorpus / "dicomdirtests" / variant;
    EXPECT_TRUE(dcm::is_dicomdir(path)) << variant;
    auto images = dcm::read_dicomdir(path);
    ASSERT_TRUE(images.ok()) << variant << ": " << images.error().message;
    std::vector<std::string> uids;
    for (const auto& im : images.value()) {
      EXPECT_TRUE(im.file_exists) << variant << ": " << im.file;
      EXPECT_FALSE(im.patient_id.empty());
      EXPECT_FALSE(im.study_instance_uid.empty());
      EXPECT_FALSE(im.series_instance_uid.empty());
      uids.push_back(im.sop_instance_uid);
    }
    std::sort(uids.begin(), uids.end());
    EXPECT_EQ(uids.size(), 31u) << variant;
    if (reference.empty()) reference = uids;
    EXPECT_EQ(uids, reference) << variant;
  }
  auto images = dcm::read_dicomdir(kCorpus / "dicomdirtests" / "DICOMDIR");
  ASSERT_TRUE(images.ok());
  for (const auto& im : images.value()) {
    auto r = dcm::read_radiograph(im.file);
    ASSERT_TRUE(r.ok()) << im.file << ": " << r.error().message;
    EXPECT_EQ(r->meta.sop_instance_uid, im.sop_instance_uid);
  }
}

}  // namespace
