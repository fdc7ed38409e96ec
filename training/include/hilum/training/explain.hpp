// Hilum training: class-specific attention maps, from the backward pass.
//
// Attention rollout (inference::attention_rollout) shows where the model looked, the same map for
// every finding. The class-specific map shows what made one output's logit larger: Chefer, Gur &
// Wolf, "Generic Attention-model Explainability for Interpreting Bi-Modal and Encoder-Decoder
// Transformers" (ICCV 2021), eqs. 5-6, a gradient-weighted rollout:
//
//   R = I;  for each block b:  Abar_b = mean over heads of max(0, dy/dA_b * A_b);  R = R + Abar_b R
//
// where A_b are block b's attention probabilities and y is the chosen output's logit. The map is
// the CLS row of R over the patches. Checked against PyTorch autograd (tests/reference/golden_grad/
// relevance_*).
#pragma once

#include <vector>

#include "hilum/inference/vit.hpp"

namespace hilum::training {

// One image's attention probabilities and their gradients, per block.
struct AttentionGradients {
  // (heads * Tq) x T per block, head-major (head h's rows at h * Tq). Tq = T = 1 + grid for every
  // block but the last, whose output is only read at the CLS token: Tq = 1 there (the CLS row; the
  // other rows have no effect on the logits and a zero gradient).
  std::vector<inference::Matrix> probabilities;
  std::vector<inference::Matrix> gradients;  // d(logits[label]) / d(probabilities), same shapes
  inference::Vector logits;                  // all outputs of the image
  int label = 0;
  int grid_h = 0, grid_w = 0, heads = 0;
};

// A forward pass with a tape and a backward pass from output `label`'s logit. `image` is a
// preprocessed image (channels x H x W, multiples of the patch size). Throws std::invalid_argument
// for a model without a classifier, a label out of range or an image of the wrong shape.
[[nodiscard]] AttentionGradients attention_gradients(const inference::ViTConfig& config, const inference::ViTWeights& weights,
                                                     const inference::Image& image, int label);

// The class-specific relevance map (eqs. 5-6 above, accumulated in double precision) on the
// grid_h x grid_w patch grid, divided by its maximum; all zeros when no patch has positive relevance.
[[nodiscard]] inference::Matrix class_relevance(const AttentionGradients& attention);

}  // namespace hilum::training
