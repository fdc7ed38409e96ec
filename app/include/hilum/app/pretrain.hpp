// Hilum app: self-supervised masked-autoencoder pre-training (training/mae.hpp) of a ViT encoder on
// unlabelled films -- image folders, or the catalog's own films, so that a site can adapt the
// encoder to its scanners -- giving a backbone that `train --init` and fine-tuning start from.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "hilum/app/catalog.hpp"
#include "hilum/app/finetune.hpp"
#include "hilum/inference/vit.hpp"
#include "hilum/training/mae.hpp"

namespace hilum::app {

struct PretrainOptions {
  std::vector<std::filesystem::path> data;  // image folders, searched recursively (JPEG, PNG, DICOM)
  std::filesystem::path out;                // the backbone folder written at the end
  std::string arch = "vit-ti16";             // training::architecture
  int image_size = 160;
  std::filesystem::path init;               // continue from this Hugging Face folder (its encoder;
                                            // its mae_decoder.safetensors too when present)
  int epochs = 10;
  int batch_size = 32;
  float learning_rate = 1.5e-4f;            // peak, after a linear warm-up; cosine to 0
  float weight_decay = 0.05f;
  int warmup_epochs = 1;
  training::MaeConfig mae;                  // mask ratio 0.9, decoder 128 wide, 2 blocks, 4 heads
  std::uint64_t seed = 1;
  // Leave out of a training folder (class sub-folders or labels.csv) the patients that
  // `train --seed hold_out_seed` holds out for validation (held_out_files), so that pre-training
  // never sees the films that later judge the model. Folders of unlabelled films are used whole.
  std::optional<std::uint64_t> hold_out_seed;
  double validation_fraction = 0.15;
  int max_images = 0;                       // 0 = all (small runs for tests)
  // Arithmetic of the step's matrix products (training::TrainOptions::precision).
  inference::Precision precision = inference::Precision::BF16;
};

struct PretrainReport {
  std::vector<double> loss;               // mean masked-patch loss per epoch (the whole run's, resumed epochs included)
  int images = 0;                         // images trained on
  int held_out = 0;                       // films left out as validation patients (hold_out_seed)
  std::vector<std::string> skipped;       // files that could not be read, with the reason
  std::vector<std::string> refused_checkpoints;  // damaged checkpoints passed over, with the reason
  int resumed_after_epoch = 0;            // 0 = a fresh start
  double seconds = 0.0;
  std::string report_json;                // also written to OUT/pretrain_report.json
};

// Pre-trains with random-resized crops (area 0.5-1.0) and a fresh random mask per image and step.
// Checkpoints every epoch into OUT.checkpoints/ (epoch-N/: encoder, decoder, both optimizers and
// a checksummed checkpoint.json; state.json names the newest; the one before is kept) and resumes
// from there when run again with the same settings; a damaged or truncated checkpoint is refused
// with its reason and the newest good one used (none good: an error, nothing deleted). Writes OUT/
// atomically: config.json + model.safetensors (a ViTModel backbone, F32, no classifier),
// mae_decoder.safetensors (the decoder, to continue pre-training) and pretrain_report.json.
// Progress: Phase::Preparing, then Phase::Training with epoch, step and the epoch's running loss, and
// Phase::EpochDone at the end of each epoch.
[[nodiscard]] Result<PretrainReport> pretrain_from_folders(const PretrainOptions& options, const FinetuneCallback& progress = {},
                                                           const std::atomic<bool>* cancel = nullptr);

// The same over every film in the catalog (no labels needed); options.data is ignored.
[[nodiscard]] Result<PretrainReport> pretrain_from_catalog(Catalog& catalog, const PretrainOptions& options,
                                                           const FinetuneCallback& progress = {}, const std::atomic<bool>* cancel = nullptr);

// ---- Backbones pre-trained on a catalog's films (the GUI's model manager) ----------------------
// They live in the catalog's models folder, beside its model versions: <models>/<name>/ once
// finished, <models>/<name>.checkpoints/ while running or after a cancel (running it again with the
// same name resumes). A backbone has no classifier and is not a model version: `train --init` starts
// a classifier from it, `pretrain --init` (or PretrainOptions::init) pre-trains it further.
struct CatalogBackbone {
  std::string name;
  std::filesystem::path dir;       // where the finished backbone is (or will be) written
  bool finished = false;           // dir holds it; false: only its checkpoints (resumable)
  int epochs = 0;                  // epochs done (finished: of the whole run)
  std::vector<double> loss;        // mean masked-patch loss per epoch done
  int images = 0;                  // finished: the images it was trained on (0: unknown)
  int image_size = 0;              // input side in pixels (0: unknown)
  std::string architecture;        // e.g. "vit-ti16" or "continued from ..." (finished only)
};

// The catalog's backbones, finished ones and unfinished runs, sorted by name.
[[nodiscard]] Result<std::vector<CatalogBackbone>> catalog_backbones(Catalog& catalog);

// The folder a pre-training of the catalog named `name` writes: <models>/<name>. Refused (with the
// reason) when `name` is not a plain folder name (letters, digits, '.', '-', '_'; 1-64 characters,
// not starting with '.') or when that folder exists already (a finished backbone, a model version,
// anything else); a name with checkpoints only is accepted: running it again resumes.
[[nodiscard]] Result<std::filesystem::path> catalog_backbone_dir(Catalog& catalog, const std::string& name);

// A name for a new pre-training: `base` when nothing of that name is in the models folder (neither
// the folder nor its checkpoints), else base-2, base-3, ...
[[nodiscard]] Result<std::string> free_backbone_name(Catalog& catalog, const std::string& base);

}  // namespace hilum::app
