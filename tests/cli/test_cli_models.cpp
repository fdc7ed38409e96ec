// End-to-end: hilum-cli models / classify / heatmap with a golden tiny ViT.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

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

TEST_F(CliModels, HeatmapWritesAnOverlay) {
  const std::string out = (dir_ / "heat.png").string();
  const auto r = run_cli(db_ + " heatmap " + quote((dir_ / "chest.dcm").string()) + " -o " + quote(out) + " --model " + quote(kTiny) + " --max-size 100");
  ASSERT_EQ(r.status, 0);
  ASSERT_TRUE(fs::exists(out));
  EXPECT_GT(fs::file_size(out), 1000u);
  EXPECT_EQ(run_cli(db_ + " heatmap " + quote((dir_ / "chest.dcm").string()) + " -o " + quote(out) + " --method class --model " + quote(kTiny)).status, 2);
  EXPECT_EQ(run_cli(db_ + " heatmap " + quote((dir_ / "chest.dcm").string()) + " --model " + quote(kTiny)).status, 2);
}

}  // namespace
}  // namespace hilum::test
