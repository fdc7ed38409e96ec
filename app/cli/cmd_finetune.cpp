// hilum-cli finetune / evaluate.
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "commands.hpp"
#include "hilum/app/finetune.hpp"
#include "hilum/app/json.hpp"
#include "hilum/app/train.hpp"
#include "hilum/core/numbers.hpp"

namespace fs = std::filesystem;

namespace hilum::cli {
namespace {

using app::JsonObject;

void print_report(const app::EvaluationReport& r) {
  std::printf("%s on %d image(s) of %d patient(s)\n", r.model_version.c_str(), r.images, r.patients);
  if (!r.labels.empty()) std::printf("  labels: %s\n", r.labels.c_str());
  std::printf("  %-20s %5s %5s  %-22s %6s %9s %6s %6s\n", "finding", "pos", "neg", "AUROC (95% CI)", "ECE", "threshold", "sens", "spec");
  for (const auto& f : r.findings) {
    if (f.auroc) {
      std::printf("  %-20s %5d %5d  %.3f (%.3f-%.3f)    %6.3f %9.3f %6.3f %6.3f\n", f.finding.c_str(), f.positives, f.negatives, *f.auroc,
                  f.auroc_low, f.auroc_high, f.ece, f.threshold, f.sensitivity, f.specificity);
    } else {
      std::printf("  %-20s %5d %5d  %-22s %6.3f\n", f.finding.c_str(), f.positives, f.negatives, "- (one class only)", f.ece);
    }
  }
  if (r.mean_auroc) std::printf("  mean AUROC %.4f\n", *r.mean_auroc);
  else std::printf("  mean AUROC: none (no finding has both classes among the validation images)\n");
}

}  // namespace

int cmd_finetune(const Global& global, const Args& args) {
  app::FinetuneOptions o;
  bool json = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const auto value = [&]() -> std::optional<std::string> {
      if (i + 1 >= args.size()) return std::nullopt;
      return args[++i];
    };
    if (a == "--json") {
      json = true;
    } else if (a == "--strategy") {
      auto v = value();
      auto s = v ? app::parse_strategy(*v) : std::nullopt;
      if (!s) return usage_error("finetune: --strategy takes auto, head, last-k, full or calibrate");
      o.strategy = *s;
    } else if (a == "--epochs" || a == "--k" || a == "--batch") {
      auto v = value();
      auto n = v ? parse_number<int>(*v) : std::nullopt;
      if (!n || *n < 1 || *n > 10000) return usage_error("finetune: " + a + " takes a positive number");
      (a == "--epochs" ? o.epochs : a == "--k" ? o.k : o.batch_size) = *n;
    } else if (a == "--lr") {
      auto v = value();
      auto x = v ? parse_number<float>(*v) : std::nullopt;
      if (!x || *x <= 0.0f || *x > 1.0f) return usage_error("finetune: --lr takes a learning rate in (0, 1]");
      o.learning_rate = *x;
    } else if (a == "--seed") {
      auto v = value();
      auto x = v ? parse_number<std::uint64_t>(*v) : std::nullopt;
      if (!x) return usage_error("finetune: --seed takes a number");
      o.seed = *x;
    } else if (a == "--model") {
      auto v = value();
      if (!v) return usage_error("finetune: --model takes a version or id");
      o.base_model = *v;
    } else if (a == "--tolerance") {
      auto v = value();
      auto x = v ? parse_number<double>(*v) : std::nullopt;
      if (!x || *x < 0.0 || *x > 0.5) return usage_error("finetune: --tolerance takes 0..0.5");
      o.gate_tolerance = *x;
    } else if (a == "--no-promote") {
      o.allow_promotion = false;
    } else if (a == "--precision") {
      auto v = value();
      auto p = v ? parse_precision(*v) : std::nullopt;
      if (!p) return usage_error("finetune: --precision takes f32 or bf16");
      o.precision = *p;
    } else {
      return usage_error("finetune: unknown argument " + a);
    }
  }
  auto catalog = open_catalog(global, app::Catalog::Mode::ReadWrite);
  if (!catalog) return kExitCatalog;
  InterruptGuard guard;
  int last_epoch = -1;
  std::optional<app::Phase> last_phase;
  auto progress = [&](const app::FinetuneProgress& p) {
    if (json) return;
    if (p.phase != last_phase && p.phase != app::Phase::Training) std::fprintf(stderr, "finetune: %s\n", app::to_string(p.phase));
    last_phase = p.phase;
    if (p.phase == app::Phase::Training && p.epoch != last_epoch && p.step > 0 && p.steps > 0 && p.step % std::max<std::int64_t>(1, p.steps / p.epochs) == 0) {
      last_epoch = p.epoch;
      std::fprintf(stderr, "finetune: epoch %d/%d  loss %.4f  %.1f images/s  ETA %.0f s%s\n", p.epoch, p.epochs, p.loss, p.images_per_second,
                   p.eta_seconds, p.validation_auroc ? ("  validation AUROC " + hilum::core::format_fixed(*p.validation_auroc, 4)).c_str() : "");
    }
  };
  auto r = app::finetune(*catalog, o, progress, InterruptGuard::flag());
  if (!r) return report_error(r.error());
  if (json) {
    JsonObject out;
    out.add("version", r->model.version).add("status", app::to_string(r->model.status)).add("strategy", r->strategy).add("promoted", r->promoted);
    out.add("reason", r->reason).add("seconds", r->seconds);
    if (r->parent) out.add("parent", r->parent->version);
    out.add_raw("metrics", app::evaluation_json(r->metrics));
    if (r->parent_metrics) out.add_raw("active_metrics", app::evaluation_json(*r->parent_metrics));
    std::cout << out.str() << '\n';
  } else {
    std::printf("new version %s (%s, strategy %s, %.1f s)\n", r->model.version.c_str(), app::to_string(r->model.status), r->strategy.c_str(), r->seconds);
    print_report(r->metrics);
    if (r->parent_metrics) {
      std::printf("active model on the same images:\n");
      print_report(*r->parent_metrics);
    }
    std::printf("%s: %s\n", r->promoted ? "promoted" : "kept as a candidate", r->reason.c_str());
  }
  return kExitOk;
}

int cmd_evaluate(const Global& global, const Args& args) {
  std::string model;
  fs::path csv, data;
  app::PatientSplit split;
  bool json = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--json") json = true;
    else if (a == "--model" && i + 1 < args.size()) model = args[++i];
    else if (a == "--labels" && i + 1 < args.size()) csv = args[++i];
    else if (a == "--data" && i + 1 < args.size()) data = args[++i];
    else if (a == "--seed" && i + 1 < args.size()) {
      auto x = parse_number<std::uint64_t>(args[++i]);
      if (!x) return usage_error("evaluate: --seed takes a number");
      split.seed = *x;
    } else if (a == "--fold" && i + 1 < args.size()) {
      auto x = parse_number<int>(args[++i]);
      if (!x || *x < 0 || *x >= split.folds()) return usage_error("evaluate: --fold takes 0.." + std::to_string(split.folds() - 1));
      split.fold = *x;
    } else {
      return usage_error("evaluate: unknown argument " + a + " (evaluate --model ID [--labels CSV | --data DIR [--seed N] [--fold K]] [--json])");
    }
  }
  if (!data.empty() && !csv.empty()) return usage_error("evaluate: --labels and --data are alternatives");
  auto catalog = open_catalog(global, app::Catalog::Mode::ReadWriteCreate);
  if (!catalog) return kExitCatalog;
  InterruptGuard guard;
  const auto run = [&]() -> app::Result<app::EvaluationReport> {
    if (data.empty()) return app::evaluate(*catalog, model, csv, {}, InterruptGuard::flag());
    // The validation patients `train --data DIR --seed N --fold K` held out.
    auto loaded = app::load_model(*catalog, model);
    if (!loaded) return loaded.error();
    auto report = app::evaluate_folder(loaded->model, data, split, InterruptGuard::flag(),
                                       &loaded->extras);
    if (report) report->model_version = loaded->record.version.empty() ? fs::path(model).filename().string() : loaded->record.version;
    return report;
  };
  auto r = run();
  if (!r) return report_error(r.error());
  if (json) std::cout << app::evaluation_json(*r) << '\n';
  else print_report(*r);
  return kExitOk;
}

int cmd_train(const Global&, const Args& args) {
  app::TrainOptions o;
  bool json = false, f32 = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const bool has_value = i + 1 < args.size();
    if (a == "--json") {
      json = true;
    } else if (a == "--f32") {
      f32 = true;
    } else if (a == "--data" && has_value) {
      o.data.push_back(app::DataSource::folder(args[++i]));
    } else if ((a == "--repeat" || a == "--population" || a == "--ages") && has_value) {
      if (o.data.empty()) return usage_error("train: " + a + " applies to the --data before it");
      app::DataSource& src = o.data.back();
      const std::string v = args[++i];
      if (a == "--repeat") {
        auto n = parse_number<int>(v);
        if (!n || *n < 1 || *n > 100) return usage_error("train: --repeat takes 1..100");
        src.repeat = *n;
      } else if (a == "--population") {
        src.population = v;
      } else {
        const auto dash = v.find('-');
        auto lo = dash == std::string::npos ? std::nullopt : parse_number<double>(v.substr(0, dash));
        auto hi = dash == std::string::npos ? std::nullopt : parse_number<double>(v.substr(dash + 1));
        if (!lo || !hi || *lo < 0 || *hi < *lo || *hi > 150) return usage_error("train: --ages takes MIN-MAX in years, e.g. 1-5");
        src.min_age_years = *lo;
        src.max_age_years = *hi;
      }
    } else if (a == "--outputs" && has_value) {
      std::string list = args[++i];
      std::size_t start = 0;
      while (start <= list.size()) {
        const auto comma = list.find(',', start);
        std::string name = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        while (!name.empty() && name.front() == ' ') name.erase(name.begin());
        while (!name.empty() && name.back() == ' ') name.pop_back();
        if (!name.empty()) o.outputs.push_back(name);
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
    } else if (a == "--reference-data" && has_value) {
      o.reference_data.emplace_back(args[++i]);
    } else if (a == "--drop-path" && has_value) {
      auto x = parse_number<float>(args[++i]);
      if (!x || *x < 0.0f || *x > 1.0f) return usage_error("train: --drop-path takes a value in [0, 1]");
      o.drop_path = *x;
    } else if (a == "--fold" && has_value) {
      auto x = parse_number<int>(args[++i]);
      if (!x || *x < 0 || *x >= o.split().folds()) return usage_error("train: --fold takes 0.." + std::to_string(o.split().folds() - 1));
      o.validation_fold = *x;
    } else if (a == "--layer-decay" && has_value) {
      auto x = parse_number<float>(args[++i]);
      if (!x || !(*x > 0.0f && *x <= 1.0f)) return usage_error("train: --layer-decay takes a value in (0, 1]");
      o.layer_decay = *x;
    } else if (a == "--center-crop" && has_value) {
      auto x = parse_number<double>(args[++i]);
      if (!x || !(*x >= 0.5 && *x <= 1.0)) return usage_error("train: --center-crop takes a share of each side in 0.5..1");
      o.center_crop = *x;
    } else if (std::string error; training_option("train", args, i, o, 0, error)) {
      if (!error.empty()) return usage_error(error);
    } else {
      return usage_error("train: unknown argument " + a);
    }
  }
  if (o.data.empty() || o.out.empty()) return usage_error("train: --data DIR and --out DIR are required");
  if (o.epochs == 0 && o.init.empty()) return usage_error("train: --epochs 0 (no training: refit calibration and domain reference) needs --init DIR");
  if (f32) o.dtype = inference::DType::F32;
  InterruptGuard guard;
  int last_epoch = 0;
  auto progress = [&](const app::FinetuneProgress& p) {
    if (json) return;
    if (p.phase == app::Phase::Training && p.epoch != last_epoch && p.epoch > 0) {
      last_epoch = p.epoch;
      std::fprintf(stderr, "train: epoch %d/%d started (%.1f images/s, ETA %.0f s)\n", p.epoch, p.epochs, p.images_per_second, p.eta_seconds);
    }
    if (p.phase == app::Phase::Validating && p.validation_auroc) std::fprintf(stderr, "train: loss %.4f, validation AUROC %.4f\n", p.loss, *p.validation_auroc);
  };
  auto r = app::train_from_folder(o, progress, InterruptGuard::flag());
  if (!r) return report_error(r.error());
  if (json) {
    std::cout << r->report_json << '\n';
  } else {
    print_report(r->validation);
    for (const auto& pop : r->populations) {
      std::printf("population %s:\n", pop.population.c_str());
      print_report(pop.validation);
    }
    for (std::size_t j = 0; j < r->accuracy.size(); ++j) std::printf("  accuracy at threshold (%s): %.4f\n", r->validation.findings[j].finding.c_str(), r->accuracy[j]);
    std::printf("wrote %s (%d training images of %d patients, %d validation images of %d patients, %.0f s)\n", o.out.c_str(), r->train_images,
                r->train_patients, r->validation_images, r->validation_patients, r->seconds);
  }
  return kExitOk;
}

}  // namespace hilum::cli
