// The ViT forward pass against PyTorch (tests/reference/make_vit_reference.py): every stage of
// every golden case -- embeddings, each block, each layer's attention, final LayerNorm, logits,
// probabilities and both rollout maps -- within a relative error of 1e-5 (max |ours - theirs|
// over max |theirs|, per tensor). A failure names the case, the tensor and the worst element.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>

#include "hilum/inference/safetensors.hpp"
#include "hilum/inference/vit.hpp"

namespace fs = std::filesystem;
namespace inf = hilum::inference;

namespace {

constexpr double kTolerance = 1e-5;

void expect_close(const std::string& what, const float* ours, const std::vector<float>& theirs, std::size_t n) {
  ASSERT_EQ(theirs.size(), n) << what << ": element count differs";
  double max_abs = 0.0, max_diff = 0.0;
  std::size_t worst = 0;
  for (std::size_t i = 0; i < n; ++i) {
    max_abs = std::max(max_abs, static_cast<double>(std::abs(theirs[i])));
    const double d = std::abs(static_cast<double>(ours[i]) - theirs[i]);
    if (d > max_diff || std::isnan(d)) {
      max_diff = std::isnan(d) ? INFINITY : d;
      worst = i;
    }
  }
  const double rel = max_diff / std::max(max_abs, 1e-12);
  EXPECT_LT(rel, kTolerance) << what << ": relative error " << rel << " at element " << worst << " (ours " << ours[worst]
                             << ", PyTorch " << theirs[worst] << ")";
}

class Reference : public ::testing::TestWithParam<std::string> {};

TEST_P(Reference, EveryStageMatchesPyTorch) {
  const fs::path dir = fs::path(HILUM_GOLDEN_DIR) / GetParam();
  auto model = inf::ViTModel::load(dir);
  ASSERT_TRUE(model.ok()) << GetParam() << ": " << model.error().message;
  model->set_precision(inf::Precision::F32);  // the reference arithmetic (BF16: test_vit_kernels.cpp)
  auto ref = inf::SafetensorsFile::open(dir / "reference.safetensors");
  ASSERT_TRUE(ref.ok()) << ref.error().message;
  const inf::TensorInfo* px = ref->find("pixel_values");
  ASSERT_NE(px, nullptr);
  ASSERT_EQ(px->shape.size(), 4u);
  const auto B = static_cast<int>(px->shape[0]), C = static_cast<int>(px->shape[1]), H = static_cast<int>(px->shape[2]),
             W = static_cast<int>(px->shape[3]);
  auto pixels = ref->read_f32("pixel_values");
  ASSERT_TRUE(pixels.ok());
  std::vector<inf::Image> batch;
  for (int b = 0; b < B; ++b) {
    inf::Image im{C, H, W, {}};
    const std::size_t n = static_cast<std::size_t>(C) * H * W;
    im.data.assign(pixels->begin() + static_cast<std::ptrdiff_t>(b * n), pixels->begin() + static_cast<std::ptrdiff_t>((b + 1) * n));
    batch.push_back(std::move(im));
  }
  auto out = model->forward(batch, {true, true});
  ASSERT_TRUE(out.ok()) << out.error().message;
  const int L = model->config().num_layers;
  const auto stage = [&](const std::string& name, int index) {
    auto theirs = ref->read_f32(name);
    ASSERT_TRUE(theirs.ok()) << name << ": " << theirs.error().message;
    std::vector<float> ours;
    for (int b = 0; b < B; ++b) {
      const inf::Matrix& m = out->hidden_states[static_cast<std::size_t>(b)][static_cast<std::size_t>(index)];
      ours.insert(ours.end(), m.data(), m.data() + m.size());
    }
    expect_close(GetParam() + "/" + name, ours.data(), theirs.value(), ours.size());
  };
  stage("embeddings", 0);
  for (int l = 0; l < L; ++l) stage("block." + std::to_string(l), l + 1);
  stage("final_layernorm", L + 1);
  for (int l = 0; l < L; ++l) {
    auto theirs = ref->read_f32("attention." + std::to_string(l));
    ASSERT_TRUE(theirs.ok());
    std::vector<float> ours;
    for (int b = 0; b < B; ++b)
      for (const auto& head : out->attentions[static_cast<std::size_t>(b)][static_cast<std::size_t>(l)]) ours.insert(ours.end(), head.data(), head.data() + head.size());
    expect_close(GetParam() + "/attention." + std::to_string(l), ours.data(), theirs.value(), ours.size());
  }
  if (ref->find("logits") != nullptr) {
    auto logits = ref->read_f32("logits");
    auto probs = ref->read_f32("probabilities");
    ASSERT_TRUE(logits.ok() && probs.ok());
    expect_close(GetParam() + "/logits", out->logits.data(), logits.value(), static_cast<std::size_t>(out->logits.size()));
    expect_close(GetParam() + "/probabilities", out->probabilities.data(), probs.value(), static_cast<std::size_t>(out->probabilities.size()));
  } else {
    EXPECT_EQ(out->logits.cols(), 0);
  }
  for (const auto& [name, fusion, discard] : {std::tuple<std::string, inf::HeadFusion, float>{"rollout.mean", inf::HeadFusion::Mean, 0.0f},
                                              {"rollout.max.discard0.5", inf::HeadFusion::Max, 0.5f}}) {
    auto theirs = ref->read_f32(name);
    ASSERT_TRUE(theirs.ok()) << name;
    std::vector<float> ours;
    for (int b = 0; b < B; ++b) {
      const inf::Matrix map = inf::attention_rollout(out->attentions[static_cast<std::size_t>(b)], fusion, discard, out->grid_h, out->grid_w);
      ours.insert(ours.end(), map.data(), map.data() + map.size());
    }
    expect_close(GetParam() + "/" + name, ours.data(), theirs.value(), ours.size());
  }
}

std::vector<std::string> cases() {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(HILUM_GOLDEN_DIR)) {
    if (e.is_directory() && fs::exists(e.path() / "reference.safetensors")) out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

INSTANTIATE_TEST_SUITE_P(Golden, Reference, ::testing::ValuesIn(cases()));

// The comparison has teeth: nudging one weight by 1e-3 of its scale breaks the match.
TEST(ReferenceSet, APerturbedModelDoesNotMatch) {
  const fs::path dir = fs::path(HILUM_GOLDEN_DIR) / "tiny_multilabel";
  auto model = inf::ViTModel::load(dir);
  ASSERT_TRUE(model.ok()) << model.error().message;
  model->set_precision(inf::Precision::F32);
  auto ref = inf::SafetensorsFile::open(dir / "reference.safetensors");
  ASSERT_TRUE(ref.ok());
  auto pixels = ref->read_f32("pixel_values");
  auto logits = ref->read_f32("logits");
  ASSERT_TRUE(pixels.ok() && logits.ok());
  const inf::TensorInfo* px = ref->find("pixel_values");
  const auto C = static_cast<int>(px->shape[1]), H = static_cast<int>(px->shape[2]), W = static_cast<int>(px->shape[3]);
  inf::Image im{C, H, W, std::vector<float>(pixels->begin(), pixels->begin() + C * H * W)};
  auto exact = model->forward({im});
  ASSERT_TRUE(exact.ok());
  model->mutable_weights().blocks[1].fc2.w(0, 0) += 1e-3f;
  auto nudged = model->forward({im});
  ASSERT_TRUE(nudged.ok());
  double max_abs = 0, diff_exact = 0, diff_nudged = 0;
  for (Eigen::Index k = 0; k < exact->logits.cols(); ++k) {
    max_abs = std::max(max_abs, static_cast<double>(std::abs((*logits)[static_cast<std::size_t>(k)])));
    diff_exact = std::max(diff_exact, static_cast<double>(std::abs(exact->logits(0, k) - (*logits)[static_cast<std::size_t>(k)])));
    diff_nudged = std::max(diff_nudged, static_cast<double>(std::abs(nudged->logits(0, k) - (*logits)[static_cast<std::size_t>(k)])));
  }
  EXPECT_LT(diff_exact / max_abs, kTolerance);
  EXPECT_GT(diff_nudged / max_abs, kTolerance) << "a changed weight went unnoticed";
}

TEST(ReferenceSet, CoversTheRequiredShapes) {
  const auto c = cases();
  for (const char* required : {"tiny_multilabel", "odd_grid_nobias", "interpolated", "bf16_weights", "f16_weights", "backbone_only"}) {
    EXPECT_NE(std::find(c.begin(), c.end(), required), c.end()) << "golden case " << required << " is missing";
  }
}

}  // namespace
