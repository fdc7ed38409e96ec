// The training loop shared by fine-tuning (finetune.cpp) and training from a folder (train.cpp).
#include "trainer.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <system_error>
#include <thread>

#include "hilum/core/atomic_file.hpp"
#include "hilum/app/hash.hpp"
#include "hilum/inference/model_extras.hpp"
#include "hilum/inference/precision.hpp"
#include "hilum/training/calibrate.hpp"
#include "hilum/training/backprop.hpp"
#include "hilum/training/loss.hpp"
#include "hilum/training/metrics.hpp"
#include "hilum/training/optim.hpp"
#include "text.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace hilum::app::detail {

using inference::Matrix;
using Clock = std::chrono::steady_clock;

Error from_inference(const inference::Error& e) {
  return Error{e.kind == inference::ErrorKind::NotFound ? ErrorKind::NotFound : ErrorKind::Invalid, e.message};
}

std::string precision_name(inference::Precision requested) {
  return inference::available_precision(requested) == inference::Precision::BF16 ? "bf16" : "f32";
}

EvaluationReport evaluate_probabilities(const std::vector<std::string>& outputs, const std::vector<const Sample*>& samples,
                                        const Matrix& probabilities, const std::vector<std::string>& model_labels) {
  EvaluationReport report;
  report.images = static_cast<int>(samples.size());
  std::set<std::string> patients;
  for (const Sample* s : samples) patients.insert(s->patient);
  report.patients = static_cast<int>(patients.size());
  double sum = 0.0;
  int counted = 0;
  for (std::size_t j = 0; j < outputs.size(); ++j) {
    auto m = std::find(model_labels.begin(), model_labels.end(), outputs[j]);
    if (m == model_labels.end()) continue;  // the model has no output for it
    const auto col = static_cast<Eigen::Index>(m - model_labels.begin());
    std::vector<double> scores;
    std::vector<int> labels;
    for (std::size_t i = 0; i < samples.size(); ++i) {
      if (samples[i]->mask[j] <= 0.0f) continue;
      scores.push_back(probabilities(static_cast<Eigen::Index>(i), col));
      labels.push_back(samples[i]->target[j] > 0.5f ? 1 : 0);
    }
    if (scores.empty()) continue;
    FindingMetrics f;
    f.finding = outputs[j];
    f.positives = static_cast<int>(std::count(labels.begin(), labels.end(), 1));
    f.negatives = static_cast<int>(labels.size()) - f.positives;
    if (auto a = training::auroc(scores, labels)) {
      f.auroc = a->value;
      f.auroc_low = a->ci_low;
      f.auroc_high = a->ci_high;
      sum += a->value;
      ++counted;
      const auto t = training::youden_threshold(scores, labels);
      f.threshold = t.threshold;
      f.sensitivity = t.sensitivity;
      f.specificity = t.specificity;
    }
    f.ece = training::expected_calibration_error(scores, labels);
    report.findings.push_back(std::move(f));
  }
  if (counted > 0) report.mean_auroc = sum / counted;
  return report;
}

Result<SampleOutputs> forward_samples(const inference::ViTModel& model, const std::vector<const Sample*>& samples,
                                      const std::atomic<bool>* cancel) {
  const auto n = static_cast<Eigen::Index>(samples.size());
  const auto labels = static_cast<Eigen::Index>(model.config().labels.size());
  SampleOutputs out{Matrix(n, labels), Matrix(n, labels), Matrix(n, model.config().hidden_size)};
  for (std::size_t start = 0; start < samples.size(); start += 8) {
    if (cancel != nullptr && cancel->load()) return Error{ErrorKind::Interrupted, "cancelled"};
    std::vector<inference::Image> batch;
    const std::size_t end = std::min(samples.size(), start + 8);
    for (std::size_t i = start; i < end; ++i) batch.push_back(inference::normalise(samples[i]->grey.data(), model.config()));
    auto r = model.forward(batch);
    if (!r) return from_inference(r.error());
    const auto rows = static_cast<Eigen::Index>(end - start);
    out.logits.middleRows(static_cast<Eigen::Index>(start), rows) = r->logits;
    out.probabilities.middleRows(static_cast<Eigen::Index>(start), rows) = r->probabilities;
    out.embeddings.middleRows(static_cast<Eigen::Index>(start), rows) = r->embeddings;
  }
  return out;
}

inference::Calibration fit_calibration(const std::vector<std::string>& labels, const std::vector<const Sample*>& samples, const Matrix& logits,
                                       const std::string& fitted_on) {
  inference::Calibration c;
  c.labels = labels;
  c.fitted_on = fitted_on;
  c.images = static_cast<int>(samples.size());
  for (std::size_t j = 0; j < labels.size(); ++j) {
    std::vector<double> z;
    std::vector<int> y;
    for (std::size_t i = 0; i < samples.size(); ++i) {
      if (j >= samples[i]->mask.size() || samples[i]->mask[j] <= 0.0f) continue;
      z.push_back(logits(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)));
      y.push_back(samples[i]->target[j] > 0.5f ? 1 : 0);
    }
    c.scaling.push_back(training::fit_platt(z, y));
  }
  return c;
}

void fit_calibrations(inference::ModelExtras& extras, const std::vector<std::string>& labels, const std::vector<const Sample*>& samples,
                      const Matrix& logits, const std::string& fitted_on, int min_population_images) {
  extras.calibration = fit_calibration(labels, samples, logits, fitted_on);
  if (!extras.domain) return;
  auto& populations = extras.domain->populations;
  for (auto& pop : populations) {
    pop.calibration.reset();
    if (populations.size() < 2) continue;
    auto [rows, own] = population_rows(samples, logits, pop.name);
    if (static_cast<int>(rows.size()) < std::max(1, min_population_images)) continue;
    pop.calibration = fit_calibration(labels, rows, own,
                                      fitted_on.empty() ? "" : "Platt scaling on the " + std::to_string(rows.size()) + " " + pop.name + " images of those");
    // An output the population cannot calibrate (no positives or no negatives of its own, or a
    // slope that would reverse its ranking: fit_platt's identity) keeps the model's calibration.
    for (std::size_t j = 0; j < pop.calibration->scaling.size(); ++j) {
      const auto& s = pop.calibration->scaling[j];
      if (s.a == 1.0 && s.b == 0.0) pop.calibration->scaling[j] = extras.calibration->scaling[j];
    }
  }
}

Matrix shown_probabilities(const inference::ModelExtras& extras, const std::vector<const Sample*>& samples, const SampleOutputs& out) {
  std::vector<std::optional<double>> ages;
  ages.reserve(samples.size());
  for (const auto* s : samples) ages.push_back(s->age_years);
  return inference::calibrated_probabilities(extras, out.logits, out.embeddings, ages);
}

namespace {

std::pair<std::vector<const Sample*>, SampleOutputs> rows_of(const std::vector<const Sample*>& samples, const SampleOutputs& out,
                                                             const std::vector<Eigen::Index>& rows) {
  std::pair<std::vector<const Sample*>, SampleOutputs> r;
  r.second.logits.resize(static_cast<Eigen::Index>(rows.size()), out.logits.cols());
  r.second.embeddings.resize(static_cast<Eigen::Index>(rows.size()), out.embeddings.cols());
  for (std::size_t k = 0; k < rows.size(); ++k) {
    r.first.push_back(samples[static_cast<std::size_t>(rows[k])]);
    r.second.logits.row(static_cast<Eigen::Index>(k)) = out.logits.row(rows[k]);
    r.second.embeddings.row(static_cast<Eigen::Index>(k)) = out.embeddings.row(rows[k]);
  }
  return r;
}

}  // namespace

Matrix cross_fitted_probabilities(const inference::ModelExtras& extras, const std::vector<std::string>& labels,
                                  const std::vector<const Sample*>& samples, const SampleOutputs& out, int min_population_images) {
  std::vector<Eigen::Index> rows[2];
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const int h = static_cast<int>(keyed_hash("calibration-halves", "patient", samples[i]->patient) & 1u);
    rows[h].push_back(static_cast<Eigen::Index>(i));
  }
  Matrix p(out.logits.rows(), out.logits.cols());
  for (int h = 0; h < 2; ++h) {
    const auto [other, other_out] = rows_of(samples, out, rows[1 - h]);
    inference::ModelExtras fitted = extras;
    // Half the images: half the minimum, so that the halves are calibrated as the whole is.
    fit_calibrations(fitted, labels, other, other_out.logits, "", (min_population_images + 1) / 2);
    const auto [mine, mine_out] = rows_of(samples, out, rows[h]);
    const Matrix q = shown_probabilities(fitted, mine, mine_out);
    for (std::size_t r = 0; r < rows[h].size(); ++r) p.row(rows[h][r]) = q.row(static_cast<Eigen::Index>(r));
  }
  return p;
}

Matrix pixel_rows(const std::vector<const Sample*>& samples, const inference::ViTConfig& config, int width,
                  const std::function<std::vector<float>(const float*, int, int)>& describe) {
  Matrix out(static_cast<Eigen::Index>(samples.size()), width);
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const auto row = describe(samples[i]->grey.data(), config.input_width, config.input_height);
    for (std::size_t k = 0; k < row.size() && k < static_cast<std::size_t>(width); ++k) {
      out(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(k)) = row[k];
    }
  }
  return out;
}

namespace {
// The limits: the 99th percentile of the held-out films' distances, widened by 10% because films
// of another site differ from the training site's more than its own held-out patients do (chosen
// on bench/domain's sets: 1.8% of unseen TBX11K films flagged instead of 6.1%, and the same share
// of non-chest images).
constexpr double kDomainQuantile = 0.99, kDomainMargin = 1.1;
}  // namespace

inference::Subspace fit_embedding_reference(const Matrix& train_embeddings, const Matrix& validation_embeddings) {
  return training::fit_subspace(train_embeddings, validation_embeddings, 64, kDomainQuantile, kDomainMargin);
}

inference::DomainReference fit_domain(const inference::ViTConfig& config, const std::vector<const Sample*>& train, const Matrix& train_embeddings,
                                      const std::vector<const Sample*>& validation, const Matrix& validation_embeddings) {
  constexpr int kSide = 16;
  inference::DomainReference r;
  r.embedding = fit_embedding_reference(train_embeddings, validation_embeddings);
  r.thumbnail_side = kSide;
  const auto thumbnail = [](const float* grey, int w, int h) { return inference::domain_thumbnail(grey, w, h, kSide); };
  r.thumbnail = training::fit_subspace(pixel_rows(train, config, kSide * kSide, thumbnail), pixel_rows(validation, config, kSide * kSide, thumbnail),
                                       32, kDomainQuantile, kDomainMargin);
  // Every direction of the statistics counts (all axes but one, which the histogram's fixed sum
  // leaves empty): what tells a scanned page from a film is in directions films hardly vary in.
  r.statistics = training::fit_subspace(pixel_rows(train, config, inference::kDomainStatistics, inference::domain_statistics),
                                        pixel_rows(validation, config, inference::kDomainStatistics, inference::domain_statistics),
                                        inference::kDomainStatistics - 1, kDomainQuantile, kDomainMargin);
  return r;
}

std::pair<std::vector<const Sample*>, Matrix> rows_where(const std::vector<const Sample*>& samples, const Matrix& m,
                                                         const std::function<bool(const Sample&)>& keep) {
  std::vector<const Sample*> kept;
  std::vector<Eigen::Index> rows;
  for (std::size_t i = 0; i < samples.size() && static_cast<Eigen::Index>(i) < m.rows(); ++i) {
    if (!keep(*samples[i])) continue;
    kept.push_back(samples[i]);
    rows.push_back(static_cast<Eigen::Index>(i));
  }
  Matrix out(static_cast<Eigen::Index>(rows.size()), m.cols());
  for (std::size_t r = 0; r < rows.size(); ++r) out.row(static_cast<Eigen::Index>(r)) = m.row(rows[r]);
  return {std::move(kept), std::move(out)};
}

std::pair<std::vector<const Sample*>, Matrix> population_rows(const std::vector<const Sample*>& samples, const Matrix& m, const std::string& name) {
  return rows_where(samples, m, [&name](const Sample& s) { return s.population == name; });
}

Result<Matrix> predict(const inference::ViTModel& model, const std::vector<const Sample*>& samples, const std::atomic<bool>* cancel) {
  auto out = forward_samples(model, samples, cancel);
  if (!out) return out.error();
  return std::move(out->probabilities);
}

Status load_images(std::vector<Sample*>& samples, const inference::ViTConfig& config, const ImageReader& reader,
                   const std::atomic<bool>* cancel, std::vector<std::string>& problems) {
  const unsigned threads = std::max(1u, std::min(2u, std::thread::hardware_concurrency()));
  std::vector<std::string> errors(samples.size());
  std::atomic<std::size_t> next{0};
  auto work = [&]() {
    for (std::size_t i = next++; i < samples.size(); i = next++) {
      if (cancel != nullptr && cancel->load()) return;
      if (!samples[i]->grey.empty()) continue;
      auto image = reader(samples[i]->path);
      if (!image) {
        errors[i] = samples[i]->path + ": " + image.error().message;
        continue;
      }
      samples[i]->grey = inference::model_view(image->grey.data(), image->width, image->height, config);
      if (config.centre_crop()) {
        samples[i]->whole = inference::resize_antialiased(image->grey.data(), image->width, image->height, config.input_width,
                                                          config.input_height);
      }
    }
  };
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (cancel != nullptr && cancel->load()) return Error{ErrorKind::Interrupted, "cancelled while reading images"};
  std::vector<Sample*> kept;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    if (errors[i].empty()) kept.push_back(samples[i]);
    else problems.push_back(errors[i]);
  }
  samples = std::move(kept);
  return core::Done{};
}

json to_json(const EvaluationReport& r) {
  json j = {{"model", r.model_version}, {"images", r.images}, {"patients", r.patients}};
  if (!r.labels.empty()) j["labels"] = r.labels;
  j["mean_auroc"] = r.mean_auroc ? json(*r.mean_auroc) : json(nullptr);
  json findings = json::array();
  for (const auto& f : r.findings) {
    json o = {{"finding", f.finding}, {"positives", f.positives}, {"negatives", f.negatives}, {"ece", f.ece}};
    o["auroc"] = f.auroc ? json(*f.auroc) : json(nullptr);
    if (f.auroc) {
      o["auroc_ci"] = {f.auroc_low, f.auroc_high};
      o["threshold"] = f.threshold;
      o["sensitivity"] = f.sensitivity;
      o["specificity"] = f.specificity;
    }
    findings.push_back(std::move(o));
  }
  j["findings"] = std::move(findings);
  return j;
}

json to_json(const std::vector<EpochRecord>& history) {
  json h = json::array();
  for (const auto& e : history) {
    h.push_back({{"epoch", e.epoch}, {"train_loss", e.train_loss},
                 {"validation_auroc", e.validation_auroc ? json(*e.validation_auroc) : json(nullptr)}});
  }
  return h;
}


namespace {

fs::path state_file(const fs::path& dir) { return dir / "state.json"; }


// epoch-N/ holds the weights (config.json + model.safetensors) and optimizer.safetensors;
// state.json, written atomically last, names the newest complete one.
Status write_checkpoint(const fs::path& dir, int epoch, const inference::ViTConfig& config, const inference::ViTWeights& weights,
                        const training::AdamW& optimizer, const std::vector<EpochRecord>& history) {
  const fs::path folder = dir / ("epoch-" + std::to_string(epoch));
  std::error_code ec;
  fs::remove_all(folder, ec);
  auto model = inference::ViTModel::from_weights(config, weights);
  if (!model) return from_inference(model.error());
  auto saved = model->save(folder, inference::DType::F32);
  if (!saved) return from_inference(saved.error());
  auto opt = optimizer.save(folder / "optimizer.safetensors");
  if (!opt) return from_inference(opt.error());
  json state = {{"epoch", epoch}, {"folder", folder.filename().string()}, {"history", to_json(history)}};
  if (auto written = core::write_file_atomically(state_file(dir), dump_json(state, 2)); !written)
    return Error{ErrorKind::Io, written.error().message};
  for (int e = epoch - 1; e >= std::max(1, epoch - 3); --e) fs::remove_all(dir / ("epoch-" + std::to_string(e)), ec);
  return core::Done{};
}

// Resumes from the newest checkpoint when one exists for the same labels: weights, optimizer,
// history. Returns the first epoch still to run.
int resume(const fs::path& dir, const inference::ViTConfig& config, inference::ViTWeights& weights, training::AdamW& optimizer,
           std::vector<EpochRecord>& history) {
  if (!fs::exists(state_file(dir))) return 1;
  std::ifstream in(state_file(dir));
  auto state = json::parse(in, nullptr, false);
  if (!state.is_object() || !state.contains("folder") || !state.contains("epoch") || !state["folder"].is_string()) return 1;
  const fs::path folder = dir / state["folder"].get<std::string>();
  auto model = inference::ViTModel::load(folder);
  if (!model || model->config().labels != config.labels) return 1;
  if (!optimizer.load(folder / "optimizer.safetensors")) return 1;
  weights = model->weights();
  history.clear();
  for (const auto& h : state["history"]) {
    EpochRecord e{h["epoch"].get<int>(), h["train_loss"].get<double>(), std::nullopt};
    if (h["validation_auroc"].is_number()) e.validation_auroc = h["validation_auroc"].get<double>();
    history.push_back(e);
  }
  return state["epoch"].get<int>() + 1;
}

}  // namespace

Result<LoopResult> run_training(const inference::ViTConfig& config, inference::ViTWeights& weights, const std::vector<const Sample*>& train,
                                std::size_t samples_per_epoch, const EpochPlan& plan, const std::vector<const Sample*>& validation,
                                const std::vector<std::string>& outputs, const LoopOptions& o, const fs::path& checkpoint_dir,
                                FinetuneProgress& state, const FinetuneCallback& progress, const std::atomic<bool>* cancel) {
  const auto report = [&](Phase phase) {
    state.phase = phase;
    if (progress) progress(state);
  };
  const auto n_out = static_cast<Eigen::Index>(outputs.size());
  const int batch_size = std::max(1, o.batch_size);
  const std::int64_t steps_per_epoch =
      static_cast<std::int64_t>((samples_per_epoch + static_cast<std::size_t>(batch_size) - 1) / static_cast<std::size_t>(batch_size));
  LoopResult result;
  result.steps = steps_per_epoch * o.epochs;
  result.warmup_steps = o.warmup_steps >= 0 ? o.warmup_steps : std::max<std::int64_t>(1, result.steps / 20);

  Matrix all_targets(static_cast<Eigen::Index>(train.size()), n_out), all_mask(static_cast<Eigen::Index>(train.size()), n_out);
  for (std::size_t i = 0; i < train.size(); ++i) {
    for (Eigen::Index j = 0; j < n_out; ++j) {
      all_targets(static_cast<Eigen::Index>(i), j) = train[i]->target[static_cast<std::size_t>(j)];
      all_mask(static_cast<Eigen::Index>(i), j) = train[i]->mask[static_cast<std::size_t>(j)];
    }
  }
  const std::vector<float> pos_weight = training::positive_weights(all_targets, all_mask);

  training::TrainOptions to;
  to.first_trainable_block = o.first_trainable_block;
  to.drop_path = o.drop_path;
  to.checkpoint_activations = o.checkpoint_activations;
  to.precision = o.precision;
  training::AdamWOptions ao;
  ao.lr = o.learning_rate;
  ao.weight_decay = o.weight_decay;
  ao.layer_decay = o.layer_decay;
  training::AdamW optimizer(weights, ao);
  {
    std::vector<bool> trainable;
    for (const auto& p : training::parameters(weights)) trainable.push_back(o.first_trainable_block == 0 || p.depth > o.first_trainable_block);
    optimizer.set_trainable(std::move(trainable));
  }
  std::error_code ec;
  fs::create_directories(checkpoint_dir, ec);
  const int start_epoch = resume(checkpoint_dir, config, weights, optimizer, result.history);

  // Frozen prefix: its outputs are computed once per training image (SlimFit-style).
  std::map<const Sample*, Matrix> frozen;
  if (o.first_trainable_block > 0) {
    report(Phase::Embedding);
    for (std::size_t start = 0; start < train.size(); start += 8) {
      if (cancel != nullptr && cancel->load()) return Error{ErrorKind::Interrupted, "training cancelled"};
      std::vector<inference::Image> batch;
      const std::size_t end = std::min(train.size(), start + 8);
      for (std::size_t i = start; i < end; ++i) batch.push_back(inference::normalise(train[i]->grey.data(), config));
      auto tokens = training::frozen_prefix(config, weights, batch, o.first_trainable_block, o.precision);
      for (std::size_t i = start; i < end; ++i) frozen.emplace(train[i], std::move(tokens[i - start]));
    }
  }

  training::Tape tape;
  auto grads = training::zeros_like(weights);
  state.epochs = o.epochs;
  state.steps = result.steps;
  state.step = (start_epoch - 1) * steps_per_epoch;
  const std::int64_t first_step = state.step;
  const auto t0 = Clock::now();
  for (int epoch = start_epoch; epoch <= o.epochs; ++epoch) {
    std::mt19937_64 rng(o.seed * 1000003ull + static_cast<std::uint64_t>(epoch));
    const std::vector<const Sample*> order = plan(epoch, rng);
    double loss_sum = 0.0;
    int loss_n = 0;
    state.epoch = epoch;
    state.validation_auroc.reset();  // this epoch's comes after its validation
    for (std::size_t start = 0; start < order.size(); start += static_cast<std::size_t>(batch_size)) {
      if (cancel != nullptr && cancel->load()) {
        return Error{ErrorKind::Interrupted, "training cancelled during epoch " + std::to_string(epoch) +
                                                 "; run it again to resume after epoch " + std::to_string(epoch - 1)};
      }
      const std::size_t end = std::min(order.size(), start + static_cast<std::size_t>(batch_size));
      const auto b = static_cast<Eigen::Index>(end - start);
      Matrix targets(b, n_out), mask(b, n_out);
      for (std::size_t i = start; i < end; ++i) {
        for (Eigen::Index j = 0; j < n_out; ++j) {
          targets(static_cast<Eigen::Index>(i - start), j) = order[i]->target[static_cast<std::size_t>(j)];
          mask(static_cast<Eigen::Index>(i - start), j) = order[i]->mask[static_cast<std::size_t>(j)];
        }
      }
      to.seed = o.seed * 7919ull + static_cast<std::uint64_t>(state.step);
      training::TrainOutput out;
      if (o.first_trainable_block > 0) {
        std::vector<Matrix> tokens;
        for (std::size_t i = start; i < end; ++i) tokens.push_back(frozen.at(order[i]));
        out = training::forward_from(config, weights, tokens, to, tape);
      } else {
        std::vector<inference::Image> batch;
        for (std::size_t i = start; i < end; ++i) {
          if (o.augment) {
            const training::GreyImage g{config.input_width, config.input_height, order[i]->augmentable()};
            const auto a = training::augment(g, config.input_width, config.input_height, o.augment_options, rng);
            batch.push_back(inference::normalise(a.data.data(), config));
          } else {
            batch.push_back(inference::normalise(order[i]->grey.data(), config));
          }
        }
        out = training::forward(config, weights, batch, to, tape);
      }
      result.tape_peak_bytes = std::max(result.tape_peak_bytes, tape.bytes());
      auto loss = training::bce_with_logits(out.logits, targets, mask, pos_weight);
      training::set_zero(grads);
      training::backward(config, weights, tape, loss.dlogits, grads);
      if (o.gradient_clip > 0.0f) training::clip_grad_norm(grads, o.gradient_clip);
      optimizer.step(weights, grads, training::cosine_lr(state.step, result.steps, result.warmup_steps, o.learning_rate, o.min_learning_rate));
      loss_sum += loss.loss;
      ++loss_n;
      ++state.step;
      state.loss = loss_sum / loss_n;
      const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
      const auto done = static_cast<double>(state.step - first_step);
      state.images_per_second = elapsed > 0 ? done * batch_size / elapsed : 0.0;
      state.eta_seconds = done > 0 ? static_cast<double>(result.steps - state.step) * elapsed / done : 0.0;
      report(Phase::Training);
    }
    EpochRecord rec{epoch, loss_n > 0 ? loss_sum / loss_n : 0.0, std::nullopt};
    if (!validation.empty()) {
      report(Phase::Validating);
      auto model = inference::ViTModel::from_weights(config, weights);
      if (!model) return from_inference(model.error());
      auto p = predict(*model, validation, cancel);
      if (!p) return p.error();
      rec.validation_auroc = evaluate_probabilities(outputs, validation, *p, config.labels).mean_auroc;
      state.validation_auroc = rec.validation_auroc;
      report(Phase::Validating);  // now with this epoch's AUROC
    }
    result.history.push_back(rec);
    auto saved = write_checkpoint(checkpoint_dir, epoch, config, weights, optimizer, result.history);
    if (!saved) return saved.error();
    report(Phase::Training);
  }
  return result;
}

std::vector<fs::path> image_files(const fs::path& dir) {
  const auto is_image = [](const fs::path& p) {
    const std::string ext = lower(p.extension().string());
    return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".dcm" || ext == ".dicom" || ext.empty();
  };
  std::vector<fs::path> files;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec); it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (ec) break;
    if (it->is_regular_file(ec) && is_image(it->path())) files.push_back(it->path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace hilum::app::detail
