// End-to-end: hilum-cli models / classify / heatmap with a golden tiny ViT.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "temp_dir_test.hpp"
#include "cli_runner.hpp"
#include "hilum/app/catalog.hpp"
#include "hilum/app/png.hpp"
#include "hilum/testdata/phantom.hpp"

namespace fs = std::filesystem;

namespace hilum::test {
namespace {

const std::string kTiny = std::string(HILUM_GOLDEN_DIR) + "/tiny_multilabel";

class CliModels : public hilum::test::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    testdata::DicomSpec spec;
    spec.sop_instance_uid = "1.2.826.0.1.3680043.9.77";
    testdata::write_dicom(dir_ / "chest.dcm", spec);
    db_ = "--db " + quote((dir_ / "hilum.db").string());
  }
  std::string db_;
};

TEST_F(CliModels, ImportActivateClassifyAndStore) {
  EXPECT_EQ(run_cli(db_ + " classify " + quote((dir_ / "chest.dcm").string())).status, 1);  // no active model yet
  const auto imported = run_cli(db_ + " models import " + quote(kTiny) + " --version tiny-1 --activate --json");
  ASSERT_EQ(imported.status, 0) << imported.out;
  EXPECT_NE(imported.out.find("\"status\":\"active\""), std::string::npos) << imported.out;
  const auto list = run_cli(db_ + " models list --json");
  EXPECT_EQ(lines(list.out).size(), 1u);
  const auto r = run_cli(db_ + " classify " + quote((dir_ / "chest.dcm").string()) + " --json");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto l = lines(r.out);
  ASSERT_EQ(l.size(), 1u);
  EXPECT_NE(l[0].find("\"model\":\"tiny-1\""), std::string::npos) << l[0];
  EXPECT_NE(l[0].find("\"probabilities\":{\"Atelectasis\":"), std::string::npos) << l[0];
  EXPECT_NE(l[0].find("\"Nodule\":"), std::string::npos) << l[0];
  // The domain check's three fields: the golden model has no reference of its training films.
  EXPECT_NE(l[0].find("\"in_domain\":true"), std::string::npos) << l[0];
  EXPECT_NE(l[0].find("\"domain_score\":null"), std::string::npos) << l[0];
  // Nor populations, so no population's calibration.
  EXPECT_NE(l[0].find("\"population\":null,\"population_from\":null"), std::string::npos) << l[0];
  EXPECT_NE(l[0].find("\"domain_reason\":\"the model carries no reference of its training films, so the pixel check is unavailable\""),
            std::string::npos) << l[0];
  // An MR header: out of the domain, said in the JSON and in plain text.
  testdata::DicomSpec mr;
  mr.modality = "MR";
  mr.sop_instance_uid = "1.2.826.0.1.3680043.9.4242";
  testdata::write_dicom(dir_ / "mr.dcm", mr);
  const auto m = run_cli(db_ + " classify " + quote((dir_ / "mr.dcm").string()) + " --json");
  ASSERT_EQ(m.status, 0) << m.out;
  EXPECT_NE(m.out.find("\"in_domain\":false"), std::string::npos) << m.out;
  EXPECT_NE(m.out.find("modality MR (magnetic resonance)"), std::string::npos) << m.out;
  const auto text = run_cli(db_ + " classify " + quote((dir_ / "mr.dcm").string()));
  EXPECT_NE(text.out.find("OUT OF DOMAIN: "), std::string::npos) << text.out;
  // An explicit folder works without the catalog knowing it.
  const auto direct = run_cli(db_ + " classify --model " + quote(kTiny) + " " + quote((dir_ / "chest.dcm").string()) + " --json");
  ASSERT_EQ(direct.status, 0);
  const auto probabilities = [](const std::string& line) {
    const auto start = line.find("\"probabilities\"");
    return start == std::string::npos ? std::string() : line.substr(start, line.find('}', start) - start);
  };
  EXPECT_FALSE(probabilities(r.out).empty());
  EXPECT_EQ(probabilities(direct.out), probabilities(r.out));
  EXPECT_EQ(run_cli(db_ + " classify --model /nonexistent " + quote((dir_ / "chest.dcm").string())).status, 1);
  EXPECT_EQ(run_cli(db_ + " classify").status, 2);
}

// Issue 18: with an active model, import classifies each new film from the model input it made of
// the pixels it decoded (cached in store/model-inputs beside the catalog); `classify --all` later
// reads that input and gives the same probabilities; --no-classify leaves the predictions out.
TEST_F(CliModels, ImportClassifiesNewFilmsFromTheirCachedInput) {
  ASSERT_EQ(run_cli(db_ + " models import " + quote(kTiny) + " --version tiny-1 --activate").status, 0);
  const auto imported = run_cli(db_ + " import " + quote((dir_ / "chest.dcm").string()) + " --json");
  ASSERT_EQ(imported.status, 0) << imported.out;
  EXPECT_NE(imported.out.find("\"classification\":{\"model\":\"tiny-1\",\"classified\":1,\"unclassified\":0}"), std::string::npos)
      << imported.out;
  std::size_t cached = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir_ / "store" / "model-inputs")) cached += e.path().extension() == ".f32" ? 1 : 0;
  EXPECT_EQ(cached, 1u);
  const auto all = run_cli(db_ + " classify --all --json");
  ASSERT_EQ(all.status, 0) << all.out;
  const auto direct = run_cli(db_ + " classify --model " + quote(kTiny) + " " + quote((dir_ / "chest.dcm").string()) + " --json");
  ASSERT_EQ(direct.status, 0) << direct.out;
  const auto probabilities = [](const std::string& line) {
    const auto start = line.find("\"probabilities\"");
    return start == std::string::npos ? std::string() : line.substr(start, line.find('}', start) - start);
  };
  EXPECT_FALSE(probabilities(all.out).empty()) << all.out;
  EXPECT_EQ(probabilities(all.out), probabilities(direct.out));
  // The prediction stored at import is the one `classify --all` stored again.
  auto catalog = app::Catalog::open(dir_ / "hilum.db", app::Catalog::Mode::ReadOnly);
  ASSERT_TRUE(catalog.ok());
  auto model = catalog->find_model("tiny-1");
  ASSERT_TRUE(model.ok() && model->has_value());
  auto stored = catalog->predictions("1.2.826.0.1.3680043.9.77", (*model)->id);
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->size(), 6u);

  testdata::DicomSpec other;
  other.sop_instance_uid = "1.2.826.0.1.3680043.9.78";
  testdata::write_dicom(dir_ / "other.dcm", other);
  const auto quiet = run_cli(db_ + " import --no-classify " + quote((dir_ / "other.dcm").string()) + " --json");
  ASSERT_EQ(quiet.status, 0) << quiet.out;
  EXPECT_EQ(quiet.out.find("classification"), std::string::npos) << quiet.out;
  EXPECT_TRUE(catalog->predictions("1.2.826.0.1.3680043.9.78", (*model)->id)->empty());
}

// First run: the built-in model (here the tiny golden, named by HILUM_BUILTIN_MODEL) becomes the
// active model of a new catalog, and the command says so once.
TEST_F(CliModels, FirstRunRegistersTheBuiltinModel) {
  ::setenv("HILUM_BUILTIN_MODEL", kTiny.c_str(), 1);
  const auto first = run_cli(db_ + " models list", true);
  const auto second = run_cli(db_ + " models list", true);
  ::setenv("HILUM_BUILTIN_MODEL", "none", 1);
  ASSERT_EQ(first.status, 0) << first.out;
  EXPECT_NE(first.out.find("first run: registered the built-in model tiny_multilabel"), std::string::npos) << first.out;
  EXPECT_NE(first.out.find("active"), std::string::npos) << first.out;
  ASSERT_EQ(second.status, 0);
  EXPECT_EQ(second.out.find("first run"), std::string::npos) << second.out;
  EXPECT_NE(second.out.find("tiny_multilabel"), std::string::npos) << second.out;
  const auto r = run_cli(db_ + " classify " + quote((dir_ / "chest.dcm").string()) + " --json");
  EXPECT_EQ(r.status, 0) << "classify uses the built-in model without --model";
}

TEST_F(CliModels, HeatmapWritesAnOverlay) {
  const std::string out = (dir_ / "heat.png").string();
  const auto r = run_cli(db_ + " heatmap " + quote((dir_ / "chest.dcm").string()) + " -o " + quote(out) + " --model " + quote(kTiny) + " --max-size 100");
  ASSERT_EQ(r.status, 0);
  ASSERT_TRUE(fs::exists(out));
  EXPECT_GT(fs::file_size(out), 1000u);
  const std::string chest = quote((dir_ / "chest.dcm").string());
  // The class-specific map of one finding: another picture, and the command says which finding.
  const std::string nodule = (dir_ / "nodule.png").string();
  const auto c = run_cli(db_ + " heatmap " + chest + " -o " + quote(nodule) + " --method class --finding nodule --max-size 100 --model " + quote(kTiny));
  ASSERT_EQ(c.status, 0) << c.out;
  EXPECT_NE(c.out.find("class-specific map for Nodule"), std::string::npos) << c.out;
  ASSERT_TRUE(fs::exists(nodule));
  const auto bytes = [](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  EXPECT_NE(bytes(nodule), bytes(out));
  const auto unknown = run_cli(db_ + " heatmap " + chest + " -o " + quote(nodule) + " --method class --finding Fracture --model " + quote(kTiny), true);
  EXPECT_NE(unknown.status, 0);
  EXPECT_NE(unknown.out.find("no output \"Fracture\""), std::string::npos) << unknown.out;
  EXPECT_EQ(run_cli(db_ + " heatmap " + chest + " -o " + quote(out) + " --method gradcam --model " + quote(kTiny)).status, 2);
  EXPECT_EQ(run_cli(db_ + " heatmap " + chest + " -o " + quote(out) + " --finding Nodule --model " + quote(kTiny)).status, 2);
  EXPECT_EQ(run_cli(db_ + " heatmap " + chest + " --model " + quote(kTiny)).status, 2);
}

}  // namespace
}  // namespace hilum::test

namespace hilum::test {
namespace {

// finetune / evaluate / models show|promote|rollback|export through the real executable.
class CliFinetune : public hilum::test::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    db_ = "--db " + quote((dir_ / "hilum.db").string());
    fs::create_directories(dir_ / "images");
    std::string csv = "image,Effusion\n";
    // 40 patients: the gate's validation split comes from the catalog's random secret, and with 24
    // patients now and then no validation patient had both a present and an absent label.
    for (int i = 0; i < kImages; ++i) {
      testdata::DicomSpec spec;
      spec.phantom.rows = spec.phantom.columns = 64;
      spec.phantom.collimator_border = false;
      spec.phantom.seed = static_cast<std::uint32_t>(500 + i);
      spec.patient_id = "P" + std::to_string(i / 2);
      spec.study_instance_uid = "1.2.826.0.1.3680043.11.1." + std::to_string(i / 2);
      spec.sop_instance_uid = "1.2.826.0.1.3680043.11.2." + std::to_string(i);
      const bool effusion = (i * 7 + i / 3) % 2 == 0;
      if (effusion) {
        spec.draw = [](std::vector<std::int32_t>& v, int rows, int cols) {
          for (int r = rows / 2; r < rows - 4; ++r)
            for (int c = 4; c < cols / 2; ++c) v[static_cast<std::size_t>(r * cols + c)] = 4095;
        };
      }
      testdata::write_dicom(dir_ / "images" / ("i" + std::to_string(i) + ".dcm"), spec);
      csv += spec.sop_instance_uid + (effusion ? ",present\n" : ",absent\n");
    }
    std::FILE* f = std::fopen((dir_ / "labels.csv").c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs(csv.c_str(), f);
    std::fclose(f);
    ASSERT_EQ(run_cli(db_ + " import " + quote((dir_ / "images").string())).status, 0);
    ASSERT_EQ(run_cli(db_ + " models import " + quote(kTiny) + " --version tiny-1 --activate").status, 0);
  }
  static constexpr int kImages = 80;  // two per patient
  std::string db_;
};

TEST_F(CliFinetune, FinetuneEvaluateShowRollbackExport) {
  // Nothing labelled yet: a clear error, status 1.
  const auto nothing = run_cli(db_ + " finetune --strategy head", true);
  EXPECT_EQ(nothing.status, 1);
  EXPECT_NE(nothing.out.find("no labelled images"), std::string::npos) << nothing.out;
  ASSERT_EQ(run_cli(db_ + " label --from-csv " + quote((dir_ / "labels.csv").string()) + " --author tester").status, 0);
  EXPECT_EQ(run_cli(db_ + " finetune --strategy sideways").status, 2);
  EXPECT_EQ(run_cli(db_ + " finetune --epochs 0").status, 2);
  EXPECT_EQ(run_cli(db_ + " finetune --precision f16").status, 2);

  const auto r = run_cli(db_ + " finetune --strategy head --json");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("\"version\":\"tiny-1-ft1\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"strategy\":\"head\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"finding\":\"Effusion\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"parent\":\"tiny-1\""), std::string::npos) << r.out;

  const auto show = run_cli(db_ + " models show tiny-1-ft1 --json");
  ASSERT_EQ(show.status, 0);
  EXPECT_NE(show.out.find("\"parent\":\"tiny-1\""), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("\"label_snapshot\":{"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("\"auroc\""), std::string::npos) << show.out;

  const auto eval = run_cli(db_ + " evaluate --model tiny-1-ft1 --labels " + quote((dir_ / "labels.csv").string()) + " --json");
  ASSERT_EQ(eval.status, 0) << eval.out;
  EXPECT_NE(eval.out.find("\"images\":" + std::to_string(kImages)), std::string::npos) << eval.out;  // every row of the CSV
  EXPECT_NE(eval.out.find("\"threshold\""), std::string::npos) << eval.out;
  EXPECT_EQ(run_cli(db_ + " evaluate --model nope").status, 1);

  // Promote by hand, roll back to the parent, export as a Hugging Face folder.
  ASSERT_EQ(run_cli(db_ + " models promote tiny-1-ft1").status, 0);
  const auto back = run_cli(db_ + " models rollback");
  ASSERT_EQ(back.status, 0);
  EXPECT_NE(back.out.find("tiny-1 is now the active model"), std::string::npos) << back.out;
  EXPECT_EQ(run_cli(db_ + " models rollback").status, 1);  // tiny-1 has no parent
  const fs::path out = dir_ / "exported";
  ASSERT_EQ(run_cli(db_ + " models export tiny-1-ft1 " + quote(out.string())).status, 0);
  EXPECT_TRUE(fs::exists(out / "config.json"));
  EXPECT_TRUE(fs::exists(out / "model.safetensors"));
  EXPECT_EQ(run_cli(db_ + " models export tiny-1-ft1").status, 2);
}

}  // namespace
}  // namespace hilum::test
