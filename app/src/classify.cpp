#include "hilum/app/classify.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <system_error>

#include "hilum/app/domain.hpp"
#include "hilum/app/json.hpp"
#include "hilum/app/model_input.hpp"
#include "hilum/app/png.hpp"
#include "hilum/app/train.hpp"
#include "hilum/app/viewer.hpp"
#include "hilum/dicom/display.hpp"
#include "hilum/dicom/reader.hpp"
#include "hilum/training/explain.hpp"
#include "text.hpp"

namespace fs = std::filesystem;

namespace hilum::app {
namespace {

Error from_inference(const inference::Error& e) {
  return Error{e.kind == inference::ErrorKind::NotFound ? ErrorKind::NotFound : ErrorKind::Invalid, e.message};
}

}  // namespace

Result<DisplayImage> display_image(const fs::path& file, int min_side) {
  dicom::ReadOptions options;
  options.decoder_threads = 1;
  options.min_side = min_side;
  auto image = dicom::read_radiograph(file, options);
  if (!image) return Error{ErrorKind::Invalid, image.error().message};
  return display_image(image.value());
}

Result<DisplayImage> display_image(const dicom::Radiograph& image) {
  auto values = dicom::render_float(image);
  if (!values) return Error{ErrorKind::Invalid, values.error().message};
  return DisplayImage{image.columns, image.rows, std::move(values.value()), image.coloured_share};
}

Result<LoadedModel> load_model(Catalog& catalog, const std::string& spec) {
  ModelRecord record;
  std::error_code ec;
  if (!spec.empty() && fs::is_directory(spec, ec)) {
    record.version = fs::path(spec).filename().string();
    record.path = fs::absolute(spec, ec).string();
  } else {
    auto found = spec.empty() ? catalog.active_model() : catalog.find_model(spec);
    if (!found) return found.error();
    if (!found->has_value()) {
      return Error{ErrorKind::NotFound, spec.empty() ? "no active model: register one with `hilum-cli models import DIR --activate`"
                                                     : "no model " + spec + " in the catalog (and no such folder)"};
    }
    record = **found;
  }
  auto model = inference::ViTModel::load(record.path);
  if (!model) return from_inference(model.error());
  if (!model->weights().has_classifier) return Error{ErrorKind::Invalid, record.path + " is a backbone without a classifier"};
  auto extras = inference::read_model_extras(record.path, model->config());
  if (!extras) return from_inference(extras.error());
  return LoadedModel{std::move(record), std::move(model.value()), std::move(extras.value())};
}

ShownProbabilities shown_with_populations(const LoadedModel& model, const inference::ForwardOutput& result,
                                          const std::vector<std::optional<double>>& ages) {
  ShownProbabilities out;
  const Eigen::Index n = result.logits.rows();
  out.populations.resize(static_cast<std::size_t>(std::max<Eigen::Index>(n, 0)));
  if (!model.model.config().multi_label()) {
    out.probabilities = result.probabilities;
    return out;
  }
  std::vector<inference::PopulationPick> chosen;
  out.probabilities = inference::calibrated_probabilities(model.extras, result.logits, result.embeddings, ages, &chosen);
  if (!model.extras.domain) return out;
  const auto& pops = model.extras.domain->populations;
  for (std::size_t i = 0; i < chosen.size() && i < out.populations.size(); ++i) {
    if (chosen[i].index < 0) continue;
    out.populations[i].population = pops[static_cast<std::size_t>(chosen[i].index)].name;
    switch (chosen[i].by) {  // what the engine says decided it, in the catalog's words
      case inference::PopulationPick::By::Age: out.populations[i].chosen_by = "age"; break;
      case inference::PopulationPick::By::Embedding: out.populations[i].chosen_by = "image"; break;
      case inference::PopulationPick::By::OnlyOne: out.populations[i].chosen_by = "only population"; break;
      case inference::PopulationPick::By::None: break;
    }
  }
  return out;
}

inference::Matrix shown_probabilities(const LoadedModel& model, const inference::ForwardOutput& result,
                                      const std::vector<std::optional<double>>& ages) {
  return shown_with_populations(model, result, ages).probabilities;
}

namespace {

// Checks that `dir` loads as a ViT with outputs and registers `record` for it (path and, unless
// given, the architecture as hyperparameters filled in).
Result<ModelRecord> register_folder(Catalog& catalog, const fs::path& dir, ModelRecord record) {
  auto model = inference::ViTModel::load(dir);
  if (!model) return from_inference(model.error());
  if (!model->weights().has_classifier) return Error{ErrorKind::Invalid, dir.string() + " is a backbone without a classifier"};
  if (auto extras = inference::read_model_extras(dir, model->config()); !extras) return from_inference(extras.error());
  std::error_code ec;
  record.name = record.version;
  record.path = fs::canonical(dir, ec).string();
  const auto& c = model->config();
  if (record.hyperparameters == "{}") {
    JsonObject hp;
    hp.add("hidden_size", c.hidden_size).add("layers", c.num_layers).add("heads", c.num_heads).add("image_size", c.image_size).add("patch_size", c.patch_size);
    if (c.centre_crop()) hp.add("resize", std::to_string(c.resize_width) + "x" + std::to_string(c.resize_height));
    record.hyperparameters = hp.str();
  }
  return catalog.register_model(record, c.labels);
}

}  // namespace

Result<ModelRecord> import_model(Catalog& catalog, const fs::path& dir, const std::string& version, bool activate) {
  ModelRecord record;
  record.version = version.empty() ? dir.filename().string() : version;
  record.strategy = "imported";
  record.status = activate ? ModelStatus::Active : ModelStatus::Candidate;
  record.status_reason = activate ? "imported and activated" : "imported";
  return register_folder(catalog, dir, std::move(record));
}

fs::path builtin_model_dir() {
  if (const char* env = std::getenv("HILUM_BUILTIN_MODEL"); env != nullptr && *env != '\0') {
    if (std::string(env) == "none") return {};
    return env;
  }
  std::error_code ec;
  std::vector<fs::path> candidates;
  std::array<char, 4096> exe{};
  const ssize_t n = ::readlink("/proc/self/exe", exe.data(), exe.size() - 1);
  if (n > 0) candidates.push_back(fs::path(std::string(exe.data(), static_cast<std::size_t>(n))).parent_path().parent_path() / "share" / "hilum" / "models" / HILUM_BUILTIN_MODEL_NAME);
  candidates.push_back(fs::path(HILUM_SOURCE_RESOURCES) / "models" / HILUM_BUILTIN_MODEL_NAME);
  for (const auto& dir : candidates) {
    if (fs::is_regular_file(dir / "config.json", ec) && fs::is_regular_file(dir / "model.safetensors", ec)) return dir;
  }
  return {};
}

Result<std::optional<ModelRecord>> register_builtin_model(Catalog& catalog) {
  auto models = catalog.models();
  if (!models) return models.error();
  const fs::path dir = builtin_model_dir();
  if (dir.empty()) return std::optional<ModelRecord>{};
  // After an upgrade, a catalog whose built-in model is an older one gets this version's as a
  // candidate: the active model is the site's choice and stays until someone activates another.
  bool older_builtin = false;
  for (const auto& m : *models) {
    if (m.strategy != "builtin") continue;
    if (m.version == dir.filename().string()) return std::optional<ModelRecord>{};
    older_builtin = true;
  }
  if (!models->empty() && !older_builtin) return std::optional<ModelRecord>{};
  ModelRecord record;
  record.version = dir.filename().string();
  record.strategy = "builtin";
  record.status = models->empty() ? ModelStatus::Active : ModelStatus::Candidate;
  record.status_reason = models->empty() ? "built-in model, registered on first run"
                                         : "built-in model of this version of Hilum, registered beside the older one; activate it to use it";
  // The recipe and the validation of its training run (training_report.json), when shipped.
  std::ifstream in(dir / "training_report.json");
  const auto report = nlohmann::json::parse(in, nullptr, false);
  if (report.is_object()) {
    nlohmann::json hp = report;
    hp.erase("validation");
    hp.erase("history");
    hp.erase("data");
    record.hyperparameters = dump_json(hp);
    if (report.contains("validation")) record.metrics = dump_json(report["validation"]);
  }
  auto registered = register_folder(catalog, dir, std::move(record));
  if (!registered) {
    Error e = registered.error();
    e.message = "the built-in model " + dir.string() + ": " + e.message;
    return e;
  }
  return std::optional<ModelRecord>(std::move(registered.value()));
}

namespace {

// Row `row` of the shown probabilities, named by the model's labels; an error when one of them is
// not a finite number (a damaged model), which must never be reported as an answer.
Result<std::vector<std::pair<std::string, double>>> named_probabilities(const LoadedModel& model, const inference::Matrix& probabilities,
                                                                        Eigen::Index row) {
  const auto& labels = model.model.config().labels;
  std::vector<std::pair<std::string, double>> out;
  for (std::size_t k = 0; k < labels.size(); ++k) {
    const double p = probabilities(row, static_cast<Eigen::Index>(k));
    if (!std::isfinite(p)) {
      return Error{ErrorKind::Invalid, "the model's output for " + labels[k] + " is not a number (" + (std::isnan(p) ? "NaN" : "infinite") +
                                           "): the model " + model.record.version + " is damaged; no probabilities were stored"};
    }
    out.emplace_back(labels[k], p);
  }
  return out;
}

DomainCheck domain_of(const LoadedModel& model, const inference::ForwardOutput& result, Eigen::Index row, const dicom::Radiograph* header,
                      const ImagePixels& pixels) {
  const Eigen::VectorXf embedding = result.embeddings.row(row).transpose();
  return check_domain(model.extras, embedding.data(), static_cast<int>(embedding.size()), header, &pixels);
}

}  // namespace

namespace {


// What an image's input (at the model's input size) says for the domain check: its pixel
// descriptor for the model's reference (inference::domain_pixels), how full its corners are, and
// `coloured_share`, which the decoded image knew.
ImagePixels pixels_of_input(const LoadedModel& model, const std::vector<float>& input, double coloured_share) {
  const auto& c = model.model.config();
  ImagePixels out;
  if (model.extras.domain) out.descriptor = inference::domain_pixels(*model.extras.domain, input.data(), c.input_width, c.input_height);
  out.coloured_share = coloured_share;
  out.corner_content = inference::corner_content(input.data(), c.input_width, c.input_height);
  return out;
}

}  // namespace

Result<RadiographPrediction> classify_radiograph(const LoadedModel& model, const dicom::Radiograph& image) {
  auto display = display_image(image);
  if (!display) return display.error();
  const auto& config = model.model.config();
  const std::vector<float> input = model_input_of(display->grey.data(), display->width, display->height, input_size_of(config));
  auto result = model.model.forward({inference::normalise(input.data(), config)});
  if (!result) return from_inference(result.error());
  const auto shown = shown_with_populations(model, *result, {patient_age_years(image.meta)});
  auto probabilities = named_probabilities(model, shown.probabilities, 0);
  if (!probabilities) return probabilities.error();
  RadiographPrediction out;
  out.probabilities = std::move(probabilities.value());
  out.domain = domain_of(model, *result, 0, &image, pixels_of_input(model, input, image.coloured_share));
  if (!shown.populations.empty()) out.domain.population = shown.populations.front();
  return out;
}

int viewer_min_side(int film_columns, int film_rows, int view_width, int view_height, int model_side) {
  if (film_columns <= 0 || film_rows <= 0 || view_width <= 0 || view_height <= 0) return 0;
  const double fit = std::min(static_cast<double>(view_width) / film_columns, static_cast<double>(view_height) / film_rows);
  if (fit >= 1.0) return 0;
  // dicom's rule keeps both reduced sides >= 2 x min_side: the shorter one then covers the shorter
  // side on screen, and the longer one (the same halving) the longer side.
  const double shown_shorter = fit * std::min(film_columns, film_rows);
  const int view_side = static_cast<int>(std::ceil(shown_shorter / 2.0));
  return std::max({1, view_side, model_side});
}

PreparedInput prepare_input(const Instance& instance, InputSize size, const fs::path& cache_dir) {
  PreparedInput p;
  const std::string path = instance.stored_path.empty() ? instance.path : instance.stored_path;
  const std::string ext = lower(fs::path(path).extension().string());
  if (instance.id == 0 && (ext == ".png" || ext == ".jpg" || ext == ".jpeg")) {
    // A loose picture (not catalogued): classified from its grey values, with no header to check.
    auto picture = read_grey_image(path);
    if (!picture) {
      p.error = picture.error().message;
    } else {
      p.input = model_input_of(picture->grey.data(), picture->width, picture->height, size);
      p.coloured_share = picture->coloured_share;
    }
    return p;
  }
  dicom::ReadOptions read_options;
  read_options.decoder_threads = 1;
  read_options.min_side = std::max(size.width, size.height);  // JPEG 2000: a reduced level suffices
  const bool cacheable = instance.id > 0 && !cache_dir.empty() && !instance.content_hash.empty();
  if (cacheable) {
    if (auto cached = read_cached_input(cache_dir, instance.content_hash, size)) {
      // The header alone (no pixels) for the domain check's header rules.
      read_options.decode_pixels = false;
      auto header = dicom::read_radiograph(path, read_options);
      // How much of a colour image is in colour is part of its domain check: it comes with the
      // cached input; an entry of the first format has none, and a colour image is decoded again.
      if (header && (header->colour_photometric.empty() || cached->coloured_share)) {
        p.input = std::move(cached->values);
        p.coloured_share = cached->coloured_share.value_or(0.0);  // greyscale: 0
        p.header = std::move(header.value());
        p.from_cache = true;
        return p;
      }
      read_options.decode_pixels = true;  // let the full read say what is wrong
    }
  }
  auto image = dicom::read_radiograph(path, read_options);
  auto display = image ? display_image(image.value()) : Result<DisplayImage>(Error{ErrorKind::Invalid, image.error().message});
  if (!display) {
    p.error = display.error().message;
    return p;
  }
  p.input = model_input_of(display->grey.data(), display->width, display->height, size);
  if (cacheable) {
    if (auto cached = write_cached_input(cache_dir, instance.content_hash, size, *p.input, image->coloured_share); !cached) p.cache_error = cached.error().message;
  }
  p.coloured_share = image->coloured_share;
  dicom::Radiograph header = std::move(image.value());
  header.stored = {};
  header.modality = {};
  p.header = std::move(header);
  return p;
}

namespace {

// Reads and prepares the images on worker threads, in order, at most `window` images ahead of the
// one the caller has taken: the decoding of the next films overlaps the model on this batch, and
// memory stays bounded (`window` prepared inputs plus one film being decoded per worker).
class Prefetcher {
 public:
  Prefetcher(const std::vector<Instance>& images, InputSize size, fs::path cache_dir, std::size_t window, int workers)
      : images_(images), size_(size), cache_dir_(std::move(cache_dir)), window_(window), slots_(images.size()) {
    limit_ = std::min(images.size(), window_);
    const int n = std::max(1, std::min<int>(workers, static_cast<int>(images.size())));
    for (int i = 0; i < n; ++i) threads_.emplace_back([this] { work(); });
  }
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;
  ~Prefetcher() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    work_cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

  // Image i's prepared input (taken in order); nullopt when `cancel` became true while waiting.
  std::optional<PreparedInput> take(std::size_t i, const std::atomic<bool>* cancel) {
    std::unique_lock lock(mutex_);
    while (!slots_[i]) {
      if (cancel != nullptr && cancel->load()) return std::nullopt;
      done_cv_.wait_for(lock, std::chrono::milliseconds(50));
    }
    std::optional<PreparedInput> out = std::move(slots_[i]);
    slots_[i].reset();
    limit_ = std::min(images_.size(), i + 1 + window_);
    lock.unlock();
    work_cv_.notify_all();
    return out;
  }

 private:
  void work() {
    for (;;) {
      std::size_t i = 0;
      {
        std::unique_lock lock(mutex_);
        work_cv_.wait(lock, [&] { return stop_ || (next_ < images_.size() && next_ < limit_); });
        if (stop_) return;
        i = next_++;
      }
      PreparedInput p = prepare_input(images_[i], size_, cache_dir_);
      {
        std::lock_guard lock(mutex_);
        slots_[i] = std::move(p);
      }
      done_cv_.notify_all();
    }
  }

  const std::vector<Instance>& images_;
  const InputSize size_;
  const fs::path cache_dir_;
  const std::size_t window_;
  std::mutex mutex_;
  std::condition_variable work_cv_, done_cv_;
  std::vector<std::optional<PreparedInput>> slots_;
  std::size_t next_ = 0, limit_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace

Result<std::vector<ImagePrediction>> classify(Catalog& catalog, const LoadedModel& model, const std::vector<Instance>& images,
                                              int batch_size, const ClassifyProgress& progress, const std::atomic<bool>* cancel,
                                              int forward_threads) {
  std::vector<ImagePrediction> out;
  if (images.empty()) return out;
  batch_size = std::max(1, batch_size);
  const auto& config = model.model.config();
  const InputSize size = input_size_of(config);
  // Decoding on one thread per core, two batches ahead, while this thread runs the model and writes
  // the catalog.
  const int workers = static_cast<int>(std::max(1u, std::min(4u, std::thread::hardware_concurrency())));
  Prefetcher prefetch(images, size, model_input_cache_dir(catalog.local_path()), 2 * static_cast<std::size_t>(batch_size), workers);
  auto t0 = std::chrono::steady_clock::now();
  for (std::size_t start = 0; start < images.size(); start += static_cast<std::size_t>(batch_size)) {
    if (cancel != nullptr && cancel->load()) return Error{ErrorKind::Interrupted, "classification cancelled"};
    const std::size_t end = std::min(images.size(), start + static_cast<std::size_t>(batch_size));
    std::vector<inference::Image> batch;
    std::vector<std::size_t> rows;  // index in `out` of each batch image
    std::vector<std::optional<dicom::Radiograph>> headers;  // each batch image's header (pixels released); none for a picture
    std::vector<ImagePixels> pixels;                        // ... and what its pixels say
    for (std::size_t i = start; i < end; ++i) {
      ImagePrediction p;
      p.sop_instance_uid = images[i].sop_instance_uid;
      p.path = images[i].stored_path.empty() ? images[i].path : images[i].stored_path;
      std::optional<PreparedInput> prepared = prefetch.take(i, cancel);
      if (!prepared) return Error{ErrorKind::Interrupted, "classification cancelled"};
      p.from_cache = prepared->from_cache;
      if (!prepared->input) {
        p.error = std::move(prepared->error);
      } else {
        batch.push_back(inference::normalise(prepared->input->data(), config));
        rows.push_back(out.size());
        pixels.push_back(pixels_of_input(model, *prepared->input, prepared->coloured_share));
        headers.push_back(std::move(prepared->header));
      }
      out.push_back(std::move(p));
    }
    if (!batch.empty()) {
      // The model runs on every core even while the workers decode the next films: the engine's
      // threads take its steps in pieces as they come (no barrier a decoder can stall), so they
      // fill whatever the decoders leave. One forward thread beside them left a core idle most of
      // the time (ViT-B/16, 33 films, quiet machine: 117 against 73 ms per film; bench/README.md,
      // issue 18). forward_threads > 0: the caller's choice (the GUI keeps a core for itself).
      inference::ForwardOptions forward_options;
      if (forward_threads > 0) forward_options.threads = forward_threads;
      auto result = model.model.forward(batch, forward_options);
      if (!result) return from_inference(result.error());
      std::vector<std::optional<double>> ages;  // a header's age chooses the population's calibration
      for (const auto& h : headers) ages.push_back(h ? patient_age_years(h->meta) : std::nullopt);
      const ShownProbabilities shown = shown_with_populations(model, *result, ages);
      // Wall time of this batch (its wait for the prefetched inputs, the forward) per image.
      const auto now = std::chrono::steady_clock::now();
      const double ms = std::chrono::duration<double, std::milli>(now - t0).count() / static_cast<double>(end - start);
      t0 = now;
      // The batch's predictions in one transaction (one sync of the catalog, not one per image).
      auto stored = catalog.transaction([&]() -> Status {
        for (std::size_t b = 0; b < rows.size(); ++b) {
          ImagePrediction& p = out[rows[b]];
          auto probabilities = named_probabilities(model, shown.probabilities, static_cast<Eigen::Index>(b));
          p.domain = domain_of(model, *result, static_cast<Eigen::Index>(b), headers[b] ? &*headers[b] : nullptr, pixels[b]);
          p.milliseconds = ms;
          if (!probabilities) {
            p.error = probabilities.error().message;
            continue;
          }
          p.probabilities = std::move(probabilities.value());
          p.domain.population = shown.populations[b];
          if (model.record.id > 0 && images[rows[b]].id > 0) {
            auto put = catalog.put_predictions(p.sop_instance_uid, model.record.id, p.probabilities, p.domain);
            if (!put) return put.error();
          }
        }
        return core::Done{};
      });
      if (!stored) return stored.error();
    }
    if (progress) progress(end, images.size());
  }
  return out;
}

Result<Heatmap> heatmap(const LoadedModel& model, const fs::path& file, const HeatmapOptions& options) {
  const auto& config = model.model.config();
  // Decoded only as far as the model and the overlay need (JPEG 2000 / JPEG: a reduced level; with
  // an overlay no larger than the model's input, the same decode classify makes, so the map explains
  // the prediction the worklist shows). max_side 0: the overlay at full size, so a full decode.
  const int min_side = options.max_side > 0 ? std::max({options.max_side, config.input_width, config.input_height}) : 0;
  auto display = display_image(file, min_side);
  if (!display) return display.error();
  const auto image = inference::preprocess(display->grey.data(), display->width, display->height, config);
  const bool rollout = options.method == HeatmapMethod::Rollout;
  auto result = model.model.forward({image}, {rollout, false});
  if (!result) return from_inference(result.error());
  Heatmap h;
  auto probabilities = named_probabilities(model, shown_probabilities(model, *result), 0);
  if (!probabilities) return probabilities.error();
  h.probabilities = std::move(probabilities.value());
  if (rollout) {
    h.grid = inference::attention_rollout(result->attentions[0], inference::HeadFusion::Mean, options.discard_ratio, result->grid_h,
                                          result->grid_w);
  } else {
    if (h.probabilities.empty()) return Error{ErrorKind::Invalid, "class-specific maps need a model with outputs; this one is a backbone"};
    std::size_t label = 0;
    if (options.finding.empty()) {
      for (std::size_t k = 1; k < h.probabilities.size(); ++k) {
        if (h.probabilities[k].second > h.probabilities[label].second) label = k;
      }
    } else {
      const std::string wanted = lower(options.finding);
      while (label < h.probabilities.size() && lower(h.probabilities[label].first) != wanted) ++label;
      if (label == h.probabilities.size()) {
        std::string names;
        for (const auto& [name, p] : h.probabilities) names += (names.empty() ? "" : ", ") + name;
        return Error{ErrorKind::NotFound, "the model has no output \"" + options.finding + "\" (it has " + names + ")"};
      }
    }
    h.finding = h.probabilities[label].first;
    try {
      const auto gradients = training::attention_gradients(config, model.model.weights(), image, static_cast<int>(label));
      h.grid = training::class_relevance(gradients);
    } catch (const std::exception& e) {
      return Error{ErrorKind::Invalid, std::string("class-specific map: ") + e.what()};
    }
  }
  const inference::Window window = inference::model_window(display->width, display->height, config);
  h.seen = {window.x / display->width, window.y / display->height, window.width / display->width, window.height / display->height};
  FloatImage shown{display->width, display->height, std::move(display->grey)};
  shown = downscale_to_fit(std::move(shown), options.max_side);
  h.overlay = inference::attention_overlay(shown.pixels.data(), shown.width, shown.height, h.grid, options.opacity, inference::ColourMap::Jet,
                                           scaled_window(h.seen, shown.width, shown.height));
  return h;
}

}  // namespace hilum::app
