// Architectures and Hugging Face's ViT initialisation.
#include "hilum/training/init.hpp"

#include <cmath>
#include <random>

namespace hilum::training {

inference::Result<inference::ViTConfig> architecture(const std::string& name, int image_size) {
  inference::ViTConfig c;
  c.patch_size = 16;
  c.num_channels = 3;
  c.layer_norm_eps = 1e-12;
  c.hidden_act = "gelu";
  if (name == "vit-ti16" || name == "vit-ti16-d6") {
    c.hidden_size = 192;
    c.num_heads = 3;
    c.intermediate_size = 768;
    c.num_layers = name == "vit-ti16" ? 12 : 6;
  } else if (name == "vit-s16") {
    c.hidden_size = 384;
    c.num_heads = 6;
    c.intermediate_size = 1536;
    c.num_layers = 12;
  } else if (name == "vit-b16") {
    c.hidden_size = 768;
    c.num_heads = 12;
    c.intermediate_size = 3072;
    c.num_layers = 12;
  } else {
    return inference::Error{inference::ErrorKind::Unsupported, "unknown architecture " + name + " (vit-ti16, vit-ti16-d6, vit-s16, vit-b16)"};
  }
  if (image_size < 32 || image_size > 1024 || image_size % c.patch_size != 0) {
    return inference::Error{inference::ErrorKind::Invalid, "the image size must be a multiple of 16 in 32..1024"};
  }
  c.image_size = c.input_height = c.input_width = image_size;
  c.problem_type = "multi_label_classification";
  return c;
}

inference::ViTWeights initial_weights(const inference::ViTConfig& c, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  const auto draw = [&]() {
    for (;;) {
      const float v = normal(rng);
      if (std::abs(v) <= 0.04f) return v;  // truncated at 2 std
    }
  };
  const auto matrix = [&](int rows, int cols) {
    return inference::Matrix(inference::Matrix::NullaryExpr(rows, cols, [&]() { return draw(); }));
  };
  const auto d = c.hidden_size;
  const auto ln = [&]() { return inference::LayerNorm{inference::Vector::Ones(d), inference::Vector::Zero(d)}; };
  const auto linear = [&](int out, int in) { return inference::Linear{matrix(out, in), inference::Vector::Zero(out)}; };
  inference::ViTWeights w;
  const int grid = c.image_size / c.patch_size;
  w.patch_w = matrix(d, c.num_channels * c.patch_size * c.patch_size);
  w.patch_b = inference::Vector::Zero(d);
  w.cls_token = matrix(d, 1).col(0);
  w.position = matrix(1 + grid * grid, d);
  for (int l = 0; l < c.num_layers; ++l) {
    inference::Block b;
    b.ln_before = ln();
    b.query = linear(d, d);
    b.key = linear(d, d);
    b.value = linear(d, d);
    b.attn_out = linear(d, d);
    b.ln_after = ln();
    b.fc1 = linear(c.intermediate_size, d);
    b.fc2 = linear(d, c.intermediate_size);
    w.blocks.push_back(std::move(b));
  }
  w.final_ln = ln();
  w.has_classifier = true;
  w.classifier = linear(static_cast<int>(c.labels.size()), d);
  return w;
}

}  // namespace hilum::training
