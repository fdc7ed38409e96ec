// Hilum app: training a ViT from scratch (or continuing from a checkpoint) on a folder of
// labelled radiographs -- how the built-in model in resources/models/ is made.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "hilum/app/classify.hpp"
#include "hilum/app/finetune.hpp"
#include "hilum/inference/model_extras.hpp"
#include "hilum/inference/vit.hpp"

namespace hilum::app {

// A folder of images (JPEG, PNG or DICOM) in one sub-folder per class: a folder named NORMAL,
// "No Finding" or NEGATIVE holds images without any finding; any other folder name is a finding
// (PNEUMONIA -> "Pneumonia") and its images are positive for it and negative for the others.
// The patient of an image comes from its file name: the part before the first '_'
// ("person1000_bacteria_2931" -> "person1000"), else everything before the last '-'
// ("IM-0115-0001" -> "IM-0115", "NORMAL2-IM-1427-0001" -> "NORMAL2-IM-1427").
//
// A folder with a `labels.csv` is read instead as one image per row: `image` (a file name in the
// folder), optional `patient_id` (else from the file name), `age` (years), `sex` and `view`, and
// one column per finding with 1 (present), 0 (absent) or an empty cell (not assessed) -- the
// layout of ChestX-ray14's table, e.g. ../shared/data/cxr-nih-adult-512.
struct FolderDataset {
  std::vector<std::string> findings;
  std::vector<std::filesystem::path> files;
  std::vector<std::string> patients;
  std::vector<std::vector<float>> targets;  // per file, per finding
  std::vector<std::vector<float>> masks;    // per file, per finding: 1 assessed, 0 not assessed
  std::vector<double> ages;                 // per file, years; NaN when unknown
  bool class_folders = true;                // one sub-folder per class (false: labels.csv)
};
[[nodiscard]] Result<FolderDataset> scan_image_folder(const std::filesystem::path& dir);

// One data source of a training run.
struct DataSource {
  std::filesystem::path dir;
  int repeat = 1;              // how often each of its training images is seen per epoch (a small population's weight)
  std::string population;      // "pediatric", "adult", ...; empty: from the ages (under 18: pediatric), else the folder's name
  double min_age_years = 0.0;  // the population's ages when its files carry none (0 = unknown)
  double max_age_years = 0.0;
  [[nodiscard]] static DataSource folder(std::filesystem::path dir) {
    DataSource s;
    s.dir = std::move(dir);
    return s;
  }
};

// Several sources as one data set with the model's `outputs` (empty: every source's findings, in
// order, plus "No Finding" when a labels.csv has it). What a source does not say is "not
// assessed": a class folder's negative images are absent for every output and "No Finding"
// present; its positive images are present for their finding, absent for "No Finding" and the
// other class folders' findings, and not assessed for findings only other sources have.
struct MergedDataset {
  FolderDataset data;                 // findings = the outputs
  std::vector<int> source;            // per file: index into the sources
  std::vector<std::string> population;  // per file
};
[[nodiscard]] Result<MergedDataset> merge_sources(const std::vector<DataSource>& sources, const std::vector<std::string>& outputs);
[[nodiscard]] std::string patient_from_file_name(const std::string& stem);

// Reads an image file as grey values in [0, 1]: PNG (read_png_gray: colour as the grey of its
// colours), JPEG (libjpeg; colour as its luminance Y), or DICOM through the display pipeline; with
// the share of its pixels visibly in colour (DisplayImage::coloured_share).
[[nodiscard]] Result<DisplayImage> read_grey_image(const std::filesystem::path& file);

// Which patients `train` holds out for validation: those whose keyed hash of the seed and the
// patient (stable across runs and machines) falls in the fold-th slice of `fraction` of [0, 1).
// Fold 0 is the slice every model before folds held out. Folds 0, 1, ... are disjoint: training once
// per fold scores every patient of those folds by a model that never saw their labels
// (cross-validation; bench/model/cross_validate.sh).
struct PatientSplit {
  std::uint64_t seed = 1;
  double fraction = 0.15;
  int fold = 0;
  [[nodiscard]] bool holds_out(const std::string& patient) const;
  // How many disjoint folds of `fraction` fit in [0, 1): fold is valid when below it.
  [[nodiscard]] int folds() const;
};

// The files of a training folder (scan_image_folder) whose patients `train` holds out at `split`,
// by the same keyed split; empty for a folder that is not a training folder (no class sub-folders,
// no labels.csv). Pre-training leaves them out so that the validation patients' pixels are never
// seen before they judge the model.
[[nodiscard]] Result<std::set<std::string>> held_out_files(const std::filesystem::path& dir, const PatientSplit& split);

struct TrainOptions {
  std::vector<DataSource> data;   // the image folders (at least one)
  std::vector<std::string> outputs;  // the model's findings; empty = every source's (merge_sources)
  // Image folders (no labels are read) whose films the domain reference describes too: more
  // chest films of other scanners and sites than the labelled ones, so that a film of a new site
  // is not called foreign for its look alone. 15% of them (by a hash of the file name) only set
  // the limits, as the validation patients do.
  std::vector<std::filesystem::path> reference_data;
  std::filesystem::path out;      // the Hugging Face folder written at the end
  std::string arch = "vit-ti16";   // training::architecture
  int image_size = 224;
  // Continue from this Hugging Face folder instead of random weights. A backbone without classifier
  // (pretrain's output) or a model for other findings gives its encoder; the classifier is then
  // initialised afresh for the folder's findings.
  std::filesystem::path init;
  int epochs = 30;
  int batch_size = 32;
  float learning_rate = 5e-4f;
  float weight_decay = 0.05f;
  float drop_path = 0.1f;
  // Layer-wise learning-rate decay (training::AdamWOptions::layer_decay): block d of L trains at
  // lr * layer_decay^(L + 1 - d), the classifier at lr. Below 1 it keeps a pre-trained encoder's
  // early layers close to where pre-training left them. 1 = off.
  float layer_decay = 1.0f;
  // The share of each side of a film the model sees: a centre crop (Hugging Face's resize then
  // crop_size), so that inference shows the model films at the scale training's random crops
  // (area 0.5-1, 0.86 of a side on average) showed them. 0 = the --init model's (none for a new
  // model); 1 = the whole film. Training still augments the whole film.
  double center_crop = 0.0;
  int warmup_epochs = 3;
  double validation_fraction = 0.15;  // of the patients
  int validation_fold = 0;            // which slice of them (PatientSplit::fold)
  std::uint64_t seed = 1;             // of the split and of the training
  int max_images = 0;             // 0 = all (small runs for tests)
  // A population (of two or more) gets a calibration of its own when it has at least this many
  // validation images; with fewer it keeps the model's.
  int min_population_calibration_images = 30;
  inference::DType dtype = inference::DType::F16;  // of the written weights
  // Arithmetic of the training step's matrix products: BF16 mixed precision (F32 weights, bfloat16
  // operands accumulated in F32; training::TrainOptions::precision) when the CPU has AVX512_BF16.
  inference::Precision precision = inference::Precision::BF16;

  [[nodiscard]] PatientSplit split() const { return {seed, validation_fraction, validation_fold}; }
};

struct PopulationReport {
  std::string population;
  EvaluationReport validation;    // calibrated probabilities
  std::vector<double> ece_uncalibrated;  // per finding of `validation`
  std::vector<double> ece_cross_fitted;  // calibration fitted on the other half of the validation patients
  std::vector<double> ece_by_chance;     // the ECE a perfectly calibrated model shows on these films by chance
                                         // (95th percentile, training::ece_by_chance): the size's noise floor
};

struct TrainReport {
  EvaluationReport validation;    // per finding: AUROC (CI), ECE, Youden threshold, sensitivity, specificity (calibrated)
  std::vector<PopulationReport> populations;
  std::vector<double> accuracy;   // per finding, at its threshold
  std::vector<EpochRecord> history;
  int train_images = 0, validation_images = 0, train_patients = 0, validation_patients = 0;
  double seconds = 0.0;
  std::string report_json;        // also written to OUT/training_report.json
};

// Trains, checkpointing every epoch beside `out` (OUT.checkpoints/, resumed when present),
// then fits the calibration (Platt scaling on the validation patients) and the domain reference
// (the training films' embeddings) and writes `out` (config.json, model.safetensors in `dtype`,
// hilum.json, training_report.json).
[[nodiscard]] Result<TrainReport> train_from_folder(const TrainOptions& options, const FinetuneCallback& progress = {},
                                                    const std::atomic<bool>* cancel = nullptr);

// A trained model on the validation patients train_from_folder held out of `data` at this split
// (TrainOptions::split(), recomputed): per-finding AUROC (CI), ECE, thresholds.
// The model's probabilities are calibrated by `extras` when given (LoadedModel::extras: each image
// by its population's calibration, chosen from its age or embedding as for a reader).
// Findings of the folder the model lacks are left out; outputs the folder does not assess too.
[[nodiscard]] Result<EvaluationReport> evaluate_folder(const inference::ViTModel& model, const std::filesystem::path& data,
                                                       const PatientSplit& split,
                                                       const std::atomic<bool>* cancel = nullptr,
                                                       const inference::ModelExtras* extras = nullptr);

}  // namespace hilum::app
