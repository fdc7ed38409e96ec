// The float model against PyTorch and against itself:
// - the training forward's logits equal inference::ViTModel::forward's (the forward goldens' models);
// - every parameter gradient equals PyTorch's (tests/reference/golden_grad, make_grad_reference.py)
//   to 1e-4 relative per tensor, also with activation checkpointing (identical, fewer Tape bytes);
// - frozen prefix: forward_from(frozen_prefix(...)) == forward, and the trainable gradients equal a
//   full backward's; drop_path = 0 is the plain model; a reused Tape gives the same gradients;
// - ten AdamW steps on BCE (training/src/loss.cpp + optim.cpp) give PyTorch's ten losses;
// - the class-specific relevance map (training/explain.hpp): every block's d(logit)/d(attention)
//   and the map equal PyTorch autograd's and Chefer et al.'s rule computed there in float64.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "hilum/inference/safetensors.hpp"
#include "hilum/training/explain.hpp"
#include "hilum/training/loss.hpp"
#include "hilum/training/optim.hpp"
#include "test_backprop_common.hpp"

namespace fs = std::filesystem;
namespace inf = hilum::inference;

namespace {

using namespace hilum::training;
using namespace hilum::training::test;

const fs::path kGradDir = HILUM_GRAD_GOLDEN_DIR;
const fs::path kForwardDir = fs::path(HILUM_GRAD_GOLDEN_DIR).parent_path() / "golden";

std::vector<Image> images_from(const inf::SafetensorsFile& f) {
  const inf::TensorInfo* px = f.find("pixel_values");
  if (px == nullptr || px->shape.size() != 4) return {};
  const auto B = static_cast<int>(px->shape[0]), C = static_cast<int>(px->shape[1]), H = static_cast<int>(px->shape[2]),
             W = static_cast<int>(px->shape[3]);
  auto pixels = f.read_f32("pixel_values");
  if (!pixels.ok()) return {};
  std::vector<Image> batch;
  const std::size_t n = static_cast<std::size_t>(C) * H * W;
  for (int b = 0; b < B; ++b) {
    Image im{C, H, W, {}};
    im.data.assign(pixels->begin() + static_cast<std::ptrdiff_t>(b * n), pixels->begin() + static_cast<std::ptrdiff_t>((b + 1) * n));
    batch.push_back(std::move(im));
  }
  return batch;
}

Matrix matrix_from(const inf::SafetensorsFile& f, const std::string& name) {
  const inf::TensorInfo* t = f.find(name);
  if (t == nullptr || t->shape.size() != 2) return {};
  auto data = f.read_f32(name);
  if (!data.ok()) return {};
  return Eigen::Map<const Matrix>(data->data(), t->shape[0], t->shape[1]);
}

std::map<std::string, std::vector<float>> grads_by_name(ViTWeights& g) {
  std::map<std::string, std::vector<float>> out;
  for (const ParamRef& p : parameters(g)) out[p.name].assign(p.data, p.data + p.size);
  return out;
}

// ---- Forward equals the inference engine ----------------------------------------------------------

class ForwardMatchesInference : public ::testing::TestWithParam<std::string> {};

TEST_P(ForwardMatchesInference, LogitsAndEmbeddings) {
  const fs::path dir = kForwardDir / GetParam();
  auto model = inf::ViTModel::load(dir);
  ASSERT_TRUE(model.ok()) << dir << ": " << model.error().message;
  auto ref = inf::SafetensorsFile::open(dir / "reference.safetensors");
  ASSERT_TRUE(ref.ok()) << ref.error().message;
  const auto batch = images_from(*ref);
  ASSERT_FALSE(batch.empty());
  model->set_precision(inf::Precision::F32);  // the inference default may be BF16; compare with its F32 path
  auto want = model->forward(batch);
  ASSERT_TRUE(want.ok());
  for (bool ckpt : {false, true}) {
    TrainOptions o;
    o.checkpoint_activations = ckpt;
    Tape tape;
    const TrainOutput got = forward(model->config(), model->weights(), batch, o, tape);
    ASSERT_EQ(got.logits.rows(), want->logits.rows());
    ASSERT_EQ(got.logits.cols(), want->logits.cols());
    const Comparison l = compare(got.logits.data(), want->logits.data(), static_cast<std::size_t>(got.logits.size()));
    EXPECT_LT(l.rel, 1e-5) << GetParam() << ": logits differ from inference by " << l.rel << " (element " << l.worst << ")";
    const Comparison e = compare(got.embeddings.data(), want->embeddings.data(), static_cast<std::size_t>(got.embeddings.size()));
    EXPECT_LT(e.rel, 1e-5) << GetParam() << ": embeddings differ from inference by " << e.rel;
    // And PyTorch's logits.
    const Matrix torch_logits = matrix_from(*ref, "logits");
    ASSERT_EQ(torch_logits.size(), got.logits.size());
    EXPECT_LT(compare(got.logits.data(), torch_logits.data(), static_cast<std::size_t>(torch_logits.size())).rel, 1e-5) << GetParam();
  }
}

INSTANTIATE_TEST_SUITE_P(Goldens, ForwardMatchesInference,
                         ::testing::Values("tiny_multilabel", "odd_grid_nobias", "interpolated", "interpolated_nonsquare"));

// ---- Gradients equal PyTorch's --------------------------------------------------------------------

// A golden gradient case of make_grad_reference.py: the model, PyTorch's tensors, the batch and
// d(loss)/d(logits).
struct GradCase {
  std::optional<inf::ViTModel> model;
  std::optional<inf::SafetensorsFile> ref;
  std::vector<Image> batch;
  Matrix dlogits;
  int first_trainable_block = 0;
};

void load_grad_case(const std::string& name, GradCase& out) {
  const fs::path dir = kGradDir / name;
  auto model = inf::ViTModel::load(dir);
  ASSERT_TRUE(model.ok()) << dir << ": " << model.error().message;
  auto ref = inf::SafetensorsFile::open(dir / "grad.safetensors");
  ASSERT_TRUE(ref.ok()) << ref.error().message;
  out.batch = images_from(*ref);
  ASSERT_FALSE(out.batch.empty()) << name;
  out.dlogits = matrix_from(*ref, "dlogits");
  ASSERT_EQ(out.dlogits.rows(), static_cast<Eigen::Index>(out.batch.size())) << name;
  out.first_trainable_block = std::stoi(ref->metadata().at("first_trainable_block"));
  out.model.emplace(std::move(*model));
  out.ref.emplace(std::move(*ref));
}

class GradientsMatchPyTorch : public ::testing::TestWithParam<std::string> {};

TEST_P(GradientsMatchPyTorch, EveryTensor) {
  GradCase gc;
  ASSERT_NO_FATAL_FAILURE(load_grad_case(GetParam(), gc));
  auto& model = gc.model;
  auto& ref = gc.ref;
  const auto& batch = gc.batch;
  const Matrix& dlogits = gc.dlogits;
  TrainOptions o;
  o.first_trainable_block = gc.first_trainable_block;

  std::map<std::string, std::vector<float>> plain;
  std::size_t plain_bytes = 0;
  for (bool ckpt : {false, true}) {
    o.checkpoint_activations = ckpt;
    const std::string mode = ckpt ? " (checkpointed)" : "";
    Tape tape;
    ViTWeights grads = zeros_like(model->weights());
    (void)forward(model->config(), model->weights(), batch, o, tape);
    backward(model->config(), model->weights(), tape, dlogits, grads);
    int compared = 0;
    double worst = 0.0;
    std::string worst_name;
    for (const ParamRef& p : parameters(grads)) {
      const std::string key = "grad." + p.name;
      const inf::TensorInfo* t = ref->find(key);
      if (t == nullptr) {  // frozen in PyTorch: must get nothing here either
        ASSERT_GT(o.first_trainable_block, 0) << GetParam() << ": golden lacks " << key;
        for (std::size_t i = 0; i < p.size; ++i) ASSERT_EQ(p.data[i], 0.0f) << GetParam() << mode << ": frozen " << p.name << " got a gradient";
        continue;
      }
      auto want = ref->read_f32(key);
      ASSERT_TRUE(want.ok()) << key;
      ASSERT_EQ(want->size(), p.size) << GetParam() << ": " << p.name << " has the wrong size";
      const Comparison c = compare(p.data, want->data(), p.size);
      if (p.name.find("attention.key.bias") != std::string::npos) {
        // Analytically zero (a key bias shifts every score of a softmax row by the same amount):
        // both sides hold float rounding noise only.
        EXPECT_LT(std::max(c.max_ref, compare(want->data(), p.data, p.size).max_ref), 1e-6) << GetParam() << mode << ": " << p.name;
        ++compared;
        continue;
      }
      EXPECT_LT(c.rel, 1e-4) << GetParam() << mode << ": gradient of " << p.name << ": max relative error " << c.rel << " at element "
                             << c.worst << " (ours " << c.ours << ", PyTorch " << c.theirs << ", max |PyTorch| " << c.max_ref << ")";
      EXPECT_GT(c.max_ref, 0.0) << p.name;
      if (c.rel > worst) {
        worst = c.rel;
        worst_name = p.name;
      }
      ++compared;
    }
    std::printf("%s%s: %d gradient tensors, worst relative error %.2e (%s)\n", GetParam().c_str(), mode.c_str(), compared, worst, worst_name.c_str());
    EXPECT_EQ(compared, static_cast<int>(ref->tensors().size()) - 2) << GetParam() << ": not every golden gradient was compared";
    if (!ckpt) {
      plain = grads_by_name(grads);
      plain_bytes = tape.bytes();
    } else {
      EXPECT_EQ(grads_by_name(grads), plain) << GetParam() << ": checkpointed gradients differ from the plain backward";
      // The last block is never checkpointed (backward starts with it): savings from 3 trainable blocks.
      const int trainable_blocks = model->config().num_layers - o.first_trainable_block;
      if (trainable_blocks >= 3) EXPECT_LT(tape.bytes(), plain_bytes) << GetParam() << ": checkpointing must keep fewer bytes";
      else EXPECT_LE(tape.bytes(), plain_bytes) << GetParam();
      EXPECT_GT(tape.bytes(), 0u);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Goldens, GradientsMatchPyTorch, ::testing::Values("tiny_erf", "odd_tanh_nobias", "interpolated", "frozen_prefix"));

// ---- Frozen prefix, drop-path, tape reuse ---------------------------------------------------------

struct Tiny {
  ViTConfig config = tiny_config(16, 3, 4, 32, 16, 4, 3, 4, true, "gelu");
  ViTWeights weights = random_weights(config, 41);
  std::vector<Image> images = random_images(3, 3, 20, 12, 42);  // grid 5 x 3 (stored 4 x 4): interpolated
  Matrix dlogits = random_matrix<float>(3, 4, 43);
};

ViTWeights run(const Tiny& t, const TrainOptions& o, Matrix* logits = nullptr, Tape* reuse = nullptr) {
  Tape own;
  Tape& tape = reuse != nullptr ? *reuse : own;
  ViTWeights g = zeros_like(t.weights);
  const TrainOutput out = forward(t.config, t.weights, t.images, o, tape);
  if (logits != nullptr) *logits = out.logits;
  backward(t.config, t.weights, tape, t.dlogits, g);
  return g;
}

TEST(BackpropModel, FrozenPrefixMatchesTheFullModel) {
  const Tiny t;
  TrainOptions full;
  Matrix full_logits;
  ViTWeights full_grads = run(t, full, &full_logits);
  for (int first : {1, 2, 3}) {
    TrainOptions o;
    o.first_trainable_block = first;
    const std::vector<Matrix> cached = frozen_prefix(t.config, t.weights, t.images, first);
    ASSERT_EQ(cached.size(), t.images.size());
    ASSERT_EQ(cached[0].rows(), 16);
    Tape tape;
    const TrainOutput from = forward_from(t.config, t.weights, cached, o, tape);
    ViTWeights g = zeros_like(t.weights);
    backward(t.config, t.weights, tape, t.dlogits, g);
    Matrix frozen_logits;
    const ViTWeights g2 = run(t, o, &frozen_logits);
    // Bit for bit while a block is trained (the same code runs). With first == L the last block
    // runs in the frozen prefix on every token, where training runs it on the CLS rows alone (GEMMs
    // of other shapes): equal to float rounding.
    const double tol = first < 3 ? 0.0 : 1e-5;
    const auto expect_close = [&](const float* x, const float* y, std::size_t n, const std::string& what) {
      const Comparison cmp = compare(x, y, n);
      if (tol == 0.0) EXPECT_EQ(cmp.rel, 0.0) << what << ", first block " << first;
      else EXPECT_LT(cmp.rel, tol) << what << ", first block " << first;
    };
    expect_close(from.logits.data(), full_logits.data(), static_cast<std::size_t>(full_logits.size()), "forward_from(frozen_prefix) logits");
    expect_close(frozen_logits.data(), full_logits.data(), static_cast<std::size_t>(full_logits.size()), "forward logits (frozen prefix)");
    auto a = parameters(g), b = parameters(full_grads), c = parameters(const_cast<ViTWeights&>(g2));
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (a[i].depth > first) {
        expect_close(a[i].data, b[i].data, a[i].size, a[i].name + " (forward_from)");
        expect_close(c[i].data, b[i].data, a[i].size, a[i].name + " (forward)");
      } else {
        for (std::size_t k = 0; k < a[i].size; ++k) {
          ASSERT_EQ(a[i].data[k], 0.0f) << "frozen " << a[i].name << " got a gradient (forward_from, first " << first << ")";
          ASSERT_EQ(c[i].data[k], 0.0f) << "frozen " << a[i].name << " got a gradient (forward, first " << first << ")";
        }
      }
    }
  }
  // n_blocks = L: the tokens before the final LayerNorm; its CLS row gives the embeddings.
  const std::vector<Matrix> all = frozen_prefix(t.config, t.weights, t.images, 3);
  TrainOptions head_only;
  head_only.first_trainable_block = 3;
  Tape tape;
  const TrainOutput out = forward_from(t.config, t.weights, all, head_only, tape);
  EXPECT_LT(compare(out.logits.data(), full_logits.data(), static_cast<std::size_t>(full_logits.size())).rel, 1e-5);
}

TEST(BackpropModel, DropPathZeroIsThePlainModelAndASeedIsDeterministic) {
  const Tiny t;
  Matrix plain_logits, zero_logits, a_logits, b_logits, c_logits;
  const ViTWeights plain = run(t, {}, &plain_logits);
  TrainOptions zero;
  zero.seed = 99;
  zero.drop_path = 0.0f;
  const ViTWeights z = run(t, zero, &zero_logits);
  EXPECT_EQ(zero_logits, plain_logits);
  EXPECT_EQ(squared_norm(z), squared_norm(plain));
  TrainOptions dp;
  dp.drop_path = 0.6f;
  dp.seed = 5;
  const ViTWeights ga = run(t, dp, &a_logits), gb = run(t, dp, &b_logits);
  EXPECT_EQ(a_logits, b_logits) << "same seed, same masks";
  EXPECT_EQ(squared_norm(ga), squared_norm(gb));
  EXPECT_NE(a_logits, plain_logits) << "drop_path 0.6 changed nothing";
  dp.checkpoint_activations = true;
  const ViTWeights gc = run(t, dp, &c_logits);
  EXPECT_EQ(c_logits, a_logits);
  EXPECT_EQ(squared_norm(gc), squared_norm(ga)) << "checkpointing must recompute the same drop-path masks";
}

TEST(BackpropModel, FrozenClassifierGetsNoGradientAndChangesNothingElse) {
  const Tiny t;
  const ViTWeights all = run(t, {});
  TrainOptions o;
  o.train_classifier = false;
  ViTWeights g = run(t, o);
  auto a = parameters(g);
  auto b = parameters(const_cast<ViTWeights&>(all));
  for (std::size_t i = 0; i < a.size(); ++i) {
    const bool head = a[i].name.rfind("classifier.", 0) == 0;
    double diff = 0.0, norm = 0.0;
    for (std::size_t k = 0; k < a[i].size; ++k) {
      diff += std::abs(a[i].data[k] - (head ? 0.0f : b[i].data[k]));
      norm += std::abs(b[i].data[k]);
    }
    EXPECT_EQ(diff, 0.0) << a[i].name;
    EXPECT_GT(norm, 0.0) << a[i].name;
  }
}

TEST(BackpropModel, ReusedTapeGivesTheSameGradients) {
  const Tiny t;
  Tape tape;
  TrainOptions o;
  const ViTWeights first = run(t, o, nullptr, &tape);
  const std::size_t bytes = tape.bytes();
  EXPECT_GT(bytes, 0u);
  const ViTWeights again = run(t, o, nullptr, &tape);
  EXPECT_EQ(squared_norm(first), squared_norm(again));
  EXPECT_EQ(tape.bytes(), bytes);
  // Switching modes on the same tape.
  o.checkpoint_activations = true;
  const ViTWeights ck = run(t, o, nullptr, &tape);
  EXPECT_EQ(squared_norm(ck), squared_norm(first));
  EXPECT_LT(tape.bytes(), bytes);
  // Backward without a fresh forward is an error, not a silent double count.
  ViTWeights g = zeros_like(t.weights);
  EXPECT_THROW(backward(t.config, t.weights, tape, t.dlogits, g), std::logic_error);
}

TEST(BackpropModel, ParametersAreNamedLikeHuggingFace) {
  Tiny t;
  const auto params = parameters(t.weights);
  ASSERT_EQ(params.size(), 4u + 3u * 16u + 4u);
  EXPECT_EQ(params.front().name, "vit.embeddings.patch_embeddings.projection.weight");
  EXPECT_EQ(params[6].name, "vit.encoder.layer.0.attention.attention.query.weight");
  EXPECT_EQ(params[6].depth, 1);
  EXPECT_TRUE(params[6].decay);
  EXPECT_FALSE(params[7].decay);
  EXPECT_EQ(params.back().name, "classifier.bias");
  EXPECT_EQ(params.back().depth, 4);
  ViTWeights g = zeros_like(t.weights);
  EXPECT_EQ(squared_norm(g), 0.0);
  parameters(g)[0].data[3] = 2.0f;
  scale(g, 3.0f);
  EXPECT_EQ(squared_norm(g), 36.0);
  set_zero(g);
  EXPECT_EQ(squared_norm(g), 0.0);
}

// ---- Ten AdamW steps against PyTorch --------------------------------------------------------------

// Ten AdamW steps on BCE from the adamw_bce golden's weights and batch, in `precision`: our losses
// beside PyTorch's (F32, make_grad_reference.py).
struct LossCurves {
  std::vector<double> ours, pytorch;
};

void ten_adamw_steps(inf::Precision precision, LossCurves& out) {
  const fs::path dir = kGradDir / "adamw_bce";
  auto model = inf::ViTModel::load(dir);
  ASSERT_TRUE(model.ok()) << dir << ": " << model.error().message;
  auto ref = inf::SafetensorsFile::open(dir / "grad.safetensors");
  ASSERT_TRUE(ref.ok()) << ref.error().message;
  const auto batch = images_from(*ref);
  const Matrix targets = matrix_from(*ref, "targets");
  auto pos_weight = ref->read_f32("pos_weight");
  auto losses = ref->read_f32("losses");
  ASSERT_TRUE(pos_weight.ok() && losses.ok());
  const auto& meta = ref->metadata();
  AdamWOptions ao;
  ao.lr = std::stof(meta.at("lr"));
  ao.weight_decay = std::stof(meta.at("weight_decay"));
  ao.beta1 = std::stof(meta.at("beta1"));
  ao.beta2 = std::stof(meta.at("beta2"));
  ao.eps = std::stof(meta.at("eps"));
  ao.layer_decay = 1.0f;
  ViTWeights w = model->weights();
  AdamW opt(w, ao);
  ViTWeights grads = zeros_like(w);
  const Matrix mask = Matrix::Ones(targets.rows(), targets.cols());
  TrainOptions o;
  o.precision = precision;
  Tape tape;
  out.pytorch.assign(losses->begin(), losses->end());
  for (std::size_t step = 0; step < losses->size(); ++step) {
    const TrainOutput fw = forward(model->config(), w, batch, o, tape);
    const LossResult l = bce_with_logits(fw.logits, targets, mask, *pos_weight);
    out.ours.push_back(l.loss);
    set_zero(grads);
    backward(model->config(), w, tape, l.dlogits, grads);
    opt.step(w, grads, ao.lr);
  }
}

TEST(BackpropTraining, TenAdamWStepsMatchPyTorchLosses) {
  LossCurves c;
  ASSERT_NO_FATAL_FAILURE(ten_adamw_steps(inf::Precision::F32, c));
  ASSERT_EQ(c.ours.size(), 10u);
  for (std::size_t step = 0; step < c.ours.size(); ++step)
    EXPECT_NEAR(c.ours[step], c.pytorch[step], 1e-4 * std::abs(c.pytorch[step])) << "step " << step << ": loss " << c.ours[step] << ", PyTorch " << c.pytorch[step];
  EXPECT_LT(c.pytorch[9], c.pytorch[0] * 0.9) << "the golden run should learn something";
}

// ---- Class-specific relevance against PyTorch autograd ------------------------------------------

class RelevanceMatchesPyTorch : public ::testing::TestWithParam<std::string> {};

TEST_P(RelevanceMatchesPyTorch, AttentionGradientsAndMap) {
  const fs::path dir = kGradDir / GetParam();
  auto model = inf::ViTModel::load(dir);
  ASSERT_TRUE(model.ok()) << dir << ": " << model.error().message;
  auto ref = inf::SafetensorsFile::open(dir / "relevance.safetensors");
  ASSERT_TRUE(ref.ok()) << ref.error().message;
  const auto batch = images_from(*ref);
  ASSERT_EQ(batch.size(), 1u);
  const int label = std::stoi(ref->metadata().at("label"));
  const auto& c = model->config();
  const AttentionGradients a = attention_gradients(c, model->weights(), batch[0], label);
  ASSERT_EQ(a.gradients.size(), static_cast<std::size_t>(c.num_layers));
  ASSERT_EQ(a.probabilities.size(), a.gradients.size());
  EXPECT_EQ(a.label, label);

  const Matrix want_logits = matrix_from(*ref, "logits");
  ASSERT_EQ(want_logits.cols(), a.logits.size());
  const Comparison lc = compare(a.logits.data(), want_logits.data(), static_cast<std::size_t>(a.logits.size()));
  EXPECT_LT(lc.rel, 1e-5) << GetParam() << ": logits";

  const Eigen::Index T = static_cast<Eigen::Index>(a.grid_h) * a.grid_w + 1, H = c.num_heads;
  for (int b = 0; b < c.num_layers; ++b) {
    const std::string key = "grad_probs." + std::to_string(b);
    const inf::TensorInfo* t = ref->find(key);
    ASSERT_NE(t, nullptr) << key;
    ASSERT_EQ(t->shape, (std::vector<std::int64_t>{H, T, T})) << key;
    auto want = ref->read_f32(key);
    ASSERT_TRUE(want.ok()) << key;
    const bool last = b == c.num_layers - 1;
    const Eigen::Index rows = last ? 1 : T;  // the last block keeps its CLS row only
    const Matrix& ours = a.gradients[static_cast<std::size_t>(b)];
    ASSERT_EQ(ours.rows(), H * rows) << key;
    ASSERT_EQ(ours.cols(), T) << key;
    ASSERT_EQ(a.probabilities[static_cast<std::size_t>(b)].rows(), H * rows) << key;
    Matrix theirs(H * rows, T);
    for (Eigen::Index h = 0; h < H; ++h)
      for (Eigen::Index r = 0; r < T; ++r)
        for (Eigen::Index k = 0; k < T; ++k) {
          const float v = (*want)[static_cast<std::size_t>((h * T + r) * T + k)];
          if (r < rows) theirs(h * rows + r, k) = v;
          else ASSERT_EQ(v, 0.0f) << key << ": PyTorch's last block has a gradient outside the CLS row";
        }
    const Comparison g = compare(ours.data(), theirs.data(), static_cast<std::size_t>(ours.size()));
    EXPECT_GT(g.max_ref, 0.0) << key;
    EXPECT_LT(g.rel, 1e-4) << GetParam() << ": " << key << ": max relative error " << g.rel << " at element " << g.worst << " (ours "
                           << g.ours << ", PyTorch " << g.theirs << ")";
  }

  const Matrix map = class_relevance(a);
  const Matrix want_map = matrix_from(*ref, "relevance");
  ASSERT_EQ(map.rows(), want_map.rows());
  ASSERT_EQ(map.cols(), want_map.cols());
  const Comparison m = compare(map.data(), want_map.data(), static_cast<std::size_t>(map.size()));
  EXPECT_NEAR(map.maxCoeff(), 1.0f, 1e-6f);
  EXPECT_LT(m.rel, 1e-4) << GetParam() << ": relevance map: max error " << m.rel << " at patch " << m.worst << " (ours " << m.ours
                         << ", PyTorch " << m.theirs << ")";
  std::printf("%s: label %d, %d blocks, relevance map %dx%d, worst error %.2e\n", GetParam().c_str(), label, c.num_layers, a.grid_h,
              a.grid_w, m.rel);
}

INSTANTIATE_TEST_SUITE_P(Goldens, RelevanceMatchesPyTorch, ::testing::Values("relevance_erf", "relevance_interpolated"));

// The map belongs to an output: another label gives another map from the same attentions, and an
// output whose classifier row is negated gets exactly the negated attention gradients.
TEST(Relevance, DependsOnTheOutput) {
  auto model = inf::ViTModel::load(kGradDir / "relevance_erf");
  ASSERT_TRUE(model.ok()) << model.error().message;
  auto ref = inf::SafetensorsFile::open(kGradDir / "relevance_erf" / "relevance.safetensors");
  ASSERT_TRUE(ref.ok());
  const auto batch = images_from(*ref);
  ASSERT_EQ(batch.size(), 1u);
  const auto& c = model->config();
  ViTWeights w = model->weights();
  const AttentionGradients a0 = attention_gradients(c, w, batch[0], 0);
  const AttentionGradients a1 = attention_gradients(c, w, batch[0], 1);
  for (std::size_t b = 0; b < a0.probabilities.size(); ++b) EXPECT_EQ(a0.probabilities[b], a1.probabilities[b]) << "block " << b;
  EXPECT_GT((class_relevance(a0) - class_relevance(a1)).cwiseAbs().maxCoeff(), 0.05f) << "two outputs, one map";

  w.classifier.w.row(1) = -w.classifier.w.row(1);
  w.classifier.b(1) = -w.classifier.b(1);
  const AttentionGradients neg = attention_gradients(c, w, batch[0], 1);
  EXPECT_FLOAT_EQ(neg.logits(1), -a1.logits(1));
  for (std::size_t b = 0; b < neg.gradients.size(); ++b) {
    EXPECT_LT((neg.gradients[b] + a1.gradients[b]).cwiseAbs().maxCoeff(), 1e-6f * (1.0f + a1.gradients[b].cwiseAbs().maxCoeff()))
        << "block " << b;
  }
}

// The float linear layers run on inference's packed kernels when the CPU has AVX-512 (the goldens
// above check that path against PyTorch); the Eigen path gives the same gradients.
TEST(PackedLinear, SameGradientsAsTheEigenPath) {
  auto model = inf::ViTModel::load(kGradDir / "tiny_erf");
  ASSERT_TRUE(model.ok()) << model.error().message;
  auto ref = inf::SafetensorsFile::open(kGradDir / "tiny_erf" / "grad.safetensors");
  ASSERT_TRUE(ref.ok());
  const auto batch = images_from(*ref);
  const Matrix dlogits = matrix_from(*ref, "dlogits");
  const bool available = ops::packed_linear();
  EXPECT_EQ(available, inf::matmul_available());
  std::map<std::string, std::vector<float>> by_path[2];
  Matrix logits[2];
  for (int path = 0; path < 2; ++path) {
    ops::packed_linear() = path == 0 && available;
    Tape tape;
    ViTWeights grads = zeros_like(model->weights());
    logits[path] = forward(model->config(), model->weights(), batch, {}, tape).logits;
    backward(model->config(), model->weights(), tape, dlogits, grads);
    by_path[path] = grads_by_name(grads);
  }
  ops::packed_linear() = available;
  EXPECT_LT((logits[0] - logits[1]).cwiseAbs().maxCoeff(), 1e-5f);
  for (const auto& [name, g] : by_path[0]) {
    const auto& other = by_path[1].at(name);
    const Comparison c = compare(g.data(), other.data(), g.size());
    if (name.find("attention.key.bias") != std::string::npos) continue;  // analytically zero: rounding noise only
    EXPECT_LT(c.rel, 1e-5) << name;
  }
}

// ---- BF16 mixed precision -------------------------------------------------------------------------
// TrainOptions::precision = BF16 rounds both operands of every block's linear products (forward,
// dX and dW) to bfloat16 (8 significant bits) and accumulates in F32. Its gradients cannot equal
// PyTorch's F32 ones to 1e-4; they must stay within bfloat16's rounding of them. On a CPU without
// AVX512_BF16 (or without the packed kernels) BF16 runs as F32 and must then give F32's answers.

// Calibrated on the goldens with a margin of about 3x: the worst gradient tensor was 9.4e-3 off
// PyTorch's F32 (tiny_erf), the worst of the ten losses 1.0e-4 (both printed by the tests).
constexpr double kBf16GradientTolerance = 3e-2;
constexpr double kBf16LossTolerance = 3e-4;

bool bf16_runs() { return ops::packed_linear() && inf::available_precision(inf::Precision::BF16) == inf::Precision::BF16; }

TEST(MixedPrecision, GradientsStayWithinBf16RoundingOfPyTorchs) {
  for (const char* name : {"tiny_erf", "odd_tanh_nobias", "interpolated", "frozen_prefix"}) {
    GradCase gc;
    ASSERT_NO_FATAL_FAILURE(load_grad_case(name, gc));
    const auto& model = gc.model;
    const auto& ref = gc.ref;
    const auto& batch = gc.batch;
    const Matrix& dlogits = gc.dlogits;
    TrainOptions o;
    o.first_trainable_block = gc.first_trainable_block;
    Tape tape;
    const Matrix f32_logits = forward(model->config(), model->weights(), batch, o, tape).logits;
    o.precision = inf::Precision::BF16;
    ViTWeights grads = zeros_like(model->weights());
    const TrainOutput out = forward(model->config(), model->weights(), batch, o, tape);
    backward(model->config(), model->weights(), tape, dlogits, grads);
    const Comparison lc = compare(out.logits.data(), f32_logits.data(), static_cast<std::size_t>(f32_logits.size()));
    EXPECT_LT(lc.rel, kBf16GradientTolerance) << name << ": BF16 logits against F32: max relative error " << lc.rel;
    double worst = 0.0;
    std::string worst_name;
    int compared = 0;
    for (const ParamRef& p : parameters(grads)) {
      if (p.name.find("attention.key.bias") != std::string::npos) continue;  // analytically zero: rounding noise only
      auto want = ref->read_f32("grad." + p.name);
      if (!want.ok()) continue;  // frozen (checked for F32 above)
      ASSERT_EQ(want->size(), p.size) << name << ": " << p.name;
      const Comparison c = compare(p.data, want->data(), p.size);
      EXPECT_LT(c.rel, kBf16GradientTolerance) << name << ": BF16 gradient of " << p.name << ": max relative error " << c.rel << " at element "
                                               << c.worst << " (ours " << c.ours << ", PyTorch F32 " << c.theirs << ")";
      if (c.rel > worst) {
        worst = c.rel;
        worst_name = p.name;
      }
      ++compared;
    }
    EXPECT_GT(compared, 10) << name;
    std::printf("%s (BF16, %s): %d gradient tensors, worst relative error against PyTorch's F32 %.2e (%s)\n", name,
                bf16_runs() ? "AVX512_BF16" : "runs as F32 on this CPU", compared, worst, worst_name.c_str());
    // BF16 must really have run: its rounding shows far above the F32 path's 1e-4 agreement (and
    // without AVX512_BF16 the F32 path's agreement must hold).
    if (bf16_runs()) {
      EXPECT_GT(worst, 1e-4) << name << ": BF16 gave F32's gradients; was it used?";
    } else {
      EXPECT_LT(worst, 1e-4) << name;
    }
  }
}

// The cached frozen part (last-k fine-tuning) runs in the precision it is asked for: in BF16,
// forward_from(frozen_prefix) gives what forward gives with the same blocks frozen, bit for bit.
TEST(MixedPrecision, FrozenPrefixRunsInTheRequestedPrecision) {
  const Tiny t;
  TrainOptions o;
  o.first_trainable_block = 2;
  o.precision = inf::Precision::BF16;
  Matrix logits;
  (void)run(t, o, &logits);
  const std::vector<Matrix> bf16 = frozen_prefix(t.config, t.weights, t.images, 2, inf::Precision::BF16);
  const std::vector<Matrix> f32 = frozen_prefix(t.config, t.weights, t.images, 2);
  Tape tape;
  const TrainOutput from = forward_from(t.config, t.weights, bf16, o, tape);
  EXPECT_EQ(compare(from.logits.data(), logits.data(), static_cast<std::size_t>(logits.size())).rel, 0.0);
  const Comparison tokens = compare(bf16[0].data(), f32[0].data(), static_cast<std::size_t>(f32[0].size()));
  EXPECT_LT(tokens.rel, kBf16GradientTolerance);
  if (bf16_runs()) {
    EXPECT_GT(tokens.rel, 0.0) << "the BF16 prefix gave the F32 tokens";
  } else {
    EXPECT_EQ(tokens.rel, 0.0);
  }
}

TEST(MixedPrecision, TenAdamWStepsFollowPyTorchsF32Losses) {
  LossCurves c;
  ASSERT_NO_FATAL_FAILURE(ten_adamw_steps(inf::Precision::BF16, c));
  ASSERT_EQ(c.ours.size(), 10u);
  double worst = 0.0;
  for (std::size_t step = 0; step < c.ours.size(); ++step) {
    worst = std::max(worst, std::abs(c.ours[step] - c.pytorch[step]) / std::abs(c.pytorch[step]));
    EXPECT_NEAR(c.ours[step], c.pytorch[step], kBf16LossTolerance * std::abs(c.pytorch[step]))
        << "step " << step << ": BF16 loss " << c.ours[step] << ", PyTorch F32 " << c.pytorch[step];
  }
  std::printf("ten AdamW steps in BF16: worst relative loss difference from PyTorch's F32 %.2e\n", worst);
  EXPECT_LT(c.ours.back(), c.ours.front() * 0.9) << "BF16 training should learn what F32 learns";
}

TEST(Relevance, RejectsBadRequests) {
  auto model = inf::ViTModel::load(kGradDir / "relevance_erf");
  ASSERT_TRUE(model.ok()) << model.error().message;
  const auto& c = model->config();
  const auto images = random_images(1, c.num_channels, 32, 32, 7);
  EXPECT_THROW((void)attention_gradients(c, model->weights(), images[0], -1), std::invalid_argument);
  EXPECT_THROW((void)attention_gradients(c, model->weights(), images[0], static_cast<int>(c.labels.size())), std::invalid_argument);
  const auto odd = random_images(1, c.num_channels, 30, 32, 7);
  EXPECT_THROW((void)attention_gradients(c, model->weights(), odd[0], 0), std::invalid_argument);
  ViTWeights backbone = model->weights();
  backbone.has_classifier = false;
  EXPECT_THROW((void)attention_gradients(c, backbone, images[0], 0), std::invalid_argument);
  AttentionGradients incomplete;
  EXPECT_THROW((void)class_relevance(incomplete), std::invalid_argument);
}

}  // namespace
