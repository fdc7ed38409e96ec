// On-device fine-tuning from the catalog's labels, evaluation and the gated model registry.
//
// Data: every image with a current label becomes a sample. Its targets cover the base model's
// outputs plus any labelled finding the model has no output for (the head grows; existing rows
// keep their weights). Present = 1, Absent = 0, Uncertain = not used; "No Finding" present makes
// every other output 0 unless labelled otherwise. Patients are split 80/20 into train and
// validation by a keyed hash of the patient (stable across runs, never by image).
#include "hilum/app/finetune.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <regex>
#include <set>
#include <system_error>
#include <thread>

#include <unistd.h>

#include "hilum/app/classify.hpp"
#include "hilum/app/hash.hpp"
#include "hilum/app/labels_csv.hpp"
#include "hilum/core/enum_names.hpp"
#include "hilum/core/numbers.hpp"
#include "hilum/core/text.hpp"
#include "finetune_detail.hpp"
#include "trainer.hpp"
#include "hilum/core/atomic_file.hpp"
#include "hilum/inference/model_extras.hpp"
#include "hilum/training/augment.hpp"
#include "hilum/training/calibrate.hpp"
#include "hilum/training/backprop.hpp"
#include "hilum/training/head.hpp"
#include "hilum/training/loss.hpp"
#include "hilum/training/metrics.hpp"
#include "hilum/training/optim.hpp"
#include "text.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace hilum::app {

namespace {
constexpr core::EnumName<Strategy> kStrategies[] = {{Strategy::Auto, "auto"}, {Strategy::Head, "head"}, {Strategy::LastK, "last-k"},
                                                    {Strategy::Full, "full"}, {Strategy::Calibrate, "calibrate"}};
// Typed, not stored.
constexpr core::EnumName<Strategy> kStrategySynonyms[] = {{Strategy::LastK, "lastk"}, {Strategy::LastK, "last_k"}};
}  // namespace

const char* to_string(Strategy s) { return core::c_name_of(kStrategies, s); }

Result<Strategy> strategy_from_string(std::string_view s) {
  if (auto v = core::value_of(kStrategies, s)) return *v;
  return Error{ErrorKind::Invalid, core::unknown_name_message(kStrategies, "fine-tuning strategy", s)};
}

std::optional<Strategy> parse_strategy(const std::string& s) {
  const std::string v = core::lower(s);
  if (auto exact = core::value_of(kStrategies, v)) return exact;
  return core::value_of(kStrategySynonyms, v);
}

namespace {

using inference::Matrix;
using Clock = std::chrono::steady_clock;
using detail::evaluate_probabilities;
using detail::from_inference;
using detail::load_images;
using detail::to_json;
using detail::predict;
using detail::Sample;

constexpr const char* kNoFinding = "No Finding";


double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// ---- Samples ---------------------------------------------------------------------------------

using Dataset = detail::TrainingData;
using detail::is_validation_patient;

// Builds the samples from label events (the catalog's current labels, or a CSV's).
Result<Dataset> build_dataset(Catalog& catalog, const std::vector<std::string>& base_labels, const std::vector<LabelEvent>& events,
                              std::int64_t parent_snapshot, bool grow) {
  auto secret = catalog.secret();
  if (!secret) return secret.error();
  InstanceFilter filter;
  filter.with_thumbnails = false;
  auto instances = catalog.list_instances(filter);
  if (!instances) return instances.error();
  std::map<std::int64_t, const Instance*> by_id;
  for (const auto& in : *instances) by_id.emplace(in.id, &in);

  Dataset data;
  data.outputs = base_labels;
  std::map<std::string, std::size_t> column;  // lower-case finding -> output column
  for (std::size_t j = 0; j < data.outputs.size(); ++j) column.emplace(lower(data.outputs[j]), j);
  if (grow) {
    for (const auto& e : events) {
      if (e.value == LabelValue::Cleared || e.value == LabelValue::Uncertain) continue;
      if (lower(e.finding) == lower(kNoFinding)) continue;
      if (column.emplace(lower(e.finding), data.outputs.size()).second) data.outputs.push_back(e.finding);
    }
  }
  std::map<std::int64_t, std::vector<const LabelEvent*>> per_image;
  for (const auto& e : events) {
    per_image[e.instance_id].push_back(&e);
    data.max_event_id = std::max(data.max_event_id, e.id);
  }
  std::set<std::string> patients, validation_patients;
  const std::size_t n_out = data.outputs.size();
  for (const auto& [id, list] : per_image) {
    auto it = by_id.find(id);
    if (it == by_id.end()) continue;
    const Instance& in = *it->second;
    Sample s;
    s.instance_id = id;
    s.path = in.stored_path.empty() ? in.path : in.stored_path;
    s.patient = patient_key(in.patient_id, in.patient_name, in.study_instance_uid);
    s.validation = is_validation_patient(*secret, s.patient);
    s.target.assign(n_out, 0.0f);
    s.mask.assign(n_out, 0.0f);
    s.is_new = false;
    bool no_finding = false;
    for (const LabelEvent* e : list) {
      if (e->id > parent_snapshot) s.is_new = true;
      if (lower(e->finding) == lower(kNoFinding) && e->value == LabelValue::Present) no_finding = true;
    }
    if (no_finding) {
      for (std::size_t j = 0; j < n_out; ++j) {
        if (lower(data.outputs[j]) != lower(kNoFinding)) s.mask[j] = 1.0f;  // target 0
      }
    }
    for (const LabelEvent* e : list) {
      auto c = column.find(lower(e->finding));
      if (c == column.end()) continue;
      switch (e->value) {
        case LabelValue::Present: s.target[c->second] = 1.0f; s.mask[c->second] = 1.0f; break;
        case LabelValue::Absent: s.target[c->second] = 0.0f; s.mask[c->second] = 1.0f; break;
        case LabelValue::Uncertain:
        case LabelValue::Cleared: s.mask[c->second] = 0.0f; break;
      }
    }
    if (std::none_of(s.mask.begin(), s.mask.end(), [](float m) { return m > 0.0f; })) continue;
    patients.insert(s.patient);
    if (s.validation) validation_patients.insert(s.patient);
    data.samples.push_back(std::move(s));
  }
  data.patients = static_cast<int>(patients.size());
  data.validation_patients = static_cast<int>(validation_patients.size());
  return data;
}

// How the viewer shows a catalogued file (the images fine-tuning and evaluation read).
Result<DisplayImage> read_display(const fs::path& file) { return display_image(file); }



// The gate. Findings both models have an AUROC for: the candidate's mean AUROC must not be worse
// than the active model's beyond the tolerance. Findings only the candidate has (new outputs, or
// ones the active model could not be measured on): their mean 95% lower bound must be above chance,
// so that a version never adds outputs that say nothing. With no shared finding only the second
// rule applies.
std::pair<bool, std::string> gate(const EvaluationReport& candidate, const std::optional<EvaluationReport>& active, double tolerance) {
  if (!candidate.mean_auroc) {
    return {false, "no validation AUROC: the validation patients need positive and negative labels for at least one finding"};
  }
  double new_sum = 0.0, old_sum = 0.0, fresh_low = 0.0, fresh_auroc = 0.0;
  int shared = 0, fresh = 0;
  std::string fresh_names;
  for (const auto& f : candidate.findings) {
    if (!f.auroc) continue;
    const FindingMetrics* old = nullptr;
    if (active) {
      for (const auto& g : active->findings) {
        if (g.finding == f.finding && g.auroc) old = &g;
      }
    }
    if (old != nullptr) {
      new_sum += *f.auroc;
      old_sum += *old->auroc;
      ++shared;
    } else {
      fresh_low += f.auroc_low;
      fresh_auroc += *f.auroc;
      fresh_names += (fresh_names.empty() ? "" : ", ") + f.finding;
      ++fresh;
    }
  }
  std::string reason;
  bool pass = true;
  if (shared > 0) {
    const double a = new_sum / shared, b = old_sum / shared;
    pass = a >= b - tolerance;
    // Stored in the catalog: numbers through core::format_fixed, never the locale's decimal comma.
    reason = "mean AUROC " + core::format_fixed(a, 4) + " vs active " + core::format_fixed(b, 4) + " on " + std::to_string(shared) +
             " shared finding(s): " + (pass ? "not worse beyond " : "worse by more than ") + core::format_fixed(tolerance, 3);
  }
  if (fresh > 0) {
    const double low = fresh_low / fresh, auroc = fresh_auroc / fresh;
    const bool above = low > 0.5;
    reason += std::string(shared > 0 ? "; new" : "no finding shared with the active model;") + " " + (fresh == 1 ? "finding" : "findings") +
              " (" + fresh_names + "): mean AUROC " + core::format_fixed(auroc, 4) + ", 95% lower bound " + core::format_fixed(low, 4) + " " +
              (above ? "above" : "not above") + " chance";
    pass = pass && above;
  }
  return {pass, reason};
}

// ---- Models ------------------------------------------------------------------------------------

std::string backbone_of(const ModelRecord& record) {
  auto hp = json::parse(record.hyperparameters, nullptr, false);
  if (hp.is_object() && hp.contains("backbone_version") && hp["backbone_version"].is_string()) return hp["backbone_version"];
  return record.version;
}

std::int64_t snapshot_of(const ModelRecord& record) {
  auto s = json::parse(record.label_snapshot, nullptr, false);
  if (s.is_object() && s.contains("max_label_event") && s["max_label_event"].is_number_integer()) return s["max_label_event"];
  return 0;
}

// The next free version after `parent_version`'s family ("<root>-ftN"): above every registered
// one, and whose folder in `models` is not taken (a folder left by someone else is never reused).
Result<std::string> next_version(Catalog& catalog, const std::string& parent_version, const fs::path& models) {
  static const std::regex suffix("-ft[0-9]+$");
  const std::string root = std::regex_replace(parent_version, suffix, "");
  auto all = catalog.models();
  if (!all) return all.error();
  int n = 0;
  for (const auto& m : *all) {
    if (m.version.rfind(root + "-ft", 0) == 0) {
      try {
        n = std::max(n, std::stoi(m.version.substr(root.size() + 3)));
      } catch (...) {
      }
    }
  }
  std::error_code ec;
  while (fs::exists(models / (root + "-ft" + std::to_string(n + 1)), ec)) ++n;
  return root + "-ft" + std::to_string(n + 1);
}

constexpr const char* kModelsFolderSetting = "models_folder";

// The catalog's own folder for its model versions and checkpoints, beside the catalog file:
// "<catalog stem>.models" (or "<stem>.models-2", ... when a folder of that name already exists
// and is not this catalog's), chosen once and recorded in the catalog's settings (relative, so the
// pair can be moved together). Two catalogs in one folder never share it. Versions made before
// (in "models/") keep working: the catalog records each version's path.
Result<fs::path> models_dir(Catalog& catalog) {
  const fs::path folder = catalog.local_folder();
  auto recorded = catalog.setting(kModelsFolderSetting);
  if (!recorded) return recorded.error();
  std::error_code ec;
  if (recorded->has_value() && !(*recorded)->empty()) {
    const fs::path dir = folder / **recorded;
    fs::create_directories(dir, ec);
    if (ec) return Error{ErrorKind::Io, "cannot create the models folder " + dir.string() + ": " + ec.message()};
    return dir;
  }
  const std::string stem = catalog.local_path().stem().string();
  fs::create_directories(folder, ec);
  for (int n = 1; n <= 1000; ++n) {
    const std::string name = stem + ".models" + (n == 1 ? std::string() : "-" + std::to_string(n));
    // create_directory says whether it made the folder: one that exists belongs to someone else.
    if (!fs::create_directory(folder / name, ec)) {
      if (ec) return Error{ErrorKind::Io, "cannot create the models folder " + (folder / name).string() + ": " + ec.message()};
      continue;
    }
    if (auto s = catalog.set_setting(kModelsFolderSetting, name); !s) {
      fs::remove(folder / name, ec);
      return s.error();
    }
    return folder / name;
  }
  return Error{ErrorKind::Io, "no free name for the models folder in " + catalog.local_folder().string()};
}

// Writes the model folder (weights, and its calibration and domain reference when it has them)
// into `tmp` (a name of this run alone), to be moved into place later.
Status save_model_folder(const inference::ViTModel& model, const inference::ModelExtras& extras, const fs::path& tmp) {
  std::error_code ec;
  fs::remove_all(tmp, ec);
  auto saved = model.save(tmp, inference::DType::F32);
  if (!saved) return from_inference(saved.error());
  if (extras.calibration || extras.domain) {
    auto written = inference::write_model_extras(tmp, extras);
    if (!written) return from_inference(written.error());
  }
  return core::Done{};
}

// The classifier of `config`'s labels re-ordered / grown to `outputs` (new rows: zero weights,
// bias = log-odds of the base rate).
void grow_classifier(inference::ViTConfig& config, inference::ViTWeights& w, const std::vector<std::string>& outputs,
                     const std::vector<float>& base_rate) {
  const auto hidden = static_cast<Eigen::Index>(config.hidden_size);
  Matrix cw = Matrix::Zero(static_cast<Eigen::Index>(outputs.size()), hidden);
  inference::Vector cb = inference::Vector::Zero(static_cast<Eigen::Index>(outputs.size()));
  for (std::size_t j = 0; j < outputs.size(); ++j) {
    auto it = std::find(config.labels.begin(), config.labels.end(), outputs[j]);
    const auto r = static_cast<Eigen::Index>(j);
    if (it != config.labels.end() && w.has_classifier) {
      const auto k = static_cast<Eigen::Index>(it - config.labels.begin());
      cw.row(r) = w.classifier.w.row(k);
      cb(r) = w.classifier.b.size() > 0 ? w.classifier.b(k) : 0.0f;
    } else {
      const float p = std::clamp(base_rate[j], 0.02f, 0.98f);
      cb(r) = std::log(p / (1.0f - p));
    }
  }
  w.classifier.w = std::move(cw);
  w.classifier.b = std::move(cb);
  w.has_classifier = true;
  config.labels = outputs;
  if (config.problem_type.empty() || config.problem_type == "single_label_classification") config.problem_type = "multi_label_classification";
}


// ---- The run -----------------------------------------------------------------------------------

struct Run {
  Catalog& catalog;
  const FinetuneOptions& options;
  const FinetuneCallback& progress;
  const std::atomic<bool>* cancel;
  Clock::time_point t0 = Clock::now();
  FinetuneProgress state;

  void report(Phase phase) {
    state.phase = phase;
    if (progress) progress(state);
  }
  [[nodiscard]] bool cancelled() const { return cancel != nullptr && cancel->load(); }
};

Strategy choose(Strategy requested, std::size_t labelled_images) {
  if (requested != Strategy::Auto) return requested;
  if (labelled_images < 200) return Strategy::Head;
  if (labelled_images < 2000) return Strategy::LastK;
  return Strategy::Full;
}

struct Trained {
  inference::ViTConfig config;
  inference::ViTWeights weights;
  std::vector<EpochRecord> history;
  json hyperparameters;
};

// `head`: logistic regression per finding on cached CLS embeddings of the backbone.
Result<Trained> train_head(Run& run, const LoadedModel& base, Dataset& data, std::vector<std::string>& problems) {
  const std::string backbone = backbone_of(base.record);
  auto cached = run.catalog.embeddings(backbone);
  if (!cached) return cached.error();
  std::vector<Sample*> missing;
  for (auto& s : data.samples) {
    auto it = cached->find(s.instance_id);
    if (it == cached->end() || static_cast<int>(it->second.size()) != base.model.config().hidden_size) missing.push_back(&s);
  }
  run.state.steps = static_cast<std::int64_t>(missing.size());
  run.report(Phase::Embedding);
  if (!missing.empty()) {
    auto loaded = load_images(missing, base.model.config(), read_display, run.cancel, problems);
    if (!loaded) return loaded.error();
    auto forward = detail::forward_samples(base.model, {missing.begin(), missing.end()}, run.cancel);
    if (!forward) return forward.error();
    const Matrix* e = &forward->embeddings;
    std::vector<std::pair<std::int64_t, std::vector<float>>> rows;
    for (std::size_t i = 0; i < missing.size(); ++i) {
      std::vector<float> v(static_cast<std::size_t>(e->cols()));
      for (Eigen::Index c = 0; c < e->cols(); ++c) v[static_cast<std::size_t>(c)] = (*e)(static_cast<Eigen::Index>(i), c);
      (*cached)[missing[i]->instance_id] = v;
      rows.emplace_back(missing[i]->instance_id, std::move(v));
    }
    if (base.record.id > 0) {
      auto stored = run.catalog.put_embeddings(backbone, rows);
      if (!stored) return stored.error();
    }
  }
  // Samples whose image could not be read have no embedding: drop them.
  std::erase_if(data.samples, [&](const Sample& s) { return cached->find(s.instance_id) == cached->end(); });

  const auto dim = static_cast<Eigen::Index>(base.model.config().hidden_size);
  const auto n_out = static_cast<Eigen::Index>(data.outputs.size());
  std::vector<const Sample*> train;
  for (const auto& s : data.samples) {
    if (!s.validation) train.push_back(&s);
  }
  Matrix x(static_cast<Eigen::Index>(train.size()), dim), y(static_cast<Eigen::Index>(train.size()), n_out),
      m(static_cast<Eigen::Index>(train.size()), n_out);
  for (std::size_t i = 0; i < train.size(); ++i) {
    const auto& v = cached->at(train[i]->instance_id);
    const auto r = static_cast<Eigen::Index>(i);
    for (Eigen::Index c = 0; c < dim; ++c) x(r, c) = v[static_cast<std::size_t>(c)];
    for (Eigen::Index j = 0; j < n_out; ++j) {
      y(r, j) = train[i]->target[static_cast<std::size_t>(j)];
      m(r, j) = train[i]->mask[static_cast<std::size_t>(j)];
    }
  }
  run.report(Phase::Training);
  training::HeadOptions ho;
  const auto fit = training::fit_head(x, y, m, ho);

  Trained t;
  t.config = base.model.config();
  t.weights = base.model.weights();
  std::vector<float> base_rate(data.outputs.size(), 0.5f);
  grow_classifier(t.config, t.weights, data.outputs, base_rate);
  // A finding's row is replaced only when training has enough of both classes for it; otherwise
  // the parent's row (or the new row's prior) stays.
  json replaced = json::array();
  for (Eigen::Index j = 0; j < n_out; ++j) {
    int pos = 0, neg = 0;
    for (Eigen::Index i = 0; i < y.rows(); ++i) {
      if (m(i, j) > 0.0f) (y(i, j) > 0.5f ? pos : neg)++;
    }
    if (pos >= 5 && neg >= 5) {
      t.weights.classifier.w.row(j) = fit.weights.row(j);
      t.weights.classifier.b(j) = fit.bias(j);
      replaced.push_back(data.outputs[static_cast<std::size_t>(j)]);
    }
  }
  t.hyperparameters = {{"kind", "logistic"}, {"l2", ho.l2}, {"balance", ho.balance}, {"backbone_version", backbone},
                       {"refitted_findings", replaced}, {"train_images", train.size()}};
  t.history.push_back(EpochRecord{1, 0.0, std::nullopt});
  return t;
}

// `last-k` and `full`.
Result<Trained> train_blocks(Run& run, const LoadedModel& base, Dataset& data, Strategy strategy, std::vector<std::string>& problems,
                             const fs::path& checkpoint_dir) {
  const FinetuneOptions& o = run.options;
  Trained t;
  t.config = base.model.config();
  t.weights = base.model.weights();
  const int layers = t.config.num_layers;
  const int k = std::clamp(o.k, 1, layers);

  std::vector<Sample*> all;
  for (auto& s : data.samples) all.push_back(&s);
  run.report(Phase::Preparing);
  auto loaded = load_images(all, t.config, read_display, run.cancel, problems);
  if (!loaded) return loaded.error();
  std::erase_if(data.samples, [&](const Sample& s) { return s.grey.empty(); });
  std::vector<const Sample*> train, validation;
  for (const auto& s : data.samples) (s.validation ? validation : train).push_back(&s);
  if (train.empty()) return Error{ErrorKind::Invalid, "no labelled training images (all labelled patients fell into validation)"};

  // New outputs start at the base rate of their labels.
  std::vector<float> base_rate(data.outputs.size(), 0.5f);
  for (std::size_t j = 0; j < data.outputs.size(); ++j) {
    double p = 0, n = 0;
    for (const Sample* s : train) {
      if (s->mask[j] > 0) {
        n += 1;
        p += s->target[j];
      }
    }
    if (n > 0) base_rate[j] = static_cast<float>(p / n);
  }
  grow_classifier(t.config, t.weights, data.outputs, base_rate);

  // Forgetting control: every epoch sees all images with new labels plus a replay sample of
  // earlier ones (at least as many, at least 64 when there are that many).
  std::vector<const Sample*> fresh, earlier;
  for (const Sample* s : train) (s->is_new ? fresh : earlier).push_back(s);
  if (fresh.empty()) fresh.swap(earlier);
  const std::size_t replay = std::min(earlier.size(), std::max<std::size_t>(fresh.size(), 64));
  auto plan = [&](int, std::mt19937_64& rng) {
    std::vector<const Sample*> order = fresh;
    std::vector<const Sample*> old = earlier;
    std::shuffle(old.begin(), old.end(), rng);
    order.insert(order.end(), old.begin(), old.begin() + static_cast<std::ptrdiff_t>(replay));
    std::shuffle(order.begin(), order.end(), rng);
    return order;
  };

  detail::LoopOptions lo;
  lo.epochs = o.epochs > 0 ? o.epochs : (strategy == Strategy::Full ? 10 : 5);
  lo.batch_size = std::max(1, o.batch_size);
  lo.learning_rate = o.learning_rate > 0.0f ? o.learning_rate : (strategy == Strategy::Full ? 1e-4f : 3e-4f);
  lo.layer_decay = strategy == Strategy::Full ? 0.75f : 1.0f;
  lo.drop_path = strategy == Strategy::Full ? 0.1f : 0.0f;
  lo.checkpoint_activations = strategy == Strategy::Full;
  lo.augment = strategy == Strategy::Full;
  lo.first_trainable_block = strategy == Strategy::Full ? 0 : layers - k;
  lo.seed = o.seed;
  lo.precision = o.precision;
  auto loop = detail::run_training(t.config, t.weights, train, fresh.size() + replay, plan, validation, data.outputs, lo, checkpoint_dir,
                                   run.state, run.progress, run.cancel);
  if (!loop) return loop.error();
  t.history = loop->history;
  t.hyperparameters = {{"epochs", lo.epochs},
                       {"k", strategy == Strategy::LastK ? k : layers},
                       {"learning_rate", lo.learning_rate},
                       {"batch_size", lo.batch_size},
                       {"weight_decay", lo.weight_decay},
                       {"layer_decay", lo.layer_decay},
                       {"drop_path", lo.drop_path},
                       {"warmup_steps", loop->warmup_steps},
                       {"gradient_clip", lo.gradient_clip},
                       {"activation_checkpointing", lo.checkpoint_activations},
                       {"precision", detail::precision_name(lo.precision)},
                       {"augment", lo.augment},
                       {"seed", o.seed},
                       {"train_images", train.size()},
                       {"images_per_epoch", fresh.size() + replay},
                       {"replay_images_per_epoch", replay},
                       {"tape_peak_bytes", loop->tape_peak_bytes}};
  return t;
}

json labelled_summary(const Dataset& data) {
  json counts = json::object();
  for (std::size_t j = 0; j < data.outputs.size(); ++j) {
    int pos = 0, neg = 0;
    for (const auto& s : data.samples) {
      if (s.mask[j] > 0) (s.target[j] > 0.5f ? pos : neg)++;
    }
    counts[data.outputs[j]] = {{"positive", pos}, {"negative", neg}};
  }
  int val = 0;
  for (const auto& s : data.samples) val += s.validation ? 1 : 0;
  return json{{"max_label_event", data.max_event_id}, {"images", data.samples.size()}, {"validation_images", val},
              {"patients", data.patients}, {"validation_patients", data.validation_patients}, {"findings", counts}};
}

}  // namespace

namespace detail {

Result<fs::path> catalog_models_dir(Catalog& catalog) { return models_dir(catalog); }

Result<std::vector<LabelEvent>> training_labels(Catalog& catalog) { return catalog.consensus_labels(); }

Result<std::string> training_labels_used(Catalog& catalog) {
  auto policy = catalog.consensus_policy();
  if (!policy) return policy.error();
  return "consensus: " + policy->describe();
}

bool is_validation_patient(const std::string& secret, const std::string& patient) {
  return keyed_hash(secret, "finetune-split", patient) % 5u == 0u;
}

Result<TrainingData> training_data(Catalog& catalog, const std::vector<std::string>& base_labels, std::int64_t parent_snapshot,
                                   bool grow) {
  auto events = training_labels(catalog);
  if (!events) return events.error();
  return build_dataset(catalog, base_labels, *events, parent_snapshot, grow);
}

Result<FinetuneResult> register_candidate(Catalog& catalog, const LoadedModel& base, Candidate& c, TrainingData& data,
                                          const FinetuneOptions& options, std::vector<std::string>& problems,
                                          const FinetuneCallback& progress, const std::atomic<bool>* cancel) {
  const auto report_phase = [&](Phase phase) {
    FinetuneProgress p;
    p.phase = phase;
    if (progress) progress(p);
  };
  std::error_code ec;
  auto models = models_dir(catalog);
  if (!models) return models.error();
  // Validation of the new version and of the active model on the same images.
  report_phase(Phase::Validating);
  std::vector<const Sample*> validation;
  for (const auto& s : data.samples) {
    if (s.validation) validation.push_back(&s);
  }
  auto candidate = inference::ViTModel::from_weights(c.config, c.weights);
  if (!candidate) return from_inference(candidate.error());
  auto active = catalog.active_model();
  if (!active) return active.error();
  std::optional<LoadedModel> active_model;
  if (active->has_value()) {
    if ((*active)->id == base.record.id) {
      active_model = base;
    } else {
      auto loaded = load_model(catalog, (*active)->version);
      if (!loaded) return loaded.error();
      active_model = std::move(loaded.value());
    }
  }
  EvaluationReport metrics;
  std::optional<EvaluationReport> active_metrics;
  inference::ModelExtras extras;
  Matrix validation_embeddings(0, c.config.hidden_size);
  if (!validation.empty()) {
    std::vector<Sample*> need;
    for (auto& s : data.samples) {
      if (s.validation && s.grey.empty()) need.push_back(&s);
    }
    auto loaded = load_images(need, c.config, read_display, cancel, problems);
    if (!loaded) return loaded.error();
    std::erase_if(validation, [](const Sample* s) { return s->grey.empty(); });
    auto out = forward_samples(*candidate, validation, cancel);
    if (!out) return out.error();
    // Calibrated on this site's validation patients; the metrics (thresholds included) are of the
    // calibrated probabilities a reader will see.
    extras.calibration = fit_calibration(c.config.labels, validation, out->logits,
                                         "Platt scaling on " + std::to_string(validation.size()) + " validation images of this catalog");
    metrics = evaluate_probabilities(data.outputs, validation, inference::calibrated_probabilities(out->logits, extras.calibration),
                                     c.config.labels);
    validation_embeddings = std::move(out->embeddings);
    if (active_model) {
      auto q = forward_samples(active_model->model, validation, cancel);
      if (!q) return q.error();
      const Matrix shown = active_model->model.config().multi_label()
                               ? shown_probabilities(active_model->extras, validation, *q)
                               : q->probabilities;
      active_metrics = evaluate_probabilities(data.outputs, validation, shown, active_model->model.config().labels);
      active_metrics->model_version = active_model->record.version;
    }
  }
  // The domain reference: a frozen backbone keeps its parent's; a trained one keeps its parent's
  // pixel parts and describes its embeddings anew (when enough films can say anything).
  json domain_note;
  if (!c.backbone_trained) {
    extras.domain = base.extras.domain;
  } else {
    std::vector<Sample*> train_need;
    std::vector<const Sample*> train_samples;
    for (auto& s : data.samples) {
      if (s.validation) continue;
      if (s.grey.empty()) train_need.push_back(&s);
      train_samples.push_back(&s);
    }
    // The parent's pixel parts (thumbnail, statistics) describe the films' pixels, not the weights:
    // they stay, fitted on far more films than a site labels. And they choose the films that describe
    // the new embeddings: a film they find outside (a CT slice or a scanned page labelled with the
    // rest) is no example of the site's films, and among a few dozen validation films the limit (their
    // 99th percentile) is about the farthest one's distance.
    const inference::DomainReference* parent = base.extras.domain ? &*base.extras.domain : nullptr;
    const bool keep_pixels = parent != nullptr && (parent->thumbnail_side > 0 || parent->statistics.mean.size() > 0) &&
                             base.model.config().input_width == c.config.input_width &&
                             base.model.config().input_height == c.config.input_height;
    // Nor is a round field (a cross-section on its background), which the check calls outside whatever the reference says.
    const auto inside_parent = [&](const Sample& s) {
      const int w = c.config.input_width, h = c.config.input_height;
      return inference::pixel_score(*parent, inference::domain_pixels(*parent, s.grey.data(), w, h)) <= 1.0 &&
             inference::corner_content(s.grey.data(), w, h) >= inference::kRoundFieldLimit;
    };
    constexpr std::size_t kMinFilms = 20;  // fewer describe no embeddings
    std::size_t left_out = 0;
    Matrix held_embeddings = validation_embeddings;
    if (train_samples.size() >= kMinFilms) {
      auto loaded = load_images(train_need, c.config, read_display, cancel, problems);
      if (!loaded) return loaded.error();
      std::erase_if(train_samples, [](const Sample* s) { return s->grey.empty(); });
      if (keep_pixels) {
        const std::size_t before = train_samples.size();
        std::erase_if(train_samples, [&](const Sample* s) { return !inside_parent(*s); });
        left_out = before - train_samples.size();
        held_embeddings = rows_where(validation, validation_embeddings, inside_parent).second;
        left_out += static_cast<std::size_t>(validation_embeddings.rows() - held_embeddings.rows());
      }
    }
    if (train_samples.size() >= kMinFilms) {
      auto out = forward_samples(*candidate, train_samples, cancel);
      if (!out) return out.error();
      if (keep_pixels) {
        extras.domain = *parent;
        extras.domain->features = "cls";
        extras.domain->embedding = fit_embedding_reference(out->embeddings, held_embeddings);
      } else {
        extras.domain = fit_domain(c.config, train_samples, out->embeddings, validation, validation_embeddings);
      }
      domain_note = {{"pixel_parts", keep_pixels ? "the parent's" : "fitted on this run's films"},
                     {"embedding_films", train_samples.size()},
                     {"films_outside_the_parents_pixel_reference", left_out}};
    } else if (keep_pixels) {
      // Too few films to describe the new embeddings: the parent's pixel parts alone.
      extras.domain = *parent;
      extras.domain->features = "none";
      extras.domain->embedding = {};
      domain_note = {{"pixel_parts", "the parent's"},
                     {"embedding", "none: " + std::to_string(train_samples.size()) + " training films" +
                                       (left_out > 0 ? " within the parent's pixel reference" : "") + ", fewer than the " +
                                       std::to_string(kMinFilms) + " that describe new embeddings"},
                     {"films_outside_the_parents_pixel_reference", left_out}};
    } else {
      domain_note = {{"pixel_parts", "none"},
                     {"embedding", "none: " + std::to_string(train_samples.size()) + " training films, fewer than the " + std::to_string(kMinFilms) +
                                       ", and no pixel reference from the parent: the check is unavailable for this model"}};
    }
    if (extras.domain && parent != nullptr) {
      extras.domain->populations = parent->populations;
      extras.domain->modalities = parent->modalities;
    }
  }
  // This site's calibration replaces the parent's populations' own: they were fitted to the
  // parent's outputs on other sites' films.
  if (extras.domain) {
    for (auto& pop : extras.domain->populations) pop.calibration.reset();
  }

  // The trained model is saved first under a name of this run alone, then moved to a free version
  // name and registered: a name taken meanwhile (another run, a folder left behind) costs nothing
  // but the next name, and if no name can be had the folder stays where it is, said so.
  const fs::path partial = *models / (".partial-" + c.run_name + "-" + std::to_string(::getpid()));
  if (auto saved = save_model_folder(*candidate, extras, partial); !saved) return saved.error();

  auto [pass, reason] = gate(metrics, active_metrics, options.gate_tolerance);
  if (!options.allow_promotion) {
    pass = false;
    reason = "kept as a candidate (promotion not allowed for this run); " + reason;
  }
  c.hyperparameters["strategy"] = c.strategy;
  c.hyperparameters["started_by"] = options.author;
  auto snapshot = labelled_summary(data);
  auto labels_used = training_labels_used(catalog);
  if (!labels_used) return labels_used.error();
  snapshot["labels"] = *labels_used;

  std::optional<Result<ModelRecord>> registered;
  std::string version;
  for (int attempt = 0; attempt < 100 && !registered; ++attempt) {
    auto next = next_version(catalog, base.record.version, *models);
    if (!next) return next.error();
    version = *next;
    const fs::path dir = *models / version;
    fs::rename(partial, dir, ec);
    if (ec) {
      if (ec == std::errc::directory_not_empty || ec == std::errc::file_exists || ec == std::errc::not_a_directory) continue;
      return Error{ErrorKind::Io, "cannot move " + partial.string() + " to " + dir.string() + ": " + ec.message() +
                                      "; the trained model is kept in " + partial.string()};
    }
    metrics.model_version = version;
    metrics.labels = *labels_used;
    if (c.backbone_trained) c.hyperparameters["backbone_version"] = version;  // a trained backbone is its own
    json metrics_json = to_json(metrics);
    if (active_metrics) metrics_json["active_at_training"] = to_json(*active_metrics);
    metrics_json["history"] = detail::to_json(c.history);
    metrics_json["gate"] = {{"promoted", pass}, {"reason", reason}, {"tolerance", options.gate_tolerance}};
    if (!problems.empty()) metrics_json["unreadable_images"] = problems;
    if (!domain_note.is_null()) metrics_json["domain_reference"] = domain_note;
    for (const auto& [key, value] : c.extra_metrics.items()) metrics_json[key] = value;

    ModelRecord record;
    record.version = version;
    record.parent_id = base.record.id > 0 ? std::optional<std::int64_t>(base.record.id) : std::nullopt;
    record.name = version;
    record.strategy = c.strategy;
    record.hyperparameters = dump_json(c.hyperparameters);
    record.label_snapshot = dump_json(snapshot);
    record.metrics = dump_json(metrics_json);
    record.status = pass ? ModelStatus::Active : ModelStatus::Candidate;
    record.status_reason = reason;
    record.path = fs::absolute(dir, ec).string();
    auto done = catalog.register_model(record, c.config.labels);
    if (!done) {
      // Registered meanwhile by another run of this catalog: take the folder back, try the next name.
      auto taken = catalog.find_model(version);
      if (taken && taken->has_value() && !fs::exists(partial, ec)) {
        fs::rename(dir, partial, ec);
        if (!ec) continue;
      }
      return Error{done.error().kind, done.error().message + "; the trained model is kept in " + dir.string()};
    }
    registered = std::move(done);
  }
  if (!registered) {
    return Error{ErrorKind::Io, "no free version name for the trained model; it is kept in " + partial.string()};
  }
  FinetuneResult result;
  result.model = **registered;
  if (base.record.id > 0) result.parent = base.record;
  result.strategy = c.strategy;
  result.metrics = std::move(metrics);
  result.parent_metrics = std::move(active_metrics);
  result.promoted = pass;
  result.reason = reason;
  result.history = c.history;
  return result;
}

}  // namespace detail

std::string evaluation_json(const EvaluationReport& report) { return dump_json(detail::to_json(report)); }

Result<FinetuneResult> finetune(Catalog& catalog, const FinetuneOptions& options, const FinetuneCallback& progress,
                                const std::atomic<bool>* cancel) {
  Run run{catalog, options, progress, cancel, Clock::now(), {}};
  run.report(Phase::Preparing);
  auto base = load_model(catalog, options.base_model);
  if (!base) return base.error();
  if (!base->model.config().multi_label()) {
    return Error{ErrorKind::Invalid, "fine-tuning needs a multi-label model; " + base->record.version + " is single-label"};
  }
  auto events = detail::training_labels(catalog);
  if (!events) return events.error();
  auto data = build_dataset(catalog, base->model.config().labels, *events, snapshot_of(base->record), true);
  if (!data) return data.error();
  if (data->samples.empty()) return Error{ErrorKind::Invalid, "no labelled images in the catalog: label some first"};
  const Strategy strategy = choose(options.strategy, data->samples.size());

  // The job (for resuming) is keyed by what defines the run.
  json params = {{"base", base->record.version}, {"strategy", to_string(strategy)}, {"epochs", options.epochs}, {"k", options.k},
                 {"batch_size", options.batch_size}, {"learning_rate", options.learning_rate}, {"seed", options.seed},
                 {"labels_up_to", data->max_event_id}};
  auto job = catalog.unfinished_job("finetune", dump_json(params));
  if (!job) return job.error();
  std::int64_t job_id = 0;
  if (job->has_value()) {
    job_id = (*job)->id;
  } else {
    auto created = catalog.create_job("finetune", dump_json(params), {});
    if (!created) return created.error();
    job_id = *created;
  }
  auto models = models_dir(catalog);
  if (!models) return models.error();
  const fs::path checkpoint_dir = *models / ".checkpoints" / ("job-" + std::to_string(job_id));
  std::error_code ec;

  std::vector<std::string> problems;
  Result<Trained> trained = Error{ErrorKind::Invalid, "no strategy"};
  if (strategy == Strategy::Calibrate) {
    // The same weights; only the calibration (and so the thresholds) is fitted to this site's labels.
    trained = Trained{base->model.config(), base->model.weights(), {}, json{{"strategy", "calibrate"}, {"backbone_version", backbone_of(base->record)}}};
  } else if (strategy == Strategy::Head) {
    trained = train_head(run, *base, *data, problems);
  } else {
    trained = train_blocks(run, *base, *data, strategy, problems, checkpoint_dir);
  }
  if (!trained) {
    if (trained.error().kind != ErrorKind::Interrupted) (void)catalog.set_job_status(job_id, JobStatus::Failed, dump_json(json{{"error", trained.error().message}}));
    return trained.error();
  }

  detail::Candidate candidate{std::move(trained->config), std::move(trained->weights), std::move(trained->history),
                              std::move(trained->hyperparameters), to_string(strategy),
                              strategy != Strategy::Head && strategy != Strategy::Calibrate, json::object(),
                              "job-" + std::to_string(job_id)};
  auto result = detail::register_candidate(catalog, *base, candidate, *data, options, problems, progress, cancel);
  if (!result) return result.error();
  (void)catalog.set_job_status(job_id, JobStatus::Done, dump_json(json{{"model", result->model.version}, {"promoted", result->promoted}}));
  fs::remove_all(checkpoint_dir, ec);
  result->seconds = seconds_since(run.t0);
  run.report(Phase::Done);
  return result;
}

Result<EvaluationReport> evaluate(Catalog& catalog, const std::string& model_spec, const fs::path& labels_csv,
                                  const FinetuneCallback& progress, const std::atomic<bool>* cancel) {
  auto model = load_model(catalog, model_spec);
  if (!model) return model.error();
  std::vector<LabelEvent> events;
  std::string labels_used;
  if (!labels_csv.empty()) {
    std::vector<LabelInput> inputs;
    auto read = read_label_csv(catalog, labels_csv, "evaluate", inputs);
    if (!read) return read.error();
    std::int64_t n = 0;
    for (const auto& in : inputs) {
      auto inst = catalog.find_instance(in.image);
      if (!inst) return inst.error();
      if (!inst->has_value()) continue;
      LabelEvent e;
      e.id = ++n;
      e.instance_id = (*inst)->id;
      e.sop_instance_uid = (*inst)->sop_instance_uid;
      e.finding = in.finding;
      e.value = in.value;
      events.push_back(std::move(e));
    }
    labels_used = "csv: " + labels_csv.string();
  } else {
    auto used = detail::training_labels_used(catalog);
    if (!used) return used.error();
    labels_used = *used;
    auto current = detail::training_labels(catalog);
    if (!current) return current.error();
    events = std::move(current.value());
  }
  auto data = build_dataset(catalog, model->model.config().labels, events, 0, false);
  if (!data) return data.error();
  std::vector<Sample*> chosen;
  for (auto& s : data->samples) {
    if (!labels_csv.empty() || s.validation) chosen.push_back(&s);
  }
  FinetuneProgress p;
  p.phase = Phase::Validating;
  p.steps = static_cast<std::int64_t>(chosen.size());
  if (progress) progress(p);
  std::vector<std::string> problems;
  auto loaded = load_images(chosen, model->model.config(), read_display, cancel, problems);
  if (!loaded) return loaded.error();
  std::vector<const Sample*> samples(chosen.begin(), chosen.end());
  auto probabilities = predict(model->model, samples, cancel);
  if (!probabilities) return probabilities.error();
  auto report = evaluate_probabilities(data->outputs, samples, *probabilities, model->model.config().labels);
  report.model_version = model->record.version;
  report.labels = labels_used;
  return report;
}

Result<bool> in_validation_split(Catalog& catalog, const Instance& image) {
  auto secret = catalog.secret();
  if (!secret) return secret.error();
  return is_validation_patient(*secret, patient_key(image.patient_id, image.patient_name, image.study_instance_uid));
}

Status promote_model(Catalog& catalog, const std::string& version_or_id, const std::string& reason) {
  auto found = catalog.find_model(version_or_id);
  if (!found) return found.error();
  if (!found->has_value()) return Error{ErrorKind::NotFound, "no model " + version_or_id};
  return catalog.activate_model((*found)->id, reason.empty() ? "promoted by hand" : reason);
}

Result<ModelRecord> rollback_model(Catalog& catalog) {
  auto active = catalog.active_model();
  if (!active) return active.error();
  if (!active->has_value()) return Error{ErrorKind::NotFound, "no active model to roll back"};
  const ModelRecord current = **active;
  if (!current.parent_id) return Error{ErrorKind::Invalid, current.version + " has no parent to roll back to"};
  auto parent = catalog.find_model(std::to_string(*current.parent_id));
  if (!parent) return parent.error();
  if (!parent->has_value()) return Error{ErrorKind::NotFound, "the parent of " + current.version + " is missing"};
  auto done = catalog.activate_model((*parent)->id, "rolled back from " + current.version);
  if (!done) return done.error();
  auto now = catalog.find_model((*parent)->version);
  if (!now) return now.error();
  return **now;
}

Status export_model(Catalog& catalog, const std::string& version_or_id, const fs::path& dir) {
  auto model = load_model(catalog, version_or_id);
  if (!model) return model.error();
  auto saved = model->model.save(dir, inference::DType::F32);
  if (!saved) return from_inference(saved.error());
  return core::Done{};
}

}  // namespace hilum::app
