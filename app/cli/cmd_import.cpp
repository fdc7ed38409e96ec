// hilum-cli import and list.
#include <atomic>
#include <charconv>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <unistd.h>

#include "commands.hpp"
#include "hilum/app/classify.hpp"
#include "hilum/app/import.hpp"
#include "hilum/app/json.hpp"

namespace fs = std::filesystem;
using hilum::app::JsonObject;

namespace hilum::cli {
namespace {

// ---- Formatting.

// A table cell: cut to `width` characters (ending in "~" when cut) so the columns stay aligned.
std::string cell(const std::string& text, std::size_t width) {
  if (text.size() <= width) return text;
  return text.substr(0, width - 1) + "~";
}

std::string thousands(std::size_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  const std::size_t len = digits.size();
  for (std::size_t i = 0; i < len; ++i) {
    if (i > 0 && (len - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

std::string duration_text(double seconds) {
  if (seconds < 0 || !std::isfinite(seconds)) return "?";
  const auto s = static_cast<long long>(std::llround(seconds));
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, (s % 3600) / 60);
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%llds", s);
  return buf;
}

std::string progress_line(const app::ImportProgress& p) {
  char rate[32];
  std::snprintf(rate, sizeof rate, "%.1f", p.files_per_second);
  std::string line = "import: " + thousands(p.done) + "/" + thousands(p.total) + " files";
  if (p.total > 0) {
    char pct[16];
    std::snprintf(pct, sizeof pct, " (%.0f%%)", 100.0 * static_cast<double>(p.done) / static_cast<double>(p.total));
    line += pct;
  }
  line += "  " + std::string(rate) + " files/s";
  if (p.done < p.total) line += "  ETA " + duration_text(p.eta_seconds);
  return line;
}

// Progress on stderr: one updating line on a terminal, else at most ~4 lines a second.
class ProgressPrinter {
 public:
  ProgressPrinter() : tty_(::isatty(STDERR_FILENO) == 1) {}
  void operator()(const app::ImportProgress& p) {
    const auto now = std::chrono::steady_clock::now();
    const bool finished = p.done >= p.total;
    if (p.done == 0 && !finished) return;  // nothing to say yet
    if (printed_ && !finished && now - last_ < std::chrono::milliseconds(250)) return;
    if (finished && last_done_ == p.done && printed_) return;
    last_ = now;
    last_done_ = p.done;
    printed_ = true;
    const std::string line = progress_line(p);
    if (tty_) std::fprintf(stderr, "\r\033[K%s", line.c_str());
    else std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
    open_line_ = tty_;
  }
  void finish() {
    if (open_line_) std::fputc('\n', stderr);
    open_line_ = false;
  }

 private:
  bool tty_ = false;
  bool printed_ = false;
  bool open_line_ = false;
  std::size_t last_done_ = 0;
  std::chrono::steady_clock::time_point last_{};
};

std::string issues_json(const std::vector<app::ImportIssue>& issues, bool conflicts) {
  std::string out = "[";
  for (std::size_t i = 0; i < issues.size(); ++i) {
    const auto& issue = issues[i];
    JsonObject o;
    o.add("path", issue.path);
    o.add("sop_instance_uid", issue.sop_instance_uid);
    o.add("reason", issue.reason);
    if (conflicts) o.add("existing_path", issue.existing_path);
    if (issue.earlier_run) o.add("earlier_run", true);
    if (i > 0) out += ",";
    out += o.str();
  }
  return out + "]";
}


std::string report_json(const app::ImportReport& r) {
  JsonObject o;
  const std::size_t problems = r.counts.failed + r.counts.conflicts + r.earlier.failed + r.earlier.conflicts;
  o.add("ok", r.ok() && !r.interrupted && problems == 0);
  o.add("job_id", r.job_id);
  o.add("resumed", r.resumed);
  o.add("interrupted", r.interrupted);
  o.add("files", static_cast<std::int64_t>(r.files));
  o.add("imported", static_cast<std::int64_t>(r.counts.imported));
  o.add("already_present", static_cast<std::int64_t>(r.counts.already_present));
  o.add("conflicts", static_cast<std::int64_t>(r.counts.conflicts));
  o.add("skipped", static_cast<std::int64_t>(r.counts.skipped));
  o.add("failed", static_cast<std::int64_t>(r.counts.failed));
  o.add("not_dicom", static_cast<std::int64_t>(r.counts.not_dicom));
  o.add("pending", static_cast<std::int64_t>(r.files - r.counts.total() - r.earlier.total()));
  o.add_raw("earlier", app::to_json(r.earlier));
  o.add("seconds", r.seconds);
  o.add("files_per_second", r.files_per_second);
  o.add_raw("conflict_files", issues_json(r.conflicts, true));
  o.add_raw("skipped_files", issues_json(r.skipped, false));
  o.add_raw("failed_files", issues_json(r.failed, false));
  if (r.error) o.add("error", r.error->message);
  return o.str();
}

void print_report(const app::ImportReport& r) {
  std::string line = "imported " + thousands(r.counts.imported) + ", already present " +
                     thousands(r.counts.already_present) + ", conflicts " + thousands(r.counts.conflicts) +
                     ", skipped " + thousands(r.counts.skipped) + ", failed " + thousands(r.counts.failed) +
                     ", not DICOM " + thousands(r.counts.not_dicom) + " (" + thousands(r.files) + " files";
  char timing[64];
  std::snprintf(timing, sizeof timing, ", %.1f s, %.1f files/s)", r.seconds, r.files_per_second);
  line += timing;
  std::cout << line << '\n';
  if (r.resumed) {
    const auto& e = r.earlier;
    std::cout << "continued an interrupted import: " << thousands(e.total()) << " files were done before (imported "
              << thousands(e.imported) << ", already present " << thousands(e.already_present) << ", conflicts "
              << thousands(e.conflicts) << ", skipped " << thousands(e.skipped) << ", failed " << thousands(e.failed)
              << ", not DICOM " << thousands(e.not_dicom) << ")\n";
  }
  for (const auto& c : r.conflicts) {
    std::cout << "conflict: " << c.path;
    if (!c.sop_instance_uid.empty()) std::cout << " (" << c.sop_instance_uid << ")";
    std::cout << ": " << c.reason << '\n';
  }
  for (const auto& s : r.skipped) std::cout << "skipped: " << s.path << ": " << s.reason << '\n';
  for (const auto& f : r.failed) std::cout << "failed: " << f.path << ": " << f.reason << '\n';
  if (r.interrupted) {
    const std::size_t left = r.files - r.counts.total() - r.earlier.total();
    std::cout << "interrupted: " << thousands(left)
              << " files left; run the same import again to finish it\n";
  }
  std::cout.flush();
}

}  // namespace

int cmd_import(const Global& global, const Args& args) {
  std::vector<fs::path> inputs;
  app::ImportOptions options;
  bool json = false, classify_new = true;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--jobs" || a == "-j") {
      int n = 0;
      const std::string v = i + 1 < args.size() ? args[++i] : std::string();
      const auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
      if (v.empty() || ec != std::errc() || ptr != v.data() + v.size() || n < 1 || n > 256) {
        return usage_error("import: --jobs takes a number of threads from 1 to 256");
      }
      options.jobs = n;
    } else if (a == "--copy") {
      options.copy_to_store = true;
    } else if (a == "--no-classify") {
      classify_new = false;
    } else if (a == "--json") {
      json = true;
    } else if (a == "--") {
      for (++i; i < args.size(); ++i) inputs.emplace_back(args[i]);
    } else if (a.rfind("--", 0) == 0) {
      return usage_error("import: unknown option " + a);
    } else {
      inputs.emplace_back(a);
    }
  }
  if (inputs.empty()) return usage_error("import: no file or folder given");

  auto catalog = open_catalog(global, app::Catalog::Mode::ReadWriteCreate);
  if (!catalog) return kExitCatalog;

  // With an active model, each new film is classified right after its batch is committed, from the
  // model input the import made from the pixels it decoded (nothing is decoded twice), while the
  // workers read the next files.
  std::optional<app::LoadedModel> model;
  std::size_t classified = 0, unclassified = 0;
  std::string classify_error;
  if (classify_new) {
    auto active = catalog->active_model();
    if (active && active->has_value()) {
      auto loaded = app::load_model(*catalog, "");
      if (loaded) {
        model.emplace(std::move(loaded.value()));
        options.model_input = app::input_size_of(model->model.config());
      } else {
        std::fprintf(stderr, "hilum-cli: warning: the active model cannot be loaded; nothing is classified: %s\n", loaded.error().message.c_str());
      }
    }
  }
  if (model) {
    options.on_committed = [&](const std::vector<std::string>& uids) {
      if (!classify_error.empty()) return;
      std::vector<app::Instance> todo;
      for (const auto& uid : uids) {
        auto found = catalog->find_instance(uid);
        if (found && found->has_value()) todo.push_back(std::move(**found));
      }
      auto results = app::classify(*catalog, *model, todo, 8, {}, nullptr, 1);  // one thread: the import's workers decode
      if (!results) {
        classify_error = results.error().message;
        return;
      }
      for (const auto& r : results.value()) ++(r.error.empty() ? classified : unclassified);
    };
  }
  ProgressPrinter printer;
  app::ImportReport report;
  {
    InterruptGuard guard;
    report = app::import_paths(*catalog, inputs, options, [&](const app::ImportProgress& p) { printer(p); }, InterruptGuard::flag());
  }
  printer.finish();
  if (json) {
    std::string line = report_json(report);
    if (model) {
      JsonObject c;
      c.add("model", model->record.version).add("classified", static_cast<std::int64_t>(classified)).add("unclassified", static_cast<std::int64_t>(unclassified));
      if (!classify_error.empty()) c.add("error", classify_error);
      line.pop_back();  // the closing brace
      line += ",\"classification\":" + c.str() + "}";
    }
    std::cout << line << '\n';
    std::cout.flush();
  } else {
    print_report(report);
    if (model) {
      std::cout << "classified " << thousands(classified) << " new images with " << model->record.version;
      if (unclassified > 0) std::cout << " (" << thousands(unclassified) << " could not be)";
      std::cout << '\n';
    }
  }
  if (!classify_error.empty()) std::fprintf(stderr, "hilum-cli: import: classification stopped: %s\n", classify_error.c_str());
  if (report.error) {
    std::fprintf(stderr, "hilum-cli: import: %s\n", report.error->message.c_str());
    return kExitCatalog;
  }
  if (report.interrupted) return kExitInterrupted;
  const std::size_t problems = report.counts.failed + report.counts.conflicts + report.earlier.failed + report.earlier.conflicts;
  return problems == 0 ? kExitOk : kExitFailures;
}

int cmd_list(const Global& global, const Args& args) {
  bool studies = false;
  bool json = false;
  app::InstanceFilter filter;
  filter.with_thumbnails = false;  // not shown; a large catalog lists much faster without them
  int kinds = 0, label_filters = 0;
  for (const auto& a : args) {
    if (a == "--studies") {
      studies = true;
      ++kinds;
    } else if (a == "--images") {
      studies = false;
      ++kinds;
    } else if (a == "--unlabeled" || a == "--unlabelled") {
      filter.labelled = app::InstanceFilter::Labelled::Unlabelled;
      ++label_filters;
    } else if (a == "--labeled" || a == "--labelled") {
      filter.labelled = app::InstanceFilter::Labelled::Labelled;
      ++label_filters;
    } else if (a == "--json") {
      json = true;
    } else {
      return usage_error("list: unknown option " + a);
    }
  }
  if (kinds > 1) return usage_error("list: choose one of --studies and --images");
  if (label_filters > 1) return usage_error("list: choose one of --labeled and --unlabeled");

  auto catalog = open_catalog(global, app::Catalog::Mode::ReadOnly);
  if (!catalog) return kExitCatalog;

  if (studies) {
    auto list = catalog->list_studies(filter);
    if (!list) {
      std::fprintf(stderr, "hilum-cli: list: %s\n", list.error().message.c_str());
      return kExitCatalog;
    }
    if (!json && !list->empty()) {
      std::printf("%-10s %-24s %-20s %-30s %7s %9s  %s\n", "date", "patient id", "patient name", "description", "images",
                  "labelled", "study instance uid");
    }
    for (const auto& s : list.value()) {
      if (json) {
        JsonObject o;
        o.add("study_instance_uid", s.study_instance_uid).add("patient_id", s.patient_id).add("patient_name", s.patient_name);
        o.add("study_date", s.study_date).add("study_description", s.study_description);
        o.add("accession_number", s.accession_number).add("images", s.images).add("labelled_images", s.labelled_images);
        std::cout << o.str() << '\n';
      } else {
        std::printf("%-10s %-24s %-20s %-30s %7d %9d  %s\n", cell(s.study_date, 10).c_str(), cell(s.patient_id, 24).c_str(),
                    cell(s.patient_name, 20).c_str(), cell(s.study_description, 30).c_str(), s.images, s.labelled_images,
                    s.study_instance_uid.c_str());
      }
    }
    if (!json) std::fprintf(stderr, "%zu studies\n", list->size());
    std::cout.flush();
    return kExitOk;
  }

  auto list = catalog->list_instances(filter);
  if (!list) {
    std::fprintf(stderr, "hilum-cli: list: %s\n", list.error().message.c_str());
    return kExitCatalog;
  }
  if (!json && !list->empty()) {
    std::printf("%-24s %-10s %-4s %-4s %11s  %-40s %s\n", "patient id", "date", "mod", "view", "size", "sop instance uid", "path");
  }
  for (const auto& im : list.value()) {
    if (json) {
      JsonObject o;
      o.add("sop_instance_uid", im.sop_instance_uid).add("path", im.path);
      if (!im.stored_path.empty()) o.add("stored_path", im.stored_path);
      o.add("patient_id", im.patient_id).add("study_instance_uid", im.study_instance_uid);
      o.add("series_instance_uid", im.series_instance_uid).add("study_date", im.study_date);
      o.add("modality", im.modality).add("view_position", im.view_position);
      o.add("rows", im.rows).add("columns", im.columns);
      o.add("content_hash", im.content_hash).add("imported_at", im.imported_at);
      std::cout << o.str() << '\n';
    } else {
      const std::string size = std::to_string(im.columns) + "x" + std::to_string(im.rows);
      std::printf("%-24s %-10s %-4s %-4s %11s  %-40s %s\n", cell(im.patient_id, 24).c_str(), cell(im.study_date, 10).c_str(),
                  cell(im.modality, 4).c_str(), cell(im.view_position, 4).c_str(), size.c_str(), im.sop_instance_uid.c_str(),
                  im.path.c_str());
    }
  }
  if (!json) std::fprintf(stderr, "%zu images\n", list->size());
  std::cout.flush();
  return kExitOk;
}

}  // namespace hilum::cli
