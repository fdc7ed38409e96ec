// Hilum training: the ViT's layers as forward/backward pairs, in the style of llm.c, templated on
// the scalar type (float for the model, double for the finite-difference tests).
//
// Conventions: matrices are row-major, one token per row; a batch's tokens are stacked (rows
// [b*T, (b+1)*T) belong to image b). Every backward *adds* into the weight gradients (dW, db,
// dgamma, ...), which may be null for a frozen layer. Input gradients are added too, unless a
// function says `accumulate = false` (then they are overwritten). Work is spread over the cores
// with OpenMP: in float, the linear layers' three products run on the inference engine's packed
// AVX-512 kernels (inference/matmul.hpp, split by output panels) when the CPU has them; otherwise
// (and in double) GEMMs split by output columns, each thread running Eigen's single-threaded GEMM
// on its slice; attention by (image, head) pairs, row-wise ops by rows. Reductions over rows (bias
// and LayerNorm parameter gradients) are summed per thread over fixed row ranges and then in
// thread order, so results are deterministic for a given thread count.
#pragma once

#include <Eigen/Core>
#include <unsupported/Eigen/SpecialFunctions>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "hilum/inference/matmul.hpp"
#include "hilum/training/backprop.hpp"
#include "hilum/training/mae.hpp"

namespace hilum::training::ops {

using Index = Eigen::Index;
template <typename T>
using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;

inline int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// Weights in scalar type T with the members of inference::ViTWeights (WeightsT<float> has the
// same layout; the model code is written once for both through WeightsOf<T>).
template <typename T>
struct LinearT {
  Mat<T> w;
  Vec<T> b;
};
template <typename T>
struct LayerNormT {
  Vec<T> gamma;
  Vec<T> beta;
};
template <typename T>
struct BlockT {
  LayerNormT<T> ln_before;
  LinearT<T> query, key, value, attn_out;
  LayerNormT<T> ln_after;
  LinearT<T> fc1, fc2;
};
template <typename T>
struct WeightsT {
  Mat<T> patch_w;
  Vec<T> patch_b;
  Vec<T> cls_token;
  Mat<T> position;
  std::vector<BlockT<T>> blocks;
  LayerNormT<T> final_ln;
  bool has_classifier = false;
  LinearT<T> classifier;
};
template <typename T>
struct WeightsOf {
  using type = WeightsT<T>;
};
template <>
struct WeightsOf<float> {
  using type = ViTWeights;
};

// Calls f(name, data, size, depth, decay) for every tensor of a weights struct (ViTWeights or
// WeightsT<T>), in parameters() order.
template <typename W, typename F>
void for_each_tensor(W& w, F&& f) {
  const int L = static_cast<int>(w.blocks.size());
  const auto mat = [&](const std::string& name, auto& m, int depth, bool decay) {
    if (m.size() > 0) f(name, m.data(), static_cast<std::size_t>(m.size()), depth, decay);
  };
  mat("vit.embeddings.patch_embeddings.projection.weight", w.patch_w, 0, true);
  mat("vit.embeddings.patch_embeddings.projection.bias", w.patch_b, 0, false);
  mat("vit.embeddings.cls_token", w.cls_token, 0, false);
  mat("vit.embeddings.position_embeddings", w.position, 0, false);
  for (int i = 0; i < L; ++i) {
    auto& b = w.blocks[static_cast<std::size_t>(i)];
    const std::string p = "vit.encoder.layer." + std::to_string(i) + ".";
    mat(p + "layernorm_before.weight", b.ln_before.gamma, i + 1, false);
    mat(p + "layernorm_before.bias", b.ln_before.beta, i + 1, false);
    mat(p + "attention.attention.query.weight", b.query.w, i + 1, true);
    mat(p + "attention.attention.query.bias", b.query.b, i + 1, false);
    mat(p + "attention.attention.key.weight", b.key.w, i + 1, true);
    mat(p + "attention.attention.key.bias", b.key.b, i + 1, false);
    mat(p + "attention.attention.value.weight", b.value.w, i + 1, true);
    mat(p + "attention.attention.value.bias", b.value.b, i + 1, false);
    mat(p + "attention.output.dense.weight", b.attn_out.w, i + 1, true);
    mat(p + "attention.output.dense.bias", b.attn_out.b, i + 1, false);
    mat(p + "layernorm_after.weight", b.ln_after.gamma, i + 1, false);
    mat(p + "layernorm_after.bias", b.ln_after.beta, i + 1, false);
    mat(p + "intermediate.dense.weight", b.fc1.w, i + 1, true);
    mat(p + "intermediate.dense.bias", b.fc1.b, i + 1, false);
    mat(p + "output.dense.weight", b.fc2.w, i + 1, true);
    mat(p + "output.dense.bias", b.fc2.b, i + 1, false);
  }
  mat("vit.layernorm.weight", w.final_ln.gamma, L + 1, false);
  mat("vit.layernorm.bias", w.final_ln.beta, L + 1, false);
  if (w.has_classifier) {
    mat("classifier.weight", w.classifier.w, L + 1, true);
    mat("classifier.bias", w.classifier.b, L + 1, false);
  }
}

// Converts between weight structs of different scalar types (shapes and flags are kept).
template <typename To, typename From>
To convert_weights(const From& from) {
  To to;
  to.has_classifier = from.has_classifier;
  to.blocks.resize(from.blocks.size());
  // Shapes first (for_each_tensor only sees flat buffers).
  const auto shape = [](auto& dst, const auto& src) { dst.resize(src.rows(), src.cols()); };
  shape(to.patch_w, from.patch_w);
  shape(to.patch_b, from.patch_b);
  shape(to.cls_token, from.cls_token);
  shape(to.position, from.position);
  for (std::size_t i = 0; i < from.blocks.size(); ++i) {
    auto& d = to.blocks[i];
    const auto& s = from.blocks[i];
    shape(d.ln_before.gamma, s.ln_before.gamma), shape(d.ln_before.beta, s.ln_before.beta);
    shape(d.query.w, s.query.w), shape(d.query.b, s.query.b), shape(d.key.w, s.key.w), shape(d.key.b, s.key.b);
    shape(d.value.w, s.value.w), shape(d.value.b, s.value.b), shape(d.attn_out.w, s.attn_out.w), shape(d.attn_out.b, s.attn_out.b);
    shape(d.ln_after.gamma, s.ln_after.gamma), shape(d.ln_after.beta, s.ln_after.beta);
    shape(d.fc1.w, s.fc1.w), shape(d.fc1.b, s.fc1.b), shape(d.fc2.w, s.fc2.w), shape(d.fc2.b, s.fc2.b);
  }
  shape(to.final_ln.gamma, from.final_ln.gamma);
  shape(to.final_ln.beta, from.final_ln.beta);
  shape(to.classifier.w, from.classifier.w);
  shape(to.classifier.b, from.classifier.b);
  std::vector<const void*> src;
  std::vector<std::size_t> n;
  using FromScalar = typename std::remove_cv_t<std::remove_reference_t<decltype(from.patch_w)>>::Scalar;
  auto& from_mut = const_cast<From&>(from);  // for_each_tensor takes a mutable struct; nothing is written
  for_each_tensor(from_mut, [&](const std::string&, FromScalar* p, std::size_t size, int, bool) {
    src.push_back(p);
    n.push_back(size);
  });
  std::size_t k = 0;
  for_each_tensor(to, [&](const std::string&, auto* p, std::size_t size, int, bool) {
    const auto* s = static_cast<const FromScalar*>(src[k]);
    for (std::size_t j = 0; j < size && j < n[k]; ++j) p[j] = static_cast<std::remove_pointer_t<decltype(p)>>(s[j]);
    ++k;
  });
  return to;
}

// ---- Threading helper ------------------------------------------------------------------------

// Runs f(c0, n) over [0, cols) split into at most max_threads() chunks (multiples of 16 columns),
// one per thread; one chunk when the work (rows x cols x depth) is small.
template <typename F>
void split_columns(Index cols, double work, F&& f) {
  int threads = max_threads();
  if (work < 2e5 || cols < 32) threads = 1;
  threads = std::max(1, std::min<int>(threads, static_cast<int>(cols / 16)));
  if (threads == 1) {
    f(Index{0}, cols);
    return;
  }
  const Index chunk = ((cols + threads - 1) / threads + 15) / 16 * 16;
#pragma omp parallel for num_threads(threads) schedule(static, 1)
  for (int t = 0; t < threads; ++t) {
    const Index c0 = t * chunk;
    if (c0 < cols) f(c0, std::min(chunk, cols - c0));
  }
}

// Row range [r0, r1) of thread t out of n for `rows` rows.
inline void row_range(Index rows, int t, int n, Index& r0, Index& r1) {
  r0 = rows * t / n;
  r1 = rows * (t + 1) / n;
}

// ---- Linear: out = x W^T (+ b) ---------------------------------------------------------------

// Whether float linear layers and attention products use inference's packed kernels (true when
// the CPU allows; the tests switch it off to compare with the Eigen path).
inline bool& packed_linear() {
  static bool on = inference::matmul_available();
  return on;
}

// `precision` (float on the packed path only): BF16 rounds both operands of each product to
// bfloat16 and accumulates in F32 (mixed precision; weights, gradients and outputs stay float).
template <typename T>
void linear_forward(const Mat<T>& x, const Mat<T>& w, const Vec<T>& b, Mat<T>& out, inference::Precision precision = inference::Precision::F32) {
  const Index n_out = w.rows();
  out.resize(x.rows(), n_out);
  if constexpr (std::is_same_v<T, float>) {
    if (packed_linear()) {
      inference::matmul_abt(x.data(), static_cast<int>(x.rows()), static_cast<int>(x.cols()), w.data(), static_cast<int>(n_out),
                            b.size() > 0 ? b.data() : nullptr, out.data(), false, precision);
      return;
    }
  }
  (void)precision;
  split_columns(n_out, static_cast<double>(x.rows()) * static_cast<double>(n_out) * static_cast<double>(x.cols()),
                [&](Index c0, Index n) {
                  out.middleCols(c0, n).noalias() = x * w.middleRows(c0, n).transpose();
                  if (b.size() > 0) out.middleCols(c0, n).rowwise() += b.segment(c0, n).transpose();
                });
}

// dW += dout^T x, db += column sums of dout (each when not null), dx (+)= dout W (when not null).
template <typename T>
void linear_backward(const Mat<T>& x, const Mat<T>& w, const Mat<T>& dout, Mat<T>* dx, bool accumulate_dx, Mat<T>* dw, Vec<T>* db,
                     inference::Precision precision = inference::Precision::F32) {
  const double work = static_cast<double>(dout.rows()) * static_cast<double>(w.rows()) * static_cast<double>(w.cols());
  if (db != nullptr && db->size() > 0) {
    // Row by row (dout is row-major): contiguous adds, where a column-wise sum strides through it.
    split_columns(w.rows(), work, [&](Index c0, Index n) {
      auto sum = db->segment(c0, n);
      for (Index r = 0; r < dout.rows(); ++r) sum += dout.row(r).segment(c0, n).transpose();
    });
  }
  if (!accumulate_dx && dx != nullptr) dx->resize(dout.rows(), w.cols());
  if constexpr (std::is_same_v<T, float>) {
    if (packed_linear()) {
      const int rows = static_cast<int>(dout.rows()), n_out = static_cast<int>(w.rows()), n_in = static_cast<int>(w.cols());
      if (dw != nullptr) inference::matmul_atb(dout.data(), rows, n_out, x.data(), n_in, dw->data(), true, precision);
      if (dx != nullptr) inference::matmul_ab(dout.data(), rows, n_out, w.data(), n_in, dx->data(), accumulate_dx, precision);
      return;
    }
  }
  (void)precision;
  if (dw != nullptr) {
    split_columns(w.rows(), work, [&](Index c0, Index n) { dw->middleRows(c0, n).noalias() += dout.middleCols(c0, n).transpose() * x; });
  }
  if (dx != nullptr) {
    split_columns(w.cols(), work, [&](Index c0, Index n) {
      if (accumulate_dx) dx->middleCols(c0, n).noalias() += dout * w.middleCols(c0, n);
      else dx->middleCols(c0, n).noalias() = dout * w.middleCols(c0, n);
    });
  }
}

// ---- LayerNorm (over each row; biased variance; statistics in double) ------------------------

template <typename T>
void layernorm_apply_row(const T* in, Index n, T m, T inv, const Vec<T>& g, const Vec<T>& b, T* o) {
  for (Index k = 0; k < n; ++k) o[k] = (in[k] - m) * inv * g[k] + b[k];
}

template <typename T>
void layernorm_forward(const Mat<T>& x, const Vec<T>& g, const Vec<T>& b, double eps, Mat<T>& out, Vec<T>& mean, Vec<T>& rstd) {
  const Index rows = x.rows(), n = x.cols();
  out.resize(rows, n);
  mean.resize(rows);
  rstd.resize(rows);
#pragma omp parallel for schedule(static) if (rows * n > 20000)
  for (Index r = 0; r < rows; ++r) {
    const T* in = x.row(r).data();
    double mu = 0.0;
    for (Index k = 0; k < n; ++k) mu += in[k];
    mu /= static_cast<double>(n);
    double var = 0.0;
    for (Index k = 0; k < n; ++k) {
      const double d = in[k] - mu;
      var += d * d;
    }
    var /= static_cast<double>(n);
    mean[r] = static_cast<T>(mu);
    rstd[r] = static_cast<T>(1.0 / std::sqrt(var + eps));
    layernorm_apply_row(in, n, mean[r], rstd[r], g, b, out.row(r).data());
  }
}

// Recomputes the forward output from the saved statistics (bit-identical to layernorm_forward).
template <typename T>
void layernorm_apply(const Mat<T>& x, const Vec<T>& g, const Vec<T>& b, const Vec<T>& mean, const Vec<T>& rstd, Mat<T>& out) {
  const Index rows = x.rows(), n = x.cols();
  out.resize(rows, n);
#pragma omp parallel for schedule(static) if (rows * n > 20000)
  for (Index r = 0; r < rows; ++r) layernorm_apply_row(x.row(r).data(), n, mean[r], rstd[r], g, b, out.row(r).data());
}

// dx += d/dx, dg += sum dout * xhat, db += sum dout.
template <typename T>
void layernorm_backward(const Mat<T>& x, const Vec<T>& mean, const Vec<T>& rstd, const Vec<T>& g, const Mat<T>& dout, Mat<T>& dx,
                        Vec<T>* dg, Vec<T>* db) {
  const Index rows = x.rows(), n = x.cols();
  const int threads = rows * n > 20000 ? max_threads() : 1;
  std::vector<Vec<T>> pg(static_cast<std::size_t>(threads), Vec<T>::Zero(n)), pb(static_cast<std::size_t>(threads), Vec<T>::Zero(n));
#pragma omp parallel num_threads(threads)
  {
#ifdef _OPENMP
    const int t = omp_get_thread_num(), team = omp_get_num_threads();  // the team may be smaller than asked
#else
    const int t = 0, team = 1;
#endif
    Index r0 = 0, r1 = 0;
    row_range(rows, t, team, r0, r1);
    Eigen::Array<T, 1, Eigen::Dynamic> xhat(n), dxhat(n);
    auto& lg = pg[static_cast<std::size_t>(t)];
    auto& lb = pb[static_cast<std::size_t>(t)];
    for (Index r = r0; r < r1; ++r) {
      xhat = (x.row(r).array() - mean[r]) * rstd[r];
      dxhat = dout.row(r).array() * g.transpose().array();
      const T a = dxhat.mean();
      const T c = (dxhat * xhat).mean();
      dx.row(r).array() += rstd[r] * (dxhat - a - xhat * c);
      lg.transpose().array() += dout.row(r).array() * xhat;
      lb.transpose().array() += dout.row(r).array();
    }
  }
  for (int t = 0; t < threads; ++t) {
    if (dg != nullptr) *dg += pg[static_cast<std::size_t>(t)];
    if (db != nullptr) *db += pb[static_cast<std::size_t>(t)];
  }
}

// ---- GELU --------------------------------------------------------------------------------------

template <typename T>
void gelu_forward(const Mat<T>& x, Mat<T>& out, bool tanh_approximation) {
  out.resize(x.rows(), x.cols());
  const Index rows = x.rows();
#pragma omp parallel for schedule(static) if (x.size() > 20000)
  for (Index r = 0; r < rows; ++r) {
    auto in = x.row(r).array();
    if (tanh_approximation) {
      out.row(r).array() = T(0.5) * in * (T(1) + (T(0.7978845608028654) * (in + T(0.044715) * in.cube())).tanh());
    } else {
      out.row(r).array() = T(0.5) * in * (T(1) + (in * T(0.7071067811865476)).erf());
    }
  }
}

// d(gelu)/dx for one row, written into `out`.
template <typename T, typename In, typename Out>
void gelu_derivative(const In& in, Out&& out, bool tanh_approximation) {
  if (tanh_approximation) {
    const T k = T(0.7978845608028654), c = T(0.044715);
    const auto th = (k * (in + c * in.cube())).tanh();
    out = T(0.5) * (T(1) + th) + T(0.5) * in * (T(1) - th.square()) * k * (T(1) + T(3) * c * in.square());
  } else {
    out = T(0.5) * (T(1) + (in * T(0.7071067811865476)).erf()) + in * (T(-0.5) * in.square()).exp() * T(0.3989422804014327);
  }
}

// dx += dout * gelu'(x)
template <typename T>
void gelu_backward(const Mat<T>& x, const Mat<T>& dout, Mat<T>& dx, bool tanh_approximation) {
  const Index rows = x.rows();
#pragma omp parallel for schedule(static) if (x.size() > 20000)
  for (Index r = 0; r < rows; ++r) {
    Eigen::Array<T, 1, Eigen::Dynamic> d(x.cols());
    gelu_derivative<T>(x.row(r).array(), d, tanh_approximation);
    dx.row(r).array() += dout.row(r).array() * d;
  }
}

// d *= gelu'(x) (in place: the gradient through the activation).
template <typename T>
void gelu_backward_inplace(const Mat<T>& x, Mat<T>& d, bool tanh_approximation) {
  const Index rows = x.rows();
#pragma omp parallel for schedule(static) if (x.size() > 20000)
  for (Index r = 0; r < rows; ++r) {
    Eigen::Array<T, 1, Eigen::Dynamic> g(x.cols());
    gelu_derivative<T>(x.row(r).array(), g, tanh_approximation);
    d.row(r).array() *= g;
  }
}

// ---- Multi-head self-attention -----------------------------------------------------------------
// q: (B*Tq) x D, k and v: (B*Tk) x D; heads are contiguous D/H column slices. probs: (B*H*Tq) x Tk,
// the softmax of (image b, head h) in rows [(b*H+h)*Tq, +Tq). ctx: (B*Tq) x D. Tq < Tk serves a
// block whose output is only needed at the CLS token (Tq = 1: its query row alone).

// In float with packed_linear(), the six products per (image, head) pair (QK^T and PV forward;
// dP = dC V^T, dV = P^T dC, dQ = dS K, dK = dS^T Q backward) run on inference's packed kernels in
// `precision` (BF16: operands rounded to bfloat16, F32 accumulation, as torch.autocast does for
// bmm), reading each head's columns in place; otherwise on Eigen.

namespace detail {

// Where element (row0, col0) of a row-major matrix is: a head's block starts there.
template <typename M>
auto head(M& m, Index row0, Index col0) {
  return m.data() + row0 * m.cols() + col0;
}

}  // namespace detail

template <typename T>
void attention_forward(const Mat<T>& q, const Mat<T>& k, const Mat<T>& v, Index B, Index Tq, Index Tk, int H, Mat<T>& probs,
                       Mat<T>& ctx, inference::Precision precision = inference::Precision::F32) {
  const Index D = q.cols(), dh = D / H;
  const T scale = T(1) / std::sqrt(static_cast<T>(dh));
  probs.resize(B * H * Tq, Tk);
  ctx.resize(B * Tq, D);
  const long pairs = static_cast<long>(B) * H;
  const bool packed = std::is_same_v<T, float> && packed_linear();
#pragma omp parallel for schedule(static) if (pairs > 1 && Tq * Tk * dh > 4000)
  for (long p = 0; p < pairs; ++p) {
    const Index b = p / H, hd = p % H;
    auto S = probs.middleRows(p * Tq, Tq);
    if constexpr (std::is_same_v<T, float>) {
      if (packed) {
        const auto ld = static_cast<std::size_t>(D);
        inference::matmul_abt(detail::head(q, b * Tq, hd * dh), static_cast<int>(Tq), static_cast<int>(dh), detail::head(k, b * Tk, hd * dh),
                              static_cast<int>(Tk), nullptr, S.data(), false, precision, {ld, ld, static_cast<std::size_t>(Tk)});
        S *= scale;
      }
    }
    if (!packed) S.noalias() = (q.block(b * Tq, hd * dh, Tq, dh) * k.block(b * Tk, hd * dh, Tk, dh).transpose()) * scale;
    for (Index r = 0; r < Tq; ++r) {
      auto row = S.row(r);
      const T mx = row.maxCoeff();
      row = (row.array() - mx).exp();
      row /= row.sum();
    }
    if constexpr (std::is_same_v<T, float>) {
      if (packed) {
        const auto ld = static_cast<std::size_t>(D);
        inference::matmul_ab(S.data(), static_cast<int>(Tq), static_cast<int>(Tk), detail::head(v, b * Tk, hd * dh), static_cast<int>(dh),
                             detail::head(ctx, b * Tq, hd * dh), false, precision, {static_cast<std::size_t>(Tk), ld, ld});
      }
    }
    if (!packed) ctx.block(b * Tq, hd * dh, Tq, dh).noalias() = S * v.block(b * Tk, hd * dh, Tk, dh);
  }
}

template <typename T>
void attention_forward(const Mat<T>& q, const Mat<T>& k, const Mat<T>& v, Index B, Index Tn, int H, Mat<T>& probs, Mat<T>& ctx,
                       inference::Precision precision = inference::Precision::F32) {
  attention_forward<T>(q, k, v, B, Tn, Tn, H, probs, ctx, precision);
}

// dq, dk, dv (+)= the gradients given dctx.
template <typename T>
void attention_backward(const Mat<T>& q, const Mat<T>& k, const Mat<T>& v, const Mat<T>& probs, const Mat<T>& dctx, Index B, Index Tq,
                        Index Tk, int H, Mat<T>& dq, Mat<T>& dk, Mat<T>& dv, bool accumulate,
                        inference::Precision precision = inference::Precision::F32) {
  const Index D = q.cols(), dh = D / H;
  const T scale = T(1) / std::sqrt(static_cast<T>(dh));
  if (!accumulate) {
    dq.resize(q.rows(), D);
    dk.resize(k.rows(), D);
    dv.resize(v.rows(), D);
  }
  const long pairs = static_cast<long>(B) * H;
  const bool packed = std::is_same_v<T, float> && packed_linear();
#pragma omp parallel if (pairs > 1 && Tq * Tk * dh > 4000)
  {
    Mat<T> dS(Tq, Tk);
#pragma omp for schedule(static)
    for (long p = 0; p < pairs; ++p) {
      const Index b = p / H, hd = p % H;
      const auto P = probs.middleRows(p * Tq, Tq);
      if constexpr (std::is_same_v<T, float>) {
        if (packed) {
          const auto ld = static_cast<std::size_t>(D), ldp = static_cast<std::size_t>(Tk);
          const int tq = static_cast<int>(Tq), tk = static_cast<int>(Tk), n = static_cast<int>(dh);
          const float* dC = detail::head(dctx, b * Tq, hd * dh);
          inference::matmul_abt(dC, tq, n, detail::head(v, b * Tk, hd * dh), tk, nullptr, dS.data(), false, precision, {ld, ld, ldp});  // dP
          inference::matmul_atb(P.data(), tq, tk, dC, n, detail::head(dv, b * Tk, hd * dh), accumulate, precision, {ldp, ld, ld});
        }
      }
      if (!packed) {
        const auto dC = dctx.block(b * Tq, hd * dh, Tq, dh);
        dS.noalias() = dC * v.block(b * Tk, hd * dh, Tk, dh).transpose();  // dP
        if (accumulate) dv.block(b * Tk, hd * dh, Tk, dh).noalias() += P.transpose() * dC;
        else dv.block(b * Tk, hd * dh, Tk, dh).noalias() = P.transpose() * dC;
      }
      for (Index r = 0; r < Tq; ++r) {
        const T dot = (P.row(r).array() * dS.row(r).array()).sum();
        dS.row(r).array() = P.row(r).array() * (dS.row(r).array() - dot) * scale;
      }
      if constexpr (std::is_same_v<T, float>) {
        if (packed) {
          const auto ld = static_cast<std::size_t>(D), ldp = static_cast<std::size_t>(Tk);
          const int tq = static_cast<int>(Tq), tk = static_cast<int>(Tk), n = static_cast<int>(dh);
          inference::matmul_ab(dS.data(), tq, tk, detail::head(k, b * Tk, hd * dh), n, detail::head(dq, b * Tq, hd * dh), accumulate, precision,
                               {ldp, ld, ld});
          inference::matmul_atb(dS.data(), tq, tk, detail::head(q, b * Tq, hd * dh), n, detail::head(dk, b * Tk, hd * dh), accumulate, precision,
                                {ldp, ld, ld});
        }
      }
      if (!packed) {
        const auto qb = q.block(b * Tq, hd * dh, Tq, dh);
        const auto kb = k.block(b * Tk, hd * dh, Tk, dh);
        if (accumulate) {
          dq.block(b * Tq, hd * dh, Tq, dh).noalias() += dS * kb;
          dk.block(b * Tk, hd * dh, Tk, dh).noalias() += dS.transpose() * qb;
        } else {
          dq.block(b * Tq, hd * dh, Tq, dh).noalias() = dS * kb;
          dk.block(b * Tk, hd * dh, Tk, dh).noalias() = dS.transpose() * qb;
        }
      }
    }
  }
}

template <typename T>
void attention_backward(const Mat<T>& q, const Mat<T>& k, const Mat<T>& v, const Mat<T>& probs, const Mat<T>& dctx, Index B, Index Tn,
                        int H, Mat<T>& dq, Mat<T>& dk, Mat<T>& dv, bool accumulate, inference::Precision precision = inference::Precision::F32) {
  attention_backward<T>(q, k, v, probs, dctx, B, Tn, Tn, H, dq, dk, dv, accumulate, precision);
}

// Rows b*stride of x (one per image: the CLS tokens) into out (B x cols).
template <typename T>
void gather_rows(const Mat<T>& x, Index B, Index stride, Mat<T>& out) {
  out.resize(B, x.cols());
  for (Index b = 0; b < B; ++b) out.row(b) = x.row(b * stride);
}

// ---- Residual with stochastic depth --------------------------------------------------------------
// out = x + s_b * branch for image b's rows (s_b = 0 when dropped, 1 / (1 - p) when kept; an empty
// `scales` means 1 everywhere, computed as a plain sum).

template <typename T>
void residual_forward(const Mat<T>& x, const Mat<T>& branch, const std::vector<T>& scales, Index Tn, Mat<T>& out) {
  out.resize(x.rows(), x.cols());
  const Index rows = x.rows();
#pragma omp parallel for schedule(static) if (x.size() > 20000)
  for (Index r = 0; r < rows; ++r) {
    if (scales.empty()) out.row(r) = x.row(r) + branch.row(r);
    else out.row(r) = x.row(r) + scales[static_cast<std::size_t>(r / Tn)] * branch.row(r);
  }
}

// dbranch = s_b * dout (overwritten); dx += dout is left to the caller (the residual stream's
// gradient passes through unchanged).
template <typename T>
void residual_backward_branch(const Mat<T>& dout, const std::vector<T>& scales, Index Tn, Mat<T>& dbranch) {
  dbranch.resize(dout.rows(), dout.cols());
  const Index rows = dout.rows();
#pragma omp parallel for schedule(static) if (dout.size() > 20000)
  for (Index r = 0; r < rows; ++r) dbranch.row(r) = scales[static_cast<std::size_t>(r / Tn)] * dout.row(r);
}

// ---- Patch embedding -------------------------------------------------------------------------------

// Unfolds images (channels x H x W, same size) into (B*gh*gw) x (C*P*P) rows in conv-weight order
// (channel, row, column); patch (py, px) of image b is row b*gh*gw + py*gw + px.
template <typename T>
void unfold_patches(const std::vector<Image>& batch, int P, Mat<T>& patches) {
  const int C = batch[0].channels, gh = batch[0].height / P, gw = batch[0].width / P;
  const Index N = static_cast<Index>(gh) * gw;
  patches.resize(static_cast<Index>(batch.size()) * N, static_cast<Index>(C) * P * P);
  for (std::size_t b = 0; b < batch.size(); ++b) {
    const Image& image = batch[b];
    for (int py = 0; py < gh; ++py)
      for (int px = 0; px < gw; ++px) {
        T* row = patches.row(static_cast<Index>(b) * N + py * gw + px).data();
        for (int ch = 0; ch < C; ++ch)
          for (int y = 0; y < P; ++y) {
            const float* src = image.data.data() + (static_cast<std::size_t>(ch) * image.height + py * P + y) * image.width + px * P;
            for (int xx = 0; xx < P; ++xx) row[(ch * P + y) * P + xx] = static_cast<T>(src[xx]);
          }
      }
  }
}

// ---- Position embeddings ---------------------------------------------------------------------------
// The bicubic interpolation (inference::position_interpolation_taps: PyTorch, A = -0.75, align_corners=false) as
// a linear map: out.row(1 + y*gw + x) = sum of weight * position.row(1 + src). The CLS row is copied.

inline int position_grid(Index position_rows) {
  return static_cast<int>(std::lround(std::sqrt(static_cast<double>(position_rows - 1))));
}

// Position embeddings for a gh x gw grid (a copy when the grid is the stored one).
template <typename T>
void positions_forward(const Mat<T>& position, int grid_h, int grid_w, Mat<T>& out) {
  const int old = position_grid(position.rows());
  if (old == grid_h && old == grid_w) {
    out = position;
    return;
  }
  const Index D = position.cols();
  out.resize(1 + static_cast<Index>(grid_h) * grid_w, D);
  out.row(0) = position.row(0);
  const std::vector<inference::PositionTap> taps = inference::position_interpolation_taps(old, grid_h, grid_w);
  Eigen::VectorXd acc(D);
  for (std::size_t i = 0; i < taps.size(); i += 16) {
    acc.setZero();
    for (std::size_t j = i; j < i + 16; ++j) acc += taps[j].weight * position.row(taps[j].in).transpose().template cast<double>();
    out.row(taps[i].out) = acc.template cast<T>().transpose();
  }
}

// dposition += the transpose of the interpolation applied to dout.
template <typename T>
void positions_backward(const Mat<T>& dout, int old_grid, int grid_h, int grid_w, Mat<T>& dposition) {
  if (old_grid == grid_h && old_grid == grid_w) {
    dposition += dout;
    return;
  }
  dposition.row(0) += dout.row(0);
  for (const inference::PositionTap& t : inference::position_interpolation_taps(old_grid, grid_h, grid_w)) dposition.row(t.in) += static_cast<T>(t.weight) * dout.row(t.out);
}

// ---- Token assembly: x = [cls; patch embeddings] + positions, per image ------------------------------

template <typename T>
void tokens_forward(const Mat<T>& embedded, const Vec<T>& cls, const Mat<T>& positions, Index B, Mat<T>& x) {
  const Index Tn = positions.rows(), N = Tn - 1, D = positions.cols();
  x.resize(B * Tn, D);
  for (Index b = 0; b < B; ++b) {
    x.row(b * Tn) = cls.transpose();
    x.middleRows(b * Tn + 1, N) = embedded.middleRows(b * N, N);
    x.middleRows(b * Tn, Tn) += positions;
  }
}

// dcls += sum of CLS rows, dpositions += sum over images, dembedded = patch rows (overwritten).
template <typename T>
void tokens_backward(const Mat<T>& dx, Index B, Index Tn, Vec<T>* dcls, Mat<T>* dpositions, Mat<T>& dembedded) {
  const Index N = Tn - 1, D = dx.cols();
  dembedded.resize(B * N, D);
  for (Index b = 0; b < B; ++b) {
    if (dcls != nullptr) *dcls += dx.row(b * Tn).transpose();
    if (dpositions != nullptr) *dpositions += dx.middleRows(b * Tn, Tn);
    dembedded.middleRows(b * N, N) = dx.middleRows(b * Tn + 1, N);
  }
}

// ---- Masked-autoencoder ops (training/mae.hpp) -------------------------------------------------
// `keep[b]` holds image b's kept patch indices (each row of the N-patch grid at most once, the
// same count K for every image). An image's encoder tokens are [CLS; its K kept patches], in
// keep's order; its decoder tokens are [CLS; all N patches].

// Rows keep[b][j] of image b's N rows of `rows` ((B*N) x C) into out ((B*K) x C).
template <typename T>
void gather_kept(const Mat<T>& rows, const std::vector<std::vector<int>>& keep, Index N, Mat<T>& out) {
  const auto B = static_cast<Index>(keep.size());
  const Index K = B > 0 ? static_cast<Index>(keep[0].size()) : 0;
  out.resize(B * K, rows.cols());
  for (Index b = 0; b < B; ++b)
    for (Index j = 0; j < K; ++j) out.row(b * K + j) = rows.row(b * N + keep[static_cast<std::size_t>(b)][static_cast<std::size_t>(j)]);
}

// Encoder tokens: x = [cls + positions[0]; embedded kept patch j + positions[1 + keep[b][j]]].
// embedded: (B*K) x D, positions: (1 + N) x D, x: (B*(1+K)) x D.
template <typename T>
void masked_tokens_forward(const Mat<T>& embedded, const Vec<T>& cls, const Mat<T>& positions, const std::vector<std::vector<int>>& keep,
                           Mat<T>& x) {
  const auto B = static_cast<Index>(keep.size());
  const Index K = static_cast<Index>(keep[0].size()), Tk = K + 1, D = positions.cols();
  x.resize(B * Tk, D);
  for (Index b = 0; b < B; ++b) {
    x.row(b * Tk) = cls.transpose() + positions.row(0);
    for (Index j = 0; j < K; ++j) {
      x.row(b * Tk + 1 + j) = embedded.row(b * K + j) + positions.row(1 + keep[static_cast<std::size_t>(b)][static_cast<std::size_t>(j)]);
    }
  }
}

// dcls += the CLS rows, dpositions ((1+N) x D) += each row at its position, dembedded = the
// patch rows (overwritten, (B*K) x D).
template <typename T>
void masked_tokens_backward(const Mat<T>& dx, const std::vector<std::vector<int>>& keep, Vec<T>* dcls, Mat<T>* dpositions,
                            Mat<T>& dembedded) {
  const auto B = static_cast<Index>(keep.size());
  const Index K = static_cast<Index>(keep[0].size()), Tk = K + 1;
  dembedded.resize(B * K, dx.cols());
  for (Index b = 0; b < B; ++b) {
    if (dcls != nullptr) *dcls += dx.row(b * Tk).transpose();
    if (dpositions != nullptr) dpositions->row(0) += dx.row(b * Tk);
    for (Index j = 0; j < K; ++j) {
      dembedded.row(b * K + j) = dx.row(b * Tk + 1 + j);
      if (dpositions != nullptr) dpositions->row(1 + keep[static_cast<std::size_t>(b)][static_cast<std::size_t>(j)]) += dx.row(b * Tk + 1 + j);
    }
  }
}

// The decoder's input: per image, y's CLS row and kept rows ((B*(1+K)) x Dd) put back at their
// patches, the mask token at every other patch, plus the positions ((1+N) x Dd): out is
// (B*(1+N)) x Dd.
template <typename T>
void unshuffle_forward(const Mat<T>& y, const Vec<T>& mask_token, const Mat<T>& positions, const std::vector<std::vector<int>>& keep,
                       Mat<T>& out) {
  const auto B = static_cast<Index>(keep.size());
  const Index K = static_cast<Index>(keep[0].size()), Tk = K + 1, Tn = positions.rows(), Dd = y.cols();
  out.resize(B * Tn, Dd);
  for (Index b = 0; b < B; ++b) {
    out.row(b * Tn) = y.row(b * Tk) + positions.row(0);
    for (Index n = 1; n < Tn; ++n) out.row(b * Tn + n) = mask_token.transpose() + positions.row(n);
    for (Index j = 0; j < K; ++j) {
      const Index n = keep[static_cast<std::size_t>(b)][static_cast<std::size_t>(j)];
      out.row(b * Tn + 1 + n) = y.row(b * Tk + 1 + j) + positions.row(1 + n);
    }
  }
}

// dy ((B*(1+K)) x Dd, overwritten) = the rows of dout where y went; dmask_token += the masked rows.
template <typename T>
void unshuffle_backward(const Mat<T>& dout, const std::vector<std::vector<int>>& keep, Index Tn, Mat<T>& dy, Vec<T>* dmask_token) {
  const auto B = static_cast<Index>(keep.size());
  const Index K = static_cast<Index>(keep[0].size()), Tk = K + 1;
  dy.resize(B * Tk, dout.cols());
  std::vector<char> kept(static_cast<std::size_t>(Tn - 1));
  for (Index b = 0; b < B; ++b) {
    std::fill(kept.begin(), kept.end(), 0);
    dy.row(b * Tk) = dout.row(b * Tn);
    for (Index j = 0; j < K; ++j) {
      const Index n = keep[static_cast<std::size_t>(b)][static_cast<std::size_t>(j)];
      dy.row(b * Tk + 1 + j) = dout.row(b * Tn + 1 + n);
      kept[static_cast<std::size_t>(n)] = 1;
    }
    if (dmask_token != nullptr) {
      for (Index n = 0; n + 1 < Tn; ++n)
        if (kept[static_cast<std::size_t>(n)] == 0) *dmask_token += dout.row(b * Tn + 1 + n).transpose();
    }
  }
}

// MAE's patchify: image b's patch (py, px) as row b*gh*gw + py*gw + px of P*P*C values in the
// order (row, column, channel); with norm_pix, each row minus its mean over sqrt(unbiased
// variance + 1e-6) (MAE's target).
template <typename T>
void patch_targets(const std::vector<Image>& batch, int P, bool norm_pix, Mat<T>& target) {
  const int C = batch[0].channels, gh = batch[0].height / P, gw = batch[0].width / P;
  const Index N = static_cast<Index>(gh) * gw, K = static_cast<Index>(C) * P * P;
  target.resize(static_cast<Index>(batch.size()) * N, K);
  for (std::size_t b = 0; b < batch.size(); ++b) {
    const Image& image = batch[b];
    for (int py = 0; py < gh; ++py)
      for (int px = 0; px < gw; ++px) {
        T* row = target.row(static_cast<Index>(b) * N + py * gw + px).data();
        for (int y = 0; y < P; ++y)
          for (int xx = 0; xx < P; ++xx)
            for (int ch = 0; ch < C; ++ch) {
              row[(y * P + xx) * C + ch] =
                  static_cast<T>(image.data[(static_cast<std::size_t>(ch) * image.height + py * P + y) * image.width + px * P + xx]);
            }
        if (norm_pix) {
          double mean = 0.0;
          for (Index k = 0; k < K; ++k) mean += static_cast<double>(row[k]);
          mean /= static_cast<double>(K);
          double var = 0.0;
          for (Index k = 0; k < K; ++k) var += (static_cast<double>(row[k]) - mean) * (static_cast<double>(row[k]) - mean);
          var /= static_cast<double>(std::max<Index>(1, K - 1));
          const double inv = 1.0 / std::sqrt(var + 1e-6);
          for (Index k = 0; k < K; ++k) row[k] = static_cast<T>((static_cast<double>(row[k]) - mean) * inv);
        }
      }
  }
}

// MAE's loss: the mean over rows with masked[r] != 0 of the mean over columns of (pred - target)^2.
// dpred (overwritten) is its gradient (zero on the other rows). Returns the loss (0 without masked rows).
template <typename T>
double masked_mse(const Mat<T>& pred, const Mat<T>& target, const std::vector<char>& masked, Mat<T>& dpred) {
  const Index rows = pred.rows(), K = pred.cols();
  Index n = 0;
  for (Index r = 0; r < rows; ++r) n += masked[static_cast<std::size_t>(r)] != 0 ? 1 : 0;
  dpred.setZero(rows, K);
  if (n == 0) return 0.0;
  const T scale = static_cast<T>(2.0 / (static_cast<double>(n) * static_cast<double>(K)));
  double sum = 0.0;
  for (Index r = 0; r < rows; ++r) {
    if (masked[static_cast<std::size_t>(r)] == 0) continue;
    const auto diff = (pred.row(r) - target.row(r)).eval();
    double row_sum = 0.0;
    for (Index k = 0; k < K; ++k) row_sum += static_cast<double>(diff[k]) * static_cast<double>(diff[k]);
    sum += row_sum / static_cast<double>(K);
    dpred.row(r) = scale * diff;
  }
  return sum / static_cast<double>(n);
}

// ---- Double-precision twin of the model (for the finite-difference tests) ---------------------------
// The same engine as training::forward / backward, instantiated for double. The Tape keeps a
// separate double state.

[[nodiscard]] Mat<double> forward_double(const ViTConfig& config, const WeightsT<double>& weights, const std::vector<Image>& batch,
                                         const TrainOptions& options, Tape& tape);
void backward_double(const ViTConfig& config, const WeightsT<double>& weights, Tape& tape, const Mat<double>& dlogits,
                     WeightsT<double>& grads);

// Stochastic depth's per-image scale for (block, branch 0 = attention / 1 = MLP, image): 0 when
// dropped, 1 / (1 - p) when kept, with p = drop_path * block / (L - 1). Deterministic in the seed.
[[nodiscard]] double drop_path_scale(const TrainOptions& options, int num_layers, int block, int branch, int image);

// The MAE (training/mae.hpp) in double: the loss of mae_forward, and mae_backward. The MaeTape
// keeps a separate double state.
[[nodiscard]] double mae_forward_double(const ViTConfig& config, const WeightsT<double>& encoder, const MaeConfig& mae,
                                        const WeightsT<double>& decoder, const std::vector<Image>& batch,
                                        const std::vector<std::vector<int>>& keep, const TrainOptions& options, MaeTape& tape);
void mae_backward_double(const ViTConfig& config, const WeightsT<double>& encoder, const WeightsT<double>& decoder, MaeTape& tape,
                         WeightsT<double>& encoder_grads, WeightsT<double>& decoder_grads);

}  // namespace hilum::training::ops
