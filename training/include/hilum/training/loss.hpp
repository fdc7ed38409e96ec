// Hilum training: losses. Each returns the mean loss and d(loss)/d(logits).
#pragma once

#include <vector>

#include "hilum/inference/vit.hpp"

namespace hilum::training {

using inference::Matrix;

struct LossResult {
  double loss = 0.0;
  Matrix dlogits;  // same shape as the logits
};

// Multi-label binary cross-entropy on logits (numerically stable, as torch's
// BCEWithLogitsLoss(pos_weight=...)), averaged over the entries whose mask is 1 (entries with mask 0
// -- findings nobody labelled on that image -- contribute nothing). pos_weight is per label (empty = 1).
[[nodiscard]] LossResult bce_with_logits(const Matrix& logits, const Matrix& targets, const Matrix& mask,
                                         const std::vector<float>& pos_weight = {});

// Single-label softmax cross-entropy, averaged over the batch; classes[i] = target column of row i.
[[nodiscard]] LossResult softmax_cross_entropy(const Matrix& logits, const std::vector<int>& classes);

// pos_weight[j] = negatives_j / positives_j over the masked entries (1 when a label has no positive),
// clamped to [1, max_weight].
[[nodiscard]] std::vector<float> positive_weights(const Matrix& targets, const Matrix& mask, float max_weight = 10.0f);

}  // namespace hilum::training
