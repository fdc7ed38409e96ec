// Internal to training/: the pre-LN transformer block's forward (saving what backward needs)
// and backward, shared by the classifier's engine (backprop.cpp) and the masked autoencoder
// (mae.cpp). Templated on the scalar type and on the block's weight struct (inference::Block or
// ops::BlockT<double>).
#pragma once

#include <cstddef>
#include <vector>

#include "hilum/training/ops.hpp"

namespace hilum::training::engine {

using namespace ops;

// What one block's backward needs. `x` is the block's input (kept in both modes); the rest is
// empty for a checkpointed block (recomputed into the tape's scratch block in backward).
template <typename T>
struct BlockSave {
  Mat<T> x;
  Vec<T> mean1, rstd1;
  Mat<T> q, k, v;
  Mat<T> probs;  // (B*H*T) x T
  Mat<T> ctx;
  Mat<T> x1;     // after the attention residual
  Vec<T> mean2, rstd2;
  Mat<T> h;      // fc1 output, before GELU (the GELU output is recomputed in backward)
  std::vector<T> scale_attn, scale_mlp;  // drop-path, per image; empty = no drop-path

  void clear_saved() {
    for (Mat<T>* m : {&q, &k, &v, &probs, &ctx, &x1, &h}) m->resize(0, 0);
    for (Vec<T>* m : {&mean1, &rstd1, &mean2, &rstd2}) m->resize(0);
  }
  [[nodiscard]] std::size_t bytes(bool with_input) const {
    std::size_t n = 0;
    for (const Mat<T>* m : {&q, &k, &v, &probs, &ctx, &x1, &h}) n += static_cast<std::size_t>(m->size());
    for (const Vec<T>* m : {&mean1, &rstd1, &mean2, &rstd2}) n += static_cast<std::size_t>(m->size());
    if (with_input) n += static_cast<std::size_t>(x.size());
    return n * sizeof(T) + (scale_attn.size() + scale_mlp.size()) * sizeof(T);
  }
};

// Buffers reused across layers and steps (not saved activations).
template <typename T>
struct Work {
  Mat<T> ln, tmp, g, stream, out, embedded, positions, patches;
  Mat<T> dx, dln, dbr, dg, dq, dk, dv, dctx, demb, dpos, dcls, dxcls;
  // The last block works on the CLS rows only (B rows): its own buffers, so that nothing is
  // reallocated between the full-size and the CLS-size layers.
  Mat<T> ln_cls, xq, ln_small, tmp_small, g_small, dbr_small, dg_small, dln_cls, dctx_small, dq_small;
};

struct Dims {
  Index B = 0, Tn = 0;
  int H = 1, L = 0;
  double eps = 1e-12;
  bool tanh = false;
  inference::Precision precision = inference::Precision::F32;  // the blocks' linear layers (TrainOptions::precision)
};

inline Dims dims(const ViTConfig& c, Index B, Index Tn, inference::Precision precision) {
  Dims d;
  d.precision = precision;
  d.B = B;
  d.Tn = Tn;
  d.H = c.num_heads;
  d.L = c.num_layers;
  d.eps = c.layer_norm_eps;
  d.tanh = c.hidden_act != "gelu";
  return d;
}

template <typename T>
void drop_path_scales(const TrainOptions& o, int L, int block, int branch, Index B, std::vector<T>& out) {
  out.clear();
  if (!(o.drop_path > 0.0f) || L < 2 || block == 0) return;
  out.resize(static_cast<std::size_t>(B));
  for (Index b = 0; b < B; ++b) out[static_cast<std::size_t>(b)] = static_cast<T>(drop_path_scale(o, L, block, branch, static_cast<int>(b)));
}

// One pre-LN block. `out` may be the same matrix as `x` (used by the frozen prefix).
template <typename T, typename BW>
void block_forward(const Dims& d, const BW& w, int index, const TrainOptions& o, const Mat<T>& x, BlockSave<T>& s, Work<T>& wk,
                   Mat<T>& out) {
  drop_path_scales(o, d.L, index, 0, d.B, s.scale_attn);
  drop_path_scales(o, d.L, index, 1, d.B, s.scale_mlp);
  layernorm_forward<T>(x, w.ln_before.gamma, w.ln_before.beta, d.eps, wk.ln, s.mean1, s.rstd1);
  linear_forward<T>(wk.ln, w.query.w, w.query.b, s.q, d.precision);
  linear_forward<T>(wk.ln, w.key.w, w.key.b, s.k, d.precision);
  linear_forward<T>(wk.ln, w.value.w, w.value.b, s.v, d.precision);
  attention_forward<T>(s.q, s.k, s.v, d.B, d.Tn, d.H, s.probs, s.ctx, d.precision);
  linear_forward<T>(s.ctx, w.attn_out.w, w.attn_out.b, wk.tmp, d.precision);
  residual_forward<T>(x, wk.tmp, s.scale_attn, d.Tn, s.x1);
  layernorm_forward<T>(s.x1, w.ln_after.gamma, w.ln_after.beta, d.eps, wk.ln, s.mean2, s.rstd2);
  linear_forward<T>(wk.ln, w.fc1.w, w.fc1.b, s.h, d.precision);
  gelu_forward<T>(s.h, wk.g, d.tanh);
  linear_forward<T>(wk.g, w.fc2.w, w.fc2.b, wk.tmp, d.precision);
  residual_forward<T>(s.x1, wk.tmp, s.scale_mlp, d.Tn, out);
}

// dx: on entry d(loss)/d(block output), on return d(loss)/d(block input). Adds into g.
template <typename T, typename BW, typename BG>
void block_backward(const Dims& d, const BW& w, const BlockSave<T>& s, const Mat<T>& x, Work<T>& wk, BG& g, Mat<T>& dx) {
  // MLP branch: out = x1 + s * fc2(gelu(fc1(ln_after(x1)))).
  const Mat<T>* df = &dx;
  if (!s.scale_mlp.empty()) {
    residual_backward_branch<T>(dx, s.scale_mlp, d.Tn, wk.dbr);
    df = &wk.dbr;
  }
  gelu_forward<T>(s.h, wk.g, d.tanh);
  linear_backward<T>(wk.g, w.fc2.w, *df, &wk.dg, false, &g.fc2.w, &g.fc2.b, d.precision);
  gelu_backward_inplace<T>(s.h, wk.dg, d.tanh);
  layernorm_apply<T>(s.x1, w.ln_after.gamma, w.ln_after.beta, s.mean2, s.rstd2, wk.ln);
  linear_backward<T>(wk.ln, w.fc1.w, wk.dg, &wk.dln, false, &g.fc1.w, &g.fc1.b, d.precision);
  layernorm_backward<T>(s.x1, s.mean2, s.rstd2, w.ln_after.gamma, wk.dln, dx, &g.ln_after.gamma, &g.ln_after.beta);
  // Attention branch: x1 = x + s * attn_out(attention(q, k, v of ln_before(x))).
  const Mat<T>* da = &dx;
  if (!s.scale_attn.empty()) {
    residual_backward_branch<T>(dx, s.scale_attn, d.Tn, wk.dbr);
    da = &wk.dbr;
  }
  linear_backward<T>(s.ctx, w.attn_out.w, *da, &wk.dctx, false, &g.attn_out.w, &g.attn_out.b, d.precision);
  attention_backward<T>(s.q, s.k, s.v, s.probs, wk.dctx, d.B, d.Tn, d.H, wk.dq, wk.dk, wk.dv, false, d.precision);
  layernorm_apply<T>(x, w.ln_before.gamma, w.ln_before.beta, s.mean1, s.rstd1, wk.ln);
  linear_backward<T>(wk.ln, w.query.w, wk.dq, &wk.dln, false, &g.query.w, &g.query.b, d.precision);
  linear_backward<T>(wk.ln, w.key.w, wk.dk, &wk.dln, true, &g.key.w, &g.key.b, d.precision);
  linear_backward<T>(wk.ln, w.value.w, wk.dv, &wk.dln, true, &g.value.w, &g.value.b, d.precision);
  layernorm_backward<T>(x, s.mean1, s.rstd1, w.ln_before.gamma, wk.dln, dx, &g.ln_before.gamma, &g.ln_before.beta);
}

}  // namespace hilum::training::engine
