// Hilum training: validation metrics for versioned models.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace hilum::training {

struct Auroc {
  double value = 0.5;
  double ci_low = 0.0;   // 95% confidence interval (DeLong's variance, logit-free normal interval clamped to [0, 1])
  double ci_high = 1.0;
  int positives = 0;
  int negatives = 0;
};
// AUROC of scores against binary labels (ties count half). Empty when one class is missing.
[[nodiscard]] std::optional<Auroc> auroc(const std::vector<double>& scores, const std::vector<int>& labels);

// Expected calibration error with `bins` equal-width probability bins (|accuracy - confidence| weighted by bin size,
// for binary probabilities: mean predicted probability vs observed positive rate per bin).
[[nodiscard]] double expected_calibration_error(const std::vector<double>& probabilities, const std::vector<int>& labels,
                                                int bins = 10);

// The q-quantile (q in [0, 1], clamped) of sorted values, interpolated between order statistics
// (NumPy's default, "linear"). Requires a non-empty vector.
[[nodiscard]] double quantile_of_sorted(const std::vector<double>& sorted, double q);

// The ECE a perfectly calibrated model shows on these probabilities by chance alone: labels drawn
// `rounds` times as Bernoulli(p) from the probabilities themselves (a fixed seed: the same inputs give
// the same answer), and the `quantile` of the ECEs they give. On a few dozen films this is itself
// several hundredths: an observed ECE below it means no miscalibration is detectable at that size,
// and an ECE goal smaller than it cannot be shown on so few films.
[[nodiscard]] double ece_by_chance(const std::vector<double>& probabilities, double quantile = 0.95, int rounds = 1000,
                                   std::uint64_t seed = 1, int bins = 10);

struct Threshold {
  double threshold = 0.5;
  double sensitivity = 0.0;
  double specificity = 0.0;
};
// The operating threshold maximising Youden's J = sensitivity + specificity - 1.
[[nodiscard]] Threshold youden_threshold(const std::vector<double>& scores, const std::vector<int>& labels);

}  // namespace hilum::training
