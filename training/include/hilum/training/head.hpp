// Hilum training: the `head` strategy -- a linear classifier per finding fitted on cached CLS
// embeddings (seconds, not minutes).
#pragma once

#include <vector>

#include "hilum/inference/vit.hpp"

namespace hilum::training {

using inference::Matrix;
using inference::Vector;

struct HeadOptions {
  enum class Kind { Logistic, LinearSvm } kind = Kind::Logistic;
  double l2 = 1e-3;       // ridge penalty on the weights (not the bias), per sample
  int max_iterations = 100;
  double tolerance = 1e-6;
  bool balance = true;    // weight positives and negatives equally
};

struct HeadFit {
  Matrix weights;   // findings x dim
  Vector bias;      // findings
  std::vector<int> iterations;  // per finding
};

// Fits one linear model per column of `targets` on `embeddings` (n x dim); entries with mask 0 are
// ignored. A column with a single class gets zero weights and the bias of its base rate.
// Columns are fitted in parallel.
[[nodiscard]] HeadFit fit_head(const Matrix& embeddings, const Matrix& targets, const Matrix& mask, const HeadOptions& options = {});

}  // namespace hilum::training
