// Hilum inference: what a model folder carries beside its weights so that its answers are honest.
//  - Calibration: per output, Platt scaling of the logit (p = sigmoid(a * logit + b)), fitted on
//    validation patients, so that a probability of 0.8 is right about 8 times in 10.
//  - Domain reference: the distribution of the training films' embeddings (mean, principal axes
//    with their variances, the variance left over), so that an image far from everything the model
//    was trained on can be told apart from a chest film; plus the populations and acquisition
//    header values it was trained on.
// Both live in `hilum.json` in the model folder (Hugging Face tools ignore it). A folder without
// it is still a model: its probabilities are uncalibrated and its domain check is unavailable.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "hilum/inference/error.hpp"
#include "hilum/inference/vit.hpp"

namespace hilum::inference {

struct PlattScaling {
  double a = 1.0;  // p = sigmoid(a * logit + b)
  double b = 0.0;
};

struct Calibration {
  std::string method = "platt";              // per-output Platt scaling of the logit
  std::vector<std::string> labels;           // outputs it covers, in the model's label order
  std::vector<PlattScaling> scaling;         // one per label
  std::string fitted_on;                     // where the parameters come from, in plain words
  int images = 0;                            // how many validation images they were fitted on
};

// A population the model was trained on (for the header check and the model card).
struct Population {
  std::string name;            // "pediatric", "adult"
  double min_age_years = 0.0;  // ages seen in its training films (0 when unknown)
  double max_age_years = 0.0;
  int images = 0;
};

struct DomainReference {
  std::string features = "cls";  // the embedding the reference describes: the CLS token after the final LayerNorm
  Vector mean;                   // hidden
  Matrix axes;                   // k x hidden, orthonormal rows (principal axes of the training embeddings)
  Vector variances;              // k: variance along each axis
  double residual_variance = 1.0;  // mean variance per dimension off those axes
  // The raw distance (see domain_distance) at which an image counts as outside; domain_score is
  // the distance divided by it, so a score above 1 is outside.
  double threshold = 1.0;
  double threshold_quantile = 0.99;  // of the held-out training-domain films' distances
  int images = 0;                    // training films the reference was fitted on
  std::vector<Population> populations;
  std::vector<std::string> modalities;  // DICOM Modality values of films like the training films ("CR", "DX")
  // The same description of the pixels themselves: the model's input image shrunk to a
  // thumbnail_side x thumbnail_side thumbnail, standardised (domain_thumbnail), so that an image
  // whose embedding happens to fall among the chest films' still has to look like one.
  int thumbnail_side = 0;  // 0: no pixel reference
  Vector thumbnail_mean;
  Matrix thumbnail_axes;
  Vector thumbnail_variances;
  double thumbnail_residual_variance = 1.0;
  double thumbnail_threshold = 1.0;
};

struct ModelExtras {
  std::optional<Calibration> calibration;
  std::optional<DomainReference> domain;
};

// Reads `hilum.json` from a model folder: empty extras when there is none; an error when it is
// there but damaged or does not fit the config (hidden size, labels).
[[nodiscard]] Result<ModelExtras> read_model_extras(const std::filesystem::path& dir, const ViTConfig& config);
// Writes `hilum.json` atomically (numbers locale-independent).
[[nodiscard]] Status write_model_extras(const std::filesystem::path& dir, const ModelExtras& extras);

// Calibrated probabilities from logits (rows = images, columns = the model's labels). Outputs the
// calibration does not cover keep the plain sigmoid; no calibration = the plain sigmoid.
[[nodiscard]] Matrix calibrated_probabilities(const Matrix& logits, const std::optional<Calibration>& calibration);

// Distance of one embedding from the training films: sqrt of (Mahalanobis distance along the
// principal axes + squared distance off them over the residual variance), divided by sqrt(hidden)
// so that a typical training film is near 1 whatever the model's width.
[[nodiscard]] double domain_distance(const DomainReference& reference, const float* embedding, int dim);

// The thumbnail the pixel reference describes: grey values (any size) shrunk to side x side
// (antialiased), then standardised to mean 0 and standard deviation 1 (exposure does not count).
[[nodiscard]] std::vector<float> domain_thumbnail(const float* grey, int width, int height, int side);
// Distance of a thumbnail from the training films' thumbnails (as domain_distance); infinite when
// the reference has none of that size.
[[nodiscard]] double thumbnail_distance(const DomainReference& reference, const std::vector<float>& thumbnail);

}  // namespace hilum::inference
