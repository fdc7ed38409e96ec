// AdamW (against torch.optim.AdamW), layer-wise LR decay, frozen tensors, optimizer state files,
// the cosine schedule and gradient clipping (against torch.nn.utils.clip_grad_norm_).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "hilum/inference/safetensors.hpp"
#include "hilum/training/optim.hpp"
#include "temp_dir_test.hpp"

namespace {

using hilum::training::AdamW;
using hilum::training::AdamWOptions;
using hilum::training::Matrix;
using hilum::training::ParamRef;
using hilum::training::Vector;
using hilum::training::ViTWeights;
using nlohmann::json;

json load_golden(const std::string& name) {
  std::ifstream in(std::string(HILUM_OPTIM_GOLDEN_DIR) + "/" + name);
  EXPECT_TRUE(in.good()) << "missing golden " << name << " (run tests/reference/make_optim_reference.py)";
  return json::parse(in);
}

// A 1-block ViT with hidden 4, intermediate 8, 3 labels, a 2x2 grid of 1-channel 2x2 patches.
ViTWeights tiny_weights(std::uint64_t seed, int labels = 3, int blocks = 1) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  const auto mat = [&](int r, int c) {
    Matrix m(r, c);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = normal(rng);
    return m;
  };
  const auto vec = [&](int n) {
    Vector v(n);
    for (Eigen::Index i = 0; i < v.size(); ++i) v[i] = normal(rng);
    return v;
  };
  const int h = 4;
  ViTWeights w;
  w.patch_w = mat(h, 4);
  w.patch_b = vec(h);
  w.cls_token = vec(h);
  w.position = mat(5, h);
  for (int b = 0; b < blocks; ++b) {
    hilum::inference::Block blk;
    blk.ln_before = {vec(h), vec(h)};
    blk.query = {mat(h, h), vec(h)};
    blk.key = {mat(h, h), vec(h)};
    blk.value = {mat(h, h), vec(h)};
    blk.attn_out = {mat(h, h), vec(h)};
    blk.ln_after = {vec(h), vec(h)};
    blk.fc1 = {mat(8, h), vec(8)};
    blk.fc2 = {mat(h, 8), vec(h)};
    w.blocks.push_back(blk);
  }
  w.final_ln = {vec(h), vec(h)};
  w.has_classifier = true;
  w.classifier = {mat(labels, h), vec(labels)};
  return w;
}

std::size_t index_of(const std::vector<ParamRef>& refs, const float* data) {
  for (std::size_t k = 0; k < refs.size(); ++k)
    if (refs[k].data == data) return k;
  ADD_FAILURE() << "tensor not found in parameters()";
  return 0;
}

std::vector<float> flat(const json& j) {
  std::vector<float> out;
  if (j.is_array()) {
    for (const auto& e : j) {
      const std::vector<float> sub = flat(e);
      out.insert(out.end(), sub.begin(), sub.end());
    }
  } else {
    out.push_back(j.get<float>());
  }
  return out;
}

void expect_close(const float* actual, const json& expected, double rel, const std::string& what) {
  const std::vector<float> e = flat(expected);
  for (std::size_t i = 0; i < e.size(); ++i)
    EXPECT_NEAR(actual[i], e[i], rel * std::max(1.0, std::abs(static_cast<double>(e[i])))) << what << " [" << i << "]";
}

std::vector<std::vector<float>> snapshot(ViTWeights& w) {
  std::vector<std::vector<float>> out;
  for (const ParamRef& p : hilum::training::parameters(w)) out.emplace_back(p.data, p.data + p.size);
  return out;
}

// ---- AdamW against PyTorch ----------------------------------------------------------------------

TEST(AdamW, MatchesTorchOverTenStepsWithWeightDecayGroupsAndLayerDecay) {
  const json g = load_golden("adamw.json");
  ViTWeights w = tiny_weights(1);
  // "decayed": the classifier weight (depth L + 1 = 2, weight decay on, LR scale 1).
  // "plain": block 0's first LayerNorm weight (depth 1, no weight decay, LR scale 0.5^1).
  const std::vector<float> decayed0 = flat(g["decayed"]["initial"]);
  const std::vector<float> plain0 = flat(g["plain"]["initial"]);
  ASSERT_EQ(decayed0.size(), static_cast<std::size_t>(w.classifier.w.size()));
  ASSERT_EQ(plain0.size(), static_cast<std::size_t>(w.blocks[0].ln_before.gamma.size()));
  std::copy(decayed0.begin(), decayed0.end(), w.classifier.w.data());
  std::copy(plain0.begin(), plain0.end(), w.blocks[0].ln_before.gamma.data());

  AdamWOptions o;
  o.beta1 = g["beta1"].get<float>();
  o.beta2 = g["beta2"].get<float>();
  o.eps = g["eps"].get<float>();
  o.weight_decay = g["weight_decay"].get<float>();
  o.layer_decay = g["layer_decay"].get<float>();
  AdamW opt(w, o);
  std::vector<ParamRef> refs = hilum::training::parameters(w);
  const std::size_t ia = index_of(refs, w.classifier.w.data());
  const std::size_t ib = index_of(refs, w.blocks[0].ln_before.gamma.data());
  ASSERT_EQ(refs[ia].depth, 2);
  ASSERT_TRUE(refs[ia].decay);
  ASSERT_EQ(refs[ib].depth, 1);
  ASSERT_FALSE(refs[ib].decay);
  std::vector<bool> trainable(refs.size(), false);
  trainable[ia] = trainable[ib] = true;
  opt.set_trainable(trainable);
  const auto before = snapshot(w);

  std::mt19937_64 rng(7);
  std::normal_distribution<float> normal;
  const auto lrs = g["lr"].get<std::vector<float>>();
  for (std::size_t s = 0; s < lrs.size(); ++s) {
    ViTWeights grads = hilum::training::zeros_like(w);
    for (const ParamRef& p : hilum::training::parameters(grads))
      for (std::size_t i = 0; i < p.size; ++i) p.data[i] = normal(rng);  // frozen ones must be ignored
    const std::vector<float> ga = flat(g["decayed"]["grads"][s]);
    const std::vector<float> gb = flat(g["plain"]["grads"][s]);
    std::copy(ga.begin(), ga.end(), grads.classifier.w.data());
    std::copy(gb.begin(), gb.end(), grads.blocks[0].ln_before.gamma.data());
    opt.step(w, grads, lrs[s]);
    expect_close(w.classifier.w.data(), g["decayed"]["after"][s], 1e-6, "decayed, step " + std::to_string(s + 1));
    expect_close(w.blocks[0].ln_before.gamma.data(), g["plain"]["after"][s], 1e-6, "plain, step " + std::to_string(s + 1));
  }
  EXPECT_EQ(opt.steps(), 10);
  // Frozen tensors did not move (their gradients were large and random).
  const auto after = snapshot(w);
  for (std::size_t k = 0; k < refs.size(); ++k) {
    if (k != ia && k != ib) {
      EXPECT_EQ(after[k], before[k]) << refs[k].name;
    }
  }
}

TEST(AdamW, LayerDecayScalesTheFirstStepByDepth) {
  // Adam's first bias-corrected step is lr * g / (|g| + eps) ~ lr * sign(g): the step size reveals
  // the per-tensor LR. 2 blocks, layer_decay 0.5: depth 3 (head) x1, 2 x0.5, 1 x0.25, 0 x0.125.
  ViTWeights w = tiny_weights(2, 3, 2);
  AdamWOptions o;
  o.weight_decay = 0.0f;
  o.layer_decay = 0.5f;
  o.eps = 1e-12f;
  AdamW opt(w, o);
  ViTWeights grads = hilum::training::zeros_like(w);
  for (const ParamRef& p : hilum::training::parameters(grads))
    for (std::size_t i = 0; i < p.size; ++i) p.data[i] = (i % 2 == 0) ? 0.3f : -2.0f;
  const auto before = snapshot(w);
  const float lr = 0.01f;
  opt.step(w, grads, lr);
  const auto refs = hilum::training::parameters(w);
  for (std::size_t k = 0; k < refs.size(); ++k) {
    const double expected = lr * std::pow(0.5, 3 - refs[k].depth);
    for (std::size_t i = 0; i < refs[k].size; ++i) {
      const double delta = static_cast<double>(refs[k].data[i]) - before[k][i];
      // 1e-3: the float rounding of p (about 0.5) is ~3e-8.
      EXPECT_NEAR(delta, (i % 2 == 0 ? -expected : expected), 1e-3 * expected) << refs[k].name << " depth " << refs[k].depth;
    }
  }
}

TEST(AdamW, WeightDecayOnlyOnDecayTensors) {
  ViTWeights w = tiny_weights(3);
  AdamWOptions o;
  o.weight_decay = 0.1f;
  AdamW opt(w, o);
  ViTWeights grads = hilum::training::zeros_like(w);  // zero gradients: only the decay acts
  const auto before = snapshot(w);
  opt.step(w, grads, 0.5f);
  const auto refs = hilum::training::parameters(w);
  int decayed = 0;
  for (std::size_t k = 0; k < refs.size(); ++k) {
    const float factor = refs[k].decay ? 1.0f - 0.5f * 0.1f : 1.0f;
    decayed += refs[k].decay ? 1 : 0;
    for (std::size_t i = 0; i < refs[k].size; ++i) EXPECT_FLOAT_EQ(refs[k].data[i], before[k][i] * factor) << refs[k].name;
  }
  EXPECT_GT(decayed, 0);
}

TEST(AdamW, SetTrainableRejectsTheWrongCount) {
  ViTWeights w = tiny_weights(4);
  AdamW opt(w, {});
  EXPECT_THROW(opt.set_trainable(std::vector<bool>(3, true)), std::invalid_argument);
}

// ---- State files --------------------------------------------------------------------------------

class AdamWState : public hilum::test::TempDirTest {};

ViTWeights random_grads(const ViTWeights& w, std::uint64_t seed) {
  ViTWeights g = hilum::training::zeros_like(w);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  for (const ParamRef& p : hilum::training::parameters(g))
    for (std::size_t i = 0; i < p.size; ++i) p.data[i] = normal(rng);
  return g;
}

TEST_F(AdamWState, SaveLoadRoundTripContinuesIdentically) {
  ViTWeights w = tiny_weights(5);
  AdamW opt(w, {});
  for (int s = 0; s < 3; ++s) {
    ViTWeights g = random_grads(w, 100 + static_cast<std::uint64_t>(s));
    opt.step(w, g, 1e-2f);
  }
  const auto file = path("adamw.safetensors");
  ASSERT_TRUE(opt.save(file).ok());
  // Written atomically: only the file itself is in the folder.
  int entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir_)) ++entries;
  EXPECT_EQ(entries, 1);

  AdamW restored(w, {});
  const auto status = restored.load(file);
  ASSERT_TRUE(status.ok()) << status.error().message;
  EXPECT_EQ(restored.steps(), 3);
  ViTWeights w1 = w;
  ViTWeights w2 = w;
  ViTWeights g1 = random_grads(w, 200);
  ViTWeights g2 = g1;
  opt.step(w1, g1, 1e-2f);
  restored.step(w2, g2, 1e-2f);
  EXPECT_EQ(snapshot(w1), snapshot(w2));
  // A fresh optimizer (no moments, step 1) would have moved differently.
  AdamW fresh(w, {});
  ViTWeights w3 = w;
  ViTWeights g3 = random_grads(w, 200);
  fresh.step(w3, g3, 1e-2f);
  EXPECT_NE(snapshot(w1), snapshot(w3));
}

TEST_F(AdamWState, LoadRejectsAStateOfAnotherModel) {
  ViTWeights w = tiny_weights(6, 3);
  AdamW opt(w, {});
  ViTWeights g = random_grads(w, 1);
  opt.step(w, g, 1e-3f);
  const auto file = path("state.safetensors");
  ASSERT_TRUE(opt.save(file).ok());

  ViTWeights other = tiny_weights(6, 2);  // a 2-label classifier
  AdamW wrong(other, {});
  const auto status = wrong.load(file);
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(wrong.steps(), 0);

  ViTWeights deeper = tiny_weights(6, 3, 2);  // one more block: tensors missing
  AdamW wrong2(deeper, {});
  EXPECT_FALSE(wrong2.load(file).ok());

  ViTWeights swapped = tiny_weights(6, 3);  // same sizes, transposed shape
  swapped.blocks[0].fc1.w = Matrix::Zero(4, 8);
  swapped.blocks[0].fc2.w = Matrix::Zero(8, 4);
  AdamW wrong3(swapped, {});
  EXPECT_FALSE(wrong3.load(file).ok());
}

TEST_F(AdamWState, LoadRejectsExtraTensorsAndMissingStep) {
  ViTWeights w = tiny_weights(7);
  AdamW opt(w, {});
  const auto file = path("state.safetensors");
  ASSERT_TRUE(opt.save(file).ok());
  auto st = hilum::inference::SafetensorsFile::open(file);
  ASSERT_TRUE(st.ok());
  std::vector<std::vector<float>> keep;
  std::vector<hilum::inference::TensorToWrite> tensors;
  for (const auto& t : st->tensors()) {
    keep.push_back(*st->read_f32(t.name));
  }
  for (std::size_t i = 0; i < st->tensors().size(); ++i)
    tensors.push_back({st->tensors()[i].name, st->tensors()[i].shape, keep[i].data()});
  const float extra[2] = {1.0f, 2.0f};
  auto with_extra = tensors;
  with_extra.push_back({"exp_avg.something_else", {2}, extra});
  ASSERT_TRUE(hilum::inference::write_safetensors(path("extra.safetensors"), with_extra,
                                                  {{"format", "pt"}, {"step", "4"}})
                  .ok());
  AdamW a(w, {});
  EXPECT_FALSE(a.load(path("extra.safetensors")).ok());
  ASSERT_TRUE(hilum::inference::write_safetensors(path("nostep.safetensors"), tensors, {{"format", "pt"}}).ok());
  EXPECT_FALSE(a.load(path("nostep.safetensors")).ok());
  ASSERT_TRUE(hilum::inference::write_safetensors(path("step.safetensors"), tensors, {{"format", "pt"}, {"step", "4"}}).ok());
  EXPECT_TRUE(a.load(path("step.safetensors")).ok());
  EXPECT_EQ(a.steps(), 4);
  EXPECT_FALSE(a.load(path("does-not-exist.safetensors")).ok());
}

// ---- Schedule -------------------------------------------------------------------------------------

TEST(CosineLr, WarmUpThenCosineToTheFloor) {
  using hilum::training::cosine_lr;
  EXPECT_FLOAT_EQ(cosine_lr(0, 110, 10, 1.0f, 0.1f), 0.0f);
  EXPECT_FLOAT_EQ(cosine_lr(5, 110, 10, 1.0f, 0.1f), 0.5f);
  EXPECT_FLOAT_EQ(cosine_lr(10, 110, 10, 1.0f, 0.1f), 1.0f);
  EXPECT_FLOAT_EQ(cosine_lr(60, 110, 10, 1.0f, 0.1f), 0.55f);  // half-way down the cosine
  EXPECT_NEAR(cosine_lr(35, 110, 10, 1.0f, 0.1f), 0.1 + 0.9 * 0.5 * (1 + std::cos(std::numbers::pi * 0.25)), 1e-6);
  EXPECT_FLOAT_EQ(cosine_lr(110, 110, 10, 1.0f, 0.1f), 0.1f);
  EXPECT_FLOAT_EQ(cosine_lr(500, 110, 10, 1.0f, 0.1f), 0.1f);
  EXPECT_FLOAT_EQ(cosine_lr(0, 100, 0, 2e-4f), 2e-4f);  // no warm-up
  // Monotone decreasing after the warm-up.
  float previous = cosine_lr(10, 110, 10, 1.0f);
  for (int s = 11; s <= 110; ++s) {
    const float lr = cosine_lr(s, 110, 10, 1.0f);
    EXPECT_LE(lr, previous);
    previous = lr;
  }
}

// ---- Clipping against torch -----------------------------------------------------------------------

TEST(ClipGradNorm, MatchesTorch) {
  const json g = load_golden("clip.json");
  for (const auto& c : g["cases"]) {
    ViTWeights w = tiny_weights(8);
    ViTWeights grads = hilum::training::zeros_like(w);
    // Shapes (3, 4), (4,), (3,): classifier weight, a LayerNorm weight, classifier bias; others 0.
    float* targets[3] = {grads.classifier.w.data(), grads.blocks[0].ln_after.gamma.data(), grads.classifier.b.data()};
    for (int t = 0; t < 3; ++t) {
      const std::vector<float> v = flat(c["grads"][static_cast<std::size_t>(t)]);
      std::copy(v.begin(), v.end(), targets[t]);
    }
    const float norm = hilum::training::clip_grad_norm(grads, c["max_norm"].get<float>());
    EXPECT_NEAR(norm, c["norm"].get<double>(), 1e-6 * c["norm"].get<double>());
    for (int t = 0; t < 3; ++t) expect_close(targets[t], c["clipped"][static_cast<std::size_t>(t)], 1e-6, "clipped");
    EXPECT_EQ(grads.patch_w.cwiseAbs().maxCoeff(), 0.0f);
  }
  // The first case is clipped to max_norm, the second is left alone.
  EXPECT_GT(g["cases"][0]["norm"].get<double>(), g["cases"][0]["max_norm"].get<double>());
  EXPECT_LT(g["cases"][1]["norm"].get<double>(), g["cases"][1]["max_norm"].get<double>());
}

TEST(ClipGradNorm, ClippedNormIsMaxNorm) {
  ViTWeights w = tiny_weights(9);
  ViTWeights grads = random_grads(w, 9);
  const double before = std::sqrt(hilum::training::squared_norm(grads));
  const float returned = hilum::training::clip_grad_norm(grads, 0.5f);
  EXPECT_NEAR(returned, before, 1e-5 * before);
  EXPECT_NEAR(std::sqrt(hilum::training::squared_norm(grads)), 0.5, 1e-5);
}

}  // namespace
