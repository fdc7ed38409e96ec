// Every op of the ViT backward pass against central finite differences in double precision (as
// ggml's test-backend-ops), each with its own tolerance, on small random shapes; then the whole
// tiny model in double (all parameter tensors, sampled entries) with position interpolation, both
// GELUs, no qkv bias, drop-path and a frozen, checkpointed prefix.
//
// Each check uses the scalar loss L = sum(out .* R) for a fixed random R, so dout = R.
#include <gtest/gtest.h>

#include <functional>
#include <random>

#include "test_backprop_common.hpp"

namespace {

using namespace hilum::training;
using namespace hilum::training::test;
using ops::Mat;
using ops::Vec;
using MatD = Mat<double>;
using VecD = Vec<double>;

double dot(const MatD& a, const MatD& b) { return (a.array() * b.array()).sum(); }

// Central differences of `loss` with respect to every (or up to `samples`) element of p[0..n),
// compared with `grad`: |fd - grad| <= atol + rtol * |fd|.
// Returns whether any finite difference was non-zero; with require_signal, an all-zero check fails.
bool check_fd(const std::string& what, double* p, std::size_t n, const double* grad, const std::function<double()>& loss, double atol,
              double rtol, double eps = 1e-6, std::size_t samples = 0, unsigned seed = 1, bool require_signal = true) {
  EXPECT_GT(n, 0u) << what;
  std::vector<std::size_t> idx(n);
  for (std::size_t i = 0; i < n; ++i) idx[i] = i;
  if (samples > 0 && samples < n) {
    std::mt19937 rng(seed);
    std::shuffle(idx.begin(), idx.end(), rng);
    idx.resize(samples);
  }
  double worst = 0.0;
  std::size_t worst_i = 0;
  double worst_fd = 0.0;
  bool any_nonzero = false;
  for (std::size_t i : idx) {
    const double saved = p[i];
    p[i] = saved + eps;
    const double up = loss();
    p[i] = saved - eps;
    const double down = loss();
    p[i] = saved;
    const double fd = (up - down) / (2 * eps);
    if (std::abs(fd) > 1e-9) any_nonzero = true;
    const double excess = std::abs(fd - grad[i]) / (atol + rtol * std::abs(fd));
    if (excess > worst || std::isnan(excess)) {
      worst = std::isnan(excess) ? INFINITY : excess;
      worst_i = i;
      worst_fd = fd;
    }
  }
  if (require_signal) {
    EXPECT_TRUE(any_nonzero) << what << ": every finite difference is zero (the check would be vacuous)";
  }
  EXPECT_LE(worst, 1.0) << what << ": element " << worst_i << ": finite difference " << worst_fd << ", backward " << grad[worst_i]
                        << " (atol " << atol << ", rtol " << rtol << ")";
  return any_nonzero;
}

TEST(BackpropOps, LinearWithAndWithoutBias) {
  for (bool bias : {true, false}) {
    MatD x = random_matrix<double>(5, 7, 1), w = random_matrix<double>(6, 7, 2);
    VecD b = bias ? VecD(random_matrix<double>(6, 1, 3)) : VecD();
    const MatD R = random_matrix<double>(5, 6, 4);
    const auto loss = [&] {
      MatD out;
      ops::linear_forward<double>(x, w, b, out);
      return dot(out, R);
    };
    // Gradients start from a non-zero value: backward must add into them.
    MatD dx = MatD::Constant(5, 7, 0.5), dw = MatD::Constant(6, 7, -0.25);
    VecD db = VecD::Constant(b.size(), 2.0);
    ops::linear_backward<double>(x, w, R, &dx, true, &dw, bias ? &db : nullptr);
    dx.array() -= 0.5;
    dw.array() += 0.25;
    db.array() -= 2.0;
    const std::string tag = bias ? "linear(bias)" : "linear(no bias)";
    check_fd(tag + " dx", x.data(), x.size(), dx.data(), loss, 1e-8, 1e-6);
    check_fd(tag + " dW", w.data(), w.size(), dw.data(), loss, 1e-8, 1e-6);
    if (bias) check_fd(tag + " db", b.data(), b.size(), db.data(), loss, 1e-8, 1e-6);
    // accumulate = false overwrites.
    MatD dx2 = MatD::Constant(5, 7, 100.0);
    ops::linear_backward<double>(x, w, R, &dx2, false, nullptr, nullptr);
    EXPECT_LT((dx2 - dx).cwiseAbs().maxCoeff(), 1e-12) << tag;
  }
}

TEST(BackpropOps, LayerNorm) {
  MatD x = random_matrix<double>(4, 9, 5, 2.0);
  x.col(3).array() += 3.0;  // a non-zero mean
  VecD g = VecD(random_matrix<double>(9, 1, 6)).array() * 0.3 + 1.0, b = random_matrix<double>(9, 1, 7);
  const MatD R = random_matrix<double>(4, 9, 8);
  const double eps = 1e-5;
  const auto loss = [&] {
    MatD out;
    VecD mean, rstd;
    ops::layernorm_forward<double>(x, g, b, eps, out, mean, rstd);
    return dot(out, R);
  };
  MatD out;
  VecD mean, rstd;
  ops::layernorm_forward<double>(x, g, b, eps, out, mean, rstd);
  // Forward against the definition.
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    const double mu = x.row(r).mean();
    const double var = (x.row(r).array() - mu).square().mean();
    const Eigen::RowVectorXd want = ((x.row(r).array() - mu) / std::sqrt(var + eps) * g.transpose().array() + b.transpose().array()).matrix();
    EXPECT_LT((out.row(r) - want).cwiseAbs().maxCoeff(), 1e-12);
  }
  MatD apply;
  ops::layernorm_apply<double>(x, g, b, mean, rstd, apply);
  EXPECT_EQ(apply, out) << "layernorm_apply must recompute the forward bit for bit";
  MatD dx = MatD::Zero(4, 9);
  VecD dg = VecD::Zero(9), db = VecD::Zero(9);
  ops::layernorm_backward<double>(x, mean, rstd, g, R, dx, &dg, &db);
  check_fd("layernorm dx", x.data(), x.size(), dx.data(), loss, 1e-8, 1e-6);
  check_fd("layernorm dgamma", g.data(), g.size(), dg.data(), loss, 1e-8, 1e-6);
  check_fd("layernorm dbeta", b.data(), b.size(), db.data(), loss, 1e-8, 1e-6);
}

TEST(BackpropOps, GeluErfAndTanh) {
  for (bool tanh_approx : {false, true}) {
    MatD x = random_matrix<double>(3, 11, 9, 2.0);
    const MatD R = random_matrix<double>(3, 11, 10);
    const auto loss = [&] {
      MatD out;
      ops::gelu_forward<double>(x, out, tanh_approx);
      return dot(out, R);
    };
    MatD out;
    ops::gelu_forward<double>(x, out, tanh_approx);
    for (Eigen::Index i = 0; i < x.size(); ++i) {
      EXPECT_NEAR(out.data()[i], hilum::inference::gelu(static_cast<float>(x.data()[i]), tanh_approx), 2e-6);
    }
    MatD dx = MatD::Zero(3, 11);
    ops::gelu_backward<double>(x, R, dx, tanh_approx);
    check_fd(tanh_approx ? "gelu(tanh) dx" : "gelu(erf) dx", x.data(), x.size(), dx.data(), loss, 1e-9, 1e-7);
    MatD in_place = R;
    ops::gelu_backward_inplace<double>(x, in_place, tanh_approx);
    EXPECT_LT((in_place - dx).cwiseAbs().maxCoeff(), 1e-14);
  }
}

TEST(BackpropOps, MultiHeadAttention) {
  const Eigen::Index B = 2, Tn = 5;
  const int H = 2;
  const Eigen::Index D = 8;
  MatD q = random_matrix<double>(B * Tn, D, 11, 1.5), k = random_matrix<double>(B * Tn, D, 12, 1.5), v = random_matrix<double>(B * Tn, D, 13);
  const MatD R = random_matrix<double>(B * Tn, D, 14);
  const auto loss = [&] {
    MatD probs, ctx;
    ops::attention_forward<double>(q, k, v, B, Tn, H, probs, ctx);
    return dot(ctx, R);
  };
  MatD probs, ctx;
  ops::attention_forward<double>(q, k, v, B, Tn, H, probs, ctx);
  // Forward against a direct computation for image 1, head 1.
  {
    const Eigen::Index dh = D / H;
    MatD s = q.block(Tn, dh, Tn, dh) * k.block(Tn, dh, Tn, dh).transpose() / std::sqrt(static_cast<double>(dh));
    for (Eigen::Index r = 0; r < Tn; ++r) {
      s.row(r) = (s.row(r).array() - s.row(r).maxCoeff()).exp().matrix();
      s.row(r) /= s.row(r).sum();
    }
    EXPECT_LT((probs.middleRows(3 * Tn, Tn) - s).cwiseAbs().maxCoeff(), 1e-14);
    EXPECT_LT((ctx.block(Tn, dh, Tn, dh) - s * v.block(Tn, dh, Tn, dh)).cwiseAbs().maxCoeff(), 1e-14);
  }
  MatD dq, dk, dv;
  ops::attention_backward<double>(q, k, v, probs, R, B, Tn, H, dq, dk, dv, false);
  check_fd("attention dq", q.data(), q.size(), dq.data(), loss, 1e-8, 1e-6);
  check_fd("attention dk", k.data(), k.size(), dk.data(), loss, 1e-8, 1e-6);
  check_fd("attention dv", v.data(), v.size(), dv.data(), loss, 1e-8, 1e-6);
  // accumulate = true adds.
  MatD dq2 = dq, dk2 = dk, dv2 = dv;
  ops::attention_backward<double>(q, k, v, probs, R, B, Tn, H, dq2, dk2, dv2, true);
  EXPECT_LT((dq2 - 2 * dq).cwiseAbs().maxCoeff(), 1e-12);
  EXPECT_LT((dk2 - 2 * dk).cwiseAbs().maxCoeff(), 1e-12);
  EXPECT_LT((dv2 - 2 * dv).cwiseAbs().maxCoeff(), 1e-12);
}

TEST(BackpropOps, ResidualWithDropPath) {
  const Eigen::Index Tn = 3;
  MatD x = random_matrix<double>(2 * Tn, 4, 15), br = random_matrix<double>(2 * Tn, 4, 16);
  const std::vector<double> scales{0.0, 1.0 / 0.7};
  const MatD R = random_matrix<double>(2 * Tn, 4, 17);
  const auto loss = [&] {
    MatD out;
    ops::residual_forward<double>(x, br, scales, Tn, out);
    return dot(out, R);
  };
  MatD dbr;
  ops::residual_backward_branch<double>(R, scales, Tn, dbr);
  check_fd("residual dbranch", br.data(), br.size(), dbr.data(), loss, 1e-9, 1e-7);
  EXPECT_EQ(dbr.topRows(Tn), MatD::Zero(Tn, 4)) << "a dropped image's branch gets no gradient";
}

TEST(BackpropOps, PositionInterpolationIsTheTransposeMap) {
  // Stored grid 3x3, used on 4x5 (up) and 2x2 (down) grids; forward equals the inference engine's.
  const Eigen::Index D = 4;
  MatD pos = random_matrix<double>(1 + 9, D, 18);
  for (auto [gh, gw] : {std::pair{4, 5}, std::pair{2, 2}, std::pair{3, 3}}) {
    MatD out;
    ops::positions_forward<double>(pos, gh, gw, out);
    ASSERT_EQ(out.rows(), 1 + gh * gw);
    const Matrix inf = hilum::inference::interpolate_positions(pos.cast<float>(), gh, gw);
    EXPECT_LT((out.cast<float>() - inf).cwiseAbs().maxCoeff(), 1e-6f) << gh << "x" << gw;
    const MatD R = random_matrix<double>(out.rows(), D, 19);
    const auto loss = [&] {
      MatD o;
      ops::positions_forward<double>(pos, gh, gw, o);
      return dot(o, R);
    };
    MatD dpos = MatD::Zero(pos.rows(), D);
    ops::positions_backward<double>(R, 3, gh, gw, dpos);
    check_fd("position interpolation " + std::to_string(gh) + "x" + std::to_string(gw), pos.data(), pos.size(), dpos.data(), loss, 1e-9,
             1e-7);
  }
}

TEST(BackpropOps, TokensAndPatchEmbedding) {
  // Patch embedding = unfold + linear: the GEMM equals a direct stride-P convolution.
  const int P = 2, C = 2;
  const auto images = random_images(2, C, 4, 6, 20);
  MatD patches;
  ops::unfold_patches<double>(images, P, patches);
  ASSERT_EQ(patches.rows(), 2 * 2 * 3);
  ASSERT_EQ(patches.cols(), C * P * P);
  MatD w = random_matrix<double>(3, C * P * P, 21);
  VecD b = random_matrix<double>(3, 1, 22);
  MatD emb;
  ops::linear_forward<double>(patches, w, b, emb);
  for (int img = 0; img < 2; ++img)
    for (int py = 0; py < 2; ++py)
      for (int px = 0; px < 3; ++px)
        for (int o = 0; o < 3; ++o) {
          double acc = b[o];
          for (int c = 0; c < C; ++c)
            for (int y = 0; y < P; ++y)
              for (int xx = 0; xx < P; ++xx) {
                acc += w(o, (c * P + y) * P + xx) * images[static_cast<std::size_t>(img)].data[static_cast<std::size_t>((c * 4 + py * P + y) * 6 + px * P + xx)];
              }
          EXPECT_NEAR(emb(img * 6 + py * 3 + px, o), acc, 1e-12);
        }
  // Tokens: [cls; emb] + positions, per image.
  VecD cls = random_matrix<double>(3, 1, 23);
  MatD pos = random_matrix<double>(7, 3, 24);
  const MatD R = random_matrix<double>(2 * 7, 3, 25);
  const auto loss = [&] {
    MatD e, x;
    ops::linear_forward<double>(patches, w, b, e);
    ops::tokens_forward<double>(e, cls, pos, 2, x);
    return dot(x, R);
  };
  VecD dcls = VecD::Zero(3), db = VecD::Zero(3);
  MatD dpos = MatD::Zero(7, 3), demb, dw = MatD::Zero(3, C * P * P);
  ops::tokens_backward<double>(R, 2, 7, &dcls, &dpos, demb);
  ops::linear_backward<double>(patches, w, demb, nullptr, false, &dw, &db);
  check_fd("cls token", cls.data(), cls.size(), dcls.data(), loss, 1e-9, 1e-7);
  check_fd("position embeddings", pos.data(), pos.size(), dpos.data(), loss, 1e-9, 1e-7);
  check_fd("patch weight", w.data(), w.size(), dw.data(), loss, 1e-9, 1e-7);
  check_fd("patch bias", b.data(), b.size(), db.data(), loss, 1e-9, 1e-7);
}

// ---- The whole model in double -------------------------------------------------------------------

struct ModelCase {
  std::string name;
  ViTConfig config;
  int height, width;
  TrainOptions options;
  int images = 2;
};

void check_model_fd(const ModelCase& mc) {
  const ViTConfig& c = mc.config;
  ops::WeightsT<double> w = ops::convert_weights<ops::WeightsT<double>>(random_weights(c, 31));
  const auto images = random_images(mc.images, c.num_channels, mc.height, mc.width, 32);
  const MatD R = random_matrix<double>(mc.images, static_cast<Eigen::Index>(c.labels.size()), 33);
  Tape tape;
  const auto loss = [&] { return dot(ops::forward_double(c, w, images, mc.options, tape), R); };
  ops::WeightsT<double> g = w;
  ops::for_each_tensor(g, [](const std::string&, double* p, std::size_t n, int, bool) { std::fill(p, p + n, 0.0); });
  (void)ops::forward_double(c, w, images, mc.options, tape);
  ops::backward_double(c, w, tape, R, g);
  std::vector<std::pair<double*, std::size_t>> grads;
  ops::for_each_tensor(g, [&](const std::string&, double* p, std::size_t n, int, bool) { grads.emplace_back(p, n); });
  std::size_t k = 0, checked = 0, with_signal = 0;
  const int first = mc.options.first_trainable_block;
  ops::for_each_tensor(w, [&](const std::string& name, double* p, std::size_t n, int depth, bool) {
    const double* grad = grads[k++].first;
    const bool frozen = depth <= first && first > 0;
    if (frozen) {
      for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(grad[i], 0.0) << mc.name << ": frozen " << name << " got a gradient";
      return;
    }
    // Some gradients are exactly zero (the key bias shifts every score of a row equally; a dropped
    // branch gets nothing): the backward must then give zero too.
    with_signal += check_fd(mc.name + ": " + name, p, n, grad, loss, 1e-8, 1e-5, 1e-6, 6, static_cast<unsigned>(k), false);
    ++checked;
  });
  EXPECT_GT(checked, 10u);
  EXPECT_GE(static_cast<double>(with_signal), 0.6 * static_cast<double>(checked)) << mc.name << ": too few tensors carry a gradient";
}

TEST(BackpropModel, FiniteDifferencesErfInterpolatedPositions) {
  // Stored grid 3x3 (12 px, patch 4), input 16 x 8 (grid 4 x 2): bicubic positions.
  check_model_fd({"erf+interp", tiny_config(12, 2, 3, 16, 12, 4, 2, 3, true, "gelu"), 16, 8, {}});
}

TEST(BackpropModel, FiniteDifferencesTanhNoQkvBias) {
  check_model_fd({"tanh+nobias", tiny_config(12, 2, 3, 16, 12, 4, 1, 2, false, "gelu_pytorch_tanh"), 12, 12, {}});
}

TEST(BackpropModel, FiniteDifferencesDropPath) {
  TrainOptions o;
  o.drop_path = 0.5f;
  o.seed = 7;
  const ViTConfig c = tiny_config(8, 3, 2, 12, 8, 4, 1, 2, true, "gelu");
  // The case must actually drop a branch and scale another (block 2: p = 0.5; block 1: p = 0.25).
  int dropped = 0, scaled = 0;
  for (int blk = 0; blk < 3; ++blk)
    for (int br = 0; br < 2; ++br)
      for (int img = 0; img < 4; ++img) {
        const double s = ops::drop_path_scale(o, 3, blk, br, img);
        dropped += s == 0.0;
        scaled += s > 1.0;
      }
  ASSERT_GT(dropped, 0);
  ASSERT_GT(scaled, 0);
  EXPECT_EQ(ops::drop_path_scale(o, 3, 0, 0, 0), 1.0) << "block 0 has rate 0 (timm's linear rule)";
  check_model_fd({"drop-path", c, 8, 12, o, 4});
}

TEST(BackpropModel, FiniteDifferencesFrozenPrefixCheckpointed) {
  TrainOptions o;
  o.first_trainable_block = 1;
  o.checkpoint_activations = true;
  check_model_fd({"frozen1+ckpt", tiny_config(12, 3, 3, 16, 12, 4, 1, 3, true, "gelu"), 12, 12, o});
}

}  // namespace
