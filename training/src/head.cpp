// Hilum training: the `head` strategy (see head.hpp).
//
// Per finding j, with the masked samples i, targets y_i in {0, 1} (target > 0.5 is positive) and
// sample weights a_i = mask_i * class_weight(y_i) / sum(mask * class_weight) (class_weight is
// n / (2 * count of the class) when balancing, else 1; so sum_i a_i = 1), the fit minimises
//
//   f(w, b) = sum_i a_i * loss(x_i . w + b, y_i) + l2 / 2 * |w|^2
//
// with loss = log(1 + exp(z)) - y z (logistic) or max(0, 1 - s z)^2, s = 2y - 1 (squared hinge,
// linear SVM). Solver: (generalised) Newton with a truncated preconditioned conjugate-gradient
// inner solve and an Armijo backtracking line search; converged when max |grad f| <= tolerance.
// `iterations` counts Newton steps. A finding whose labelled samples are all one class gets zero
// weights and bias log((P + 0.5) / (N + 0.5)) (logistic) or +-1 (SVM); with no labelled sample, 0.
//
// All findings advance in lock step so that every pass over the n x dim embeddings (the expensive
// part: products X V and X^T U, fused for Hessian-vector products) serves up to 16 findings at once
// (one AVX-512 lane each); margins are updated along accepted steps instead of recomputed. The
// passes are split over the cores by fixed chunks of rows (OpenMP; one thread below 2^18 entries)
// and summed in chunk order, so results do not depend on the thread count. Per-finding work
// (losses, line searches) runs in parallel over the findings. The CG preconditioner is
// (G + (l2 / c) I)^-1 with G = [X 1]^T [X 1] / rows over at most max(4096, 2 (dim + 1)) evenly
// strided rows, factorised once (c = a typical loss curvature: 0.2 logistic, 1 squared hinge).
#include "hilum/training/head.hpp"

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

namespace hilum::training {

namespace {

using MatD = Eigen::MatrixXd;  // column-major
using MatF = Eigen::MatrixXf;  // column-major
using Index = Eigen::Index;

// Rows are processed in a fixed number of chunks (balanced for 1, 2, 3, 4 or 6 threads), each in
// cache-sized blocks; per-chunk partial sums are added in chunk order, so the results do not depend
// on the number of threads.
constexpr Index kChunks = 12;
constexpr Index kBlockRows = 256;

struct Chunk {
  Index begin = 0;
  Index end = 0;
};
Chunk chunk(Index n, Index c) { return {n * c / kChunks, n * (c + 1) / kChunks}; }

// Small problems run on one thread: a parallel region's barrier costs more than their work (and
// much more when the cores are shared with other processes).
bool worth_threads(const Matrix& x) { return x.rows() * x.cols() >= (Index{1} << 18); }

double softplus(double z) { return std::log1p(std::exp(-std::abs(z))) + std::max(z, 0.0); }
double sigmoid(double z) {
  if (z >= 0.0) return 1.0 / (1.0 + std::exp(-z));
  const double e = std::exp(z);
  return e / (1.0 + e);
}

struct LossTerms {
  double value;
  double first;   // d loss / dz
  double second;  // d2 loss / dz2 (generalised for the squared hinge)
};

LossTerms loss_terms(HeadOptions::Kind kind, double z, bool positive) {
  if (kind == HeadOptions::Kind::Logistic) {
    const double p = sigmoid(z);
    return {softplus(z) - (positive ? z : 0.0), p - (positive ? 1.0 : 0.0), p * (1.0 - p)};
  }
  const double s = positive ? 1.0 : -1.0;
  const double margin = 1.0 - s * z;
  if (margin <= 0.0) return {0.0, 0.0, 0.0};
  return {margin * margin, -2.0 * s * margin, 2.0};
}

double loss_value(HeadOptions::Kind kind, double z, bool positive) {
  if (kind == HeadOptions::Kind::Logistic) return softplus(z) - (positive ? z : 0.0);
  const double margin = 1.0 - (positive ? z : -z);
  return margin > 0.0 ? margin * margin : 0.0;
}

// ---- Skinny products with the embeddings, 16 findings at a time ----------------------------------
// Eigen's GEMM repacks the large operand (X) for every product, which dominates when the other side
// has only ~15 columns. These kernels stream X's rows once and keep a dim x 16 panel hot instead;
// with 16 float lanes each element of X costs one vector FMA per product.

constexpr Index kLanes = 16;
using Lane = Eigen::Array<float, kLanes, 1>;
using LaneMap = Eigen::Map<Lane, Eigen::Unaligned>;
using ConstLaneMap = Eigen::Map<const Lane, Eigen::Unaligned>;

// A (rows x 16) row-major panel holding columns [first, first + 16) of m (zero-padded).
template <typename M>
void to_panel(const M& m, Index first, Index top, Index rows, std::vector<float>& panel) {
  panel.assign(static_cast<std::size_t>(rows * kLanes), 0.0f);
  const Index lanes = std::min(kLanes, static_cast<Index>(m.cols()) - first);
  for (Index l = 0; l < lanes; ++l)
    for (Index r = 0; r < rows; ++r) panel[static_cast<std::size_t>(r * kLanes + l)] = static_cast<float>(m(top + r, first + l));
}

// t (nb x 16) = X[r0 : r0 + nb] * w (dim x 16).
void rows_times_panel(const Matrix& x, Index r0, Index nb, const float* w, float* t) {
  const Index d = x.cols();
  Index i = 0;
  for (; i + 4 <= nb; i += 4) {
    const float* x0 = x.data() + (r0 + i) * d;
    const float* x1 = x0 + d;
    const float* x2 = x1 + d;
    const float* x3 = x2 + d;
    Lane a0 = Lane::Zero(), a1 = Lane::Zero(), a2 = Lane::Zero(), a3 = Lane::Zero();
    for (Index j = 0; j < d; ++j) {
      const ConstLaneMap wj(w + j * kLanes);
      a0 += x0[j] * wj;
      a1 += x1[j] * wj;
      a2 += x2[j] * wj;
      a3 += x3[j] * wj;
    }
    LaneMap(t + i * kLanes) = a0;
    LaneMap(t + (i + 1) * kLanes) = a1;
    LaneMap(t + (i + 2) * kLanes) = a2;
    LaneMap(t + (i + 3) * kLanes) = a3;
  }
  for (; i < nb; ++i) {
    const float* xi = x.data() + (r0 + i) * d;
    Lane a = Lane::Zero();
    for (Index j = 0; j < d; ++j) a += xi[j] * ConstLaneMap(w + j * kLanes);
    LaneMap(t + i * kLanes) = a;
  }
}

// g (dim x 16) += X[r0 : r0 + nb]^T * t (nb x 16).
void rows_transpose_times(const Matrix& x, Index r0, Index nb, const float* t, float* g) {
  const Index d = x.cols();
  Index i = 0;
  for (; i + 4 <= nb; i += 4) {
    const float* x0 = x.data() + (r0 + i) * d;
    const float* x1 = x0 + d;
    const float* x2 = x1 + d;
    const float* x3 = x2 + d;
    const Lane t0 = ConstLaneMap(t + i * kLanes);
    const Lane t1 = ConstLaneMap(t + (i + 1) * kLanes);
    const Lane t2 = ConstLaneMap(t + (i + 2) * kLanes);
    const Lane t3 = ConstLaneMap(t + (i + 3) * kLanes);
    for (Index j = 0; j < d; ++j) {
      LaneMap gj(g + j * kLanes);
      gj += (x0[j] * t0 + x1[j] * t1) + (x2[j] * t2 + x3[j] * t3);
    }
  }
  for (; i < nb; ++i) {
    const float* xi = x.data() + (r0 + i) * d;
    const Lane ti = ConstLaneMap(t + i * kLanes);
    for (Index j = 0; j < d; ++j) LaneMap(g + j * kLanes) += xi[j] * ti;
  }
}

// Adds a (dim x 16) float panel (and the 16 column sums `sums`) into out's columns [first, first + 16).
void add_panel(const std::vector<float>& g, const Lane& sums, Index first, MatD& out) {
  const Index d = out.rows() - 1;
  const Index lanes = std::min(kLanes, static_cast<Index>(out.cols()) - first);
  for (Index l = 0; l < lanes; ++l) {
    for (Index j = 0; j < d; ++j) out(j, first + l) += static_cast<double>(g[static_cast<std::size_t>(j * kLanes + l)]);
    out(d, first + l) += static_cast<double>(sums[l]);
  }
}

// Z = X W + 1 b^T for theta = [W; b^T] ((dim + 1) x k).
void linear_forward(const Matrix& x, const MatD& theta, MatD& z) {
  const Index n = x.rows();
  const Index d = x.cols();
  const Index k = theta.cols();
  z.resize(n, k);
  for (Index first = 0; first < k; first += kLanes) {
    std::vector<float> w;
    to_panel(theta, first, 0, d, w);
    const Index lanes = std::min(kLanes, k - first);
#pragma omp parallel for schedule(static) if (worth_threads(x))
    for (Index c = 0; c < kChunks; ++c) {
      const Chunk ch = chunk(n, c);
      std::vector<float> t(static_cast<std::size_t>(kBlockRows * kLanes));
      for (Index r0 = ch.begin; r0 < ch.end; r0 += kBlockRows) {
        const Index nb = std::min(kBlockRows, ch.end - r0);
        rows_times_panel(x, r0, nb, w.data(), t.data());
        for (Index l = 0; l < lanes; ++l)
          for (Index i = 0; i < nb; ++i) z(r0 + i, first + l) = static_cast<double>(t[static_cast<std::size_t>(i * kLanes + l)]) + theta(d, first + l);
      }
    }
  }
}

// out = [X^T U; 1^T U] ((dim + 1) x k) for U (n x k).
void linear_backward(const Matrix& x, const MatF& u, MatD& out) {
  const Index n = x.rows();
  const Index d = x.cols();
  const Index k = u.cols();
  out = MatD::Zero(d + 1, k);
  for (Index first = 0; first < k; first += kLanes) {
    std::vector<std::vector<float>> partial(static_cast<std::size_t>(kChunks));
    std::vector<Lane> sums(static_cast<std::size_t>(kChunks), Lane::Zero());
#pragma omp parallel for schedule(static) if (worth_threads(x))
    for (Index c = 0; c < kChunks; ++c) {
      const Chunk ch = chunk(n, c);
      std::vector<float>& g = partial[static_cast<std::size_t>(c)];
      g.assign(static_cast<std::size_t>(d * kLanes), 0.0f);
      std::vector<float> t;
      for (Index r0 = ch.begin; r0 < ch.end; r0 += kBlockRows) {
        const Index nb = std::min(kBlockRows, ch.end - r0);
        to_panel(u, first, r0, nb, t);
        for (Index i = 0; i < nb; ++i) sums[static_cast<std::size_t>(c)] += ConstLaneMap(t.data() + i * kLanes);
        rows_transpose_times(x, r0, nb, t.data(), g.data());
      }
    }
    for (Index c = 0; c < kChunks; ++c) add_panel(partial[static_cast<std::size_t>(c)], sums[static_cast<std::size_t>(c)], first, out);
  }
}

// out = [X 1]^T (curvature o ([X 1] V)) + l2 [V_w; 0]: Hessian-vector products for k columns in a
// single pass over X (each block of rows is used twice while it is in cache).
void hessian_times(const Matrix& x, const MatF& curvature, const MatD& v, double l2, MatD& out) {
  const Index n = x.rows();
  const Index d = x.cols();
  const Index k = v.cols();
  out = MatD::Zero(d + 1, k);
  for (Index first = 0; first < k; first += kLanes) {
    std::vector<float> w;
    to_panel(v, first, 0, d, w);
    Lane b = Lane::Zero();
    const Index lanes = std::min(kLanes, k - first);
    for (Index l = 0; l < lanes; ++l) b[l] = static_cast<float>(v(d, first + l));
    std::vector<std::vector<float>> partial(static_cast<std::size_t>(kChunks));
    std::vector<Lane> sums(static_cast<std::size_t>(kChunks), Lane::Zero());
#pragma omp parallel for schedule(static) if (worth_threads(x))
    for (Index c = 0; c < kChunks; ++c) {
      const Chunk ch = chunk(n, c);
      std::vector<float>& g = partial[static_cast<std::size_t>(c)];
      g.assign(static_cast<std::size_t>(d * kLanes), 0.0f);
      std::vector<float> t(static_cast<std::size_t>(kBlockRows * kLanes));
      std::vector<float> cv;
      for (Index r0 = ch.begin; r0 < ch.end; r0 += kBlockRows) {
        const Index nb = std::min(kBlockRows, ch.end - r0);
        rows_times_panel(x, r0, nb, w.data(), t.data());
        to_panel(curvature, first, r0, nb, cv);
        Lane s = Lane::Zero();
        for (Index i = 0; i < nb; ++i) {
          LaneMap ti(t.data() + i * kLanes);
          ti = (ti + b) * ConstLaneMap(cv.data() + i * kLanes);
          s += ti;
        }
        sums[static_cast<std::size_t>(c)] += s;
        rows_transpose_times(x, r0, nb, t.data(), g.data());
      }
    }
    for (Index c = 0; c < kChunks; ++c) add_panel(partial[static_cast<std::size_t>(c)], sums[static_cast<std::size_t>(c)], first, out);
  }
  out.topRows(d) += l2 * v.topRows(d);
}

// The CG preconditioner: Cholesky of [X 1]^T [X 1] / rows + shift I, over an evenly strided
// subset of at most max(4096, 2 (dim + 1)) rows (an approximation is all a preconditioner needs).
Eigen::LLT<MatD> preconditioner(const Matrix& x, double shift) {
  const Index n = x.rows();
  const Index d = x.cols();
  const Index rows = std::min(n, std::max<Index>(4096, 2 * (d + 1)));
  Matrix sample(rows, d);
  for (Index r = 0; r < rows; ++r) sample.row(r) = x.row(r * n / rows);
  std::vector<MatF> partial(static_cast<std::size_t>(kChunks));
  std::vector<Eigen::VectorXd> sums(static_cast<std::size_t>(kChunks));
#pragma omp parallel for schedule(static) if (worth_threads(x))
  for (Index c = 0; c < kChunks; ++c) {
    const Chunk ch = chunk(rows, c);
    MatF& p = partial[static_cast<std::size_t>(c)];
    p = MatF::Zero(d, d);
    p.selfadjointView<Eigen::Lower>().rankUpdate(sample.middleRows(ch.begin, ch.end - ch.begin).transpose());
    sums[static_cast<std::size_t>(c)] = sample.middleRows(ch.begin, ch.end - ch.begin).colwise().sum().transpose().cast<double>();
  }
  MatD g = MatD::Zero(d + 1, d + 1);
  for (std::size_t c = 0; c < partial.size(); ++c) {
    g.topLeftCorner(d, d) += partial[c].cast<double>();
    g.col(d).head(d) += sums[c];
  }
  g.topLeftCorner(d, d) = g.topLeftCorner(d, d).selfadjointView<Eigen::Lower>();
  g.row(d).head(d) = g.col(d).head(d).transpose();
  g(d, d) = static_cast<double>(rows);
  g /= static_cast<double>(std::max<Index>(rows, 1));
  const double floor = 1e-8 * std::max(g.trace() / static_cast<double>(d + 1), 1e-12);
  g.diagonal().array() += std::max(shift, floor);
  return Eigen::LLT<MatD>(g);
}

}  // namespace

HeadFit fit_head(const Matrix& embeddings, const Matrix& targets, const Matrix& mask, const HeadOptions& options) {
  const Index n = embeddings.rows();
  const Index d = embeddings.cols();
  const Index m = targets.cols();
  if (targets.rows() != n || mask.rows() != n || mask.cols() != m)
    throw std::invalid_argument("fit_head: embeddings (" + std::to_string(n) + " rows), targets and mask must agree");
  if (options.l2 < 0.0) throw std::invalid_argument("fit_head: l2 must be >= 0");
  const HeadOptions::Kind kind = options.kind;
  const double l2 = options.l2;

  HeadFit fit;
  fit.weights = Matrix::Zero(m, d);
  fit.bias = Vector::Zero(m);
  fit.iterations.assign(static_cast<std::size_t>(m), 0);

  // Columns to fit, their sample weights and labels.
  std::vector<Index> cols;
  std::vector<double> start_bias;
  for (Index j = 0; j < m; ++j) {
    double pos = 0.0;
    double neg = 0.0;
    for (Index i = 0; i < n; ++i) {
      const double w = mask(i, j);
      if (w == 0.0) continue;
      (targets(i, j) > 0.5f ? pos : neg) += w;
    }
    if (pos <= 0.0 || neg <= 0.0) {
      // Nothing to separate: zero weights and the (smoothed) base rate as the bias.
      if (pos > 0.0 || neg > 0.0) {
        const double b = kind == HeadOptions::Kind::Logistic ? std::log((pos + 0.5) / (neg + 0.5)) : (pos > 0.0 ? 1.0 : -1.0);
        fit.bias(j) = static_cast<float>(b);
      }
      continue;
    }
    cols.push_back(j);
    // Logistic: start from the logit of the weighted base rate (0 when balanced).
    start_bias.push_back(kind == HeadOptions::Kind::Logistic && !options.balance ? std::log(pos / neg) : 0.0);
  }
  const auto k = static_cast<Index>(cols.size());
  if (k == 0) return fit;

  MatD a = MatD::Zero(n, k);  // sample weights, summing to 1 per column
  std::vector<std::vector<bool>> positive(static_cast<std::size_t>(k), std::vector<bool>(static_cast<std::size_t>(n)));
  for (Index c = 0; c < k; ++c) {
    const Index j = cols[static_cast<std::size_t>(c)];
    double pos = 0.0;
    double neg = 0.0;
    for (Index i = 0; i < n; ++i) {
      const bool p = targets(i, j) > 0.5f;
      positive[static_cast<std::size_t>(c)][static_cast<std::size_t>(i)] = p;
      if (mask(i, j) != 0.0f) (p ? pos : neg) += mask(i, j);
    }
    const double wpos = options.balance ? (pos + neg) / (2.0 * pos) : 1.0;
    const double wneg = options.balance ? (pos + neg) / (2.0 * neg) : 1.0;
    double total = 0.0;
    for (Index i = 0; i < n; ++i) {
      if (mask(i, j) == 0.0f) continue;
      a(i, c) = static_cast<double>(mask(i, j)) * (positive[static_cast<std::size_t>(c)][static_cast<std::size_t>(i)] ? wpos : wneg);
      total += a(i, c);
    }
    a.col(c) /= total;
  }

  const bool threads = worth_threads(embeddings);
  const Eigen::LLT<MatD> precond = preconditioner(embeddings, l2 / (kind == HeadOptions::Kind::Logistic ? 0.2 : 1.0));

  MatD theta = MatD::Zero(d + 1, k);
  for (Index c = 0; c < k; ++c) theta(d, c) = start_bias[static_cast<std::size_t>(c)];

  std::vector<Index> active(static_cast<std::size_t>(k));
  for (Index c = 0; c < k; ++c) active[static_cast<std::size_t>(c)] = c;

  // Margins X w + b of every fitted column: updated along each accepted step (z += t X p) rather
  // than recomputed, which saves a pass over X per Newton iteration.
  MatD z_all(n, k);
  for (Index c = 0; c < k; ++c) z_all.col(c).setConstant(theta(d, c));
  MatD z;
  MatF residual(n, k);   // a_i * loss'(z_i)
  MatF curvature(n, k);  // a_i * loss''(z_i)
  std::vector<double> objective(static_cast<std::size_t>(k), 0.0);
  MatD grad;

  for (int iteration = 0; iteration <= options.max_iterations && !active.empty(); ++iteration) {
    const auto ka = static_cast<Index>(active.size());
    // Current margins, losses, gradients of the active columns.
    MatD theta_a(d + 1, ka);
    for (Index c = 0; c < ka; ++c) theta_a.col(c) = theta.col(active[static_cast<std::size_t>(c)]);
    z.resize(n, ka);
    for (Index c = 0; c < ka; ++c) z.col(c) = z_all.col(active[static_cast<std::size_t>(c)]);
    residual.resize(n, ka);
    curvature.resize(n, ka);
#pragma omp parallel for schedule(static) if (threads)
    for (Index c = 0; c < ka; ++c) {
      const Index col = active[static_cast<std::size_t>(c)];
      const auto& pos = positive[static_cast<std::size_t>(col)];
      double f = 0.0;
      for (Index i = 0; i < n; ++i) {
        const double ai = a(i, col);
        if (ai == 0.0) {
          residual(i, c) = 0.0f;
          curvature(i, c) = 0.0f;
          continue;
        }
        const LossTerms t = loss_terms(kind, z(i, c), pos[static_cast<std::size_t>(i)]);
        f += ai * t.value;
        residual(i, c) = static_cast<float>(ai * t.first);
        curvature(i, c) = static_cast<float>(ai * t.second);
      }
      objective[static_cast<std::size_t>(col)] = f + 0.5 * l2 * theta_a.col(c).head(d).squaredNorm();
    }
    linear_backward(embeddings, residual, grad);
    grad.topRows(d) += l2 * theta_a.topRows(d);

    // Converged columns leave; the rest take a Newton step.
    std::vector<Index> keep;  // positions in `active`
    for (Index c = 0; c < ka; ++c)
      if (grad.col(c).cwiseAbs().maxCoeff() > options.tolerance) keep.push_back(c);
    if (keep.empty() || iteration == options.max_iterations) break;
    if (static_cast<Index>(keep.size()) != ka) {
      const auto kk = static_cast<Index>(keep.size());
      MatD g2(d + 1, kk);
      MatD t2(d + 1, kk);
      MatF r2(n, kk);
      MatF c2(n, kk);
      MatD z2(n, kk);
      std::vector<Index> active2;
      for (Index c = 0; c < kk; ++c) {
        const Index from = keep[static_cast<std::size_t>(c)];
        g2.col(c) = grad.col(from);
        t2.col(c) = theta_a.col(from);
        c2.col(c) = curvature.col(from);
        z2.col(c) = z.col(from);
        active2.push_back(active[static_cast<std::size_t>(from)]);
      }
      grad = std::move(g2);
      theta_a = std::move(t2);
      curvature = std::move(c2);
      z = std::move(z2);
      active = std::move(active2);
    }
    const auto kn = static_cast<Index>(active.size());

    // Truncated preconditioned CG on H p = -g, all columns in lock step.
    MatD step = MatD::Zero(d + 1, kn);
    MatD r = -grad;
    MatD s = precond.solve(r);
    MatD dir = s;
    Eigen::VectorXd rs = (r.cwiseProduct(s)).colwise().sum().transpose();
    std::vector<double> target(static_cast<std::size_t>(kn));
    for (Index c = 0; c < kn; ++c) {
      const double gnorm = grad.col(c).norm();
      target[static_cast<std::size_t>(c)] = std::min(0.5, std::sqrt(gnorm)) * gnorm;
    }
    std::vector<Index> solving(static_cast<std::size_t>(kn));
    for (Index c = 0; c < kn; ++c) solving[static_cast<std::size_t>(c)] = c;
    const Index max_cg = std::min<Index>(d + 1, 250);
    for (Index it = 0; it < max_cg && !solving.empty(); ++it) {
      const auto ks = static_cast<Index>(solving.size());
      MatD dir_s(d + 1, ks);
      MatF curv_s(n, ks);
      for (Index c = 0; c < ks; ++c) {
        dir_s.col(c) = dir.col(solving[static_cast<std::size_t>(c)]);
        curv_s.col(c) = curvature.col(solving[static_cast<std::size_t>(c)]);
      }
      MatD hd;
      hessian_times(embeddings, curv_s, dir_s, l2, hd);
      std::vector<Index> still;
      for (Index c = 0; c < ks; ++c) {
        const Index col = solving[static_cast<std::size_t>(c)];
        const double curv = dir_s.col(c).dot(hd.col(c));
        if (!(curv > 0.0)) {  // flat direction (e.g. no active hinge sample): keep what we have
          if (it == 0) step.col(col) = dir.col(col);
          continue;
        }
        const double alpha = rs(col) / curv;
        step.col(col) += alpha * dir_s.col(c);
        r.col(col) -= alpha * hd.col(c);
        if (r.col(col).norm() > target[static_cast<std::size_t>(col)]) still.push_back(col);
      }
      if (still.empty()) break;
      const auto kst = static_cast<Index>(still.size());
      MatD r_s(d + 1, kst);
      for (Index c = 0; c < kst; ++c) r_s.col(c) = r.col(still[static_cast<std::size_t>(c)]);
      const MatD s_s = precond.solve(r_s);
      for (Index c = 0; c < kst; ++c) {
        const Index col = still[static_cast<std::size_t>(c)];
        const double rs_new = r_s.col(c).dot(s_s.col(c));
        const double beta = rs_new / rs(col);
        rs(col) = rs_new;
        dir.col(col) = s_s.col(c) + beta * dir.col(col);
      }
      solving = std::move(still);
    }

    // Armijo backtracking line search per column, on z + t X p.
    MatD zstep;
    linear_forward(embeddings, step, zstep);  // X p_w + p_b
    std::vector<char> stalled(static_cast<std::size_t>(kn), 0);
#pragma omp parallel for schedule(dynamic) if (threads)
    for (Index c = 0; c < kn; ++c) {
      const Index col = active[static_cast<std::size_t>(c)];
      const auto& pos = positive[static_cast<std::size_t>(col)];
      const double slope = grad.col(c).dot(step.col(c));
      const double f0 = objective[static_cast<std::size_t>(col)];
      bool accepted = false;
      if (slope < 0.0) {
        double t = 1.0;
        for (int tries = 0; tries < 40; ++tries, t *= 0.5) {
          double f = 0.0;
          for (Index i = 0; i < n; ++i) {
            const double ai = a(i, col);
            if (ai != 0.0) f += ai * loss_value(kind, z(i, c) + t * zstep(i, c), pos[static_cast<std::size_t>(i)]);
          }
          f += 0.5 * l2 * (theta_a.col(c).head(d) + t * step.col(c).head(d)).squaredNorm();
          if (f <= f0 + 1e-4 * t * slope) {
            theta.col(col) = theta_a.col(c) + t * step.col(c);
            z_all.col(col) = z.col(c) + t * zstep.col(c);
            accepted = true;
            break;
          }
        }
      }
      if (!accepted) stalled[static_cast<std::size_t>(c)] = 1;  // at the precision limit
    }
    std::vector<Index> next;
    for (Index c = 0; c < kn; ++c) {
      const Index col = active[static_cast<std::size_t>(c)];
      fit.iterations[static_cast<std::size_t>(cols[static_cast<std::size_t>(col)])] += 1;
      if (!stalled[static_cast<std::size_t>(c)]) next.push_back(col);
    }
    active = std::move(next);
  }

  for (Index c = 0; c < k; ++c) {
    const Index j = cols[static_cast<std::size_t>(c)];
    fit.weights.row(j) = theta.col(c).head(d).cast<float>().transpose();
    fit.bias(j) = static_cast<float>(theta(d, c));
  }
  return fit;
}

}  // namespace hilum::training
