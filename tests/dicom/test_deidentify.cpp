// De-identified copies (PS3.15 Annex E Basic Profile): the copy reads back with identical stored
// pixel values and display attributes, UIDs come from the mapping (the same mapping gives the same
// UIDs), and no byte of the copy holds any of the original identifying values.
//
// The phantom writer does not produce every identifying attribute a real radiograph carries, so the
// tests add them (private tags, an overlay, a Referenced Image Sequence, operators, station, device
// serial number, comments, ...) with a small explicit-VR-little-endian editor defined here, which
// also parses the copy back to check its top-level attributes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "hilum/dicom/deidentify.hpp"
#include "little_endian.hpp"
#include "support.hpp"

namespace hilum::test {
namespace {

// ---- A minimal editor for Part 10 files in Explicit VR Little Endian with defined lengths. ----

struct RawElement {
  std::uint16_t group = 0;
  std::uint16_t element = 0;
  std::string vr;
  std::string value;  // raw value bytes (even length)
  [[nodiscard]] std::uint32_t tag() const { return (static_cast<std::uint32_t>(group) << 16) | element; }
};

bool long_form(const std::string& vr) {
  for (const char* v : {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
    if (vr == v) return true;
  return false;
}

std::uint16_t u16(const std::string& b, std::size_t pos) {
  return static_cast<std::uint16_t>(static_cast<unsigned char>(b[pos]) | (static_cast<unsigned char>(b[pos + 1]) << 8));
}
std::uint32_t u32(const std::string& b, std::size_t pos) {
  return static_cast<std::uint32_t>(u16(b, pos)) | (static_cast<std::uint32_t>(u16(b, pos + 2)) << 16);
}

std::string encode(const RawElement& e) {
  std::string out;
  put16(out, e.group);
  put16(out, e.element);
  out += e.vr;
  if (long_form(e.vr)) {
    put16(out, 0);
    put32(out, static_cast<std::uint32_t>(e.value.size()));
  } else {
    put16(out, static_cast<std::uint32_t>(e.value.size()));
  }
  return out + e.value;
}

// A string value padded to even length as its VR requires.
std::string padded(const std::string& vr, std::string value) {
  if (value.size() % 2 != 0) value.push_back(vr == "UI" ? '\0' : ' ');
  return value;
}

RawElement text(std::uint16_t group, std::uint16_t element, const std::string& vr, const std::string& value) {
  return RawElement{group, element, vr, padded(vr, value)};
}

RawElement us(std::uint16_t group, std::uint16_t element, std::uint16_t value) {
  std::string v;
  put16(v, value);
  return RawElement{group, element, "US", v};
}

// A sequence of items (defined lengths), each item the encoding of its elements.
RawElement sequence(std::uint16_t group, std::uint16_t element, const std::vector<std::vector<RawElement>>& items) {
  std::string value;
  for (const auto& item : items) {
    std::string content;
    for (const auto& e : item) content += encode(e);
    put16(value, 0xFFFE);
    put16(value, 0xE000);
    put32(value, static_cast<std::uint32_t>(content.size()));
    value += content;
  }
  return RawElement{group, element, "SQ", value};
}

class DicomEditor {
 public:
  explicit DicomEditor(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    bytes_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (bytes_.size() < 132 || bytes_.compare(128, 4, "DICM") != 0) {
      error_ = "no DICM marker";
      return;
    }
    std::size_t pos = 132;
    bool in_meta = true;
    while (pos + 8 <= bytes_.size()) {
      RawElement e;
      e.group = u16(bytes_, pos);
      e.element = u16(bytes_, pos + 2);
      if (in_meta && e.group != 0x0002) {
        in_meta = false;
        prefix_ = bytes_.substr(0, pos);
      }
      e.vr = bytes_.substr(pos + 4, 2);
      std::uint32_t length = 0;
      std::size_t header = 8;
      if (long_form(e.vr)) {
        length = u32(bytes_, pos + 8);
        header = 12;
      } else {
        length = u16(bytes_, pos + 6);
      }
      if (length == 0xFFFFFFFFu || pos + header + length > bytes_.size()) {
        error_ = "undefined or overlong length";
        return;
      }
      e.value = bytes_.substr(pos + header, length);
      if (!in_meta) elements_.push_back(std::move(e));
      pos += header + length;
    }
    if (in_meta) error_ = "no data set";
  }

  [[nodiscard]] const std::string& error() const { return error_; }
  [[nodiscard]] const std::string& bytes() const { return bytes_; }

  [[nodiscard]] const RawElement* find(std::uint16_t group, std::uint16_t element) const {
    for (const auto& e : elements_)
      if (e.group == group && e.element == element) return &e;
    return nullptr;
  }
  [[nodiscard]] const std::vector<RawElement>& elements() const { return elements_; }

  void set(RawElement e) {
    remove(e.group, e.element);
    elements_.push_back(std::move(e));
  }
  void remove(std::uint16_t group, std::uint16_t element) {
    std::erase_if(elements_, [&](const RawElement& x) { return x.group == group && x.element == element; });
  }
  RawElement* mutable_element(std::uint16_t group, std::uint16_t element) {
    for (auto& e : elements_)
      if (e.group == group && e.element == element) return &e;
    return nullptr;
  }

  void save(const fs::path& file) {
    std::stable_sort(elements_.begin(), elements_.end(),
                     [](const RawElement& a, const RawElement& b) { return a.tag() < b.tag(); });
    std::string out = prefix_;
    for (const auto& e : elements_) out += encode(e);
    std::ofstream(file, std::ios::binary | std::ios::trunc) << out;
  }

 private:
  std::string bytes_;
  std::string prefix_;
  std::vector<RawElement> elements_;
  std::string error_;
};

std::string read_bytes(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string string_value(const RawElement* e) {
  if (e == nullptr) return "<absent>";
  std::string v = e->value;
  while (!v.empty() && (v.back() == ' ' || v.back() == '\0')) v.pop_back();
  return v;
}

// ---- The mapping a catalog would provide: consistent, first use creates. ----

struct FakePseudonyms {
  std::map<std::pair<std::string, std::string>, std::string> table;
  std::string map(const std::string& kind, const std::string& original) {
    auto [it, inserted] = table.try_emplace({kind, original});
    if (inserted) {
      const std::string n = std::to_string(table.size());
      it->second = kind == "uid" ? "2.25.777000" + n : "ANON-" + n;
    }
    return it->second;
  }
  [[nodiscard]] std::optional<std::string> lookup(const std::string& kind, const std::string& original) const {
    auto it = table.find({kind, original});
    if (it == table.end()) return std::nullopt;
    return it->second;
  }
  dcm::DeidentifyPlan plan(std::optional<int> shift) {
    dcm::DeidentifyPlan p;
    p.pseudonym = [this](const std::string& kind, const std::string& original) { return map(kind, original); };
    p.date_shift_days = shift;
    return p;
  }
};

// Identifying values of the test image (each distinctive, so a byte scan can find it).
constexpr const char* kName = "Zyxwvuts^Quirinius";
constexpr const char* kPatientId = "PID-QZX-98127";
constexpr const char* kBirthDate = "19700101";  // what the phantom writer stores
constexpr const char* kAccession = "ACCQZX771";
constexpr const char* kInstitution = "Hilum Test Hospital";
constexpr const char* kStudyUid = "1.2.826.0.1.3680043.10.9911.1";
constexpr const char* kSeriesUid = "1.2.826.0.1.3680043.10.9911.1.2";
constexpr const char* kSopUid = "1.2.826.0.1.3680043.10.9911.1.2.3";
constexpr const char* kFrameOfReferenceUid = "1.2.826.0.1.3680043.10.9911.77";
constexpr const char* kReferencedUid = "1.2.826.0.1.3680043.10.9911.55.1";
constexpr const char* kStudyDescription = "Chest PA Quirinius special";
// Values only the editor adds.
const std::vector<std::pair<RawElement, std::string>>& extra_identifying() {
  static const std::vector<std::pair<RawElement, std::string>> extras = [] {
    std::vector<std::pair<RawElement, std::string>> v;
    const auto add = [&](RawElement e, const std::string& needle) { v.emplace_back(std::move(e), needle); };
    add(text(0x0008, 0x0081, "ST", "12 Secretstreet, Quirinusburg"), "Secretstreet");
    add(text(0x0008, 0x1010, "SH", "STATIONQZX"), "STATIONQZX");
    add(text(0x0008, 0x1040, "LO", "Dept of Quirinology"), "Quirinology");
    add(text(0x0008, 0x1050, "PN", "Performer^Quentin"), "Performer^Quentin");
    add(text(0x0008, 0x1070, "PN", "Operator^Octavia"), "Operator^Octavia");
    add(text(0x0010, 0x0021, "LO", "ISSUERQZX"), "ISSUERQZX");
    add(text(0x0010, 0x0032, "TM", "041516"), "041516");
    add(text(0x0010, 0x1000, "LO", "OTHERID-QZX-1"), "OTHERID-QZX-1");
    add(text(0x0010, 0x1040, "LO", "7 Hidden Lane Qzxville"), "Hidden Lane");
    add(text(0x0010, 0x2154, "SH", "555-0199-77"), "555-0199-77");
    add(text(0x0010, 0x4000, "LT", "patient comment Quirinius"), "patient comment");
    add(text(0x0018, 0x1000, "LO", "SERIALQZX42"), "SERIALQZX42");
    add(text(0x0018, 0x1004, "LO", "PLATEQZX7"), "PLATEQZX7");
    add(text(0x0018, 0x1030, "LO", "PROTOCOLQZX"), "PROTOCOLQZX");
    add(text(0x0018, 0x4000, "LT", "acquisition comment QZX"), "acquisition comment");
    add(text(0x0020, 0x0052, "UI", kFrameOfReferenceUid), kFrameOfReferenceUid);
    add(text(0x0020, 0x4000, "LT", "image comment for Quirinius"), "image comment");
    add(text(0x0032, 0x1032, "PN", "Requester^Rufus"), "Requester^Rufus");
    add(text(0x0038, 0x0010, "LO", "ADMITQZX5"), "ADMITQZX5");
    add(text(0x0040, 0x0254, "LO", "PPS description QZX"), "PPS description");
    // Private block (creator + value) and an overlay plane with a description.
    add(text(0x0009, 0x0010, "LO", "QZXPRIVATE"), "QZXPRIVATE");
    add(text(0x0009, 0x1001, "LO", "PRIVATE-SECRET-QZX"), "PRIVATE-SECRET-QZX");
    add(us(0x6000, 0x0010, 4), "");
    add(us(0x6000, 0x0011, 4), "");
    add(text(0x6000, 0x0022, "LO", "OVERLAY-QZX-LABEL"), "OVERLAY-QZX-LABEL");
    add(text(0x6000, 0x0040, "CS", "G"), "");
    add(us(0x6000, 0x0100, 1), "");
    add(us(0x6000, 0x0102, 0), "");
    add(RawElement{0x6000, 0x3000, "OW", std::string("\xA5\x5A", 2)}, "");
    // A Referenced Image Sequence whose item carries a UID, a private tag and a person name.
    add(sequence(0x0008, 0x1140,
                 {{text(0x0008, 0x1150, "UI", "1.2.840.10008.5.1.4.1.1.1.1"), text(0x0008, 0x1155, "UI", kReferencedUid),
                   text(0x0011, 0x0010, "LO", "QZXNESTED"), text(0x0011, 0x1001, "LO", "NESTED-SECRET-QZX"),
                   text(0x0040, 0xA123, "PN", "Nested^Nora")}}),
        kReferencedUid);
    return v;
  }();
  return extras;
}

class DeidentifyTest : public TempDirTest {
 protected:
  static td::DicomSpec spec(td::Encoding encoding = td::Encoding::ExplicitLittle) {
    td::DicomSpec s;
    s.encoding = encoding;
    s.patient_name = kName;
    s.patient_id = kPatientId;
    s.accession_number = kAccession;
    s.study_instance_uid = kStudyUid;
    s.series_instance_uid = kSeriesUid;
    s.sop_instance_uid = kSopUid;
    s.study_description = kStudyDescription;
    s.series_description = "Series Quirinius";
    s.acquisition_date = "20260101";
    s.acquisition_time = "101500";
    s.view_position = "AP";
    s.laterality = "L";
    s.pixel_spacing = std::make_pair(0.15, 0.175);
    s.rescale_slope = 2.0;
    s.rescale_intercept = -1024.0;
    s.windows = {{1000.0, 3000.0, "FULL"}, {-200.0, 1500.0, "LUNG"}};
    return s;
  }

  // The phantom with every extra identifying attribute added.
  fs::path rich_file(const std::string& name, const td::DicomSpec& s, std::vector<std::int32_t>* values = nullptr) {
    const fs::path file = path(name);
    auto written = td::write_dicom(file, s);
    if (values) *values = std::move(written);
    DicomEditor editor(file);
    EXPECT_EQ(editor.error(), "");
    for (const auto& [element, needle] : extra_identifying()) editor.set(element);
    editor.save(file);
    return file;
  }

  // Every original identifying value that may not appear in a de-identified copy.
  static std::vector<std::string> identifying_values() {
    std::vector<std::string> v = {kName, "Zyxwvuts", "Quirinius", kPatientId, kBirthDate, kAccession, kInstitution,
                                  kStudyUid, kSeriesUid, kSopUid, kStudyDescription, "20260101"};
    for (const auto& [element, needle] : extra_identifying())
      if (!needle.empty()) v.push_back(needle);
    return v;
  }
};

::testing::AssertionResult no_identifying_bytes(const std::string& bytes, const std::vector<std::string>& needles) {
  for (const auto& n : needles) {
    const auto at = bytes.find(n);
    if (at != std::string::npos)
      return ::testing::AssertionFailure() << "found '" << n << "' at byte " << at << " of the de-identified file";
  }
  return ::testing::AssertionSuccess();
}

TEST_F(DeidentifyTest, CopyReadsBackWithSamePixelsAndNoIdentifyingBytes) {
  std::vector<std::int32_t> values;
  const fs::path in = rich_file("in.dcm", spec(), &values);
  auto original = dcm::read_radiograph(in);
  ASSERT_TRUE(original.ok()) << describe(original);
  // The test's additions are really in the input.
  const std::string in_bytes = read_bytes(in);
  for (const auto& n : identifying_values()) ASSERT_NE(in_bytes.find(n), std::string::npos) << n;

  FakePseudonyms pseudonyms;
  const fs::path out = path("out.dcm");
  auto done = dcm::write_deidentified(in, out, pseudonyms.plan(-100));
  ASSERT_TRUE(done.ok()) << describe(done);

  auto copy = dcm::read_radiograph(out);
  ASSERT_TRUE(copy.ok()) << describe(copy);
  // Pixels and the display pipeline are untouched.
  EXPECT_TRUE(same_values(original->stored, copy->stored));
  EXPECT_TRUE(same_values(values, copy->stored));
  EXPECT_EQ(copy->rows, original->rows);
  EXPECT_EQ(copy->columns, original->columns);
  EXPECT_EQ(copy->bits_stored, original->bits_stored);
  EXPECT_EQ(copy->rescale_slope, 2.0);
  EXPECT_EQ(copy->rescale_intercept, -1024.0);
  ASSERT_EQ(copy->windows.size(), 2u);
  EXPECT_EQ(copy->windows[1].center, -200.0);
  EXPECT_EQ(copy->windows[1].explanation, "LUNG");
  // Patient characteristics and the image description a model needs are kept.
  const dcm::Metadata& m = copy->meta;
  EXPECT_EQ(m.patient_sex, "O");
  EXPECT_EQ(m.view_position, "AP");
  EXPECT_EQ(m.body_part_examined, "CHEST");
  EXPECT_EQ(m.laterality, "L");
  ASSERT_TRUE(m.pixel_spacing.has_value());
  EXPECT_DOUBLE_EQ(m.pixel_spacing->row_mm, 0.15);
  EXPECT_DOUBLE_EQ(m.pixel_spacing->column_mm, 0.175);
  EXPECT_EQ(m.modality, "DX");
  EXPECT_EQ(m.sop_class_uid, "1.2.840.10008.5.1.4.1.1.1.1");
  EXPECT_EQ(m.transfer_syntax_uid, original->meta.transfer_syntax_uid);
  // Identity replaced through the mapping.
  EXPECT_EQ(m.patient_name, pseudonyms.lookup("patient_name", kName).value_or("<not mapped>"));
  EXPECT_EQ(m.patient_id, pseudonyms.lookup("patient_id", kPatientId).value_or("<not mapped>"));
  EXPECT_EQ(m.accession_number, pseudonyms.lookup("accession", kAccession).value_or("<not mapped>"));
  EXPECT_EQ(m.sop_instance_uid, pseudonyms.lookup("uid", kSopUid).value_or("<not mapped>"));
  EXPECT_EQ(m.study_instance_uid, pseudonyms.lookup("uid", kStudyUid).value_or("<not mapped>"));
  EXPECT_EQ(m.series_instance_uid, pseudonyms.lookup("uid", kSeriesUid).value_or("<not mapped>"));
  EXPECT_TRUE(pseudonyms.lookup("uid", kReferencedUid).has_value()) << "the nested Referenced SOP Instance UID was not mapped";
  EXPECT_TRUE(pseudonyms.lookup("uid", kFrameOfReferenceUid).has_value());
  EXPECT_FALSE(pseudonyms.lookup("uid", "1.2.840.10008.5.1.4.1.1.1.1").has_value()) << "a SOP Class UID was mapped";
  EXPECT_EQ(m.patient_birth_date, "");
  EXPECT_EQ(m.institution_name, "");
  EXPECT_EQ(m.study_description, "");
  EXPECT_EQ(m.series_description, "");
  EXPECT_EQ(m.study_id, "");
  // Dates shifted by -100 days (2026-01-01 -> 2025-09-23), times kept.
  EXPECT_EQ(m.study_date, "20250923");
  EXPECT_EQ(m.acquisition_date, "20250923");
  EXPECT_EQ(m.acquisition_time, "101500");

  // The copy's own attributes, parsed independently of DCMTK.
  DicomEditor parsed(out);
  ASSERT_EQ(parsed.error(), "");
  EXPECT_EQ(string_value(parsed.find(0x0012, 0x0062)), "YES");
  EXPECT_NE(string_value(parsed.find(0x0012, 0x0063)).find("Basic Application Confidentiality Profile"), std::string::npos);
  EXPECT_EQ(string_value(parsed.find(0x0028, 0x0303)), "MODIFIED");
  const RawElement* codes = parsed.find(0x0012, 0x0064);
  ASSERT_NE(codes, nullptr);
  EXPECT_NE(codes->value.find("113100"), std::string::npos);
  EXPECT_NE(codes->value.find("113107"), std::string::npos);
  EXPECT_NE(codes->value.find("DCM"), std::string::npos);
  const RawElement* referenced = parsed.find(0x0008, 0x1140);
  ASSERT_NE(referenced, nullptr) << "the Referenced Image Sequence is kept (its UIDs mapped)";
  EXPECT_NE(referenced->value.find(pseudonyms.lookup("uid", kReferencedUid).value_or("?")), std::string::npos);
  for (const auto& e : parsed.elements()) {
    EXPECT_EQ(e.group % 2, 0) << "private attribute left: group " << std::hex << e.group;
    EXPECT_NE(e.group & 0xFF00, 0x6000) << "overlay left: " << std::hex << e.group << "," << e.element;
    // The only person names left: the patient's (a pseudonym) and an empty Referring Physician.
    const bool patient = e.group == 0x0010 && e.element == 0x0010;
    const bool referring = e.group == 0x0008 && e.element == 0x0090;
    if (!patient && !referring) {
      EXPECT_NE(e.vr, "PN") << "person name left: " << std::hex << e.group << "," << e.element;
    }
  }
  EXPECT_EQ(string_value(parsed.find(0x0008, 0x0090)), "");
  EXPECT_EQ(parsed.find(0x0008, 0x1070), nullptr);  // Operators' Name
  EXPECT_EQ(parsed.find(0x0010, 0x1000), nullptr);  // Other Patient IDs
  EXPECT_EQ(parsed.find(0x0018, 0x1000), nullptr);  // Device Serial Number
  EXPECT_EQ(parsed.find(0x0020, 0x4000), nullptr);  // Image Comments

  // Not one byte of an original identifying value is left, nested sequences and meta header included.
  EXPECT_TRUE(no_identifying_bytes(read_bytes(out), identifying_values()));
  // No temporary file stays behind.
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir_)) {
    (void)entry;
    ++files;
  }
  EXPECT_EQ(files, 2);
}

// Issue 16, defect 11: the profile's actions apply in every item of every sequence, at any depth,
// and the free text of a coded entry (Code Meaning) is not left as typed: identifiers planted at
// four levels of nested sequences (Anatomic Region Sequence, its modifier, a structure, its
// modifier) leave not one byte, while the codes themselves are kept.
TEST_F(DeidentifyTest, IdentifiersNestedAtEveryDepthAreRemoved) {
  const std::vector<std::pair<std::uint16_t, std::uint16_t>> nesting = {
      {0x0008, 0x2218}, {0x0008, 0x2220}, {0x0008, 0x2228}, {0x0008, 0x2230}};
  const std::vector<std::string> codes = {"51185008", "7771000", "39607008", "24028007"};
  std::vector<std::string> needles;
  std::vector<std::string> uids;
  std::optional<RawElement> inner;
  for (std::size_t d = nesting.size(); d-- > 0;) {
    const std::string level = "L" + std::to_string(d + 1);
    const std::string uid = "1.2.826.0.1.3680043.10.9911.6" + std::to_string(d + 1);
    std::vector<RawElement> item = {
        text(0x0008, 0x0020, "DA", "2025122" + std::to_string(d + 1)),
        text(0x0008, 0x0080, "LO", level + " Institution QZX"),
        text(0x0008, 0x0100, "SH", codes[d]),
        text(0x0008, 0x0102, "SH", "SCT"),
        text(0x0008, 0x0104, "LO", "Chest of Quirinius " + level + "-MEANINGQZX"),
        text(0x0008, 0x1050, "PN", level + "^Performer^QZX"),
        text(0x0008, 0x1155, "UI", uid),
        text(0x0010, 0x1000, "LO", level + "-OTHERID-QZX"),
        text(0x0011, 0x0010, "LO", level + "QZXPRIV"),
        text(0x0011, 0x1001, "LO", level + "-PRIVATE-QZX"),
        text(0x0020, 0x4000, "LT", level + " comment QZX"),
    };
    if (inner) item.push_back(*inner);
    std::sort(item.begin(), item.end(), [](const RawElement& a, const RawElement& b) { return a.tag() < b.tag(); });
    inner = sequence(nesting[d].first, nesting[d].second, {item});
    for (const char* suffix : {"-MEANINGQZX", " Institution QZX", "^Performer^QZX", "-OTHERID-QZX", "QZXPRIV", "-PRIVATE-QZX", " comment QZX"}) {
      needles.push_back(level + suffix);
    }
    needles.push_back("2025122" + std::to_string(d + 1));
    needles.push_back(uid);
    uids.push_back(uid);
  }
  needles.push_back("Quirinius");
  const fs::path in = path("nested.dcm");
  td::write_dicom(in, spec());
  {
    DicomEditor editor(in);
    ASSERT_EQ(editor.error(), "");
    editor.set(*inner);
    editor.save(in);
  }
  const std::string in_bytes = read_bytes(in);
  for (const auto& n : needles) ASSERT_NE(in_bytes.find(n), std::string::npos) << n;

  FakePseudonyms pseudonyms;
  ASSERT_TRUE(dcm::write_deidentified(in, path("out.dcm"), pseudonyms.plan(-100)).ok());
  const std::string out_bytes = read_bytes(path("out.dcm"));
  EXPECT_TRUE(no_identifying_bytes(out_bytes, needles));
  for (const auto& uid : uids) EXPECT_TRUE(pseudonyms.lookup("uid", uid).has_value()) << "nested UID not mapped: " << uid;
  // The coded anatomy is kept at every depth: the codes, and a meaning that names the code.
  DicomEditor parsed(path("out.dcm"));
  ASSERT_EQ(parsed.error(), "");
  const RawElement* region = parsed.find(0x0008, 0x2218);
  ASSERT_NE(region, nullptr) << "the Anatomic Region Sequence is kept";
  for (const auto& code : codes) {
    EXPECT_NE(region->value.find(code), std::string::npos) << "code " << code << " lost";
    EXPECT_NE(region->value.find(code + " (SCT)"), std::string::npos) << "Code Meaning of " << code;
  }
  EXPECT_TRUE(dcm::read_radiograph(path("out.dcm")).ok());
}

TEST_F(DeidentifyTest, SameMappingGivesSameUids) {
  const fs::path in = rich_file("in.dcm", spec());
  FakePseudonyms pseudonyms;
  ASSERT_TRUE(dcm::write_deidentified(in, path("a.dcm"), pseudonyms.plan(-30)).ok());
  ASSERT_TRUE(dcm::write_deidentified(in, path("b.dcm"), pseudonyms.plan(-30)).ok());
  auto a = dcm::read_radiograph(path("a.dcm"));
  auto b = dcm::read_radiograph(path("b.dcm"));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->meta.sop_instance_uid, b->meta.sop_instance_uid);
  EXPECT_EQ(a->meta.study_instance_uid, b->meta.study_instance_uid);
  EXPECT_EQ(a->meta.series_instance_uid, b->meta.series_instance_uid);
  EXPECT_EQ(a->meta.patient_id, b->meta.patient_id);
  EXPECT_NE(a->meta.sop_instance_uid, kSopUid);
  EXPECT_NE(a->meta.study_instance_uid, a->meta.series_instance_uid);
  // The meta header names the new instance.
  const std::string bytes = read_bytes(path("a.dcm"));
  const auto first = bytes.find(a->meta.sop_instance_uid);
  ASSERT_NE(first, std::string::npos);
  EXPECT_LT(first, bytes.find("DICM") + 300) << "Media Storage SOP Instance UID is not the new UID";
  // A second image of the same study gets the same new study UID and a different new SOP UID.
  td::DicomSpec other = spec();
  other.sop_instance_uid = "1.2.826.0.1.3680043.10.9911.1.2.4";
  other.phantom.seed = 9;
  const fs::path in2 = rich_file("in2.dcm", other);
  ASSERT_TRUE(dcm::write_deidentified(in2, path("c.dcm"), pseudonyms.plan(-30)).ok());
  auto c = dcm::read_radiograph(path("c.dcm"));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->meta.study_instance_uid, a->meta.study_instance_uid);
  EXPECT_NE(c->meta.sop_instance_uid, a->meta.sop_instance_uid);
}

// Found by fuzzing (tests/fuzz/regressions/dicom/deidentify-no-patient-elements.dcm): a file without
// Patient Name and Patient ID gave a de-identified copy without them, naming no pseudonymous patient.
TEST_F(DeidentifyTest, AFileWithoutPatientNameAndIdGetsTheirPseudonyms) {
  const fs::path in = path("in.dcm");
  ASSERT_FALSE(td::write_dicom(in, spec()).empty());
  DicomEditor editor(in);
  ASSERT_EQ(editor.error(), "");
  ASSERT_NE(editor.find(0x0010, 0x0010), nullptr);
  editor.remove(0x0010, 0x0010);
  editor.remove(0x0010, 0x0020);
  editor.save(in);
  auto original = dcm::read_radiograph(in);
  ASSERT_TRUE(original.ok()) << describe(original);
  ASSERT_EQ(original->meta.patient_id, "");

  FakePseudonyms pseudonyms;
  ASSERT_TRUE(dcm::write_deidentified(in, path("out.dcm"), pseudonyms.plan(-30)).ok());
  auto copy = dcm::read_radiograph(path("out.dcm"));
  ASSERT_TRUE(copy.ok()) << describe(copy);
  EXPECT_EQ(copy->meta.patient_id, pseudonyms.lookup("patient_id", "").value_or("(never asked)"));
  EXPECT_EQ(copy->meta.patient_name, pseudonyms.lookup("patient_name", "").value_or("(never asked)"));
  EXPECT_FALSE(copy->meta.patient_id.empty());
}

// Found by fuzzing (tests/fuzz/regressions/dicom/deidentify-patient-id-bad-vr.dcm): an element whose VR
// is not a VR ("L\xad") was read as bytes of unknown type; the Patient ID was then written as those bytes
// instead of its pseudonym, and a person's name in such an element was kept.
TEST_F(DeidentifyTest, ElementsWithAnUnknownVrAreReplacedOrRemoved) {
  const fs::path in = path("in.dcm");
  ASSERT_FALSE(td::write_dicom(in, spec()).empty());
  DicomEditor editor(in);
  ASSERT_EQ(editor.error(), "");
  editor.set(RawElement{0x0010, 0x0020, "L\xad", padded("LO", "PID-UNKNOWN-VR")});
  editor.set(RawElement{0x0008, 0x1050, "Z\x01", padded("PN", "Surgeon^Secret")});  // Performing Physician's Name
  editor.save(in);
  ASSERT_NE(read_bytes(in).find("Surgeon^Secret"), std::string::npos);

  FakePseudonyms pseudonyms;
  const auto done = dcm::write_deidentified(in, path("out.dcm"), pseudonyms.plan(-30));
  ASSERT_TRUE(done.ok()) << describe(done);
  const std::string out = read_bytes(path("out.dcm"));
  EXPECT_EQ(out.find("Surgeon^Secret"), std::string::npos);
  EXPECT_EQ(out.find("PID-UNKNOWN-VR"), std::string::npos);
  auto copy = dcm::read_radiograph(path("out.dcm"));
  ASSERT_TRUE(copy.ok()) << describe(copy);
  EXPECT_TRUE(copy->meta.patient_id.rfind("ANON-", 0) == 0) << copy->meta.patient_id;
}

// Found by fuzzing (tests/fuzz/regressions/dicom/deidentify-acr-nema-no-photometric.dcm): an ACR-NEMA
// file without Photometric Interpretation reads (MONOCHROME2 is its default), but its de-identified
// copy, which has a meta header, did not.
TEST_F(DeidentifyTest, AnAcrNemaFileWithoutPhotometricGivesACopyThatReads) {
  td::DicomSpec s = spec();
  s.part10 = false;
  s.encoding = td::Encoding::ImplicitLittle;
  const fs::path in = path("in.dcm");
  ASSERT_FALSE(td::write_dicom(in, s).empty());
  // Drop (0028,0004) from the data set (implicit VR little endian: tag, 4-byte length, value).
  std::string bytes = read_bytes(in);
  const std::string tag("\x28\x00\x04\x00", 4);
  const auto at = bytes.find(tag);
  ASSERT_NE(at, std::string::npos);
  std::uint32_t length = 0;
  std::memcpy(&length, bytes.data() + at + 4, 4);
  bytes.erase(at, 8 + length);
  std::ofstream(in, std::ios::binary | std::ios::trunc) << bytes;
  auto original = dcm::read_radiograph(in);
  ASSERT_TRUE(original.ok()) << describe(original);
  ASSERT_FALSE(original->meta.has_part10_header);

  FakePseudonyms pseudonyms;
  ASSERT_TRUE(dcm::write_deidentified(in, path("out.dcm"), pseudonyms.plan(-30)).ok());
  auto copy = dcm::read_radiograph(path("out.dcm"));
  ASSERT_TRUE(copy.ok()) << describe(copy);
  EXPECT_EQ(copy->photometric, original->photometric);
  EXPECT_EQ(copy->rows, original->rows);
}

// Found by fuzzing (tests/fuzz/regressions/dicom/deidentify-photometric-encoded-ui.dcm): in group
// 0028 the dictionary's VR decides whether an attribute is kept, but the VR it was encoded with decided
// what was done to it, so a Photometric Interpretation encoded as UI got a UID pseudonym (DA: a
// shifted "date", TM: emptied) and the copy did not read. Every VR with a rule of its own, in turn.
TEST_F(DeidentifyTest, APixelAttributeEncodedWithAnotherVrIsKeptAsItIs) {
  for (const char* vr : {"UI", "DA", "DT", "TM", "ST", "LT", "UT", "PN", "AE", "LO", "SH"}) {
    SCOPED_TRACE(vr);
    const fs::path in = path(std::string("in-") + vr + ".dcm");
    const fs::path out = path(std::string("out-") + vr + ".dcm");
    ASSERT_FALSE(td::write_dicom(in, spec()).empty());
    DicomEditor editor(in);
    ASSERT_EQ(editor.error(), "");
    editor.set(text(0x0028, 0x0004, vr, "MONOCHROME1"));
    editor.save(in);
    auto original = dcm::read_radiograph(in);
    ASSERT_TRUE(original.ok()) << describe(original);
    ASSERT_EQ(original->photometric, dcm::Photometric::Monochrome1);

    FakePseudonyms pseudonyms;
    const auto done = dcm::write_deidentified(in, out, pseudonyms.plan(-30));
    ASSERT_TRUE(done.ok()) << describe(done);
    auto copy = dcm::read_radiograph(out);
    ASSERT_TRUE(copy.ok()) << describe(copy);
    EXPECT_EQ(copy->photometric, original->photometric);
    EXPECT_EQ(copy->stored, original->stored);
  }
}

TEST_F(DeidentifyTest, WithoutShiftDatesAndTimesAreRemoved) {
  const fs::path in = rich_file("in.dcm", spec());
  FakePseudonyms pseudonyms;
  ASSERT_TRUE(dcm::write_deidentified(in, path("out.dcm"), pseudonyms.plan(std::nullopt)).ok());
  auto r = dcm::read_radiograph(path("out.dcm"));
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r->meta.study_date, "");
  EXPECT_EQ(r->meta.study_time, "");
  EXPECT_EQ(r->meta.acquisition_date, "");
  EXPECT_EQ(r->meta.acquisition_time, "");
  DicomEditor parsed(path("out.dcm"));
  ASSERT_EQ(parsed.error(), "");
  EXPECT_EQ(string_value(parsed.find(0x0028, 0x0303)), "REMOVED");
  const RawElement* codes = parsed.find(0x0012, 0x0064);
  ASSERT_NE(codes, nullptr);
  EXPECT_NE(codes->value.find("113100"), std::string::npos);
  EXPECT_EQ(codes->value.find("113107"), std::string::npos);
  EXPECT_TRUE(no_identifying_bytes(read_bytes(path("out.dcm")), identifying_values()));
  EXPECT_TRUE(no_identifying_bytes(read_bytes(path("out.dcm")), {"101500"}));
}

TEST_F(DeidentifyTest, CompressedPixelDataIsCopiedUnchanged) {
  for (const td::Encoding encoding : {td::Encoding::Rle, td::Encoding::J2kLossless, td::Encoding::JpegLsLossless}) {
    SCOPED_TRACE(td::to_string(encoding));
    td::DicomSpec s = spec(encoding);
    const fs::path in = path(std::string("in-") + td::to_string(encoding) + ".dcm");
    const std::vector<std::int32_t> values = td::write_dicom(in, s);
    FakePseudonyms pseudonyms;
    const fs::path out = path(std::string("out-") + td::to_string(encoding) + ".dcm");
    auto done = dcm::write_deidentified(in, out, pseudonyms.plan(-7));
    ASSERT_TRUE(done.ok()) << describe(done);
    auto r = dcm::read_radiograph(out);
    ASSERT_TRUE(r.ok()) << describe(r);
    EXPECT_EQ(r->meta.transfer_syntax_uid, td::transfer_syntax_uid(encoding));
    EXPECT_TRUE(same_values(values, r->stored));
    EXPECT_TRUE(no_identifying_bytes(read_bytes(out), {kName, kPatientId, kBirthDate, kAccession, kInstitution, kStudyUid,
                                                       kSeriesUid, kSopUid}));
  }
}

TEST_F(DeidentifyTest, BitsOutsideBitsStoredAreCleared) {
  // 12 bits stored in 16: put a pattern into the 4 unused high bits, as retired overlays did.
  const fs::path in = path("in.dcm");
  const std::vector<std::int32_t> values = td::write_dicom(in, spec());
  {
    DicomEditor editor(in);
    ASSERT_EQ(editor.error(), "");
    RawElement* pixels = editor.mutable_element(0x7FE0, 0x0010);
    ASSERT_NE(pixels, nullptr);
    for (std::size_t i = 1; i < pixels->value.size(); i += 2) pixels->value[i] = static_cast<char>(pixels->value[i] | 0xA0);
    editor.save(in);
  }
  auto before = dcm::read_radiograph(in);
  ASSERT_TRUE(before.ok()) << describe(before);
  ASSERT_TRUE(same_values(values, before->stored));
  FakePseudonyms pseudonyms;
  ASSERT_TRUE(dcm::write_deidentified(in, path("out.dcm"), pseudonyms.plan(-1)).ok());
  auto after = dcm::read_radiograph(path("out.dcm"));
  ASSERT_TRUE(after.ok()) << describe(after);
  EXPECT_TRUE(same_values(values, after->stored));
  DicomEditor parsed(path("out.dcm"));
  ASSERT_EQ(parsed.error(), "");
  const RawElement* pixels = parsed.find(0x7FE0, 0x0010);
  ASSERT_NE(pixels, nullptr);
  int high_bits = 0;
  for (std::size_t i = 1; i < pixels->value.size(); i += 2)
    if ((static_cast<unsigned char>(pixels->value[i]) & 0xF0) != 0) ++high_bits;
  EXPECT_EQ(high_bits, 0);
}

TEST_F(DeidentifyTest, BurnedInAnnotationIsRefusedUnlessAllowed) {
  const fs::path in = rich_file("in.dcm", spec());
  {
    DicomEditor editor(in);
    ASSERT_EQ(editor.error(), "");
    editor.set(text(0x0028, 0x0301, "CS", "YES"));
    editor.save(in);
  }
  FakePseudonyms pseudonyms;
  const fs::path out = path("out.dcm");
  auto refused = dcm::write_deidentified(in, out, pseudonyms.plan(-5));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, dcm::ErrorKind::Unsupported);
  EXPECT_NE(refused.error().message.find("burned-in"), std::string::npos) << refused.error().message;
  EXPECT_FALSE(fs::exists(out));
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir_)) {
    (void)entry;
    ++files;
  }
  EXPECT_EQ(files, 1) << "a temporary file was left behind";

  dcm::DeidentifyPlan allowed = pseudonyms.plan(-5);
  allowed.allow_burned_in = true;
  auto done = dcm::write_deidentified(in, out, allowed);
  ASSERT_TRUE(done.ok()) << describe(done);
  EXPECT_TRUE(dcm::read_radiograph(out).ok());
}

TEST_F(DeidentifyTest, SecondaryCaptureWithoutBurnedInAnnotationIsRefused) {
  td::DicomSpec s = spec();
  s.sop_class_uid = "1.2.840.10008.5.1.4.1.1.7";  // Secondary Capture Image Storage
  s.modality = "OT";
  const fs::path in = path("sc.dcm");
  (void)td::write_dicom(in, s);
  {
    DicomEditor editor(in);
    ASSERT_EQ(editor.error(), "");
    ASSERT_NE(editor.find(0x0028, 0x0301), nullptr);
    editor.remove(0x0028, 0x0301);
    editor.save(in);
  }
  FakePseudonyms pseudonyms;
  auto refused = dcm::write_deidentified(in, path("out.dcm"), pseudonyms.plan(std::nullopt));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("Secondary Capture"), std::string::npos) << refused.error().message;
  EXPECT_FALSE(fs::exists(path("out.dcm")));

  EXPECT_TRUE(dcm::may_have_burned_in_annotation("1.2.840.10008.5.1.4.1.1.7", ""));
  EXPECT_TRUE(dcm::may_have_burned_in_annotation("1.2.840.10008.5.1.4.1.1.7.2", ""));
  EXPECT_FALSE(dcm::may_have_burned_in_annotation("1.2.840.10008.5.1.4.1.1.7", "NO"));
  EXPECT_TRUE(dcm::may_have_burned_in_annotation("1.2.840.10008.5.1.4.1.1.1.1", "YES"));
  EXPECT_TRUE(dcm::may_have_burned_in_annotation("1.2.840.10008.5.1.4.1.1.1", "yes "));
  EXPECT_FALSE(dcm::may_have_burned_in_annotation("1.2.840.10008.5.1.4.1.1.1", ""));
  EXPECT_FALSE(dcm::may_have_burned_in_annotation("1.2.840.10008.5.1.4.1.1.70", ""));
}

TEST_F(DeidentifyTest, BadMappingOrInputIsAnErrorAndWritesNothing) {
  const fs::path in = rich_file("in.dcm", spec());
  dcm::DeidentifyPlan plan;
  plan.pseudonym = [](const std::string& kind, const std::string& original) {
    return kind == "uid" ? std::string("not-a-uid") : "X" + std::to_string(original.size());
  };
  auto bad_uid = dcm::write_deidentified(in, path("out.dcm"), plan);
  ASSERT_FALSE(bad_uid.ok());
  EXPECT_NE(bad_uid.error().message.find("not a valid UID"), std::string::npos) << bad_uid.error().message;
  EXPECT_FALSE(fs::exists(path("out.dcm")));

  dcm::DeidentifyPlan identity;
  identity.pseudonym = [](const std::string&, const std::string& original) { return original; };
  EXPECT_FALSE(dcm::write_deidentified(in, path("out.dcm"), identity).ok());
  EXPECT_FALSE(fs::exists(path("out.dcm")));

  EXPECT_FALSE(dcm::write_deidentified(in, path("out.dcm"), dcm::DeidentifyPlan{}).ok());  // no mapping

  FakePseudonyms pseudonyms;
  auto missing = dcm::write_deidentified(path("missing.dcm"), path("out.dcm"), pseudonyms.plan(1));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().kind, dcm::ErrorKind::FileNotFound);
  auto no_folder = dcm::write_deidentified(in, path("no/such/folder/out.dcm"), pseudonyms.plan(1));
  ASSERT_FALSE(no_folder.ok());
  EXPECT_EQ(no_folder.error().kind, dcm::ErrorKind::FileNotFound);
  auto same = dcm::write_deidentified(in, in, pseudonyms.plan(1));
  ASSERT_FALSE(same.ok());
  EXPECT_NE(read_bytes(in).find(kName), std::string::npos) << "the original was changed";
  td::write_not_dicom(path("text.dcm"));
  EXPECT_FALSE(dcm::write_deidentified(path("text.dcm"), path("out.dcm"), pseudonyms.plan(1)).ok());
  EXPECT_FALSE(fs::exists(path("out.dcm")));
}

TEST(DicomDateShift, ShiftsAcrossMonthsYearsAndLeapDays) {
  EXPECT_EQ(dcm::shift_dicom_date("20260101", -100), "20250923");
  EXPECT_EQ(dcm::shift_dicom_date("20240228", 1), "20240229");
  EXPECT_EQ(dcm::shift_dicom_date("20240301", -1), "20240229");
  EXPECT_EQ(dcm::shift_dicom_date("20231231", 1), "20240101");
  EXPECT_EQ(dcm::shift_dicom_date("2024.02.28", 2), "20240301");
  EXPECT_EQ(dcm::shift_dicom_date("20240101", 0), "20240101");
  EXPECT_FALSE(dcm::shift_dicom_date("20230229", 1).has_value());
  EXPECT_FALSE(dcm::shift_dicom_date("2023", 1).has_value());
  EXPECT_FALSE(dcm::shift_dicom_date("2023-01-01", 1).has_value());
  EXPECT_FALSE(dcm::shift_dicom_date("", 1).has_value());
}

}  // namespace
}  // namespace hilum::test
