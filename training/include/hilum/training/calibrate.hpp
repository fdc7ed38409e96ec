// Hilum training: fitting what makes a model's answers honest (inference/model_extras.hpp):
// Platt scaling of each output's logit on validation patients, and the reference distribution of
// the training films' embeddings for the domain check.
#pragma once

#include <vector>

#include "hilum/inference/model_extras.hpp"

namespace hilum::training {

// Platt scaling (Platt 1999, with his smoothed targets (N+ + 1) / (N+ + 2) and 1 / (N- + 2)) of
// one output: a and b minimising the log loss of sigmoid(a * logit + b) on labelled images, by
// Newton's method. Identity when one class is missing, and when the best slope is not positive:
// calibration never reverses (or flattens) the order of the images.
[[nodiscard]] inference::PlattScaling fit_platt(const std::vector<double>& logits, const std::vector<int>& labels);

// How `rows` (one feature vector per training film: embeddings or thumbnails) are spread: mean, the
// `axes` leading principal axes (fewer when there are not enough films), the residual variance, and
// the threshold as the `quantile` of the distances of `held_out` (films of the training domain the
// description was not fitted on; the training films themselves when it is empty) times `margin`.
[[nodiscard]] inference::Subspace fit_subspace(const inference::Matrix& rows, const inference::Matrix& held_out, int axes = 64,
                                               double quantile = 0.99, double margin = 1.0);

}  // namespace hilum::training
