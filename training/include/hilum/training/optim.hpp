// Hilum training: AdamW (as torch.optim.AdamW), learning-rate schedule, layer-wise LR decay and
// gradient clipping.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "hilum/inference/error.hpp"
#include "hilum/training/backprop.hpp"

namespace hilum::training {

struct AdamWOptions {
  float lr = 1e-4f;           // peak learning rate (the schedule scales it)
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.05f;  // decoupled; applied to ParamRef::decay tensors only
  // Layer-wise LR decay: a tensor at depth d (ParamRef::depth, L + 1 = head) gets
  // lr * layer_decay^(L + 1 - d). 1 = off.
  float layer_decay = 1.0f;
};

class AdamW {
 public:
  AdamW(const ViTWeights& like, AdamWOptions options);
  // One step at learning rate `lr` (the schedule's value): exactly torch.optim.AdamW's update,
  // bias-corrected, with weight decay p -= lr * scale * wd * p before the Adam update (scale =
  // the layer-wise LR factor). Frozen tensors (set_trainable) are neither decayed nor updated.
  void step(ViTWeights& weights, ViTWeights& grads, float lr);
  void set_trainable(std::vector<bool> trainable);  // per tensor, in parameters() order; default all
  [[nodiscard]] std::int64_t steps() const { return step_; }
  [[nodiscard]] const AdamWOptions& options() const { return options_; }

  // Optimizer state (moments + step) for checkpoints; written atomically as safetensors.
  [[nodiscard]] inference::Status save(const std::filesystem::path& file) const;
  [[nodiscard]] inference::Status load(const std::filesystem::path& file);

 private:
  AdamWOptions options_;
  ViTWeights m_, v_;
  std::vector<bool> trainable_;
  std::int64_t step_ = 0;
};

// Linear warm-up from 0 over `warmup` steps, then cosine from base_lr down to min_lr at `total`.
[[nodiscard]] float cosine_lr(std::int64_t step, std::int64_t total, std::int64_t warmup, float base_lr, float min_lr = 0.0f);

// Scales the gradients so that their global L2 norm is at most max_norm; returns the norm before.
float clip_grad_norm(ViTWeights& grads, float max_norm);

}  // namespace hilum::training
