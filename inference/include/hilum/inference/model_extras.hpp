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

// A population the model was trained on (for the header check, the model card, and its own
// calibration: a probability fitted on children's films is not what it means on adults').
struct Population {
  std::string name;            // "pediatric", "adult"
  double min_age_years = 0.0;  // ages seen in its training films (0 when unknown)
  double max_age_years = 0.0;
  int images = 0;
  Vector centroid;                        // mean CLS embedding of its training films (empty: unknown)
  std::optional<Calibration> calibration;  // fitted on its own validation films (none: the model's)
};

// How a set of feature vectors (the training films') is spread: their mean, leading principal
// axes with the variance along each, and the variance left over. An image's distance from it is
// distance() below; `threshold` is the distance at which an image counts as outside.
struct Subspace {
  Vector mean;                     // n
  Matrix axes;                     // k x n, orthonormal rows
  Vector variances;                // k: variance along each axis
  double residual_variance = 1.0;  // mean variance per dimension off those axes
  double threshold = 1.0;          // the `quantile` of held-out films' distances (times a margin)
  double quantile = 0.99;
  int images = 0;                  // films the description was fitted on
};

struct DomainReference {
  // What `embedding` describes: "cls", the CLS token after the final LayerNorm; "none", no
  // embedding part (empty `embedding`: a fine-tune with too few of its site's films within its
  // parent's pixel reference keeps that reference alone).
  std::string features = "cls";
  Subspace embedding;  // of the training films' embeddings (hidden values)
  // The same of the pixels themselves: the model's input image shrunk to a
  // thumbnail_side x thumbnail_side thumbnail, standardised (domain_thumbnail), so that an image
  // whose embedding happens to fall among the chest films' still has to look like one.
  int thumbnail_side = 0;  // 0: no pixel part
  Subspace thumbnail;
  // The same of the input image's pixel statistics (domain_statistics: the shape of its grey-level
  // histogram, tails, edge strength, skewness and left-right symmetry), which a CT slice, a scanned
  // page or a photograph given a chest header cannot fake by looking like a film at 16 x 16.
  // Empty mean: no statistics part (older models).
  Subspace statistics;
  std::vector<Population> populations;
  std::vector<std::string> modalities;  // DICOM Modality values of films like the training films ("CR", "DX")
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

// Which of the model's populations an image belongs to (an index into domain->populations, -1
// when there is none to choose): by the patient's age when the header gives one (the population
// whose age range holds it, else the nearest range), otherwise by the nearest centroid of the
// image's CLS embedding (`embedding`, n values; may be null).
[[nodiscard]] int choose_population(const ModelExtras& extras, const float* embedding, Eigen::Index n, std::optional<double> age_years);
// The same choice with what made it: the age (a population's age range), the embedding (the
// nearest centroid), or nothing to choose between (the model has one population).
struct PopulationPick {
  enum class By { None, Age, Embedding, OnlyOne };
  int index = -1;  // into domain->populations; -1 when there is none to choose
  By by = By::None;
};
[[nodiscard]] PopulationPick pick_population(const ModelExtras& extras, const float* embedding, Eigen::Index n,
                                             std::optional<double> age_years);
// The calibration an image of that population gets: its population's own when it has one, else
// the model's.
[[nodiscard]] const std::optional<Calibration>& calibration_for(const ModelExtras& extras, int population);
// Calibrated probabilities of a batch, each row by the calibration of its own population
// (choose_population with row i of `embeddings` and ages[i]; `ages` may be shorter: unknown).
// `chosen`, when given, receives each row's pick (index -1: none), the one its row carries.
[[nodiscard]] Matrix calibrated_probabilities(const ModelExtras& extras, const Matrix& logits, const Matrix& embeddings,
                                              const std::vector<std::optional<double>>& ages,
                                              std::vector<PopulationPick>* chosen = nullptr);

// Distance of a vector from a subspace description: sqrt of (Mahalanobis distance along the axes +
// squared distance off them over the residual variance), divided by sqrt(n) so that a typical
// training film is near 1 whatever the width. Infinite when the width differs.
[[nodiscard]] double distance(const Subspace& subspace, const float* x, Eigen::Index n);

// The thumbnail the pixel part describes: grey values (any size) shrunk to side x side
// (antialiased), then standardised to mean 0 and standard deviation 1 (exposure does not count).
[[nodiscard]] std::vector<float> domain_thumbnail(const float* grey, int width, int height, int side);

// The pixel statistics the statistics part describes, of grey values in [0, 1] (the model's input
// image), standardised first to mean 0 and standard deviation 1 (so a window's level and width do
// not count): a 16-bin histogram over -3..3 standard deviations (shares; the end bins take what lies
// beyond), the shares at or below -2.5 and at or above 2.5, the mean and 90th percentile of the
// gradient magnitude (central differences), the skewness, and the mean absolute difference from the
// left-right mirror image.
inline constexpr int kDomainStatistics = 22;
[[nodiscard]] std::vector<float> domain_statistics(const float* grey, int width, int height);

// How much of the corners of an image's content is filled, of grey values in [0, 1] (the model's
// input image): the content is what lies above 8% of the way from the 1st to the 99th percentile of
// the grey values, its box the rows and columns more than 3% of which are content; each of the box's
// four corners outside its inscribed ellipse (squared radius 1.1 and more) is measured, and the
// fullest one's share of content returned. A chest film fills its box into at least two corners (the
// shoulders, the abdomen, the detector's edge); a round field on an empty background (a CT or MR
// cross-section, the reconstruction circle around it, a fundus photograph, an image intensifier's
// disc) leaves all four empty. 1 for an image too flat or too small to say (content box under a
// tenth of a side).
[[nodiscard]] double corner_content(const float* grey, int width, int height);
// Below this corner_content an image is a round field, not a chest film (on the data measured in
// bench/domain: no chest film of 7,364 under 0.19; the CT slices, fundus photograph and phantoms it catches 0.00-0.02).
inline constexpr double kRoundFieldLimit = 0.05;

// An image's pixel descriptor for `domain`: its domain_thumbnail (when the reference has a
// thumbnail part) followed by its domain_statistics (when it has a statistics part), of grey values
// at the model's input size. Empty when the reference has no pixel part.
[[nodiscard]] std::vector<float> domain_pixels(const DomainReference& domain, const float* grey, int width, int height);
// Each pixel part's distance over its threshold (above 1: outside): 0 for a part the reference does
// not have, infinity for both when the descriptor does not fit the reference.
struct PixelScores {
  double thumbnail = 0.0;   // the layout: the domain_thumbnail part
  double statistics = 0.0;  // the grey levels and edges: the domain_statistics part
};
[[nodiscard]] PixelScores pixel_scores(const DomainReference& domain, const std::vector<float>& pixels);
// The larger of the two (0 when the reference has no pixel part).
[[nodiscard]] double pixel_score(const DomainReference& domain, const std::vector<float>& pixels);

}  // namespace hilum::inference
