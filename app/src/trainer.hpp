// Internal to app/: the training loop shared by fine-tuning from the catalog (finetune.cpp) and
// training from an image folder (train.cpp): samples, batches, augmentation, AdamW with warm-up +
// cosine schedule, per-epoch validation, atomic per-epoch checkpoints and resume.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <random>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hilum/app/classify.hpp"
#include "hilum/app/finetune.hpp"
#include "hilum/inference/vit.hpp"
#include "hilum/training/augment.hpp"

namespace hilum::app::detail {

struct Sample {
  std::int64_t instance_id = 0;  // catalog images only
  std::string uid;
  std::string path;
  std::string patient;
  bool validation = false;
  bool is_new = true;  // has a label event newer than the parent's snapshot
  std::string population;  // "pediatric", "adult", ... (reports per population)
  std::optional<double> age_years;  // the patient's age when the data gives it
  int repeat = 1;          // times seen per epoch
  std::vector<float> target;
  std::vector<float> mask;
  std::vector<float> grey;  // the model's view of the display image (inference::model_view; loaded on demand)
  // With a model that crops the centre: the whole display image at the input size, which training
  // augments (its random crops reach the edges; the model is shown the crop). Empty otherwise.
  std::vector<float> whole;
  // What augmentation starts from.
  [[nodiscard]] const std::vector<float>& augmentable() const { return whole.empty() ? grey : whole; }
};

Error from_inference(const inference::Error& e);

// Decodes the samples' images with `reader` (two threads) into grey values at the model's input
// size; samples that already have them are left alone. An image that cannot be read is dropped
// from `samples`, its reason appended to `problems`.
using ImageReader = std::function<Result<DisplayImage>(const std::filesystem::path&)>;
[[nodiscard]] Status load_images(std::vector<Sample*>& samples, const inference::ViTConfig& config, const ImageReader& reader,
                                 const std::atomic<bool>* cancel, std::vector<std::string>& problems);

// The inference engine over samples (batches of 8): logits, probabilities (uncalibrated) and CLS
// embeddings, one row each.
struct SampleOutputs {
  inference::Matrix logits;
  inference::Matrix probabilities;
  inference::Matrix embeddings;
};
[[nodiscard]] Result<SampleOutputs> forward_samples(const inference::ViTModel& model, const std::vector<const Sample*>& samples,
                                                    const std::atomic<bool>* cancel);

// The image files (JPEG, PNG, DICOM or no extension) under `dir`, recursively, sorted.
[[nodiscard]] std::vector<std::filesystem::path> image_files(const std::filesystem::path& dir);

// JSON of an evaluation (stored in model records and printed by the CLI) and of a run's history.
[[nodiscard]] nlohmann::json to_json(const EvaluationReport& report);
[[nodiscard]] nlohmann::json to_json(const std::vector<EpochRecord>& history);

// Per-finding AUROC (DeLong CI), ECE and Youden threshold of `probabilities` (rows = samples,
// columns = model_labels) for the findings in `outputs` the model has.
[[nodiscard]] EvaluationReport evaluate_probabilities(const std::vector<std::string>& outputs, const std::vector<const Sample*>& samples,
                                                      const inference::Matrix& probabilities, const std::vector<std::string>& model_labels);
// Probabilities of a model on samples (the inference engine, batches of 8).
[[nodiscard]] Result<inference::Matrix> predict(const inference::ViTModel& model, const std::vector<const Sample*>& samples,
                                                const std::atomic<bool>* cancel);

// Platt scaling of each output fitted on samples' logits (rows = samples, columns = labels),
// over the samples that assess it.
[[nodiscard]] inference::Calibration fit_calibration(const std::vector<std::string>& labels, const std::vector<const Sample*>& samples,
                                                     const inference::Matrix& logits, const std::string& fitted_on);
// The model's calibration (fit_calibration on all samples) and, when the model has more than one
// population (extras.domain->populations, by name), each population's own, fitted on its own
// samples when it has at least `min_population_images` of them.
void fit_calibrations(inference::ModelExtras& extras, const std::vector<std::string>& labels, const std::vector<const Sample*>& samples,
                      const inference::Matrix& logits, const std::string& fitted_on, int min_population_images);
// The calibrated probabilities a reader would see for samples: each by the calibration of the
// population inference::choose_population picks from its age or its embedding.
[[nodiscard]] inference::Matrix shown_probabilities(const inference::ModelExtras& extras, const std::vector<const Sample*>& samples,
                                                    const SampleOutputs& out);
// The same where each sample's calibrations were fitted on the other half of the patients (split
// by a hash of the patient): an honest estimate of calibration on new patients.
[[nodiscard]] inference::Matrix cross_fitted_probabilities(const inference::ModelExtras& extras, const std::vector<std::string>& labels,
                                                           const std::vector<const Sample*>& samples, const SampleOutputs& out,
                                                           int min_population_images);
// One row per sample: `describe` (inference::domain_thumbnail at a side, domain_statistics) of its
// image at the model's input size, `width` values.
[[nodiscard]] inference::Matrix pixel_rows(const std::vector<const Sample*>& samples, const inference::ViTConfig& config, int width,
                                           const std::function<std::vector<float>(const float*, int, int)>& describe);
// The domain reference of a model: its training samples' embeddings, thumbnails and statistics, thresholds
// from the validation samples'.
[[nodiscard]] inference::DomainReference fit_domain(const inference::ViTConfig& config, const std::vector<const Sample*>& train,
                                                    const inference::Matrix& train_embeddings, const std::vector<const Sample*>& validation,
                                                    const inference::Matrix& validation_embeddings);

// Its first part alone: the subspace of the training embeddings, the limit from the validation
// embeddings' (the same quantile and margin as fit_domain).
[[nodiscard]] inference::Subspace fit_embedding_reference(const inference::Matrix& train_embeddings, const inference::Matrix& validation_embeddings);

// The samples `keep` accepts, with their rows of `m` (row i belongs to samples[i]).
[[nodiscard]] std::pair<std::vector<const Sample*>, inference::Matrix> rows_where(const std::vector<const Sample*>& samples,
                                                                                 const inference::Matrix& m,
                                                                                 const std::function<bool(const Sample&)>& keep);
// The samples whose `population` is `name`, with their rows of `m`.
[[nodiscard]] std::pair<std::vector<const Sample*>, inference::Matrix> population_rows(const std::vector<const Sample*>& samples,
                                                                                      const inference::Matrix& m, const std::string& name);

struct LoopOptions {
  int epochs = 5;
  int batch_size = 8;
  float learning_rate = 1e-4f;
  float min_learning_rate = 0.0f;
  float weight_decay = 0.05f;
  float layer_decay = 1.0f;
  float drop_path = 0.0f;
  float gradient_clip = 1.0f;
  bool checkpoint_activations = false;
  bool augment = false;
  training::AugmentOptions augment_options;
  int first_trainable_block = 0;   // > 0: blocks before it frozen, their outputs cached once (no augmentation then)
  std::int64_t warmup_steps = -1;  // -1: 5% of the steps
  std::uint64_t seed = 1;
  inference::Precision precision = inference::Precision::F32;  // training::TrainOptions::precision
};

// The arithmetic a run with `requested` precision uses on this CPU, as recorded in reports
// ("bf16" or "f32").
[[nodiscard]] std::string precision_name(inference::Precision requested);

struct LoopResult {
  std::vector<EpochRecord> history;
  std::size_t tape_peak_bytes = 0;
  std::int64_t warmup_steps = 0;
  std::int64_t steps = 0;
};

// The images one epoch trains on, in order (the plan may mix new and replayed samples).
using EpochPlan = std::function<std::vector<const Sample*>(int epoch, std::mt19937_64& rng)>;

// Trains `weights` in place. `train` is every training sample (positive weights and the frozen
// cache are computed over it); `plan` chooses each epoch's images; `validation` is scored after
// each epoch. Checkpoints go to `checkpoint_dir` (state.json + epoch-N/); a run finding a
// checkpoint there with the same labels resumes after its epoch.
[[nodiscard]] Result<LoopResult> run_training(const inference::ViTConfig& config, inference::ViTWeights& weights,
                                              const std::vector<const Sample*>& train, std::size_t samples_per_epoch,
                                              const EpochPlan& plan, const std::vector<const Sample*>& validation,
                                              const std::vector<std::string>& outputs, const LoopOptions& options,
                                              const std::filesystem::path& checkpoint_dir, FinetuneProgress& state,
                                              const FinetuneCallback& progress, const std::atomic<bool>* cancel);

// A folder's own name ("a/b/" too): reports name the model they started from without machine paths.
[[nodiscard]] inline std::string folder_name(const std::filesystem::path& dir) {
  std::filesystem::path p = dir.lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

}  // namespace hilum::app::detail
