// hilum-cli export: the current labels as ChestX-ray14-style CSV or JSON, optionally de-identified
// and with the images (16-bit PNG, de-identified DICOM).
#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>

#include <unistd.h>

#include "commands.hpp"
#include "hilum/app/cluster.hpp"
#include "hilum/app/export.hpp"
#include "hilum/app/json.hpp"
#include "hilum/app/sr_export.hpp"

namespace hilum::cli {
namespace {

using app::JsonObject;

int export_error(const app::Error& e) {
  std::fprintf(stderr, "hilum-cli: export: %s\n", e.message.c_str());
  switch (e.kind) {
    case app::ErrorKind::Invalid:
      return kExitUsage;     // e.g. an output folder that holds other files
    case app::ErrorKind::Io:
    case app::ErrorKind::NotFound:
      return kExitFailures;  // the export ran and could not finish
    case app::ErrorKind::Interrupted:
      return kExitInterrupted;
    default:
      return kExitCatalog;   // locked, read-only, corrupt, ...
  }
}

std::string issues_json(const std::vector<app::ExportIssue>& issues) {
  std::string out = "[";
  for (std::size_t i = 0; i < issues.size(); ++i) {
    if (i) out += ",";
    out += JsonObject().add("image", issues[i].image).add("reason", issues[i].reason).str();
  }
  return out + "]";
}

std::string strings_json(const std::vector<std::string>& values) {
  std::string out = "[";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i) out += ",";
    out += app::json_escape(values[i]);
  }
  return out + "]";
}

std::string split_json(const app::SplitCounts& c) {
  return JsonObject()
      .add("patients", static_cast<std::int64_t>(c.patients))
      .add("images", static_cast<std::int64_t>(c.images))
      .str();
}

// export --format dataset: the training set for cluster/train.py (cluster.hpp).
int export_dataset(const Global& global, const std::string& out, bool dicom, const std::string& base_model, bool json) {
  auto catalog = open_catalog(global, app::Catalog::Mode::ReadWrite);  // pseudonyms are created on first use
  if (!catalog) return kExitCatalog;
  const InterruptGuard guard;
  app::DatasetExportOptions options;
  options.out_dir = out;
  options.dicom = dicom;
  options.base_model = base_model;
  const bool terminal = ::isatty(STDERR_FILENO) != 0;
  auto result = app::export_dataset(*catalog, options, [&](const app::ExportProgress& p) {
    if (terminal && p.total > 0) std::fprintf(stderr, "\rexport: %zu of %zu images", p.done, p.total);
    if (terminal && p.done == p.total) std::fputc('\n', stderr);
  }, InterruptGuard::flag());
  if (!result) return export_error(result.error());
  const app::DatasetExportReport& r = *result;
  for (const auto& s : r.skipped) std::fprintf(stderr, "hilum-cli: export: %s: left out: %s\n", s.image.c_str(), s.reason.c_str());
  if (json) {
    JsonObject o;
    o.add("ok", true).add("out", r.out_dir.string()).add("format", "dataset").add("catalog_id", r.catalog_id);
    o.add("manifest_sha256", r.manifest_sha256).add("snapshot_sha256", r.snapshot_sha256).add("split_sha256", r.split_sha256);
    o.add("base_model", r.base_model).add_raw("outputs", strings_json(r.outputs));
    o.add_raw("splits", JsonObject().add_raw("train", split_json(r.train)).add_raw("validation", split_json(r.validation)).str());
    o.add("dicoms", static_cast<std::int64_t>(r.dicoms)).add_raw("skipped", issues_json(r.skipped)).add_raw("files", strings_json(r.files));
    std::cout << o.str() << '\n';
  } else {
    std::printf("training set of %zu images (train %zu images of %zu patients, validation %zu of %zu) from %s to %s\n",
                r.train.images + r.validation.images, r.train.images, r.train.patients, r.validation.images, r.validation.patients,
                r.base_model.c_str(), r.out_dir.string().c_str());
    std::printf("manifest sha256 %s, label snapshot %s, split %s\n", r.manifest_sha256.c_str(), r.snapshot_sha256.c_str(),
                r.split_sha256.c_str());
    if (!r.skipped.empty()) std::printf("left out: %zu image(s)\n", r.skipped.size());
  }
  return kExitOk;
}

}  // namespace

namespace {

// export --format sr: one structured report per image, and the attention map of each image the
// active model scored (unless --no-maps).
int export_sr(const Global& global, const Args& args) {
  app::SrExportOptions options;
  options.attention_maps = true;
  bool json = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--out" || a == "-o") {
      if (i + 1 >= args.size()) return usage_error("export: --out needs a folder");
      options.out_dir = args[++i];
    } else if (a == "--format") {
      ++i;
    } else if (a == "--json") {
      json = true;
    } else if (a == "--no-maps") {
      options.attention_maps = false;
    } else if (a.rfind("--", 0) == 0) {
      return usage_error("export: unknown argument '" + a + "' with --format sr");
    } else {
      options.images.push_back(a);
    }
  }
  if (options.out_dir.empty()) return usage_error("export: no output folder (--out DIR)");
  auto catalog = open_catalog(global, app::Catalog::Mode::ReadWrite);
  if (!catalog) return kExitCatalog;
  const InterruptGuard guard;
  auto r = app::export_reports(*catalog, options, InterruptGuard::flag());
  if (!r) return export_error(r.error());
  for (const auto& [image, reason] : r->failed) std::fprintf(stderr, "hilum-cli: export: %s: %s\n", image.c_str(), reason.c_str());
  if (json) {
    std::vector<std::string> files;
    for (const auto& f : r->files) files.push_back(f.string());
    JsonObject o;
    o.add("ok", r->failed.empty());
    o.add("format", "sr");
    o.add("reports", static_cast<std::int64_t>(r->reports));
    o.add("maps", static_cast<std::int64_t>(r->maps));
    o.add_raw("files", strings_json(files));
    std::cout << o.str() << '\n';
  } else {
    std::printf("wrote %zu structured reports and %zu attention maps to %s (%zu failed)\n", r->reports, r->maps,
                options.out_dir.string().c_str(), r->failed.size());
  }
  std::cout.flush();
  return r->failed.empty() ? kExitOk : kExitFailures;
}

}  // namespace

int cmd_export(const Global& global, const Args& args) {
  for (std::size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "--format" && args[i + 1] == "sr") return export_sr(global, args);
  }
  app::ExportOptions options;
  std::optional<std::string> out;
  std::optional<app::ExportFormat> format;
  bool json = false, dataset = false, dicom = false;
  std::string base_model;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--format" && i + 1 < args.size() && args[i + 1] == "dataset") {
      dataset = true;
      ++i;
    } else if (a == "--dicom") {
      dicom = true;
    } else if (a == "--no-maps") {
      return usage_error("export: --no-maps goes with --format sr");
    } else if (a == "--model") {
      if (i + 1 >= args.size()) return usage_error("export: --model needs a version or id");
      base_model = args[++i];
    } else if (a == "--out" || a == "-o") {
      if (i + 1 >= args.size()) return usage_error("export: --out needs a folder");
      out = args[++i];
    } else if (a == "--format") {
      if (i + 1 >= args.size()) return usage_error("export: --format needs csv, json or dataset");
      format = app::parse_export_format(args[++i]);
      if (!format) return usage_error("export: --format is csv, json or dataset, not '" + args[i] + "'");
    } else if (a == "--deidentify") {
      options.deidentify = true;
    } else if (a == "--images") {
      options.images = true;
    } else if (a == "--json") {
      json = true;
    } else {
      return usage_error("export: unknown argument '" + a + "'");
    }
  }
  if (!out || out->empty()) return usage_error("export: no output folder (--out DIR)");
  if (dataset) {
    if (format || options.deidentify || options.images) return usage_error("export: --format dataset is always de-identified with images; it takes --dicom and --model");
    return export_dataset(global, *out, dicom, base_model, json);
  }
  if (dicom || !base_model.empty()) return usage_error("export: --dicom and --model go with --format dataset");
  if (!format) return usage_error("export: no format (--format csv|json|dataset)");
  options.out_dir = *out;
  options.format = *format;

  // ReadWrite: pseudonyms and the catalog secret are created on first use.
  auto catalog = open_catalog(global, app::Catalog::Mode::ReadWrite);
  if (!catalog) return kExitCatalog;

  const InterruptGuard guard;
  std::size_t last_percent = 101;
  const bool terminal = ::isatty(STDERR_FILENO) != 0;  // a progress line only where someone watches
  const auto progress = [&](const app::ExportProgress& p) {
    if (!terminal || !options.images || p.total == 0) return;
    const std::size_t percent = p.done * 100 / p.total;
    if (percent == last_percent) return;
    last_percent = percent;
    std::fprintf(stderr, "\rexport: %zu of %zu images (%zu%%)", p.done, p.total, percent);
    if (p.done == p.total) std::fputc('\n', stderr);
  };
  auto result = app::export_labels(*catalog, options, progress, InterruptGuard::flag());
  if (!result) return export_error(result.error());
  const app::ExportReport& r = *result;

  for (const auto& s : r.skipped) std::fprintf(stderr, "hilum-cli: export: %s: pixels not exported: %s\n", s.image.c_str(), s.reason.c_str());
  for (const auto& f : r.failed) std::fprintf(stderr, "hilum-cli: export: %s: %s\n", f.image.c_str(), f.reason.c_str());
  if (r.interrupted) std::fputs("hilum-cli: export: interrupted; no label file written (run it again)\n", stderr);

  if (json) {
    JsonObject o;
    o.add("ok", !r.interrupted && r.failed.empty());
    o.add("out", r.out_dir.string());
    o.add("format", app::to_string(options.format));
    o.add("deidentified", options.deidentify);
    o.add("images", static_cast<std::int64_t>(r.images));
    o.add("labels", static_cast<std::int64_t>(r.labels));
    o.add("labels_used", r.labels_used);
    o.add("bounding_boxes", static_cast<std::int64_t>(r.bounding_boxes));
    o.add("patients", static_cast<std::int64_t>(r.patients));
    o.add_raw("splits", JsonObject()
                            .add_raw("train", split_json(r.train))
                            .add_raw("validation", split_json(r.validation))
                            .add_raw("test", split_json(r.test))
                            .str());
    o.add("pngs", static_cast<std::int64_t>(r.pngs));
    o.add("dicoms", static_cast<std::int64_t>(r.dicoms));
    o.add_raw("skipped", issues_json(r.skipped));
    o.add_raw("failed", issues_json(r.failed));
    o.add_raw("files", strings_json(r.files));
    o.add_raw("removed", strings_json(r.removed));
    o.add("interrupted", r.interrupted);
    std::cout << o.str() << '\n';
  } else {
    std::printf("exported %zu labels of %zu images (%zu patients: train %zu, validation %zu, test %zu) to %s%s\n",
                r.labels, r.images, r.patients, r.train.patients, r.validation.patients, r.test.patients,
                r.out_dir.string().c_str(), options.deidentify ? ", de-identified" : "");
    std::printf("labels: %s\n", r.labels_used.c_str());
    if (options.format == app::ExportFormat::Csv) std::printf("bounding boxes: %zu\n", r.bounding_boxes);
    if (options.images) {
      std::printf("images: %zu PNG, %zu DICOM, %zu skipped, %zu failed\n", r.pngs, r.dicoms, r.skipped.size(),
                  r.failed.size());
    }
    std::printf("files written: %zu%s\n", r.files.size(),
                r.removed.empty() ? "" : (", stale files removed: " + std::to_string(r.removed.size())).c_str());
  }
  std::cout.flush();
  if (r.interrupted) return kExitInterrupted;
  return r.failed.empty() ? kExitOk : kExitFailures;
}

}  // namespace hilum::cli
