// Agreement statistics against an independent computation: tests/reference/make_agreement_reference.py
// (scikit-learn's cohen_kappa_score; Fleiss' kappa and Krippendorff's alpha in NumPy) wrote
// golden_agreement/agreement.json; every value is matched to 1e-9.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "hilum/training/agreement.hpp"

namespace hilum::training {
namespace {

nlohmann::json golden() {
  std::ifstream in(std::string(HILUM_AGREEMENT_GOLDEN_DIR) + "/agreement.json");
  EXPECT_TRUE(in.good());
  return nlohmann::json::parse(in);
}

TEST(Agreement, MatchesScikitLearnAndTheReferenceFormulas) {
  const auto g = golden();
  const auto rows = g["ratings"].get<std::vector<std::vector<int>>>();
  const auto readers = g["readers"].get<std::vector<std::string>>();
  ASSERT_EQ(rows.size(), 40u);
  const auto column = [&](std::size_t r) {
    std::vector<int> c;
    for (const auto& row : rows) c.push_back(row[r]);
    return c;
  };
  ASSERT_EQ(g["cohen_kappa"].size(), 6u);
  for (const auto& pair : g["cohen_kappa"]) {
    const auto a = std::find(readers.begin(), readers.end(), pair["readers"][0].get<std::string>()) - readers.begin();
    const auto b = std::find(readers.begin(), readers.end(), pair["readers"][1].get<std::string>()) - readers.begin();
    const auto k = cohen_kappa(column(static_cast<std::size_t>(a)), column(static_cast<std::size_t>(b)));
    ASSERT_TRUE(k.has_value());
    EXPECT_NEAR(*k, pair["cohen_kappa"].get<double>(), 1e-9) << pair.dump();
  }
  const auto fleiss = fleiss_kappa(rows);
  ASSERT_TRUE(fleiss.has_value());
  EXPECT_NEAR(*fleiss, g["fleiss_kappa"].get<double>(), 1e-9);
  const auto alpha = krippendorff_alpha_nominal(rows);
  ASSERT_TRUE(alpha.has_value());
  EXPECT_NEAR(*alpha, g["krippendorff_alpha"].get<double>(), 1e-9);
}

TEST(Agreement, PerfectChanceAndUndefinedCases) {
  EXPECT_NEAR(*cohen_kappa({0, 1, 1, 0}, {0, 1, 1, 0}), 1.0, 1e-12);
  EXPECT_NEAR(*cohen_kappa({0, 1, 0, 1}, {0, 0, 1, 1}), 0.0, 1e-12);      // agreement at chance
  EXPECT_FALSE(cohen_kappa({1, 1, 1}, {1, 1, 1}).has_value());            // one category: pe = 1
  EXPECT_FALSE(cohen_kappa({0, kMissing}, {kMissing, 1}).has_value());    // no item rated by both
  EXPECT_NEAR(*krippendorff_alpha_nominal({{0, 0}, {1, 1}, {0, kMissing}}), 1.0, 1e-12);
  EXPECT_FALSE(fleiss_kappa({{0, kMissing}}).has_value());
}

TEST(Agreement, PatientBootstrapIsDeterministicAndBracketsTheEstimate) {
  const auto g = golden();
  const auto rows = g["ratings"].get<std::vector<std::vector<int>>>();
  const auto patients = g["patients"].get<std::vector<std::size_t>>();
  const auto stat = [&](const std::vector<std::size_t>& items) {
    std::vector<std::vector<int>> sample;
    for (auto i : items) sample.push_back(rows[i]);
    return krippendorff_alpha_nominal(sample);
  };
  const auto a = cluster_bootstrap(patients, 400, 7, stat);
  const auto b = cluster_bootstrap(patients, 400, 7, stat);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->low, b->low);
  EXPECT_EQ(a->high, b->high);
  const double estimate = g["krippendorff_alpha"].get<double>();
  EXPECT_LT(a->low, estimate);
  EXPECT_GT(a->high, estimate);
  EXPECT_LT(a->high - a->low, 1.0);
  // One patient: no interval (resampling one cluster says nothing about the spread).
  EXPECT_FALSE(cluster_bootstrap(std::vector<std::size_t>(rows.size(), 0), 100, 7, stat).has_value());
}

}  // namespace
}  // namespace hilum::training
