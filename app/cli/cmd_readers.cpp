// hilum-cli adjudicate (the queue of images where readers disagree, and an adjudicator's decision)
// and hilum-cli agreement (inter-reader agreement statistics).
#include <cstdio>
#include <iostream>
#include <limits>
#include <optional>

#include "commands.hpp"
#include "hilum/app/json.hpp"

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
      const auto eq = v ? v->rfind('=') : std::string::npos;
      if (eq == std::string::npos) return usage_error("adjudicate: --set takes FINDING=present|absent|uncertain|cleared");
      auto parsed = app::parse_label_value(v->substr(eq + 1));
      if (!parsed) return usage_error("adjudicate: unknown value \"" + v->substr(eq + 1) + "\" (present, absent, uncertain, cleared)");
      sets.emplace_back(v->substr(0, eq), *parsed);
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
  const std::string adjudicator = app::current_os_user();
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
  (void)global;
  (void)args;
  return usage_error("agreement: not available yet");
}

}  // namespace hilum::cli
