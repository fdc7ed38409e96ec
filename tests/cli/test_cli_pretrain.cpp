// End-to-end: hilum-cli pretrain on a few generated PNGs (1 epoch), then train --init from the
// backbone it wrote.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "cli_runner.hpp"
#include "hilum/app/png.hpp"
#include "hilum/inference/vit.hpp"
#include "hilum/testdata/phantom.hpp"
#include "temp_dir_test.hpp"

namespace fs = std::filesystem;

namespace {

using hilum::test::quote;
using hilum::test::run_cli;

class CliPretrain : public hilum::test::TempDirTest {
 protected:
  // n noisy 32x32 PNGs, patients "<prefix><i>".
  void write_pngs(const fs::path& dir, int n, int level, const std::string& prefix = "p") {
    fs::create_directories(dir);
    std::mt19937 rng(static_cast<unsigned>(level));
    std::uniform_int_distribution<int> noise(0, 40);
    for (int i = 0; i < n; ++i) {
      std::vector<std::uint8_t> px(32 * 32);
      for (auto& v : px) v = static_cast<std::uint8_t>(level + noise(rng));
      ASSERT_TRUE(hilum::app::write_png_gray8(dir / (prefix + std::to_string(i) + "_a.png"), 32, 32, px).ok());
    }
  }
};

TEST_F(CliPretrain, PretrainsOneEpochThenTrainStartsFromTheBackbone) {
  write_pngs(path("films") / "site1", 4, 40);
  write_pngs(path("more"), 2, 120);
  std::ofstream(path("films") / "site1" / "bad.jpg") << "not a jpeg";
  const std::string out = quote(path("backbone").string());
  const std::string common = " --out " + out + " --arch vit-ti16-d6 --image-size 32 --epochs 1 --batch 4 --mask-ratio 0.75 --precision f32";
  // Usage errors.
  EXPECT_EQ(run_cli("pretrain --out " + out).status, 2) << "neither --data nor --catalog";
  EXPECT_EQ(run_cli("pretrain --data " + quote(path("films").string()) + " --out " + out + " --mask-ratio 1").status, 2);
  // Two folders; the unreadable file is reported and skipped.
  const auto r = run_cli("pretrain --data " + quote(path("films").string()) + " " + quote(path("more").string()) + common, true);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("pretrain: epoch 1/1 loss"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("skipped"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("bad.jpg"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("pre-trained on 6 images, 1 skipped"), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(path("backbone") / "config.json"));
  EXPECT_TRUE(fs::exists(path("backbone") / "mae_decoder.safetensors"));
  EXPECT_TRUE(fs::exists(path("backbone") / "pretrain_report.json"));
  // Running the same command again resumes: nothing is left to train.
  const auto again = run_cli("pretrain --data " + quote(path("films").string()) + " " + quote(path("more").string()) + common);
  ASSERT_EQ(again.status, 0);
  EXPECT_NE(again.out.find("resumed after epoch 1"), std::string::npos) << again.out;
  // train --init from the backbone: a classifier for the folder's findings.
  write_pngs(path("labelled") / "NORMAL", 12, 40, "n");
  write_pngs(path("labelled") / "PNEUMONIA", 12, 160, "q");
  const auto t = run_cli("train --data " + quote(path("labelled").string()) + " --out " + quote(path("model").string()) + " --init " + out +
                         " --epochs 1 --batch 8 --precision f32", true);
  ASSERT_EQ(t.status, 0) << t.out;
  auto model = hilum::inference::ViTModel::load(path("model"));
  ASSERT_TRUE(model.ok()) << model.error().message;
  EXPECT_EQ(model->config().labels, std::vector<std::string>{"Pneumonia"});
  EXPECT_TRUE(model->weights().has_classifier);
}

TEST_F(CliPretrain, PretrainsOnTheCatalogsOwnFilms) {
  const std::string db = "--db " + quote(path("hilum.db").string());
  fs::create_directories(path("dicom"));
  for (int i = 0; i < 3; ++i) {
    hilum::testdata::DicomSpec spec;
    spec.phantom.rows = spec.phantom.columns = 64;
    spec.phantom.seed = static_cast<std::uint32_t>(40 + i);
    spec.patient_id = "P" + std::to_string(i);
    spec.study_instance_uid = "1.2.826.0.1.3680043.12.1." + std::to_string(i);
    spec.sop_instance_uid = "1.2.826.0.1.3680043.12.2." + std::to_string(i);
    hilum::testdata::write_dicom(path("dicom") / ("f" + std::to_string(i) + ".dcm"), spec);
  }
  ASSERT_EQ(run_cli(db + " import " + quote(path("dicom").string())).status, 0);
  const auto r = run_cli(db + " pretrain --catalog --out " + quote(path("site").string()) +
                         " --arch vit-ti16-d6 --image-size 32 --epochs 1 --batch 2 --precision f32 --json");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("\"source\": \"the catalog\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"images\": 3"), std::string::npos) << r.out;
  auto model = hilum::inference::ViTModel::load(path("site"));
  ASSERT_TRUE(model.ok()) << model.error().message;
  EXPECT_FALSE(model->weights().has_classifier);
}

}  // namespace
