// Class-specific relevance (Chefer, Gur & Wolf 2021, eqs. 5-6) from attention_gradients, which
// lives in backprop.cpp beside the engine it runs.
#include "hilum/training/explain.hpp"

#include <stdexcept>

#include <Eigen/Dense>

namespace hilum::training {

inference::Matrix class_relevance(const AttentionGradients& a) {
  using Eigen::Index;
  using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Index T = static_cast<Index>(a.grid_h) * a.grid_w + 1;
  if (a.grid_h <= 0 || a.grid_w <= 0 || a.heads <= 0 || a.probabilities.size() != a.gradients.size()) {
    throw std::invalid_argument("class_relevance: incomplete attention gradients");
  }
  Mat r = Mat::Identity(T, T);
  Mat fused, next;
  for (std::size_t b = 0; b < a.probabilities.size(); ++b) {
    const inference::Matrix& p = a.probabilities[b];
    const inference::Matrix& g = a.gradients[b];
    if (p.rows() != g.rows() || p.cols() != T || g.cols() != T || p.rows() % a.heads != 0) {
      throw std::invalid_argument("class_relevance: block " + std::to_string(b) + " has the wrong shape");
    }
    const Index tq = p.rows() / a.heads;  // T, or 1 for the last block's CLS row
    if (tq != T && tq != 1) throw std::invalid_argument("class_relevance: block " + std::to_string(b) + " has the wrong shape");
    fused.setZero(tq, T);
    for (int h = 0; h < a.heads; ++h) {
      fused += (p.middleRows(h * tq, tq).cast<double>().array() * g.middleRows(h * tq, tq).cast<double>().array()).max(0.0).matrix();
    }
    fused /= static_cast<double>(a.heads);
    if (tq == T) {
      next.noalias() = fused * r;
      r += next;
    } else {  // only the CLS row is read after the last block
      next.noalias() = fused * r;
      r.row(0) += next.row(0);
    }
  }
  inference::Matrix map(a.grid_h, a.grid_w);
  const double top = r.row(0).segment(1, T - 1).maxCoeff();
  for (Index i = 0; i < T - 1; ++i) {
    const double v = top > 0.0 ? std::max(0.0, r(0, i + 1) / top) : 0.0;
    map(i / a.grid_w, i % a.grid_w) = static_cast<float>(v);
  }
  return map;
}

}  // namespace hilum::training
