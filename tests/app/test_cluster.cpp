// The training-set export and the import of a cluster-trained folder (cluster.hpp), without
// PyTorch: the "trained" folder is the export's starting model with a report written here, the way
// cluster/train.py writes one. The PyTorch round trip itself is tests/cluster (label `cluster`).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <clocale>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "catalog_support.hpp"
#include "hilum/app/cluster.hpp"
#include "hilum/app/hash.hpp"
#include "hilum/app/import.hpp"
#include "hilum/dicom/reader.hpp"
#include "labelled_catalog.hpp"

namespace hilum::test {
namespace {

using json = nlohmann::json;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void spit(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
}

class ClusterTest : public CatalogTest {
 protected:
  static constexpr std::size_t kPatients = 40;
  static constexpr std::size_t kImages = 2 * kPatients;  // make_labelled_catalog: two films a patient
  void SetUp() override {
    CatalogTest::SetUp();
    catalog_.emplace(open_catalog());
    // 40 patients: the gate holds out a fifth of them by a keyed hash of the catalog's random secret,
    // so with 15 about one catalog in thirty had no validation patient at all.
    const std::string error = make_labelled_catalog(*catalog_, path("work"), kPatients);
    ASSERT_EQ(error, "");
    app::DatasetExportOptions o;
    o.out_dir = path("export");
    auto r = app::export_dataset(*catalog_, o);
    ASSERT_TRUE(r.ok()) << r.error().message;
    export_ = *r;
  }

  // labels.csv rows: image, patient, split, cells.
  std::vector<std::vector<std::string>> rows(const fs::path& dir) {
    std::istringstream in(slurp(dir / "labels.csv"));
    std::vector<std::vector<std::string>> out;
    std::string line;
    std::getline(in, line);
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      std::vector<std::string> f(1);
      for (char c : line) {
        if (c == ',') f.emplace_back();
        else f.back() += c;
      }
      out.push_back(f);
    }
    return out;
  }

  // A folder as cluster/train.py writes it; `edit` changes the report before the checksums of the
  // files are taken.
  fs::path trained_folder(const std::function<void(const fs::path&, json&)>& edit = {}) {
    const fs::path dir = path("trained");
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (const char* f : {"config.json", "model.safetensors", "preprocessor_config.json"}) fs::copy_file(path("export") / "model" / f, dir / f);
    for (const char* f : {"manifest.json", "labels.csv"}) fs::copy_file(path("export") / f, dir / f);
    json report = {{"format", "hilum-cluster-training-report"}, {"version", 1}, {"labels", {"Effusion", "Pattern"}},
                   {"epochs", 1}, {"learning_rate", 1e-4}, {"batch_size", 4}, {"world_size", 2}, {"backend", "gloo"},
                   {"history", {{{"epoch", 1}, {"train_loss", 0.5}}}}};
    json trained = json::array();
    for (const auto& r : rows(dir)) {
      if (r[2] == "train") trained.push_back(r[0]);
    }
    report["trained_images"] = trained;
    if (edit) edit(dir, report);
    report["manifest_sha256"] = app::sha256_file(dir / "manifest.json").value();
    json files = json::object();
    for (const char* f : {"config.json", "model.safetensors", "preprocessor_config.json", "manifest.json", "labels.csv"}) {
      files[f] = app::sha256_file(dir / f).value();
    }
    report["files"] = files;
    spit(dir / "training_report.json", report.dump(1));
    return dir;
  }

  std::size_t model_count() { return catalog_->models().value().size(); }
  void InstanceFilterAll() {
    app::InstanceFilter f;
    f.with_thumbnails = false;
    instances_ = catalog_->list_instances(f).value();
  }

  std::optional<app::Catalog> catalog_;
  app::DatasetExportReport export_;
  std::vector<app::Instance> instances_;
};

TEST_F(ClusterTest, ExportNamesEveryFileWithItsChecksumAndKeepsNotAssessedApart) {
  const json manifest = json::parse(slurp(path("export") / "manifest.json"));
  EXPECT_EQ(manifest["format"], "hilum-training-set");
  EXPECT_EQ(manifest["catalog_id"], app::catalog_identity(*catalog_).value());
  EXPECT_EQ(manifest["snapshot_sha256"], export_.snapshot_sha256);
  EXPECT_EQ(app::sha256_file(path("export") / "manifest.json").value(), export_.manifest_sha256);
  std::size_t pngs = 0;
  for (const auto& f : manifest["files"]) {
    const std::string p = f["path"];
    EXPECT_EQ(app::sha256_file(path("export") / p).value(), f["sha256"]) << p;
    pngs += p.rfind("images/", 0) == 0 ? 1 : 0;
  }
  EXPECT_EQ(pngs, kImages);
  bool absent = false, not_assessed = false;
  for (const auto& r : rows(path("export"))) {
    ASSERT_EQ(r.size(), 5u);
    absent = absent || r[3] == "0";
    not_assessed = not_assessed || r[3].empty();
    EXPECT_NE(r[0].find("2.25."), std::string::npos) << "pseudonymous image ids";
    EXPECT_EQ(r[1].rfind("HIL", 0), 0u) << "pseudonymous patients";
    EXPECT_TRUE(r[2] == "train" || r[2] == "validation");
  }
  EXPECT_TRUE(absent && not_assessed);
  EXPECT_TRUE(fs::is_regular_file(path("export") / "model" / "model.safetensors"));
  // Stable across exports: the same snapshot and split, and an existing folder is refused.
  app::DatasetExportOptions o;
  o.out_dir = path("export2");
  auto again = app::export_dataset(*catalog_, o);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->snapshot_sha256, export_.snapshot_sha256);
  EXPECT_EQ(again->split_sha256, export_.split_sha256);
  EXPECT_EQ(slurp(path("export") / "labels.csv"), slurp(path("export2") / "labels.csv"));
  o.out_dir = path("export");
  EXPECT_FALSE(app::export_dataset(*catalog_, o).ok());
}

// A film with burned-in annotation is left out (named in the manifest, not in labels.csv),
// an import does not count it as a change, and --dicom writes de-identified copies of the others.
TEST_F(ClusterTest, BurnedInFilmsAreLeftOutAndDicomCopiesAreDeidentified) {
  testdata::DicomSpec spec;
  spec.phantom.rows = spec.phantom.columns = 64;
  spec.patient_id = "PAT-SC";
  spec.sop_instance_uid = "1.2.826.0.1.3680043.10.3.1";
  fs::create_directories(path("sc"));
  (void)testdata::write_dicom(path("sc") / "sc.dcm", spec);
  // (0028,0301) CS "NO" -> "YES " in the explicit little endian file (as test_export does).
  std::string bytes = slurp(path("sc") / "sc.dcm");
  const std::string from("\x28\x00\x01\x03" "CS\x02\x00" "NO", 10);
  const auto at = bytes.find(from);
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at, from.size(), std::string("\x28\x00\x01\x03" "CS\x04\x00" "YES ", 12));
  spit(path("sc") / "sc.dcm", bytes);
  ASSERT_TRUE(app::import_paths(*catalog_, {path("sc")}).ok());
  app::LabelInput l;
  l.image = spec.sop_instance_uid;
  l.finding = "Pattern";
  l.value = app::LabelValue::Absent;
  l.author = "tester";
  ASSERT_TRUE(catalog_->add_labels({l}).ok());
  app::DatasetExportOptions o;
  o.out_dir = path("with-dicom");
  o.dicom = true;
  auto r = app::export_dataset(*catalog_, o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->skipped.size(), 1u);
  EXPECT_NE(r->skipped[0].reason.find("burned-in"), std::string::npos);
  const json manifest = json::parse(slurp(path("with-dicom") / "manifest.json"));
  ASSERT_EQ(manifest["left_out"].size(), 1u);
  const std::string sc = manifest["left_out"][0]["image"];
  EXPECT_EQ(slurp(path("with-dicom") / "labels.csv").find(sc), std::string::npos);
  EXPECT_EQ(r->dicoms, kImages);
  const auto rows_out = rows(path("with-dicom"));
  auto copy = dicom::read_radiograph(path("with-dicom") / "images" / (rows_out[0][0] + ".dcm"));
  ASSERT_TRUE(copy.ok()) << copy.error().message;
  EXPECT_EQ(copy->meta.patient_id, rows_out[0][1]) << "the pseudonym of labels.csv, not the patient's ID";
  // A folder trained on this set comes back with nothing changed (the left-out film is not "added").
  fs::remove_all(path("export"));
  fs::rename(path("with-dicom"), path("export"));
  auto back = app::import_cluster_model(*catalog_, trained_folder());
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_TRUE(back->changes.empty()) << back->changes[0];
}

TEST_F(ClusterTest, SplitIsTheFinetuneGates) {
  InstanceFilterAll();
  std::map<std::string, bool> by_patient;
  for (const auto& in : instances_) {
    auto p = catalog_->pseudonym("patient_id", app::patient_key(in.patient_id, in.patient_name, in.study_instance_uid));
    by_patient[p.value()] = app::in_validation_split(*catalog_, in).value();
  }
  for (const auto& r : rows(path("export"))) EXPECT_EQ(r[2] == "validation", by_patient.at(r[1])) << r[1];
}

TEST_F(ClusterTest, ImportRegistersThroughTheGateAndSaysWhereItWasTrained) {
  const std::size_t before = model_count();
  auto r = app::import_cluster_model(*catalog_, trained_folder());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(model_count(), before + 1);
  EXPECT_EQ(r->result.model.strategy, "cluster");
  EXPECT_EQ(app::trained_on(r->result.model), "cluster (manifest sha256:" + export_.manifest_sha256.substr(0, 16) + ")");
  EXPECT_TRUE(r->changes.empty());
  const json metrics = json::parse(r->result.model.metrics);
  EXPECT_EQ(metrics["gate"]["promoted"], r->result.promoted);
  EXPECT_EQ(r->result.model.status, r->result.promoted ? app::ModelStatus::Active : app::ModelStatus::Candidate);
  EXPECT_EQ(metrics["cluster"]["manifest_sha256"], export_.manifest_sha256);
}

TEST_F(ClusterTest, ImportSaysWhatChangedSinceTheExport) {
  app::LabelInput l;
  l.image = "1.2.826.0.1.3680043.10.2.1";  // image 1: its Effusion was not assessed
  l.finding = "Effusion";
  l.value = app::LabelValue::Present;
  l.author = "tester";
  ASSERT_TRUE(catalog_->add_labels({l}).ok());
  auto r = app::import_cluster_model(*catalog_, trained_folder());
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->changes.size(), 1u);
  EXPECT_EQ(r->changes[0], "1 image(s) relabelled since the export");
}

TEST_F(ClusterTest, AlteredFileIsRefusedAndNothingRegistered) {
  const fs::path dir = trained_folder();
  std::string weights = slurp(dir / "model.safetensors");
  weights[weights.size() - 3] = static_cast<char>(weights[weights.size() - 3] ^ 0x40);
  spit(dir / "model.safetensors", weights);
  const std::size_t before = model_count();
  auto r = app::import_cluster_model(*catalog_, dir);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("model.safetensors was altered"), std::string::npos) << r.error().message;
  EXPECT_EQ(model_count(), before);
  fs::remove(trained_folder() / "labels.csv");
  r = app::import_cluster_model(*catalog_, dir);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("labels.csv is missing"), std::string::npos) << r.error().message;
}

TEST_F(ClusterTest, ManifestOfAnotherCatalogIsRefused) {
  const fs::path dir = trained_folder([](const fs::path& d, json&) {
    json manifest = json::parse(slurp(d / "manifest.json"));
    manifest["catalog_id"] = "0123456789abcdef";
    spit(d / "manifest.json", manifest.dump(2));
  });
  const std::size_t before = model_count();
  auto r = app::import_cluster_model(*catalog_, dir);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("exported from another catalog"), std::string::npos) << r.error().message;
  EXPECT_EQ(model_count(), before);
}

TEST_F(ClusterTest, ModelTrainedOnValidationPatientsIsRefused) {
  std::string validation_image;
  for (const auto& r : rows(path("export"))) {
    if (r[2] == "validation") validation_image = r[0];
  }
  ASSERT_FALSE(validation_image.empty());
  const fs::path dir = trained_folder([&](const fs::path&, json& report) { report["trained_images"].push_back(validation_image); });
  const std::size_t before = model_count();
  auto r = app::import_cluster_model(*catalog_, dir);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("patients in the gate's validation split (" + validation_image), std::string::npos) << r.error().message;
  EXPECT_EQ(model_count(), before);
}

TEST_F(ClusterTest, ProbabilitiesOurEngineDoesNotReproduceAreRefused) {
  const fs::path dir = trained_folder([&](const fs::path&, json& report) {
    json p = json::object();
    for (const auto& r : rows(path("export"))) {
      if (r[2] == "validation") p[r[0]] = {0.5, 0.5};
    }
    report["validation_probabilities"] = p;
  });
  const std::size_t before = model_count();
  auto r = app::import_cluster_model(*catalog_, dir);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("does not reproduce PyTorch's probabilities"), std::string::npos) << r.error().message;
  EXPECT_EQ(model_count(), before);
}

// The GUI imports under the user's locale: what is stored reads back as the same numbers.
TEST_F(ClusterTest, NumbersDoNotDependOnTheLocale) {
  const fs::path dir = trained_folder();
  const std::string previous = std::setlocale(LC_ALL, nullptr);
  if (std::setlocale(LC_ALL, "de_DE.UTF-8") == nullptr) GTEST_SKIP() << "the de_DE.UTF-8 locale is not installed (scripts/setup generates it)";
  auto r = app::import_cluster_model(*catalog_, dir);
  std::setlocale(LC_ALL, previous.c_str());
  ASSERT_TRUE(r.ok()) << r.error().message;
  const json hp = json::parse(r->result.model.hyperparameters);
  EXPECT_DOUBLE_EQ(hp["learning_rate"].get<double>(), 1e-4);
  const json metrics = json::parse(r->result.model.metrics);
  EXPECT_DOUBLE_EQ(metrics["gate"]["tolerance"].get<double>(), 0.005);
  EXPECT_NE(r->result.reason.find("0.005"), std::string::npos) << r->result.reason;
}

TEST_F(ClusterTest, OtherTrainingReportsAreNotClusterFolders) {
  fs::create_directories(path("other"));
  spit(path("other") / "training_report.json", R"({"format": "hilum-train", "epochs": 3})");
  EXPECT_FALSE(app::is_cluster_model_folder(path("other")));
  EXPECT_TRUE(app::is_cluster_model_folder(trained_folder()));
}

}  // namespace
}  // namespace hilum::test
