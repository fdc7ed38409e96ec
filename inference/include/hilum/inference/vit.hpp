// Hilum inference: a Vision Transformer (ViT) in the Hugging Face layout, on Eigen.
// Loads and writes `config.json` + `model.safetensors` (+ optional `preprocessor_config.json`)
// as `transformers` publishes them; runs the forward pass in F32 or BF16 (see Precision); keeps the attentions for
// attention maps. No Qt, no DICOM: images come in as grey values in [0, 1].
#pragma once

#include <Eigen/Core>

#include <array>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "hilum/inference/error.hpp"
#include "hilum/inference/precision.hpp"
#include "hilum/inference/safetensors.hpp"

namespace hilum::inference {

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Vector = Eigen::VectorXf;

struct ViTConfig {
  int hidden_size = 768;
  int num_layers = 12;
  int num_heads = 12;
  int intermediate_size = 3072;
  int image_size = 224;
  int patch_size = 16;
  int num_channels = 3;
  double layer_norm_eps = 1e-12;
  std::string hidden_act = "gelu";  // gelu (erf), gelu_new / gelu_pytorch_tanh (tanh approximation)
  bool qkv_bias = true;
  std::vector<std::string> labels;  // id2label, in index order
  std::string problem_type;         // multi_label_classification, single_label_classification or ""
  // Preprocessing (preprocessor_config.json; Hugging Face ViT defaults otherwise).
  std::array<float, 3> image_mean{0.5f, 0.5f, 0.5f};
  std::array<float, 3> image_std{0.5f, 0.5f, 0.5f};
  int input_height = 224;
  int input_width = 224;
  // Centre crop (preprocessor_config.json's do_center_crop, as Hugging Face's DeiTImageProcessor):
  // the image is resized to resize_height x resize_width and its centre input_height x input_width
  // kept, so the model sees the central input/resize share of each side. 0 = no crop (the image
  // resized to the input size, as ViTImageProcessor).
  int resize_height = 0;
  int resize_width = 0;
  std::string original_json;  // config.json's bytes as read (never a re-serialised tree): unknown fields are written back

  [[nodiscard]] bool multi_label() const { return problem_type != "single_label_classification"; }
  [[nodiscard]] bool centre_crop() const {
    return (resize_height > 0 && resize_height != input_height) || (resize_width > 0 && resize_width != input_width);
  }
  [[nodiscard]] int head_dim() const { return hidden_size / num_heads; }
};

// Reads config.json (and preprocessor_config.json when present) from a model folder.
[[nodiscard]] Result<ViTConfig> read_config(const std::filesystem::path& dir);

struct Linear {
  Matrix w;  // out x in, as stored
  Vector b;  // empty when the layer has no bias
};
struct LayerNorm {
  Vector gamma;
  Vector beta;
};
struct Block {
  LayerNorm ln_before;
  Linear query, key, value, attn_out;
  LayerNorm ln_after;
  Linear fc1, fc2;  // intermediate.dense, output.dense
};
struct ViTWeights {
  Matrix patch_w;       // hidden x (channels * patch * patch), channel-major then row then column
  Vector patch_b;
  Vector cls_token;     // hidden
  Matrix position;      // (1 + grid*grid) x hidden
  std::vector<Block> blocks;
  LayerNorm final_ln;
  bool has_classifier = false;
  Linear classifier;    // labels x hidden
};

// One preprocessed image: channels x height x width, normalised, row-major.
struct Image {
  int channels = 0;
  int height = 0;
  int width = 0;
  std::vector<float> data;
};

// Precision (precision.hpp) sets the arithmetic of the products (QKV, attention's QK^T and PV, the
// attention output, MLP). F32 is the reference (PyTorch's answers to 1e-5). BF16 rounds the weights
// and each product's input to bfloat16 and accumulates in F32, except the linear layers of the first
// sixth of the blocks, which run as split BF16 (close to F32; gemm.hpp); LayerNorm, softmax, GELU,
// the patch embedding and the classifier stay F32.

struct ForwardOptions {
  bool keep_attentions = false;     // per image, per layer, per head: tokens x tokens
  bool keep_hidden_states = false;  // per image: embeddings, each block's output, final LayerNorm
  // > 0: at most this many OpenMP threads for this call (e.g. 1 while other threads decode films:
  // spinning OpenMP barriers lose most of a core they share); 0: the OpenMP default.
  int threads = 0;
};

// Which GEMMs forward() runs: the AVX-512 kernels on packed weights when the CPU has them (Auto),
// or Eigen's GEMM on the weights as stored (what a CPU without AVX-512 runs; always F32).
enum class Kernels { Auto, Eigen };

// What the running CPU lets the engine use: the AVX-512 F32 kernels (BF16: precision.hpp).
[[nodiscard]] bool cpu_has_avx512_kernels();

namespace detail {
// The weights packed for the GEMM kernels (built by the first forward after a load or a weight
// change, under a mutex). Copying a model copies no pack: the copy packs its own.
class PackCache {
 public:
  struct State;
  PackCache();
  ~PackCache();
  PackCache(const PackCache&);
  PackCache& operator=(const PackCache&);
  PackCache(PackCache&&) noexcept;
  PackCache& operator=(PackCache&&) noexcept;
  void invalidate();
  [[nodiscard]] bool has_state() const { return state_ != nullptr; }  // false only once moved from
  [[nodiscard]] State& state() const { return *state_; }

 private:
  std::unique_ptr<State> state_;
};
}  // namespace detail

struct ForwardOutput {
  Matrix logits;         // batch x labels (0 columns for a backbone without classifier)
  Matrix probabilities;  // sigmoid (multi-label) or softmax (single-label)
  Matrix embeddings;     // batch x hidden: the CLS token after the final LayerNorm
  int grid_h = 0;
  int grid_w = 0;
  std::vector<std::vector<Matrix>> hidden_states;              // [image][stage]
  std::vector<std::vector<std::vector<Matrix>>> attentions;    // [image][layer][head]
};

class ViTModel {
 public:
  // Loads a Hugging Face folder: ViTForImageClassification (vit.* + classifier.*) or a ViTModel
  // backbone (embeddings.*, encoder.*, layernorm.*; pooler.* is ignored). Every expected tensor
  // must be present with its exact shape, and no unknown tensor may be left over.
  static Result<ViTModel> load(const std::filesystem::path& dir);
  // Builds a model from a config and weights (training, tests).
  static Result<ViTModel> from_weights(ViTConfig config, ViTWeights weights);

  // Writes config.json and model.safetensors (ViTForImageClassification names) atomically.
  [[nodiscard]] Status save(const std::filesystem::path& dir, DType dtype = DType::F32) const;

  [[nodiscard]] const ViTConfig& config() const { return config_; }
  [[nodiscard]] const ViTWeights& weights() const { return weights_; }
  // Marks the packed weights stale: the next forward re-packs. A caller that keeps this reference
  // and changes weights after a later forward must call repack() (or mutable_weights() again).
  [[nodiscard]] ViTWeights& mutable_weights() {
    pack_.invalidate();
    return weights_;
  }
  // Drops the packed weights; the next forward packs them again from weights().
  void repack() { pack_.invalidate(); }

  // The precision of forward()'s linear layers; default_precision() unless set.
  void set_precision(Precision precision) { precision_ = precision; }
  [[nodiscard]] Precision precision() const { return precision_; }
  [[nodiscard]] static Precision default_precision();
  void set_kernels(Kernels kernels) { kernels_ = kernels; }
  [[nodiscard]] Kernels kernels() const { return kernels_; }
  // Bytes of the packed weights currently held (0 before the first forward or on the Eigen path).
  [[nodiscard]] std::size_t packed_bytes() const;

  // Runs a batch (images may have any size divisible by the patch size; the position
  // embeddings are interpolated bicubically when the patch grid differs). Images are spread over
  // the cores.
  [[nodiscard]] Result<ForwardOutput> forward(const std::vector<Image>& batch, const ForwardOptions& options = {}) const;

 private:
  ViTConfig config_;
  ViTWeights weights_;
  Precision precision_ = default_precision();
  Kernels kernels_ = Kernels::Auto;
  detail::PackCache pack_;
};

// ---- Building blocks (shared with training) ---------------------------------------------

void layer_norm(const Matrix& x, const LayerNorm& ln, double eps, Matrix& out);  // rows spread over the cores
void linear(const Matrix& x, const Linear& l, Matrix& out);  // out = x W^T + b
float gelu(float x, bool tanh_approximation);
// Position embeddings for a gh x gw patch grid (bicubic, align_corners=false, as PyTorch).
[[nodiscard]] Matrix interpolate_positions(const Matrix& position, int grid_h, int grid_w);
// The same interpolation as a linear map over the patch rows: output row `out` = sum over its 16
// taps (consecutive in the vector) of weight * position row `in` (rows counted with the CLS row
// at 0, which is copied). The trainer's backward pass applies its transpose.
struct PositionTap {
  Eigen::Index out = 0;
  Eigen::Index in = 0;
  double weight = 0.0;
};
[[nodiscard]] std::vector<PositionTap> position_interpolation_taps(int old_grid, int grid_h, int grid_w);

// ---- Attention maps ----------------------------------------------------------------------

enum class HeadFusion { Mean, Max, Min };

// Attention rollout (Abnar & Zuidema 2020) of one image from its per-layer, per-head attentions:
// per layer fuse the heads, optionally zero the lowest `discard_ratio` of the entries (never the
// CLS->CLS one), add the identity, renormalise rows, multiply up the layers; the CLS row over the
// patches, reshaped to grid_h x grid_w and divided by its maximum.
[[nodiscard]] Matrix attention_rollout(const std::vector<std::vector<Matrix>>& attentions, HeadFusion fusion,
                                       float discard_ratio, int grid_h, int grid_w);

// ---- Preprocessing -----------------------------------------------------------------------

// A rectangle of an image in its pixels (fractional: a side's pixel k spans [k, k + 1)).
struct Window {
  double x = 0.0;
  double y = 0.0;
  double width = 0.0;
  double height = 0.0;
};

// The part of a width x height image the model sees: all of it, or with a centre crop the
// rectangle Hugging Face's resize-then-crop keeps ((resize - input) / 2 pixels of the resized image
// dropped from each side, rounded down), in the image's own pixels.
[[nodiscard]] Window model_window(int width, int height, const ViTConfig& config);

// From display values in [0, 1] (the DICOM display pipeline's output, 1 = white), row-major
// width x height: the model's window of it (model_window) resized to the input size with an
// antialiasing (triangle) filter, aspect ratio not kept (as Hugging Face's image processors):
// grey values at the input size. The trainer and the catalog's input cache use the same function.
[[nodiscard]] std::vector<float> model_view(const float* grey, int width, int height, const ViTConfig& config);

// model_view, then grey copied to every channel and (x - mean) / std per channel.
[[nodiscard]] Image preprocess(const float* grey, int width, int height, const ViTConfig& config);
// The second half of preprocess: grey values already at the model's input size
// (input_width x input_height) to channels x height x width, normalised. preprocess(g, w, h, c) ==
// normalise(model_view(g, w, h, c), c).
[[nodiscard]] Image normalise(const float* grey, const ViTConfig& config);

// Separable antialiased resize of a single-channel image (triangle filter widened by the scale
// when shrinking, like PIL's bilinear and torchvision's antialias=True).
[[nodiscard]] std::vector<float> resize_antialiased(const float* src, int width, int height, int out_width, int out_height);
// The same for the `window` of the image only (pixels beyond its edges still weigh in where the
// filter reaches them, as they would when resizing first and cropping after).
[[nodiscard]] std::vector<float> resize_antialiased(const float* src, int width, int height, int out_width, int out_height,
                                                    const Window& window);

}  // namespace hilum::inference
