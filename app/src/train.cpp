// Training from an image folder (the built-in model's recipe).
#include "hilum/app/train.hpp"

#include <jpeglib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <csetjmp>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <system_error>
#include <thread>

#include "hilum/app/classify.hpp"
#include "hilum/app/hash.hpp"
#include "hilum/app/png.hpp"
#include "hilum/core/atomic_file.hpp"
#include "hilum/training/init.hpp"
#include "trainer.hpp"
#include "text.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace hilum::app {
namespace {

bool is_negative_class(const std::string& name) {
  const std::string l = lower(name);
  return l == "normal" || l == "no finding" || l == "no_finding" || l == "negative";
}

std::string finding_name(const std::string& folder) {
  std::string out = lower(folder);
  bool start = true;
  for (char& c : out) {
    if (start) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    start = c == ' ' || c == '_';
    if (c == '_') c = ' ';
  }
  return out;
}

struct JpegError {
  jpeg_error_mgr base;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void on_jpeg_error(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->message);
  std::longjmp(e->jump, 1);
}

Result<DisplayImage> read_jpeg(const fs::path& file) {
  std::FILE* f = std::fopen(file.c_str(), "rb");
  if (f == nullptr) return Error{ErrorKind::Io, "cannot open " + file.string()};
  jpeg_decompress_struct cinfo{};
  JpegError err{};
  cinfo.err = jpeg_std_error(&err.base);
  err.base.error_exit = on_jpeg_error;
  DisplayImage out;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    std::fclose(f);
    return Error{ErrorKind::Invalid, file.string() + ": " + err.message};
  }
  jpeg_create_decompress(&cinfo);
  jpeg_stdio_src(&cinfo, f);
  jpeg_read_header(&cinfo, TRUE);
  cinfo.out_color_space = JCS_GRAYSCALE;
  jpeg_start_decompress(&cinfo);
  if (cinfo.output_width == 0 || cinfo.output_height == 0 || cinfo.output_width > 16384 || cinfo.output_height > 16384) {
    jpeg_destroy_decompress(&cinfo);
    std::fclose(f);
    return Error{ErrorKind::Invalid, file.string() + ": unreasonable JPEG size"};
  }
  out.width = static_cast<int>(cinfo.output_width);
  out.height = static_cast<int>(cinfo.output_height);
  out.grey.resize(static_cast<std::size_t>(out.width) * static_cast<std::size_t>(out.height));
  std::vector<JSAMPLE> row(cinfo.output_width);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW rows[1] = {row.data()};
    const auto y = cinfo.output_scanline;
    jpeg_read_scanlines(&cinfo, rows, 1);
    for (JDIMENSION x = 0; x < cinfo.output_width; ++x) {
      out.grey[static_cast<std::size_t>(y) * cinfo.output_width + x] = static_cast<float>(row[x]) / 255.0f;
    }
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  std::fclose(f);
  return out;
}

// Samples in a seeded order (a subset for small runs), each patient in the validation split or
// not by a keyed hash of the seed and the patient: stable across runs, never both sides.
std::vector<detail::Sample> split_samples(const FolderDataset& data, std::uint64_t seed, double validation_fraction, int max_images) {
  std::vector<std::size_t> order(data.files.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::mt19937_64 pick(seed);
  std::shuffle(order.begin(), order.end(), pick);
  if (max_images > 0 && static_cast<std::size_t>(max_images) < order.size()) order.resize(static_cast<std::size_t>(max_images));
  const std::string split_key = "train-split-" + std::to_string(seed);
  std::vector<detail::Sample> kept;
  kept.reserve(order.size());
  for (std::size_t i : order) {
    detail::Sample s;
    s.path = data.files[i].string();
    s.patient = data.patients[i];
    s.validation = static_cast<double>(keyed_hash(split_key, "patient", s.patient) % 10000u) < validation_fraction * 10000.0;
    s.target = data.targets[i];
    s.mask.assign(s.target.size(), 1.0f);
    kept.push_back(std::move(s));
  }
  return kept;
}

}  // namespace

std::string patient_from_file_name(const std::string& stem) {
  if (const auto u = stem.find('_'); u != std::string::npos && u > 0) return stem.substr(0, u);
  if (const auto d = stem.rfind('-'); d != std::string::npos && d > 0) return stem.substr(0, d);
  return stem;
}

Result<DisplayImage> read_grey_image(const fs::path& file) {
  const std::string ext = lower(file.extension().string());
  if (ext == ".jpg" || ext == ".jpeg") return read_jpeg(file);
  if (ext == ".png") {
    GrayImage g = read_png_gray(file);
    if (!g.error.empty()) return Error{ErrorKind::Invalid, file.string() + ": " + g.error};
    const float scale = 1.0f / static_cast<float>((1 << g.bit_depth) - 1);
    DisplayImage out{g.width, g.height, std::vector<float>(g.pixels.size())};
    for (std::size_t i = 0; i < g.pixels.size(); ++i) out.grey[i] = static_cast<float>(g.pixels[i]) * scale;
    return out;
  }
  return display_image(file);
}

Result<FolderDataset> scan_image_folder(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return Error{ErrorKind::NotFound, dir.string() + " is not a folder"};
  std::vector<std::pair<std::string, fs::path>> classes;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_directory()) classes.emplace_back(entry.path().filename().string(), entry.path());
  }
  std::sort(classes.begin(), classes.end());
  FolderDataset data;
  for (const auto& [name, path] : classes) {
    if (!is_negative_class(name)) data.findings.push_back(finding_name(name));
  }
  if (data.findings.empty()) return Error{ErrorKind::Invalid, dir.string() + ": no finding folders (one sub-folder per class, e.g. NORMAL and PNEUMONIA)"};
  for (const auto& [name, path] : classes) {
    std::vector<fs::path> files;
    for (const auto& entry : fs::recursive_directory_iterator(path, ec)) {
      if (!entry.is_regular_file()) continue;
      const std::string ext = lower(entry.path().extension().string());
      if (ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".dcm" || ext.empty()) files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    std::vector<float> target(data.findings.size(), 0.0f);
    if (!is_negative_class(name)) {
      target[static_cast<std::size_t>(std::find(data.findings.begin(), data.findings.end(), finding_name(name)) - data.findings.begin())] = 1.0f;
    }
    for (const auto& f : files) {
      data.files.push_back(f);
      data.patients.push_back(patient_from_file_name(f.stem().string()));
      data.targets.push_back(target);
    }
  }
  if (data.files.empty()) return Error{ErrorKind::Invalid, dir.string() + ": no images"};
  return data;
}

Result<EvaluationReport> evaluate_folder(const inference::ViTModel& model, const fs::path& dir, std::uint64_t seed, double validation_fraction,
                                         const std::atomic<bool>* cancel) {
  auto data = scan_image_folder(dir);
  if (!data) return data.error();
  const auto& config = model.config();
  if (config.labels != data->findings) {
    std::string have, want;
    for (const auto& l : config.labels) have += (have.empty() ? "" : ", ") + l;
    for (const auto& l : data->findings) want += (want.empty() ? "" : ", ") + l;
    return Error{ErrorKind::Invalid, "the model's outputs (" + have + ") are not the folder's findings (" + want + ")"};
  }
  std::vector<detail::Sample> samples = split_samples(*data, seed, validation_fraction, 0);
  std::erase_if(samples, [](const detail::Sample& s) { return !s.validation; });
  std::vector<detail::Sample*> all;
  for (auto& s : samples) all.push_back(&s);
  std::vector<std::string> problems;
  auto loaded = detail::load_images(all, config, read_grey_image, cancel, problems);
  if (!loaded) return loaded.error();
  std::erase_if(samples, [](const detail::Sample& s) { return s.grey.empty(); });
  if (samples.empty()) return Error{ErrorKind::Invalid, dir.string() + ": no validation images"};
  std::vector<const detail::Sample*> validation;
  for (const auto& s : samples) validation.push_back(&s);
  auto p = detail::predict(model, validation, cancel);
  if (!p) return p.error();
  return detail::evaluate_probabilities(config.labels, validation, *p, config.labels);
}

Result<TrainReport> train_from_folder(const TrainOptions& o, const FinetuneCallback& progress, const std::atomic<bool>* cancel) {
  const auto t0 = std::chrono::steady_clock::now();
  auto data = scan_image_folder(o.data);
  if (!data) return data.error();

  inference::ViTConfig config;
  inference::ViTWeights weights;
  bool new_head = false;
  if (!o.init.empty()) {
    auto model = inference::ViTModel::load(o.init);
    if (!model) return detail::from_inference(model.error());
    config = model->config();
    weights = model->weights();
    if (config.labels != data->findings || !weights.has_classifier) {
      // A backbone (pretrain's output) or a model for other findings: its encoder, and a classifier
      // initialised afresh for the folder's findings (as training::initial_weights does).
      config.labels = data->findings;
      config.problem_type = "multi_label_classification";
      const inference::ViTWeights fresh = training::initial_weights(config, o.seed);
      weights.has_classifier = true;
      weights.classifier = fresh.classifier;
      new_head = true;
    }
  } else {
    auto c = training::architecture(o.arch, o.image_size);
    if (!c) return detail::from_inference(c.error());
    config = *c;
    config.labels = data->findings;
    weights = training::initial_weights(config, o.seed);
  }

  std::vector<detail::Sample> kept = split_samples(*data, o.seed, o.validation_fraction, o.max_images);
  FinetuneProgress state;
  state.phase = "preparing";
  if (progress) progress(state);
  std::vector<std::string> problems;
  {
    std::vector<detail::Sample*> all;
    for (auto& s : kept) all.push_back(&s);
    auto loaded = detail::load_images(all, config, read_grey_image, cancel, problems);
    if (!loaded) return loaded.error();
    std::erase_if(kept, [](const detail::Sample& s) { return s.grey.empty(); });
  }
  std::vector<const detail::Sample*> train, validation;
  std::set<std::string> train_patients, validation_patients;
  for (const auto& s : kept) {
    (s.validation ? validation : train).push_back(&s);
    (s.validation ? validation_patients : train_patients).insert(s.patient);
  }
  if (train.empty() || validation.empty()) return Error{ErrorKind::Invalid, "too few images for a training and a validation split"};

  detail::LoopOptions lo;
  lo.epochs = o.epochs;
  lo.batch_size = o.batch_size;
  lo.learning_rate = o.learning_rate;
  lo.min_learning_rate = o.learning_rate * 0.01f;
  lo.weight_decay = o.weight_decay;
  lo.drop_path = o.drop_path;
  lo.augment = true;
  lo.seed = o.seed;
  lo.precision = o.precision;
  const std::int64_t steps_per_epoch = static_cast<std::int64_t>((train.size() + static_cast<std::size_t>(lo.batch_size) - 1) / static_cast<std::size_t>(lo.batch_size));
  lo.warmup_steps = std::max<std::int64_t>(1, steps_per_epoch * o.warmup_epochs);
  auto plan = [&](int, std::mt19937_64& rng) {
    std::vector<const detail::Sample*> epoch = train;
    std::shuffle(epoch.begin(), epoch.end(), rng);
    return epoch;
  };
  fs::path checkpoints = o.out;
  checkpoints += ".checkpoints";
  auto loop = detail::run_training(config, weights, train, train.size(), plan, validation, config.labels, lo, checkpoints, state, progress, cancel);
  if (!loop) return loop.error();

  auto model = inference::ViTModel::from_weights(config, weights);
  if (!model) return detail::from_inference(model.error());
  auto p = detail::predict(*model, validation, cancel);
  if (!p) return p.error();
  TrainReport report;
  report.validation = detail::evaluate_probabilities(config.labels, validation, *p, config.labels);
  report.validation.model_version = o.out.filename().string();
  report.history = loop->history;
  report.train_images = static_cast<int>(train.size());
  report.validation_images = static_cast<int>(validation.size());
  report.train_patients = static_cast<int>(train_patients.size());
  report.validation_patients = static_cast<int>(validation_patients.size());
  json validation_json = detail::to_json(report.validation);
  for (std::size_t j = 0; j < report.validation.findings.size(); ++j) {
    const auto& f = report.validation.findings[j];
    int correct = 0;
    for (std::size_t i = 0; i < validation.size(); ++i) {
      const bool predicted = (*p)(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)) >= f.threshold;
      correct += predicted == (validation[i]->target[j] > 0.5f) ? 1 : 0;
    }
    const double accuracy = static_cast<double>(correct) / static_cast<double>(validation.size());
    report.accuracy.push_back(accuracy);
    validation_json["findings"][j]["accuracy"] = accuracy;  // at the Youden threshold
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  json r = {{"data", o.data.lexically_normal().string()},  // as given: no machine paths in shipped reports
            {"architecture", o.init.empty() ? o.arch : (new_head ? "encoder of " : "continued from ") + o.init.string()},
            {"image_size", config.input_width},
            {"epochs", o.epochs},
            {"batch_size", o.batch_size},
            {"learning_rate", o.learning_rate},
            {"weight_decay", o.weight_decay},
            {"drop_path", o.drop_path},
            {"warmup_epochs", o.warmup_epochs},
            {"precision", detail::precision_name(o.precision)},
            {"seed", o.seed},
            {"train_images", report.train_images},
            {"validation_images", report.validation_images},
            {"train_patients", report.train_patients},
            {"validation_patients", report.validation_patients},
            {"seconds", report.seconds},
            {"validation", validation_json},
            {"history", detail::to_json(report.history)}};
  report.report_json = r.dump(2);

  std::error_code ec;
  const fs::path tmp = o.out.parent_path() / (o.out.filename().string() + ".partial");
  fs::remove_all(tmp, ec);
  auto saved = model->save(tmp, o.dtype);
  if (!saved) return detail::from_inference(saved.error());
  const std::string failure = core::write_file_atomically(tmp / "training_report.json", report.report_json);
  if (!failure.empty()) return Error{ErrorKind::Io, failure};
  fs::remove_all(o.out, ec);
  fs::rename(tmp, o.out, ec);
  if (ec) return Error{ErrorKind::Io, "cannot move " + tmp.string() + " to " + o.out.string() + ": " + ec.message()};
  fs::remove_all(checkpoints, ec);
  return report;
}

}  // namespace hilum::app
