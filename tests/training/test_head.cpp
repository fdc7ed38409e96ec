// Head fitting: the optimum against float64 NumPy references (logistic and squared-hinge SVM, with
// and without class balancing), an independent optimality check, a known separating direction,
// masks, single-class and empty columns, columns fitted independently.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "hilum/training/head.hpp"

namespace {

using hilum::training::fit_head;
using hilum::training::HeadOptions;
using hilum::training::Matrix;
using nlohmann::json;

struct Problem {
  Matrix x;
  Matrix targets;
  Matrix mask;
  double l2 = 0.0;
  json golden;
};

Problem golden_problem() {
  std::ifstream in(std::string(HILUM_OPTIM_GOLDEN_DIR) + "/head.json");
  EXPECT_TRUE(in.good());
  Problem p;
  p.golden = json::parse(in);
  const auto& e = p.golden["embeddings"];
  const auto n = static_cast<Eigen::Index>(e.size());
  const auto d = static_cast<Eigen::Index>(e[0].size());
  p.x.resize(n, d);
  p.targets.resize(n, 1);
  p.mask.resize(n, 1);
  for (Eigen::Index i = 0; i < n; ++i) {
    for (Eigen::Index j = 0; j < d; ++j) p.x(i, j) = e[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)].get<float>();
    p.targets(i, 0) = p.golden["targets"][static_cast<std::size_t>(i)].get<float>();
    p.mask(i, 0) = p.golden["mask"][static_cast<std::size_t>(i)].get<float>();
  }
  p.l2 = p.golden["l2"].get<double>();
  return p;
}

// The objective's gradient (documented in head.cpp), in double, independently of the solver.
double max_abs_gradient(const Problem& p, int col, const HeadOptions& o, const Eigen::VectorXd& w, double b) {
  const Eigen::Index n = p.x.rows();
  const Eigen::Index d = p.x.cols();
  double pos = 0.0;
  double neg = 0.0;
  for (Eigen::Index i = 0; i < n; ++i)
    if (p.mask(i, col) != 0.0f) (p.targets(i, col) > 0.5f ? pos : neg) += 1.0;
  const double wpos = o.balance ? (pos + neg) / (2 * pos) : 1.0;
  const double wneg = o.balance ? (pos + neg) / (2 * neg) : 1.0;
  const double total = pos * wpos + neg * wneg;
  Eigen::VectorXd g = o.l2 * w;
  double gb = 0.0;
  for (Eigen::Index i = 0; i < n; ++i) {
    if (p.mask(i, col) == 0.0f) continue;
    const bool y = p.targets(i, col) > 0.5f;
    const double a = (y ? wpos : wneg) / total;
    const double z = p.x.row(i).cast<double>().dot(w) + b;
    double r = 0.0;
    if (o.kind == HeadOptions::Kind::Logistic) {
      r = 1.0 / (1.0 + std::exp(-z)) - (y ? 1.0 : 0.0);
    } else {
      const double s = y ? 1.0 : -1.0;
      r = -2.0 * s * std::max(0.0, 1.0 - s * z);
    }
    g += a * r * p.x.row(i).cast<double>().transpose();
    gb += a * r;
  }
  (void)d;
  return std::max(g.cwiseAbs().maxCoeff(), std::abs(gb));
}

void check_against_reference(HeadOptions::Kind kind, bool balance, const char* key) {
  const Problem p = golden_problem();
  HeadOptions o;
  o.kind = kind;
  o.balance = balance;
  o.l2 = p.l2;
  o.tolerance = 1e-9;
  const auto fit = fit_head(p.x, p.targets, p.mask, o);
  const auto& ref = p.golden[key];
  ASSERT_EQ(fit.weights.rows(), 1);
  ASSERT_EQ(fit.weights.cols(), p.x.cols());
  for (Eigen::Index j = 0; j < p.x.cols(); ++j)
    EXPECT_NEAR(fit.weights(0, j), ref["weights"][static_cast<std::size_t>(j)].get<double>(), 2e-5) << key << " w" << j;
  EXPECT_NEAR(fit.bias(0), ref["bias"].get<double>(), 2e-5) << key;
  EXPECT_GT(fit.iterations[0], 0);
  EXPECT_LE(fit.iterations[0], o.max_iterations);
  const Eigen::VectorXd w = fit.weights.row(0).cast<double>().transpose();
  EXPECT_LT(max_abs_gradient(p, 0, o, w, fit.bias(0)), 1e-6) << key;
}

TEST(FitHead, LogisticBalancedMatchesReferenceOptimum) {
  check_against_reference(HeadOptions::Kind::Logistic, true, "logistic_balance_1");
}
TEST(FitHead, LogisticUnbalancedMatchesReferenceOptimum) {
  check_against_reference(HeadOptions::Kind::Logistic, false, "logistic_balance_0");
}
TEST(FitHead, SvmBalancedMatchesReferenceOptimum) {
  check_against_reference(HeadOptions::Kind::LinearSvm, true, "svm_balance_1");
}
TEST(FitHead, SvmUnbalancedMatchesReferenceOptimum) {
  check_against_reference(HeadOptions::Kind::LinearSvm, false, "svm_balance_0");
}

TEST(FitHead, DefaultToleranceReachesTheOptimumGradient) {
  const Problem p = golden_problem();
  HeadOptions o;
  o.l2 = p.l2;
  const auto fit = fit_head(p.x, p.targets, p.mask, o);
  const Eigen::VectorXd w = fit.weights.row(0).cast<double>().transpose();
  EXPECT_LT(max_abs_gradient(p, 0, o, w, fit.bias(0)), 2e-6);
}

TEST(FitHead, RecoversASeparatingDirection) {
  const int n = 3000;
  const int d = 12;
  std::mt19937_64 rng(11);
  std::normal_distribution<float> normal;
  Eigen::VectorXf beta(d);
  for (int j = 0; j < d; ++j) beta[j] = normal(rng);
  beta.normalize();
  Matrix x(n, d);
  Matrix targets(n, 2);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < d; ++j) x(i, j) = normal(rng);
    const float z = x.row(i).dot(beta) - 0.8f;  // ~21% positives
    targets(i, 0) = z > 0.0f ? 1.0f : 0.0f;
    targets(i, 1) = 1.0f - targets(i, 0);  // the same direction, flipped
  }
  for (const auto kind : {HeadOptions::Kind::Logistic, HeadOptions::Kind::LinearSvm}) {
    HeadOptions o;
    o.kind = kind;
    o.l2 = 1e-4;  // separable: little regularisation gives a sharp boundary
    const auto fit = fit_head(x, targets, Matrix::Ones(n, 2), o);
    for (int c = 0; c < 2; ++c) {
      const Eigen::VectorXf w = fit.weights.row(c).transpose();
      const float sign = c == 0 ? 1.0f : -1.0f;
      EXPECT_GT(sign * w.normalized().dot(beta), 0.99f) << "column " << c;
      // Balanced classes: sensitivity and specificity both high.
      int tp = 0, pos = 0, tn = 0, neg = 0;
      for (int i = 0; i < n; ++i) {
        const bool predicted = x.row(i).dot(w) + fit.bias(c) > 0.0f;
        const bool truth = targets(i, c) > 0.5f;
        pos += truth ? 1 : 0;
        neg += truth ? 0 : 1;
        tp += (truth && predicted) ? 1 : 0;
        tn += (!truth && !predicted) ? 1 : 0;
      }
      EXPECT_GT(tp, pos * 97 / 100) << "column " << c << " kind " << static_cast<int>(kind);
      EXPECT_GT(tn, neg * 97 / 100) << "column " << c << " kind " << static_cast<int>(kind);
    }
  }
}

TEST(FitHead, MaskedEntriesAreIgnored) {
  Problem p = golden_problem();
  HeadOptions o;
  o.l2 = p.l2;
  const auto a = fit_head(p.x, p.targets, p.mask, o);
  int masked = 0;
  for (Eigen::Index i = 0; i < p.x.rows(); ++i) {
    if (p.mask(i, 0) != 0.0f) continue;
    p.targets(i, 0) = 1.0f - p.targets(i, 0);  // garbage where nobody labelled
    ++masked;
  }
  ASSERT_GT(masked, 0);
  const auto b = fit_head(p.x, p.targets, p.mask, o);
  EXPECT_EQ(a.weights, b.weights);
  EXPECT_EQ(a.bias, b.bias);
  // Without the mask the fit is different.
  const auto c = fit_head(p.x, p.targets, Matrix::Ones(p.x.rows(), 1), o);
  EXPECT_GT((a.weights - c.weights).cwiseAbs().maxCoeff(), 1e-3f);
}

TEST(FitHead, SingleClassAndEmptyColumnsAndIndependentColumns) {
  const Problem p = golden_problem();
  const Eigen::Index n = p.x.rows();
  Matrix targets(n, 4);
  Matrix mask(n, 4);
  targets.col(0) = p.targets.col(0);
  mask.col(0) = p.mask.col(0);
  targets.col(1).setOnes();  // every labelled sample positive
  mask.col(1).setOnes();
  mask(0, 1) = 0.0f;
  targets(0, 1) = 0.0f;  // a negative, but masked
  targets.col(2).setZero();  // all negative
  mask.col(2).setOnes();
  targets.col(3) = p.targets.col(0);
  mask.col(3).setZero();  // nobody labelled anything
  HeadOptions o;
  o.l2 = p.l2;
  const auto fit = fit_head(p.x, targets, mask, o);
  ASSERT_EQ(fit.weights.rows(), 4);
  ASSERT_EQ(fit.iterations.size(), 4u);
  for (int c = 1; c < 4; ++c) {
    EXPECT_EQ(fit.weights.row(c).cwiseAbs().maxCoeff(), 0.0f) << c;
    EXPECT_EQ(fit.iterations[static_cast<std::size_t>(c)], 0) << c;
  }
  EXPECT_GT(fit.bias(1), 3.0f);   // base rate ~1: a large positive logit
  EXPECT_LT(fit.bias(2), -3.0f);  // base rate ~0
  EXPECT_TRUE(std::isfinite(fit.bias(1)) && std::isfinite(fit.bias(2)));
  EXPECT_EQ(fit.bias(3), 0.0f);
  // Column 0 is fitted as if alone.
  const auto alone = fit_head(p.x, p.targets, p.mask, o);
  for (Eigen::Index j = 0; j < p.x.cols(); ++j) EXPECT_NEAR(fit.weights(0, j), alone.weights(0, j), 1e-5);
  EXPECT_NEAR(fit.bias(0), alone.bias(0), 1e-5);
  EXPECT_GT(fit.weights.row(0).cwiseAbs().maxCoeff(), 0.1f);
}

TEST(FitHead, ShapesAreChecked) {
  EXPECT_THROW((void)fit_head(Matrix::Zero(5, 3), Matrix::Zero(4, 2), Matrix::Ones(4, 2)), std::invalid_argument);
  EXPECT_THROW((void)fit_head(Matrix::Zero(5, 3), Matrix::Zero(5, 2), Matrix::Ones(5, 1)), std::invalid_argument);
}

}  // namespace
