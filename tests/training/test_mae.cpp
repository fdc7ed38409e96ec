// The masked autoencoder (training/mae.hpp):
// - against PyTorch (tests/reference/golden_mae, make_mae_reference.py: He et al.'s models_mae.py
//   on make_vit_reference's ViT): the loss to 1e-5 relative, the prediction of every patch to 1e-5
//   of its largest value, and every encoder and decoder parameter gradient to 1e-4 relative per
//   tensor (as the classifier's gradients; the key biases' are analytically zero: noise below 1e-6),
//   with the decoder read by load_decoder; BF16 mixed precision within 1e-2 (loss, prediction)
//   and 3e-2 (gradients) of PyTorch's F32;
// - the MAE ops (gathering the kept patches, the encoder's tokens, the unshuffle with mask
//   tokens, the masked MSE on normalised patches) and the whole MAE in double against central
//   finite differences;
// - masking: random_keep's counts, distinctness and determinism; sin-cos positions; the decoder
//   file round trip.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <set>

#include "hilum/inference/safetensors.hpp"
#include "hilum/training/mae.hpp"
#include "test_backprop_common.hpp"

namespace fs = std::filesystem;
namespace inf = hilum::inference;

namespace {

using namespace hilum::training;
using namespace hilum::training::test;
using ops::Mat;
using ops::Vec;
using MatD = Mat<double>;
using VecD = Vec<double>;

const fs::path kMaeDir = HILUM_MAE_GOLDEN_DIR;

double dot(const MatD& a, const MatD& b) { return (a.array() * b.array()).sum(); }

// Central differences of `loss` for (up to `samples` of) p[0..n) against grad:
// |fd - grad| <= atol + rtol |fd|. Returns whether some difference was non-zero.
bool fd_check(const std::string& what, double* p, std::size_t n, const double* grad, const std::function<double()>& loss, double atol,
              double rtol, std::size_t samples = 0, unsigned seed = 1) {
  std::vector<std::size_t> idx(n);
  for (std::size_t i = 0; i < n; ++i) idx[i] = i;
  if (samples > 0 && samples < n) {
    std::mt19937 rng(seed);
    std::shuffle(idx.begin(), idx.end(), rng);
    idx.resize(samples);
  }
  bool signal = false;
  for (std::size_t i : idx) {
    const double saved = p[i], eps = 1e-6;
    p[i] = saved + eps;
    const double up = loss();
    p[i] = saved - eps;
    const double down = loss();
    p[i] = saved;
    const double fd = (up - down) / (2 * eps);
    signal = signal || std::abs(fd) > 1e-9;
    EXPECT_LE(std::abs(fd - grad[i]), atol + rtol * std::abs(fd)) << what << ": element " << i << ": finite difference " << fd
                                                                   << ", backward " << grad[i];
  }
  return signal;
}

// ---- Against PyTorch ---------------------------------------------------------------------------

std::vector<Image> images_from(const inf::SafetensorsFile& f) {
  const inf::TensorInfo* px = f.find("pixel_values");
  auto pixels = f.read_f32("pixel_values");
  if (px == nullptr || !pixels.ok()) return {};
  const auto B = static_cast<int>(px->shape[0]), C = static_cast<int>(px->shape[1]), H = static_cast<int>(px->shape[2]),
             W = static_cast<int>(px->shape[3]);
  const std::size_t n = static_cast<std::size_t>(C) * H * W;
  std::vector<Image> out;
  for (int b = 0; b < B; ++b) out.push_back({C, H, W, std::vector<float>(pixels->begin() + static_cast<std::ptrdiff_t>(b * n),
                                                                          pixels->begin() + static_cast<std::ptrdiff_t>((b + 1) * n))});
  return out;
}

// A golden case: the encoder, the decoder, PyTorch's tensors, the batch and its kept patches.
struct MaeCase {
  std::optional<inf::ViTModel> model;
  std::optional<LoadedDecoder> decoder;
  std::optional<inf::SafetensorsFile> ref;
  std::vector<Image> batch;
  std::vector<std::vector<int>> keep;
};

void load_case(const std::string& name, MaeCase& out) {
  const fs::path dir = kMaeDir / name;
  auto model = inf::ViTModel::load(dir);
  ASSERT_TRUE(model.ok()) << model.error().message;
  auto decoder = load_decoder(dir / "decoder.safetensors", model->config());
  ASSERT_TRUE(decoder.ok()) << decoder.error().message;
  auto ref = inf::SafetensorsFile::open(dir / "mae.safetensors");
  ASSERT_TRUE(ref.ok()) << ref.error().message;
  out.batch = images_from(*ref);
  ASSERT_FALSE(out.batch.empty());
  const inf::TensorInfo* keep_info = ref->find("keep");
  ASSERT_NE(keep_info, nullptr);
  auto keep_values = ref->read_f32("keep");
  ASSERT_TRUE(keep_values.ok());
  out.keep.assign(out.batch.size(), {});
  const auto K = static_cast<std::size_t>(keep_info->shape[1]);
  for (std::size_t b = 0; b < out.batch.size(); ++b)
    for (std::size_t j = 0; j < K; ++j) out.keep[b].push_back(static_cast<int>((*keep_values)[b * K + j]));
  EXPECT_EQ(decoder->mae.norm_pix_loss, ref->metadata().at("norm_pix_loss") == "true");
  out.model.emplace(std::move(*model));
  out.decoder.emplace(std::move(*decoder));
  out.ref.emplace(std::move(*ref));
}

// Loss, prediction and every gradient against PyTorch's (F32) within the given tolerances.
// `noise`: the largest magnitude allowed on the analytically zero key-bias gradients.
void check_case(const std::string& name, inf::Precision precision, double value_tolerance, double gradient_tolerance, double noise) {
  MaeCase mc;
  ASSERT_NO_FATAL_FAILURE(load_case(name, mc));
  const ViTConfig& config = mc.model->config();
  const ViTWeights& encoder = mc.model->weights();
  const LoadedDecoder& decoder = *mc.decoder;
  const inf::SafetensorsFile& ref = *mc.ref;
  TrainOptions o;
  o.precision = precision;
  MaeTape tape;
  const MaeOutput out = mae_forward(config, encoder, decoder.mae, decoder.weights, mc.batch, mc.keep, o, tape);
  auto loss = ref.read_f32("loss");
  ASSERT_TRUE(loss.ok());
  EXPECT_NEAR(out.loss, (*loss)[0], value_tolerance * std::abs((*loss)[0])) << name;
  const int N = (mc.batch[0].height / config.patch_size) * (mc.batch[0].width / config.patch_size);
  EXPECT_EQ(out.masked, static_cast<int>(mc.batch.size() * (static_cast<std::size_t>(N) - mc.keep[0].size())));
  auto pred = ref.read_f32("prediction");
  ASSERT_TRUE(pred.ok());
  const Matrix& ours = mae_prediction(tape);
  ASSERT_EQ(static_cast<std::size_t>(ours.size()), pred->size());
  const Comparison p = compare(ours.data(), pred->data(), pred->size());
  EXPECT_LT(p.rel, value_tolerance) << name << ": prediction element " << p.worst << ": " << p.ours << " vs " << p.theirs;

  ViTWeights ge = zeros_like(encoder), gd = zeros_like(decoder.weights);
  mae_backward(config, encoder, decoder.weights, tape, ge, gd);
  int checked = 0;
  double worst = 0.0;
  std::string worst_name;
  const auto check = [&](const std::string& tensor, const ParamRef& g) {
    const inf::TensorInfo* t = ref.find("grad." + tensor);
    ASSERT_NE(t, nullptr) << "no PyTorch gradient for " << tensor;
    auto want = ref.read_f32("grad." + tensor);
    ASSERT_TRUE(want.ok());
    ASSERT_EQ(want->size(), g.size) << tensor;
    const Comparison c = compare(g.data, want->data(), g.size);
    ++checked;
    if (tensor.find("attention.key.bias") != std::string::npos) {
      // Analytically zero (a key bias shifts every score of a softmax row by the same amount):
      // both sides hold float rounding noise only.
      EXPECT_LT(std::max(c.max_ref, compare(want->data(), g.data, g.size).max_ref), noise) << name << ": " << tensor;
      return;
    }
    if (c.rel > worst) {
      worst = c.rel;
      worst_name = tensor;
    }
    EXPECT_LT(c.rel, gradient_tolerance) << name << ": " << tensor << " element " << c.worst << ": " << c.ours << " vs " << c.theirs;
    EXPECT_GT(c.max_ref, 0.0) << tensor << ": PyTorch's gradient is zero (the check would be vacuous)";
  };
  for (const ParamRef& g : parameters(ge)) check(g.name.substr(g.name.rfind("vit.", 0) == 0 ? 4 : 0), g);
  for (const ParamRef& g : decoder_parameters(gd)) check(g.name, g);
  EXPECT_EQ(checked, static_cast<int>(parameters(ge).size() + decoder_parameters(gd).size()));
  std::printf("%s (%s): loss %.6f vs PyTorch %.6f, %d gradient tensors, worst relative error %.2e (%s)\n", name.c_str(),
              inf::available_precision(precision) == inf::Precision::BF16 ? "BF16" : "F32", out.loss, static_cast<double>((*loss)[0]), checked,
              worst, worst_name.c_str());

  // A second backward on one forward is refused; the same tape again gives the same loss.
  EXPECT_THROW(mae_backward(config, encoder, decoder.weights, tape, ge, gd), std::logic_error);
  const MaeOutput again = mae_forward(config, encoder, decoder.mae, decoder.weights, mc.batch, mc.keep, o, tape);
  EXPECT_EQ(again.loss, out.loss);
}

class MaeMatchesPyTorch : public ::testing::TestWithParam<std::string> {};

TEST_P(MaeMatchesPyTorch, LossPredictionAndEveryGradient) { check_case(GetParam(), inf::Precision::F32, 1e-5, 1e-4, 1e-6); }

// BF16 mixed precision (each product's operands rounded to bfloat16) against PyTorch's F32, with
// the classifier's BF16 tolerance for gradients (3e-2; the worst seen here is 2.7e-2, an encoder
// query weight: the attention gradients are the ones BF16 rounding moves most) and key-bias noise below 1e-4; F32's answers on a CPU without AVX512_BF16.
TEST_P(MaeMatchesPyTorch, Bf16WithinMixedPrecisionTolerance) { check_case(GetParam(), inf::Precision::BF16, 1e-2, 3e-2, 1e-4); }

INSTANTIATE_TEST_SUITE_P(Goldens, MaeMatchesPyTorch, ::testing::Values("tiny_rgb", "grey_interpolated_plain"));

// ---- Ops in double against finite differences ---------------------------------------------------

TEST(MaeOps, KeptPatchesAndEncoderTokens) {
  const std::vector<std::vector<int>> keep = {{5, 0, 3}, {2, 6, 1}};
  const Eigen::Index N = 7, D = 4;
  MatD emb = random_matrix<double>(2 * 3, D, 1), pos = random_matrix<double>(N + 1, D, 2);
  VecD cls = random_matrix<double>(D, 1, 3);
  const MatD R = random_matrix<double>(2 * 4, D, 4);
  const auto loss = [&] {
    MatD x;
    ops::masked_tokens_forward<double>(emb, cls, pos, keep, x);
    return dot(x, R);
  };
  VecD dcls = VecD::Zero(D);
  MatD dpos = MatD::Zero(N + 1, D), demb;
  ops::masked_tokens_backward<double>(R, keep, &dcls, &dpos, demb);
  EXPECT_TRUE(fd_check("cls", cls.data(), static_cast<std::size_t>(cls.size()), dcls.data(), loss, 1e-9, 1e-7));
  EXPECT_TRUE(fd_check("positions", pos.data(), static_cast<std::size_t>(pos.size()), dpos.data(), loss, 1e-9, 1e-7));
  EXPECT_TRUE(fd_check("embedded", emb.data(), static_cast<std::size_t>(emb.size()), demb.data(), loss, 1e-9, 1e-7));
  // Position rows of patches nobody kept get nothing (4 of image 0 is masked, and kept by no one).
  EXPECT_EQ(dpos.row(1 + 4).norm(), 0.0);
  // gather_kept picks image b's rows keep[b][j], in keep's order.
  const MatD rows = random_matrix<double>(2 * N, 3, 5);
  MatD kept;
  ops::gather_kept<double>(rows, keep, N, kept);
  ASSERT_EQ(kept.rows(), 6);
  EXPECT_EQ(kept.row(0), rows.row(5));
  EXPECT_EQ(kept.row(4), rows.row(N + 6));
}

TEST(MaeOps, UnshuffleWithMaskTokens) {
  const std::vector<std::vector<int>> keep = {{3, 1}, {0, 4}};
  const Eigen::Index N = 5, Dd = 3, Tn = N + 1;
  MatD y = random_matrix<double>(2 * 3, Dd, 11), pos = random_matrix<double>(Tn, Dd, 12);
  VecD mask = random_matrix<double>(Dd, 1, 13);
  const MatD R = random_matrix<double>(2 * Tn, Dd, 14);
  MatD out;
  ops::unshuffle_forward<double>(y, mask, pos, keep, out);
  // Kept rows in place, the mask token elsewhere, positions everywhere.
  EXPECT_NEAR((out.row(1 + 3) - y.row(1) - pos.row(1 + 3)).norm(), 0.0, 1e-15);
  EXPECT_NEAR((out.row(Tn + 1 + 4) - y.row(3 + 2) - pos.row(1 + 4)).norm(), 0.0, 1e-15);
  EXPECT_NEAR((out.row(1 + 2) - mask.transpose() - pos.row(1 + 2)).norm(), 0.0, 1e-15);
  EXPECT_NEAR((out.row(Tn) - y.row(3) - pos.row(0)).norm(), 0.0, 1e-15);
  const auto loss = [&] {
    MatD o;
    ops::unshuffle_forward<double>(y, mask, pos, keep, o);
    return dot(o, R);
  };
  MatD dy;
  VecD dmask = VecD::Zero(Dd);
  ops::unshuffle_backward<double>(R, keep, Tn, dy, &dmask);
  EXPECT_TRUE(fd_check("y", y.data(), static_cast<std::size_t>(y.size()), dy.data(), loss, 1e-9, 1e-7));
  EXPECT_TRUE(fd_check("mask token", mask.data(), static_cast<std::size_t>(mask.size()), dmask.data(), loss, 1e-9, 1e-7));
}

TEST(MaeOps, MaskedMseOnNormalisedPatches) {
  // Targets: 2 images, 2 channels, 4x8 pixels, patch 4 -> 2 patches each of 32 values.
  auto images = random_images(2, 2, 4, 8, 21);
  MatD target;
  ops::patch_targets<double>(images, 4, true, target);
  ASSERT_EQ(target.rows(), 4);
  ASSERT_EQ(target.cols(), 32);
  for (Eigen::Index r = 0; r < 4; ++r) {
    EXPECT_NEAR(target.row(r).mean(), 0.0, 1e-12);
    const double var = (target.row(r).array() - target.row(r).mean()).square().sum() / 31.0;  // unbiased, as MAE
    EXPECT_NEAR(var, 1.0, 1e-4);
  }
  MatD plain;
  ops::patch_targets<double>(images, 4, false, plain);
  // MAE's order: (row, column, channel): value (y=1, x=2, c=1) of image 1's patch 1.
  EXPECT_EQ(plain(3, (1 * 4 + 2) * 2 + 1), static_cast<double>(images[1].data[(1 * 4 + 1) * 8 + 4 + 2]));
  MatD pred = random_matrix<double>(4, 32, 22);
  const std::vector<char> masked = {1, 0, 1, 1};
  MatD dpred;
  const double l = ops::masked_mse<double>(pred, target, masked, dpred);
  double want = 0.0;
  for (Eigen::Index r : {0, 2, 3}) want += (pred.row(r) - target.row(r)).squaredNorm() / 32.0;
  EXPECT_NEAR(l, want / 3.0, 1e-12);
  EXPECT_EQ(dpred.row(1).norm(), 0.0);
  const auto loss = [&] {
    MatD d;
    return ops::masked_mse<double>(pred, target, masked, d);
  };
  EXPECT_TRUE(fd_check("prediction", pred.data(), static_cast<std::size_t>(pred.size()), dpred.data(), loss, 1e-9, 1e-6));
}

// The whole MAE in double: every encoder and decoder tensor, sampled entries.
void check_mae_fd(const ViTConfig& c, const MaeConfig& mae, int H, int W, const TrainOptions& o) {
  ViTConfig bc = c;
  bc.labels.clear();
  ops::WeightsT<double> enc = ops::convert_weights<ops::WeightsT<double>>(random_weights(bc, 41));
  ViTWeights dec_f = initial_decoder(c, mae, 42);
  // Non-trivial LayerNorm and biases in the decoder, so that every path carries signal.
  std::mt19937 rng(43);
  std::normal_distribution<float> nd(0.0f, 0.1f);
  for (ParamRef& p : parameters(dec_f))
    for (std::size_t i = 0; i < p.size; ++i) p.data[i] += nd(rng);
  ops::WeightsT<double> dec = ops::convert_weights<ops::WeightsT<double>>(dec_f);
  const auto images = random_images(2, c.num_channels, H, W, 44);
  const int N = (H / c.patch_size) * (W / c.patch_size);
  const auto keep = random_keep(2, N, mae.mask_ratio, 45);
  MaeTape tape;
  const auto loss = [&] { return ops::mae_forward_double(c, enc, mae, dec, images, keep, o, tape); };
  const auto zero = [](ops::WeightsT<double>& g) {
    ops::for_each_tensor(g, [](const std::string&, double* p, std::size_t n, int, bool) { std::fill(p, p + n, 0.0); });
  };
  ops::WeightsT<double> ge = enc, gd = dec;
  zero(ge);
  zero(gd);
  (void)loss();
  ops::mae_backward_double(c, enc, dec, tape, ge, gd);
  std::size_t checked = 0, signal = 0;
  for (auto* pair : {&enc, &dec}) {
    auto& w = *pair;
    auto& g = pair == &enc ? ge : gd;
    std::vector<double*> grads;
    ops::for_each_tensor(g, [&](const std::string&, double* p, std::size_t, int, bool) { grads.push_back(p); });
    std::size_t k = 0;
    ops::for_each_tensor(w, [&](const std::string& name, double* p, std::size_t n, int, bool) {
      const double* grad = grads[k];
      ++k;
      signal += fd_check((pair == &enc ? "encoder " : "decoder ") + name, p, n, grad, loss, 1e-8, 1e-5, 5, static_cast<unsigned>(k)) ? 1 : 0;
      ++checked;
    });
  }
  EXPECT_GT(checked, 30u);
  EXPECT_GE(static_cast<double>(signal), 0.8 * static_cast<double>(checked));
}

TEST(MaeModel, FiniteDifferencesNormPix) {
  MaeConfig mae;
  mae.mask_ratio = 0.75f;
  mae.decoder_hidden = 8;
  mae.decoder_layers = 1;
  mae.decoder_heads = 2;
  mae.decoder_intermediate = 12;
  check_mae_fd(tiny_config(12, 2, 3, 16, 16, 4, 2, 0, true, "gelu"), mae, 16, 16, {});
}

TEST(MaeModel, FiniteDifferencesInterpolatedPlainPixelsDropPath) {
  MaeConfig mae;
  mae.mask_ratio = 0.6f;
  mae.decoder_hidden = 8;
  mae.decoder_layers = 2;
  mae.decoder_heads = 2;
  mae.decoder_intermediate = 12;
  mae.norm_pix_loss = false;
  TrainOptions o;
  o.drop_path = 0.3f;
  o.seed = 3;
  // Stored grid 3x3, used on 4x2.
  check_mae_fd(tiny_config(12, 2, 3, 16, 12, 4, 1, 0, true, "gelu_pytorch_tanh"), mae, 16, 8, o);
}

// ---- Masking, positions, files ----------------------------------------------------------------------

TEST(MaeMasking, RandomKeepIsSeededDistinctAndOfTheRightSize) {
  EXPECT_EQ(kept_patch_count(100, 0.9f), 10);
  EXPECT_EQ(kept_patch_count(196, 0.75f), 49);
  EXPECT_EQ(kept_patch_count(4, 0.95f), 1);
  const auto a = random_keep(3, 100, 0.9f, 7), b = random_keep(3, 100, 0.9f, 7), c = random_keep(3, 100, 0.9f, 8);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(a[0], a[1]) << "images of a batch get different masks";
  for (const auto& k : a) {
    ASSERT_EQ(k.size(), 10u);
    std::set<int> s(k.begin(), k.end());
    EXPECT_EQ(s.size(), 10u);
    EXPECT_GE(*s.begin(), 0);
    EXPECT_LT(*s.rbegin(), 100);
  }
  // Over many draws every patch gets kept sometimes (a permutation, not a fixed subset).
  std::vector<int> count(100, 0);
  for (std::uint64_t seed = 0; seed < 200; ++seed) {
    const auto k = random_keep(1, 100, 0.9f, seed);
    for (int n : k[0]) ++count[static_cast<std::size_t>(n)];
  }
  EXPECT_GT(*std::min_element(count.begin(), count.end()), 0);
}

TEST(MaeMasking, SinCosPositionsAreMaes) {
  const Matrix p = sincos_positions(8, 2, 3);
  ASSERT_EQ(p.rows(), 7);
  EXPECT_EQ(p.row(0).norm(), 0.0f);
  // Patch (y=1, x=2): [sin(2 w), cos(2 w) | sin(1 w), cos(1 w)] with w = 1, 1/100.
  const float want[8] = {std::sin(2.0f), std::sin(0.02f), std::cos(2.0f), std::cos(0.02f),
                         std::sin(1.0f), std::sin(0.01f), std::cos(1.0f), std::cos(0.01f)};
  for (int k = 0; k < 8; ++k) EXPECT_NEAR(p(1 + 1 * 3 + 2, k), want[k], 1e-6) << k;
}

TEST(MaeDecoderFile, RoundTripsAndRefusesAnotherShape) {
  const ViTConfig c = tiny_config(16, 1, 2, 32, 16, 4, 3, 0, true, "gelu");
  MaeConfig mae;
  mae.decoder_hidden = 8;
  mae.decoder_layers = 1;
  mae.decoder_heads = 2;
  mae.decoder_intermediate = 16;
  mae.mask_ratio = 0.8f;
  const ViTWeights d = initial_decoder(c, mae, 5);
  EXPECT_EQ(d.classifier.w.rows(), 4 * 4 * 3);
  EXPECT_EQ(d.classifier.w.cols(), 8);
  const fs::path dir = fs::temp_directory_path() / ("hilum-mae-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  ASSERT_TRUE(save_decoder(dir / "d.safetensors", c, mae, d).ok());
  auto back = load_decoder(dir / "d.safetensors", c);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->mae.decoder_hidden, 8);
  EXPECT_EQ(back->mae.decoder_intermediate, 16);
  EXPECT_NEAR(back->mae.mask_ratio, 0.8f, 1e-6);
  EXPECT_EQ(back->weights.blocks[0].fc1.w, d.blocks[0].fc1.w);
  EXPECT_EQ(back->weights.cls_token, d.cls_token);
  // Another encoder width does not fit this decoder's embedding.
  const ViTConfig other = tiny_config(24, 1, 2, 32, 16, 4, 3, 0, true, "gelu");
  EXPECT_FALSE(load_decoder(dir / "d.safetensors", other).ok());
  fs::remove_all(dir);
}

}  // namespace
