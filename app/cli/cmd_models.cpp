// hilum-cli classify / heatmap / models.
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "commands.hpp"
#include "hilum/app/classify.hpp"
#include "hilum/app/cluster.hpp"
#include "hilum/app/finetune.hpp"
#include "hilum/app/json.hpp"
#include "hilum/app/png.hpp"

namespace fs = std::filesystem;

namespace hilum::cli {
namespace {

using app::JsonObject;

std::string model_json(const app::ModelRecord& m) {
  JsonObject o;
  o.add("id", m.id).add("version", m.version).add("status", app::to_string(m.status)).add("strategy", m.strategy).add("path", m.path);
  o.add("created_at", m.created_at).add("trained_on", app::trained_on(m)).add_raw("metrics", m.metrics.empty() ? "{}" : m.metrics);
  if (m.parent_id) o.add("parent_id", *m.parent_id);
  return o.str();
}

}  // namespace

int cmd_classify(const Global& global, const Args& args) {
  std::string model_spec;
  bool all = false, json = false;
  int batch = 8;
  std::vector<std::string> images;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--model") {
      if (i + 1 >= args.size()) return usage_error("classify: --model takes a folder, version or id");
      model_spec = args[++i];
    } else if (a == "--all") {
      all = true;
    } else if (a == "--json") {
      json = true;
    } else if (a == "--batch") {
      const auto n = i + 1 < args.size() ? parse_number<double>(args[++i]) : std::nullopt;
      if (!n || *n < 1 || *n > 256) return usage_error("classify: --batch takes 1..256");
      batch = static_cast<int>(*n);
    } else if (a.rfind("--", 0) == 0) {
      return usage_error("classify: unknown option " + a);
    } else {
      images.push_back(a);
    }
  }
  if (all == !images.empty()) return usage_error("classify: give --all or IMAGE... (one of them)");
  auto catalog = open_catalog(global, app::Catalog::Mode::ReadWriteCreate);
  if (!catalog) return kExitCatalog;
  auto model = app::load_model(*catalog, model_spec);
  if (!model) return report_error(model.error());
  std::vector<app::Instance> todo;
  if (all) {
    app::InstanceFilter everything;
    everything.with_thumbnails = false;
    auto list = catalog->list_instances(everything);
    if (!list) return report_error(list.error());
    todo = std::move(list.value());
  } else {
    for (const auto& im : images) {
      auto found = catalog->find_instance(im);
      if (!found) return report_error(found.error());
      if (found->has_value()) {
        todo.push_back(std::move(**found));
      } else if (fs::is_regular_file(im)) {
        app::Instance loose;  // not catalogued: classified, not stored
        loose.path = im;
        todo.push_back(std::move(loose));
      } else {
        return report_error(app::Error{app::ErrorKind::NotFound, "no such image in the catalog, and no such file: " + im});
      }
    }
  }
  InterruptGuard guard;  // Ctrl-C: what was classified stays stored
  auto results = app::classify(
      *catalog, *model, todo, batch,
      [&](std::size_t done, std::size_t total) {
        if (total > 1) std::fprintf(stderr, "\rclassified %zu / %zu", done, total);
        if (total > 1 && done == total) std::fputc('\n', stderr);
      },
      InterruptGuard::flag());
  if (!results) return report_error(results.error());
  int failures = 0;
  for (const auto& r : results.value()) {
    if (!r.error.empty()) ++failures;
    if (json) {
      JsonObject o;
      o.add("sop_instance_uid", r.sop_instance_uid).add("path", r.path).add("model", model->record.version);
      if (!r.error.empty()) {
        o.add("ok", false).add("error", r.error);
      } else {
        JsonObject p;
        for (const auto& [name, prob] : r.probabilities) p.add(name, prob);
        o.add("ok", true).add_raw("probabilities", p.str()).add("milliseconds", r.milliseconds);
        if (r.domain.population.population.empty()) o.add_raw("population", "null").add_raw("population_from", "null");
        else o.add("population", r.domain.population.population).add("population_from", r.domain.population.chosen_by);
        o.add("in_domain", r.domain.in_domain);
        if (r.domain.score) o.add("domain_score", *r.domain.score);
        else o.add_raw("domain_score", "null");
        o.add("domain_reason", r.domain.reason);
      }
      std::cout << o.str() << '\n';
    } else {
      std::printf("%s  (%s)\n", r.path.c_str(), r.sop_instance_uid.empty() ? "not catalogued" : r.sop_instance_uid.c_str());
      if (!r.error.empty()) std::printf("  error: %s\n", r.error.c_str());
      if (r.error.empty() && !r.domain.in_domain) std::printf("  OUT OF DOMAIN: %s\n", r.domain.reason.c_str());
      for (const auto& [name, prob] : r.probabilities) std::printf("  %-20s %6.3f\n", name.c_str(), prob);
    }
  }
  return failures == 0 ? kExitOk : kExitFailures;
}

int cmd_heatmap(const Global& global, const Args& args) {
  std::string model_spec, method = "rollout", finding;
  std::optional<std::string> image, output;
  double opacity = 0.5, discard = 0.9;
  int max_size = 0;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const auto next = [&]() -> std::optional<std::string> { return i + 1 < args.size() ? std::optional<std::string>(args[++i]) : std::nullopt; };
    if (a == "-o" || a == "--output") output = next();
    else if (a == "--model") model_spec = next().value_or("");
    else if (a == "--method") method = next().value_or("");
    else if (a == "--finding") finding = next().value_or("");
    else if (a == "--opacity" || a == "--discard" || a == "--max-size") {
      const auto v = next();
      const auto n = v ? parse_number<double>(*v) : std::nullopt;
      if (!n || *n < 0 || (a != "--max-size" && *n > 1)) return usage_error("heatmap: " + a + " takes a number (0..1; pixels for --max-size)");
      if (a == "--opacity") opacity = *n;
      else if (a == "--discard") discard = *n;
      else max_size = static_cast<int>(*n);
    } else if (a.rfind("--", 0) == 0) return usage_error("heatmap: unknown option " + a);
    else if (!image) image = a;
    else return usage_error("heatmap: one IMAGE at a time");
  }
  if (!image || !output) return usage_error("heatmap: IMAGE -o OUT.png");
  if (method != "rollout" && method != "class") return usage_error("heatmap: --method is rollout or class");
  if (method == "rollout" && !finding.empty()) return usage_error("heatmap: --finding goes with --method class (rollout is the same for every finding)");
  auto catalog = open_catalog(global, app::Catalog::Mode::ReadWriteCreate);
  if (!catalog) return kExitCatalog;
  auto model = app::load_model(*catalog, model_spec);
  if (!model) return report_error(model.error());
  fs::path file = *image;
  if (!fs::is_regular_file(file)) {
    auto found = catalog->find_instance(*image);
    if (!found) return report_error(found.error());
    if (!found->has_value()) return report_error(app::Error{app::ErrorKind::NotFound, "no such image: " + *image});
    file = (*found)->stored_path.empty() ? (*found)->path : (*found)->stored_path;
  }
  app::HeatmapOptions options;
  options.method = method == "class" ? app::HeatmapMethod::ClassSpecific : app::HeatmapMethod::Rollout;
  options.finding = finding;
  options.opacity = static_cast<float>(opacity);
  options.discard_ratio = static_cast<float>(discard);
  options.max_side = max_size;
  auto h = app::heatmap(*model, file, options);
  if (!h) return report_error(h.error());
  if (auto written = app::write_png_rgb8(*output, h->overlay.width, h->overlay.height, h->overlay.rgb); !written) {
    std::fprintf(stderr, "hilum-cli: %s\n", written.error().message.c_str());
    return kExitFailures;
  }
  if (!h->finding.empty()) {
    double p = 0.0;
    for (const auto& [name, prob] : h->probabilities) p = name == h->finding ? prob : p;
    std::printf("%s: class-specific map for %s (probability %.3f)\n", output->c_str(), h->finding.c_str(), p);
  }
  return kExitOk;
}

int cmd_models(const Global& global, const Args& args) {
  if (args.empty()) return usage_error("models: list, show ID, import DIR, activate|promote ID, rollback or export ID DIR");
  const std::string sub = args[0];
  bool json = false, activate = false, promote = true;
  double tolerance = 0.005;
  std::string version;
  std::optional<std::string> target, second;
  for (std::size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--json") json = true;
    else if (a == "--activate") activate = true;
    else if (a == "--no-promote") promote = false;
    else if (a == "--tolerance") {
      const auto t = i + 1 < args.size() ? parse_number<double>(args[++i]) : std::nullopt;
      if (!t || *t < 0 || *t > 1) return usage_error("models import: --tolerance takes 0..1");
      tolerance = *t;
    }
    else if (a == "--version") {
      if (i + 1 >= args.size()) return usage_error("models import: --version takes a name");
      version = args[++i];
    } else if (a.rfind("--", 0) == 0) return usage_error("models: unknown option " + a);
    else if (!target) target = a;
    else if (sub == "export" && !second) second = a;
    else return usage_error("models: too many arguments");
  }
  auto catalog = open_catalog(global, app::Catalog::Mode::ReadWriteCreate, sub == "list" || sub == "show");
  if (!catalog) return kExitCatalog;
  if (sub == "list") {
    auto models = catalog->models();
    if (!models) return report_error(models.error());
    for (const auto& m : models.value()) {
      if (json) std::cout << model_json(m) << '\n';
      else std::printf("%3lld  %-32s %-10s %s\n", static_cast<long long>(m.id), m.version.c_str(), app::to_string(m.status), m.path.c_str());
    }
    return kExitOk;
  }
  if (sub == "import") {
    if (!target) return usage_error("models import: DIR is required");
    if (app::is_cluster_model_folder(*target)) {
      if (activate || !version.empty()) return usage_error("models import: a cluster-trained folder is promoted by the gate, and named like a fine-tune");
      const InterruptGuard guard;
      app::ClusterImportOptions options;
      options.gate_tolerance = tolerance;
      options.allow_promotion = promote;
      auto r = app::import_cluster_model(*catalog, *target, options, {}, InterruptGuard::flag());
      if (!r) return report_error(r.error());
      for (const auto& c : r->changes) std::fprintf(stderr, "hilum-cli: models import: since the export: %s\n", c.c_str());
      if (json) {
        std::cout << model_json(r->result.model) << '\n';
      } else {
        std::printf("registered %s (%s), trained on %s\n", r->result.model.version.c_str(), app::to_string(r->result.model.status),
                    app::trained_on(r->result.model).c_str());
        std::printf("our engine vs PyTorch on %d validation images: largest difference %.2e\n", r->compared_images,
                    r->max_probability_difference);
        std::printf("gate: %s\n", r->result.reason.c_str());
      }
      return kExitOk;
    }
    auto m = app::import_model(*catalog, *target, version, activate);
    if (!m) return report_error(m.error());
    if (json) std::cout << model_json(m.value()) << '\n';
    else std::printf("registered %s (%s)\n", m->version.c_str(), app::to_string(m->status));
    return kExitOk;
  }
  if (sub == "activate" || sub == "promote") {
    if (!target) return usage_error("models " + sub + ": ID or version is required");
    auto m = catalog->find_model(*target);
    if (!m) return report_error(m.error());
    if (!m->has_value()) return report_error(app::Error{app::ErrorKind::NotFound, "no model " + *target});
    auto s = app::promote_model(*catalog, *target, sub == "promote" ? "promoted by hand" : "activated by hand");
    if (!s) return report_error(s.error());
    std::printf("%s is now the active model\n", (*m)->version.c_str());
    return kExitOk;
  }
  if (sub == "show") {
    if (!target) return usage_error("models show: ID or version is required");
    auto m = catalog->find_model(*target);
    if (!m) return report_error(m.error());
    if (!m->has_value()) return report_error(app::Error{app::ErrorKind::NotFound, "no model " + *target});
    const auto& r = **m;
    std::string parent;
    if (r.parent_id) {
      auto p = catalog->find_model(std::to_string(*r.parent_id));
      if (p && p->has_value()) parent = (*p)->version;
    }
    if (json) {
      JsonObject o;
      o.add("id", r.id).add("version", r.version).add("status", app::to_string(r.status)).add("status_reason", r.status_reason);
      o.add("strategy", r.strategy).add("trained_on", app::trained_on(r)).add("parent", parent).add("path", r.path).add("created_at", r.created_at);
      o.add_raw("hyperparameters", r.hyperparameters.empty() ? "{}" : r.hyperparameters);
      o.add_raw("label_snapshot", r.label_snapshot.empty() ? "{}" : r.label_snapshot);
      o.add_raw("metrics", r.metrics.empty() ? "{}" : r.metrics);
      std::cout << o.str() << '\n';
    } else {
      std::printf("version:         %s (id %lld)\nstatus:          %s (%s)\nstrategy:        %s\ntrained on:      %s\nparent:          %s\n"
                  "created:         %s\nfolder:          %s\nhyperparameters: %s\nlabels used:     %s\nmetrics:         %s\n",
                  r.version.c_str(), static_cast<long long>(r.id), app::to_string(r.status), r.status_reason.c_str(), r.strategy.c_str(),
                  app::trained_on(r).c_str(), parent.empty() ? "-" : parent.c_str(), r.created_at.c_str(), r.path.c_str(), r.hyperparameters.c_str(),
                  r.label_snapshot.c_str(), r.metrics.c_str());
    }
    return kExitOk;
  }
  if (sub == "rollback") {
    auto r = app::rollback_model(*catalog);
    if (!r) return report_error(r.error());
    std::printf("%s is now the active model\n", r->version.c_str());
    return kExitOk;
  }
  if (sub == "export") {
    if (!target || !second) return usage_error("models export: ID|VERSION and DIR are required");
    auto s = app::export_model(*catalog, *target, *second);
    if (!s) return report_error(s.error());
    std::printf("wrote %s to %s\n", target->c_str(), second->c_str());
    return kExitOk;
  }
  return usage_error("models: unknown subcommand " + sub);
}

}  // namespace hilum::cli
