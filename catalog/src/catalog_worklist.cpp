// The worklist's queries: part of the catalog (the one place that talks SQL, on either engine), behind
// Catalog::worklist, worklist_counts and label_activity.
#include <algorithm>

#include "catalog_impl.hpp"
#include "hilum/app/worklist.hpp"
#include "database.hpp"

namespace hilum::app {
namespace {

// Numbered parameters shared by every worklist statement:
//   ?1 author, ?2 model id (-1: none), ?3 threshold, ?4 finding id (-1: any), ?5 search pattern ('' = any).
// Per-image aggregates are computed once (GROUP BY) and LEFT JOINed, so the cost stays linear in
// the number of label events and predictions.
constexpr const char* kAggregates = R"SQL(
WITH cl AS (SELECT instance_ref, finding_ref, value FROM consensus_labels),
rl AS (SELECT instance_ref, finding_ref, value, author FROM reader_labels),
lab AS (SELECT instance_ref, count(*) AS n, sum(CASE WHEN value = 'present' THEN 1 ELSE 0 END) AS np FROM cl GROUP BY instance_ref),
rd AS (SELECT instance_ref, count(DISTINCT author) AS readers, max(CASE WHEN author = ?1 THEN 1 ELSE 0 END) AS mine FROM rl GROUP BY instance_ref),
rdis AS (SELECT instance_ref, count(*) AS n FROM
           (SELECT instance_ref, finding_ref FROM rl GROUP BY instance_ref, finding_ref HAVING count(DISTINCT value) > 1) d
         WHERE NOT EXISTS (SELECT 1 FROM adjudicated_labels a WHERE a.instance_ref = d.instance_ref AND a.finding_ref = d.finding_ref)
         GROUP BY instance_ref),
pr AS (SELECT instance_ref, count(*) AS n,
              1.0 - min(CASE WHEN probability >= ?3 THEN (probability - ?3) / (1.0 - ?3)
                             ELSE (?3 - probability) / ?3 END) AS unc
       FROM predictions WHERE model_ref = ?2 GROUP BY instance_ref),
dis AS (SELECT cl.instance_ref, count(*) AS n FROM cl
        JOIN predictions q ON q.instance_ref = cl.instance_ref AND q.finding_ref = cl.finding_ref AND q.model_ref = ?2
        WHERE (cl.value = 'present' AND q.probability < ?3) OR (cl.value = 'absent' AND q.probability >= ?3)
        GROUP BY cl.instance_ref)
)SQL";

constexpr const char* kJoins = R"SQL(
FROM instances i JOIN series se ON se.id = i.series_ref JOIN studies st ON st.id = se.study_ref
JOIN patients p ON p.id = st.patient_ref
LEFT JOIN lab ON lab.instance_ref = i.id LEFT JOIN rd ON rd.instance_ref = i.id LEFT JOIN rdis ON rdis.instance_ref = i.id
LEFT JOIN pr ON pr.instance_ref = i.id LEFT JOIN dis ON dis.instance_ref = i.id
LEFT JOIN prediction_domain pd ON pd.instance_ref = i.id AND pd.model_ref = ?2
)SQL";

// No reader's label and no consensus (an adjudication) on the image.
constexpr const char* kUnlabelled = "(lab.n IS NULL AND rd.readers IS NULL)";

constexpr const char* kPatientOrder = "p.patient_id, st.study_date, st.study_uid, se.series_number, se.series_uid, i.id";

// LIKE pattern for a case-insensitive substring search ('\' escapes the wildcards).
std::string like_pattern(const std::string& text) {
  if (text.empty()) return {};
  std::string p = "%";
  for (char c : text) {
    if (c == '%' || c == '_' || c == '\\') p.push_back('\\');
    p.push_back(c);
  }
  return p + "%";
}

struct Params {
  std::string author;
  std::int64_t model = -1;
  double threshold = 0.5;
  std::int64_t finding = -1;
  std::string search;
};

void bind(sql::Stmt& s, const Params& p) {
  s.bind(1, p.author).bind(2, p.model).bind(3, p.threshold).bind(4, p.finding).bind(5, p.search);
}

Result<Params> params_of(Catalog& catalog, sql::Database* db, const WorklistQuery& q, bool with_filters) {
  Params p;
  p.author = q.author;
  p.threshold = std::clamp(q.threshold, 0.01, 0.99);
  if (q.model_id) {
    p.model = *q.model_id;
  } else {
    auto active = catalog.active_model();
    if (!active) return active.error();
    if (active->has_value()) p.model = (*active)->id;
  }
  if (with_filters && !q.finding.empty()) {
    sql::Stmt s(db, "SELECT id FROM findings WHERE name = ? COLLATE NOCASE");
    if (!s.ok()) return *s.prepare_error();
    s.bind(1, q.finding);
    if (s.step()) {
      p.finding = s.int64(0);
    } else {
      if (s.error()) return *s.error();
      return Error{ErrorKind::NotFound, "unknown finding: " + q.finding};
    }
  }
  if (with_filters) p.search = like_pattern(q.search);
  return p;
}

}  // namespace

Result<std::vector<WorklistItem>> Catalog::worklist(const WorklistQuery& query) {
  auto params = params_of(*this, impl_->db, query, true);
  if (!params) return params.error();
  std::string q = kAggregates;
  q += "SELECT i.id, i.sop_uid, CASE WHEN i.stored_path <> '' THEN i.stored_path ELSE i.path END, p.patient_id, p.name, "
       "p.sex, i.patient_age, st.study_uid, st.study_date, st.description, st.accession_number, se.series_uid, "
       "se.series_number, se.description, se.modality, i.view_position, i.rows, i.columns, "
       "coalesce(lab.n, 0), coalesce(lab.np, 0), coalesce(rd.mine, 0), CASE WHEN pr.n IS NULL THEN 0 ELSE 1 END, pr.unc, coalesce(dis.n, 0), "
       "pd.in_domain, coalesce(pd.reason, ''), coalesce(rd.readers, 0), coalesce(rdis.n, 0), ";
  q += query.with_thumbnails ? "i.thumbnail" : "NULL";
  q += kJoins;
  q += " WHERE 1=1";
  switch (query.show) {
    case WorklistQuery::Show::All: break;
    case WorklistQuery::Show::Unlabelled: q += std::string(" AND ") + kUnlabelled; break;
    case WorklistQuery::Show::LabelledBy: q += " AND coalesce(rd.mine, 0) = 1"; break;
    case WorklistQuery::Show::NotLabelledBy: q += " AND coalesce(rd.mine, 0) = 0"; break;
    case WorklistQuery::Show::Disagreement: q += " AND dis.n IS NOT NULL"; break;
    case WorklistQuery::Show::ReadersDisagree: q += " AND rdis.n IS NOT NULL"; break;
  }
  if (query.hide_out_of_domain) q += " AND coalesce(pd.in_domain, 1) = 1";
  if (params->finding >= 0) {
    q += " AND (EXISTS (SELECT 1 FROM cl WHERE cl.instance_ref = i.id AND cl.finding_ref = ?4 AND cl.value = 'present')"
         " OR (NOT EXISTS (SELECT 1 FROM cl WHERE cl.instance_ref = i.id AND cl.finding_ref = ?4)"
         " AND EXISTS (SELECT 1 FROM predictions q WHERE q.instance_ref = i.id AND q.model_ref = ?2 AND q.finding_ref = ?4"
         " AND q.probability >= ?3)))";
  }
  if (!params->search.empty()) {
    q += " AND (lower(p.patient_id) LIKE lower(?5) ESCAPE '\\' OR lower(p.name) LIKE lower(?5) ESCAPE '\\'"
         " OR lower(st.accession_number) LIKE lower(?5) ESCAPE '\\')";
  }
  q += " ORDER BY ";
  switch (query.sort) {
    case WorklistQuery::Sort::Patient: q += kPatientOrder; break;
    case WorklistQuery::Sort::StudyDateNewest: q += std::string("st.study_date DESC, st.study_time DESC, ") + kPatientOrder; break;
    case WorklistQuery::Sort::Uncertainty: q += std::string("pr.unc IS NULL, pr.unc DESC, ") + kPatientOrder; break;
    case WorklistQuery::Sort::Imported: q += "i.imported_at DESC, i.id DESC"; break;
  }
  sql::Stmt s(impl_->db, q);
  if (!s.ok()) return *s.prepare_error();
  bind(s, *params);
  std::vector<WorklistItem> out;
  while (s.step()) {
    WorklistItem w;
    w.instance_id = s.int64(0);
    w.sop_instance_uid = s.text(1);
    w.path = s.text(2);
    w.patient_id = s.text(3);
    w.patient_name = s.text(4);
    w.patient_sex = s.text(5);
    w.patient_age = s.text(6);
    w.study_instance_uid = s.text(7);
    w.study_date = s.text(8);
    w.study_description = s.text(9);
    w.accession_number = s.text(10);
    w.series_instance_uid = s.text(11);
    w.series_number = s.text(12);
    w.series_description = s.text(13);
    w.modality = s.text(14);
    w.view_position = s.text(15);
    w.rows = static_cast<int>(s.int64(16));
    w.columns = static_cast<int>(s.int64(17));
    w.current_labels = static_cast<int>(s.int64(18));
    w.present_findings = static_cast<int>(s.int64(19));
    w.labelled_by_author = s.int64(20) != 0;
    w.has_predictions = s.int64(21) != 0;
    if (auto u = s.opt_real(22)) w.uncertainty = std::clamp(*u, 0.0, 1.0);
    w.disagreements = static_cast<int>(s.int64(23));
    if (!s.is_null(24)) w.in_domain = s.int64(24) != 0;
    w.domain_reason = s.text(25);
    w.readers = static_cast<int>(s.int64(26));
    w.reader_disagreements = static_cast<int>(s.int64(27));
    if (!s.is_null(28)) w.thumbnail_png = s.blob(28);
    out.push_back(std::move(w));
  }
  if (s.error()) return *s.error();
  return out;
}

Result<WorklistCounts> Catalog::worklist_counts(const WorklistQuery& query) {
  auto params = params_of(*this, impl_->db, query, false);
  if (!params) return params.error();
  std::string q = kAggregates;
  const auto count = [](const std::string& condition) { return "coalesce(sum(" + sql::flag(condition) + "), 0)"; };
  q += "SELECT count(*), " + count(kUnlabelled) + ", " + count(std::string("NOT ") + kUnlabelled) + ", " +
       count("coalesce(rd.mine, 0) = 1") + ", " + count("coalesce(rd.mine, 0) = 0") + ", " + count("pr.n IS NOT NULL") + ", " +
       count("dis.n IS NOT NULL") + ", " + count("pd.in_domain = 0") + ", " + count("rdis.n IS NOT NULL");
  q += kJoins;
  sql::Stmt s(impl_->db, q);
  if (!s.ok()) return *s.prepare_error();
  bind(s, *params);
  if (!s.step()) {
    if (s.error()) return *s.error();
    return WorklistCounts{};
  }
  WorklistCounts c;
  c.images = static_cast<int>(s.int64(0));
  c.unlabelled = static_cast<int>(s.int64(1));
  c.labelled = static_cast<int>(s.int64(2));
  c.labelled_by_author = static_cast<int>(s.int64(3));
  c.not_labelled_by_author = static_cast<int>(s.int64(4));
  c.with_predictions = static_cast<int>(s.int64(5));
  c.disagreements = static_cast<int>(s.int64(6));
  c.out_of_domain = static_cast<int>(s.int64(7));
  c.readers_disagree = static_cast<int>(s.int64(8));
  return c;
}

Result<LabelActivity> Catalog::label_activity(std::int64_t after_id) {
  sql::Stmt s(impl_->db, "SELECT count(*) FILTER (WHERE id > ?1), coalesce(max(id), 0) FROM label_events");
  if (!s.ok()) return *s.prepare_error();
  s.bind(1, after_id);
  if (!s.step()) {
    if (s.error()) return *s.error();
    return LabelActivity{};
  }
  return LabelActivity{s.int64(0), s.int64(1)};
}

}  // namespace hilum::app
