// Random ViT weights for tests that need a model but not a particular one (engine I/O, app
// workflows, the GUI). Every weight ~ N(0, std); LayerNorm gains 1 + N(0, std), biases N(0, std).
// (The backprop tests use their own recipe, mirroring tests/reference/make_vit_reference.py.)
#pragma once

#include <random>

#include "hilum/inference/vit.hpp"

namespace hilum::test {

inline inference::ViTWeights random_vit_weights(const inference::ViTConfig& c, unsigned seed, float std = 0.1f) {
  namespace inf = hilum::inference;
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, std);
  const auto mat = [&](Eigen::Index r, Eigen::Index k) { return inf::Matrix(inf::Matrix::NullaryExpr(r, k, [&] { return n(rng); })); };
  const auto vec = [&](Eigen::Index r, float base = 0.0f) { return inf::Vector(inf::Vector::NullaryExpr(r, [&] { return base + n(rng); })); };
  const Eigen::Index D = c.hidden_size, I = c.intermediate_size, g = c.image_size / c.patch_size;
  inf::ViTWeights w;
  w.patch_w = mat(D, static_cast<Eigen::Index>(c.num_channels) * c.patch_size * c.patch_size);
  w.patch_b = vec(D);
  w.cls_token = vec(D);
  w.position = mat(1 + g * g, D);
  for (int l = 0; l < c.num_layers; ++l) {
    inf::Block b;
    b.ln_before = {vec(D, 1.0f), vec(D)};
    b.query = {mat(D, D), vec(D)};
    b.key = {mat(D, D), vec(D)};
    b.value = {mat(D, D), vec(D)};
    b.attn_out = {mat(D, D), vec(D)};
    b.ln_after = {vec(D, 1.0f), vec(D)};
    b.fc1 = {mat(I, D), vec(I)};
    b.fc2 = {mat(D, I), vec(D)};
    w.blocks.push_back(std::move(b));
  }
  w.final_ln = {vec(D, 1.0f), vec(D)};
  w.has_classifier = !c.labels.empty();
  if (w.has_classifier) w.classifier = {mat(static_cast<Eigen::Index>(c.labels.size()), D), vec(static_cast<Eigen::Index>(c.labels.size()))};
  return w;
}

}  // namespace hilum::test
