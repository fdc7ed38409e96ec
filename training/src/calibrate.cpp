#include "hilum/training/calibrate.hpp"

#include <Eigen/Eigenvalues>

#include <algorithm>
#include <cmath>

#include "hilum/training/metrics.hpp"

namespace hilum::training {

inference::PlattScaling fit_platt(const std::vector<double>& logits, const std::vector<int>& labels) {
  const std::size_t n = std::min(logits.size(), labels.size());
  double positives = 0.0;
  for (std::size_t i = 0; i < n; ++i) positives += labels[i] != 0 ? 1.0 : 0.0;
  const double negatives = static_cast<double>(n) - positives;
  if (positives == 0.0 || negatives == 0.0) return {};
  const double hi = (positives + 1.0) / (positives + 2.0);
  const double lo = 1.0 / (negatives + 2.0);
  auto loss = [&](double a, double b) {
    double l = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      const double t = labels[i] != 0 ? hi : lo;
      const double z = a * logits[i] + b;
      // log(1 + e^z) - t z, computed without overflow
      l += (z > 0 ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z))) - t * z;
    }
    return l;
  };
  double a = 1.0, b = 0.0;
  double current = loss(a, b);
  for (int iteration = 0; iteration < 100; ++iteration) {
    double ga = 0.0, gb = 0.0, haa = 1e-9, hab = 0.0, hbb = 1e-9;
    for (std::size_t i = 0; i < n; ++i) {
      const double t = labels[i] != 0 ? hi : lo;
      const double p = 1.0 / (1.0 + std::exp(-(a * logits[i] + b)));
      const double d = p - t, w = p * (1.0 - p);
      ga += d * logits[i];
      gb += d;
      haa += w * logits[i] * logits[i];
      hab += w * logits[i];
      hbb += w;
    }
    const double det = haa * hbb - hab * hab;
    if (!(std::abs(det) > 0.0)) break;
    const double da = (hbb * ga - hab * gb) / det;
    const double db = (haa * gb - hab * ga) / det;
    double step = 1.0;
    bool moved = false;
    while (step > 1e-8) {
      const double next = loss(a - step * da, b - step * db);
      if (next < current) {
        a -= step * da;
        b -= step * db;
        moved = current - next > 1e-12 * std::max(1.0, std::abs(current));
        current = next;
        break;
      }
      step /= 2.0;
    }
    if (!moved) break;
  }
  // Calibration must never change the ranking: an output that orders the images backwards keeps
  // its plain sigmoid (its AUROC then says what it is worth).
  if (!(a > 0.0) || !std::isfinite(a) || !std::isfinite(b)) return {};
  return inference::PlattScaling{a, b};
}

inference::Subspace fit_subspace(const inference::Matrix& embeddings, const inference::Matrix& held_out, int axes,
                                                double quantile, double margin) {
  inference::Subspace r;
  const Eigen::Index n = embeddings.rows(), d = embeddings.cols();
  r.images = static_cast<int>(n);
  r.quantile = quantile;
  if (n < 2 || d == 0) return r;
  const Eigen::MatrixXd x = embeddings.cast<double>();
  const Eigen::RowVectorXd mean = x.colwise().mean();
  const Eigen::MatrixXd centred = x.rowwise() - mean;
  const Eigen::MatrixXd covariance = centred.transpose() * centred / static_cast<double>(n - 1);
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(covariance);
  const Eigen::VectorXd values = eig.eigenvalues();   // ascending
  const Eigen::MatrixXd vectors = eig.eigenvectors();  // columns
  // Never more axes than a quarter of the films support, so the variances are estimated well.
  const Eigen::Index k = std::max<Eigen::Index>(0, std::min<Eigen::Index>({static_cast<Eigen::Index>(axes), d - 1, n / 4}));
  const double total = std::max(values.sum(), 1e-12);
  const double floor = 1e-6 * total / static_cast<double>(d);  // guards directions with no spread
  r.mean = mean.transpose().cast<float>();
  r.axes = inference::Matrix(k, d);
  r.variances = inference::Vector(k);
  for (Eigen::Index a = 0; a < k; ++a) {
    const Eigen::Index column = d - 1 - a;
    r.axes.row(a) = vectors.col(column).transpose().cast<float>();
    r.variances(a) = static_cast<float>(std::max(values(column), floor));
  }
  double rest = 0.0;
  for (Eigen::Index i = 0; i < d - k; ++i) rest += std::max(values(i), 0.0);
  r.residual_variance = std::max(rest / static_cast<double>(std::max<Eigen::Index>(1, d - k)), floor);
  const inference::Matrix& reference = held_out.rows() > 0 ? held_out : embeddings;
  std::vector<double> distances;
  distances.reserve(static_cast<std::size_t>(reference.rows()));
  for (Eigen::Index i = 0; i < reference.rows(); ++i) {
    const Eigen::VectorXf row = reference.row(i).transpose();
    distances.push_back(inference::distance(r, row.data(), d));
  }
  std::sort(distances.begin(), distances.end());
  const double q = quantile_of_sorted(distances, quantile);
  r.threshold = std::max(q * margin, 1e-9);
  return r;
}

}  // namespace hilum::training
