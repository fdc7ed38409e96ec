// Masked-autoencoder pre-training from image folders or the catalog (see pretrain.hpp).
#include "hilum/app/pretrain.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string_view>
#include <system_error>

#include "hilum/app/hash.hpp"
#include "hilum/app/train.hpp"
#include "hilum/core/atomic_file.hpp"
#include "hilum/training/augment.hpp"
#include "hilum/training/init.hpp"
#include "hilum/training/optim.hpp"
#include "finetune_detail.hpp"
#include "text.hpp"
#include "trainer.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace hilum::app {
namespace {

using Clock = std::chrono::steady_clock;
using detail::from_inference;

constexpr const char* kDecoderFile = "mae_decoder.safetensors";
constexpr const char* kCheckpointFiles[] = {"config.json", "model.safetensors", "mae_decoder.safetensors", "optimizer.safetensors",
                                            "decoder_optimizer.safetensors"};

// The model being pre-trained and its optimizers.
struct Run {
  inference::ViTConfig config;
  inference::ViTWeights encoder;
  inference::ViTWeights decoder;
  training::MaeConfig mae;
  training::AdamWOptions adamw;
  std::vector<double> losses;  // per finished epoch
};

// ---- Checkpoints --------------------------------------------------------------------------------
// OUT.checkpoints/epoch-N/ holds the five files of kCheckpointFiles and checkpoint.json (the epoch,
// the loss curve and each file's SHA-256), written last; state.json (atomic) names the newest.

Status write_checkpoint(const fs::path& dir, int epoch, const Run& run, const training::AdamW& opt_e, const training::AdamW& opt_d) {
  const fs::path folder = dir / ("epoch-" + std::to_string(epoch));
  std::error_code ec;
  fs::remove_all(folder, ec);
  auto model = inference::ViTModel::from_weights(run.config, run.encoder);
  if (!model) return from_inference(model.error());
  if (auto s = model->save(folder, inference::DType::F32); !s) return from_inference(s.error());
  if (auto s = training::save_decoder(folder / kDecoderFile, run.config, run.mae, run.decoder); !s) return from_inference(s.error());
  if (auto s = opt_e.save(folder / "optimizer.safetensors"); !s) return from_inference(s.error());
  if (auto s = opt_d.save(folder / "decoder_optimizer.safetensors"); !s) return from_inference(s.error());
  json files = json::object();
  for (const char* f : kCheckpointFiles) {
    auto hash = sha256_file(folder / f);
    if (!hash) return Error{ErrorKind::Io, "cannot read back the checkpoint: " + hash.error().message};
    files[f] = hash.value();
  }
  const json meta = {{"epoch", epoch}, {"loss", run.losses}, {"files", files}};
  if (auto written = core::write_file_atomically(folder / "checkpoint.json", meta.dump(2)); !written) return Error{ErrorKind::Io, written.error().message};
  const json state = {{"epoch", epoch}, {"folder", folder.filename().string()}};
  if (auto written = core::write_file_atomically(dir / "state.json", state.dump(2)); !written) return Error{ErrorKind::Io, written.error().message};
  // Keep this epoch and the one before (the fallback when this one is found damaged).
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("epoch-", 0) != 0) continue;
    try {
      if (std::stoi(name.substr(6)) < epoch - 1) fs::remove_all(entry.path(), ec);
    } catch (...) {
    }
  }
  return core::Done{};
}

// Loads one checkpoint folder into `run` and the optimizers, or says why it is refused (nothing
// is changed then).
std::string load_checkpoint(const fs::path& folder, Run& run, training::AdamW& opt_e, training::AdamW& opt_d, int& epoch) {
  std::ifstream in(folder / "checkpoint.json");
  if (!in) return "checkpoint.json is missing (an unfinished checkpoint)";
  const json meta = json::parse(in, nullptr, false);
  if (!meta.is_object() || !meta.contains("epoch") || !meta["epoch"].is_number_integer() || !meta.contains("files") ||
      !meta["files"].is_object() || !meta.contains("loss") || !meta["loss"].is_array()) {
    return "checkpoint.json is damaged";
  }
  for (const char* f : kCheckpointFiles) {
    if (!meta["files"].contains(f) || !meta["files"][f].is_string()) return "checkpoint.json lists no checksum for " + std::string(f);
    auto hash = sha256_file(folder / f);
    if (!hash) return std::string(f) + " cannot be read: " + hash.error().message;
    if (hash.value() != meta["files"][f].get<std::string>()) return std::string(f) + " does not match its checksum (damaged or truncated)";
  }
  auto model = inference::ViTModel::load(folder);
  if (!model) return "model.safetensors: " + model.error().message;
  const auto& c = model->config();
  if (c.hidden_size != run.config.hidden_size || c.num_layers != run.config.num_layers || c.num_heads != run.config.num_heads ||
      c.patch_size != run.config.patch_size || c.input_width != run.config.input_width || c.input_height != run.config.input_height ||
      c.intermediate_size != run.config.intermediate_size) {
    return "it was made for another architecture or image size";
  }
  auto decoder = training::load_decoder(folder / kDecoderFile, run.config);
  if (!decoder) return std::string(kDecoderFile) + ": " + decoder.error().message;
  if (decoder->mae.decoder_hidden != run.mae.decoder_hidden || decoder->mae.decoder_layers != run.mae.decoder_layers ||
      decoder->mae.decoder_heads != run.mae.decoder_heads) {
    return "its decoder has another shape";
  }
  training::AdamW e(model->weights(), run.adamw), d(decoder->weights, run.adamw);
  if (auto s = e.load(folder / "optimizer.safetensors"); !s) return s.error().message;
  if (auto s = d.load(folder / "decoder_optimizer.safetensors"); !s) return s.error().message;
  std::vector<double> losses;
  for (const auto& l : meta["loss"]) {
    if (!l.is_number()) return "checkpoint.json is damaged";
    losses.push_back(l.get<double>());
  }
  run.encoder = model->weights();
  run.decoder = std::move(decoder->weights);
  run.losses = std::move(losses);
  opt_e = std::move(e);
  opt_d = std::move(d);
  epoch = meta["epoch"].get<int>();
  return {};
}

// The newest good checkpoint in `dir`: state.json's first, then the other epoch-N/ folders, newest
// first. Returns the epoch resumed after (0: none), or an error when checkpoints exist and every
// one is refused. Refusals are appended to `refused`.
Result<int> resume(const fs::path& dir, Run& run, training::AdamW& opt_e, training::AdamW& opt_d, std::vector<std::string>& refused) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return 0;
  std::vector<std::pair<int, fs::path>> folders;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || name.rfind("epoch-", 0) != 0) continue;
    try {
      folders.emplace_back(std::stoi(name.substr(6)), entry.path());
    } catch (...) {
    }
  }
  std::sort(folders.begin(), folders.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<fs::path> order;
  if (fs::exists(dir / "state.json")) {
    std::ifstream in(dir / "state.json");
    const json state = json::parse(in, nullptr, false);
    if (state.is_object() && state.contains("folder") && state["folder"].is_string()) {
      order.push_back(dir / state["folder"].get<std::string>());
    } else {
      refused.push_back((dir / "state.json").string() + ": damaged; looking at the epoch folders instead");
    }
  }
  for (const auto& f : folders)
    if (order.empty() || f.second != order[0]) order.push_back(f.second);
  if (order.empty()) return 0;
  for (const fs::path& folder : order) {
    int epoch = 0;
    const std::string why = load_checkpoint(folder, run, opt_e, opt_d, epoch);
    if (why.empty()) return epoch;
    refused.push_back("checkpoint " + folder.string() + " refused: " + why);
  }
  std::string all;
  for (const auto& r : refused) all += (all.empty() ? "" : "; ") + r;
  return Error{ErrorKind::Invalid, all + ". No good checkpoint is left: delete " + dir.string() + " to start over"};
}

// ---- The run ------------------------------------------------------------------------------------

Result<PretrainReport> run_pretraining(std::vector<detail::Sample> samples, const detail::ImageReader& reader, const std::string& source,
                                       const PretrainOptions& o, const FinetuneCallback& progress, const std::atomic<bool>* cancel, int held_out = 0) {
  const auto t0 = Clock::now();
  if (o.out.empty()) return Error{ErrorKind::Invalid, "pretrain: no output folder"};
  if (!(o.mae.mask_ratio > 0.0f && o.mae.mask_ratio < 1.0f)) return Error{ErrorKind::Invalid, "pretrain: the mask ratio must be in (0, 1)"};
  Run run;
  run.mae = o.mae;
  run.adamw.lr = o.learning_rate;
  run.adamw.weight_decay = o.weight_decay;
  run.adamw.beta2 = 0.95f;  // MAE's betas (0.9, 0.95)
  bool decoder_from_init = false;
  if (!o.init.empty()) {
    auto model = inference::ViTModel::load(o.init);
    if (!model) return from_inference(model.error());
    run.config = model->config();
    run.encoder = model->weights();
    if (fs::exists(o.init / kDecoderFile)) {
      auto d = training::load_decoder(o.init / kDecoderFile, run.config);
      if (!d) return from_inference(d.error());
      run.mae.decoder_hidden = d->mae.decoder_hidden;
      run.mae.decoder_layers = d->mae.decoder_layers;
      run.mae.decoder_heads = d->mae.decoder_heads;
      run.mae.decoder_intermediate = d->mae.decoder_intermediate;
      run.mae.norm_pix_loss = d->mae.norm_pix_loss;
      run.decoder = std::move(d->weights);
      decoder_from_init = true;
    }
  } else {
    auto c = training::architecture(o.arch, o.image_size);
    if (!c) return from_inference(c.error());
    run.config = *c;
    run.encoder = training::initial_weights(run.config, o.seed);
  }
  // A backbone: no classifier is trained or written.
  run.config.labels.clear();
  run.config.problem_type.clear();
  run.encoder.has_classifier = false;
  run.encoder.classifier = {};
  if (!decoder_from_init) {
    try {
      run.decoder = training::initial_decoder(run.config, run.mae, o.seed + 1);
    } catch (const std::invalid_argument& e) {
      return Error{ErrorKind::Invalid, std::string("pretrain: ") + e.what()};
    }
  }

  FinetuneProgress state;
  state.phase = Phase::Preparing;
  if (progress) progress(state);
  PretrainReport report;
  if (o.max_images > 0 && samples.size() > static_cast<std::size_t>(o.max_images)) {
    std::mt19937_64 pick(o.seed);
    std::shuffle(samples.begin(), samples.end(), pick);
    samples.resize(static_cast<std::size_t>(o.max_images));
  }
  {
    std::vector<detail::Sample*> all;
    for (auto& s : samples) all.push_back(&s);
    auto loaded = detail::load_images(all, run.config, reader, cancel, report.skipped);
    if (!loaded) return loaded.error();
    std::erase_if(samples, [](const detail::Sample& s) { return s.grey.empty(); });
  }
  if (samples.empty()) return Error{ErrorKind::Invalid, "pretrain: no readable images in " + source};
  report.images = static_cast<int>(samples.size());
  report.held_out = held_out;

  training::AdamW opt_e(run.encoder, run.adamw), opt_d(run.decoder, run.adamw);
  fs::path checkpoints = o.out;
  checkpoints += ".checkpoints";
  auto resumed = resume(checkpoints, run, opt_e, opt_d, report.refused_checkpoints);
  if (!resumed) return resumed.error();
  report.resumed_after_epoch = *resumed;
  std::error_code ec;
  fs::create_directories(checkpoints, ec);

  const int batch_size = std::max(1, o.batch_size);
  const std::int64_t steps_per_epoch = static_cast<std::int64_t>((samples.size() + static_cast<std::size_t>(batch_size) - 1) / static_cast<std::size_t>(batch_size));
  const std::int64_t total = steps_per_epoch * o.epochs;
  const std::int64_t warmup = std::max<std::int64_t>(1, steps_per_epoch * o.warmup_epochs);
  const int P = run.config.patch_size;
  const int patches = (run.config.input_height / P) * (run.config.input_width / P);
  training::AugmentOptions aug;  // random resized crop only (Xiao et al.): no rotation or intensity changes
  aug.crop_scale_min = 0.5f;
  aug.crop_scale_max = 1.0f;
  aug.rotation_degrees = 0.0f;
  aug.brightness = 0.0f;
  aug.contrast = 0.0f;
  aug.gamma = 0.0f;
  aug.horizontal_flip = false;
  training::TrainOptions to;
  to.precision = o.precision;
  training::MaeTape tape;
  auto grads_e = training::zeros_like(run.encoder);
  auto grads_d = training::zeros_like(run.decoder);
  state.epochs = o.epochs;
  state.steps = total;
  state.step = static_cast<std::int64_t>(*resumed) * steps_per_epoch;
  const std::int64_t first_step = state.step;
  const auto t_train = Clock::now();
  for (int epoch = *resumed + 1; epoch <= o.epochs; ++epoch) {
    std::mt19937_64 rng(o.seed * 1000003ull + static_cast<std::uint64_t>(epoch));
    std::vector<const detail::Sample*> order;
    for (const auto& s : samples) order.push_back(&s);
    std::shuffle(order.begin(), order.end(), rng);
    double loss_sum = 0.0;
    int loss_n = 0;
    state.epoch = epoch;
    for (std::size_t start = 0; start < order.size(); start += static_cast<std::size_t>(batch_size)) {
      if (cancel != nullptr && cancel->load()) {
        return Error{ErrorKind::Interrupted, "pre-training cancelled during epoch " + std::to_string(epoch) + "; run it again to resume after epoch " +
                                                 std::to_string(epoch - 1)};
      }
      const std::size_t end = std::min(order.size(), start + static_cast<std::size_t>(batch_size));
      std::vector<inference::Image> batch;
      for (std::size_t i = start; i < end; ++i) {
        const training::GreyImage g{run.config.input_width, run.config.input_height, order[i]->augmentable()};
        const auto a = training::augment(g, run.config.input_width, run.config.input_height, aug, rng);
        batch.push_back(inference::normalise(a.data.data(), run.config));
      }
      const auto keep = training::random_keep(static_cast<int>(batch.size()), patches, run.mae.mask_ratio,
                                              o.seed * 7919ull + static_cast<std::uint64_t>(state.step));
      const training::MaeOutput out = training::mae_forward(run.config, run.encoder, run.mae, run.decoder, batch, keep, to, tape);
      training::set_zero(grads_e);
      training::set_zero(grads_d);
      training::mae_backward(run.config, run.encoder, run.decoder, tape, grads_e, grads_d);
      const float lr = training::cosine_lr(state.step, total, warmup, o.learning_rate, 0.0f);
      opt_e.step(run.encoder, grads_e, lr);
      opt_d.step(run.decoder, grads_d, lr);
      loss_sum += out.loss;
      ++loss_n;
      ++state.step;
      state.loss = loss_sum / loss_n;
      const double elapsed = std::chrono::duration<double>(Clock::now() - t_train).count();
      const auto done = static_cast<double>(state.step - first_step);
      state.images_per_second = elapsed > 0 ? done * batch_size / elapsed : 0.0;
      state.eta_seconds = done > 0 ? static_cast<double>(total - state.step) * elapsed / done : 0.0;
      state.phase = Phase::Training;
      if (progress) progress(state);
    }
    run.losses.push_back(loss_n > 0 ? loss_sum / loss_n : 0.0);
    auto saved = write_checkpoint(checkpoints, epoch, run, opt_e, opt_d);
    if (!saved) return saved.error();
    state.phase = Phase::EpochDone;
    if (progress) progress(state);
  }

  report.loss = run.losses;
  report.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  json data = json::array();
  for (const auto& d : o.data) data.push_back(d.lexically_normal().string());
  json history = json::array();
  for (std::size_t e = 0; e < run.losses.size(); ++e) history.push_back({{"epoch", e + 1}, {"loss", run.losses[e]}});
  const json r = {{"method", "masked autoencoder (He et al. 2022), random-resized crop 0.5-1.0 (Xiao et al. 2023)"},
                  {"source", source},
                  {"data", data},
                  {"architecture", o.init.empty() ? o.arch : "continued from " + detail::folder_name(o.init)},
                  {"image_size", run.config.input_width},
                  {"epochs", o.epochs},
                  {"batch_size", batch_size},
                  {"learning_rate", o.learning_rate},
                  {"weight_decay", o.weight_decay},
                  {"warmup_epochs", o.warmup_epochs},
                  {"mask_ratio", run.mae.mask_ratio},
                  {"decoder", {{"hidden_size", run.mae.decoder_hidden}, {"layers", run.mae.decoder_layers}, {"heads", run.mae.decoder_heads},
                               {"intermediate_size", run.mae.decoder_intermediate}, {"position_embeddings", "fixed 2-D sin-cos"}}},
                  {"norm_pix_loss", run.mae.norm_pix_loss},
                  {"precision", detail::precision_name(o.precision)},
                  {"seed", o.seed},
                  {"images", report.images},
                  {"hold_out_seed", o.hold_out_seed ? json(*o.hold_out_seed) : json(nullptr)},
                  {"held_out_images", report.held_out},
                  {"skipped", report.skipped.size()},
                  {"resumed_after_epoch", report.resumed_after_epoch},
                  {"refused_checkpoints", report.refused_checkpoints},
                  {"seconds", report.seconds},
                  {"loss", history}};
  report.report_json = r.dump(2);

  // OUT/, atomically: a temporary folder beside it, renamed.
  const fs::path tmp = o.out.parent_path() / (o.out.filename().string() + ".partial");
  fs::remove_all(tmp, ec);
  auto model = inference::ViTModel::from_weights(run.config, run.encoder);
  if (!model) return from_inference(model.error());
  if (auto s = model->save(tmp, inference::DType::F32); !s) return from_inference(s.error());
  if (auto s = training::save_decoder(tmp / kDecoderFile, run.config, run.mae, run.decoder); !s) return from_inference(s.error());
  if (auto written = core::write_file_atomically(tmp / "pretrain_report.json", report.report_json); !written) return Error{ErrorKind::Io, written.error().message};
  fs::remove_all(o.out, ec);
  fs::rename(tmp, o.out, ec);
  if (ec) return Error{ErrorKind::Io, "cannot move " + tmp.string() + " to " + o.out.string() + ": " + ec.message()};
  return report;
}

}  // namespace

Result<PretrainReport> pretrain_from_folders(const PretrainOptions& o, const FinetuneCallback& progress, const std::atomic<bool>* cancel) {
  if (o.data.empty()) return Error{ErrorKind::Invalid, "pretrain: no image folder"};
  std::vector<detail::Sample> samples;
  std::string source;
  int held_out_count = 0;
  for (const fs::path& dir : o.data) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return Error{ErrorKind::NotFound, dir.string() + " is not a folder"};
    std::set<std::string> held_out;
    if (o.hold_out_seed) {
      auto h = held_out_files(dir, PatientSplit{*o.hold_out_seed, o.validation_fraction, 0});
      if (!h) return h.error();
      held_out = std::move(h.value());
    }
    for (const auto& f : detail::image_files(dir)) {
      if (held_out.contains(f.string())) {
        ++held_out_count;
        continue;
      }
      detail::Sample s;
      s.path = f.string();
      samples.push_back(std::move(s));
    }
    source += (source.empty() ? "" : ", ") + dir.lexically_normal().string();
  }
  if (samples.empty()) return Error{ErrorKind::Invalid, "pretrain: no images (JPEG, PNG or DICOM) in " + source};
  return run_pretraining(std::move(samples), read_grey_image, source, o, progress, cancel, held_out_count);
}

Result<PretrainReport> pretrain_from_catalog(Catalog& catalog, const PretrainOptions& o, const FinetuneCallback& progress,
                                             const std::atomic<bool>* cancel) {
  InstanceFilter filter;
  filter.with_thumbnails = false;
  auto instances = catalog.list_instances(filter);
  if (!instances) return instances.error();
  std::vector<detail::Sample> samples;
  std::set<std::string> seen;
  for (const auto& in : *instances) {
    detail::Sample s;
    s.instance_id = in.id;
    s.path = in.stored_path.empty() ? in.path : in.stored_path;
    if (!seen.insert(s.path).second) continue;
    samples.push_back(std::move(s));
  }
  if (samples.empty()) return Error{ErrorKind::Invalid, "pretrain: the catalog has no films"};
  PretrainOptions options = o;
  options.data.clear();
  return run_pretraining(std::move(samples), [](const fs::path& f) { return display_image(f); }, "the catalog", options, progress, cancel);
}

// ---- The catalog's backbones ------------------------------------------------------------------

namespace {

constexpr const char* kCheckpointsSuffix = ".checkpoints";
constexpr const char* kPartialSuffix = ".partial";

// A JSON object read from a file Hilum wrote (null when missing or damaged).
json read_json(const fs::path& file) {
  std::ifstream in(file);
  if (!in) return nullptr;
  json j = json::parse(in, nullptr, false);
  return j.is_object() ? j : json(nullptr);
}

int int_field(const json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_number_integer() ? j[key].get<int>() : 0;
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string plain_name_problem(const std::string& name) {
  if (name.empty()) return "the backbone needs a name";
  if (name.size() > 64) return "the backbone's name is longer than 64 characters";
  if (name[0] == '.') return "the backbone's name cannot start with '.'";
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
    if (!ok) return "the backbone's name \"" + name.substr(0, 64) + "\" may hold only letters, digits, '.', '-' and '_'";
  }
  if (ends_with(name, kCheckpointsSuffix) || ends_with(name, kPartialSuffix)) return "the backbone's name cannot end with .checkpoints or .partial";
  return {};
}

}  // namespace

Result<std::vector<CatalogBackbone>> catalog_backbones(Catalog& catalog) {
  auto models = detail::catalog_models_dir(catalog);
  if (!models) return models.error();
  std::map<std::string, CatalogBackbone> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(*models, ec)) {
    if (!entry.is_directory(ec)) continue;
    const std::string folder = entry.path().filename().string();
    if (fs::exists(entry.path() / "pretrain_report.json", ec)) {  // a finished backbone
      const json r = read_json(entry.path() / "pretrain_report.json");
      CatalogBackbone b;
      b.name = folder;
      b.dir = entry.path();
      b.finished = true;
      b.images = int_field(r, "images");
      b.image_size = int_field(r, "image_size");
      if (r.is_object() && r.contains("architecture") && r["architecture"].is_string()) b.architecture = r["architecture"].get<std::string>();
      if (r.is_object() && r.contains("loss") && r["loss"].is_array()) {
        for (const auto& h : r["loss"])
          if (h.is_object() && h.contains("loss") && h["loss"].is_number()) b.loss.push_back(h["loss"].get<double>());
      }
      b.epochs = static_cast<int>(b.loss.size());
      found[b.name] = std::move(b);
    } else if (ends_with(folder, kCheckpointsSuffix)) {  // a run's checkpoints
      const std::string name = folder.substr(0, folder.size() - std::string_view(kCheckpointsSuffix).size());
      // A finished backbone keeps its checkpoints: they are not a run of their own.
      if (name.empty() || fs::exists(*models / name, ec)) continue;
      const json state = read_json(entry.path() / "state.json");
      if (!state.is_object() || !state.contains("folder") || !state["folder"].is_string()) continue;
      const fs::path epoch = entry.path() / state["folder"].get<std::string>();
      CatalogBackbone b;
      b.name = name;
      b.dir = *models / name;
      b.epochs = int_field(state, "epoch");
      const json meta = read_json(epoch / "checkpoint.json");
      if (meta.is_object() && meta.contains("loss") && meta["loss"].is_array()) {
        for (const auto& l : meta["loss"])
          if (l.is_number()) b.loss.push_back(l.get<double>());
      }
      b.image_size = int_field(read_json(epoch / "config.json"), "image_size");
      found[b.name] = std::move(b);
    }
  }
  std::vector<CatalogBackbone> out;
  for (auto& [name, b] : found) out.push_back(std::move(b));
  return out;
}

Result<fs::path> catalog_backbone_dir(Catalog& catalog, const std::string& name) {
  if (const std::string problem = plain_name_problem(name); !problem.empty()) return Error{ErrorKind::Invalid, problem};
  auto models = detail::catalog_models_dir(catalog);
  if (!models) return models.error();
  const fs::path dir = *models / name;
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    return Error{ErrorKind::Invalid, "a folder named " + name + " exists already in " + models->string() + ": choose another name"};
  }
  return dir;
}

Result<std::string> free_backbone_name(Catalog& catalog, const std::string& base) {
  if (const std::string problem = plain_name_problem(base); !problem.empty()) return Error{ErrorKind::Invalid, problem};
  auto models = detail::catalog_models_dir(catalog);
  if (!models) return models.error();
  std::error_code ec;
  for (int n = 1; n <= 1000; ++n) {
    const std::string name = n == 1 ? base : base + "-" + std::to_string(n);
    if (!fs::exists(*models / name, ec) && !fs::exists(*models / (name + kCheckpointsSuffix), ec) &&
        !fs::exists(*models / (name + kPartialSuffix), ec)) {
      return name;
    }
  }
  return Error{ErrorKind::Io, "no free backbone name after " + base + " in " + models->string()};
}

}  // namespace hilum::app
