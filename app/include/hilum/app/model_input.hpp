// Hilum app: the model-ready input of a film, made once from the pixels already decoded and kept
// beside the catalog, so that classifying a stored film again does not decode it again.
//
// What is kept is the film's display image (the DICOM display pipeline with the default VOI,
// values in [0, 1]) resized to the model's input size with inference::resize_antialiased: the
// part of inference::preprocess that needs the decoded pixels. The rest (grey to channels,
// mean/std) is cheap and model-specific, so inference::normalise(cached) == preprocess(display).
//
// Files: <catalog folder>/store/model-inputs/<key>/<content SHA-256>.f32, where the key names the
// preprocessing parameters (the input size and a version of the display/resize code), so a model
// with another input size, or a later Hilum with another display pipeline, never reads a stale
// input. Each file is written atomically and carries its key, the share of the film's pixels in
// colour (the domain check's colour rule needs it, and it cannot be seen in the grey input) and a
// SHA-256 of both; a missing, truncated or damaged file reads as "not cached" and the caller
// decodes the film. Files of the first format (no share in colour) are still read, share unknown.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "hilum/app/catalog.hpp"
#include "hilum/inference/vit.hpp"

namespace hilum::app {

struct InputSize {
  int width = 0;
  int height = 0;
  // A model with a centre crop (inference::ViTConfig::resize_width/height): the size the image is
  // resized to before its centre width x height is kept; 0 = no crop.
  int resize_width = 0;
  int resize_height = 0;
  [[nodiscard]] bool empty() const { return width <= 0 || height <= 0; }
  [[nodiscard]] bool cropped() const {
    return (resize_width > 0 && resize_width != width) || (resize_height > 0 && resize_height != height);
  }
};

// The input a model takes (its size and centre crop).
[[nodiscard]] InputSize input_size_of(const inference::ViTConfig& config);

// The preprocessing parameters as a folder name, e.g. "v1-display-default-voi-aa-160x160", or
// "v1-display-default-voi-aa-160x160-of-186x186" with a centre crop.
[[nodiscard]] std::string model_input_key(InputSize size);

// Where the cached inputs of the catalog whose Catalog::local_path() is `catalog_path` live (empty for an
// in-memory catalog).
[[nodiscard]] std::filesystem::path model_input_cache_dir(const std::filesystem::path& catalog_path);

// Display values (width x height) to the cached form: the model's view (inference::model_view):
// its centre crop, if any, resized to `size`.
[[nodiscard]] std::vector<float> model_input_of(const float* display, int width, int height, InputSize size);

// Writes the input of the film whose file has SHA-256 `content_hash` (hex), atomically, with the
// share of its pixels in colour (DisplayImage::coloured_share; 0 for a greyscale film). Errors:
// Invalid (no cache folder or size, not a SHA-256, an input of another size, a share outside
// [0, 1]), Io (the folder or the file cannot be written).
[[nodiscard]] Status write_cached_input(const std::filesystem::path& cache_dir, const std::string& content_hash, InputSize size,
                                        const std::vector<float>& input, double coloured_share);

struct CachedInput {
  std::vector<float> values;             // width x height, [0, 1]
  std::optional<double> coloured_share;  // none in a file of the first format
};

// The cached input, or nullopt when there is none or it is damaged (wrong size, key or checksum,
// values outside [0, 1] beyond rounding, a share outside [0, 1]).
[[nodiscard]] std::optional<CachedInput> read_cached_input(const std::filesystem::path& cache_dir, const std::string& content_hash,
                                                           InputSize size);

// The path a film's cached input has (for tests and tools).
[[nodiscard]] std::filesystem::path cached_input_path(const std::filesystem::path& cache_dir, const std::string& content_hash, InputSize size);

}  // namespace hilum::app
