// AUROC (Mann-Whitney, ties = 1/2) with DeLong's CI against a slow NumPy reference, ECE and the
// Youden threshold on hand-checked cases.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "hilum/training/metrics.hpp"

namespace {

using hilum::training::auroc;
using hilum::training::ece_by_chance;
using hilum::training::expected_calibration_error;
using hilum::training::youden_threshold;

TEST(Auroc, PerfectInvertedAndAllTied) {
  const std::vector<double> s{0.1, 0.2, 0.3, 0.7, 0.8, 0.9};
  const auto perfect = auroc(s, {0, 0, 0, 1, 1, 1});
  ASSERT_TRUE(perfect.has_value());
  EXPECT_DOUBLE_EQ(perfect->value, 1.0);
  EXPECT_EQ(perfect->positives, 3);
  EXPECT_EQ(perfect->negatives, 3);
  // Every structural component is 1 (or 0): DeLong's variance is 0.
  EXPECT_DOUBLE_EQ(perfect->ci_low, 1.0);
  EXPECT_DOUBLE_EQ(perfect->ci_high, 1.0);
  const auto inverted = auroc(s, {1, 1, 1, 0, 0, 0});
  ASSERT_TRUE(inverted.has_value());
  EXPECT_DOUBLE_EQ(inverted->value, 0.0);
  const auto tied = auroc({0.4, 0.4, 0.4, 0.4, 0.4}, {0, 1, 0, 1, 1});
  ASSERT_TRUE(tied.has_value());
  EXPECT_DOUBLE_EQ(tied->value, 0.5);
  EXPECT_EQ(tied->positives, 3);
  EXPECT_EQ(tied->negatives, 2);
}

TEST(Auroc, SmallHandCases) {
  // Positives 0.35 and 0.8 against negatives 0.1 and 0.4: 0.35 beats one, 0.8 beats both -> 3/4.
  const auto a = auroc({0.1, 0.4, 0.35, 0.8}, {0, 0, 1, 1});
  ASSERT_TRUE(a.has_value());
  EXPECT_DOUBLE_EQ(a->value, 0.75);
  // A tie between a positive and a negative counts half: (0.5 + 1 + 1 + 1) / 4.
  const auto b = auroc({0.5, 0.5, 0.2, 0.9}, {1, 0, 0, 1});
  ASSERT_TRUE(b.has_value());
  EXPECT_DOUBLE_EQ(b->value, 0.875);
  // By hand, DeLong for b: V10 = (0.75, 1), V01 = (0.75, 1) (negatives 0.5, 0.2);
  // S10 = S01 = 0.03125 -> variance = 0.03125/2 + 0.03125/2 = 0.03125.
  const double half = 1.959963984540054 * std::sqrt(0.03125);
  EXPECT_NEAR(b->ci_low, 0.875 - half, 1e-12);
  EXPECT_NEAR(b->ci_high, 1.0, 1e-12);  // 0.875 + 0.346 clamped
}

TEST(Auroc, OneClassMissingGivesNothing) {
  EXPECT_FALSE(auroc({0.1, 0.2}, {1, 1}).has_value());
  EXPECT_FALSE(auroc({0.1, 0.2}, {0, 0}).has_value());
  EXPECT_FALSE(auroc({}, {}).has_value());
  EXPECT_THROW((void)auroc({0.1}, {1, 0}), std::invalid_argument);
}

TEST(Auroc, DeLongMatchesSlowNumPyReference) {
  std::ifstream in(std::string(HILUM_OPTIM_GOLDEN_DIR) + "/delong.json");
  ASSERT_TRUE(in.good());
  const auto g = nlohmann::json::parse(in);
  for (const auto& c : g["cases"]) {
    const auto r = auroc(c["scores"].get<std::vector<double>>(), c["labels"].get<std::vector<int>>());
    ASSERT_TRUE(r.has_value());
    EXPECT_NEAR(r->value, c["auc"].get<double>(), 1e-12);
    EXPECT_NEAR(r->ci_low, c["ci_low"].get<double>(), 1e-12);
    EXPECT_NEAR(r->ci_high, c["ci_high"].get<double>(), 1e-12);
  }
}

TEST(Auroc, LargeInputAgreesWithPairCounting) {
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal;
  std::vector<double> s;
  std::vector<int> l;
  for (int i = 0; i < 3000; ++i) {
    l.push_back(i % 3 == 0 ? 1 : 0);
    s.push_back(std::round((normal(rng) + 0.7 * l.back()) * 4.0) / 4.0);  // coarse: many ties
  }
  double wins = 0.0;
  double pairs = 0.0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (l[i] != 1) continue;
    for (std::size_t j = 0; j < s.size(); ++j) {
      if (l[j] != 0) continue;
      wins += s[i] > s[j] ? 1.0 : (s[i] == s[j] ? 0.5 : 0.0);
      pairs += 1.0;
    }
  }
  const auto r = auroc(s, l);
  ASSERT_TRUE(r.has_value());
  EXPECT_NEAR(r->value, wins / pairs, 1e-12);
  EXPECT_LT(r->ci_low, r->value);
  EXPECT_GT(r->ci_high, r->value);
}

TEST(Ece, HandCases) {
  // One sample per bin, each |0 or 1 - p| : (0.05 + 0.15 + 0.05 + 0.15) / 4.
  EXPECT_NEAR(expected_calibration_error({0.05, 0.15, 0.95, 0.85}, {0, 0, 1, 1}), 0.1, 1e-12);
  // Two bins; all three in [0, 0.5): mean confidence 0.25, positive rate 1/3.
  EXPECT_NEAR(expected_calibration_error({0.2, 0.25, 0.3}, {1, 0, 0}, 2), 1.0 / 3.0 - 0.25, 1e-12);
  // Perfectly calibrated.
  EXPECT_NEAR(expected_calibration_error({0.5, 0.5, 0.5, 0.5}, {1, 0, 1, 0}), 0.0, 1e-12);
  // p = 1 lands in the last bin; bins weighted by size: (2/3) * 0 + (1/3) * |0 - 0.1|.
  EXPECT_NEAR(expected_calibration_error({1.0, 1.0, 0.1}, {1, 1, 0}), 0.1 / 3.0, 1e-12);
  EXPECT_EQ(expected_calibration_error({}, {}), 0.0);
}

// The ECE a calibrated model shows by chance: zero where nothing is left to chance, the only
// possible value for one film, and NumPy's figure (100,000 draws, bench/model/population_report.py's
// method) for 70 films spread over [0, 1], which is far above 0.05.
TEST(Ece, ByChance) {
  EXPECT_DOUBLE_EQ(ece_by_chance({0.0, 1.0, 1.0, 0.0}), 0.0);
  EXPECT_DOUBLE_EQ(ece_by_chance({0.5}), 0.5);  // a label of 0 or 1: |y - 0.5| either way
  // Two films at 0.5 in one bin: ECE 0 (one positive) or 0.5 (none or both), half the time each.
  EXPECT_DOUBLE_EQ(ece_by_chance({0.5, 0.5}, 0.25, 1000, 1, 1), 0.0);
  EXPECT_DOUBLE_EQ(ece_by_chance({0.5, 0.5}, 0.95, 1000, 1, 1), 0.5);
  std::vector<double> p70;
  for (int i = 0; i < 70; ++i) p70.push_back((i + 0.5) / 70.0);
  EXPECT_NEAR(ece_by_chance(p70), 0.170, 0.01);         // NumPy: 0.170
  EXPECT_NEAR(ece_by_chance(p70, 0.5), 0.1186, 0.01);   // NumPy's median: 0.1186
  EXPECT_DOUBLE_EQ(ece_by_chance(p70), ece_by_chance(p70));  // a fixed seed
  // It shrinks with the number of films, and a miscalibrated model on many films stands above it.
  std::vector<double> p7000;
  for (int i = 0; i < 7000; ++i) p7000.push_back((i + 0.5) / 7000.0);
  const double floor7000 = ece_by_chance(p7000, 0.95, 200);
  EXPECT_LT(floor7000 * 5.0, ece_by_chance(p70));
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<int> over;  // the model says p, the truth is p squared: over-confident positives
  for (double q : p7000) over.push_back(u(rng) < q * q ? 1 : 0);
  EXPECT_GT(expected_calibration_error(p7000, over), 3.0 * floor7000);
  EXPECT_THROW((void)ece_by_chance(p70, 1.5), std::invalid_argument);
}

TEST(Youden, HandCases) {
  // Descending thresholds: 0.7 J=1/3, 0.6 J=2/3, 0.4 J=1/3, 0.3 J=2/3, 0.2 J=1/3, 0.1 J=0.
  // Equal J: the higher threshold (0.6) wins.
  const auto t = youden_threshold({0.1, 0.2, 0.3, 0.4, 0.6, 0.7}, {0, 0, 1, 0, 1, 1});
  EXPECT_DOUBLE_EQ(t.threshold, 0.6);
  EXPECT_DOUBLE_EQ(t.sensitivity, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(t.specificity, 1.0);
  // Perfectly separable: the lowest positive score, sensitivity = specificity = 1.
  const auto p = youden_threshold({0.9, 0.1, 0.35, 0.6, 0.2}, {1, 0, 0, 1, 0});
  EXPECT_DOUBLE_EQ(p.threshold, 0.6);
  EXPECT_DOUBLE_EQ(p.sensitivity, 1.0);
  EXPECT_DOUBLE_EQ(p.specificity, 1.0);
  // Ties in scores are one candidate: at 0.5 both the positive and the negative flip.
  const auto q = youden_threshold({0.5, 0.5, 0.9, 0.1}, {1, 0, 1, 0});
  EXPECT_DOUBLE_EQ(q.threshold, 0.9);  // J = 0.5 at 0.9 and at 0.5 (1 + 0.5 - 1)
  EXPECT_DOUBLE_EQ(q.sensitivity, 0.5);
  EXPECT_DOUBLE_EQ(q.specificity, 1.0);
  // Inverted scores: no threshold beats J = 0; nothing is called positive.
  const auto inv = youden_threshold({0.9, 0.8, 0.1, 0.2}, {0, 0, 1, 1});
  EXPECT_GT(inv.threshold, 0.9);
  EXPECT_DOUBLE_EQ(inv.sensitivity, 0.0);
  EXPECT_DOUBLE_EQ(inv.specificity, 1.0);
}

}  // namespace
