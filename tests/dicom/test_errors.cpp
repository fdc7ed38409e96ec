// Files the reader must refuse, each with the right ErrorKind and a message a person can act
// on, and a robustness sweep over damaged files.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

#include "hilum/dicom/deidentify.hpp"
#include "hilum/dicom/dicomdir.hpp"
#include "support.hpp"

namespace hilum::test {
namespace {

class BadInputTest : public TempDirTest {};

TEST_F(BadInputTest, StructuredReportIsNotAnImage) {
  const fs::path file = path("sr.dcm");
  td::write_basic_text_sr(file);
  auto r = dcm::read_radiograph(file);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, dcm::ErrorKind::NotAnImage) << describe(r);
  EXPECT_NE(r.error().message.find("not an image"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("Basic Text SR"), std::string::npos) << r.error().message;
}

TEST_F(BadInputTest, TruncatedPixelDataSaysHowMuchIsMissing) {
  // write_truncated writes the default 320 x 256 x 16-bit phantom: 163840 bytes of pixel data.
  const std::uint64_t expected_bytes = 320ull * 256ull * 2ull;
  for (const std::uint64_t keep : {std::uint64_t{1000}, std::uint64_t{81920}, std::uint64_t{0}}) {
    const fs::path file = path("truncated-" + std::to_string(keep) + ".dcm");
    td::write_truncated(file, keep);
    auto r = dcm::read_radiograph(file);
    ASSERT_FALSE(r.ok()) << "kept " << keep << " bytes";
    EXPECT_EQ(r.error().kind, dcm::ErrorKind::Truncated) << describe(r);
    const std::string& m = r.error().message;
    EXPECT_NE(m.find("truncated"), std::string::npos) << m;
    EXPECT_TRUE(mentions_number(m, expected_bytes)) << "expected byte count missing: " << m;
    EXPECT_TRUE(mentions_number(m, keep)) << "found byte count (" << keep << ") missing: " << m;
  }
}

// Found by fuzzing (tests/fuzz/regressions/dicom): DCMTK 3.6.7 throws std::out_of_range while parsing a
// damaged directory record; the exception left read_radiograph and ended the process (hilum-cli info,
// an import). Every public reader function answers with an error instead.
TEST_F(BadInputTest, AParserExceptionInDcmtkIsAnError) {
  const fs::path file = HILUM_FUZZ_REGRESSIONS "/dicom/dcmtk-throws-in-directory-record.dcm";
  ASSERT_TRUE(fs::exists(file));
  const auto r = dcm::read_radiograph(file);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, dcm::ErrorKind::Corrupt);
  EXPECT_NE(r.error().message.find("cannot parse DICOM data"), std::string::npos) << r.error().message;
  EXPECT_FALSE(dcm::read_dicomdir(file).ok());
  (void)dcm::is_dicomdir(file);
  dcm::DeidentifyPlan plan;
  plan.pseudonym = [](const std::string&, const std::string&) { return std::string("X"); };
  EXPECT_FALSE(dcm::write_deidentified(file, path("out.dcm"), plan).ok());
}

// Found by fuzzing (tests/fuzz/regressions/dicom/dcmtk-jpeg-tem-marker-loops.dcm): DCMTK 3.6.7's
// JPEG decoder looks for the frame header and never steps past a TEM marker (FF01), so a JPEG
// stream with one before its frame header made read_radiograph (an import, `hilum-cli info`, the
// GUI) loop forever; so did one reached past fill bytes (found next). Each JPEG transfer syntax
// DCMTK decodes, with a TEM either way: an error naming the damage, at once. The read runs in a
// child process the test kills after 20 s (it hung).
TEST_F(BadInputTest, AJpegStreamWithATemMarkerBeforeItsFrameHeaderIsAnErrorNotAHang) {
  // A TEM right after SOI, and one after a fill byte (FF FF 01: DCMTK steps one byte past FF FF).
  for (const bool fill : {false, true}) {
    for (const td::Encoding e : {td::Encoding::JpegBaseline, td::Encoding::JpegExtended12, td::Encoding::JpegLosslessP14,
                                 td::Encoding::JpegLosslessSV1}) {
      SCOPED_TRACE(std::string(td::to_string(e)) + (fill ? ", after a fill byte" : ""));
      td::DicomSpec spec;
      spec.encoding = e;
      spec.phantom = e == td::Encoding::JpegBaseline ? phantom(8, 8, 7) : phantom(16, 12, 11);
      spec.phantom.rows = 64;
      spec.phantom.columns = 64;
      const fs::path file = path(std::string("tem-") + td::to_string(e) + (fill ? "-fill" : "") + ".dcm");
      td::write_dicom(file, spec);
      ASSERT_TRUE(dcm::read_radiograph(file).ok()) << "the undamaged file reads";
      // The marker after the stream's SOI (FF D8) becomes a TEM: the lengths stay as they were.
      std::ifstream in(file, std::ios::binary);
      std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
      in.close();
      const auto soi = bytes.find("\xFF\xD8\xFF", bytes.find(std::string("\xFE\xFF\x00\xE0", 4)));
      ASSERT_NE(soi, std::string::npos);
      if (fill) {
        bytes[soi + 3] = '\xFF';
        bytes[soi + 4] = '\x01';
      } else {
        bytes[soi + 3] = '\x01';
      }
      { std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes; }

      const pid_t child = ::fork();
      if (child == 0) {
        const auto r = dcm::read_radiograph(file);
        const bool named = !r.ok() && r.error().kind == dcm::ErrorKind::DecodeFailed && r.error().message.find("TEM marker") != std::string::npos;
        std::_Exit(named ? 0 : 1);
      }
      int status = -1;
      for (int i = 0; i < 200 && ::waitpid(child, &status, WNOHANG) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (::waitpid(child, &status, WNOHANG) == 0) {
        ::kill(child, SIGKILL);
        ::waitpid(child, &status, 0);
        ADD_FAILURE() << "read_radiograph did not return within 20 s";
        continue;
      }
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "not a DecodeFailed error naming the TEM marker";
    }
  }
}

TEST_F(BadInputTest, TextFileIsNotDicom) {
  const fs::path file = path("notes.txt");
  td::write_not_dicom(file);
  auto r = dcm::read_radiograph(file);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, dcm::ErrorKind::NotDicom) << describe(r);
  EXPECT_FALSE(r.error().message.empty());
}

TEST_F(BadInputTest, EmptyAndTinyFilesAreNotDicom) {
  const fs::path empty = path("empty.dcm");
  { std::ofstream out(empty, std::ios::binary); }
  auto r = dcm::read_radiograph(empty);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.error().kind == dcm::ErrorKind::NotDicom || r.error().kind == dcm::ErrorKind::Truncated) << describe(r);
  const fs::path tiny = path("tiny.dcm");
  {
    std::ofstream out(tiny, std::ios::binary);
    out << "DI";
  }
  auto t = dcm::read_radiograph(tiny);
  ASSERT_FALSE(t.ok());
  EXPECT_TRUE(t.error().kind == dcm::ErrorKind::NotDicom || t.error().kind == dcm::ErrorKind::Truncated) << describe(t);
}

TEST_F(BadInputTest, AbsurdDimensionsAreRefusedWithoutAllocating) {
  const fs::path file = path("absurd.dcm");
  td::write_absurd_dimensions(file);
  auto r = dcm::read_radiograph(file);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.error().kind == dcm::ErrorKind::TooLarge || r.error().kind == dcm::ErrorKind::Truncated) << describe(r);

  // With the limits lifted the 64 bytes of pixel data cannot hold 65535 x 65535 pixels: the
  // reader must say so (Truncated) rather than allocate 17 GB for the stored values.
  dcm::ReadOptions lifted;
  lifted.limits.max_rows = 65535;
  lifted.limits.max_columns = 65535;
  lifted.limits.max_pixels = 65535ull * 65535ull;
  auto r2 = dcm::read_radiograph(file, lifted);
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.error().kind, dcm::ErrorKind::Truncated) << describe(r2);

  // Attributes-only reads are fine with lifted limits (nothing is decoded).
  lifted.decode_pixels = false;
  auto r3 = dcm::read_radiograph(file, lifted);
  if (r3.ok()) {
    EXPECT_EQ(r3->rows, 65535);
    EXPECT_TRUE(r3->stored.empty());
  }
}

TEST_F(BadInputTest, LimitsAreEnforced) {
  td::DicomSpec spec;  // 320 x 256
  const fs::path file = path("image.dcm");
  (void)td::write_dicom(file, spec);
  dcm::ReadOptions small;
  small.limits.max_rows = 300;
  auto r = dcm::read_radiograph(file, small);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, dcm::ErrorKind::TooLarge) << describe(r);
  dcm::ReadOptions few;
  few.limits.max_pixels = 320 * 256 - 1;
  auto r2 = dcm::read_radiograph(file, few);
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.error().kind, dcm::ErrorKind::TooLarge) << describe(r2);
}

TEST_F(BadInputTest, MissingFileIsFileNotFound) {
  auto r = dcm::read_radiograph(path("does-not-exist.dcm"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, dcm::ErrorKind::FileNotFound) << describe(r);
  EXPECT_NE(r.error().message.find("does-not-exist.dcm"), std::string::npos) << r.error().message;
}

TEST_F(BadInputTest, FolderIsNotAFile) {
  auto r = dcm::read_radiograph(dir_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, dcm::ErrorKind::FileNotFound) << describe(r);
}

TEST_F(BadInputTest, AnUnknownPhotometricIsNotARadiograph) {
  td::DicomSpec spec;
  spec.photometric_override = "HSV";  // retired (PS3.3 C.7.6.3.1.2): no reader need show it
  const fs::path file = path("hsv.dcm");
  (void)td::write_dicom(file, spec);
  auto r = dcm::read_radiograph(file);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, dcm::ErrorKind::NotARadiograph) << describe(r);
  EXPECT_NE(r.error().message.find("HSV"), std::string::npos) << r.error().message;
}

// ---- robustness: damaged files return (ok or an error) and never crash ----------------------

struct Rng {
  std::uint64_t s;
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  std::size_t below(std::size_t n) { return static_cast<std::size_t>(next() % n); }
};

class FuzzTest : public TempDirTest, public ::testing::WithParamInterface<td::Encoding> {};

TEST_P(FuzzTest, DamagedFilesNeverCrash) {
  const td::Encoding e = GetParam();
  td::DicomSpec spec;
  spec.encoding = e;
  spec.phantom.rows = 48;
  spec.phantom.columns = 40;
  spec.windows = {{2048.0, 4096.0, "FULL"}};
  // Fixed UIDs: the same bytes (and so the same damages) on every run.
  spec.study_instance_uid = "1.2.826.0.1.3680043.10.1234.7";
  spec.series_instance_uid = "1.2.826.0.1.3680043.10.1234.7.1";
  spec.sop_instance_uid = "1.2.826.0.1.3680043.10.1234.7.1.1";
  const fs::path original = path("original.dcm");
  (void)td::write_dicom(original, spec);
  std::string bytes;
  {
    std::ifstream in(original, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  ASSERT_GT(bytes.size(), 400u);
  {
    auto r = dcm::read_radiograph(original);
    ASSERT_TRUE(r.ok()) << describe(r);
  }

  // 200 deterministic damages: half in the header (where lengths and VRs live), half anywhere.
  // Kinds: flip one byte, set four bytes to 0xFF (huge lengths), zero four bytes, cut the file.
  Rng rng{0xC0FFEEULL + static_cast<std::uint64_t>(e)};
  const fs::path damaged = path("damaged.dcm");
  int ok = 0, failed = 0;
  for (int i = 0; i < 200; ++i) {
    std::string b = bytes;
    const std::size_t header = std::min<std::size_t>(b.size(), 1200);
    const std::size_t pos = (i % 2 == 0) ? rng.below(header) : rng.below(b.size());
    std::string what;
    switch (i % 4) {
      case 0:
        b[pos] = static_cast<char>(b[pos] ^ static_cast<char>(1 + rng.below(255)));
        what = "flip byte";
        break;
      case 1:
        for (std::size_t k = pos; k < std::min(b.size(), pos + 4); ++k) b[k] = static_cast<char>(0xFF);
        what = "0xFFFFFFFF";
        break;
      case 2:
        for (std::size_t k = pos; k < std::min(b.size(), pos + 4); ++k) b[k] = 0;
        what = "zeros";
        break;
      default:
        b.resize(pos);
        what = "cut";
        break;
    }
    {
      std::ofstream out(damaged, std::ios::binary | std::ios::trunc);
      out.write(b.data(), static_cast<std::streamsize>(b.size()));
    }
    SCOPED_TRACE("damage " + std::to_string(i) + ": " + what + " at byte " + std::to_string(pos));
    auto r = dcm::read_radiograph(damaged);
    if (r.ok()) {
      ++ok;
      // Whatever was read must be consistent, and displayable.
      ASSERT_EQ(r->stored.size(), r->pixel_count());
      ASSERT_EQ(r->modality.size(), r->pixel_count());
      auto shown = dcm::render_8bit(r.value());
      if (shown.ok()) {
        ASSERT_EQ(shown->size(), r->pixel_count());
      }
    } else {
      ++failed;
      EXPECT_FALSE(r.error().message.empty());
    }
  }
  // Both outcomes occur: the sweep really damaged files, and some damage is harmless.
  EXPECT_GT(failed, 0);
  EXPECT_GT(ok, 0);
  std::printf("[ fuzz     ] %s: %d read, %d refused\n", td::to_string(e), ok, failed);
}

INSTANTIATE_TEST_SUITE_P(Encodings, FuzzTest,
                         ::testing::Values(td::Encoding::ExplicitLittle, td::Encoding::ImplicitLittle,
                                           td::Encoding::ExplicitBig, td::Encoding::Deflated, td::Encoding::Rle,
                                           td::Encoding::JpegLosslessSV1, td::Encoding::JpegExtended12,
                                           td::Encoding::JpegLsLossless, td::Encoding::J2kLossless),
                         [](const ::testing::TestParamInfo<td::Encoding>& p) {
                           std::string name = td::to_string(p.param);
                           for (char& c : name)
                             if (c == '-') c = '_';
                           return name;
                         });

}  // namespace
}  // namespace hilum::test
