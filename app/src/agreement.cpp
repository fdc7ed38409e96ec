#include "hilum/app/agreement.hpp"

#include <algorithm>
#include <map>
#include <set>

#include "hilum/app/export.hpp"
#include "hilum/app/json.hpp"
#include "hilum/core/numbers.hpp"
#include "hilum/training/agreement.hpp"
#include "text.hpp"

namespace hilum::app {
namespace {

int code(LabelValue v) {
  switch (v) {
    case LabelValue::Absent: return 0;
    case LabelValue::Present: return 1;
    case LabelValue::Uncertain: return 2;
    case LabelValue::Cleared: break;
  }
  return training::kMissing;
}

using Rows = std::vector<std::vector<int>>;

// The statistic on all rows and its bootstrap interval by patient.
AgreementValue measure(const Rows& rows, const std::vector<std::size_t>& patient_of_row, const AgreementOptions& o,
                       const std::function<std::optional<double>(const Rows&)>& statistic, const std::function<bool(const std::vector<int>&)>& counts) {
  AgreementValue v;
  for (const auto& r : rows) v.images += counts(r) ? 1 : 0;
  if (v.images < o.min_images) {
    v.reason = "too few images";
    return v;
  }
  v.value = statistic(rows);
  if (!v.value) v.reason = "undefined";
  if (v.value && o.bootstrap > 0) {
    auto ci = training::cluster_bootstrap(patient_of_row, o.bootstrap, o.seed, [&](const std::vector<std::size_t>& items) {
      Rows sample;
      sample.reserve(items.size());
      for (auto i : items) sample.push_back(rows[i]);
      return statistic(sample);
    });
    if (ci) {
      v.low = ci->low;
      v.high = ci->high;
    }
  }
  return v;
}

std::optional<double> pair_kappa(const Rows& rows) {
  std::vector<int> a, b;
  for (const auto& r : rows) {
    a.push_back(r[0]);
    b.push_back(r[1]);
  }
  return training::cohen_kappa(a, b);
}

bool both_rated(const std::vector<int>& r) { return r[0] != training::kMissing && r[1] != training::kMissing; }

}  // namespace

std::optional<LabelValue> others_consensus(const ConsensusPolicy& policy, const std::string& reader, const std::vector<LabelValue>& others,
                                           const std::optional<std::pair<std::string, LabelValue>>& adjudication, bool* no_other_reader) {
  if (no_other_reader) *no_other_reader = false;
  if (adjudication && adjudication->first != reader) return adjudication->second;
  if (others.empty()) {
    if (no_other_reader) *no_other_reader = true;
    return std::nullopt;
  }
  if (static_cast<int>(others.size()) < policy.min_readers) return std::nullopt;
  std::map<LabelValue, std::size_t> votes;
  for (auto v : others) ++votes[v];
  for (const auto& [value, n] : votes) {
    if (votes.size() == 1 || (policy.rule == ConsensusPolicy::Rule::Majority && 2 * n > others.size())) return value;
  }
  return std::nullopt;
}

Result<AgreementReport> agreement(Catalog& catalog, const AgreementOptions& options) {
  AgreementReport report;
  report.threshold = options.threshold;
  report.bootstrap = options.bootstrap;
  report.seed = options.seed;
  report.min_images = options.min_images;
  auto policy = catalog.consensus_policy();
  if (!policy) return policy.error();
  report.labels = "each reader's current label; consensus: " + policy->describe() +
                  ", of the other readers when a reader is compared with it (leave-one-out)";
  auto readings = catalog.reader_labels();
  if (!readings) return readings.error();
  auto consensus = catalog.consensus_labels();
  if (!consensus) return consensus.error();
  InstanceFilter all;
  all.with_thumbnails = false;
  auto instances = catalog.list_instances(all);
  if (!instances) return instances.error();
  std::map<std::int64_t, std::string> patient_of, uid_of;
  for (const auto& i : instances.value()) {
    patient_of[i.id] = patient_key(i.patient_id, i.patient_name, i.study_instance_uid);
    uid_of[i.id] = i.sop_instance_uid;
  }
  std::optional<ModelRecord> model;
  if (options.model_id) {
    auto m = catalog.find_model(std::to_string(*options.model_id));
    if (!m) return m.error();
    model = *m;
  } else {
    auto m = catalog.active_model();
    if (!m) return m.error();
    model = *m;
  }
  if (model) report.model_version = model->version;

  // Every reader's values and every adjudication, of every finding (the others' consensus on "No
  // Finding" depends on their consensus on the other findings of the image).
  std::map<std::int64_t, std::map<std::string, std::map<std::string, LabelValue>>> values;  // image -> finding -> reader
  std::map<std::pair<std::int64_t, std::string>, std::pair<std::string, LabelValue>> adjudicated;
  for (const auto& e : readings.value()) values[e.instance_id][e.finding][e.author] = e.value;
  for (const auto& e : consensus.value())
    if (e.basis == "adjudicated") adjudicated[{e.instance_id, e.finding}] = {e.author, e.value};
  // The others' consensus on one finding, without the "No Finding" rule.
  const auto others_on = [&](std::int64_t image, const std::string& finding, const std::string& reader, bool* no_other_reader,
                             bool* by_adjudication) -> std::optional<LabelValue> {
    std::vector<LabelValue> others;
    if (const auto im = values.find(image); im != values.end()) {
      if (const auto f = im->second.find(finding); f != im->second.end())
        for (const auto& [who, v] : f->second)
          if (who != reader) others.push_back(v);
    }
    std::optional<std::pair<std::string, LabelValue>> adjudication;
    if (const auto a = adjudicated.find({image, finding}); a != adjudicated.end()) adjudication = a->second;
    if (by_adjudication) *by_adjudication = adjudication && adjudication->first != reader;
    return others_consensus(*policy, reader, others, adjudication, no_other_reader);
  };
  // With the rule the catalog's consensus applies: "No Finding" present by the others' readings is
  // no consensus when they find another finding of the image present.
  const auto others_consensus_of = [&](std::int64_t image, const std::string& finding, const std::string& reader,
                                       bool* no_other_reader) -> std::optional<LabelValue> {
    bool by_adjudication = false;
    auto v = others_on(image, finding, reader, no_other_reader, &by_adjudication);
    if (!v || *v != LabelValue::Present || by_adjudication || finding != "No Finding") return v;
    std::set<std::string> findings;
    if (const auto im = values.find(image); im != values.end())
      for (const auto& [f, by_reader] : im->second) findings.insert(f);
    for (const auto& [key, a] : adjudicated)
      if (key.first == image) findings.insert(key.second);
    for (const auto& f : findings) {
      if (f != finding && others_on(image, f, reader, nullptr, nullptr) == LabelValue::Present) return std::nullopt;
    }
    return v;
  };

  // finding -> image -> reader -> code
  std::map<std::string, std::map<std::int64_t, std::map<std::string, int>>> table;
  std::set<std::string> everyone;
  for (const auto& e : readings.value()) {
    if (!options.finding.empty() && lower(e.finding) != lower(options.finding)) continue;
    table[e.finding][e.instance_id][e.author] = code(e.value);
    everyone.insert(e.author);
  }
  if (!options.finding.empty() && table.empty()) {
    auto findings = catalog.findings();
    if (!findings) return findings.error();
    const bool known = std::any_of(findings->begin(), findings->end(), [&](const Finding& f) { return lower(f.name) == lower(options.finding); });
    if (!known) return Error{ErrorKind::NotFound, "unknown finding: " + options.finding};
  }
  report.readers.assign(everyone.begin(), everyone.end());

  for (const auto& [finding, images] : table) {
    FindingAgreement fa;
    fa.finding = finding;
    std::set<std::string> readers;
    for (const auto& [image, by_reader] : images)
      for (const auto& [reader, value] : by_reader) readers.insert(reader);
    fa.readers.assign(readers.begin(), readers.end());
    std::vector<std::int64_t> image_ids;
    std::vector<std::size_t> patient_of_row;
    std::map<std::string, std::size_t> patient_index;
    Rows rows;  // images x readers
    for (const auto& [image, by_reader] : images) {
      image_ids.push_back(image);
      const std::string& key = patient_of[image];
      patient_of_row.push_back(patient_index.emplace(key, patient_index.size()).first->second);
      std::vector<int> row;
      for (const auto& r : fa.readers) {
        const auto it = by_reader.find(r);
        row.push_back(it == by_reader.end() ? training::kMissing : it->second);
      }
      rows.push_back(std::move(row));
    }
    fa.images = static_cast<int>(rows.size());
    fa.patients = static_cast<int>(patient_index.size());
    const auto column_pair = [&](std::size_t a, const std::function<int(std::size_t row)>& other) {
      Rows pairs;
      for (std::size_t i = 0; i < rows.size(); ++i) pairs.push_back({rows[i][a], other(i)});
      return pairs;
    };
    for (std::size_t a = 0; a < fa.readers.size(); ++a) {
      for (std::size_t b = a + 1; b < fa.readers.size(); ++b) {
        const Rows pairs = column_pair(a, [&](std::size_t i) { return rows[i][b]; });
        fa.cohen_kappa.push_back({fa.readers[a], fa.readers[b], measure(pairs, patient_of_row, options, pair_kappa, both_rated)});
      }
    }
    if (fa.readers.size() >= 2) {
      fa.fleiss_kappa = measure(rows, patient_of_row, options, training::fleiss_kappa, [](const std::vector<int>& r) {
        return std::none_of(r.begin(), r.end(), [](int v) { return v == training::kMissing; });
      });
    }
    fa.krippendorff_alpha = measure(rows, patient_of_row, options, training::krippendorff_alpha_nominal, [](const std::vector<int>& r) {
      return std::count_if(r.begin(), r.end(), [](int v) { return v != training::kMissing; }) >= 2;
    });
    // Against the consensus and against the AI.
    std::vector<int> ai(rows.size(), training::kMissing);
    if (model) {
      for (std::size_t i = 0; i < rows.size(); ++i) {
        auto p = catalog.predictions(uid_of[image_ids[i]], model->id);
        if (!p) return p.error();
        for (const auto& row : p.value())
          if (row.finding == finding) ai[i] = row.probability >= options.threshold ? 1 : 0;
      }
    }
    const bool any_ai = std::any_of(ai.begin(), ai.end(), [](int v) { return v != training::kMissing; });
    for (std::size_t a = 0; a < fa.readers.size(); ++a) {
      ReaderAgreement others{fa.readers[a], {}, 0, 0};
      const Rows vs_others = column_pair(a, [&](std::size_t i) {
        // fa.finding, not the binding `finding`: clang 14 (the fuzz build) cannot capture a structured binding.
        if (rows[i][a] == training::kMissing) return training::kMissing;
        bool no_other_reader = false;
        const auto v = others_consensus_of(image_ids[i], fa.finding, fa.readers[a], &no_other_reader);
        if (!v) ++(no_other_reader ? others.no_other_reader : others.no_consensus);
        return v ? code(*v) : training::kMissing;
      });
      others.cohen_kappa = measure(vs_others, patient_of_row, options, pair_kappa, both_rated);
      fa.vs_others_consensus.push_back(std::move(others));
      if (!any_ai) continue;
      Rows vs_ai = column_pair(a, [&](std::size_t i) { return ai[i]; });
      for (auto& r : vs_ai)
        if (r[0] == 2) r[0] = training::kMissing;  // the AI is never "uncertain"
      fa.vs_ai.push_back({fa.readers[a], measure(vs_ai, patient_of_row, options, pair_kappa, both_rated)});
    }
    report.findings.push_back(std::move(fa));
  }
  return report;
}

namespace {
std::string number(double v) { return core::format_number(v, 17); }

std::string value_json(const AgreementValue& v) {
  std::string o = "{\"value\":" + (v.value ? number(*v.value) : std::string("null"));
  o += ",\"ci95\":" + (v.low && v.high ? "[" + number(*v.low) + "," + number(*v.high) + "]" : std::string("null"));
  o += ",\"images\":" + std::to_string(v.images);
  return o + ",\"reason\":" + (v.reason.empty() ? std::string("null") : json_escape(v.reason)) + "}";
}

std::string names_json(const std::vector<std::string>& names) {
  std::string o = "[";
  for (std::size_t i = 0; i < names.size(); ++i) o += (i ? "," : "") + json_escape(names[i]);
  return o + "]";
}

std::string readers_json(const std::vector<ReaderAgreement>& list, bool left_out) {
  std::string o = "[";
  for (std::size_t i = 0; i < list.size(); ++i) {
    o += (i ? ",{" : "{") + std::string("\"reader\":") + json_escape(list[i].reader) + ",\"cohen_kappa\":" + value_json(list[i].cohen_kappa);
    if (left_out) {
      o += ",\"left_out\":" + JsonObject().add("no_other_reader", list[i].no_other_reader).add("no_consensus", list[i].no_consensus).str();
    }
    o += "}";
  }
  return o + "]";
}
}  // namespace

std::string agreement_json(const AgreementReport& r) {
  std::string findings = "[";
  for (std::size_t i = 0; i < r.findings.size(); ++i) {
    const auto& f = r.findings[i];
    std::string pairs = "[";
    for (std::size_t k = 0; k < f.cohen_kappa.size(); ++k) {
      const auto& p = f.cohen_kappa[k];
      std::string v = value_json(p.cohen_kappa);
      pairs += (k ? "," : "") + std::string("{\"readers\":") + names_json({p.reader_a, p.reader_b}) + "," + v.substr(1);
    }
    pairs += "]";
    JsonObject o;
    o.add("finding", f.finding).add("images", f.images).add("patients", f.patients).add_raw("readers", names_json(f.readers));
    o.add_raw("cohen_kappa", pairs).add_raw("fleiss_kappa", value_json(f.fleiss_kappa)).add_raw("krippendorff_alpha", value_json(f.krippendorff_alpha));
    o.add_raw("reader_vs_others_consensus", readers_json(f.vs_others_consensus, true)).add_raw("reader_vs_ai", readers_json(f.vs_ai, false));
    findings += (i ? "," : "") + o.str();
  }
  findings += "]";
  JsonObject o;
  o.add("labels", r.labels);
  if (r.model_version.empty()) o.add_null("model");
  else o.add("model", r.model_version);
  o.add_raw("threshold", number(r.threshold));
  o.add_raw("bootstrap", JsonObject().add("resamples", r.bootstrap).add("unit", "patient").add("seed", static_cast<std::int64_t>(r.seed)).str());
  o.add("min_images", r.min_images);
  o.add_raw("readers", names_json(r.readers)).add_raw("findings", findings);
  return o.str();
}

}  // namespace hilum::app
