// Losses against PyTorch (BCEWithLogitsLoss with pos_weight and a mask, cross-entropy) and the
// positive-weight helper.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hilum/training/loss.hpp"

namespace {

using hilum::training::Matrix;
using nlohmann::json;

json load_golden(const std::string& name) {
  std::ifstream in(std::string(HILUM_OPTIM_GOLDEN_DIR) + "/" + name);
  EXPECT_TRUE(in.good()) << "missing golden " << name << " (run tests/reference/make_optim_reference.py)";
  return json::parse(in);
}

Matrix to_matrix(const json& rows) {
  Matrix m(static_cast<Eigen::Index>(rows.size()), static_cast<Eigen::Index>(rows[0].size()));
  for (Eigen::Index i = 0; i < m.rows(); ++i)
    for (Eigen::Index j = 0; j < m.cols(); ++j) m(i, j) = rows[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)].get<float>();
  return m;
}

void expect_matrix_near(const Matrix& actual, const json& expected, double rel) {
  ASSERT_EQ(actual.rows(), static_cast<Eigen::Index>(expected.size()));
  for (Eigen::Index i = 0; i < actual.rows(); ++i)
    for (Eigen::Index j = 0; j < actual.cols(); ++j) {
      const double e = expected[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)].get<double>();
      EXPECT_NEAR(actual(i, j), e, rel * std::max(std::abs(e), 1e-3)) << "(" << i << ", " << j << ")";
    }
}

TEST(BceWithLogits, MatchesTorchWithPosWeightAndMask) {
  const json g = load_golden("bce.json");
  const Matrix logits = to_matrix(g["logits"]);
  const Matrix targets = to_matrix(g["targets"]);
  const Matrix mask = to_matrix(g["mask"]);
  const auto pos_weight = g["pos_weight"].get<std::vector<float>>();
  const auto r = hilum::training::bce_with_logits(logits, targets, mask, pos_weight);
  EXPECT_NEAR(r.loss, g["loss"].get<double>(), 1e-6 * g["loss"].get<double>());
  expect_matrix_near(r.dlogits, g["grad"], 1e-6);
  const auto r2 = hilum::training::bce_with_logits(logits, targets, mask);
  EXPECT_NEAR(r2.loss, g["loss_no_pos_weight"].get<double>(), 1e-6 * g["loss_no_pos_weight"].get<double>());
  expect_matrix_near(r2.dlogits, g["grad_no_pos_weight"], 1e-6);
  EXPECT_NE(r.loss, r2.loss);
}

TEST(BceWithLogits, MaskedEntriesContributeNothing) {
  const json g = load_golden("bce.json");
  Matrix logits = to_matrix(g["logits"]);
  Matrix targets = to_matrix(g["targets"]);
  const Matrix mask = to_matrix(g["mask"]);
  const auto a = hilum::training::bce_with_logits(logits, targets, mask);
  ASSERT_EQ(mask(2, 3), 0.0f);
  logits(2, 3) = 1000.0f;
  targets(2, 3) = 1.0f - targets(2, 3);
  const auto b = hilum::training::bce_with_logits(logits, targets, mask);
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_EQ(b.dlogits(2, 3), 0.0f);
}

TEST(BceWithLogits, StableForHugeLogitsAndHandCase) {
  Matrix logits(1, 4);
  logits << 1000.0f, -1000.0f, 0.0f, 2.0f;
  Matrix targets(1, 4);
  targets << 1.0f, 0.0f, 1.0f, 0.0f;
  const Matrix mask = Matrix::Ones(1, 4);
  const auto r = hilum::training::bce_with_logits(logits, targets, mask);
  // Confident and right: 0; log(2) for a logit of 0; softplus(2) for a negative at 2.
  const double expected = (std::log(2.0) + std::log1p(std::exp(2.0))) / 4.0;
  EXPECT_NEAR(r.loss, expected, 1e-12);
  EXPECT_TRUE(std::isfinite(r.dlogits(0, 0)) && std::isfinite(r.dlogits(0, 1)));
  EXPECT_NEAR(r.dlogits(0, 2), (0.5 - 1.0) / 4.0, 1e-7);
  EXPECT_NEAR(r.dlogits(0, 3), 1.0 / (1.0 + std::exp(-2.0)) / 4.0, 1e-7);
  // Confident and wrong: the loss is the logit's size, not inf.
  targets << 0.0f, 1.0f, 1.0f, 0.0f;
  const auto w = hilum::training::bce_with_logits(logits, targets, mask);
  EXPECT_NEAR(w.loss, (1000.0 + 1000.0 + std::log(2.0) + std::log1p(std::exp(2.0))) / 4.0, 1e-9);
}

TEST(BceWithLogits, AllMaskedIsZeroAndShapesAreChecked) {
  const Matrix logits = Matrix::Constant(2, 3, 0.7f);
  const auto r = hilum::training::bce_with_logits(logits, Matrix::Ones(2, 3), Matrix::Zero(2, 3));
  EXPECT_EQ(r.loss, 0.0);
  EXPECT_EQ(r.dlogits.cwiseAbs().maxCoeff(), 0.0f);
  EXPECT_THROW((void)hilum::training::bce_with_logits(logits, Matrix::Ones(2, 2), Matrix::Ones(2, 3)), std::invalid_argument);
  EXPECT_THROW((void)hilum::training::bce_with_logits(logits, Matrix::Ones(2, 3), Matrix::Ones(2, 3), {1.0f}),
               std::invalid_argument);
}

TEST(SoftmaxCrossEntropy, MatchesTorch) {
  const json g = load_golden("ce.json");
  const Matrix logits = to_matrix(g["logits"]);
  const auto classes = g["classes"].get<std::vector<int>>();
  const auto r = hilum::training::softmax_cross_entropy(logits, classes);
  EXPECT_NEAR(r.loss, g["loss"].get<double>(), 1e-6 * g["loss"].get<double>());
  expect_matrix_near(r.dlogits, g["grad"], 1e-6);
  // Each row's gradient sums to zero.
  for (Eigen::Index i = 0; i < r.dlogits.rows(); ++i) EXPECT_NEAR(r.dlogits.row(i).sum(), 0.0f, 1e-7);
}

TEST(SoftmaxCrossEntropy, HandCaseAndBadClass) {
  Matrix logits(1, 3);
  logits << 0.0f, 0.0f, 0.0f;
  const auto r = hilum::training::softmax_cross_entropy(logits, {1});
  EXPECT_NEAR(r.loss, std::log(3.0), 1e-12);
  EXPECT_NEAR(r.dlogits(0, 1), 1.0 / 3.0 - 1.0, 1e-7);
  EXPECT_NEAR(r.dlogits(0, 0), 1.0 / 3.0, 1e-7);
  EXPECT_THROW((void)hilum::training::softmax_cross_entropy(logits, {3}), std::invalid_argument);
  EXPECT_THROW((void)hilum::training::softmax_cross_entropy(logits, {0, 1}), std::invalid_argument);
}

TEST(PositiveWeights, NegativesOverPositivesClampedAndMasked) {
  Matrix targets(6, 4);
  Matrix mask = Matrix::Ones(6, 4);
  // col 0: 2 positives, 4 negatives -> 2; col 1: no positive -> 1; col 2: 1 positive, 5 negatives but
  // two negatives masked -> 3; col 3: 5 positives, 1 negative -> clamped up to 1.
  targets << 1, 0, 1, 1,  //
      1, 0, 0, 1,         //
      0, 0, 0, 1,         //
      0, 0, 0, 1,         //
      0, 0, 0, 1,         //
      0, 0, 0, 0;
  mask(4, 2) = 0.0f;
  mask(5, 2) = 0.0f;
  const auto w = hilum::training::positive_weights(targets, mask);
  ASSERT_EQ(w.size(), 4u);
  EXPECT_FLOAT_EQ(w[0], 2.0f);
  EXPECT_FLOAT_EQ(w[1], 1.0f);
  EXPECT_FLOAT_EQ(w[2], 3.0f);
  EXPECT_FLOAT_EQ(w[3], 1.0f);
  // Clamped to max_weight.
  const auto capped = hilum::training::positive_weights(targets, Matrix::Ones(6, 4), 2.5f);
  EXPECT_FLOAT_EQ(capped[2], 2.5f);  // 5 / 1 capped
}

}  // namespace
