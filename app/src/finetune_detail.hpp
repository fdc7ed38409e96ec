// Internal to app/: the pieces of fine-tuning that a model trained elsewhere (cluster.cpp) goes
// through too: the labels training uses, the patient-level split, and the end of a run (validation
// on the gate's patients, calibration, domain reference, the gate, registration).
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hilum/app/catalog.hpp"
#include "hilum/app/classify.hpp"
#include "hilum/app/finetune.hpp"
#include "trainer.hpp"

namespace hilum::app::detail {

// The catalog's own folder for its model versions ("<catalog stem>.models" beside the catalog,
// chosen once and recorded in its settings), created when missing. Pre-trained backbones go there too.
[[nodiscard]] Result<std::filesystem::path> catalog_models_dir(Catalog& catalog);

// The labels training uses: the consensus of the readers per image and finding (Catalog::
// consensus_labels, never one reader's labels). Fine-tuning, evaluation and the training-set export
// all read them here; `labels_used` says which they were ("consensus: <policy>").
[[nodiscard]] Result<std::vector<LabelEvent>> training_labels(Catalog& catalog);
[[nodiscard]] Result<std::string> training_labels_used(Catalog& catalog);

// Whether a patient (patient_key) is in the fine-tuning gate's validation split: 20% of patients,
// by HMAC(catalog secret, "finetune-split", patient) -- stable across runs, never by image.
[[nodiscard]] bool is_validation_patient(const std::string& secret, const std::string& patient);

// The samples of the catalog's labelled images for a model with `base_labels`: target 1 = present,
// 0 = absent, mask 0 = not assessed (no label, uncertain). `grow` adds an output for every labelled
// finding the model lacks.
struct TrainingData {
  std::vector<std::string> outputs;  // the new model's labels (base labels + grown ones)
  std::vector<Sample> samples;       // sorted by instance id
  std::int64_t max_event_id = 0;
  int patients = 0;
  int validation_patients = 0;
};
[[nodiscard]] Result<TrainingData> training_data(Catalog& catalog, const std::vector<std::string>& base_labels,
                                                 std::int64_t parent_snapshot, bool grow);

// A trained model waiting for its validation, gate and registration.
struct Candidate {
  inference::ViTConfig config;
  inference::ViTWeights weights;
  std::vector<EpochRecord> history;
  nlohmann::json hyperparameters = nlohmann::json::object();
  std::string strategy;                              // the version's strategy ("head", "full", "cluster", ...)
  bool backbone_trained = true;                      // false: keeps the parent's backbone and domain reference
  nlohmann::json extra_metrics = nlohmann::json::object();  // added to the version's metrics
  std::string run_name;                              // names the folder the model is saved in before it has a version
};

// Evaluates the candidate and the active model on the validation samples of `data` (images read
// as needed), fits the calibration (and a trained backbone's domain reference), saves the folder,
// applies the gate (promotion only when options.allow_promotion) and registers the version.
[[nodiscard]] Result<FinetuneResult> register_candidate(Catalog& catalog, const LoadedModel& base, Candidate& candidate,
                                                        TrainingData& data, const FinetuneOptions& options,
                                                        std::vector<std::string>& problems, const FinetuneCallback& progress,
                                                        const std::atomic<bool>* cancel);

}  // namespace hilum::app::detail
