// Hilum training: validation metrics for versioned models.
#pragma once

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

struct Threshold {
  double threshold = 0.5;
  double sensitivity = 0.0;
  double specificity = 0.0;
};
// The operating threshold maximising Youden's J = sensitivity + specificity - 1.
[[nodiscard]] Threshold youden_threshold(const std::vector<double>& scores, const std::vector<int>& labels);

}  // namespace hilum::training
