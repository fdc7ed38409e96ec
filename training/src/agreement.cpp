#include "hilum/training/agreement.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "hilum/training/metrics.hpp"

namespace hilum::training {

std::optional<double> cohen_kappa(const std::vector<int>& a, const std::vector<int>& b) {
  std::map<int, double> count_a, count_b;
  double n = 0.0, agree = 0.0;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    if (a[i] == kMissing || b[i] == kMissing) continue;
    n += 1.0;
    agree += a[i] == b[i] ? 1.0 : 0.0;
    count_a[a[i]] += 1.0;
    count_b[b[i]] += 1.0;
  }
  if (n == 0.0) return std::nullopt;
  double pe = 0.0;
  for (const auto& [category, ca] : count_a) {
    const auto it = count_b.find(category);
    if (it != count_b.end()) pe += (ca / n) * (it->second / n);
  }
  const double po = agree / n;
  if (1.0 - pe <= 0.0) return std::nullopt;
  return (po - pe) / (1.0 - pe);
}

std::optional<double> fleiss_kappa(const std::vector<std::vector<int>>& ratings) {
  std::map<int, double> totals;
  double items = 0.0, sum_p = 0.0, raters = 0.0;
  for (const auto& row : ratings) {
    if (row.size() < 2 || std::any_of(row.begin(), row.end(), [](int v) { return v == kMissing; })) continue;
    raters = static_cast<double>(row.size());
    std::map<int, double> counts;
    for (int v : row) counts[v] += 1.0;
    double squares = 0.0;
    for (const auto& [category, c] : counts) {
      squares += c * c;
      totals[category] += c;
    }
    sum_p += (squares - raters) / (raters * (raters - 1.0));
    items += 1.0;
  }
  if (items == 0.0) return std::nullopt;
  const double p_bar = sum_p / items;
  double pe = 0.0;
  for (const auto& [category, t] : totals) {
    const double p = t / (items * raters);
    pe += p * p;
  }
  if (1.0 - pe <= 0.0) return std::nullopt;
  return (p_bar - pe) / (1.0 - pe);
}

std::optional<double> krippendorff_alpha_nominal(const std::vector<std::vector<int>>& ratings) {
  // Coincidences: within each item with m >= 2 values, every ordered pair of values from two
  // different raters adds 1 / (m - 1).
  std::map<std::pair<int, int>, double> coincidence;
  std::map<int, double> marginal;
  double n = 0.0;
  for (const auto& row : ratings) {
    std::map<int, double> counts;
    double m = 0.0;
    for (int v : row) {
      if (v == kMissing) continue;
      counts[v] += 1.0;
      m += 1.0;
    }
    if (m < 2.0) continue;
    for (const auto& [c, nc] : counts) {
      for (const auto& [k, nk] : counts) {
        const double pairs = c == k ? nc * (nc - 1.0) : nc * nk;
        coincidence[{c, k}] += pairs / (m - 1.0);
      }
      marginal[c] += nc;
    }
    n += m;
  }
  if (n < 2.0) return std::nullopt;
  double observed = 0.0;  // sum over c != k of o_ck
  for (const auto& [ck, o] : coincidence)
    if (ck.first != ck.second) observed += o;
  double expected = 0.0;  // sum over c != k of n_c n_k
  for (const auto& [c, nc] : marginal)
    for (const auto& [k, nk] : marginal)
      if (c != k) expected += nc * nk;
  if (expected <= 0.0) return std::nullopt;
  return 1.0 - (n - 1.0) * observed / expected;
}

std::optional<Interval> cluster_bootstrap(const std::vector<std::size_t>& cluster_of_item, int resamples, std::uint64_t seed,
                                          const std::function<std::optional<double>(const std::vector<std::size_t>& items)>& statistic) {
  std::map<std::size_t, std::vector<std::size_t>> members;
  for (std::size_t i = 0; i < cluster_of_item.size(); ++i) members[cluster_of_item[i]].push_back(i);
  if (members.size() < 2 || resamples <= 0) return std::nullopt;  // one patient: nothing to resample
  std::vector<const std::vector<std::size_t>*> clusters;
  for (const auto& [id, items] : members) clusters.push_back(&items);
  std::mt19937_64 rng(seed);
  std::vector<double> values;
  values.reserve(static_cast<std::size_t>(resamples));
  std::vector<std::size_t> sample;
  for (int r = 0; r < resamples; ++r) {
    sample.clear();
    for (std::size_t k = 0; k < clusters.size(); ++k) {
      const auto* items = clusters[static_cast<std::size_t>(rng() % clusters.size())];
      sample.insert(sample.end(), items->begin(), items->end());
    }
    if (auto v = statistic(sample); v && std::isfinite(*v)) values.push_back(*v);
  }
  if (values.size() * 2 < static_cast<std::size_t>(resamples)) return std::nullopt;
  std::sort(values.begin(), values.end());
  return Interval{quantile_of_sorted(values, 0.025), quantile_of_sorted(values, 0.975)};
}

}  // namespace hilum::training
