// Shared by the backprop tests: small random ViTs and images, and a gradient comparison that
// names the worst element.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "hilum/training/backprop.hpp"
#include "hilum/training/ops.hpp"

namespace hilum::training::test {

inline ViTConfig tiny_config(int D, int layers, int heads, int inter, int image, int patch, int channels, int labels, bool qkv_bias,
                             const std::string& act) {
  ViTConfig c;
  c.hidden_size = D;
  c.num_layers = layers;
  c.num_heads = heads;
  c.intermediate_size = inter;
  c.image_size = image;
  c.patch_size = patch;
  c.num_channels = channels;
  c.qkv_bias = qkv_bias;
  c.hidden_act = act;
  c.problem_type = "multi_label_classification";
  for (int i = 0; i < labels; ++i) c.labels.push_back("L" + std::to_string(i));
  c.input_height = c.input_width = image;
  return c;
}

// Same recipe as make_vit_reference.py's random_weights (0.02 randn, q/k 1/sqrt(D), LayerNorm near 1),
// with larger biases/embeddings so that every path carries signal.
inline ViTWeights random_weights(const ViTConfig& c, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  const auto mat = [&](Eigen::Index r, Eigen::Index k, float s) {
    Matrix m(r, k);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = s * n(rng);
    return m;
  };
  const auto vec = [&](Eigen::Index r, float s, float mean = 0.0f) {
    Vector v(r);
    for (Eigen::Index i = 0; i < r; ++i) v[i] = mean + s * n(rng);
    return v;
  };
  const Eigen::Index D = c.hidden_size, I = c.intermediate_size, K = static_cast<Eigen::Index>(c.num_channels) * c.patch_size * c.patch_size;
  const Eigen::Index g = c.image_size / c.patch_size;
  const float sd = 1.0f / std::sqrt(static_cast<float>(D));
  ViTWeights w;
  w.patch_w = mat(D, K, 1.0f / std::sqrt(static_cast<float>(K)));
  w.patch_b = vec(D, 0.1f);
  w.cls_token = vec(D, 0.5f);
  w.position = mat(1 + g * g, D, 0.5f);
  for (int i = 0; i < c.num_layers; ++i) {
    inference::Block b;
    b.ln_before = {vec(D, 0.1f, 1.0f), vec(D, 0.05f)};
    b.query = {mat(D, D, sd), c.qkv_bias ? vec(D, 0.1f) : Vector()};
    b.key = {mat(D, D, sd), c.qkv_bias ? vec(D, 0.1f) : Vector()};
    b.value = {mat(D, D, sd), c.qkv_bias ? vec(D, 0.1f) : Vector()};
    b.attn_out = {mat(D, D, sd), vec(D, 0.1f)};
    b.ln_after = {vec(D, 0.1f, 1.0f), vec(D, 0.05f)};
    b.fc1 = {mat(I, D, sd), vec(I, 0.1f)};
    b.fc2 = {mat(D, I, 1.0f / std::sqrt(static_cast<float>(I))), vec(D, 0.1f)};
    w.blocks.push_back(std::move(b));
  }
  w.final_ln = {vec(D, 0.1f, 1.0f), vec(D, 0.05f)};
  w.has_classifier = !c.labels.empty();
  if (w.has_classifier) w.classifier = {mat(static_cast<Eigen::Index>(c.labels.size()), D, sd), vec(static_cast<Eigen::Index>(c.labels.size()), 0.1f)};
  return w;
}

inline std::vector<Image> random_images(int n, int channels, int height, int width, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<Image> out;
  for (int i = 0; i < n; ++i) {
    Image im{channels, height, width, {}};
    im.data.resize(static_cast<std::size_t>(channels) * height * width);
    for (float& v : im.data) v = nd(rng);
    out.push_back(std::move(im));
  }
  return out;
}

template <typename T>
ops::Mat<T> random_matrix(Eigen::Index r, Eigen::Index c, unsigned seed, double s = 1.0) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> nd(0.0, s);
  ops::Mat<T> m(r, c);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<T>(nd(rng));
  return m;
}

// max |a - b| / max(max |b|, floor); reports the worst element.
struct Comparison {
  double rel = 0.0;
  double max_ref = 0.0;
  std::size_t worst = 0;
  double ours = 0.0, theirs = 0.0;
};

template <typename A, typename B>
Comparison compare(const A* ours, const B* theirs, std::size_t n, double floor = 1e-12) {
  Comparison c;
  double max_diff = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    c.max_ref = std::max(c.max_ref, std::abs(static_cast<double>(theirs[i])));
    const double d = std::abs(static_cast<double>(ours[i]) - static_cast<double>(theirs[i]));
    if (d > max_diff || std::isnan(d)) {
      max_diff = std::isnan(d) ? INFINITY : d;
      c.worst = i;
    }
  }
  c.rel = max_diff / std::max(c.max_ref, floor);
  if (n > 0) {
    c.ours = static_cast<double>(ours[c.worst]);
    c.theirs = static_cast<double>(theirs[c.worst]);
  }
  return c;
}

}  // namespace hilum::training::test
