// Hilum app: training on a cluster and back. The catalog's labels go out as a training set that
// PyTorch's distributed engine reads (cluster/train.py, under torchrun); the Hugging Face folder it
// writes comes back through the same validation and gate as a local fine-tune.
//
// The training set (export_dataset), written to a temporary folder beside out_dir and renamed
// into place when complete (out_dir must not exist, or be an empty folder):
//   manifest.json   what the export is: format "hilum-training-set" 1, the catalog's identity, the
//                   SHA-256 of the label snapshot and of the split (of every labelled image, those
//                   left out included), the outputs, the split counts, the starting model, the
//                   images left out and why, and every other file with its size and SHA-256
//   labels.csv      image,patient,split,<one column per output>: 1 present, 0 absent, empty = not
//                   assessed (no label, or uncertain); split is train or validation (the fine-tune
//                   gate's split: 20% of patients by HMAC of the catalog secret, stable across
//                   exports). Rows sorted by image. Image and patient are the catalog's pseudonyms.
//   images/<image>.png  the display image (what the viewer shows and the model sees: default
//                   VOI, 1 = white) as a 16-bit grey PNG, value = round(grey * 65535)
//   images/<image>.dcm  with dicom: a de-identified DICOM copy as well (PS3.15 Basic Profile)
//   model/          the starting model (the active one) as a Hugging Face folder
// The labels are those fine-tuning trains on (finetune_detail.hpp: training_labels). Images whose
// pixels may carry burned-in identity are left out (report.skipped).
//
// Coming back (import_cluster_model): a folder written by cluster/train.py holds config.json,
// model.safetensors, preprocessor_config.json, training_report.json, and the export's manifest.json
// and labels.csv. It is refused, with the reason and nothing registered, when a file is missing
// or differs from its checksum, when the manifest names another catalog, or when the report trained
// on an image of a patient who is in the gate's validation split now. Labels or a split that
// changed since the export are reported (changes), not refused: the gate evaluates on the
// catalog's labels as they are now. The model then goes through fine-tuning's end: evaluation on
// the gate's validation patients by our engine, calibration, the gate, registration (strategy
// "cluster", hyperparameters.trained_on "cluster (manifest sha256:...)").
#pragma once

#include <atomic>
#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "hilum/app/catalog.hpp"
#include "hilum/app/export.hpp"
#include "hilum/app/finetune.hpp"

namespace hilum::app {

struct DatasetExportOptions {
  std::filesystem::path out_dir;
  bool dicom = false;        // de-identified DICOM copies beside the PNGs
  std::string base_model;    // version or id; empty = the active model
};

struct DatasetExportReport {
  std::filesystem::path out_dir;
  std::string catalog_id;
  std::string manifest_sha256;
  std::string snapshot_sha256;
  std::string split_sha256;
  std::string base_model;
  std::vector<std::string> outputs;
  SplitCounts train, validation;
  std::size_t dicoms = 0;
  std::vector<std::string> files;     // relative to out_dir, manifest.json last
  std::vector<ExportIssue> skipped;   // left out: burned-in annotation, unreadable
};

[[nodiscard]] Result<DatasetExportReport> export_dataset(Catalog& catalog, const DatasetExportOptions& options,
                                                         const ExportProgressFn& progress = {},
                                                         const std::atomic<bool>* cancel = nullptr);

// The catalog's identity as exports name it: HMAC of its secret (16 hex digits), the same for
// every export of one catalog, different for another catalog.
[[nodiscard]] Result<std::string> catalog_identity(Catalog& catalog);

// A folder written by cluster/train.py (it has training_report.json).
[[nodiscard]] bool is_cluster_model_folder(const std::filesystem::path& dir);

struct ClusterImportOptions {
  double gate_tolerance = 0.005;
  bool allow_promotion = true;
  std::string author = "hilum";
};

struct ClusterImportResult {
  FinetuneResult result;              // the registered version, its metrics and the gate's decision
  std::string manifest_sha256;
  std::vector<std::string> changes;   // what changed in the catalog since the export (empty: nothing)
  int compared_images = 0;            // validation images whose PyTorch probabilities the report gives
  double max_probability_difference = 0.0;  // our engine (F32) vs PyTorch on them
};

[[nodiscard]] Result<ClusterImportResult> import_cluster_model(Catalog& catalog, const std::filesystem::path& dir,
                                                               const ClusterImportOptions& options = {},
                                                               const FinetuneCallback& progress = {},
                                                               const std::atomic<bool>* cancel = nullptr);

// Where a version was trained, for the model manager: "cluster (manifest sha256:0123abcd...)",
// "this workstation", "imported", "built in".
[[nodiscard]] std::string trained_on(const ModelRecord& model);

}  // namespace hilum::app
