// End-to-end tests of hilum-cli: the real executable on generated files.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

#include "temp_dir_test.hpp"
#include "hilum/app/png.hpp"
#include "cli_runner.hpp"
#include "hilum/testdata/phantom.hpp"

#include <nlohmann/json.hpp>

namespace fs = std::filesystem;
namespace td = hilum::testdata;

namespace {

using hilum::test::CliRun;
using hilum::test::lines;
using hilum::test::run_cli;

class Cli : public hilum::test::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
  }
  std::string q(const fs::path& p) const { return "'" + p.string() + "'"; }
};

TEST_F(Cli, InfoPrintsOneJsonLinePerFileAndFailsWhenOneFails) {
  td::DicomSpec good;
  good.encoding = td::Encoding::ExplicitLittle;
  good.windows = {{2048.0, 4096.0, "FULL"}};
  td::write_dicom(dir_ / "good.dcm", good);
  td::write_basic_text_sr(dir_ / "sr.dcm");

  const CliRun ok = run_cli("info " + q(dir_ / "good.dcm"));
  EXPECT_EQ(ok.status, 0);
  auto l = lines(ok.out);
  ASSERT_EQ(l.size(), 1u) << ok.out;
  EXPECT_NE(l[0].find("\"ok\":true"), std::string::npos) << l[0];
  EXPECT_NE(l[0].find("\"transfer_syntax_uid\":\"1.2.840.10008.1.2.1\""), std::string::npos) << l[0];
  EXPECT_NE(l[0].find("\"rows\":320"), std::string::npos) << l[0];
  EXPECT_NE(l[0].find("\"center\":2048"), std::string::npos) << l[0];
  EXPECT_NE(l[0].find("\"photometric_interpretation\":\"MONOCHROME2\""), std::string::npos) << l[0];
  EXPECT_NE(l[0].find("\"colour_shown_as_grey\":false"), std::string::npos) << l[0];

  // A colour image says what it is, that it is shown in grey, and how much of it is in colour.
  td::ColourDicomSpec colour;
  colour.photometric = "PALETTE COLOR";
  colour.colour = [](int row, int column) {
    return column < 32 ? std::array<std::uint8_t, 3>{90, 90, 90} : std::array<std::uint8_t, 3>{static_cast<std::uint8_t>(row * 5), 0, 200};
  };
  td::write_colour_dicom(dir_ / "palette.dcm", colour);
  const CliRun info = run_cli("info " + q(dir_ / "palette.dcm"));
  EXPECT_EQ(info.status, 0) << info.out;
  EXPECT_NE(info.out.find("\"photometric_interpretation\":\"PALETTE COLOR\""), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("\"colour_shown_as_grey\":true"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("\"coloured_share\":0.5"), std::string::npos) << info.out;

  const CliRun mixed = run_cli("info " + q(dir_ / "good.dcm") + " " + q(dir_ / "sr.dcm") + " " + q(dir_ / "missing.dcm"));
  EXPECT_EQ(mixed.status, 1);
  l = lines(mixed.out);
  ASSERT_EQ(l.size(), 3u) << mixed.out;
  EXPECT_NE(l[0].find("\"ok\":true"), std::string::npos);
  EXPECT_NE(l[1].find("\"ok\":false"), std::string::npos);
  EXPECT_NE(l[1].find("not an image: Basic Text SR"), std::string::npos) << l[1];
  EXPECT_NE(l[2].find("file not found"), std::string::npos) << l[2];
}

// Issue 16, defect 9: a DICOM string that is not UTF-8 still gives a line of JSON that parses.
TEST_F(Cli, InfoPrintsJsonThatParsesWhateverBytesTheFileHolds) {
  td::DicomSpec spec;
  spec.encoding = td::Encoding::ExplicitLittle;
  spec.windows = {{2048.0, 4096.0, "LUNG\xff\xfe\xc3"}};
  spec.series_description = "Chest\x80";
  td::write_dicom(dir_ / "latin.dcm", spec);
  const CliRun r = run_cli("info " + q(dir_ / "latin.dcm"));
  EXPECT_EQ(r.status, 0);
  const auto l = lines(r.out);
  ASSERT_EQ(l.size(), 1u) << r.out;
  nlohmann::json j;
  ASSERT_NO_THROW(j = nlohmann::json::parse(l[0])) << l[0];
  EXPECT_EQ(j["ok"], true);
  EXPECT_NE(l[0].find("LUNG\xef\xbf\xbd"), std::string::npos) << l[0];
}

TEST_F(Cli, RenderWritesTheDisplayedImage) {
  td::DicomSpec spec;
  spec.phantom.monochrome1 = true;
  spec.encoding = td::Encoding::JpegLosslessSV1;
  td::write_dicom(dir_ / "mono1.dcm", spec);
  ASSERT_EQ(run_cli("render " + q(dir_ / "mono1.dcm") + " -o " + q(dir_ / "out.png")).status, 0);
  const auto read = hilum::app::read_png_gray(dir_ / "out.png");
  ASSERT_TRUE(read.ok()) << read.error().message;
  const auto& png = read.value();
  EXPECT_EQ(png.width, 256);
  EXPECT_EQ(png.height, 320);
  EXPECT_EQ(png.bit_depth, 8);
  // Bone white on MONOCHROME1: the spine (centre column, mid height) is brighter than a lung.
  const auto at = [&](int x, int y) { return png.pixels[static_cast<std::size_t>(y * png.width + x)]; };
  EXPECT_GT(at(128, 160), at(75, 150) + 40);

  ASSERT_EQ(run_cli("render " + q(dir_ / "mono1.dcm") + " -o " + q(dir_ / "small.png") + " --max-size 64").status, 0);
  const auto read_small = hilum::app::read_png_gray(dir_ / "small.png");
  ASSERT_TRUE(read_small.ok()) << read_small.error().message;
  const auto& small = read_small.value();
  EXPECT_EQ(small.height, 64);
  EXPECT_EQ(small.width, 51);

  ASSERT_EQ(run_cli("render " + q(dir_ / "mono1.dcm") + " -o " + q(dir_ / "inv.png") + " --invert").status, 0);
  const auto read_inv = hilum::app::read_png_gray(dir_ / "inv.png");
  ASSERT_TRUE(read_inv.ok()) << read_inv.error().message;
  const auto& inv = read_inv.value();
  ASSERT_EQ(inv.pixels.size(), png.pixels.size());
  EXPECT_EQ(inv.pixels[160 * 256 + 128], 255 - png.pixels[160 * 256 + 128]);
}

TEST_F(Cli, RenderHonoursAnExplicitWindow) {
  td::DicomSpec spec;
  td::write_dicom(dir_ / "im.dcm", spec);
  // A window far below every value: all white; far above: all black.
  ASSERT_EQ(run_cli("render " + q(dir_ / "im.dcm") + " -o " + q(dir_ / "white.png") + " --window -10000,10").status, 0);
  ASSERT_EQ(run_cli("render " + q(dir_ / "im.dcm") + " -o " + q(dir_ / "black.png") + " --window 100000,10").status, 0);
  const auto read_white = hilum::app::read_png_gray(dir_ / "white.png");
  const auto read_black = hilum::app::read_png_gray(dir_ / "black.png");
  ASSERT_TRUE(read_white.ok() && read_black.ok());
  const auto& white = read_white.value();
  const auto& black = read_black.value();
  ASSERT_FALSE(white.pixels.empty());
  ASSERT_FALSE(black.pixels.empty());
  EXPECT_EQ(*std::min_element(white.pixels.begin(), white.pixels.end()), 255);
  EXPECT_EQ(*std::max_element(black.pixels.begin(), black.pixels.end()), 0);
}

TEST_F(Cli, BadCommandLinesAndBadFilesAreReported) {
  EXPECT_EQ(run_cli("").status, 2);
  EXPECT_EQ(run_cli("frobnicate").status, 2);
  EXPECT_EQ(run_cli("render").status, 2);
  EXPECT_EQ(run_cli("render x.dcm").status, 2);  // no -o
  EXPECT_EQ(run_cli("render x.dcm -o y.png --window 3").status, 2);
  td::write_not_dicom(dir_ / "notes.txt");
  EXPECT_EQ(run_cli("render " + q(dir_ / "notes.txt") + " -o " + q(dir_ / "n.png")).status, 1);
  EXPECT_FALSE(fs::exists(dir_ / "n.png"));
  td::DicomSpec spec;
  td::write_dicom(dir_ / "im.dcm", spec);
  EXPECT_EQ(run_cli("render " + q(dir_ / "im.dcm") + " -o " + q(dir_ / "p.png") + " --preset 3").status, 1);
}

TEST_F(Cli, InfoExpandsADicomdir) {
  const auto uids = td::write_dicomdir_media(dir_ / "media", 2);
  const CliRun r = run_cli("info " + q(dir_ / "media" / "DICOMDIR"));
  EXPECT_EQ(r.status, 0) << r.out;
  const auto l = lines(r.out);
  ASSERT_EQ(l.size(), uids.size());
  for (std::size_t i = 0; i < uids.size(); ++i) {
    EXPECT_NE(l[i].find("\"sop_instance_uid\":\"" + uids[i] + "\""), std::string::npos) << l[i];
  }
  const CliRun listing = run_cli("dicomdir " + q(dir_ / "media" / "DICOMDIR") + " --json");
  EXPECT_EQ(listing.status, 0);
  EXPECT_EQ(lines(listing.out).size(), uids.size());
}

}  // namespace
