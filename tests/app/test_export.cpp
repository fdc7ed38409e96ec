// Export of the current labels: the ChestX-ray14 CSV layout, JSON records, patient-level splits
// that never change, 16-bit PNGs of the modality values, and THE privacy test: a de-identified
// export with images holds not one byte of any original identifying value.
//
// Images enter the catalog through Catalog::put_instances from read_radiograph results (a small
// helper here), labels through Catalog::add_labels.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <clocale>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "temp_dir_test.hpp"
#include "hilum/app/catalog.hpp"
#include "hilum/app/export.hpp"
#include "hilum/app/import.hpp"
#include "hilum/app/hash.hpp"
#include "hilum/app/png.hpp"
#include "hilum/dicom/reader.hpp"
#include "hilum/testdata/phantom.hpp"

namespace fs = std::filesystem;
namespace app = hilum::app;
namespace dcm = hilum::dicom;
namespace td = hilum::testdata;

namespace {

// ---- Helpers: files, CSV and JSON reading. ----

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string first_line(const std::string& text) { return text.substr(0, text.find("\r\n")); }

// RFC 4180 records (CRLF or LF line ends, quoted fields with doubled quotes).
std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false;
  bool any = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field.push_back('"');
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field.push_back(c);
      }
      continue;
    }
    if (c == '"') {
      quoted = true;
      any = true;
    } else if (c == ',') {
      row.push_back(field);
      field.clear();
      any = true;
    } else if (c == '\r' || c == '\n') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      row.push_back(field);
      rows.push_back(row);
      row.clear();
      field.clear();
      any = false;
    } else {
      field.push_back(c);
      any = true;
    }
  }
  if (any) {
    row.push_back(field);
    rows.push_back(row);
  }
  return rows;
}

// A strict JSON syntax check (RFC 8259) of a whole document.
class JsonChecker {
 public:
  explicit JsonChecker(const std::string& s) : s_(s) {}
  bool valid() {
    ws();
    if (!value()) return false;
    ws();
    return i_ == s_.size();
  }

 private:
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }
  bool lit(const char* w) {
    const std::string word(w);
    if (s_.compare(i_, word.size(), word) != 0) return false;
    i_ += word.size();
    return true;
  }
  bool string() {
    if (i_ >= s_.size() || s_[i_] != '"') return false;
    for (++i_; i_ < s_.size(); ++i_) {
      const auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        ++i_;
        if (i_ >= s_.size() || std::string("\"\\/bfnrtu").find(s_[i_]) == std::string::npos) return false;
      }
    }
    return false;
  }
  bool number() {
    const std::size_t start = i_;
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    while (i_ < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[i_])) || s_[i_] == '.' || s_[i_] == 'e' ||
                              s_[i_] == 'E' || s_[i_] == '+' || s_[i_] == '-'))
      ++i_;
    return i_ > start;
  }
  bool value() {
    ws();
    if (i_ >= s_.size()) return false;
    const char c = s_[i_];
    if (c == '{') {
      ++i_;
      ws();
      if (i_ < s_.size() && s_[i_] == '}') return ++i_, true;
      for (;;) {
        ws();
        if (!string()) return false;
        ws();
        if (i_ >= s_.size() || s_[i_] != ':') return false;
        ++i_;
        if (!value()) return false;
        ws();
        if (i_ < s_.size() && s_[i_] == ',') {
          ++i_;
          continue;
        }
        if (i_ < s_.size() && s_[i_] == '}') return ++i_, true;
        return false;
      }
    }
    if (c == '[') {
      ++i_;
      ws();
      if (i_ < s_.size() && s_[i_] == ']') return ++i_, true;
      for (;;) {
        if (!value()) return false;
        ws();
        if (i_ < s_.size() && s_[i_] == ',') {
          ++i_;
          continue;
        }
        if (i_ < s_.size() && s_[i_] == ']') return ++i_, true;
        return false;
      }
    }
    if (c == '"') return string();
    if (c == 't') return lit("true");
    if (c == 'f') return lit("false");
    if (c == 'n') return lit("null");
    return number();
  }
  const std::string& s_;
  std::size_t i_ = 0;
};

// The JSON records of labels.json, one per line (the exporter writes one image per line).
std::vector<std::string> json_records(const std::string& json) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < json.size()) {
    const auto end = json.find('\n', start);
    std::string line = json.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (line.rfind("{\"image_index\"", 0) == 0) out.push_back(line);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

// Every regular file below `root`, recursively.
std::vector<fs::path> all_files(const fs::path& root) {
  std::vector<fs::path> out;
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file()) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// ---- The catalog, filled from DICOM files. ----

struct ImageSpec {
  std::string name;  // file name
  std::string folder = "dicom";
  std::string patient_name = "Phantom^Chest";
  std::string patient_id = "PHANTOM-001";
  std::string study_uid;
  std::string series_uid;
  std::string sop_uid;
  std::string accession = "ACC-0001";
  std::string study_date = "20260101";
  std::string sex = "M";      // overrides the phantom's "O" in the catalog record
  std::string age = "045Y";
  double slope = 1.0;
  double intercept = 0.0;
  bool burned_in = false;     // Burned In Annotation YES
  std::uint32_t seed = 1;
};

class ExportTest : public hilum::test::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    auto c = app::Catalog::open(dir_ / "hilum.db");
    ASSERT_TRUE(c.ok()) << c.error().message;
    catalog_.emplace(std::move(c.value()));
  }
  void TearDown() override {
    catalog_.reset();
    TempDirTest::TearDown();
  }

  // Writes the DICOM file, reads it back and puts it into the catalog. Returns the file.
  fs::path add_image(const ImageSpec& s) {
    td::DicomSpec d;
    d.encoding = td::Encoding::ExplicitLittle;
    d.patient_name = s.patient_name;
    d.patient_id = s.patient_id;
    d.study_instance_uid = s.study_uid;
    d.series_instance_uid = s.series_uid;
    d.sop_instance_uid = s.sop_uid;
    d.accession_number = s.accession;
    d.acquisition_date = s.study_date;
    d.rescale_slope = s.slope;
    d.rescale_intercept = s.intercept;
    d.phantom.seed = s.seed;
    const fs::path file = dir_ / s.folder / s.name;
    fs::create_directories(file.parent_path());
    (void)td::write_dicom(file, d);
    if (s.burned_in) {
      // (0028,0301) CS "NO" -> "YES " in the explicit little endian file (no group lengths to fix).
      std::string bytes = read_file(file);
      const std::string from("\x28\x00\x01\x03" "CS\x02\x00" "NO", 10);
      const std::string to("\x28\x00\x01\x03" "CS\x04\x00" "YES ", 12);
      const auto at = bytes.find(from);
      EXPECT_NE(at, std::string::npos);
      if (at != std::string::npos) bytes.replace(at, from.size(), to);
      std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
    }
    auto r = dcm::read_radiograph(file);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
    if (!r.ok()) return file;
    if (s.burned_in) {
      EXPECT_EQ(r->meta.burned_in_annotation, "YES");
    }
    app::InstanceRecord rec = record_of(r.value(), file);
    rec.patient_sex = s.sex;
    rec.patient_age = s.age;
    auto put = catalog_->put_instances({rec});
    EXPECT_TRUE(put.ok()) << (put.ok() ? "" : put.error().message);
    return file;
  }

  // The import workflow's own mapping, plus the file facts import would add.
  static app::InstanceRecord record_of(const dcm::Radiograph& r, const fs::path& file) {
    app::InstanceRecord rec = app::instance_record(r, fs::absolute(file));
    rec.file_size = static_cast<std::int64_t>(fs::file_size(file));
    rec.file_mtime = 1700000000;
    rec.content_hash = app::sha256_file(file).value();
    return rec;
  }

  // A catalog record without a file (for tests that export no pixels).
  void add_record(const std::string& patient_id, const std::string& study_uid, const std::string& sop_uid,
                  const std::string& study_date) {
    app::InstanceRecord rec;
    rec.sop_instance_uid = sop_uid;
    rec.sop_class_uid = "1.2.840.10008.5.1.4.1.1.1.1";
    rec.path = (dir_ / "nowhere" / (sop_uid + ".dcm")).string();
    rec.content_hash = "hash-" + sop_uid;
    rec.patient_id = patient_id;
    rec.patient_name = "Name^" + patient_id;
    rec.patient_sex = "F";
    rec.patient_age = "030Y";
    rec.study_instance_uid = study_uid;
    rec.study_date = study_date;
    rec.series_instance_uid = study_uid + ".1";
    rec.modality = "DX";
    rec.rows = 100;
    rec.columns = 80;
    rec.view_position = "PA";
    auto put = catalog_->put_instances({rec});
    ASSERT_TRUE(put.ok()) << put.error().message;
  }

  void label(const std::string& image, const std::string& finding, app::LabelValue value,
             std::optional<app::Region> region = std::nullopt, const std::string& comment = {}) {
    app::LabelInput in;
    in.image = image;
    in.finding = finding;
    in.value = value;
    in.region = std::move(region);
    in.author = "Dr. Reader";
    in.comment = comment;
    in.model_version = "vit-base-1";
    in.model_probability = 0.75;
    auto ids = catalog_->add_labels({in});
    ASSERT_TRUE(ids.ok()) << ids.error().message;
  }

  app::ExportReport run(const fs::path& out, app::ExportFormat format, bool deidentify, bool images) {
    app::ExportOptions o;
    o.out_dir = out;
    o.format = format;
    o.deidentify = deidentify;
    o.images = images;
    auto r = app::export_labels(*catalog_, o);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
    return r.ok() ? r.value() : app::ExportReport{};
  }

  static app::Region rect(double x, double y, double w, double h) {
    app::Region r;
    r.shape = app::Region::Shape::Rectangle;
    r.x = x;
    r.y = y;
    r.w = w;
    r.h = h;
    return r;
  }

  std::optional<app::Catalog> catalog_;
};

// Data_Entry rows by Image Index.
std::map<std::string, std::vector<std::string>> rows_by_index(const fs::path& csv) {
  std::map<std::string, std::vector<std::string>> out;
  const auto rows = parse_csv(read_file(csv));
  for (std::size_t i = 1; i < rows.size(); ++i) out[rows[i][0]] = rows[i];
  return out;
}

// ---- Layout. ----

TEST_F(ExportTest, CsvFollowsTheChestXray14Layout) {
  // Patient A: two studies (2024, then 2025); patient B: one study; plus an unlabelled image and an
  // image whose only label was cleared.
  add_record("PAT-A", "1.2.3.100", "1.2.3.100.1.1", "20250301");
  add_record("PAT-A", "1.2.3.200", "1.2.3.200.1.1", "20240105");
  add_record("PAT-B", "1.2.3.300", "1.2.3.300.1.1", "20230707");
  add_record("PAT-B", "1.2.3.300", "1.2.3.300.1.2", "20230707");
  add_record("PAT-C", "1.2.3.400", "1.2.3.400.1.1", "20230707");  // never labelled
  add_record("PAT-D", "1.2.3.500", "1.2.3.500.1.1", "20230707");  // label cleared
  label("1.2.3.100.1.1", "Effusion", app::LabelValue::Present, rect(10, 20, 30, 40));
  label("1.2.3.100.1.1", "Cardiomegaly", app::LabelValue::Present);
  label("1.2.3.100.1.1", "Atelectasis", app::LabelValue::Uncertain, rect(1, 2, 3, 4));  // not a box: uncertain
  label("1.2.3.200.1.1", "No Finding", app::LabelValue::Present);
  app::Region polygon;
  polygon.shape = app::Region::Shape::Polygon;
  polygon.points = {{10, 10}, {50, 12}, {30, 60}};
  label("1.2.3.300.1.1", "Pneumothorax", app::LabelValue::Present, polygon);
  label("1.2.3.300.1.1", "Effusion", app::LabelValue::Absent);
  label("1.2.3.300.1.2", "Effusion", app::LabelValue::Absent);  // only one finding assessed: not "No Finding"
  label("1.2.3.500.1.1", "Effusion", app::LabelValue::Present);
  label("1.2.3.500.1.1", "Effusion", app::LabelValue::Cleared);

  const fs::path out = dir_ / "out";
  const app::ExportReport report = run(out, app::ExportFormat::Csv, false, false);
  EXPECT_EQ(report.images, 4u);
  EXPECT_EQ(report.patients, 2u);
  EXPECT_EQ(report.bounding_boxes, 2u);
  EXPECT_EQ(report.labels, 7u);
  EXPECT_EQ(report.train.images + report.validation.images + report.test.images, 4u);

  const std::string entries = read_file(out / "Data_Entry_2017.csv");
  EXPECT_EQ(first_line(entries),
            "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
            "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],Split");
  EXPECT_NE(entries.find("\r\n"), std::string::npos) << "RFC 4180 line ends";
  const auto rows = parse_csv(entries);
  ASSERT_EQ(rows.size(), 5u);
  for (const auto& row : rows) EXPECT_EQ(row.size(), 12u);
  auto by = rows_by_index(out / "Data_Entry_2017.csv");
  ASSERT_EQ(by.count("1.2.3.100.1.1.png"), 1u);
  const auto& a2 = by["1.2.3.100.1.1.png"];
  EXPECT_EQ(a2[1], "Cardiomegaly|Effusion");
  EXPECT_EQ(a2[2], "1") << "the 2025 study is patient A's second";
  EXPECT_EQ(a2[3], "PAT-A");
  EXPECT_EQ(a2[4], "30");
  EXPECT_EQ(a2[5], "F");
  EXPECT_EQ(a2[6], "PA");
  EXPECT_EQ(a2[7], "80");   // width = columns
  EXPECT_EQ(a2[8], "100");  // height = rows
  EXPECT_EQ(a2[9], "");     // no pixel spacing in these records
  const auto& a1 = by["1.2.3.200.1.1.png"];
  EXPECT_EQ(a1[1], "No Finding");
  EXPECT_EQ(a1[2], "0");
  EXPECT_EQ(a1[11], a2[11]) << "one patient, one split";
  EXPECT_EQ(by["1.2.3.300.1.1.png"][1], "Pneumothorax");
  EXPECT_EQ(by["1.2.3.300.1.1.png"][2], "0");
  EXPECT_EQ(by["1.2.3.300.1.2.png"][1], "") << "Effusion absent says nothing of the other findings";
  EXPECT_EQ(by["1.2.3.300.1.2.png"][2], "0") << "same study, same follow-up number";
  EXPECT_EQ(by.count("1.2.3.400.1.1.png"), 0u) << "unlabelled image exported";
  EXPECT_EQ(by.count("1.2.3.500.1.1.png"), 0u) << "an image whose label was cleared has no current label";
  for (const auto& [index, row] : by) EXPECT_TRUE(row[11] == "train" || row[11] == "validation" || row[11] == "test");

  const std::string boxes = read_file(out / "BBox_List_2017.csv");
  EXPECT_EQ(first_line(boxes), "Image Index,Finding Label,Bbox [x,y,w,h]");
  const auto box_rows = parse_csv(boxes);
  ASSERT_EQ(box_rows.size(), 3u) << boxes;
  const std::vector<std::string> effusion = {"1.2.3.100.1.1.png", "Effusion", "10", "20", "30", "40"};
  const std::vector<std::string> polygon_box = {"1.2.3.300.1.1.png", "Pneumothorax", "10", "10", "40", "50"};
  EXPECT_TRUE(std::find(box_rows.begin(), box_rows.end(), effusion) != box_rows.end()) << boxes;
  EXPECT_TRUE(std::find(box_rows.begin(), box_rows.end(), polygon_box) != box_rows.end()) << boxes;

  // Files named in the report, no temporary files, no JSON for a CSV export.
  EXPECT_EQ(report.files, (std::vector<std::string>{"Data_Entry_2017.csv", "BBox_List_2017.csv"}));
  EXPECT_EQ(all_files(out).size(), 3u);  // and the manifest
  EXPECT_EQ(read_file(out / ".hilum-export-manifest"),
            "hilum-export-manifest 1\nBBox_List_2017.csv\nData_Entry_2017.csv\n");
}

TEST_F(ExportTest, CsvFieldsAreQuotedAsRfc4180Says) {
  EXPECT_EQ(app::csv_field("plain"), "plain");
  EXPECT_EQ(app::csv_field("a,b"), "\"a,b\"");
  EXPECT_EQ(app::csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(app::csv_field("two\nlines"), "\"two\nlines\"");
  EXPECT_EQ(app::csv_field(""), "");

  add_record("ID,with \"quotes\"", "1.2.3.9", "1.2.3.9.1", "20240101");
  label("1.2.3.9.1", "Effusion", app::LabelValue::Present);
  const fs::path out = dir_ / "out";
  run(out, app::ExportFormat::Csv, false, false);
  const std::string entries = read_file(out / "Data_Entry_2017.csv");
  EXPECT_NE(entries.find(",\"ID,with \"\"quotes\"\"\","), std::string::npos) << entries;
  const auto rows = parse_csv(entries);
  ASSERT_EQ(rows.size(), 2u);
  ASSERT_EQ(rows[1].size(), 12u);
  EXPECT_EQ(rows[1][3], "ID,with \"quotes\"");
}

// Issue 16, defect 8: a text cell a spreadsheet would run as a formula is neutralised (OWASP: a
// single quote before it, the field quoted); numbers Hilum wrote stay numbers.
TEST_F(ExportTest, CsvCellsThatLookLikeFormulasAreNeutralised) {
  EXPECT_EQ(app::csv_field("=cmd|' /C calc'!A0"), "\"'=cmd|' /C calc'!A0\"");
  EXPECT_EQ(app::csv_field("+SUM(A1:A9)"), "\"'+SUM(A1:A9)\"");
  EXPECT_EQ(app::csv_field("-2+3"), "\"'-2+3\"");
  EXPECT_EQ(app::csv_field("@HYPERLINK(\"x\")"), "\"'@HYPERLINK(\"\"x\"\")\"");
  EXPECT_EQ(app::csv_field("\t=1"), "\"'\t=1\"");
  EXPECT_EQ(app::csv_field("\r=1"), "\"'\r=1\"");
  EXPECT_EQ(app::csv_field("a=b+c"), "a=b+c");  // only the first character starts a formula
  EXPECT_EQ(app::csv_line({"-x", app::CsvCell::number("-0.5"), "y"}), "\"'-x\",-0.5,y\r\n");

  // A Patient ID planted in a DICOM file reaches a non-de-identified export as text, not as a formula.
  add_record("=cmd|' /C calc'!A0", "1.2.3.8", "1.2.3.8.1", "20240101");
  add_record("@SUM(1+1)*cmd|' /C calc'!A0", "1.2.3.7", "1.2.3.7.1", "20240101");
  label("1.2.3.8.1", "Effusion", app::LabelValue::Present, rect(10, 20, 30, 40));
  label("1.2.3.7.1", "Mass", app::LabelValue::Present);
  const fs::path out = dir_ / "out";
  run(out, app::ExportFormat::Csv, false, false);
  const std::string entries = read_file(out / "Data_Entry_2017.csv");
  EXPECT_NE(entries.find(",\"'=cmd|' /C calc'!A0\","), std::string::npos) << entries;
  for (const auto& file : {"Data_Entry_2017.csv", "BBox_List_2017.csv"}) {
    for (const auto& row : parse_csv(read_file(out / file))) {
      for (const auto& field : row) {
        EXPECT_TRUE(field.empty() || std::string("=+-@\t\r").find(field[0]) == std::string::npos) << file << ": " << field;
      }
    }
  }
  const auto by = rows_by_index(out / "Data_Entry_2017.csv");
  ASSERT_EQ(by.count("1.2.3.8.1.png"), 1u);
  EXPECT_EQ(by.at("1.2.3.8.1.png")[3], "'=cmd|' /C calc'!A0");
  EXPECT_EQ(by.at("1.2.3.7.1.png")[3], "'@SUM(1+1)*cmd|' /C calc'!A0");
}

// Issue 16, defect 12: the CSV and JSON exports write numbers the same way under a decimal-comma
// locale (the GUI runs under the user's locale), and they read back as the same numbers.
TEST_F(ExportTest, NumbersDoNotDependOnTheLocale) {
  const std::string previous = std::setlocale(LC_ALL, nullptr);
  if (std::setlocale(LC_ALL, "de_DE.UTF-8") == nullptr) GTEST_SKIP() << "the de_DE.UTF-8 locale is not installed (scripts/setup generates it)";
  add_record("P-LOCALE", "1.2.3.6", "1.2.3.6.1", "20240101");
  label("1.2.3.6.1", "Effusion", app::LabelValue::Present, rect(10.5, 20.25, 30.5, 40.125));
  run(dir_ / "csv", app::ExportFormat::Csv, false, false);
  run(dir_ / "json", app::ExportFormat::Json, false, false);
  std::setlocale(LC_ALL, previous.c_str());

  const auto boxes = parse_csv(read_file(dir_ / "csv" / "BBox_List_2017.csv"));
  ASSERT_EQ(boxes.size(), 2u);
  EXPECT_EQ(boxes[1], (std::vector<std::string>{"1.2.3.6.1.png", "Effusion", "10.5", "20.25", "30.5", "40.125"}));
  const std::string json = read_file(dir_ / "json" / "labels.json");
  EXPECT_TRUE(JsonChecker(json).valid()) << json;
  EXPECT_NE(json.find("10.5"), std::string::npos) << json;
  EXPECT_NE(json.find("0.75"), std::string::npos) << json;  // the model probability
  EXPECT_EQ(json.find("10,5"), std::string::npos) << json;
  EXPECT_EQ(json.find("0,75"), std::string::npos) << json;
}

TEST_F(ExportTest, JsonHoldsEveryCurrentLabelWithItsProvenance) {
  add_record("PAT-J", "1.2.5.1", "1.2.5.1.1", "20240101");
  add_record("PAT-J", "1.2.5.1", "1.2.5.1.2", "20240101");
  label("1.2.5.1.1", "Effusion", app::LabelValue::Present, rect(5, 6, 7, 8), "left \"basal\" blunting");
  label("1.2.5.1.1", "Nodule", app::LabelValue::Uncertain);
  label("1.2.5.1.1", "Mass", app::LabelValue::Absent);
  label("1.2.5.1.2", "Effusion", app::LabelValue::Absent);
  label("1.2.5.1.2", "Effusion", app::LabelValue::Present);  // the later event is the current one

  const fs::path out = dir_ / "out";
  const auto report = run(out, app::ExportFormat::Json, false, false);
  EXPECT_EQ(report.images, 2u);
  EXPECT_EQ(report.labels, 4u);
  const std::string json = read_file(out / "labels.json");
  EXPECT_TRUE(JsonChecker(json).valid()) << json;
  EXPECT_NE(json.find("\"deidentified\":false"), std::string::npos);
  EXPECT_NE(json.find("\"findings\":["), std::string::npos);
  const auto records = json_records(json);
  ASSERT_EQ(records.size(), 2u) << json;
  const std::string& first = records[0];
  EXPECT_NE(first.find("\"image_index\":\"1.2.5.1.1.png\""), std::string::npos) << first;
  EXPECT_NE(first.find("\"sop_instance_uid\":\"1.2.5.1.1\""), std::string::npos);
  EXPECT_NE(first.find("\"patient_id\":\"PAT-J\""), std::string::npos);
  EXPECT_NE(first.find("\"patient_age_years\":30"), std::string::npos);
  EXPECT_NE(first.find("\"patient_sex\":\"F\""), std::string::npos);
  EXPECT_NE(first.find("\"study_date\":\"20240101\""), std::string::npos);
  EXPECT_NE(first.find("\"path\":"), std::string::npos) << "a non-de-identified export names the file";
  EXPECT_NE(first.find("\"split\":\""), std::string::npos);
  EXPECT_NE(first.find("\"finding\":\"Effusion\",\"value\":\"present\",\"author\":\"Dr. Reader\""), std::string::npos) << first;
  EXPECT_NE(first.find("\"finding\":\"Nodule\",\"value\":\"uncertain\""), std::string::npos);
  EXPECT_NE(first.find("\"finding\":\"Mass\",\"value\":\"absent\""), std::string::npos);
  EXPECT_NE(first.find("\"model_version\":\"vit-base-1\""), std::string::npos);
  EXPECT_NE(first.find("\"model_probability\":0.75"), std::string::npos);
  EXPECT_NE(first.find("\"comment\":\"left \\\"basal\\\" blunting\""), std::string::npos) << first;
  EXPECT_NE(first.find("\"bounding_box\":{\"x\":5,\"y\":6,\"w\":7,\"h\":8}"), std::string::npos) << first;
  EXPECT_NE(first.find("\"created_at\":\"20"), std::string::npos);
  EXPECT_NE(records[1].find("\"finding\":\"Effusion\",\"value\":\"present\""), std::string::npos) << records[1];
  EXPECT_EQ(records[1].find("\"value\":\"absent\""), std::string::npos) << "a superseded label was exported";
  EXPECT_EQ(all_files(out).size(), 2u);  // labels.json and the manifest
}

// Issue 15: "Pneumonia absent" alone was exported as "No Finding", claiming the 13 other findings
// were assessed absent (a retraining pipeline would learn false negatives from it).
TEST_F(ExportTest, NoFindingOnlyWhenEveryFindingWasAssessedAbsent) {
  add_record("PAT-N", "1.2.9.1", "1.2.9.1.1", "20240101");
  add_record("PAT-N", "1.2.9.1", "1.2.9.1.2", "20240101");
  add_record("PAT-N", "1.2.9.1", "1.2.9.1.3", "20240101");
  label("1.2.9.1.1", "Pneumonia", app::LabelValue::Absent);
  auto vocabulary = catalog_->findings();
  ASSERT_TRUE(vocabulary.ok());
  std::vector<app::LabelInput> all_absent;
  for (const auto& f : vocabulary.value()) {
    if (f.name == "No Finding") continue;
    app::LabelInput in;
    in.image = "1.2.9.1.2";
    in.finding = f.name;
    in.value = app::LabelValue::Absent;
    in.author = "Dr. Reader";
    all_absent.push_back(in);
  }
  ASSERT_TRUE(catalog_->add_labels(all_absent).ok());
  label("1.2.9.1.3", "No Finding", app::LabelValue::Present);

  const fs::path csv = dir_ / "csv";
  run(csv, app::ExportFormat::Csv, false, false);
  auto by = rows_by_index(csv / "Data_Entry_2017.csv");
  EXPECT_EQ(by["1.2.9.1.1.png"][1], "") << "only Pneumonia was assessed";
  EXPECT_EQ(by["1.2.9.1.2.png"][1], "No Finding") << "every finding assessed absent";
  EXPECT_EQ(by["1.2.9.1.3.png"][1], "No Finding");

  const fs::path js = dir_ / "json";
  const auto report = run(js, app::ExportFormat::Json, false, false);
  EXPECT_EQ(report.labels_used, "consensus: adjudicated > unanimous > majority (at least 1 reader)");
  const auto doc = nlohmann::json::parse(read_file(js / "labels.json"));
  EXPECT_EQ(doc["labels"], report.labels_used);
  for (const auto& image : doc["images"]) {
    if (image["sop_instance_uid"] != "1.2.9.1.1") continue;
    EXPECT_EQ(image["assessment"]["Pneumonia"]["status"], "absent");
    EXPECT_EQ(image["assessment"]["Pneumonia"]["basis"], "unanimous");
    EXPECT_EQ(image["assessment"]["Pneumonia"]["readers"]["Dr. Reader"], "absent");
    EXPECT_EQ(image["assessment"]["Effusion"]["status"], "not_assessed");
    EXPECT_TRUE(image["assessment"]["Effusion"]["readers"].empty());
  }
}

// ---- Splits and follow-ups. ----

TEST_F(ExportTest, SplitIsByPatientAndStableAcrossExports) {
  for (int p = 0; p < 100; ++p) {
    const std::string pid = "SPLIT-" + std::to_string(p);
    for (int s = 0; s < 2; ++s) {
      const std::string study = "1.2.6." + std::to_string(p) + "." + std::to_string(s);
      add_record(pid, study, study + ".1", s == 0 ? "20200101" : "20210101");
      label(study + ".1", "Effusion", s == 0 ? app::LabelValue::Present : app::LabelValue::Absent);
    }
  }
  const auto first = run(dir_ / "one", app::ExportFormat::Csv, false, false);
  // New labels in between must not move anyone.
  label("1.2.6.0.0.1", "Nodule", app::LabelValue::Present);
  const auto second = run(dir_ / "two", app::ExportFormat::Csv, false, false);
  auto a = rows_by_index(dir_ / "one" / "Data_Entry_2017.csv");
  auto b = rows_by_index(dir_ / "two" / "Data_Entry_2017.csv");
  ASSERT_EQ(a.size(), 200u);
  ASSERT_EQ(b.size(), 200u);
  std::map<std::string, std::set<std::string>> splits_of_patient;
  std::map<std::string, int> images_in;
  for (const auto& [index, row] : a) {
    ASSERT_EQ(b.count(index), 1u);
    EXPECT_EQ(b[index][11], row[11]) << index << " changed split between exports";
    splits_of_patient[row[3]].insert(row[11]);
    ++images_in[row[11]];
    EXPECT_EQ(row[2], index.find(".0.1.png") != std::string::npos ? "0" : "1") << index;
  }
  for (const auto& [patient, splits] : splits_of_patient) EXPECT_EQ(splits.size(), 1u) << patient << " is in two splits";
  // 80/10/10 of 100 patients: far outside these bounds only with a broken split function.
  EXPECT_GE(images_in["train"], 2 * 60);
  EXPECT_LE(images_in["train"], 2 * 95);
  EXPECT_GE(images_in["validation"] + images_in["test"], 2 * 5);
  EXPECT_EQ(first.train.patients + first.validation.patients + first.test.patients, 100u);
  EXPECT_EQ(first.train.patients, second.train.patients);

  // The function itself: deterministic, keyed by the secret, 80/10/10.
  std::map<app::Split, int> n;
  for (int k = 0; k < 20000; ++k) ++n[app::patient_split("secret-1", "patient-" + std::to_string(k))];
  EXPECT_NEAR(n[app::Split::Train], 16000, 400);
  EXPECT_NEAR(n[app::Split::Validation], 2000, 250);
  EXPECT_NEAR(n[app::Split::Test], 2000, 250);
  int moved = 0;
  for (int k = 0; k < 1000; ++k) {
    const std::string key = "patient-" + std::to_string(k);
    EXPECT_EQ(app::patient_split("secret-1", key), app::patient_split("secret-1", key));
    if (app::patient_split("secret-1", key) != app::patient_split("secret-2", key)) ++moved;
  }
  EXPECT_GT(moved, 100) << "the split does not depend on the catalog secret";
  const int shift = app::patient_date_shift("secret-1", "patient-1");
  EXPECT_EQ(shift, app::patient_date_shift("secret-1", "patient-1"));
  EXPECT_LE(shift, -365);
  EXPECT_GE(shift, -3652);
}

TEST_F(ExportTest, AgeInYearsFromDicomAgeOrDates) {
  EXPECT_EQ(app::age_in_years("045Y"), 45);
  EXPECT_EQ(app::age_in_years("006M"), 0);
  EXPECT_EQ(app::age_in_years("030M"), 2);
  EXPECT_EQ(app::age_in_years("104W"), 1);
  EXPECT_EQ(app::age_in_years("400D"), 1);
  EXPECT_EQ(app::age_in_years("62"), 62);  // no unit, as in the RSNA pneumonia files: years
  EXPECT_FALSE(app::age_in_years("1234").has_value());
  EXPECT_EQ(app::age_in_years("", "19700615", "20260101"), 55);
  EXPECT_EQ(app::age_in_years("", "19700101", "20260101"), 56);
  EXPECT_FALSE(app::age_in_years("").has_value());
  EXPECT_FALSE(app::age_in_years("abc").has_value());
  EXPECT_FALSE(app::age_in_years("", "", "20260101").has_value());
  EXPECT_EQ(app::patient_key("", "Doe^J", "1.2"), "name:Doe^J");
  EXPECT_EQ(app::patient_key("ID1", "Doe^J", "1.2"), "ID1");
  EXPECT_EQ(app::patient_key("", "", "1.2"), "study:1.2");
}

// ---- Pixels. ----

TEST_F(ExportTest, ImagesAre16BitPngsOfTheModalityValues) {
  ImageSpec plain;
  plain.name = "plain.dcm";
  plain.sop_uid = "1.2.7.1.1";
  add_image(plain);
  ImageSpec rescaled;
  rescaled.name = "rescaled.dcm";
  rescaled.sop_uid = "1.2.7.1.2";
  rescaled.slope = 2.0;
  rescaled.intercept = -1024.0;
  add_image(rescaled);
  label("1.2.7.1.1", "Effusion", app::LabelValue::Present);
  label("1.2.7.1.2", "Effusion", app::LabelValue::Absent);

  app::ExportOptions o;
  o.out_dir = dir_ / "out";
  o.format = app::ExportFormat::Csv;
  o.images = true;
  std::vector<std::size_t> done;
  auto report = app::export_labels(*catalog_, o, [&](const app::ExportProgress& p) {
    done.push_back(p.done);
    EXPECT_EQ(p.total, 2u);
  });
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_EQ(done, (std::vector<std::size_t>{1, 2}));
  EXPECT_EQ(report->pngs, 2u);
  EXPECT_TRUE(report->failed.empty());

  const auto scaling = parse_csv(read_file(dir_ / "out" / "images" / "pixel_scaling.csv"));
  ASSERT_EQ(scaling.size(), 3u);
  EXPECT_EQ(scaling[0], (std::vector<std::string>{"Image Index", "Offset", "Slope", "Photometric Interpretation"}));
  for (std::size_t i = 1; i < scaling.size(); ++i) {
    const std::string& index = scaling[i][0];
    const double offset = std::stod(scaling[i][1]);
    const double slope = std::stod(scaling[i][2]);
    const fs::path dicom = dir_ / "dicom" / (index == "1.2.7.1.1.png" ? "plain.dcm" : "rescaled.dcm");
    auto r = dcm::read_radiograph(dicom);
    ASSERT_TRUE(r.ok());
    const auto read = app::read_png_gray(dir_ / "out" / "images" / index);
    ASSERT_TRUE(read.ok()) << read.error().message;
    const app::GrayImage& png = read.value();
    EXPECT_EQ(png.bit_depth, 16);
    ASSERT_EQ(png.width, r->columns);
    ASSERT_EQ(png.height, r->rows);
    ASSERT_EQ(png.pixels.size(), r->modality.size());
    double worst = 0.0;
    for (std::size_t k = 0; k < png.pixels.size(); ++k)
      worst = std::max(worst, std::fabs(png.pixels[k] * slope + offset - static_cast<double>(r->modality[k])));
    EXPECT_LE(worst, 1e-6) << index << ": the PNG does not hold the modality values exactly";
    EXPECT_EQ(scaling[i][3], "MONOCHROME2");
    if (index == "1.2.7.1.2.png") {
      EXPECT_EQ(slope, 2.0);
      EXPECT_LT(offset, 0.0);  // modality values go below zero: shifted
    } else {
      EXPECT_EQ(slope, 1.0);
      EXPECT_EQ(offset, 0.0);
    }
  }
}

// ---- Privacy. ----

struct Person {
  std::string name;
  std::string id;
  std::string accession;
  std::string study_uid;
  std::string study_date;
};

TEST_F(ExportTest, DeidentifiedExportHoldsNoIdentifyingByte) {
  // Three patients with distinctive identifiers; the files live under a folder whose name is itself
  // identifying, as hospital folders often are. One image has burned-in annotation.
  const std::vector<Person> people = {
      {"Quirinius^Zebulon", "PID-QZB-40417", "ACCQZB001", "1.2.826.0.1.3680043.10.4041.1", "20250612"},
      {"Eulalia^Wigberta", "PID-EWG-53998", "ACCEWG002", "1.2.826.0.1.3680043.10.5399.1", "20240209"},
      {"Thorvald^Xanthe", "PID-TXA-61125", "ACCTXA003", "1.2.826.0.1.3680043.10.6112.1", "20231130"},
  };
  std::vector<std::string> secrets;  // every value that must not appear in the export
  std::vector<std::string> sops;
  int n = 0;
  for (const Person& p : people) {
    for (int k = 0; k < 2; ++k) {
      ImageSpec s;
      s.name = "img" + std::to_string(k) + ".dcm";
      s.folder = "Ward-Secret-7/" + p.id;
      s.patient_name = p.name;
      s.patient_id = p.id;
      s.accession = p.accession;
      s.study_uid = p.study_uid;
      s.series_uid = p.study_uid + ".2";
      s.sop_uid = p.study_uid + ".2." + std::to_string(k + 1);
      s.study_date = p.study_date;
      s.seed = static_cast<std::uint32_t>(++n);
      s.burned_in = (n == 6);
      const fs::path file = add_image(s);
      sops.push_back(s.sop_uid);
      label(s.sop_uid, "Effusion", app::LabelValue::Present, rect(10, 10, 20, 20),
            "patient " + p.name + " says hi");  // free text naming the patient
      secrets.push_back(fs::absolute(file).string());
      secrets.push_back(s.sop_uid);
    }
    secrets.push_back(p.id);
    secrets.push_back(p.name);
    secrets.push_back(p.name.substr(0, p.name.find('^')));
    secrets.push_back(p.name.substr(p.name.find('^') + 1));
    secrets.push_back(p.accession);
    secrets.push_back(p.study_uid);
    secrets.push_back(p.study_uid + ".2");
    secrets.push_back(p.study_date);
  }
  secrets.push_back("19700101");          // the phantoms' birth date
  secrets.push_back("Hilum Test Hospital");  // their institution
  secrets.push_back("Ward-Secret-7");
  secrets.push_back(dir_.string());

  const fs::path csv = dir_ / "export-csv";
  const fs::path json = dir_ / "export-json";
  const auto csv_report = run(csv, app::ExportFormat::Csv, true, true);
  const auto json_report = run(json, app::ExportFormat::Json, true, true);
  EXPECT_EQ(csv_report.images, 6u);
  EXPECT_EQ(csv_report.pngs, 5u);
  EXPECT_EQ(csv_report.dicoms, 0u);
  EXPECT_EQ(json_report.pngs, 5u);
  EXPECT_EQ(json_report.dicoms, 5u);
  ASSERT_EQ(json_report.skipped.size(), 1u);
  EXPECT_NE(json_report.skipped[0].reason.find("burned-in"), std::string::npos);
  EXPECT_TRUE(json_report.failed.empty());

  // THE scan: every byte of every exported file.
  std::size_t scanned = 0;
  for (const fs::path& root : {csv, json}) {
    for (const fs::path& file : all_files(root)) {
      const std::string bytes = read_file(file);
      ++scanned;
      for (const std::string& secret : secrets) {
        EXPECT_EQ(bytes.find(secret), std::string::npos)
            << "'" << secret << "' found in " << fs::relative(file, dir_).string();
      }
      // File names too.
      for (const std::string& secret : secrets)
        EXPECT_EQ(fs::relative(file, root).string().find(secret), std::string::npos) << file;
    }
  }
  // csv: 2 + 5 PNG + scaling; json: 1 + 5 PNG + 5 DCM + scaling; each with its manifest
  EXPECT_EQ(scanned, (2u + 6u + 1u) + (1u + 11u + 1u));

  // The pseudonymous records are consistent: same patient, same pseudonym; the Image Index names
  // the DICOM copy, whose SOP Instance UID it is.
  auto rows = rows_by_index(csv / "Data_Entry_2017.csv");
  ASSERT_EQ(rows.size(), 6u);
  std::set<std::string> patient_pseudonyms;
  for (const auto& [index, row] : rows) patient_pseudonyms.insert(row[3]);
  EXPECT_EQ(patient_pseudonyms.size(), 3u);
  EXPECT_EQ(rows.begin()->second[4], "45") << "age kept";
  EXPECT_EQ(rows.begin()->second[5], "M") << "sex kept";
  const std::string labels = read_file(json / "labels.json");
  EXPECT_TRUE(JsonChecker(labels).valid());
  EXPECT_NE(labels.find("\"deidentified\":true"), std::string::npos);
  EXPECT_EQ(labels.find("\"path\""), std::string::npos);
  EXPECT_EQ(labels.find("\"patient_name\""), std::string::npos);
  EXPECT_EQ(labels.find("\"comment\""), std::string::npos);
  EXPECT_NE(labels.find("\"author\":\"Dr. Reader\""), std::string::npos) << "clinicians' names are kept";
  for (const auto& [index, row] : rows) {
    EXPECT_NE(labels.find("\"image_index\":\"" + index + "\""), std::string::npos) << index;
    EXPECT_NE(labels.find("\"patient_id\":\"" + row[3] + "\""), std::string::npos);
    const std::string stem = index.substr(0, index.size() - 4);
    const fs::path copy = json / "images" / (stem + ".dcm");
    if (!fs::exists(copy)) continue;  // the burned-in image
    auto r = dcm::read_radiograph(copy);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->meta.sop_instance_uid, stem);
    EXPECT_EQ(r->meta.patient_id, row[3]);
    EXPECT_EQ(r->meta.patient_birth_date, "");
    EXPECT_EQ(r->meta.patient_age, "");  // the phantoms carry no age; nothing invented
    EXPECT_NE(read_file(copy).find(std::string("\x12\x00\x62\x00" "CS\x04\x00" "YES ", 12)), std::string::npos)
        << "Patient Identity Removed is not YES";
  }

  // Same patient -> same pseudonym in every export: a second export is byte for byte the same.
  const fs::path again = dir_ / "export-csv-again";
  run(again, app::ExportFormat::Csv, true, false);
  EXPECT_EQ(read_file(again / "Data_Entry_2017.csv"), read_file(csv / "Data_Entry_2017.csv"));
  EXPECT_EQ(read_file(again / "BBox_List_2017.csv"), read_file(csv / "BBox_List_2017.csv"));
  const fs::path json_again = dir_ / "export-json-again";
  run(json_again, app::ExportFormat::Json, true, false);
  const auto records = json_records(labels);
  const auto records_again = json_records(read_file(json_again / "labels.json"));
  ASSERT_EQ(records.size(), records_again.size());
  // The same records, apart from the first export's pixel fields.
  const auto without_pixels = [](const std::string& record) {
    const auto labels_at = record.find(",\"labels\"");
    std::size_t cut = labels_at;
    for (const char* key : {",\"png\"", ",\"pixels_not_exported\""}) cut = std::min(cut, record.find(key));
    return record.substr(0, cut) + record.substr(labels_at);
  };
  for (std::size_t i = 0; i < records.size(); ++i) EXPECT_EQ(without_pixels(records[i]), without_pixels(records_again[i]));
  // The mapping lives in the catalog: it answers with the pseudonyms the export used.
  auto mapped = catalog_->pseudonym("uid", sops[0]);
  ASSERT_TRUE(mapped.ok());
  EXPECT_EQ(rows.count(*mapped + ".png"), 1u);
}

TEST_F(ExportTest, BurnedInPixelsAreExportedWithoutDeidentification) {
  ImageSpec s;
  s.name = "burned.dcm";
  s.sop_uid = "1.2.8.1";
  s.burned_in = true;
  add_image(s);
  label("1.2.8.1", "Effusion", app::LabelValue::Present);
  const auto plain = run(dir_ / "plain", app::ExportFormat::Json, false, true);
  EXPECT_EQ(plain.pngs, 1u);
  EXPECT_TRUE(plain.skipped.empty());
  const auto deid = run(dir_ / "deid", app::ExportFormat::Json, true, true);
  EXPECT_EQ(deid.pngs, 0u);
  EXPECT_EQ(deid.dicoms, 0u);
  ASSERT_EQ(deid.skipped.size(), 1u);
  EXPECT_NE(read_file(dir_ / "deid" / "labels.json").find("\"pixels_not_exported\":\"burned-in"), std::string::npos);
}

TEST_F(ExportTest, UnreadableImageIsReportedAndTheRestExported) {
  ImageSpec good;
  good.name = "good.dcm";
  good.sop_uid = "1.2.9.1";
  add_image(good);
  ImageSpec gone;
  gone.name = "gone.dcm";
  gone.sop_uid = "1.2.9.2";
  const fs::path file = add_image(gone);
  fs::remove(file);
  label("1.2.9.1", "Effusion", app::LabelValue::Present);
  label("1.2.9.2", "Effusion", app::LabelValue::Present);
  const auto r = run(dir_ / "out", app::ExportFormat::Csv, false, true);
  EXPECT_EQ(r.pngs, 1u);
  ASSERT_EQ(r.failed.size(), 1u);
  EXPECT_EQ(r.failed[0].image, "1.2.9.2.png");
  EXPECT_EQ(parse_csv(read_file(dir_ / "out" / "Data_Entry_2017.csv")).size(), 3u) << "the labels are exported anyway";
}

// ---- The output folder. ----

TEST_F(ExportTest, OutputFolderMustBeEmptyOrAnEarlierExport) {
  ImageSpec s;
  s.name = "a.dcm";
  s.sop_uid = "1.2.10.1";
  add_image(s);
  label("1.2.10.1", "Effusion", app::LabelValue::Present);

  const fs::path foreign = dir_ / "foreign";
  fs::create_directories(foreign);
  std::ofstream(foreign / "notes.txt") << "mine";
  app::ExportOptions o;
  o.out_dir = foreign;
  auto refused = app::export_labels(*catalog_, o);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, app::ErrorKind::Invalid);
  EXPECT_NE(refused.error().message.find("notes.txt"), std::string::npos);
  EXPECT_EQ(read_file(foreign / "notes.txt"), "mine");
  EXPECT_EQ(all_files(foreign).size(), 1u);

  // An earlier export is replaced as a whole: no stale image or label file stays.
  const fs::path out = dir_ / "out";
  run(out, app::ExportFormat::Json, false, true);
  EXPECT_TRUE(fs::exists(out / "images" / "1.2.10.1.png"));
  EXPECT_TRUE(fs::exists(out / "labels.json"));
  std::ofstream(out / ".labels.json.tmp-123-456") << "left by a crash";
  const auto second = run(out, app::ExportFormat::Csv, true, false);
  EXPECT_FALSE(fs::exists(out / "images"));
  EXPECT_FALSE(fs::exists(out / "labels.json"));
  EXPECT_FALSE(fs::exists(out / ".labels.json.tmp-123-456"));
  EXPECT_EQ(all_files(out).size(), 3u);  // the two CSV files and the manifest
  EXPECT_EQ(second.removed.size(), 3u);  // labels.json, the PNG, pixel_scaling.csv

  // Not a folder at all.
  std::ofstream(dir_ / "file") << "x";
  o.out_dir = dir_ / "file";
  EXPECT_FALSE(app::export_labels(*catalog_, o).ok());
  o.out_dir.clear();
  EXPECT_FALSE(app::export_labels(*catalog_, o).ok());
}

// Issue 16, defect 1: export removed every *.png/*.dcm in images/, its own or not.
TEST_F(ExportTest, ExportNeverRemovesFilesItDidNotWrite) {
  ImageSpec s;
  s.name = "a.dcm";
  s.sop_uid = "1.2.12.1";
  const fs::path source = add_image(s);
  label("1.2.12.1", "Effusion", app::LabelValue::Present);

  // The user's own DICOM files in images/, and no Hilum file: refused, and left as they were.
  const fs::path mine = dir_ / "mine";
  fs::create_directories(mine / "images");
  fs::copy_file(source, mine / "images" / "scan-0001.dcm");
  std::ofstream(mine / "images" / "scan-0002.png") << "my picture";
  app::ExportOptions o;
  o.out_dir = mine;
  o.format = app::ExportFormat::Json;
  o.images = true;
  auto refused = app::export_labels(*catalog_, o);
  ASSERT_FALSE(refused.ok()) << "export used a folder holding the user's own images";
  EXPECT_EQ(refused.error().kind, app::ErrorKind::Invalid);
  EXPECT_NE(refused.error().message.find("images/scan-000"), std::string::npos) << refused.error().message;
  EXPECT_EQ(read_file(mine / "images" / "scan-0001.dcm"), read_file(source));
  EXPECT_EQ(read_file(mine / "images" / "scan-0002.png"), "my picture");
  EXPECT_EQ(all_files(mine).size(), 2u);

  // A file added to an earlier export's images/ is not the export's: refused, nothing removed.
  const fs::path out = dir_ / "out";
  run(out, app::ExportFormat::Json, false, true);
  const auto before = all_files(out);
  ASSERT_EQ(before.size(), 4u);  // labels.json, the PNG, pixel_scaling.csv, the manifest
  std::ofstream(out / "images" / "added.dcm") << "not Hilum's";
  o.out_dir = out;
  o.format = app::ExportFormat::Csv;
  o.images = false;
  refused = app::export_labels(*catalog_, o);
  ASSERT_FALSE(refused.ok()) << "export went on beside a file it did not write";
  EXPECT_NE(refused.error().message.find("images/added.dcm"), std::string::npos) << refused.error().message;
  EXPECT_EQ(read_file(out / "images" / "added.dcm"), "not Hilum's");
  EXPECT_EQ(all_files(out).size(), before.size() + 1);

  // Once the user moves it away, the earlier export is replaced as a whole.
  fs::remove(out / "images" / "added.dcm");
  const auto second = run(out, app::ExportFormat::Csv, false, false);
  EXPECT_EQ(second.removed.size(), 3u);
  EXPECT_FALSE(fs::exists(out / "images"));

  // A manifest that names a file outside what export writes is refused, and removes nothing.
  std::ofstream(out / ".hilum-export-manifest", std::ios::trunc) << "hilum-export-manifest 1\n../hilum.db\n";
  o.format = app::ExportFormat::Json;
  refused = app::export_labels(*catalog_, o);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, app::ErrorKind::Invalid);
  EXPECT_TRUE(fs::exists(dir_ / "hilum.db"));
  EXPECT_TRUE(fs::exists(out / "Data_Entry_2017.csv"));
}

TEST_F(ExportTest, InterruptedExportIsRecognisedAsOurs) {
  ImageSpec s;
  s.name = "a.dcm";
  s.sop_uid = "1.2.13.1";
  add_image(s);
  label("1.2.13.1", "Effusion", app::LabelValue::Present);
  const fs::path out = dir_ / "out";
  // Cancelled before the first image; what the run might have written is in its manifest.
  std::atomic<bool> cancel{true};
  app::ExportOptions o;
  o.out_dir = out;
  o.images = true;
  auto r = app::export_labels(*catalog_, o, {}, &cancel);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->interrupted);
  const std::string planned = read_file(out / ".hilum-export-manifest");
  EXPECT_NE(planned.find("images/1.2.13.1.png"), std::string::npos) << planned;
  // A half-written PNG of that run is recognised and cleared, and the export goes through.
  std::ofstream(out / "images" / ".1.2.13.1.png.tmp-1-2") << "half";
  const auto done = run(out, app::ExportFormat::Csv, false, true);
  EXPECT_EQ(done.pngs, 1u);
  EXPECT_FALSE(fs::exists(out / "images" / ".1.2.13.1.png.tmp-1-2"));
  EXPECT_EQ(read_file(out / ".hilum-export-manifest"),
            "hilum-export-manifest 1\nBBox_List_2017.csv\nData_Entry_2017.csv\nimages/1.2.13.1.png\nimages/pixel_scaling.csv\n");
}

TEST_F(ExportTest, CancelledExportWritesNoLabelFile) {
  add_record("PAT-X", "1.2.11.1", "1.2.11.1.1", "20240101");
  label("1.2.11.1.1", "Effusion", app::LabelValue::Present);
  std::atomic<bool> cancel{true};
  app::ExportOptions o;
  o.out_dir = dir_ / "out";
  auto r = app::export_labels(*catalog_, o, {}, &cancel);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->interrupted);
  EXPECT_FALSE(fs::exists(dir_ / "out" / "Data_Entry_2017.csv"));
}

}  // namespace
