// Hilum training: losses (see loss.hpp). Accumulation in double; gradients returned in float.
#include "hilum/training/loss.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace hilum::training {

namespace {

// log(1 + exp(-|x|)) + max(-x, 0) = -log(sigmoid(x)), without overflow.
double neg_log_sigmoid(double x) { return std::log1p(std::exp(-std::abs(x))) + std::max(-x, 0.0); }

double sigmoid(double x) {
  if (x >= 0.0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

}  // namespace

LossResult bce_with_logits(const Matrix& logits, const Matrix& targets, const Matrix& mask,
                           const std::vector<float>& pos_weight) {
  if (targets.rows() != logits.rows() || targets.cols() != logits.cols() || mask.rows() != logits.rows() ||
      mask.cols() != logits.cols())
    throw std::invalid_argument("bce_with_logits: logits, targets and mask must have the same shape");
  if (!pos_weight.empty() && static_cast<Eigen::Index>(pos_weight.size()) != logits.cols())
    throw std::invalid_argument("bce_with_logits: pos_weight needs one value per label (" +
                                std::to_string(logits.cols()) + "), got " + std::to_string(pos_weight.size()));
  LossResult result;
  result.dlogits = Matrix::Zero(logits.rows(), logits.cols());
  // The mask is used as a per-entry weight (0 or 1 in practice): mean = sum(mask * l) / sum(mask).
  double count = 0.0;
  for (Eigen::Index i = 0; i < mask.rows(); ++i)
    for (Eigen::Index j = 0; j < mask.cols(); ++j) count += static_cast<double>(mask(i, j));
  if (count <= 0.0) return result;
  double total = 0.0;
  for (Eigen::Index i = 0; i < logits.rows(); ++i) {
    for (Eigen::Index j = 0; j < logits.cols(); ++j) {
      const double m = mask(i, j);
      if (m == 0.0) continue;
      const double x = logits(i, j);
      const double y = targets(i, j);
      const double p = pos_weight.empty() ? 1.0 : static_cast<double>(pos_weight[static_cast<std::size_t>(j)]);
      // torch: (1 - y) x + (1 + (p - 1) y) (log1p(exp(-|x|)) + max(-x, 0)).
      const double log_weight = 1.0 + (p - 1.0) * y;
      total += m * ((1.0 - y) * x + log_weight * neg_log_sigmoid(x));
      // d/dx = sigmoid(x) (1 + (p - 1) y) - p y.
      result.dlogits(i, j) = static_cast<float>(m * (sigmoid(x) * log_weight - p * y) / count);
    }
  }
  result.loss = total / count;
  return result;
}

LossResult softmax_cross_entropy(const Matrix& logits, const std::vector<int>& classes) {
  if (static_cast<Eigen::Index>(classes.size()) != logits.rows())
    throw std::invalid_argument("softmax_cross_entropy: one class per row is needed");
  LossResult result;
  result.dlogits = Matrix::Zero(logits.rows(), logits.cols());
  const Eigen::Index batch = logits.rows();
  if (batch == 0) return result;
  double total = 0.0;
  std::vector<double> e(static_cast<std::size_t>(logits.cols()));
  for (Eigen::Index i = 0; i < batch; ++i) {
    const int c = classes[static_cast<std::size_t>(i)];
    if (c < 0 || c >= logits.cols())
      throw std::invalid_argument("softmax_cross_entropy: class " + std::to_string(c) + " out of range");
    double max = -INFINITY;
    for (Eigen::Index j = 0; j < logits.cols(); ++j) max = std::max(max, static_cast<double>(logits(i, j)));
    double sum = 0.0;
    for (Eigen::Index j = 0; j < logits.cols(); ++j) {
      e[static_cast<std::size_t>(j)] = std::exp(static_cast<double>(logits(i, j)) - max);
      sum += e[static_cast<std::size_t>(j)];
    }
    total += std::log(sum) + max - static_cast<double>(logits(i, c));
    for (Eigen::Index j = 0; j < logits.cols(); ++j) {
      const double p = e[static_cast<std::size_t>(j)] / sum;
      result.dlogits(i, j) = static_cast<float>((p - (j == c ? 1.0 : 0.0)) / static_cast<double>(batch));
    }
  }
  result.loss = total / static_cast<double>(batch);
  return result;
}

std::vector<float> positive_weights(const Matrix& targets, const Matrix& mask, float max_weight) {
  if (mask.rows() != targets.rows() || mask.cols() != targets.cols())
    throw std::invalid_argument("positive_weights: targets and mask must have the same shape");
  std::vector<float> weights(static_cast<std::size_t>(targets.cols()), 1.0f);
  const double upper = std::max(1.0, static_cast<double>(max_weight));
  for (Eigen::Index j = 0; j < targets.cols(); ++j) {
    double positives = 0.0;
    double negatives = 0.0;
    for (Eigen::Index i = 0; i < targets.rows(); ++i) {
      const double m = mask(i, j);
      if (m == 0.0) continue;
      if (targets(i, j) > 0.5f)
        positives += m;
      else
        negatives += m;
    }
    if (positives > 0.0) weights[static_cast<std::size_t>(j)] = static_cast<float>(std::clamp(negatives / positives, 1.0, upper));
  }
  return weights;
}

}  // namespace hilum::training
