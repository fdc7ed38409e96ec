// The shipped built-in model (resources/models/, found as the application finds it) on the
// patients its training run held out of ../shared/data (pediatric and adult folders), recomputed
// from the folders and the seed in its training_report.json: the figures its report and model card
// state, per population, and its goals. Then its domain check on real files: chest radiographs it
// never saw are within its domain; CT, MR and NM images are not, whatever their header says.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "hilum/app/classify.hpp"
#include "hilum/app/domain.hpp"
#include "hilum/app/train.hpp"
#include "hilum/dicom/reader.hpp"

namespace fs = std::filesystem;
namespace app = hilum::app;

namespace {

const fs::path kPediatric = HILUM_PNEUMONIA_DATA;
const fs::path kAdult = HILUM_ADULT_DATA;

struct Builtin {
  fs::path dir;
  hilum::inference::ViTModel model;
  hilum::inference::ModelExtras extras;
  nlohmann::json report;
};

Builtin load_builtin() {
  ::unsetenv("HILUM_BUILTIN_MODEL");
  const fs::path dir = app::builtin_model_dir();
  EXPECT_FALSE(dir.empty()) << "no built-in model in resources/models/";
  auto model = hilum::inference::ViTModel::load(dir);
  EXPECT_TRUE(model.ok()) << model.error().message;
  auto extras = hilum::inference::read_model_extras(dir, model->config());
  EXPECT_TRUE(extras.ok()) << extras.error().message;
  std::ifstream in(dir / "training_report.json");
  auto report = nlohmann::json::parse(in, nullptr, false);
  EXPECT_TRUE(report.is_object()) << "training_report.json is missing or damaged";
  return Builtin{dir, std::move(model.value()), std::move(extras.value()), std::move(report)};
}

// The report's figure (`what`: "auroc", "ece") for `finding` in `population`.
double stated(const nlohmann::json& report, const std::string& population, const std::string& finding, const char* what = "auroc") {
  for (const auto& p : report.at("populations")) {
    if (p.at("population") != population) continue;
    for (const auto& f : p.at("findings")) {
      if (f.at("finding") == finding) return f.at(what).get<double>();
    }
  }
  ADD_FAILURE() << "the report has no " << finding << " for " << population;
  return 0.0;
}

const app::FindingMetrics* metrics_of(const app::EvaluationReport& r, const std::string& finding) {
  for (const auto& f : r.findings) {
    if (f.finding == finding) return &f;
  }
  return nullptr;
}

TEST(BuiltinModel, ReproducesItsFiguresPerPopulationOnHeldOutPatients) {
  ASSERT_TRUE(fs::is_directory(kPediatric) && fs::is_directory(kAdult)) << "these tests need ../shared/data";
  const Builtin b = load_builtin();
  ASSERT_TRUE(b.extras.calibration.has_value()) << "the built-in model ships its calibration";
  const auto seed = b.report.at("seed").get<std::uint64_t>();
  for (const auto& [population, folder] : {std::pair{std::string("pediatric"), kPediatric}, std::pair{std::string("adult"), kAdult}}) {
    auto r = app::evaluate_folder(b.model, folder, app::PatientSplit{seed, app::TrainOptions{}.validation_fraction, 0}, nullptr, &b.extras);
    ASSERT_TRUE(r.ok()) << r.error().message;
    for (const std::string finding : {"Pneumonia", "No Finding"}) {
      const auto* f = metrics_of(*r, finding);
      ASSERT_NE(f, nullptr) << finding;
      ASSERT_TRUE(f->auroc.has_value());
      const double auroc = stated(b.report, population, finding);
      const double ece = stated(b.report, population, finding, "ece");
      std::printf("built-in model %s, %s, %s: AUROC %.4f (%.4f-%.4f), ECE %.3f on %d held-out images of %d patients; report says %.4f, %.3f\n",
                  b.dir.filename().c_str(), population.c_str(), finding.c_str(), *f->auroc, f->auroc_low, f->auroc_high, f->ece, r->images,
                  r->patients, auroc, ece);
      EXPECT_NEAR(*f->auroc, auroc, 0.003) << "the shipped F16 weights do not give the figures of their training report";
      // Each image calibrated by the population its age or embedding points to, as for a reader.
      EXPECT_NEAR(f->ece, ece, 0.01) << "the shipped calibration does not give the report's ECE";
    }
    if (population == "pediatric") {
      EXPECT_GE(*metrics_of(*r, "Pneumonia")->auroc, 0.96) << "the pediatric goal";
    }
  }
}

// Real chest films from other sources than the training data: within the domain.
TEST(BuiltinModelDomain, RealChestFilmsItNeverSawAreWithinItsDomain) {
  const Builtin b = load_builtin();
  ASSERT_TRUE(b.extras.domain.has_value()) << "the built-in model ships its domain reference";
  app::LoadedModel loaded{{}, b.model, b.extras};
  int checked = 0;
  for (const char* name : {"gdcm-CR-MONO1-10-chest.dcm", "RSNA_pneumonia_CR.dcm", "NIH_DX_nofinding_gcp.dcm"}) {
    auto image = hilum::dicom::read_radiograph(fs::path(HILUM_SHARED_DICOM) / name);
    ASSERT_TRUE(image.ok()) << name;
    auto p = app::classify_radiograph(loaded, image.value());
    ASSERT_TRUE(p.ok()) << p.error().message;
    std::printf("%s: in_domain %d, score %.2f: %s\n", name, p->domain.in_domain, p->domain.score.value_or(-1), p->domain.reason.c_str());
    EXPECT_TRUE(p->domain.in_domain) << name << ": " << p->domain.reason;
    ++checked;
  }
  EXPECT_EQ(checked, 3);
}

// Real radiographs that are not of the chest (a leg, RG3_J2KR; a dental panoramic,
// CR-ModalitySequenceLUT): outside, from the pixels, even with a chest header.
TEST(BuiltinModelDomain, RadiographsOfOtherBodyPartsAreOutside) {
  const Builtin b = load_builtin();
  ASSERT_TRUE(b.extras.domain.has_value());
  app::LoadedModel loaded{{}, b.model, b.extras};
  for (const char* name : {"RG3_J2KR.dcm", "CR-ModalitySequenceLUT.dcm"}) {
    auto image = hilum::dicom::read_radiograph(fs::path(HILUM_SHARED_DICOM) / name);
    ASSERT_TRUE(image.ok()) << name;
    image->meta.body_part_examined = "CHEST";
    auto p = app::classify_radiograph(loaded, image.value());
    ASSERT_TRUE(p.ok()) << p.error().message;
    std::printf("%s with a chest header: score %.2f\n", name, p->domain.score.value_or(-1));
    EXPECT_FALSE(p->domain.in_domain) << name << ": " << p->domain.reason;
  }
}

// CT, MR and NM images: outside, with their own header and with a header that says "chest DX".
TEST(BuiltinModelDomain, OtherModalitiesAreOutsideWhateverTheHeaderSays) {
  const Builtin b = load_builtin();
  ASSERT_TRUE(b.extras.domain.has_value());
  app::LoadedModel loaded{{}, b.model, b.extras};
  for (const char* name : {"CT_small.dcm", "693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm", "MR_small.dcm", "JPEG2000.dcm", "image_dfl.dcm"}) {
    auto image = hilum::dicom::read_radiograph(fs::path(HILUM_PYDICOM_FILES) / name);
    ASSERT_TRUE(image.ok()) << name << ": " << image.error().message;
    auto honest = app::classify_radiograph(loaded, image.value());
    ASSERT_TRUE(honest.ok());
    EXPECT_FALSE(honest->domain.in_domain) << name << " with its own header: " << honest->domain.reason;
    // The same pixels with the header of a chest radiograph: the pixels must give it away.
    image->meta.modality = "DX";
    image->meta.body_part_examined = "CHEST";
    image->meta.sop_class_uid = "1.2.840.10008.5.1.4.1.1.1.1";
    auto lying = app::classify_radiograph(loaded, image.value());
    ASSERT_TRUE(lying.ok());
    std::printf("%s: score %.2f with a chest DX header\n", name, lying->domain.score.value_or(-1));
    EXPECT_FALSE(lying->domain.in_domain) << name << " with a chest DX header: " << lying->domain.reason;
    EXPECT_GT(lying->domain.score.value_or(0), 1.0);
  }
}

}  // namespace
