// Hilum training: masked-autoencoder (MAE) self-supervised pre-training of the ViT encoder
// (He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners"; for chest films Xiao et al.
// 2023, "Delving into Masked Autoencoders for Multi-Label Thorax Disease Classification").
//
// Per image, a random subset of the patches is kept (1 - mask_ratio of them); the encoder (the
// ViTWeights being pre-trained: patch embedding + its position embeddings, CLS, every block, the
// final LayerNorm) sees only those. A light decoder maps the encoder's tokens to its own width,
// puts a learned mask token at every masked patch (the "unshuffle"), adds fixed 2-D sin-cos
// position embeddings, runs its own pre-LN blocks and LayerNorm, and predicts each patch's pixels
// (patch_size^2 * channels values, in MAE's order: row, column, channel). The loss is the mean
// squared error over the masked patches only, against per-patch normalised pixels
// (norm_pix_loss: each patch's mean subtracted, divided by sqrt(unbiased variance + 1e-6), as
// MAE's code does).
//
// The decoder's tensors are held in a ViTWeights so that the optimizer (AdamW), zeros_like,
// gradient clipping and parameters() work on it exactly as on the encoder. The mapping (and the
// Hugging Face ViTMAEForPreTraining name each is saved under) is:
//   patch_w, patch_b  decoder_embed (decoder_hidden x hidden)   decoder.decoder_embed.{weight,bias}
//   cls_token         the mask token (decoder_hidden)           decoder.mask_token
//   position          empty: the positions are fixed sin-cos, not learned
//   blocks            the decoder blocks (as the encoder's)      decoder.decoder_layers.N.*
//   final_ln          decoder_norm                               decoder.decoder_norm.{weight,bias}
//   classifier        decoder_pred ((P*P*C) x decoder_hidden)    decoder.decoder_pred.{weight,bias}
// The decoder's LayerNorm epsilon and GELU are the encoder's (as Hugging Face's ViTMAE).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <vector>

#include "hilum/inference/error.hpp"
#include "hilum/training/backprop.hpp"

namespace hilum::training {

struct MaeConfig {
  float mask_ratio = 0.9f;         // fraction of patches hidden from the encoder
  int decoder_hidden = 128;        // a multiple of 4 (the sin-cos embedding) and of decoder_heads
  int decoder_layers = 2;
  int decoder_heads = 4;
  int decoder_intermediate = 512;  // the decoder blocks' MLP width (4 x decoder_hidden)
  bool norm_pix_loss = true;       // reconstruct per-patch normalised pixels
};

// The decoder blocks' shape as a ViTConfig (hidden, heads, layers, intermediate; the encoder's
// LayerNorm epsilon, GELU, patch size and channels).
[[nodiscard]] ViTConfig decoder_config(const ViTConfig& encoder, const MaeConfig& mae);

// MAE's initialisation: xavier-uniform linear weights, zero biases, LayerNorm 1/0, mask token
// normal(0, 0.02). Deterministic in the seed.
[[nodiscard]] ViTWeights initial_decoder(const ViTConfig& encoder, const MaeConfig& mae, std::uint64_t seed);

// Fixed 2-D sin-cos position embeddings ((1 + gh*gw) x dim, row 0 -- the CLS token's -- zero), as
// MAE's get_2d_sincos_pos_embed: patch (y, x) gets [sin-cos of x over dim/2 | sin-cos of y].
[[nodiscard]] Matrix sincos_positions(int dim, int grid_h, int grid_w);

// How many of n_patches patches an image keeps: floor(n * (1 - mask_ratio)), at least 1.
[[nodiscard]] int kept_patch_count(int n_patches, float mask_ratio);

// Per image, the kept patch indices (row-major patch grid): the first kept_patch_count of a
// permutation seeded by (seed, image). Deterministic.
[[nodiscard]] std::vector<std::vector<int>> random_keep(int images, int n_patches, float mask_ratio, std::uint64_t seed);

// The decoder's tensors under their Hugging Face ViTMAE names, in a fixed order.
[[nodiscard]] std::vector<ParamRef> decoder_parameters(ViTWeights& decoder);

// The decoder as safetensors (ViTMAE names; the MaeConfig in the metadata), written atomically,
// and read back (shapes checked against the encoder and the stored MaeConfig).
[[nodiscard]] inference::Status save_decoder(const std::filesystem::path& file, const ViTConfig& encoder, const MaeConfig& mae,
                                             const ViTWeights& decoder);
struct LoadedDecoder {
  MaeConfig mae;
  ViTWeights weights;
};
[[nodiscard]] inference::Result<LoadedDecoder> load_decoder(const std::filesystem::path& file, const ViTConfig& encoder);

// What the MAE forward saved for backward (opaque), reusable across steps.
class MaeTape {
 public:
  MaeTape();
  ~MaeTape();
  MaeTape(MaeTape&&) noexcept;
  MaeTape& operator=(MaeTape&&) noexcept;
  [[nodiscard]] std::size_t bytes() const;
  struct State;
  std::unique_ptr<State> state;
};

struct MaeOutput {
  double loss = 0.0;  // mean over the masked patches of the mean squared error per pixel
  int masked = 0;     // masked patches in the batch
};

// Forward with a tape. `keep[b]` lists image b's kept patch indices (same count for every image;
// random_keep draws them); images are channels x H x W with H, W multiples of the patch size.
// `options`: precision and drop_path (the encoder's blocks) are honoured; the encoder is trained
// whole (first_trainable_block must be 0), without activation checkpointing.
[[nodiscard]] MaeOutput mae_forward(const ViTConfig& config, const ViTWeights& encoder, const MaeConfig& mae, const ViTWeights& decoder,
                                    const std::vector<Image>& batch, const std::vector<std::vector<int>>& keep,
                                    const TrainOptions& options, MaeTape& tape);

// The decoder's prediction of the last forward: (B * patches) x (P*P*C), every patch (also the
// kept ones), image b's patch n at row b * patches + n.
[[nodiscard]] const Matrix& mae_prediction(const MaeTape& tape);

// Adds d(loss)/d(weights) into `encoder_grads` and `decoder_grads` (zeros_like shapes).
void mae_backward(const ViTConfig& config, const ViTWeights& encoder, const ViTWeights& decoder, MaeTape& tape, ViTWeights& encoder_grads,
                  ViTWeights& decoder_grads);

}  // namespace hilum::training
