// hilum-cli adjudicate (the queue of images where readers disagree, and an adjudicator's decision)
// and hilum-cli agreement (inter-reader agreement statistics).
#include <cstdio>
#include <iostream>
#include <limits>
#include <optional>

#include "commands.hpp"
#include "hilum/app/agreement.hpp"
#include "hilum/app/json.hpp"
#include "hilum/core/numbers.hpp"

namespace hilum::cli {
namespace {

using app::JsonObject;

std::string disagreement_json(const app::DisagreementItem& item) {
  std::string findings = "[";
  for (std::size_t i = 0; i < item.findings.size(); ++i) {
    const auto& d = item.findings[i];
    JsonObject readers;
    for (const auto& [author, value] : d.readers) readers.add(author, app::to_string(value));
    JsonObject o;
    o.add("finding", d.finding).add_raw("readers", readers.str());
    if (d.consensus) o.add("consensus", app::to_string(*d.consensus));
    else o.add_null("consensus");
    if (i) findings += ",";
    findings += o.str();
  }
  findings += "]";
  return JsonObject()
      .add("sop_instance_uid", item.sop_instance_uid)
      .add("patient_id", item.patient_id)
      .add("study_instance_uid", item.study_instance_uid)
      .add("seen_up_to", item.newest_event_id)
      .add_raw("findings", findings)
      .str();
}

}  // namespace

int cmd_adjudicate(const Global& global, const Args& args) {
  if (args.empty()) return usage_error("adjudicate: list [--json], or IMAGE --set FINDING=VALUE ...");
  bool json = false;
  bool replace = false;
  std::optional<std::string> image, comment;
  std::optional<std::int64_t> seen;
  std::vector<std::pair<std::string, app::LabelValue>> sets;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const auto value = [&]() -> std::optional<std::string> {
      if (i + 1 >= args.size()) return std::nullopt;
      return args[++i];
    };
    if (a == "--json") {
      json = true;
    } else if (a == "--replace") {
      replace = true;
    } else if (a == "--set") {
      auto v = value();
      std::string problem;
      auto set = parse_finding_value(v.value_or(""), problem);
      if (!set) return usage_error("adjudicate: " + problem);
      sets.push_back(std::move(*set));
    } else if (a == "--seen") {
      auto v = value();
      auto n = v ? parse_number<std::int64_t>(*v) : std::nullopt;
      if (!n || *n < 0) return usage_error("adjudicate: --seen takes the seen_up_to number of `adjudicate list`");
      seen = *n;
    } else if (a == "--comment") {
      comment = value();
      if (!comment) return usage_error("adjudicate: --comment takes TEXT");
    } else if (a.rfind("--", 0) == 0) {
      return usage_error("adjudicate: unknown option " + a);
    } else if (!image) {
      image = a;
    } else {
      return usage_error("adjudicate: one IMAGE at a time");
    }
  }
  if (image && *image == "list") {
    if (!sets.empty()) return usage_error("adjudicate list takes no --set");
    auto catalog = open_catalog(global, app::Catalog::Mode::ReadWrite, true);
    if (!catalog) return kExitCatalog;
    auto queue = catalog->disagreements();
    if (!queue) return report_error(queue.error());
    for (const auto& item : queue.value()) {
      if (json) {
        std::cout << disagreement_json(item) << '\n';
        continue;
      }
      std::printf("%s  patient %s  (seen_up_to %lld)\n", item.sop_instance_uid.c_str(), item.patient_id.c_str(),
                  static_cast<long long>(item.newest_event_id));
      for (const auto& d : item.findings) {
        std::string votes;
        for (const auto& [author, value] : d.readers) votes += "  " + author + "=" + app::to_string(value);
        std::printf("  %-20s%s  -> %s\n", d.finding.c_str(), votes.c_str(), d.consensus ? app::to_string(*d.consensus) : "no consensus");
      }
    }
    if (!json) std::printf("%zu image(s) to adjudicate\n", queue->size());
    return kExitOk;
  }
  if (!image) return usage_error("adjudicate: no IMAGE given");
  if (sets.empty()) return usage_error("adjudicate: nothing decided (--set FINDING=VALUE)");
  if (replace && seen) return usage_error("adjudicate: --replace and --seen exclude each other");
  auto catalog = open_catalog(global, app::Catalog::Mode::ReadWrite);
  if (!catalog) return kExitCatalog;
  const std::string adjudicator = catalog->reader();  // the OS user; on PostgreSQL the database role
  if (replace) seen = std::numeric_limits<std::int64_t>::max();
  auto ids = catalog->adjudicate(*image, sets, adjudicator, comment.value_or(""), seen);
  if (!ids) return report_error(ids.error());
  auto consensus = catalog->consensus_labels(*image);
  if (!consensus) return report_error(consensus.error());
  if (json) {
    for (const auto& e : consensus.value()) {
      std::cout << JsonObject().add("finding", e.finding).add("value", app::to_string(e.value)).add("basis", e.basis).add("author", e.author).str()
                << '\n';
    }
  } else {
    std::printf("%zu decision(s) recorded by %s. Consensus of %s:\n", ids->size(), adjudicator.c_str(), image->c_str());
    for (const auto& e : consensus.value()) std::printf("  %-20s %-10s %s\n", e.finding.c_str(), app::to_string(e.value), e.basis.c_str());
  }
  return kExitOk;
}

}  // namespace hilum::cli

namespace hilum::cli {

int cmd_agreement(const Global& global, const Args& args) {
  app::AgreementOptions options;
  bool json = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const bool has_value = i + 1 < args.size();
    if (a == "--json") {
      json = true;
    } else if (a == "--finding" && has_value) {
      options.finding = args[++i];
    } else if (a == "--threshold" && has_value) {
      auto t = parse_number<double>(args[++i]);
      if (!t || !(*t > 0.0 && *t < 1.0)) return usage_error("agreement: --threshold takes a number between 0 and 1");
      options.threshold = *t;
    } else if (a == "--bootstrap" && has_value) {
      auto n = parse_number<int>(args[++i]);
      if (!n || *n < 0 || *n > 100000) return usage_error("agreement: --bootstrap takes 0 to 100000 resamples");
      options.bootstrap = *n;
    } else if (a == "--seed" && has_value) {
      auto s = parse_number<std::uint64_t>(args[++i]);
      if (!s) return usage_error("agreement: --seed takes a whole number");
      options.seed = *s;
    } else {
      return usage_error("agreement: unknown option " + a);
    }
  }
  auto catalog = open_catalog(global, app::Catalog::Mode::ReadWrite, true);
  if (!catalog) return kExitCatalog;
  auto report = app::agreement(*catalog, options);
  if (!report) return report_error(report.error());
  if (json) {
    std::cout << app::agreement_json(*report) << '\n';
    return kExitOk;
  }
  const auto show = [](const app::AgreementValue& v) {
    if (!v.value && v.reason == "too few images") return "too few images (" + std::to_string(v.images) + ")";
    if (!v.value) return std::string("undefined");
    std::string s = core::format_fixed(*v.value, 3);
    if (v.low && v.high) s += " (" + core::format_fixed(*v.low, 3) + " to " + core::format_fixed(*v.high, 3) + ")";
    return s + ", " + std::to_string(v.images) + " images";
  };
  std::printf("labels: %s\nAI: %s\nno statistic from fewer than %d images\n", report->labels.c_str(),
              report->model_version.empty() ? "none" : report->model_version.c_str(), report->min_images);
  for (const auto& f : report->findings) {
    std::printf("%s: %d image(s) of %d patient(s), %zu reader(s)\n", f.finding.c_str(), f.images, f.patients, f.readers.size());
    for (const auto& p : f.cohen_kappa)
      std::printf("  Cohen's kappa %s / %s: %s\n", p.reader_a.c_str(), p.reader_b.c_str(), show(p.cohen_kappa).c_str());
    std::printf("  Fleiss' kappa: %s\n  Krippendorff's alpha: %s\n", show(f.fleiss_kappa).c_str(), show(f.krippendorff_alpha).c_str());
    for (const auto& r : f.vs_others_consensus) {
      std::printf("  %s vs the other readers' consensus: %s", r.reader.c_str(), show(r.cohen_kappa).c_str());
      if (r.no_other_reader + r.no_consensus > 0)
        std::printf(" (left out: %d image(s) no other reader labelled, %d without their consensus)", r.no_other_reader, r.no_consensus);
      std::printf("\n");
    }
    for (const auto& r : f.vs_ai) std::printf("  %s vs AI: %s\n", r.reader.c_str(), show(r.cohen_kappa).c_str());
  }
  return kExitOk;
}

}  // namespace hilum::cli
