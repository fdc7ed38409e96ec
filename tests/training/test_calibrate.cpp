// Calibration and the domain reference: Platt scaling recovers the scaling that generated the
// labels, and the domain reference separates points of its distribution from points far from it.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "hilum/training/calibrate.hpp"
#include "hilum/training/metrics.hpp"

namespace hilum::training {
namespace {

TEST(Platt, RecoversTheScalingThatMadeTheLabels) {
  // Labels drawn with P(y = 1) = sigmoid(2.5 z - 1): the fit must find a ~ 2.5, b ~ -1.
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::vector<double> z;
  std::vector<int> y;
  for (int i = 0; i < 20000; ++i) {
    const double logit = normal(rng);
    z.push_back(logit);
    y.push_back(uniform(rng) < 1.0 / (1.0 + std::exp(-(2.5 * logit - 1.0))) ? 1 : 0);
  }
  const auto s = fit_platt(z, y);
  EXPECT_NEAR(s.a, 2.5, 0.12);
  EXPECT_NEAR(s.b, -1.0, 0.08);
  // And the calibrated probabilities have a small ECE where the raw sigmoid has a large one.
  std::vector<double> raw, calibrated;
  for (double logit : z) {
    raw.push_back(1.0 / (1.0 + std::exp(-logit)));
    calibrated.push_back(1.0 / (1.0 + std::exp(-(s.a * logit + s.b))));
  }
  EXPECT_GT(expected_calibration_error(raw, y), 0.08);
  EXPECT_LT(expected_calibration_error(calibrated, y), 0.02);
}

TEST(Platt, OneClassOnlyGivesTheIdentity) {
  const auto s = fit_platt({0.1, 0.5, 2.0}, {1, 1, 1});
  EXPECT_EQ(s.a, 1.0);
  EXPECT_EQ(s.b, 0.0);
}

TEST(Platt, NeverReversesTheRanking) {
  // An output that orders the images backwards keeps its ranking (identity), so a wrong model
  // cannot look right after calibration.
  std::vector<double> z;
  std::vector<int> y;
  for (int i = 0; i < 200; ++i) {
    z.push_back(i * 0.01);
    y.push_back(i < 100 ? 1 : 0);
  }
  const auto s = fit_platt(z, y);
  EXPECT_EQ(s.a, 1.0);
  EXPECT_EQ(s.b, 0.0);
}

TEST(Platt, SeparableDataStaysFinite) {
  // Perfectly separated classes: Platt's smoothed targets keep the slope finite.
  std::vector<double> z;
  std::vector<int> y;
  for (int i = 0; i < 50; ++i) {
    z.push_back(-1.0 - i * 0.01);
    y.push_back(0);
    z.push_back(1.0 + i * 0.01);
    y.push_back(1);
  }
  const auto s = fit_platt(z, y);
  EXPECT_TRUE(std::isfinite(s.a) && std::isfinite(s.b));
  EXPECT_GT(s.a, 1.0);
  EXPECT_LT(s.a, 50.0);
}

inference::Matrix gaussian(int n, int d, double scale_first, std::uint64_t seed, double shift = 0.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  inference::Matrix m(n, d);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < d; ++j) {
      // Anisotropic: the first dimensions spread widely, the rest little (like embeddings).
      const double sd = j < 4 ? scale_first : 0.1;
      m(i, j) = static_cast<float>(normal(rng) * sd + shift + (j == 0 ? 3.0 : 0.0));
    }
  }
  return m;
}

TEST(DomainReference, ThresholdIsTheHeldOutQuantileAndFarPointsAreOutside) {
  const int d = 24;
  const auto train = gaussian(800, d, 2.0, 1);
  const auto held_out = gaussian(400, d, 2.0, 2);
  const auto r = fit_subspace(train, held_out, 8, 0.95);
  ASSERT_EQ(r.mean.size(), d);
  EXPECT_EQ(r.axes.rows(), 8);
  EXPECT_NEAR(r.mean(0), 3.0, 0.3);
  // The axes are orthonormal.
  const inference::Matrix gram = r.axes * r.axes.transpose();
  EXPECT_TRUE(gram.isApprox(inference::Matrix::Identity(8, 8), 1e-4f));
  // About 5% of new points from the same distribution fall outside; shifted points all do, even
  // a shift along the low-variance directions that a plain Euclidean distance would hardly see.
  const auto fresh = gaussian(2000, d, 2.0, 3);
  int outside = 0;
  for (int i = 0; i < fresh.rows(); ++i) {
    const Eigen::VectorXf row = fresh.row(i).transpose();
    outside += inference::distance(r, row.data(), d) > r.threshold ? 1 : 0;
  }
  EXPECT_NEAR(outside / 2000.0, 0.05, 0.025);
  const auto shifted = gaussian(200, d, 2.0, 4, 0.6);
  int shifted_outside = 0;
  for (int i = 0; i < shifted.rows(); ++i) {
    const Eigen::VectorXf row = shifted.row(i).transpose();
    shifted_outside += inference::distance(r, row.data(), d) > r.threshold ? 1 : 0;
  }
  EXPECT_GE(shifted_outside, 196);
}

TEST(DomainReference, FewFilmsGetFewAxes) {
  const auto train = gaussian(20, 16, 1.0, 5);
  const auto r = fit_subspace(train, inference::Matrix(0, 16), 64, 0.99);
  EXPECT_EQ(r.axes.rows(), 5);  // a quarter of the films
  EXPECT_GT(r.threshold, 0.0);
  EXPECT_GT(r.residual_variance, 0.0);
}

}  // namespace
}  // namespace hilum::training
