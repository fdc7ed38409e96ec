// Hilum training: validation metrics (see metrics.hpp).
//
// Labels: a label != 0 is a positive. Scores that are NaN are skipped.
#include "hilum/training/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numeric>
#include <random>
#include <stdexcept>

namespace hilum::training {

namespace {

void check_sizes(std::size_t a, std::size_t b, const char* what) {
  if (a != b) throw std::invalid_argument(std::string(what) + ": scores and labels differ in length");
}

// Mid-ranks (1-based, ties get the mean of their ranks) of `values`, in O(n log n).
std::vector<double> midranks(const std::vector<double>& values) {
  const std::size_t n = values.size();
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return values[a] < values[b]; });
  std::vector<double> ranks(n);
  std::size_t i = 0;
  while (i < n) {
    std::size_t j = i;
    while (j + 1 < n && values[order[j + 1]] == values[order[i]]) ++j;
    const double rank = 0.5 * static_cast<double>(i + j) + 1.0;  // mean of ranks i+1 .. j+1
    for (std::size_t k = i; k <= j; ++k) ranks[order[k]] = rank;
    i = j + 1;
  }
  return ranks;
}

double sample_variance(const std::vector<double>& x) {
  if (x.size() < 2) return 0.0;
  double mean = 0.0;
  for (const double v : x) mean += v;
  mean /= static_cast<double>(x.size());
  double ss = 0.0;
  for (const double v : x) ss += (v - mean) * (v - mean);
  return ss / static_cast<double>(x.size() - 1);
}

}  // namespace

std::optional<Auroc> auroc(const std::vector<double>& scores, const std::vector<int>& labels) {
  check_sizes(scores.size(), labels.size(), "auroc");
  std::vector<double> pos;
  std::vector<double> neg;
  for (std::size_t i = 0; i < scores.size(); ++i) {
    if (std::isnan(scores[i])) continue;
    (labels[i] != 0 ? pos : neg).push_back(scores[i]);
  }
  if (pos.empty() || neg.empty()) return std::nullopt;
  const std::size_t m = pos.size();
  const std::size_t n = neg.size();
  // Fast DeLong (Sun & Xu 2014): ranks within the pooled sample and within each class give the
  // structural components V10 (per positive) and V01 (per negative); Mann-Whitney with ties = 1/2.
  std::vector<double> pooled(pos);
  pooled.insert(pooled.end(), neg.begin(), neg.end());
  const std::vector<double> rank_all = midranks(pooled);
  const std::vector<double> rank_pos = midranks(pos);
  const std::vector<double> rank_neg = midranks(neg);
  const double dm = static_cast<double>(m);
  const double dn = static_cast<double>(n);
  std::vector<double> v10(m);
  std::vector<double> v01(n);
  double sum_pos_ranks = 0.0;
  for (std::size_t i = 0; i < m; ++i) {
    sum_pos_ranks += rank_all[i];
    v10[i] = (rank_all[i] - rank_pos[i]) / dn;  // fraction of negatives below (ties 1/2)
  }
  for (std::size_t j = 0; j < n; ++j) v01[j] = 1.0 - (rank_all[m + j] - rank_neg[j]) / dm;  // positives above
  Auroc result;
  result.positives = static_cast<int>(m);
  result.negatives = static_cast<int>(n);
  result.value = (sum_pos_ranks - dm * (dm + 1.0) / 2.0) / (dm * dn);
  const double variance = sample_variance(v10) / dm + sample_variance(v01) / dn;
  const double half_width = 1.959963984540054 * std::sqrt(std::max(variance, 0.0));
  result.ci_low = std::clamp(result.value - half_width, 0.0, 1.0);
  result.ci_high = std::clamp(result.value + half_width, 0.0, 1.0);
  return result;
}

double expected_calibration_error(const std::vector<double>& probabilities, const std::vector<int>& labels, int bins) {
  check_sizes(probabilities.size(), labels.size(), "expected_calibration_error");
  if (bins < 1) throw std::invalid_argument("expected_calibration_error: bins must be >= 1");
  std::vector<double> confidence(static_cast<std::size_t>(bins), 0.0);
  std::vector<double> positives(static_cast<std::size_t>(bins), 0.0);
  std::vector<double> count(static_cast<std::size_t>(bins), 0.0);
  double total = 0.0;
  for (std::size_t i = 0; i < probabilities.size(); ++i) {
    if (std::isnan(probabilities[i])) continue;
    const double p = std::clamp(probabilities[i], 0.0, 1.0);
    // Bin b holds [b/B, (b+1)/B); p = 1 goes to the last bin.
    const int b = std::min(static_cast<int>(p * bins), bins - 1);
    confidence[static_cast<std::size_t>(b)] += p;
    positives[static_cast<std::size_t>(b)] += labels[i] != 0 ? 1.0 : 0.0;
    count[static_cast<std::size_t>(b)] += 1.0;
    total += 1.0;
  }
  if (total == 0.0) return 0.0;
  double ece = 0.0;
  for (std::size_t b = 0; b < count.size(); ++b) {
    if (count[b] == 0.0) continue;
    ece += count[b] / total * std::abs(positives[b] / count[b] - confidence[b] / count[b]);
  }
  return ece;
}

double quantile_of_sorted(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) throw std::invalid_argument("quantile_of_sorted: no values");
  const double at = std::clamp(q, 0.0, 1.0) * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(at));
  const std::size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (at - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

double ece_by_chance(const std::vector<double>& probabilities, double quantile, int rounds, std::uint64_t seed, int bins) {
  if (rounds < 1) throw std::invalid_argument("ece_by_chance: rounds must be >= 1");
  if (!(quantile >= 0.0 && quantile <= 1.0)) throw std::invalid_argument("ece_by_chance: the quantile must be in [0, 1]");
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::vector<int> labels(probabilities.size());
  std::vector<double> eces(static_cast<std::size_t>(rounds));
  for (auto& e : eces) {
    for (std::size_t i = 0; i < probabilities.size(); ++i) labels[i] = uniform(rng) < probabilities[i] ? 1 : 0;
    e = expected_calibration_error(probabilities, labels, bins);
  }
  std::sort(eces.begin(), eces.end());
  return quantile_of_sorted(eces, quantile);
}

// Predicted positive when score >= threshold. Candidates are the distinct scores (and the float
// just above the largest score, i.e. nothing positive, J = 0); among equal J the highest threshold wins. With one class missing
// the default threshold 0.5 is returned with its sensitivity and specificity.
Threshold youden_threshold(const std::vector<double>& scores, const std::vector<int>& labels) {
  check_sizes(scores.size(), labels.size(), "youden_threshold");
  std::vector<std::pair<double, bool>> items;
  items.reserve(scores.size());
  for (std::size_t i = 0; i < scores.size(); ++i)
    if (!std::isnan(scores[i])) items.emplace_back(scores[i], labels[i] != 0);
  long long positives = 0;
  for (const auto& it : items) positives += it.second ? 1 : 0;
  const long long negatives = static_cast<long long>(items.size()) - positives;
  Threshold result;
  if (positives == 0 || negatives == 0) {
    long long tp = 0;
    long long tn = 0;
    for (const auto& it : items) {
      if (it.second && it.first >= result.threshold) ++tp;
      if (!it.second && it.first < result.threshold) ++tn;
    }
    result.sensitivity = positives > 0 ? static_cast<double>(tp) / static_cast<double>(positives) : 0.0;
    result.specificity = negatives > 0 ? static_cast<double>(tn) / static_cast<double>(negatives) : 0.0;
    return result;
  }
  std::sort(items.begin(), items.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  // J * P * N = TP * N + TN * P - P * N, compared exactly in integers.
  long long tp = 0;
  long long fp = 0;
  long long best = 0;  // threshold +inf: TP = 0, TN = N -> J = 0
  result.threshold = std::nextafter(items.front().first, INFINITY);  // just above every score
  result.sensitivity = 0.0;
  result.specificity = 1.0;
  std::size_t i = 0;
  while (i < items.size()) {
    const double t = items[i].first;
    while (i < items.size() && items[i].first == t) {
      (items[i].second ? tp : fp) += 1;
      ++i;
    }
    const long long tn = negatives - fp;
    const long long j = tp * negatives + tn * positives - positives * negatives;
    if (j > best) {
      best = j;
      result.threshold = t;
      result.sensitivity = static_cast<double>(tp) / static_cast<double>(positives);
      result.specificity = static_cast<double>(tn) / static_cast<double>(negatives);
    }
  }
  return result;
}

}  // namespace hilum::training
