// hilum-cli label / labels, and opening the catalog for every catalog command.
#include <charconv>
#include <cstdio>
#include <iostream>
#include <optional>
#include <system_error>

#include "commands.hpp"
#include "hilum/app/classify.hpp"
#include "hilum/app/json.hpp"
#include "hilum/app/labels_csv.hpp"

namespace hilum::cli {
namespace {

using app::JsonObject;

std::optional<std::vector<double>> parse_numbers(const std::string& s) {
  std::vector<double> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    const auto comma = s.find(',', start);
    const std::string part = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    double v = 0;
    const auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
    if (part.empty() || ec != std::errc() || ptr != part.data() + part.size()) return std::nullopt;
    out.push_back(v);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

std::string event_json(const app::LabelEvent& e) {
  JsonObject o;
  o.add("id", e.id).add("sop_instance_uid", e.sop_instance_uid).add("finding", e.finding).add("value", app::to_string(e.value));
  if (e.region) o.add_raw("region", e.region->to_json());
  else o.add_null("region");
  o.add("author", e.author).add("created_at", e.created_at).add("kind", app::to_string(e.kind)).add("recorded_by", e.recorded_by);
  if (e.model_version) o.add("model_version", *e.model_version);
  if (e.model_probability) o.add("model_probability", *e.model_probability);
  if (!e.comment.empty()) o.add("comment", e.comment);
  o.add("source", app::to_string(e.source));
  return o.str();
}

int label_from_csv(app::Catalog& catalog, const std::string& file, const std::string& author, bool json) {
  auto report = app::import_label_csv(catalog, file, author);
  if (!report) return report_error(report.error());
  if (json) {
    std::string problems = "[";
    for (std::size_t i = 0; i < report->problems.size(); ++i) {
      if (i) problems += ",";
      problems += JsonObject().add("line", report->problems[i].line).add("problem", report->problems[i].message).str();
    }
    problems += "]";
    std::cout << JsonObject()
                     .add("rows", report->rows)
                     .add("rows_applied", report->rows_applied)
                     .add("labels_written", report->labels_written)
                     .add_raw("problems", problems)
                     .str()
              << '\n';
  } else {
    for (const auto& p : report->problems) std::fprintf(stderr, "%s:%d: %s\n", file.c_str(), p.line, p.message.c_str());
    std::printf("%d of %d rows applied, %d labels written\n", report->rows_applied, report->rows, report->labels_written);
  }
  return report->rows_applied == report->rows ? kExitOk : kExitFailures;
}

}  // namespace

std::optional<app::Catalog> open_catalog(const Global& global, app::Catalog::Mode mode, bool browsing) {
  const auto path = global.db.empty() ? app::default_catalog_path() : global.db;
  auto catalog = app::Catalog::open(path, mode);
  std::error_code ec;
  if (!catalog && browsing && mode != app::Catalog::Mode::ReadOnly && std::filesystem::exists(path, ec) &&
      (catalog.error().kind == app::ErrorKind::ReadOnly || catalog.error().kind == app::ErrorKind::CannotOpen)) {
    mode = app::Catalog::Mode::ReadOnly;  // cannot be written (read-only storage): browsing needs no more
    catalog = app::Catalog::open(path, mode);
  }
  if (!catalog) {
    std::fprintf(stderr, "hilum-cli: %s\n", catalog.error().message.c_str());
    return std::nullopt;
  }
  if (mode != app::Catalog::Mode::ReadOnly) {
    auto builtin = app::register_builtin_model(*catalog);
    if (!builtin) std::fprintf(stderr, "hilum-cli: warning: %s\n", builtin.error().message.c_str());
    else if (*builtin && (*builtin)->status == app::ModelStatus::Active) std::fprintf(stderr, "hilum-cli: first run: registered the built-in model %s as the active model\n", (*builtin)->version.c_str());
    else if (*builtin) std::fprintf(stderr, "hilum-cli: registered this version's built-in model %s as a candidate; `hilum-cli models activate %s` uses it\n", (*builtin)->version.c_str(), (*builtin)->version.c_str());
  }
  return std::move(catalog.value());
}

int cmd_label(const Global& global, const Args& args) {
  std::optional<std::string> image, author, csv, comment, model_version;
  std::optional<double> probability;
  std::vector<std::pair<std::string, app::LabelValue>> sets;
  std::optional<app::Region> region;
  bool json = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const auto value = [&]() -> std::optional<std::string> {
      if (i + 1 >= args.size()) return std::nullopt;
      return args[++i];
    };
    if (a == "--set") {
      auto v = value();
      std::string problem;
      auto set = parse_finding_value(v.value_or(""), problem);
      if (!set) return usage_error("label: " + problem);
      sets.push_back(std::move(*set));
    } else if (a == "--author") {
      author = value();
      if (!author || author->empty()) return usage_error("label: --author takes a NAME");
    } else if (a == "--region" || a == "--polygon") {
      auto v = value();
      auto numbers = v ? parse_numbers(*v) : std::nullopt;
      app::Region r;
      if (a == "--region") {
        if (!numbers || numbers->size() != 4) return usage_error("label: --region takes x,y,w,h in image pixels");
        r.x = (*numbers)[0];
        r.y = (*numbers)[1];
        r.w = (*numbers)[2];
        r.h = (*numbers)[3];
      } else {
        if (!numbers || numbers->size() < 6 || numbers->size() % 2 != 0) return usage_error("label: --polygon takes x1,y1,x2,y2,x3,y3[,...]");
        r.shape = app::Region::Shape::Polygon;
        for (std::size_t k = 0; k < numbers->size(); k += 2) r.points.emplace_back((*numbers)[k], (*numbers)[k + 1]);
      }
      region = r;
    } else if (a == "--comment") {
      comment = value();
      if (!comment) return usage_error("label: --comment takes TEXT");
    } else if (a == "--model-version") {
      model_version = value();
      if (!model_version) return usage_error("label: --model-version takes a version");
    } else if (a == "--probability") {
      auto v = value();
      double p = -1;
      if (!v || std::from_chars(v->data(), v->data() + v->size(), p).ec != std::errc()) return usage_error("label: --probability takes a number");
      probability = p;
    } else if (a == "--from-csv") {
      csv = value();
      if (!csv) return usage_error("label: --from-csv takes a FILE");
    } else if (a == "--json") {
      json = true;
    } else if (a.rfind("--", 0) == 0) {
      return usage_error("label: unknown option " + a);
    } else if (!image) {
      image = a;
    } else {
      return usage_error("label: one IMAGE at a time");
    }
  }
  // The reader is the catalog's reader (the OS user; on PostgreSQL the database role); --author NAME
  // records another reader's labels, entered by the reader on their behalf (each event keeps both:
  // author and recorded_by).
  if (csv) {
    if (image || !sets.empty() || region) return usage_error("label: --from-csv takes no IMAGE, --set or --region");
    auto catalog = open_catalog(global, app::Catalog::Mode::ReadWrite);
    if (!catalog) return kExitCatalog;
    if (!author) author = catalog->reader();
    return label_from_csv(*catalog, *csv, *author, json);
  }
  if (!image) return usage_error("label: no IMAGE given (a SOP Instance UID or a path in the catalog)");
  if (sets.empty()) return usage_error("label: nothing to set (--set FINDING=VALUE)");

  std::vector<app::LabelInput> inputs;
  int regions_used = 0;
  for (const auto& [finding, v] : sets) {
    app::LabelInput in;
    in.image = *image;
    in.finding = finding;
    in.value = v;
    in.author = author.value_or("");  // none: the catalog's reader
    in.comment = comment.value_or("");
    in.model_version = model_version;
    in.model_probability = probability;
    in.source = app::LabelSource::Cli;
    if (region && (v == app::LabelValue::Present || v == app::LabelValue::Uncertain)) {
      in.region = region;
      ++regions_used;
    }
    inputs.push_back(std::move(in));
  }
  if (region && regions_used == 0) return usage_error("label: --region belongs to a present or uncertain finding");
  auto catalog = open_catalog(global, app::Catalog::Mode::ReadWrite);
  if (!catalog) return kExitCatalog;
  if (!author) author = catalog->reader();
  auto ids = catalog->add_labels(inputs);
  if (!ids) return report_error(ids.error());
  // One command is one complete reading: it is submitted (blinded reading then shows the others').
  if (auto submitted = catalog->submit_reading(*image, *author); !submitted) return report_error(submitted.error());
  auto current = catalog->reader_labels(*image, *author);
  if (!current) return report_error(current.error());
  if (json) {
    for (const auto& e : current.value()) std::cout << event_json(e) << '\n';
  } else {
    const std::string& me = catalog->reader();
    std::printf("%zu label(s) recorded%s. Current labels of %s by %s:\n", ids->size(),
                *author == me ? "" : (" by " + me + " on behalf of " + *author).c_str(), image->c_str(), author->c_str());
    for (const auto& e : current.value()) {
      std::printf("  %-20s %-10s %s, %s%s\n", e.finding.c_str(), app::to_string(e.value), e.author.c_str(), e.created_at.c_str(),
                  e.region ? ("  region " + e.region->to_json()).c_str() : "");
    }
  }
  return kExitOk;
}

namespace {

// labels policy [--rule majority|unanimous] [--min-readers N] [--json]
int labels_policy(const Global& global, const Args& args) {
  std::optional<app::ConsensusPolicy::Rule> rule;
  std::optional<int> min_readers;
  bool json = false;
  for (std::size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--json") {
      json = true;
    } else if (a == "--rule" && i + 1 < args.size()) {
      auto parsed = app::consensus_rule_from_string(args[++i]);
      if (!parsed) return usage_error("labels policy: --rule takes majority or unanimous");
      rule = *parsed;
    } else if (a == "--min-readers" && i + 1 < args.size()) {
      min_readers = parse_number<int>(args[++i]);
      if (!min_readers || *min_readers < 1 || *min_readers > 100) return usage_error("labels policy: --min-readers takes 1 to 100");
    } else {
      return usage_error("labels policy: unknown option " + a);
    }
  }
  const bool change = rule || min_readers;
  auto catalog = open_catalog(global, change ? app::Catalog::Mode::ReadWrite : app::Catalog::Mode::ReadWriteCreate, !change);
  if (!catalog) return kExitCatalog;
  auto policy = catalog->consensus_policy();
  if (!policy) return report_error(policy.error());
  if (change) {
    if (rule) policy->rule = *rule;
    if (min_readers) policy->min_readers = *min_readers;
    if (auto s = catalog->set_consensus_policy(*policy); !s) return report_error(s.error());
  }
  if (json) {
    std::cout << JsonObject()
                     .add("rule", app::to_string(policy->rule))
                     .add("min_readers", policy->min_readers)
                     .add("policy", policy->describe())
                     .str()
              << '\n';
  } else {
    std::printf("consensus: %s\n", policy->describe().c_str());
  }
  return kExitOk;
}

// labels blinding [off|labels|labels+ai]
int labels_blinding(const Global& global, const Args& args) {
  if (args.size() > 2) return usage_error("labels blinding takes one of off, labels, labels+ai");
  std::optional<app::Blinding> mode;
  if (args.size() == 2) {
    mode = app::parse_blinding(args[1]);
    if (!mode) return usage_error("labels blinding: off, labels or labels+ai");
  }
  auto catalog = open_catalog(global, mode ? app::Catalog::Mode::ReadWrite : app::Catalog::Mode::ReadWriteCreate, !mode);
  if (!catalog) return kExitCatalog;
  if (mode) {
    if (auto s = catalog->set_blinding(*mode); !s) return report_error(s.error());
  }
  auto now = catalog->blinding();
  if (!now) return report_error(now.error());
  std::printf("blinding: %s\n", app::to_string(*now));
  return kExitOk;
}

}  // namespace

int cmd_labels(const Global& global, const Args& args) {
  if (args.empty()) return usage_error("labels: list, add NAME, history [IMAGE], policy or blinding");
  const std::string sub = args[0];
  if (sub == "policy") return labels_policy(global, args);
  if (sub == "blinding") return labels_blinding(global, args);
  bool json = false;
  std::optional<std::string> name, description;
  for (std::size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--json") json = true;
    else if (a == "--description") {
      if (i + 1 >= args.size()) return usage_error("labels add: --description takes TEXT");
      description = args[++i];
    } else if (a.rfind("--", 0) == 0) return usage_error("labels: unknown option " + a);
    else if (!name) name = a;
    else return usage_error("labels: too many arguments");
  }
  if (sub == "list") {
    auto catalog = open_catalog(global, app::Catalog::Mode::ReadWriteCreate, true);
    if (!catalog) return kExitCatalog;
    auto findings = catalog->findings();
    if (!findings) return report_error(findings.error());
    for (const auto& f : findings.value()) {
      if (json) {
        std::cout << JsonObject().add("name", f.name).add("description", f.description).add("builtin", f.builtin).str() << '\n';
      } else {
        std::printf("%-20s %s%s\n", f.name.c_str(), f.description.c_str(), f.builtin ? "" : "  (added)");
      }
    }
    return kExitOk;
  }
  if (sub == "add") {
    if (!name) return usage_error("labels add: NAME is required");
    auto catalog = open_catalog(global, app::Catalog::Mode::ReadWriteCreate);
    if (!catalog) return kExitCatalog;
    auto f = catalog->add_finding(*name, description.value_or(""));
    if (!f) return report_error(f.error());
    if (json) std::cout << JsonObject().add("name", f->name).add("description", f->description).str() << '\n';
    else std::printf("added %s\n", f->name.c_str());
    return kExitOk;
  }
  if (sub == "history") {
    auto catalog = open_catalog(global, app::Catalog::Mode::ReadWrite, true);
    if (!catalog) return kExitCatalog;
    auto events = catalog->label_history(name.value_or(""));
    if (!events) return report_error(events.error());
    for (const auto& e : events.value()) {
      if (json) {
        std::cout << event_json(e) << '\n';
      } else {
        const std::string who = e.author + (e.kind == app::LabelKind::Adjudication ? " (adjudicator)" : "") +
                                (e.recorded_by.empty() || e.recorded_by == e.author ? "" : " (entered by " + e.recorded_by + ")");
        std::printf("%s  %-12s %-20s %-10s %s%s\n", e.created_at.c_str(), who.c_str(), e.finding.c_str(),
                    app::to_string(e.value), e.sop_instance_uid.c_str(), e.comment.empty() ? "" : ("  \"" + e.comment + "\"").c_str());
      }
    }
    return kExitOk;
  }
  return usage_error("labels: unknown subcommand " + sub + " (list, add, history)");
}

}  // namespace hilum::cli
