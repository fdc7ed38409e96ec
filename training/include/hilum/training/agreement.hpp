// Hilum training: agreement between readers on nominal labels (present / absent / uncertain), for
// several-reader studies: Cohen's kappa for two raters, Fleiss' kappa and Krippendorff's alpha
// across raters, and a percentile bootstrap that resamples clusters (patients), not images.
// Ratings are category codes >= 0; kMissing marks an item a rater did not rate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

namespace hilum::training {

inline constexpr int kMissing = -1;

// Cohen's kappa (1960) of two raters over the items both rated: (po - pe) / (1 - pe). As
// scikit-learn's cohen_kappa_score. Empty when no item was rated by both or pe = 1 (one category).
[[nodiscard]] std::optional<double> cohen_kappa(const std::vector<int>& a, const std::vector<int>& b);

// Fleiss' kappa (1971) over the items rated by every rater (rows: items, columns: raters; at least
// 2 raters). Empty when no item is complete or the expected agreement is 1.
[[nodiscard]] std::optional<double> fleiss_kappa(const std::vector<std::vector<int>>& ratings);

// Krippendorff's alpha for nominal data (2004/2011): 1 - Do / De from the coincidence matrix of the
// items with at least two ratings (missing ratings allowed). Empty when fewer than two pairable
// values or De = 0.
[[nodiscard]] std::optional<double> krippendorff_alpha_nominal(const std::vector<std::vector<int>>& ratings);

struct Interval {
  double low = 0.0;
  double high = 0.0;
};

// Percentile 95% interval of `statistic` over `resamples` bootstrap samples that draw clusters
// (cluster_of_item[i] is item i's cluster, e.g. its patient) with replacement and take all their
// items; `statistic` receives the item indices of one sample (repeated as drawn). Deterministic for
// a seed (std::mt19937_64, index = draw mod clusters). Empty with fewer than two clusters, or when
// fewer than half of the samples give a value.
[[nodiscard]] std::optional<Interval> cluster_bootstrap(
    const std::vector<std::size_t>& cluster_of_item, int resamples, std::uint64_t seed,
    const std::function<std::optional<double>(const std::vector<std::size_t>& items)>& statistic);

}  // namespace hilum::training
