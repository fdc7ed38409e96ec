// End-to-end: hilum-cli export on a catalog filled through the library (Catalog::put_instances from
// read_radiograph results, Catalog::add_labels), checking the files written and the exit statuses.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "temp_dir_test.hpp"
#include "cli_runner.hpp"
#include "hilum/app/catalog.hpp"
#include "hilum/app/hash.hpp"
#include "hilum/dicom/reader.hpp"
#include "hilum/testdata/phantom.hpp"

namespace fs = std::filesystem;
namespace app = hilum::app;
namespace dcm = hilum::dicom;
namespace td = hilum::testdata;

namespace {

using hilum::test::CliRun;
using hilum::test::lines;
using hilum::test::quote;
using hilum::test::run_cli;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::size_t count_files(const fs::path& root) {
  std::size_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file()) ++n;
  return n;
}

class CliExport : public hilum::test::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    fs::create_directories(dir_ / "files");
    db_ = dir_ / "catalog.db";
  }

  // Two patients, one labelled image each (one with a box), and one unlabelled image. The catalog
  // is closed again before the CLI runs.
  void populate(bool burned_in_second = false) {
    auto catalog = app::Catalog::open(db_);
    ASSERT_TRUE(catalog.ok()) << catalog.error().message;
    struct Spec {
      const char* file;
      const char* name;
      const char* id;
      const char* sop;
    };
    const Spec specs[] = {{"a.dcm", "Quillon^Ysolde", "PID-YSQ-1187", "1.2.826.0.1.3680043.10.777.1.1.1"},
                          {"b.dcm", "Brannock^Odalys", "PID-ODB-2290", "1.2.826.0.1.3680043.10.777.2.1.1"},
                          {"c.dcm", "Brannock^Odalys", "PID-ODB-2290", "1.2.826.0.1.3680043.10.777.2.1.2"}};
    std::vector<app::InstanceRecord> records;
    for (const Spec& s : specs) {
      td::DicomSpec d;
      d.patient_name = s.name;
      d.patient_id = s.id;
      d.sop_instance_uid = s.sop;
      d.accession_number = std::string("ACC-") + s.id;
      const fs::path file = dir_ / "files" / s.file;
      (void)td::write_dicom(file, d);
      if (burned_in_second && std::string(s.file) == "b.dcm") {
        std::string bytes = read_file(file);
        const std::string from("\x28\x00\x01\x03" "CS\x02\x00" "NO", 10);
        const auto at = bytes.find(from);
        ASSERT_NE(at, std::string::npos);
        bytes.replace(at, from.size(), std::string("\x28\x00\x01\x03" "CS\x04\x00" "YES ", 12));
        std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
      }
      auto r = dcm::read_radiograph(file);
      ASSERT_TRUE(r.ok()) << r.error().message;
      const dcm::Metadata& m = r->meta;
      app::InstanceRecord rec;
      rec.sop_instance_uid = m.sop_instance_uid;
      rec.sop_class_uid = m.sop_class_uid;
      rec.path = fs::absolute(file).string();
      rec.file_size = static_cast<std::int64_t>(fs::file_size(file));
      rec.content_hash = app::sha256_file(file).value();
      rec.patient_id = m.patient_id;
      rec.patient_name = m.patient_name;
      rec.patient_birth_date = m.patient_birth_date;
      rec.patient_sex = "F";
      rec.patient_age = "052Y";
      rec.study_instance_uid = m.study_instance_uid;
      rec.study_date = m.study_date;
      rec.accession_number = m.accession_number;
      rec.series_instance_uid = m.series_instance_uid;
      rec.modality = m.modality;
      rec.transfer_syntax_uid = m.transfer_syntax_uid;
      rec.photometric = dcm::to_string(r->photometric);
      rec.rows = r->rows;
      rec.columns = r->columns;
      rec.bits_stored = r->bits_stored;
      rec.view_position = m.view_position;
      rec.body_part = m.body_part_examined;
      if (m.pixel_spacing) {
        rec.pixel_spacing_row = m.pixel_spacing->row_mm;
        rec.pixel_spacing_column = m.pixel_spacing->column_mm;
      }
      rec.burned_in_annotation = m.burned_in_annotation;
      records.push_back(rec);
      files_.push_back(fs::absolute(file).string());
    }
    auto put = catalog->put_instances(records);
    ASSERT_TRUE(put.ok()) << put.error().message;
    std::vector<app::LabelInput> labels(2);
    labels[0].image = specs[0].sop;
    labels[0].finding = "Effusion";
    labels[0].value = app::LabelValue::Present;
    app::Region box;
    box.x = 12;
    box.y = 34;
    box.w = 56;
    box.h = 78;
    labels[0].region = box;
    labels[0].author = "Dr. Cli";
    labels[1].image = specs[1].sop;
    labels[1].finding = "Cardiomegaly";
    labels[1].value = app::LabelValue::Present;
    labels[1].author = "Dr. Cli";
    auto ids = catalog->add_labels(labels);
    ASSERT_TRUE(ids.ok()) << ids.error().message;
  }

  std::string db() const { return "--db " + quote(db_.string()) + " "; }

  fs::path db_;
  std::vector<std::string> files_;
};

TEST_F(CliExport, CsvExportWritesTheChestXray14Files) {
  populate();
  const fs::path out = dir_ / "out";
  const CliRun r = run_cli(db() + "export --out " + quote(out.string()) + " --format csv");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("exported 2 labels of 2 images"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("bounding boxes: 1"), std::string::npos) << r.out;
  const std::string entries = read_file(out / "Data_Entry_2017.csv");
  EXPECT_EQ(entries.substr(0, entries.find("\r\n")),
            "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
            "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],Split");
  EXPECT_NE(entries.find("1.2.826.0.1.3680043.10.777.1.1.1.png,Effusion,0,PID-YSQ-1187,52,F,PA,256,320,0.143,0.143,"),
            std::string::npos)
      << entries;
  EXPECT_NE(entries.find("1.2.826.0.1.3680043.10.777.2.1.1.png,Cardiomegaly,0,PID-ODB-2290,52,F,PA,"), std::string::npos);
  EXPECT_EQ(entries.find("777.2.1.2"), std::string::npos) << "the unlabelled image was exported";
  EXPECT_EQ(read_file(out / "BBox_List_2017.csv"),
            "Image Index,Finding Label,Bbox [x,y,w,h]\r\n1.2.826.0.1.3680043.10.777.1.1.1.png,Effusion,12,34,56,78\r\n");
  EXPECT_EQ(count_files(out), 3u);  // and the manifest of what export wrote
  EXPECT_TRUE(fs::exists(out / ".hilum-export-manifest"));
}

TEST_F(CliExport, JsonSummaryAndDeidentifiedImages) {
  populate();
  const fs::path out = dir_ / "deid";
  const CliRun r = run_cli(db() + "export --out " + quote(out.string()) + " --format json --deidentify --images --json");
  EXPECT_EQ(r.status, 0) << r.out;
  const auto l = lines(r.out);
  ASSERT_EQ(l.size(), 1u) << r.out;
  ASSERT_FALSE(l[0].empty());
  EXPECT_EQ(l[0].front(), '{');
  EXPECT_EQ(l[0].back(), '}');
  EXPECT_NE(l[0].find("\"ok\":true"), std::string::npos) << l[0];
  EXPECT_NE(l[0].find("\"images\":2"), std::string::npos) << l[0];
  EXPECT_NE(l[0].find("\"pngs\":2"), std::string::npos) << l[0];
  EXPECT_NE(l[0].find("\"dicoms\":2"), std::string::npos) << l[0];
  EXPECT_NE(l[0].find("\"deidentified\":true"), std::string::npos) << l[0];
  EXPECT_TRUE(fs::exists(out / "labels.json"));
  EXPECT_TRUE(fs::exists(out / "images" / "pixel_scaling.csv"));
  EXPECT_EQ(count_files(out), 7u);  // labels.json, 2 PNG, 2 DICOM, pixel_scaling.csv, the manifest
  // Nothing identifying in any file, nor in the summary's file names.
  std::vector<std::string> secrets = {"Quillon", "Ysolde", "Brannock", "Odalys", "PID-YSQ-1187", "PID-ODB-2290",
                                      "ACC-PID", "1.2.826.0.1.3680043.10.777", "19700101", dir_.string()};
  for (const auto& f : files_) secrets.push_back(f);
  for (const auto& e : fs::recursive_directory_iterator(out)) {
    if (!e.is_regular_file()) continue;
    const std::string bytes = read_file(e.path());
    for (const auto& s : secrets) EXPECT_EQ(bytes.find(s), std::string::npos) << s << " in " << e.path();
  }
  for (const auto& s : {"Quillon", "PID-YSQ-1187", "1.2.826.0.1.3680043.10.777"}) {
    EXPECT_EQ(l[0].find(s), std::string::npos) << s << " in the summary";
  }
  // Each DICOM copy reads back.
  std::size_t copies = 0;
  for (const auto& e : fs::directory_iterator(out / "images")) {
    if (e.path().extension() != ".dcm") continue;
    auto read = dcm::read_radiograph(e.path());
    ASSERT_TRUE(read.ok()) << read.error().message;
    EXPECT_EQ(read->meta.sop_instance_uid + ".dcm", e.path().filename().string());
    ++copies;
  }
  EXPECT_EQ(copies, 2u);
}

TEST_F(CliExport, BurnedInImageIsSkippedAndSaidSo) {
  populate(/*burned_in_second=*/true);
  const fs::path out = dir_ / "deid";
  const CliRun r = run_cli(db() + "export --out " + quote(out.string()) + " --format json --deidentify --images", true);
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("pixels not exported: burned-in annotation"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("images: 1 PNG, 1 DICOM, 1 skipped, 0 failed"), std::string::npos) << r.out;
}

TEST_F(CliExport, MissingImageFileFailsWithStatusOne) {
  populate();
  fs::remove(files_[0]);
  const fs::path out = dir_ / "out";
  const CliRun r = run_cli(db() + "export --out " + quote(out.string()) + " --format csv --images", true);
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("cannot read the image"), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(out / "Data_Entry_2017.csv")) << "the labels are exported anyway";
}

// Issue 16, defect 1: "stale files removed: 2" for the user's own DICOM files in DIR/images/.
TEST_F(CliExport, UsersOwnImagesInTheOutputFolderAreLeftAlone) {
  populate();
  const fs::path out = dir_ / "out";
  fs::create_directories(out / "images");
  fs::copy_file(files_[0], out / "images" / "IM0001.dcm");
  fs::copy_file(files_[1], out / "images" / "IM0002.dcm");
  const CliRun r = run_cli(db() + "export --out " + quote(out.string()) + " --format json --images", true);
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("images/IM000"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("stale files removed"), std::string::npos) << r.out;
  EXPECT_EQ(read_file(out / "images" / "IM0001.dcm"), read_file(files_[0]));
  EXPECT_EQ(read_file(out / "images" / "IM0002.dcm"), read_file(files_[1]));
  EXPECT_EQ(count_files(out), 2u);
}

TEST_F(CliExport, BadCommandLinesAndCatalogsGiveTheirExitStatus) {
  populate();
  const std::string out = quote((dir_ / "out").string());
  EXPECT_EQ(run_cli(db() + "export --format csv").status, 2);
  EXPECT_EQ(run_cli(db() + "export --out " + out).status, 2);
  EXPECT_EQ(run_cli(db() + "export --out " + out + " --format xml").status, 2);
  EXPECT_EQ(run_cli(db() + "export --out " + out + " --format csv --bogus").status, 2);
  EXPECT_EQ(run_cli(db() + "export --out").status, 2);
  // The training set (--format dataset) is always de-identified with images; --dicom and --model are its own.
  EXPECT_EQ(run_cli(db() + "export --out " + out + " --format dataset --images").status, 2);
  EXPECT_EQ(run_cli(db() + "export --out " + out + " --format csv --dicom").status, 2);
  EXPECT_EQ(run_cli(db() + "export --out " + out + " --format json --model m").status, 2);
  // No model in this catalog to start from: said so, nothing written.
  const CliRun no_model = run_cli(db() + "export --out " + out + " --format dataset", true);
  EXPECT_NE(no_model.status, 0);
  EXPECT_NE(no_model.out.find("no active model"), std::string::npos) << no_model.out;
  EXPECT_FALSE(fs::exists(dir_ / "out"));
  // No catalog there (export never creates one).
  const CliRun missing = run_cli("--db " + quote((dir_ / "none" / "x.db").string()) + " export --out " + out + " --format csv", true);
  EXPECT_EQ(missing.status, 3) << missing.out;
  EXPECT_FALSE(fs::exists(dir_ / "none" / "x.db"));
  // A folder holding other files is refused, and left alone.
  fs::create_directories(dir_ / "busy");
  std::ofstream(dir_ / "busy" / "thesis.docx") << "precious";
  const CliRun busy = run_cli(db() + "export --out " + quote((dir_ / "busy").string()) + " --format csv", true);
  EXPECT_EQ(busy.status, 2) << busy.out;
  EXPECT_NE(busy.out.find("thesis.docx"), std::string::npos) << busy.out;
  EXPECT_EQ(count_files(dir_ / "busy"), 1u);
  // --help names the command.
  EXPECT_NE(run_cli("--help").out.find("--format csv|json|sr|dataset"), std::string::npos);
}

}  // namespace
