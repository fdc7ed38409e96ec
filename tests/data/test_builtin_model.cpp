// The shipped built-in model (resources/models/, found as the application finds it) on the
// patients its training run held out of ../shared/data/cxr-pneumonia-224/train, recomputed from
// the folder and the seed in its training_report.json: the goal of the model (Pneumonia AUROC
// >= 0.96 on held-out patients) and the figures its report and model card state.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "hilum/app/classify.hpp"
#include "hilum/app/train.hpp"

namespace fs = std::filesystem;
namespace app = hilum::app;

namespace {

const fs::path kData = HILUM_PNEUMONIA_DATA;

TEST(BuiltinModel, MeetsItsGoalOnHeldOutPatients) {
  ASSERT_TRUE(fs::is_directory(kData)) << kData << " is absent: these tests need ../shared/data";
  ::unsetenv("HILUM_BUILTIN_MODEL");
  const fs::path dir = app::builtin_model_dir();
  ASSERT_FALSE(dir.empty()) << "no built-in model in resources/models/";
  auto model = hilum::inference::ViTModel::load(dir);
  ASSERT_TRUE(model.ok()) << model.error().message;
  EXPECT_EQ(model->config().labels, std::vector<std::string>{"Pneumonia"});
  std::ifstream in(dir / "training_report.json");
  const auto report = nlohmann::json::parse(in, nullptr, false);
  ASSERT_TRUE(report.is_object()) << "training_report.json is missing or damaged";
  const auto seed = report.at("seed").get<std::uint64_t>();
  const double stated = report.at("validation").at("findings").at(0).at("auroc").get<double>();

  auto r = app::evaluate_folder(*model, kData, seed);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->images, report.at("validation_images").get<int>());
  EXPECT_EQ(r->patients, report.at("validation_patients").get<int>());
  ASSERT_EQ(r->findings.size(), 1u);
  ASSERT_TRUE(r->findings[0].auroc.has_value());
  const double auroc = *r->findings[0].auroc;
  std::printf("built-in model %s: Pneumonia AUROC %.4f (%.4f-%.4f) on %d held-out images of %d patients; report says %.4f\n",
              dir.filename().c_str(), auroc, r->findings[0].auroc_low, r->findings[0].auroc_high, r->images, r->patients, stated);
  EXPECT_GE(auroc, 0.96) << "the built-in model misses its goal";
  EXPECT_NEAR(auroc, stated, 0.002) << "the shipped F16 weights do not give the figures of their training report";
}

}  // namespace
