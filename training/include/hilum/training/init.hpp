// Hilum training: ViT architectures sized for a CPU and Hugging Face's initialisation, for
// training from scratch.
#pragma once

#include <cstdint>
#include <string>

#include "hilum/inference/error.hpp"
#include "hilum/inference/vit.hpp"

namespace hilum::training {

// "vit-ti16" (D=192, 12 blocks, 3 heads), "vit-ti16-d6" (ViT-Ti/16 with 6 blocks), "vit-s16"
// (D=384, 12 blocks, 6 heads), "vit-b16" (D=768, 12 blocks, 12 heads); patch 16, 3 channels,
// multi-label, at `image_size` (a multiple of 16 in 32..1024). No labels: the caller sets them.
[[nodiscard]] inference::Result<inference::ViTConfig> architecture(const std::string& name, int image_size);

// Hugging Face's ViT initialisation: truncated normal (std 0.02, cut at 2 std) for weights,
// position embeddings and CLS token; zero biases; LayerNorm 1/0; a classifier row per label.
[[nodiscard]] inference::ViTWeights initial_weights(const inference::ViTConfig& config, std::uint64_t seed);

}  // namespace hilum::training
