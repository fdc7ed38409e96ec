// Hilum app: running a ViT on catalogued radiographs, storing predictions per model version,
// and attention heatmaps. The image the model sees is the one the radiologist sees: the DICOM
// display pipeline's output (default VOI), then inference::preprocess.
#pragma once

#include <atomic>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "hilum/app/catalog.hpp"
#include "hilum/app/domain.hpp"
#include "hilum/app/model_input.hpp"
#include "hilum/dicom/radiograph.hpp"
#include "hilum/inference/model_extras.hpp"
#include "hilum/inference/overlay.hpp"
#include "hilum/inference/vit.hpp"

namespace hilum::app {

struct LoadedModel {
  ModelRecord record;  // id 0 when the model was loaded from a folder that is not registered
  inference::ViTModel model;
  inference::ModelExtras extras;  // calibration and domain reference (hilum.json), when the folder has them
};

// The probabilities a user sees for a forward pass's logits: calibrated (Platt scaling stored with
// the model, each image by its own population's when the model has one: by the patient's age in
// `ages` (per row; may be shorter) or else the image's embedding) for multi-label models, the
// plain sigmoid / softmax otherwise.
[[nodiscard]] inference::Matrix shown_probabilities(const LoadedModel& model, const inference::ForwardOutput& result,
                                                    const std::vector<std::optional<double>>& ages = {});

// The same, with each row's population choice (PopulationChoice, domain_check.hpp) (made once per image: what the probabilities carry
// is what is named).
struct ShownProbabilities {
  inference::Matrix probabilities;
  std::vector<PopulationChoice> populations;  // one per row
};
[[nodiscard]] ShownProbabilities shown_with_populations(const LoadedModel& model, const inference::ForwardOutput& result,
                                                        const std::vector<std::optional<double>>& ages = {});

// The display image of a file as the viewer shows it by default and the model sees it: the DICOM
// display pipeline with the default VOI, values in [0, 1] (1 = white), row-major.
struct DisplayImage {
  int width = 0;
  int height = 0;
  std::vector<float> grey;
  // The share of the source's pixels visibly in colour (dicom::Radiograph::coloured_share; 0 for
  // a greyscale source): a colour picture is outside every model's domain (check_domain).
  double coloured_share = 0.0;
};
// min_side > 0: a JPEG 2000 or JPEG film may be decoded at a reduced level whose sides stay >= 2 x
// min_side (dicom::ReadOptions::min_side); the image is then smaller than the film.
[[nodiscard]] Result<DisplayImage> display_image(const std::filesystem::path& file, int min_side = 0);
[[nodiscard]] Result<DisplayImage> display_image(const dicom::Radiograph& image);

// `spec` is a registered version or id, or a Hugging Face folder; empty means the active model.
[[nodiscard]] Result<LoadedModel> load_model(Catalog& catalog, const std::string& spec);

// Checks that `dir` loads as a ViT and registers it (its labels join the vocabulary).
[[nodiscard]] Result<ModelRecord> import_model(Catalog& catalog, const std::filesystem::path& dir, const std::string& version,
                                               bool activate);

// The built-in model shipped in resources/models/ (installed as share/hilum/models/): the folder
// named by $HILUM_BUILTIN_MODEL ("none" turns it off), else share/hilum/models/<name> beside the
// executable's bin/, else the source tree's resources/models/<name>. Empty when none exists.
[[nodiscard]] std::filesystem::path builtin_model_dir();

// First run: a catalog without any model registers the built-in model as its active model
// (strategy "builtin", its training recipe as hyperparameters and its validation as metrics).
// After an upgrade, a catalog that has an older built-in model (another version) gets this one as
// a candidate; its active model is left as it is. Returns the new record, or nullopt when there
// is nothing to register (this built-in model is there already, the catalog has models but no
// built-in one, or there is no built-in model).
[[nodiscard]] Result<std::optional<ModelRecord>> register_builtin_model(Catalog& catalog);

struct ImagePrediction {
  std::string sop_instance_uid;
  std::string path;
  std::vector<std::pair<std::string, double>> probabilities;  // in the model's label order
  DomainCheck domain;         // whether the image is within what the model was trained on, and whose
                              // calibration `probabilities` carry (domain.population)
  double milliseconds = 0.0;  // decode + preprocess + forward, per image
  std::string error;          // why this image has no prediction
  bool from_cache = false;    // its model input came from the catalog's cache (model_input.hpp): not decoded
};

struct RadiographPrediction {
  std::vector<std::pair<std::string, double>> probabilities;  // in the model's label order
  DomainCheck domain;  // with domain.population, whose calibration `probabilities` carry
};

// One radiograph already decoded (the viewer's): what classify() computes from its file, without
// reading it again and without touching the catalog.
[[nodiscard]] Result<RadiographPrediction> classify_radiograph(const LoadedModel& model, const dicom::Radiograph& image);

// What the model needs of one image before its forward pass: the display image at the model's
// input size (model_input.hpp) and the DICOM header (pixels released) for the domain check.
struct PreparedInput {
  std::optional<std::vector<float>> input;  // none: see error
  std::optional<dicom::Radiograph> header;  // none for a loose picture
  double coloured_share = 0.0;              // the picture's or the DICOM image's (DisplayImage)
  std::string error;                        // why there is no input
  bool from_cache = false;                  // read from the cache, not decoded
  std::string cache_error;                  // decoded, but the cache could not be written (not fatal)
};

// Reads the cached input of a catalogued film (id > 0, content hash known) from `cache_dir`, else
// decodes the file (and writes the cache when `cache_dir` is not empty). Thread-safe.
[[nodiscard]] PreparedInput prepare_input(const Instance& instance, InputSize size, const std::filesystem::path& cache_dir);

using ClassifyProgress = std::function<void(std::size_t done, std::size_t total)>;

// Classifies the images (batches of `batch_size`) and stores every prediction in the catalog
// when the model is registered. An image that cannot be read gets its error; the rest go on.
// Pipelined: worker threads (one per core) prepare the inputs in order, at most two batches
// ahead (prepare_input: the cached model input, else a decode), while the calling thread runs the
// model and writes the catalog. `progress` after every batch; `cancel` is polled, also while
// waiting for a decode (Interrupted; the batches done so far stay stored). The model runs on every
// core, beside the decoding workers (the engine's threads take what the decoders leave);
// forward_threads > 0 sets it (the import passes 1: its own workers are decoding).
[[nodiscard]] Result<std::vector<ImagePrediction>> classify(Catalog& catalog, const LoadedModel& model,
                                                            const std::vector<Instance>& images, int batch_size = 8,
                                                            const ClassifyProgress& progress = {},
                                                            const std::atomic<bool>* cancel = nullptr, int forward_threads = 0);

enum class HeatmapMethod {
  Rollout,        // attention rollout (Abnar & Zuidema 2020): where the model looked, one map for every finding
  ClassSpecific,  // gradient-weighted rollout (Chefer et al. 2021) of one finding's logit: what raised that output
};

struct HeatmapOptions {
  HeatmapMethod method = HeatmapMethod::Rollout;
  std::string finding;           // ClassSpecific: one of the model's outputs (case-insensitive); empty = the most probable
  float opacity = 0.5f;          // of the colour overlay
  float discard_ratio = 0.9f;    // Rollout: the lowest fraction of fused attentions dropped per layer
  int max_side = 0;              // > 0: the overlay shrunk to fit this many pixels (and the film decoded only as far as
                                 // the model and this size need); 0: the overlay at full size (a full decode)
};

struct Heatmap {
  inference::Matrix grid;       // patch-grid map in [0, 1]
  inference::RgbImage overlay;  // at the radiograph's full size (or shrunk to max_side)
  std::vector<std::pair<std::string, double>> probabilities;
  std::string finding;          // ClassSpecific: the output the map explains
  // The part of the radiograph the model saw (its centre crop; all of it without one), as shares
  // of the image's width and height: the grid covers this rectangle only.
  inference::Window seen{0.0, 0.0, 1.0, 1.0};
};

// An attention map of one file drawn over its display rendering (the image the model sees).
// ClassSpecific needs a model with outputs; an unknown finding is an error that lists the outputs.
[[nodiscard]] Result<Heatmap> heatmap(const LoadedModel& model, const std::filesystem::path& file, const HeatmapOptions& options = {});

}  // namespace hilum::app
