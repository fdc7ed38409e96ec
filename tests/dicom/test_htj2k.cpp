// High-Throughput JPEG 2000 (transfer syntaxes 1.2.840.10008.1.2.4.201-203), which DCMTK 3.6.7 does
// not know: the codestreams come from OpenJPH's ojph_compress (Debian openjph-tools, a peer
// encoder; this test is registered only where it is installed), wrapped here in a Part 10 file
// written byte by byte, and read back through OpenJPEG.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "hilum/dicom/deidentify.hpp"
#include "hilum/dicom/reader.hpp"
#include "little_endian.hpp"
#include "temp_dir_test.hpp"

namespace hilum::test {
namespace {

namespace fs = std::filesystem;
namespace dcm = hilum::dicom;

constexpr const char* kHtj2kLossless = "1.2.840.10008.1.2.4.201";


// One Explicit VR Little Endian element with a short (2-byte) length; the value padded to even.
void element(std::string& out, std::uint16_t group, std::uint16_t elem, const char* vr, std::string value) {
  if (value.size() % 2 != 0) value.push_back(std::string(vr) == "UI" ? '\0' : ' ');
  put16(out, group);
  put16(out, elem);
  out += vr;
  put16(out, static_cast<std::uint32_t>(value.size()));
  out += value;
}
void element_us(std::string& out, std::uint16_t group, std::uint16_t elem, std::uint16_t v) {
  std::string value;
  put16(value, v);
  element(out, group, elem, "US", value);
}

// A DX chest film of rows x columns, 12 bits stored in 16, whose one frame is `codestream`,
// encapsulated (empty Basic Offset Table, one fragment) under transfer syntax `xfer`; with
// `native`, `codestream` is the frame's 16-bit little-endian words, not encapsulated.
void write_part10(const fs::path& file, const std::string& xfer, int rows, int columns, std::string codestream, bool native = false) {
  const std::string sop_class = "1.2.840.10008.5.1.4.1.1.1.1";  // Digital X-Ray Image Storage - For Presentation
  const std::string sop_instance = "1.2.826.0.1.3680043.9.7433.1.1";
  std::string meta;
  // (0002,0001) File Meta Information Version, OB: the 4-byte length form.
  put16(meta, 0x0002);
  put16(meta, 0x0001);
  meta += "OB";
  put16(meta, 0);
  put32(meta, 2);
  meta += std::string("\0\1", 2);
  element(meta, 0x0002, 0x0002, "UI", sop_class);
  element(meta, 0x0002, 0x0003, "UI", sop_instance);
  element(meta, 0x0002, 0x0010, "UI", xfer);
  element(meta, 0x0002, 0x0012, "UI", "1.2.826.0.1.3680043.9.7433.0");
  std::string out(128, '\0');
  out += "DICM";
  std::string length;
  put32(length, static_cast<std::uint32_t>(meta.size()));
  element(out, 0x0002, 0x0000, "UL", length);
  out += meta;
  element(out, 0x0008, 0x0016, "UI", sop_class);
  element(out, 0x0008, 0x0018, "UI", sop_instance);
  element(out, 0x0008, 0x0060, "CS", "DX");
  element(out, 0x0010, 0x0010, "PN", "HTJ2K^PHANTOM");
  element(out, 0x0010, 0x0020, "LO", "HTJ2K-1");
  element(out, 0x0018, 0x0015, "CS", "CHEST");
  element(out, 0x0020, 0x000D, "UI", "1.2.826.0.1.3680043.9.7433.1.2");
  element(out, 0x0020, 0x000E, "UI", "1.2.826.0.1.3680043.9.7433.1.3");
  element_us(out, 0x0028, 0x0002, 1);
  element(out, 0x0028, 0x0004, "CS", "MONOCHROME2");
  element_us(out, 0x0028, 0x0010, static_cast<std::uint16_t>(rows));
  element_us(out, 0x0028, 0x0011, static_cast<std::uint16_t>(columns));
  element_us(out, 0x0028, 0x0100, 16);
  element_us(out, 0x0028, 0x0101, 12);
  element_us(out, 0x0028, 0x0102, 11);
  element_us(out, 0x0028, 0x0103, 0);
  if (native) {
    put16(out, 0x7FE0);
    put16(out, 0x0010);
    out += "OW";
    put16(out, 0);
    put32(out, static_cast<std::uint32_t>(codestream.size()));
    out += codestream;
    std::ofstream(file, std::ios::binary) << out;
    return;
  }
  // Pixel Data, undefined length: the Basic Offset Table item (empty), the frame, the delimiter.
  put16(out, 0x7FE0);
  put16(out, 0x0010);
  out += "OB";
  put16(out, 0);
  put32(out, 0xFFFFFFFFu);
  put16(out, 0xFFFE);
  put16(out, 0xE000);
  put32(out, 0);
  if (codestream.size() % 2 != 0) codestream.push_back('\0');
  put16(out, 0xFFFE);
  put16(out, 0xE000);
  put32(out, static_cast<std::uint32_t>(codestream.size()));
  out += codestream;
  put16(out, 0xFFFE);
  put16(out, 0xE0DD);
  put32(out, 0);
  std::ofstream(file, std::ios::binary) << out;
}

std::string read_bytes(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class Htj2kTest : public TempDirTest {
 protected:
  static constexpr int kRows = 300;
  static constexpr int kColumns = 240;

  // 12-bit values with structure at every scale (a ramp, a ring, fine stripes).
  static std::vector<std::int32_t> values() {
    std::vector<std::int32_t> v(static_cast<std::size_t>(kRows) * kColumns);
    for (int y = 0; y < kRows; ++y) {
      for (int x = 0; x < kColumns; ++x) {
        const int dy = y - kRows / 2, dx = x - kColumns / 2;
        const bool ring = dx * dx + dy * dy > 60 * 60 && dx * dx + dy * dy < 80 * 80;
        v[static_cast<std::size_t>(y) * kColumns + x] = (8 * x + 5 * y + (ring ? 900 : 0) + ((x / 3) % 2) * 40) % 4096;
      }
    }
    return v;
  }

  // The values as a 16-bit PGM, compressed by ojph_compress (reversible: lossless).
  std::string codestream(const std::vector<std::int32_t>& v) {
    std::string pgm = "P5\n" + std::to_string(kColumns) + " " + std::to_string(kRows) + "\n4095\n";
    for (const std::int32_t s : v) {
      pgm.push_back(static_cast<char>((s >> 8) & 0xFF));
      pgm.push_back(static_cast<char>(s & 0xFF));
    }
    std::ofstream(path("in.pgm"), std::ios::binary) << pgm;
    const std::string command = std::string(HILUM_OJPH_COMPRESS) + " -i '" + path("in.pgm").string() + "' -o '" +
                                path("out.j2c").string() + "' -reversible true -num_decomps 5 > /dev/null";
    EXPECT_EQ(std::system(command.c_str()), 0) << command;
    return read_bytes(path("out.j2c"));
  }
};

TEST_F(Htj2kTest, ALosslessFilmReadsBackExactly) {
  const auto v = values();
  const std::string stream = codestream(v);
  ASSERT_GT(stream.size(), 100u);
  ASSERT_EQ(static_cast<unsigned char>(stream[0]), 0xFF);
  ASSERT_EQ(static_cast<unsigned char>(stream[1]), 0x4F) << "a J2K codestream (SOC)";
  ASSERT_NE(stream.find("\xFF\x50", 0, 2), std::string::npos) << "with a CAP marker: HTJ2K";
  write_part10(path("ht.dcm"), kHtj2kLossless, kRows, kColumns, stream);
  auto r = dcm::read_radiograph(path("ht.dcm"));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->meta.transfer_syntax_uid, kHtj2kLossless);
  EXPECT_EQ(r->meta.transfer_syntax_name, "High-Throughput JPEG 2000 Image Compression (Lossless Only)");
  ASSERT_EQ(r->rows, kRows);
  ASSERT_EQ(r->columns, kColumns);
  EXPECT_EQ(r->stored, v);
  EXPECT_EQ(r->min_modality, 0.0f);

  // A consumer that needs a small image gets a reduced resolution level, as for JPEG 2000.
  dcm::ReadOptions small;
  small.min_side = 60;
  auto reduced = dcm::read_radiograph(path("ht.dcm"), small);
  ASSERT_TRUE(reduced.ok()) << reduced.error().message;
  EXPECT_GT(reduced->reduction, 0);
  EXPECT_LT(reduced->rows, kRows);
  EXPECT_GE(std::min(reduced->rows, reduced->columns), 60);

  bool listed = false;
  for (const auto& t : dcm::supported_transfer_syntaxes()) listed = listed || t.uid == kHtj2kLossless;
  EXPECT_TRUE(listed);
}

TEST_F(Htj2kTest, ADamagedCodestreamIsAnErrorAndAnUnknownSyntaxIsNamed) {
  std::string stream = codestream(values());
  ASSERT_GT(stream.size(), 400u);
  stream.resize(stream.size() / 3);  // cut in the middle of the code-blocks
  write_part10(path("cut.dcm"), kHtj2kLossless, kRows, kColumns, stream);
  auto cut = dcm::read_radiograph(path("cut.dcm"));
  ASSERT_FALSE(cut.ok());
  EXPECT_FALSE(cut.error().message.empty());

  // A transfer syntax neither DCMTK nor this reader knows (JPEG XL): said so, with its UID, not
  // read as uncompressed ("truncated pixel data" before).
  write_part10(path("jxl.dcm"), "1.2.840.10008.1.2.4.110", kRows, kColumns, std::string(64, 'x'));
  auto unknown = dcm::read_radiograph(path("jxl.dcm"));
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().kind, dcm::ErrorKind::Unsupported);
  EXPECT_NE(unknown.error().message.find("1.2.840.10008.1.2.4.110"), std::string::npos) << unknown.error().message;
  // Its header still reads (the catalog can say what it is).
  dcm::ReadOptions header_only;
  header_only.decode_pixels = false;
  auto header = dcm::read_radiograph(path("jxl.dcm"), header_only);
  ASSERT_TRUE(header.ok()) << header.error().message;
  EXPECT_EQ(header->meta.transfer_syntax_name.rfind("unknown transfer syntax", 0), 0u) << header->meta.transfer_syntax_name;

  // A vendor's private transfer syntax over native pixels reads as before (DCMTK finds the
  // encoding), and de-identifies as before: only encoded pixels under an unknown syntax are refused.
  std::string words;
  const auto v = values();
  for (const std::int32_t x : v) put16(words, static_cast<std::uint32_t>(x));
  write_part10(path("private.dcm"), "1.2.826.0.1.3680043.9.7433.9.1", kRows, kColumns, words, true);
  auto native = dcm::read_radiograph(path("private.dcm"));
  ASSERT_TRUE(native.ok()) << native.error().message;
  EXPECT_EQ(native->stored, v);
  dcm::DeidentifyPlan plan;
  plan.pseudonym = [](const std::string& kind, const std::string&) { return kind == "uid" ? std::string("1.2.3.4") : std::string("ANON"); };
  auto copy = dcm::write_deidentified(path("private.dcm"), path("private-copy.dcm"), plan);
  ASSERT_TRUE(copy.ok()) << copy.error().message;
  auto back = dcm::read_radiograph(path("private-copy.dcm"));
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->stored, v);
}

// DCMTK would write an HTJ2K data set as Explicit VR Little Endian around its still-encoded pixels:
// a de-identified copy is refused with the reason, and nothing is written.
TEST_F(Htj2kTest, ADeidentifiedCopyIsRefusedNotWrittenWrong) {
  write_part10(path("ht.dcm"), kHtj2kLossless, kRows, kColumns, codestream(values()));
  dcm::DeidentifyPlan plan;
  plan.pseudonym = [](const std::string& kind, const std::string&) { return kind == "uid" ? std::string("1.2.3.4") : std::string("ANON"); };
  auto done = dcm::write_deidentified(path("ht.dcm"), path("copy.dcm"), plan);
  ASSERT_FALSE(done.ok());
  EXPECT_EQ(done.error().kind, dcm::ErrorKind::Unsupported);
  EXPECT_NE(done.error().message.find("High-Throughput JPEG 2000"), std::string::npos) << done.error().message;
  EXPECT_FALSE(fs::exists(path("copy.dcm")));
}

}  // namespace
}  // namespace hilum::test
