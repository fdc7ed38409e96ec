// Hilum training: the ViT's backward pass. Each layer's forward saves what its backward needs (in a
// Tape); each backward *adds* into the gradients, which have the shape of the weights (a ViTWeights).
// The ops are templates so the finite-difference tests run them in double precision; the model
// runs in float. Same layout and maths as inference::ViTModel::forward (pre-LN blocks, CLS token,
// position embeddings interpolated when the grid differs, final LayerNorm on the CLS token, head).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hilum/inference/vit.hpp"

namespace hilum::training {

using inference::Image;
using inference::Matrix;
using inference::Vector;
using inference::ViTConfig;
using inference::ViTWeights;

// ---- Gradients (same shapes as the weights) ------------------------------------------------

[[nodiscard]] ViTWeights zeros_like(const ViTWeights& w);
void set_zero(ViTWeights& g);
[[nodiscard]] double squared_norm(const ViTWeights& g);
void scale(ViTWeights& g, float factor);

// One parameter tensor, named as in Hugging Face's ViTForImageClassification
// ("vit.encoder.layer.3.attention.attention.query.weight", "classifier.bias", ...).
struct ParamRef {
  std::string name;
  float* data = nullptr;
  std::size_t size = 0;
  int depth = 0;       // 0 = embeddings (patch, cls, position), 1..L = block index + 1, L + 1 = final LayerNorm and classifier
  bool decay = true;   // false for biases, LayerNorm parameters, cls token and position embeddings
};
// Every tensor of `w`, in a fixed order (the same order for weights, gradients and optimizer moments).
[[nodiscard]] std::vector<ParamRef> parameters(ViTWeights& w);

// ---- Forward with a tape, and backward ------------------------------------------------------

struct TrainOptions {
  // Blocks [0, first_trainable_block) are frozen: they run without a tape and get no gradient;
  // the embeddings are frozen too when it is > 0. 0 trains everything.
  int first_trainable_block = 0;
  bool train_classifier = true;
  // Stochastic depth: block i's residual branches are dropped per image with probability
  // drop_path * i / (L - 1) (timm's linear rule) and scaled by 1 / (1 - p) when kept. 0 = off.
  float drop_path = 0.0f;
  std::uint64_t seed = 0;  // drives drop-path
  // Activation checkpointing: keep only each block's input; recompute the block in backward.
  bool checkpoint_activations = false;
  // Arithmetic of the blocks' matrix products, forward and backward: the linear layers' three
  // products and attention's six. BF16 is mixed precision, as torch.autocast(dtype=bfloat16) does
  // it for linear and matmul: each product's operands rounded to bfloat16, accumulated in F32; the
  // weights, gradients, optimizer state, activations, LayerNorm, softmax, GELU, patch embedding
  // and classifier stay F32. What runs: inference::available_precision (F32 without AVX512_BF16).
  inference::Precision precision = inference::Precision::F32;
};

// What the forward pass saved for backward (opaque). Reusable across steps.
class Tape {
 public:
  Tape();
  ~Tape();
  Tape(Tape&&) noexcept;
  Tape& operator=(Tape&&) noexcept;
  [[nodiscard]] std::size_t bytes() const;  // memory held by saved activations
  struct State;
  std::unique_ptr<State> state;
};

struct TrainOutput {
  Matrix logits;      // batch x labels
  Matrix embeddings;  // batch x hidden: CLS after the final LayerNorm
};

// Full forward from preprocessed images (each channels x H x W, H and W multiples of the patch).
[[nodiscard]] TrainOutput forward(const ViTConfig& config, const ViTWeights& weights, const std::vector<Image>& batch,
                                  const TrainOptions& options, Tape& tape);

// The frozen prefix alone, without a tape: embeddings and blocks [0, n_blocks), returning each
// image's tokens ((1 + grid) x hidden) as they enter block n_blocks. Used to cache the frozen
// part's outputs once (last-k fine-tuning) and to compute CLS embeddings (n_blocks = L gives the
// tokens before the final LayerNorm). `precision` as TrainOptions::precision.
[[nodiscard]] std::vector<Matrix> frozen_prefix(const ViTConfig& config, const ViTWeights& weights,
                                                const std::vector<Image>& batch, int n_blocks,
                                                inference::Precision precision = inference::Precision::F32);

// Forward from cached tokens entering block `first_block` (== options.first_trainable_block).
[[nodiscard]] TrainOutput forward_from(const ViTConfig& config, const ViTWeights& weights, const std::vector<Matrix>& tokens,
                                       const TrainOptions& options, Tape& tape);

// Adds d(loss)/d(weights) into `grads` for the trainable parts, given d(loss)/d(logits)
// (batch x labels). `grads` must have the weights' shapes (zeros_like).
void backward(const ViTConfig& config, const ViTWeights& weights, Tape& tape, const Matrix& dlogits, ViTWeights& grads);

}  // namespace hilum::training
