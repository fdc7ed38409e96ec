// Hilum app: on-device fine-tuning from the catalog's current labels, evaluation, and the
// versioned, gated model registry (promote / rollback / export). Long work is a plain function
// taking a progress callback and a cancel flag; the GUI runs it on a worker thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hilum/app/catalog.hpp"
#include "hilum/inference/precision.hpp"

namespace hilum::app {

// Calibrate: the same weights, with the calibration (Platt scaling) and so the thresholds fitted
// anew on this catalog's validation patients -- a site's own labels making the probabilities mean
// what they say there. Every other strategy also ends with that fit.
enum class Strategy { Auto, Head, LastK, Full, Calibrate };
// Names from one table (core/enum_names.hpp): to_string gives "" for a value it does not list;
// strategy_from_string reads the exact name (stored in job parameters and model records) back, an
// unknown one being an Invalid error that names the known ones; parse_strategy takes what a person
// types (any case, and "lastk"/"last_k" for last-k).
[[nodiscard]] const char* to_string(Strategy s);                      // "auto", "head", "last-k", "full", "calibrate"
[[nodiscard]] Result<Strategy> strategy_from_string(std::string_view s);
[[nodiscard]] std::optional<Strategy> parse_strategy(const std::string& s);

struct FinetuneOptions {
  Strategy strategy = Strategy::Auto;  // auto: head below 200 labelled images, last-k below 2,000, else full
  std::string base_model;              // version or id; empty = the active model
  int epochs = 0;                      // 0 = the strategy's default
  int k = 2;                           // last-k: how many blocks are trained
  int batch_size = 8;
  float learning_rate = 0.0f;          // 0 = the strategy's default
  std::uint64_t seed = 1;
  double gate_tolerance = 0.005;       // promoted when mean AUROC >= active's - tolerance
  bool allow_promotion = true;         // false: always kept as a candidate
  std::string author = "hilum";        // who started the run (recorded in the version's hyperparameters)
  // Arithmetic of the blocks' matrix products, frozen prefix included (training::TrainOptions::
  // precision): BF16 mixed precision when the CPU has AVX512_BF16, else F32.
  inference::Precision precision = inference::Precision::BF16;
};

// Where a training run is (fine-tune, train, pretrain), as its progress reports it.
enum class Phase { Preparing, Embedding, Training, Validating, Calibrating, EpochDone, Done };
// "preparing", "embedding", "training", "validating", "calibrating", "epoch done", "done".
[[nodiscard]] inline const char* to_string(Phase phase) {
  switch (phase) {
    case Phase::Preparing: return "preparing";
    case Phase::Embedding: return "embedding";
    case Phase::Training: return "training";
    case Phase::Validating: return "validating";
    case Phase::Calibrating: return "calibrating";
    case Phase::EpochDone: return "epoch done";
    case Phase::Done: return "done";
  }
  return "?";
}

struct FinetuneProgress {
  Phase phase = Phase::Preparing;
  int epoch = 0;             // 1-based while training
  int epochs = 0;
  std::int64_t step = 0;     // within the whole run
  std::int64_t steps = 0;
  double loss = 0.0;         // running mean of the current epoch
  double images_per_second = 0.0;
  double eta_seconds = 0.0;
  std::optional<double> validation_auroc;  // after each epoch's validation
};
using FinetuneCallback = std::function<void(const FinetuneProgress&)>;

struct FindingMetrics {
  std::string finding;
  int positives = 0;
  int negatives = 0;
  std::optional<double> auroc;  // empty when the validation set lacks one class
  double auroc_low = 0.0;       // 95% CI (DeLong)
  double auroc_high = 0.0;
  double ece = 0.0;
  double threshold = 0.5;       // Youden
  double sensitivity = 0.0;
  double specificity = 0.0;
};

struct EvaluationReport {
  std::string model_version;
  // Which labels it was measured against: "consensus: adjudicated > unanimous > majority (...)"
  // (the catalog's consensus, Catalog::consensus_labels) or "csv: FILE".
  std::string labels;
  int images = 0;
  int patients = 0;
  std::vector<FindingMetrics> findings;
  std::optional<double> mean_auroc;  // over findings with an AUROC
};

// {"model", "images", "patients", "mean_auroc", "findings": [{"finding", "positives", "negatives",
// "auroc", "auroc_ci": [low, high], "ece", "threshold", "sensitivity", "specificity"}]}, the form
// stored in a model version's metrics.
[[nodiscard]] std::string evaluation_json(const EvaluationReport& report);

struct EpochRecord {
  int epoch = 0;
  double train_loss = 0.0;
  std::optional<double> validation_auroc;
};

struct FinetuneResult {
  ModelRecord model;                 // the new version (active or candidate)
  std::optional<ModelRecord> parent;
  std::string strategy;              // the one actually used
  EvaluationReport metrics;          // the new version on the validation split
  std::optional<EvaluationReport> parent_metrics;  // the parent on the same split
  bool promoted = false;
  std::string reason;                // why promoted or kept as a candidate
  std::vector<EpochRecord> history;
  double seconds = 0.0;
};

// Trains a new version from the catalog's current labels (patient-level split, stable across runs),
// evaluates it and the parent on the same validation patients, registers it with its metrics and
// applies the promotion gate. Interrupted runs resume from their last checkpoint. Versions and
// checkpoints live in the catalog's own models folder beside it ("<catalog stem>.models", recorded
// in the catalog's settings); a version name whose folder or registration is taken moves on to the
// next free name, so a finished run is never lost to a name collision.
[[nodiscard]] Result<FinetuneResult> finetune(Catalog& catalog, const FinetuneOptions& options,
                                              const FinetuneCallback& progress = {},
                                              const std::atomic<bool>* cancel = nullptr);

// Per-finding AUROC (CI), ECE and Youden thresholds of a model on the catalog's labelled validation
// patients, or on every image of a label CSV (ChestX-ray14 or one column per finding) when given.
[[nodiscard]] Result<EvaluationReport> evaluate(Catalog& catalog, const std::string& model_spec,
                                                const std::filesystem::path& labels_csv = {},
                                                const FinetuneCallback& progress = {},
                                                const std::atomic<bool>* cancel = nullptr);

// Whether an image's patient is in the fine-tuning validation split (20% of patients, chosen by a
// keyed hash of the patient with the catalog's secret: stable across runs, never split by image).
[[nodiscard]] Result<bool> in_validation_split(Catalog& catalog, const Instance& image);

// Registry operations.
[[nodiscard]] Status promote_model(Catalog& catalog, const std::string& version_or_id, const std::string& reason);
// Re-activates the active model's parent (or the previously active version).
[[nodiscard]] Result<ModelRecord> rollback_model(Catalog& catalog);
// Writes the version as a Hugging Face folder (config.json + model.safetensors), loadable by transformers.
[[nodiscard]] Status export_model(Catalog& catalog, const std::string& version_or_id, const std::filesystem::path& dir);

}  // namespace hilum::app
