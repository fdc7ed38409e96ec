// The SQLite catalog: schema and migrations, instances, vocabulary, the append-only label
// history, jobs, pseudonyms and settings.
#include "hilum/app/catalog.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include <pwd.h>
#include <unistd.h>
#include <map>
#include <random>
#include <set>
#include <system_error>

#include "hilum/core/numbers.hpp"
#include "catalog_impl.hpp"
#include "database.hpp"
#include "hilum/core/text.hpp"

namespace fs = std::filesystem;

namespace hilum::app {
namespace {

using core::lower;
using core::quoted_excerpt;
using core::valid_utf8;

Error invalid(std::string message) { return {ErrorKind::Invalid, std::move(message)}; }

// Text entering the catalog (from a person, a command line or a file) is printed later as JSON and
// CSV: it must be well-formed UTF-8, checked here at the boundary.
std::optional<Error> text_problem(const std::string& what, std::string_view value) {
  if (valid_utf8(value)) return std::nullopt;
  return invalid(what + " is not valid UTF-8 text (" + std::to_string(value.size()) + " bytes; save it as UTF-8)");
}

std::string random_hex(std::size_t bytes) {
  std::random_device rd;  // getrandom(2) on Linux
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(bytes * 2);
  for (std::size_t i = 0; i < bytes; ++i) {
    const auto b = static_cast<unsigned>(rd() & 0xFFu);
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 0xF]);
  }
  return out;
}

// "2.25.<128-bit decimal>": a UID that needs no registered root (PS3.5 B.2).
std::string random_uid() {
  __extension__ typedef unsigned __int128 u128;
  std::random_device rd;
  u128 v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 32) | rd();
  v &= ~(static_cast<u128>(1) << 127);  // keep the integer below 2^127 (39 digits max)
  std::string digits;
  do {
    digits.push_back(static_cast<char>('0' + static_cast<int>(v % 10)));
    v /= 10;
  } while (v != 0);
  std::reverse(digits.begin(), digits.end());
  return "2.25." + digits;
}

}  // namespace

const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::CannotOpen: return "cannot-open";
    case ErrorKind::Locked: return "locked";
    case ErrorKind::ReadOnly: return "read-only";
    case ErrorKind::Corrupt: return "corrupt";
    case ErrorKind::NewerSchema: return "newer-schema";
    case ErrorKind::NotFound: return "not-found";
    case ErrorKind::Invalid: return "invalid";
    case ErrorKind::Conflict: return "conflict";
    case ErrorKind::Io: return "io";
    case ErrorKind::Interrupted: return "interrupted";
  }
  return "error";
}

std::string utc_now() {
  const auto now = std::chrono::system_clock::now();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[80];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

fs::path default_catalog_path() {
  if (const char* env = std::getenv("HILUM_DB"); env != nullptr && *env != '\0') return env;
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg != nullptr && *xdg != '\0') return fs::path(xdg) / "Hilum" / "hilum.db";
  const char* home = std::getenv("HOME");
  return fs::path(home != nullptr ? home : ".") / ".local" / "share" / "Hilum" / "hilum.db";
}

fs::path server_catalog_folder(const std::string& key) {
  if (const char* env = std::getenv("HILUM_DATA_DIR"); env != nullptr && *env != '\0') return env;
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg != nullptr && *xdg != '\0') {
    return fs::path(xdg) / "Hilum" / "postgresql" / key;
  }
  const char* home = std::getenv("HOME");
  return fs::path(home != nullptr ? home : ".") / ".local" / "share" / "Hilum" / "postgresql" / key;
}

std::string shown_catalog_location(const std::string& location) {
  std::string out = location;
  // user:password@ in the authority
  if (const auto scheme = out.find("://"); scheme != std::string::npos) {
    const auto end = out.find_first_of("/?", scheme + 3);
    const auto at = out.rfind('@', end == std::string::npos ? out.size() : end);
    if (at != std::string::npos && at > scheme) {
      const auto colon = out.find(':', scheme + 3);
      if (colon != std::string::npos && colon < at) out = out.substr(0, colon) + ":***" + out.substr(at);
    }
  }
  // password=... among the query parameters
  if (const auto query = out.find('?'); query != std::string::npos) {
    for (auto at = out.find("password=", query); at != std::string::npos; at = out.find("password=", at + 1)) {
      if (out[at - 1] != '?' && out[at - 1] != '&') continue;
      const auto value = at + 9;
      const auto stop = out.find('&', value);
      out = out.substr(0, value) + "***" + (stop == std::string::npos ? std::string() : out.substr(stop));
    }
  }
  return out;
}

// ---- Regions -----------------------------------------------------------------------------

std::string Region::to_json() const {
  const auto num = [](double v) { return core::format_number(v, 6); };  // never "120,5", whatever the locale
  if (shape == Shape::Rectangle) {
    return "{\"type\":\"rect\",\"x\":" + num(x) + ",\"y\":" + num(y) + ",\"w\":" + num(w) + ",\"h\":" + num(h) + "}";
  }
  std::string out = "{\"type\":\"polygon\",\"points\":[";
  for (std::size_t i = 0; i < points.size(); ++i) {
    if (i) out += ",";
    out += "[" + num(points[i].first) + "," + num(points[i].second) + "]";
  }
  return out + "]}";
}

std::optional<Region> Region::from_json(const std::string& json) {
  // Only reads what to_json writes: {"type":"rect",...} or {"type":"polygon","points":[[x,y],...]}.
  const auto number_after = [&json](const std::string& key, double& out) {
    const auto pos = json.find("\"" + key + "\":");
    if (pos == std::string::npos) return false;
    return core::parse_number_prefix(json.data() + pos + key.size() + 3, json.data() + json.size(), out) != nullptr;
  };
  Region r;
  if (json.find("\"type\":\"rect\"") != std::string::npos) {
    r.shape = Shape::Rectangle;
    if (!number_after("x", r.x) || !number_after("y", r.y) || !number_after("w", r.w) || !number_after("h", r.h)) return std::nullopt;
    return r;
  }
  if (json.find("\"type\":\"polygon\"") != std::string::npos) {
    r.shape = Shape::Polygon;
    auto pos = json.find("\"points\":[");
    if (pos == std::string::npos) return std::nullopt;
    pos += 10;
    while (pos < json.size()) {
      pos = json.find('[', pos);
      if (pos == std::string::npos) break;
      const char* last = json.data() + json.size();
      double px = 0.0, py = 0.0;
      const char* end = core::parse_number_prefix(json.data() + pos + 1, last, px);
      if (end == nullptr || end == last || *end != ',') break;
      end = core::parse_number_prefix(end + 1, last, py);
      if (end == nullptr || end == last || *end != ']') break;
      r.points.emplace_back(px, py);
      pos = static_cast<std::size_t>(end - json.data()) + 1;
    }
    if (r.points.size() < 3) return std::nullopt;
    return r;
  }
  return std::nullopt;
}

Region Region::bounding_box() const {
  if (shape == Shape::Rectangle) return *this;
  Region b;
  if (points.empty()) return b;
  double x0 = points[0].first, x1 = x0, y0 = points[0].second, y1 = y0;
  for (const auto& [px, py] : points) {
    x0 = std::min(x0, px);
    x1 = std::max(x1, px);
    y0 = std::min(y0, py);
    y1 = std::max(y1, py);
  }
  b.x = x0;
  b.y = y0;
  b.w = x1 - x0;
  b.h = y1 - y0;
  return b;
}

// ---- Schema ------------------------------------------------------------------------------

const std::vector<std::pair<std::string, std::string>>& builtin_findings() {
  static const std::vector<std::pair<std::string, std::string>> v{
      {"Atelectasis", "Collapse or incomplete expansion of lung tissue"},
      {"Cardiomegaly", "Enlarged cardiac silhouette"},
      {"Effusion", "Pleural effusion"},
      {"Infiltration", "Pulmonary infiltrate"},
      {"Mass", "Pulmonary mass (> 3 cm)"},
      {"Nodule", "Pulmonary nodule (<= 3 cm)"},
      {"Pneumonia", "Pneumonia"},
      {"Pneumothorax", "Pneumothorax"},
      {"Consolidation", "Airspace consolidation"},
      {"Edema", "Pulmonary edema"},
      {"Emphysema", "Emphysema"},
      {"Fibrosis", "Pulmonary fibrosis"},
      {"Pleural_Thickening", "Pleural thickening"},
      {"Hernia", "Hiatal or diaphragmatic hernia"},
      {"No Finding", "None of the findings is present (exclusive)"},
  };
  return v;
}

namespace sql {
std::string builtin_findings_sql(const std::string& created_at) {
  const auto quote = [](const std::string& s) {
    std::string q = "'";
    for (char c : s) {
      if (c == '\'') q += "''";
      else q.push_back(c);
    }
    return q + "'";
  };
  std::string out;
  for (const auto& [name, description] : builtin_findings()) {
    out += "INSERT INTO findings(name, description, builtin, created_at) VALUES (" + quote(name) + ", " + quote(description) +
           ", 1, " + created_at + ");\n";
  }
  return out;
}

// Each reader's current labels, the adjudicated ones and the consensus (schema 5), shared by both
// engines' schemas: written in SQL that SQLite and PostgreSQL run alike.
const std::string& label_views_sql() {
  static const std::string v = R"SQL(
CREATE VIEW reader_labels AS
  SELECT e.* FROM label_events e
  WHERE e.kind = 'reading'
    AND e.id = (SELECT MAX(x.id) FROM label_events x WHERE x.instance_ref = e.instance_ref AND x.finding_ref = e.finding_ref
                AND x.kind = 'reading' AND x.author = e.author)
    AND e.value <> 'cleared';
CREATE VIEW adjudicated_labels AS
  SELECT e.* FROM label_events e
  WHERE e.kind = 'adjudication'
    AND e.id = (SELECT MAX(x.id) FROM label_events x WHERE x.instance_ref = e.instance_ref AND x.finding_ref = e.finding_ref
                AND x.kind = 'adjudication')
    AND e.value <> 'cleared';
CREATE VIEW consensus_labels AS
  WITH policy AS (
    SELECT coalesce((SELECT value FROM settings WHERE key = 'consensus.rule'), 'majority') AS rule,
           coalesce((SELECT CAST(value AS INTEGER) FROM settings WHERE key = 'consensus.min_readers'), 1) AS min_readers),
  tally AS (SELECT instance_ref, finding_ref, count(*) AS readers, count(DISTINCT value) AS distinct_values
            FROM reader_labels GROUP BY instance_ref, finding_ref),
  votes AS (SELECT instance_ref, finding_ref, value, count(*) AS n, max(id) AS newest
            FROM reader_labels GROUP BY instance_ref, finding_ref, value),
  decided AS (
    SELECT a.id AS event_ref, 'adjudicated' AS basis, coalesce(t.readers, 0) AS readers,
           coalesce((SELECT v.n FROM votes v WHERE v.instance_ref = a.instance_ref AND v.finding_ref = a.finding_ref
                     AND v.value = a.value), 0) AS agreeing
    FROM adjudicated_labels a LEFT JOIN tally t ON t.instance_ref = a.instance_ref AND t.finding_ref = a.finding_ref
    UNION ALL
    SELECT v.newest, CASE WHEN t.distinct_values = 1 THEN 'unanimous' ELSE 'majority' END, t.readers, v.n
    FROM votes v JOIN tally t ON t.instance_ref = v.instance_ref AND t.finding_ref = v.finding_ref, policy
    WHERE t.readers >= policy.min_readers
      AND (t.distinct_values = 1 OR (policy.rule = 'majority' AND 2 * v.n > t.readers))
      AND NOT EXISTS (SELECT 1 FROM adjudicated_labels a WHERE a.instance_ref = v.instance_ref AND a.finding_ref = v.finding_ref))
  SELECT e.*, d.basis AS basis, d.readers AS readers, d.agreeing AS agreeing
  FROM decided d JOIN label_events e ON e.id = d.event_ref
  WHERE NOT (d.basis <> 'adjudicated' AND e.value = 'present'
             AND e.finding_ref = (SELECT id FROM findings WHERE name = 'No Finding')
             AND EXISTS (SELECT 1 FROM decided d2 JOIN label_events e2 ON e2.id = d2.event_ref
                         WHERE e2.instance_ref = e.instance_ref AND e2.finding_ref <> e.finding_ref AND e2.value = 'present'));
)SQL";
  return v;
}
}  // namespace sql

const std::vector<std::string>& catalog_migrations() {
  static const std::vector<std::string> m = [] {
    std::vector<std::string> steps;
    // 0 -> 1: the DICOM hierarchy, imported files, background jobs, settings.
    steps.emplace_back(R"SQL(
CREATE TABLE patients (
  id INTEGER PRIMARY KEY,
  patient_key TEXT NOT NULL UNIQUE,
  patient_id TEXT NOT NULL DEFAULT '',
  name TEXT NOT NULL DEFAULT '',
  birth_date TEXT NOT NULL DEFAULT '',
  sex TEXT NOT NULL DEFAULT ''
);
CREATE TABLE studies (
  id INTEGER PRIMARY KEY,
  study_uid TEXT NOT NULL UNIQUE,
  patient_ref INTEGER NOT NULL REFERENCES patients(id),
  study_date TEXT NOT NULL DEFAULT '',
  study_time TEXT NOT NULL DEFAULT '',
  description TEXT NOT NULL DEFAULT '',
  accession_number TEXT NOT NULL DEFAULT ''
);
CREATE INDEX studies_patient ON studies(patient_ref);
CREATE TABLE series (
  id INTEGER PRIMARY KEY,
  series_uid TEXT NOT NULL UNIQUE,
  study_ref INTEGER NOT NULL REFERENCES studies(id),
  modality TEXT NOT NULL DEFAULT '',
  series_number TEXT NOT NULL DEFAULT '',
  description TEXT NOT NULL DEFAULT ''
);
CREATE INDEX series_study ON series(study_ref);
CREATE TABLE instances (
  id INTEGER PRIMARY KEY,
  sop_uid TEXT NOT NULL UNIQUE,
  series_ref INTEGER NOT NULL REFERENCES series(id),
  sop_class_uid TEXT NOT NULL DEFAULT '',
  path TEXT NOT NULL,
  stored_path TEXT NOT NULL DEFAULT '',
  file_size INTEGER NOT NULL DEFAULT 0,
  file_mtime INTEGER NOT NULL DEFAULT 0,
  content_hash TEXT NOT NULL,
  transfer_syntax_uid TEXT NOT NULL DEFAULT '',
  photometric TEXT NOT NULL DEFAULT '',
  rows INTEGER NOT NULL DEFAULT 0,
  columns INTEGER NOT NULL DEFAULT 0,
  bits_stored INTEGER NOT NULL DEFAULT 0,
  view_position TEXT NOT NULL DEFAULT '',
  body_part TEXT NOT NULL DEFAULT '',
  laterality TEXT NOT NULL DEFAULT '',
  pixel_spacing_row REAL,
  pixel_spacing_column REAL,
  acquisition_date TEXT NOT NULL DEFAULT '',
  acquisition_time TEXT NOT NULL DEFAULT '',
  patient_age TEXT NOT NULL DEFAULT '',
  burned_in_annotation TEXT NOT NULL DEFAULT '',
  window_center REAL,
  window_width REAL,
  thumbnail BLOB,
  imported_at TEXT NOT NULL
);
CREATE INDEX instances_series ON instances(series_ref);
CREATE INDEX instances_path ON instances(path);
CREATE TABLE jobs (
  id INTEGER PRIMARY KEY,
  kind TEXT NOT NULL,
  params TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('running','interrupted','done','failed')),
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  summary TEXT NOT NULL DEFAULT ''
);
CREATE TABLE job_items (
  id INTEGER PRIMARY KEY,
  job_ref INTEGER NOT NULL REFERENCES jobs(id),
  path TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending',
  reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX job_items_job ON job_items(job_ref, status);
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
)SQL");
    // 1 -> 2: the label vocabulary and the append-only label history.
    std::string v2 = R"SQL(
CREATE TABLE findings (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE COLLATE NOCASE,
  description TEXT NOT NULL DEFAULT '',
  builtin INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL
);
CREATE TABLE label_events (
  id INTEGER PRIMARY KEY,
  instance_ref INTEGER NOT NULL REFERENCES instances(id),
  finding_ref INTEGER NOT NULL REFERENCES findings(id),
  value TEXT NOT NULL CHECK (value IN ('present','absent','uncertain','cleared')),
  region TEXT,
  author TEXT NOT NULL CHECK (author <> ''),
  created_at TEXT NOT NULL,
  model_version TEXT,
  model_probability REAL CHECK (model_probability IS NULL OR (model_probability >= 0 AND model_probability <= 1)),
  comment TEXT NOT NULL DEFAULT '',
  source TEXT NOT NULL DEFAULT 'cli'
);
CREATE INDEX label_events_instance ON label_events(instance_ref, finding_ref, id);
CREATE TRIGGER label_events_append_only_update BEFORE UPDATE ON label_events
  BEGIN SELECT RAISE(ABORT, 'the label history is append-only'); END;
CREATE TRIGGER label_events_append_only_delete BEFORE DELETE ON label_events
  BEGIN SELECT RAISE(ABORT, 'the label history is append-only'); END;
CREATE VIEW current_labels AS
  SELECT e.* FROM label_events e
  WHERE e.id = (SELECT MAX(x.id) FROM label_events x
                WHERE x.instance_ref = e.instance_ref AND x.finding_ref = e.finding_ref)
    AND e.value <> 'cleared';
)SQL";
    v2 += sql::builtin_findings_sql("strftime('%Y-%m-%dT%H:%M:%fZ','now')");
    steps.push_back(std::move(v2));
    // 2 -> 3: models, predictions, cached embeddings, export pseudonyms.
    steps.emplace_back(R"SQL(
CREATE TABLE models (
  id INTEGER PRIMARY KEY,
  version TEXT NOT NULL UNIQUE,
  parent_ref INTEGER REFERENCES models(id),
  name TEXT NOT NULL DEFAULT '',
  strategy TEXT NOT NULL DEFAULT '',
  hyperparameters TEXT NOT NULL DEFAULT '{}',
  label_snapshot TEXT NOT NULL DEFAULT '{}',
  metrics TEXT NOT NULL DEFAULT '{}',
  status TEXT NOT NULL CHECK (status IN ('active','candidate','retired')),
  status_reason TEXT NOT NULL DEFAULT '',
  path TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL
);
CREATE TABLE predictions (
  instance_ref INTEGER NOT NULL REFERENCES instances(id),
  model_ref INTEGER NOT NULL REFERENCES models(id),
  finding_ref INTEGER NOT NULL REFERENCES findings(id),
  probability REAL NOT NULL,
  computed_at TEXT NOT NULL,
  PRIMARY KEY (instance_ref, model_ref, finding_ref)
);
CREATE TABLE embeddings (
  instance_ref INTEGER NOT NULL REFERENCES instances(id),
  backbone_version TEXT NOT NULL,
  dim INTEGER NOT NULL,
  vector BLOB NOT NULL,
  computed_at TEXT NOT NULL,
  PRIMARY KEY (instance_ref, backbone_version)
);
CREATE TABLE pseudonyms (
  kind TEXT NOT NULL,
  original TEXT NOT NULL,
  pseudonym TEXT NOT NULL,
  created_at TEXT NOT NULL,
  PRIMARY KEY (kind, original),
  UNIQUE (kind, pseudonym)
);
)SQL");
    // 3 -> 4: the domain check stored with each image's predictions.
    steps.emplace_back(R"SQL(
CREATE TABLE prediction_domain (
  instance_ref INTEGER NOT NULL REFERENCES instances(id),
  model_ref INTEGER NOT NULL REFERENCES models(id),
  in_domain INTEGER NOT NULL CHECK (in_domain IN (0, 1)),
  score REAL,
  pixel_check INTEGER NOT NULL CHECK (pixel_check IN (0, 1)),
  reason TEXT NOT NULL,
  computed_at TEXT NOT NULL,
  PRIMARY KEY (instance_ref, model_ref)
);
)SQL");
    // 4 -> 5: several readers. Each event says whether it is a reading or an adjudication and which
    // OS user entered it; each reader has their own current label, the consensus is derived by the
    // policy in settings (consensus.rule, consensus.min_readers); readings can be submitted (blinding).
    steps.push_back(std::string(R"SQL(
ALTER TABLE label_events ADD COLUMN kind TEXT NOT NULL DEFAULT 'reading' CHECK (kind IN ('reading','adjudication'));
ALTER TABLE label_events ADD COLUMN recorded_by TEXT NOT NULL DEFAULT '';
DROP VIEW current_labels;
CREATE INDEX label_events_reader ON label_events(instance_ref, finding_ref, kind, author, id);
)SQL" + sql::label_views_sql() + R"SQL(
CREATE TABLE reading_submissions (
  instance_ref INTEGER NOT NULL REFERENCES instances(id),
  author TEXT NOT NULL,
  recorded_by TEXT NOT NULL,
  submitted_at TEXT NOT NULL,
  PRIMARY KEY (instance_ref, author)
);
)SQL"));
    // 5 -> 6: a client-generated key per label event (LabelInput::event_key): a change the GUI
    // retries after its connection was lost is written once, even when the first attempt committed.
    steps.emplace_back(R"SQL(
ALTER TABLE label_events ADD COLUMN event_key TEXT CHECK (event_key IS NULL OR (event_key <> '' AND length(event_key) <= 128));
CREATE UNIQUE INDEX label_events_event_key ON label_events(event_key);
)SQL");
    // 6 -> 7: where a label was entered is one of four names (LabelSource), enforced by the
    // catalog as the value and kind are (SQLite adds no CHECK to a column: a trigger refuses it).
    steps.emplace_back(R"SQL(
CREATE TRIGGER label_events_source BEFORE INSERT ON label_events
  WHEN NEW.source NOT IN ('cli','csv','gui','adjudication')
  BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: label source'); END;
)SQL");
    // 7 -> 8: which of the model's populations each image was taken for (whose calibration its
    // probabilities carry: DomainCheck::population), stored with its domain check.
    steps.emplace_back(R"SQL(
ALTER TABLE prediction_domain ADD COLUMN population TEXT NOT NULL DEFAULT '' CHECK (length(population) <= 128);
ALTER TABLE prediction_domain ADD COLUMN population_from TEXT NOT NULL DEFAULT '' CHECK (population_from IN ('', 'age', 'image', 'only population'));
)SQL");
    return steps;
  }();
  return m;
}

int Catalog::latest_schema_version() { return static_cast<int>(catalog_migrations().size()); }

// ---- Catalog -----------------------------------------------------------------------------


Catalog::Catalog(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Catalog::Catalog(Catalog&&) noexcept = default;
Catalog& Catalog::operator=(Catalog&&) noexcept = default;
Catalog::~Catalog() = default;

const fs::path& Catalog::path() const { return impl_->path; }
const fs::path& Catalog::local_path() const { return impl_->local_path; }
fs::path Catalog::local_folder() const { return impl_->local_path.parent_path(); }
int Catalog::schema_version() const { return impl_->schema_version; }
sqlite3* Catalog::handle() { return impl_->db->sqlite_handle(); }
const std::string& Catalog::reader() const { return impl_->reader; }

Result<Catalog> Catalog::open(const fs::path& path, Mode mode) {
  auto opened = sql::is_postgresql_url(path.native()) ? sql::open_postgresql(path.native(), mode)
                                                      : sql::open_sqlite(path, mode, catalog_migrations());
  if (!opened) return opened.error();
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->schema_version = opened->schema_version;
  impl->owner = std::move(opened->db);
  impl->db = impl->owner.get();
  impl->reader = impl->db->reader();
  impl->local_path = path;
  if (const std::string key = impl->db->location_key(); !key.empty()) impl->local_path = server_catalog_folder(key) / "catalog";
  return Catalog(std::move(impl));
}

Result<std::string> Catalog::integrity_check() { return impl_->db->integrity_check(); }

Status Catalog::transaction(const std::function<Status()>& body) {
  const int level = impl_->depth;
  const std::string sp = "hilum_sp" + std::to_string(level);
  if (auto e = sql::exec(impl_->db, level == 0 ? std::string(impl_->db->begin_statement()) : "SAVEPOINT " + sp, "starting a transaction")) return *e;
  ++impl_->depth;
  Status result = body();
  --impl_->depth;
  if (!result.ok()) {
    (void)sql::exec(impl_->db, level == 0 ? "ROLLBACK" : "ROLLBACK TO " + sp + "; RELEASE " + sp, "rolling back");
    return result;
  }
  if (auto e = sql::exec(impl_->db, level == 0 ? "COMMIT" : "RELEASE " + sp, "committing")) {
    if (level == 0) (void)sql::exec(impl_->db, "ROLLBACK", "rolling back");
    return *e;
  }
  return core::Done{};
}

// ---- Instances ---------------------------------------------------------------------------

namespace {

constexpr const char* kInstanceColumns =
    "i.id, i.sop_uid, i.sop_class_uid, i.path, i.stored_path, i.file_size, i.file_mtime, i.content_hash, "
    "p.patient_id, p.name, p.birth_date, p.sex, i.patient_age, "
    "st.study_uid, st.study_date, st.study_time, st.description, st.accession_number, "
    "se.series_uid, se.series_number, se.description, se.modality, "
    "i.transfer_syntax_uid, i.photometric, i.rows, i.columns, i.bits_stored, i.view_position, i.body_part, "
    "i.laterality, i.pixel_spacing_row, i.pixel_spacing_column, i.acquisition_date, i.acquisition_time, "
    "i.burned_in_annotation, i.window_center, i.window_width, i.thumbnail, i.imported_at";
constexpr const char* kInstanceJoins =
    " FROM instances i JOIN series se ON se.id = i.series_ref JOIN studies st ON st.id = se.study_ref "
    "JOIN patients p ON p.id = st.patient_ref";

Instance read_instance(const sql::Stmt& s) {
  Instance r;
  int c = 0;
  r.id = s.int64(c++);
  r.sop_instance_uid = s.text(c++);
  r.sop_class_uid = s.text(c++);
  r.path = s.text(c++);
  r.stored_path = s.text(c++);
  r.file_size = s.int64(c++);
  r.file_mtime = s.int64(c++);
  r.content_hash = s.text(c++);
  r.patient_id = s.text(c++);
  r.patient_name = s.text(c++);
  r.patient_birth_date = s.text(c++);
  r.patient_sex = s.text(c++);
  r.patient_age = s.text(c++);
  r.study_instance_uid = s.text(c++);
  r.study_date = s.text(c++);
  r.study_time = s.text(c++);
  r.study_description = s.text(c++);
  r.accession_number = s.text(c++);
  r.series_instance_uid = s.text(c++);
  r.series_number = s.text(c++);
  r.series_description = s.text(c++);
  r.modality = s.text(c++);
  r.transfer_syntax_uid = s.text(c++);
  r.photometric = s.text(c++);
  r.rows = static_cast<int>(s.int64(c++));
  r.columns = static_cast<int>(s.int64(c++));
  r.bits_stored = static_cast<int>(s.int64(c++));
  r.view_position = s.text(c++);
  r.body_part = s.text(c++);
  r.laterality = s.text(c++);
  r.pixel_spacing_row = s.opt_real(c++);
  r.pixel_spacing_column = s.opt_real(c++);
  r.acquisition_date = s.text(c++);
  r.acquisition_time = s.text(c++);
  r.burned_in_annotation = s.text(c++);
  r.window_center = s.opt_real(c++);
  r.window_width = s.opt_real(c++);
  r.thumbnail_png = s.blob(c++);
  r.imported_at = s.text(c++);
  return r;
}

std::string patient_key(const InstanceRecord& r) {
  if (!r.patient_id.empty()) return "id:" + r.patient_id;
  if (!r.patient_name.empty()) return "name:" + r.patient_name + "|" + r.patient_birth_date;
  return "study:" + r.study_instance_uid;  // nothing identifies the patient: one per study
}

std::string study_uid_of(const InstanceRecord& r) {
  return r.study_instance_uid.empty() ? "unknown-study:" + r.sop_instance_uid : r.study_instance_uid;
}
std::string series_uid_of(const InstanceRecord& r) {
  return r.series_instance_uid.empty() ? "unknown-series:" + study_uid_of(r) : r.series_instance_uid;
}

std::string describe_patient(const std::string& id, const std::string& name) {
  if (!id.empty()) return "patient ID '" + id + "'";
  if (!name.empty()) return "no patient ID (name '" + name + "')";
  return "no patient ID";
}

// Why `r` cannot join the catalog's hierarchy: its study is another patient's, or its series is
// in another study. nullopt when it fits (or is new).
Result<std::optional<std::string>> hierarchy_conflict(sql::Database* db, const InstanceRecord& r, const std::string& pkey) {
  const std::string study_uid = study_uid_of(r);
  sql::Stmt study(db,
                  "SELECT p.patient_key, p.patient_id, p.name FROM studies st JOIN patients p ON p.id = st.patient_ref "
                  "WHERE st.study_uid = ?");
  if (!study.ok()) return *study.prepare_error();
  study.bind(1, study_uid);
  if (study.step()) {
    if (study.text(0) != pkey) {
      return std::optional<std::string>(
          "Study Instance UID " + study_uid + " is already in the catalog for " + describe_patient(study.text(1), study.text(2)) +
          ", but this file is of " + describe_patient(r.patient_id, r.patient_name) +
          ": a study UID reused across patients; the image was not attached to the other patient");
    }
  } else if (study.error()) {
    return *study.error();
  }
  const std::string series_uid = series_uid_of(r);
  sql::Stmt series(db,
                   "SELECT st.study_uid, p.patient_id, p.name FROM series se JOIN studies st ON st.id = se.study_ref "
                   "JOIN patients p ON p.id = st.patient_ref WHERE se.series_uid = ?");
  if (!series.ok()) return *series.prepare_error();
  series.bind(1, series_uid);
  if (series.step()) {
    if (series.text(0) != study_uid) {
      return std::optional<std::string>(
          "Series Instance UID " + series_uid + " is already in the catalog in study " + series.text(0) + " of " +
          describe_patient(series.text(1), series.text(2)) + ", but this file names study " + study_uid + " of " +
          describe_patient(r.patient_id, r.patient_name) + ": a series UID reused across studies; the image was not attached");
    }
  } else if (series.error()) {
    return *series.error();
  }
  return std::optional<std::string>();
}

// Inserts (ON CONFLICT DO NOTHING) a row keyed by a unique text, then return its id.
Result<std::int64_t> upsert_id(sql::Database* db, const char* insert_sql, const char* select_sql,
                               const std::function<void(sql::Stmt&)>& bind_insert, const std::string& key) {
  sql::Stmt ins(db, insert_sql);
  bind_insert(ins);
  if (!ins.run()) return *ins.error();
  sql::Stmt sel(db, select_sql);
  sel.bind(1, key);
  if (!sel.step()) return sel.error() ? *sel.error() : Error{ErrorKind::Io, "catalog row vanished"};
  return sel.int64(0);
}

}  // namespace

Result<std::vector<PutOutcome>> Catalog::put_instances(const std::vector<InstanceRecord>& records) {
  std::vector<PutOutcome> outcomes;
  outcomes.reserve(records.size());
  sql::Database* db = impl_->db;
  const std::string now = utc_now();
  Status status = transaction([&]() -> Status {
    sql::Stmt existing(db, "SELECT content_hash FROM instances WHERE sop_uid = ?");
    sql::Stmt insert(db,
                     "INSERT INTO instances(sop_uid, series_ref, sop_class_uid, path, stored_path, file_size, file_mtime, "
                     "content_hash, transfer_syntax_uid, photometric, rows, columns, bits_stored, view_position, body_part, "
                     "laterality, pixel_spacing_row, pixel_spacing_column, acquisition_date, acquisition_time, patient_age, "
                     "burned_in_annotation, window_center, window_width, thumbnail, imported_at) "
                     "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
    if (!existing.ok()) return *existing.prepare_error();
    if (!insert.ok()) return *insert.prepare_error();
    for (const InstanceRecord& r : records) {
      if (r.sop_instance_uid.empty()) return invalid("an image without a SOP Instance UID cannot be catalogued: " + r.path);
      existing.reset();
      existing.bind(1, r.sop_instance_uid);
      if (existing.step()) {
        outcomes.push_back(existing.text(0) == r.content_hash ? PutOutcome::AlreadyPresent : PutOutcome::Conflict);
        continue;
      }
      if (existing.error()) return *existing.error();
      const std::string pkey = patient_key(r);
      auto conflict = hierarchy_conflict(db, r, pkey);
      if (!conflict) return conflict.error();
      if (conflict->has_value()) {
        outcomes.push_back(PutOutcome::PatientConflict);
        continue;
      }
      auto patient = upsert_id(
          db, "INSERT INTO patients(patient_key, patient_id, name, birth_date, sex) VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
          "SELECT id FROM patients WHERE patient_key = ?",
          [&](sql::Stmt& s) { s.bind(1, pkey).bind(2, r.patient_id).bind(3, r.patient_name).bind(4, r.patient_birth_date).bind(5, r.patient_sex); },
          pkey);
      if (!patient) return patient.error();
      const std::string study_uid = study_uid_of(r);
      auto study = upsert_id(
          db,
          "INSERT INTO studies(study_uid, patient_ref, study_date, study_time, description, accession_number) "
          "VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
          "SELECT id FROM studies WHERE study_uid = ?",
          [&](sql::Stmt& s) {
            s.bind(1, study_uid).bind(2, *patient).bind(3, r.study_date).bind(4, r.study_time).bind(5, r.study_description).bind(6, r.accession_number);
          },
          study_uid);
      if (!study) return study.error();
      const std::string series_uid = series_uid_of(r);
      auto series = upsert_id(
          db, "INSERT INTO series(series_uid, study_ref, modality, series_number, description) VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
          "SELECT id FROM series WHERE series_uid = ?",
          [&](sql::Stmt& s) { s.bind(1, series_uid).bind(2, *study).bind(3, r.modality).bind(4, r.series_number).bind(5, r.series_description); },
          series_uid);
      if (!series) return series.error();
      insert.reset();
      const std::vector<std::function<void(int)>> binders{
          [&](int i) { insert.bind(i, r.sop_instance_uid); }, [&](int i) { insert.bind(i, *series); },
          [&](int i) { insert.bind(i, r.sop_class_uid); }, [&](int i) { insert.bind(i, r.path); },
          [&](int i) { insert.bind(i, r.stored_path); }, [&](int i) { insert.bind(i, r.file_size); },
          [&](int i) { insert.bind(i, r.file_mtime); }, [&](int i) { insert.bind(i, r.content_hash); },
          [&](int i) { insert.bind(i, r.transfer_syntax_uid); }, [&](int i) { insert.bind(i, r.photometric); },
          [&](int i) { insert.bind(i, r.rows); }, [&](int i) { insert.bind(i, r.columns); },
          [&](int i) { insert.bind(i, r.bits_stored); }, [&](int i) { insert.bind(i, r.view_position); },
          [&](int i) { insert.bind(i, r.body_part); }, [&](int i) { insert.bind(i, r.laterality); },
          [&](int i) { insert.bind(i, r.pixel_spacing_row); }, [&](int i) { insert.bind(i, r.pixel_spacing_column); },
          [&](int i) { insert.bind(i, r.acquisition_date); }, [&](int i) { insert.bind(i, r.acquisition_time); },
          [&](int i) { insert.bind(i, r.patient_age); }, [&](int i) { insert.bind(i, r.burned_in_annotation); },
          [&](int i) { insert.bind(i, r.window_center); }, [&](int i) { insert.bind(i, r.window_width); },
          [&](int i) { insert.bind_blob(i, r.thumbnail_png); }, [&](int i) { insert.bind(i, now); }};
      for (std::size_t k = 0; k < binders.size(); ++k) binders[k](static_cast<int>(k + 1));
      if (!insert.run()) return *insert.error();
      outcomes.push_back(PutOutcome::Inserted);
    }
    return core::Done{};
  });
  if (!status) return status.error();
  return outcomes;
}

Result<std::optional<std::string>> Catalog::attach_conflict(const InstanceRecord& record) {
  return hierarchy_conflict(impl_->db, record, patient_key(record));
}

Result<std::optional<Instance>> Catalog::find_instance(const std::string& uid_or_path) {
  const std::string base = std::string("SELECT ") + kInstanceColumns + kInstanceJoins;
  std::vector<std::pair<const char*, std::string>> attempts{{" WHERE i.sop_uid = ?", uid_or_path}, {" WHERE i.path = ?", uid_or_path}};
  std::error_code ec;
  const fs::path abs = fs::weakly_canonical(fs::absolute(uid_or_path, ec), ec);
  if (!ec && abs.string() != uid_or_path) attempts.emplace_back(" WHERE i.path = ?", abs.string());
  for (const auto& [where, key] : attempts) {
    sql::Stmt s(impl_->db, base + where);
    if (!s.ok()) return *s.prepare_error();
    s.bind(1, key);
    if (s.step()) return std::optional<Instance>(read_instance(s));
    if (s.error()) return *s.error();
  }
  return std::optional<Instance>();
}

namespace {
// An image is labelled when any reader's current label or an adjudication is on it.
constexpr const char* kLabelledImage =
    "(EXISTS (SELECT 1 FROM reader_labels c WHERE c.instance_ref = i.id) OR "
    "EXISTS (SELECT 1 FROM adjudicated_labels c WHERE c.instance_ref = i.id))";

std::string filter_sql(const InstanceFilter& f, std::vector<std::string>& binds) {
  std::string where = " WHERE 1=1";
  if (f.labelled == InstanceFilter::Labelled::Labelled) where += std::string(" AND ") + kLabelledImage;
  if (f.labelled == InstanceFilter::Labelled::Unlabelled) where += std::string(" AND NOT ") + kLabelledImage;
  if (f.study_instance_uid) {
    where += " AND st.study_uid = ?";
    binds.push_back(*f.study_instance_uid);
  }
  if (f.patient_id) {
    where += " AND p.patient_id = ?";
    binds.push_back(*f.patient_id);
  }
  return where;
}
}  // namespace

Result<std::vector<Instance>> Catalog::list_instances(const InstanceFilter& filter) {
  std::vector<std::string> binds;
  std::string columns = kInstanceColumns;
  if (!filter.with_thumbnails) columns.replace(columns.find("i.thumbnail"), 11, "NULL");
  const std::string q = std::string("SELECT ") + columns + kInstanceJoins + filter_sql(filter, binds) +
                        " ORDER BY p.patient_id, st.study_date, st.study_uid, se.series_number, se.series_uid, i.id";
  sql::Stmt s(impl_->db, q);
  if (!s.ok()) return *s.prepare_error();
  for (std::size_t k = 0; k < binds.size(); ++k) s.bind(static_cast<int>(k + 1), binds[k]);
  std::vector<Instance> out;
  while (s.step()) out.push_back(read_instance(s));
  if (s.error()) return *s.error();
  return out;
}

Result<std::vector<StudySummary>> Catalog::list_studies(const InstanceFilter& filter) {
  std::vector<std::string> binds;
  const std::string q =
      "SELECT st.study_uid, p.patient_id, p.name, st.study_date, st.description, st.accession_number, count(i.id), "
      "sum(CASE WHEN " + std::string(kLabelledImage) + " THEN 1 ELSE 0 END)" +
      std::string(kInstanceJoins) + filter_sql(filter, binds) +
      " GROUP BY st.id, p.id ORDER BY p.patient_id, st.study_date, st.study_uid";
  sql::Stmt s(impl_->db, q);
  if (!s.ok()) return *s.prepare_error();
  for (std::size_t k = 0; k < binds.size(); ++k) s.bind(static_cast<int>(k + 1), binds[k]);
  std::vector<StudySummary> out;
  while (s.step()) {
    StudySummary st;
    st.study_instance_uid = s.text(0);
    st.patient_id = s.text(1);
    st.patient_name = s.text(2);
    st.study_date = s.text(3);
    st.study_description = s.text(4);
    st.accession_number = s.text(5);
    st.images = static_cast<int>(s.int64(6));
    st.labelled_images = static_cast<int>(s.int64(7));
    out.push_back(std::move(st));
  }
  if (s.error()) return *s.error();
  return out;
}

Result<std::vector<std::pair<std::string, std::pair<std::int64_t, std::int64_t>>>> Catalog::file_stamps() {
  sql::Stmt s(impl_->db, "SELECT path, file_size, file_mtime FROM instances");
  if (!s.ok()) return *s.prepare_error();
  std::vector<std::pair<std::string, std::pair<std::int64_t, std::int64_t>>> out;
  while (s.step()) out.push_back({s.text(0), {s.int64(1), s.int64(2)}});
  if (s.error()) return *s.error();
  return out;
}

Result<std::int64_t> Catalog::count_instances() {
  sql::Stmt s(impl_->db, "SELECT count(*) FROM instances");
  if (!s.ok()) return *s.prepare_error();
  if (!s.step()) return *s.error();
  return s.int64(0);
}

// ---- Vocabulary --------------------------------------------------------------------------

Result<std::vector<Finding>> Catalog::findings() {
  sql::Stmt s(impl_->db, "SELECT id, name, description, builtin, created_at FROM findings ORDER BY id");
  if (!s.ok()) return *s.prepare_error();
  std::vector<Finding> out;
  while (s.step()) out.push_back(Finding{s.int64(0), s.text(1), s.text(2), s.int64(3) != 0, s.text(4)});
  if (s.error()) return *s.error();
  return out;
}

std::string finding_name_problem(std::string_view name) {
  if (name.empty()) return "a finding needs a name";
  if (!valid_utf8(name)) return "a finding name must be valid UTF-8 text";
  if (name.size() > 200) return "a finding name has at most 200 bytes (this one has " + std::to_string(name.size()) + ")";
  const std::string shown = quoted_excerpt(name);
  if (std::string_view("=+-@").find(name.front()) != std::string_view::npos) {
    return "a finding name cannot begin with '=', '+', '-' or '@' (a spreadsheet would run it as a formula): " + shown;
  }
  for (const char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '|' || c == '=' || c == ',' || u < 0x20 || u == 0x7f) {
      return "a finding name cannot contain '|', '=', ',' or control characters: " + shown;
    }
  }
  return {};
}

Result<Finding> Catalog::add_finding(const std::string& name, const std::string& description) {
  std::string trimmed = name;
  while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.back()))) trimmed.pop_back();
  while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.front()))) trimmed.erase(trimmed.begin());
  if (std::string problem = finding_name_problem(trimmed); !problem.empty()) return invalid(problem);
  if (auto e = text_problem("the description of " + trimmed, description)) return *e;
  {
    sql::Stmt s(impl_->db, "SELECT name FROM findings WHERE name = ?");
    s.bind(1, trimmed);
    if (s.step()) return invalid("the vocabulary already has " + s.text(0));
  }
  sql::Stmt s(impl_->db, "INSERT INTO findings(name, description, builtin, created_at) VALUES (?, ?, 0, ?)");
  const std::string now = utc_now();
  s.bind(1, trimmed).bind(2, description).bind(3, now);
  if (!s.run()) return *s.error();
  return Finding{impl_->db->last_insert_id(), trimmed, description, false, now};
}

// ---- Labels ------------------------------------------------------------------------------

std::string ConsensusPolicy::describe() const {
  return std::string(rule == Rule::Majority ? "adjudicated > unanimous > majority" : "adjudicated > unanimous") + " (at least " +
         std::to_string(min_readers) + (min_readers == 1 ? " reader)" : " readers)");
}

std::string current_os_user() {
  const uid_t uid = ::geteuid();
  std::vector<char> buffer(16384);
  struct passwd pw {};
  struct passwd* found = nullptr;
  if (::getpwuid_r(uid, &pw, buffer.data(), buffer.size(), &found) == 0 && found != nullptr && found->pw_name != nullptr &&
      *found->pw_name != '\0') {
    return found->pw_name;
  }
  if (const char* user = std::getenv("USER"); user != nullptr && *user != '\0') return user;
  return "uid-" + std::to_string(uid);
}

namespace {
constexpr const char* kNoFinding = "No Finding";

// Columns 0-13 of every event query; consensus queries add basis, readers and agreeing (14-16).
constexpr const char* kEventColumns =
    "SELECT e.id, e.instance_ref, i.sop_uid, f.name, e.value, e.region, e.author, e.created_at, e.model_version, "
    "e.model_probability, e.comment, e.source, e.kind, e.recorded_by";

// An enum's stored name read back from `where`: a name this Hilum does not know means the
// catalog was written by something else; it is reported, never read as a default.
template <typename E>
Result<E> stored(Result<E> parsed, const char* where) {
  if (parsed) return parsed;
  return Error{ErrorKind::Corrupt, std::string("the catalog's ") + where + " holds an " + parsed.error().message};
}

Result<LabelEvent> read_event(const sql::Stmt& s, bool consensus) {
  LabelEvent e;
  e.id = s.int64(0);
  e.instance_id = s.int64(1);
  e.sop_instance_uid = s.text(2);
  e.finding = s.text(3);
  auto value = stored(label_value_from_string(s.text(4)), "label history");
  if (!value) return value.error();
  e.value = *value;
  if (auto region = s.opt_text(5)) e.region = Region::from_json(*region);
  e.author = s.text(6);
  e.created_at = s.text(7);
  e.model_version = s.opt_text(8);
  e.model_probability = s.opt_real(9);
  e.comment = s.text(10);
  auto source = stored(label_source_from_string(s.text(11)), "label history");
  if (!source) return source.error();
  e.source = *source;
  auto kind = stored(label_kind_from_string(s.text(12)), "label history");
  if (!kind) return kind.error();
  e.kind = *kind;
  e.recorded_by = s.text(13);
  if (consensus) {
    e.basis = s.text(14);
    e.readers = static_cast<int>(s.int64(15));
    e.agreeing = static_cast<int>(s.int64(16));
  }
  return e;
}

Result<std::vector<LabelEvent>> query_events(Catalog& catalog, sql::Database* db, const std::string& from, const std::string& uid_or_path,
                                             const std::string& author = {}) {
  const bool consensus = from == "consensus_labels";
  std::string q = std::string(kEventColumns) + (consensus ? ", e.basis, e.readers, e.agreeing" : "") + " FROM " + from +
                  " e JOIN instances i ON i.id = e.instance_ref JOIN findings f ON f.id = e.finding_ref WHERE 1=1";
  std::optional<std::int64_t> instance;
  if (!uid_or_path.empty()) {
    auto found = catalog.find_instance(uid_or_path);
    if (!found) return found.error();
    if (!found->has_value()) return Error{ErrorKind::NotFound, "no such image in the catalog: " + uid_or_path};
    instance = (*found)->id;
    q += " AND e.instance_ref = ?1";
  }
  if (!author.empty()) q += " AND e.author = ?2";
  q += " ORDER BY e.instance_ref, f.id, e.author, e.id";
  if (from == "label_events") q = q.substr(0, q.rfind(" ORDER BY")) + " ORDER BY e.id";
  sql::Stmt s(db, q);
  if (!s.ok()) return *s.prepare_error();
  if (instance) s.bind(1, *instance);
  if (!author.empty()) s.bind(2, author);
  std::vector<LabelEvent> out;
  while (s.step()) {
    auto e = read_event(s, consensus);
    if (!e) return e.error();
    out.push_back(std::move(e.value()));
  }
  if (s.error()) return *s.error();
  return out;
}

// "No Finding" present beside another present finding in `values`: why it cannot be, else "".
std::string no_finding_clash(const std::map<std::string, LabelValue>& values) {
  const auto nf = values.find(kNoFinding);
  if (nf == values.end() || nf->second != LabelValue::Present) return {};
  for (const auto& [name, value] : values) {
    if (name != kNoFinding && value == LabelValue::Present) {
      return "\"No Finding\" is exclusive: " + name + " would be present on the same image; set it absent or clear it in the same change";
    }
  }
  return {};
}
}  // namespace

// Checks and appends `labels` (all of one kind) in one transaction; `inside` runs first inside it
// (adjudicate's check that no other adjudicator was first).
Result<std::vector<std::int64_t>> Catalog::append_labels(const std::vector<LabelInput>& labels, const std::function<Status()>& inside) {
  if (labels.empty()) return std::vector<std::int64_t>{};
  const std::string recorder = impl_->reader;
  // 1. Check everything before writing anything.
  auto vocabulary = findings();
  if (!vocabulary) return vocabulary.error();
  std::map<std::string, const Finding*> by_name;
  for (const auto& f : vocabulary.value()) by_name[lower(f.name)] = &f;
  struct Resolved {
    std::int64_t instance = 0;
    const Finding* finding = nullptr;
    std::string author;
  };
  std::vector<Resolved> resolved;
  std::map<std::string, Instance> images;
  for (std::size_t k = 0; k < labels.size(); ++k) {
    const LabelInput& in = labels[k];
    const std::string where = "label " + std::to_string(k + 1) + " (" + in.image + ", " + in.finding + "): ";
    const std::string author = in.author.empty() ? recorder : in.author;
    const std::string model_version = in.model_version.value_or("");
    for (const auto& [what, text] : {std::pair<const char*, std::string_view>{"the author", author}, {"the comment", in.comment},
                                     {"the model version", model_version}}) {
      if (auto e = text_problem(where + what, text)) return *e;
    }
    if (std::any_of(author.begin(), author.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; })) {
      return invalid(where + "an author name cannot hold control characters");
    }
    auto image_it = images.find(in.image);
    if (image_it == images.end()) {
      auto found = find_instance(in.image);
      if (!found) return found.error();
      if (!found->has_value()) return Error{ErrorKind::NotFound, where + "no such image in the catalog"};
      image_it = images.emplace(in.image, std::move(**found)).first;
    }
    const auto f = by_name.find(lower(in.finding));
    if (f == by_name.end()) return Error{ErrorKind::NotFound, where + "unknown finding (add it with: hilum-cli labels add NAME)"};
    if (!in.event_key.empty()) {
      if (in.event_key.size() > 128 || std::any_of(in.event_key.begin(), in.event_key.end(), [](char c) {
            return static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f;
          })) {
        return invalid(where + "an event key is 1 to 128 printable ASCII characters without spaces");
      }
      for (std::size_t j = 0; j < k; ++j) {
        if (labels[j].event_key == in.event_key) return invalid(where + "the event key " + in.event_key + " is given twice");
      }
    }
    if (in.model_probability && !(*in.model_probability >= 0.0 && *in.model_probability <= 1.0)) {
      return invalid(where + "model probability must be between 0 and 1");
    }
    if (in.region) {
      const Instance& im = image_it->second;
      const Region box = in.region->bounding_box();
      if (in.region->shape == Region::Shape::Polygon && in.region->points.size() < 3) return invalid(where + "a polygon needs at least 3 points");
      if (!(box.w > 0 && box.h > 0)) return invalid(where + "the region is empty");
      if (box.x < 0 || box.y < 0 || (im.columns > 0 && box.x + box.w > im.columns) || (im.rows > 0 && box.y + box.h > im.rows)) {
        return invalid(where + "the region lies outside the " + std::to_string(im.columns) + " x " + std::to_string(im.rows) + " image");
      }
      if (in.value == LabelValue::Cleared || in.value == LabelValue::Absent) return invalid(where + "only a present or uncertain finding has a region");
    }
    resolved.push_back({image_it->second.id, f->second, author});
  }
  // 2. Inside one transaction: "No Finding" stays exclusive among each reader's own labels (and
  // among the adjudicated consensus), then the events are appended.
  std::vector<std::int64_t> ids;
  const std::string now = utc_now();
  Status status = transaction([&]() -> Status {
    if (inside) {
      if (auto s = inside(); !s) return s.error();
    }
    // An input whose event key is stored already was written by an earlier attempt (one whose
    // reply was lost): its event's id is returned and it is not written again.
    std::vector<std::optional<std::int64_t>> stored(labels.size());
    {
      sql::Stmt find(impl_->db, "SELECT id FROM label_events WHERE event_key = ?");
      if (!find.ok()) return *find.prepare_error();
      for (std::size_t k = 0; k < labels.size(); ++k) {
        if (labels[k].event_key.empty()) continue;
        find.reset();
        find.bind(1, labels[k].event_key);
        if (find.step()) stored[k] = find.int64(0);
        if (find.error()) return *find.error();
      }
    }
    std::map<std::pair<std::int64_t, std::string>, std::map<std::string, LabelValue>> state;  // (image, author) -> finding -> value
    for (std::size_t k = 0; k < labels.size(); ++k) {
      if (stored[k]) continue;
      const auto key = std::make_pair(resolved[k].instance, labels[k].kind == LabelKind::Reading ? resolved[k].author : std::string());
      if (state.count(key)) continue;
      const std::string uid = std::find_if(images.begin(), images.end(), [&](const auto& kv) {
                                return kv.second.id == resolved[k].instance;
                              })->second.sop_instance_uid;
      auto current = labels[k].kind == LabelKind::Reading ? reader_labels(uid, resolved[k].author) : consensus_labels(uid);
      if (!current) return current.error();
      auto& values = state[key];
      for (const auto& e : current.value()) values[e.finding] = e.value;
    }
    for (std::size_t k = 0; k < labels.size(); ++k) {
      if (stored[k]) continue;
      const auto key = std::make_pair(resolved[k].instance, labels[k].kind == LabelKind::Reading ? resolved[k].author : std::string());
      state[key][resolved[k].finding->name] = labels[k].value;
    }
    for (const auto& [key, values] : state) {
      if (std::string clash = no_finding_clash(values); !clash.empty()) return invalid(clash);
    }
    sql::Stmt s(impl_->db,
                "INSERT INTO label_events(instance_ref, finding_ref, value, region, author, created_at, model_version, "
                "model_probability, comment, source, kind, recorded_by, event_key) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)");
    if (!s.ok()) return *s.prepare_error();
    for (std::size_t k = 0; k < labels.size(); ++k) {
      const LabelInput& in = labels[k];
      if (stored[k]) {
        ids.push_back(*stored[k]);
        continue;
      }
      s.reset();
      s.bind(1, resolved[k].instance).bind(2, resolved[k].finding->id).bind(3, to_string(in.value));
      if (in.region) s.bind(4, in.region->to_json());
      else s.bind_null(4);
      s.bind(5, resolved[k].author).bind(6, now).bind(7, in.model_version).bind(8, in.model_probability).bind(9, in.comment);
      s.bind(10, to_string(in.source)).bind(11, to_string(in.kind)).bind(12, recorder);
      if (in.event_key.empty()) s.bind_null(13);
      else s.bind(13, in.event_key);
      if (!s.run()) return *s.error();
      ids.push_back(impl_->db->last_insert_id());
    }
    return core::Done{};
  });
  if (!status) return status.error();
  return ids;
}

Result<std::vector<std::int64_t>> Catalog::add_labels(const std::vector<LabelInput>& labels) {
  for (const auto& in : labels) {
    if (in.kind != LabelKind::Reading) return invalid("an adjudication is recorded with adjudicate(), which checks that no one else decided first");
  }
  return append_labels(labels, {});
}

Result<std::vector<LabelEvent>> Catalog::label_history(const std::string& uid_or_path) {
  return query_events(*this, impl_->db, "label_events", uid_or_path);
}

Result<std::vector<LabelEvent>> Catalog::reader_labels(const std::string& uid_or_path, const std::string& author) {
  return query_events(*this, impl_->db, "reader_labels", uid_or_path, author);
}

Result<std::vector<LabelEvent>> Catalog::consensus_labels(const std::string& uid_or_path) {
  return query_events(*this, impl_->db, "consensus_labels", uid_or_path);
}

Result<ConsensusPolicy> Catalog::consensus_policy() {
  ConsensusPolicy p;
  auto rule = setting("consensus.rule");
  if (!rule) return rule.error();
  if (rule->has_value()) {
    auto r = stored(consensus_rule_from_string(**rule), "settings");
    if (!r) return r.error();
    p.rule = *r;
  }
  auto min = setting("consensus.min_readers");
  if (!min) return min.error();
  if (min->has_value()) {
    if (auto n = core::parse_number(**min); n && *n >= 1 && *n <= 100) p.min_readers = static_cast<int>(*n);
  }
  return p;
}

Status Catalog::set_consensus_policy(const ConsensusPolicy& policy) {
  if (policy.min_readers < 1 || policy.min_readers > 100) return invalid("the consensus needs between 1 and 100 readers");
  return transaction([&]() -> Status {
    if (auto s = set_setting("consensus.rule", to_string(policy.rule)); !s) return s;
    return set_setting("consensus.min_readers", std::to_string(policy.min_readers));
  });
}

// ---- Adjudication ------------------------------------------------------------------------

Result<std::vector<DisagreementItem>> Catalog::disagreements() {
  auto readings = reader_labels();
  if (!readings) return readings.error();
  auto adjudicated = query_events(*this, impl_->db, "adjudicated_labels", {});
  if (!adjudicated) return adjudicated.error();
  auto consensus = consensus_labels();
  if (!consensus) return consensus.error();
  std::set<std::pair<std::int64_t, std::string>> settled;
  for (const auto& e : adjudicated.value()) settled.emplace(e.instance_id, e.finding);
  std::map<std::pair<std::int64_t, std::string>, LabelValue> decided;
  for (const auto& e : consensus.value()) decided[{e.instance_id, e.finding}] = e.value;
  // image -> finding -> (author, value)
  std::map<std::int64_t, std::map<std::string, std::vector<std::pair<std::string, LabelValue>>>> by_image;
  std::map<std::int64_t, std::string> uid_of;
  for (const auto& e : readings.value()) {
    by_image[e.instance_id][e.finding].emplace_back(e.author, e.value);
    uid_of[e.instance_id] = e.sop_instance_uid;
  }
  std::vector<DisagreementItem> out;
  for (auto& [instance, findings] : by_image) {
    DisagreementItem item;
    // A reader's "No Finding" against another reader's present finding.
    std::set<std::string> says_normal, says_abnormal;
    for (const auto& [finding, votes] : findings) {
      for (const auto& [author, value] : votes) {
        if (value != LabelValue::Present) continue;
        (finding == kNoFinding ? says_normal : says_abnormal).insert(author);
      }
    }
    for (auto& [finding, votes] : findings) {
      if (settled.count({instance, finding})) continue;
      std::set<LabelValue> values;
      for (const auto& v : votes) values.insert(v.second);
      const bool normal_clash = finding == kNoFinding && !says_normal.empty() && !says_abnormal.empty() &&
                                !(says_normal.size() == 1 && says_abnormal == says_normal);
      if (values.size() < 2 && !normal_clash) continue;
      Disagreement d;
      d.finding = finding;
      d.readers = votes;
      if (auto it = decided.find({instance, finding}); it != decided.end()) d.consensus = it->second;
      item.findings.push_back(std::move(d));
    }
    if (item.findings.empty()) continue;
    auto image = find_instance(uid_of[instance]);
    if (!image) return image.error();
    if (!image->has_value()) continue;
    item.instance_id = instance;
    item.sop_instance_uid = (*image)->sop_instance_uid;
    item.patient_id = (*image)->patient_id;
    item.study_instance_uid = (*image)->study_instance_uid;
    sql::Stmt s(impl_->db, "SELECT coalesce(max(id), 0) FROM label_events WHERE instance_ref = ?");
    s.bind(1, instance);
    if (!s.step()) return s.error() ? *s.error() : Error{ErrorKind::Io, "catalog query returned nothing"};
    item.newest_event_id = s.int64(0);
    out.push_back(std::move(item));
  }
  // Images without any consensus on a disputed finding first, then in the catalog's order.
  const auto open = [](const DisagreementItem& i) {
    return std::any_of(i.findings.begin(), i.findings.end(), [](const Disagreement& d) { return !d.consensus; });
  };
  std::stable_sort(out.begin(), out.end(), [&](const DisagreementItem& a, const DisagreementItem& b) { return open(a) && !open(b); });
  return out;
}

Result<std::vector<std::int64_t>> Catalog::adjudicate(const std::string& uid_or_path,
                                                      const std::vector<std::pair<std::string, LabelValue>>& decisions,
                                                      const std::string& adjudicator, const std::string& comment,
                                                      std::optional<std::int64_t> seen_up_to) {
  if (decisions.empty()) return invalid("nothing to decide (--set FINDING=VALUE)");
  auto image = find_instance(uid_or_path);
  if (!image) return image.error();
  if (!image->has_value()) return Error{ErrorKind::NotFound, "no such image in the catalog: " + uid_or_path};
  const Instance im = **image;
  std::vector<LabelInput> inputs;
  for (const auto& [finding, value] : decisions) {
    LabelInput in;
    in.image = im.sop_instance_uid;
    in.finding = finding;
    in.value = value;
    in.author = adjudicator;
    in.comment = comment;
    in.source = LabelSource::Adjudication;
    in.kind = LabelKind::Adjudication;
    inputs.push_back(std::move(in));
  }
  const auto check = [&]() -> Status {
    // Inside the write transaction: another adjudicator's decision on these findings, recorded
    // after what this one saw, wins; this one is told and writes nothing.
    sql::Stmt s(impl_->db,
                "SELECT e.author, e.created_at, f.name FROM label_events e JOIN findings f ON f.id = e.finding_ref "
                "WHERE e.instance_ref = ? AND e.kind = 'adjudication' AND e.id > ? AND f.name = ? COLLATE NOCASE ORDER BY e.id DESC LIMIT 1");
    if (!s.ok()) return *s.prepare_error();
    for (const auto& [finding, value] : decisions) {
      (void)value;
      s.reset();
      s.bind(1, im.id).bind(2, seen_up_to.value_or(0)).bind(3, finding);
      if (s.step()) {
        return Error{ErrorKind::Conflict, s.text(2) + " on " + im.sop_instance_uid + " was adjudicated by " + s.text(0) + " at " +
                                              s.text(1) + " (after what you saw); nothing was written: look again (hilum-cli adjudicate list)"};
      }
      if (s.error()) return *s.error();
    }
    return core::Done{};
  };
  return append_labels(inputs, check);
}

// ---- Blinded reading ---------------------------------------------------------------------

Result<Blinding> Catalog::blinding() {
  auto v = setting("blinding");
  if (!v) return v.error();
  if (!v->has_value()) return Blinding::Off;
  return stored(blinding_from_string(**v), "settings");
}

Status Catalog::set_blinding(Blinding b) { return set_setting("blinding", to_string(b)); }

Status Catalog::submit_reading(const std::string& uid_or_path, const std::string& reader) {
  auto image = find_instance(uid_or_path);
  if (!image) return image.error();
  if (!image->has_value()) return Error{ErrorKind::NotFound, "no such image in the catalog: " + uid_or_path};
  const std::string who = reader.empty() ? impl_->reader : reader;
  if (auto e = text_problem("the reader", who)) return *e;
  sql::Stmt s(impl_->db, "INSERT INTO reading_submissions(instance_ref, author, recorded_by, submitted_at) VALUES (?,?,?,?) ON CONFLICT DO NOTHING");
  s.bind(1, (*image)->id).bind(2, who).bind(3, impl_->reader).bind(4, utc_now());
  if (!s.run()) return *s.error();
  return core::Done{};
}

Result<ReaderView> Catalog::reader_view(const std::string& uid_or_path, const std::string& reader) {
  const std::string who = reader.empty() ? impl_->reader : reader;
  auto image = find_instance(uid_or_path);
  if (!image) return image.error();
  if (!image->has_value()) return Error{ErrorKind::NotFound, "no such image in the catalog: " + uid_or_path};
  auto mode = blinding();
  if (!mode) return mode.error();
  ReaderView view;
  {
    sql::Stmt s(impl_->db, "SELECT 1 FROM reading_submissions WHERE instance_ref = ? AND author = ?");
    s.bind(1, (*image)->id).bind(2, who);
    view.submitted = s.step();
    if (s.error()) return *s.error();
  }
  view.blinded = *mode != Blinding::Off && !view.submitted;
  view.ai_hidden = *mode == Blinding::LabelsAndAi && !view.submitted;
  auto all = reader_labels((*image)->sop_instance_uid);
  if (!all) return all.error();
  for (auto& e : all.value()) {
    if (e.author == who) view.own.push_back(std::move(e));
    else if (!view.blinded) view.others.push_back(std::move(e));
  }
  if (!view.blinded) {
    auto consensus = consensus_labels((*image)->sop_instance_uid);
    if (!consensus) return consensus.error();
    view.consensus = std::move(consensus.value());
  }
  return view;
}

// ---- Jobs --------------------------------------------------------------------------------

Result<std::int64_t> Catalog::create_job(const std::string& kind, const std::string& params,
                                         const std::vector<std::string>& item_paths) {
  std::int64_t id = 0;
  Status status = transaction([&]() -> Status {
    const std::string now = utc_now();
    sql::Stmt s(impl_->db, "INSERT INTO jobs(kind, params, status, created_at, updated_at) VALUES (?,?,'running',?,?)");
    s.bind(1, kind).bind(2, params).bind(3, now).bind(4, now);
    if (!s.run()) return *s.error();
    id = impl_->db->last_insert_id();
    sql::Stmt item(impl_->db, "INSERT INTO job_items(job_ref, path) VALUES (?,?)");
    if (!item.ok()) return *item.prepare_error();
    for (const auto& p : item_paths) {
      item.reset();
      item.bind(1, id).bind(2, p);
      if (!item.run()) return *item.error();
    }
    return core::Done{};
  });
  if (!status) return status.error();
  return id;
}

namespace {
Result<Job> read_job(const sql::Stmt& s) {
  auto status = stored(job_status_from_string(s.text(3)), "jobs");
  if (!status) return status.error();
  return Job{s.int64(0), s.text(1), s.text(2), *status, s.text(4), s.text(5), s.text(6)};
}
constexpr const char* kJobColumns = "SELECT id, kind, params, status, created_at, updated_at, summary FROM jobs";
}  // namespace

Result<std::optional<Job>> Catalog::unfinished_job(const std::string& kind, const std::string& params) {
  sql::Stmt s(impl_->db, std::string(kJobColumns) + " WHERE kind = ? AND params = ? AND status IN ('running','interrupted') ORDER BY id DESC LIMIT 1");
  s.bind(1, kind).bind(2, params);
  if (s.step()) {
    auto job = read_job(s);
    if (!job) return job.error();
    return std::optional<Job>(std::move(job.value()));
  }
  if (s.error()) return *s.error();
  return std::optional<Job>();
}

Result<Job> Catalog::job(std::int64_t id) {
  sql::Stmt s(impl_->db, std::string(kJobColumns) + " WHERE id = ?");
  s.bind(1, id);
  if (s.step()) return read_job(s);
  if (s.error()) return *s.error();
  return Error{ErrorKind::NotFound, "no job " + std::to_string(id)};
}

Result<std::vector<JobItem>> Catalog::job_items(std::int64_t job_id, bool pending_only) {
  sql::Stmt s(impl_->db, std::string("SELECT id, path, status, reason FROM job_items WHERE job_ref = ?") +
                             (pending_only ? " AND status = 'pending'" : "") + " ORDER BY id");
  s.bind(1, job_id);
  std::vector<JobItem> out;
  while (s.step()) {
    auto status = stored(job_item_status_from_string(s.text(2)), "job items");
    if (!status) return status.error();
    out.push_back(JobItem{s.int64(0), s.text(1), *status, s.text(3)});
  }
  if (s.error()) return *s.error();
  return out;
}

Status Catalog::finish_job_items(const std::vector<JobItem>& items) {
  return transaction([&]() -> Status {
    sql::Stmt s(impl_->db, "UPDATE job_items SET status = ?, reason = ? WHERE id = ?");
    if (!s.ok()) return *s.prepare_error();
    for (const auto& item : items) {
      s.reset();
      s.bind(1, to_string(item.status)).bind(2, item.reason).bind(3, item.id);
      if (!s.run()) return *s.error();
    }
    return core::Done{};
  });
}

Status Catalog::set_job_status(std::int64_t job_id, JobStatus status, const std::string& summary) {
  sql::Stmt s(impl_->db, "UPDATE jobs SET status = ?, summary = CASE WHEN ? = '' THEN summary ELSE ? END, updated_at = ? WHERE id = ?");
  s.bind(1, to_string(status)).bind(2, summary).bind(3, summary).bind(4, utc_now()).bind(5, job_id);
  if (!s.run()) return *s.error();
  if (impl_->db->changes() == 0) return Error{ErrorKind::NotFound, "no job " + std::to_string(job_id)};
  return core::Done{};
}

// ---- Models and predictions --------------------------------------------------------------

namespace {
constexpr const char* kModelColumns =
    "SELECT id, version, parent_ref, name, strategy, hyperparameters, label_snapshot, metrics, status, status_reason, path, "
    "created_at FROM models";
Result<ModelRecord> read_model(const sql::Stmt& s) {
  ModelRecord m;
  m.id = s.int64(0);
  m.version = s.text(1);
  if (!s.is_null(2)) m.parent_id = s.int64(2);
  m.name = s.text(3);
  m.strategy = s.text(4);
  m.hyperparameters = s.text(5);
  m.label_snapshot = s.text(6);
  m.metrics = s.text(7);
  auto status = stored(model_status_from_string(s.text(8)), "models");
  if (!status) return status.error();
  m.status = *status;
  m.status_reason = s.text(9);
  m.path = s.text(10);
  m.created_at = s.text(11);
  return m;
}
}  // namespace

Result<ModelRecord> Catalog::register_model(const ModelRecord& model, const std::vector<std::string>& labels) {
  if (model.version.empty()) return invalid("a model needs a version");
  if (auto e = text_problem("the model version", model.version)) return *e;
  if (auto e = text_problem("the model name", model.name)) return *e;
  if (*to_string(model.status) == '\0') return invalid("unknown model status " + std::to_string(static_cast<int>(model.status)));
  ModelRecord out = model;
  Status status = transaction([&]() -> Status {
    {
      sql::Stmt s(impl_->db, "SELECT id FROM models WHERE version = ?");
      s.bind(1, model.version);
      if (s.step()) return invalid("a model version " + model.version + " is already registered");
    }
    for (const auto& label : labels) {
      // The model's outputs join the vocabulary: the same rules as for a finding added by hand.
      if (std::string problem = finding_name_problem(label); !problem.empty()) {
        return invalid("the model's output \"" + label + "\" cannot be a finding: " + problem);
      }
      sql::Stmt f(impl_->db, "INSERT INTO findings(name, description, builtin, created_at) VALUES (?, ?, 0, ?) ON CONFLICT DO NOTHING");
      f.bind(1, label).bind(2, "output of model " + model.version).bind(3, utc_now());
      if (!f.run()) return *f.error();
    }
    if (model.status == ModelStatus::Active) {
      sql::Stmt d(impl_->db, "UPDATE models SET status = 'candidate', status_reason = ? WHERE status = 'active'");
      d.bind(1, "replaced by " + model.version);
      if (!d.run()) return *d.error();
    }
    out.created_at = utc_now();
    sql::Stmt s(impl_->db,
                "INSERT INTO models(version, parent_ref, name, strategy, hyperparameters, label_snapshot, metrics, status, status_reason, "
                "path, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)");
    s.bind(1, model.version);
    if (model.parent_id) s.bind(2, *model.parent_id);
    else s.bind_null(2);
    s.bind(3, model.name).bind(4, model.strategy).bind(5, model.hyperparameters).bind(6, model.label_snapshot).bind(7, model.metrics);
    s.bind(8, to_string(model.status)).bind(9, model.status_reason).bind(10, model.path).bind(11, out.created_at);
    if (!s.run()) return *s.error();
    out.id = impl_->db->last_insert_id();
    return core::Done{};
  });
  if (!status) return status.error();
  return out;
}

Result<std::vector<ModelRecord>> Catalog::models() {
  sql::Stmt s(impl_->db, std::string(kModelColumns) + " ORDER BY id");
  std::vector<ModelRecord> out;
  while (s.step()) {
    auto m = read_model(s);
    if (!m) return m.error();
    out.push_back(std::move(m.value()));
  }
  if (s.error()) return *s.error();
  return out;
}

Result<std::optional<ModelRecord>> Catalog::find_model(const std::string& version_or_id) {
  sql::Stmt s(impl_->db, std::string(kModelColumns) + " WHERE version = ? OR CAST(id AS TEXT) = ? ORDER BY version = ? DESC LIMIT 1");
  s.bind(1, version_or_id).bind(2, version_or_id).bind(3, version_or_id);
  if (s.step()) {
    auto m = read_model(s);
    if (!m) return m.error();
    return std::optional<ModelRecord>(std::move(m.value()));
  }
  if (s.error()) return *s.error();
  return std::optional<ModelRecord>();
}

Result<std::optional<ModelRecord>> Catalog::active_model() {
  sql::Stmt s(impl_->db, std::string(kModelColumns) + " WHERE status = 'active' ORDER BY id DESC LIMIT 1");
  if (s.step()) {
    auto m = read_model(s);
    if (!m) return m.error();
    return std::optional<ModelRecord>(std::move(m.value()));
  }
  if (s.error()) return *s.error();
  return std::optional<ModelRecord>();
}

Status Catalog::activate_model(std::int64_t id, const std::string& reason) {
  return transaction([&]() -> Status {
    sql::Stmt check(impl_->db, "SELECT version FROM models WHERE id = ?");
    check.bind(1, id);
    if (!check.step()) return check.error() ? *check.error() : Error{ErrorKind::NotFound, "no model " + std::to_string(id)};
    const std::string version = check.text(0);
    sql::Stmt d(impl_->db, "UPDATE models SET status = 'candidate', status_reason = ? WHERE status = 'active' AND id <> ?");
    d.bind(1, "replaced by " + version).bind(2, id);
    if (!d.run()) return *d.error();
    sql::Stmt a(impl_->db, "UPDATE models SET status = 'active', status_reason = ? WHERE id = ?");
    a.bind(1, reason).bind(2, id);
    if (!a.run()) return *a.error();
    return core::Done{};
  });
}

Status Catalog::put_predictions(const std::string& sop_instance_uid, std::int64_t model_id,
                                const std::vector<std::pair<std::string, double>>& probabilities,
                                const std::optional<DomainCheck>& domain) {
  auto found = find_instance(sop_instance_uid);
  if (!found) return found.error();
  if (!found->has_value()) return Error{ErrorKind::NotFound, "no such image in the catalog: " + sop_instance_uid};
  const std::int64_t instance = (*found)->id;
  return transaction([&]() -> Status {
    const std::string now = utc_now();
    sql::Stmt s(impl_->db,
                "INSERT INTO predictions(instance_ref, model_ref, finding_ref, probability, computed_at) "
                "VALUES (?, ?, (SELECT id FROM findings WHERE name = ?), ?, ?) "
                "ON CONFLICT(instance_ref, model_ref, finding_ref) DO UPDATE SET probability = excluded.probability, "
                "computed_at = excluded.computed_at");
    if (!s.ok()) return *s.prepare_error();
    for (const auto& [finding, p] : probabilities) {
      s.reset();
      s.bind(1, instance).bind(2, model_id).bind(3, finding).bind(4, p).bind(5, now);
      if (!s.run()) return s.error()->kind == ErrorKind::Invalid ? invalid("cannot store the prediction for " + finding + ": " + s.error()->message) : *s.error();
    }
    if (domain) {
      sql::Stmt d(impl_->db,
                  "INSERT INTO prediction_domain(instance_ref, model_ref, in_domain, score, pixel_check, reason, computed_at, population, "
                  "population_from) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(instance_ref, model_ref) DO UPDATE SET "
                  "in_domain = excluded.in_domain, score = excluded.score, pixel_check = excluded.pixel_check, reason = excluded.reason, "
                  "computed_at = excluded.computed_at, population = excluded.population, population_from = excluded.population_from");
      if (!d.ok()) return *d.prepare_error();
      d.bind(1, instance).bind(2, model_id).bind(3, std::int64_t{domain->in_domain ? 1 : 0});
      if (domain->score) d.bind(4, *domain->score);
      else d.bind_null(4);
      d.bind(5, std::int64_t{domain->pixel_check ? 1 : 0}).bind(6, domain->reason).bind(7, now);
      d.bind(8, domain->population.population).bind(9, domain->population.chosen_by);
      if (!d.run()) return *d.error();
    }
    return core::Done{};
  });
}

Result<std::optional<DomainCheck>> Catalog::prediction_domain(const std::string& sop_instance_uid, std::int64_t model_id) {
  sql::Stmt s(impl_->db,
              "SELECT d.in_domain, d.score, d.pixel_check, d.reason, d.population, d.population_from FROM prediction_domain d "
              "JOIN instances i ON i.id = d.instance_ref "
              "WHERE i.sop_uid = ? AND d.model_ref = ?");
  s.bind(1, sop_instance_uid).bind(2, model_id);
  std::optional<DomainCheck> out;
  if (s.step()) {
    DomainCheck d;
    d.in_domain = s.int64(0) != 0;
    if (!s.is_null(1)) d.score = s.real(1);
    d.pixel_check = s.int64(2) != 0;
    d.reason = s.text(3);
    d.population = {s.text(4), s.text(5)};
    out = std::move(d);
  }
  if (s.error()) return *s.error();
  return out;
}

Result<std::vector<PredictionRow>> Catalog::predictions(const std::string& sop_instance_uid, std::int64_t model_id) {
  sql::Stmt s(impl_->db,
              "SELECT f.name, p.probability, p.computed_at FROM predictions p JOIN instances i ON i.id = p.instance_ref "
              "JOIN findings f ON f.id = p.finding_ref WHERE i.sop_uid = ? AND p.model_ref = ? ORDER BY f.id");
  s.bind(1, sop_instance_uid).bind(2, model_id);
  std::vector<PredictionRow> out;
  while (s.step()) out.push_back(PredictionRow{s.text(0), s.real(1), s.text(2)});
  if (s.error()) return *s.error();
  return out;
}

Status Catalog::put_embeddings(const std::string& backbone_version,
                               const std::vector<std::pair<std::int64_t, std::vector<float>>>& rows) {
  return transaction([&]() -> Status {
    const std::string now = utc_now();
    for (const auto& [instance_id, vector] : rows) {
      std::vector<std::uint8_t> bytes(vector.size() * sizeof(float));
      if (!bytes.empty()) std::memcpy(bytes.data(), vector.data(), bytes.size());
      sql::Stmt s(impl_->db,
                  "INSERT INTO embeddings(instance_ref, backbone_version, dim, vector, computed_at) VALUES (?,?,?,?,?) "
                  "ON CONFLICT(instance_ref, backbone_version) DO UPDATE SET dim = excluded.dim, vector = excluded.vector, "
                  "computed_at = excluded.computed_at");
      s.bind(1, instance_id).bind(2, backbone_version).bind(3, static_cast<std::int64_t>(vector.size())).bind_blob(4, bytes).bind(5, now);
      if (!s.run()) return *s.error();
    }
    return core::Done{};
  });
}

Result<std::map<std::int64_t, std::vector<float>>> Catalog::embeddings(const std::string& backbone_version) {
  sql::Stmt s(impl_->db, "SELECT instance_ref, dim, vector FROM embeddings WHERE backbone_version = ?");
  s.bind(1, backbone_version);
  std::map<std::int64_t, std::vector<float>> out;
  while (s.step()) {
    const std::int64_t dim = s.int64(1);
    const std::vector<std::uint8_t> bytes = s.blob(2);
    if (dim < 0 || bytes.size() != static_cast<std::size_t>(dim) * sizeof(float)) continue;  // never trust a damaged row
    std::vector<float> v(static_cast<std::size_t>(dim));
    if (!bytes.empty()) std::memcpy(v.data(), bytes.data(), bytes.size());
    out.emplace(s.int64(0), std::move(v));
  }
  if (s.error()) return *s.error();
  return out;
}

// ---- Settings and pseudonyms -------------------------------------------------------------

Result<std::optional<std::string>> Catalog::setting(const std::string& key) {
  sql::Stmt s(impl_->db, "SELECT value FROM settings WHERE key = ?");
  s.bind(1, key);
  if (s.step()) return std::optional<std::string>(s.text(0));
  if (s.error()) return *s.error();
  return std::optional<std::string>();
}

Status Catalog::set_setting(const std::string& key, const std::string& value) {
  sql::Stmt s(impl_->db, "INSERT INTO settings(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value");
  s.bind(1, key).bind(2, value);
  if (!s.run()) return *s.error();
  return core::Done{};
}

Result<std::string> Catalog::secret() {
  auto existing = setting("secret");
  if (!existing) return existing.error();
  if (existing->has_value()) return **existing;
  const std::string fresh = random_hex(32);
  sql::Stmt s(impl_->db, "INSERT INTO settings(key, value) VALUES ('secret', ?) ON CONFLICT DO NOTHING");
  s.bind(1, fresh);
  if (!s.run()) return *s.error();
  auto stored = setting("secret");
  if (!stored) return stored.error();
  return stored->value_or(fresh);
}

Result<std::string> Catalog::pseudonym(const std::string& kind, const std::string& original) {
  {
    sql::Stmt s(impl_->db, "SELECT pseudonym FROM pseudonyms WHERE kind = ? AND original = ?");
    s.bind(1, kind).bind(2, original);
    if (s.step()) return s.text(0);
    if (s.error()) return *s.error();
  }
  for (int attempt = 0; attempt < 8; ++attempt) {
    std::string candidate;
    if (kind == "uid" || kind.find("uid") != std::string::npos) candidate = random_uid();
    else candidate = "HIL" + random_hex(6);  // 15 characters: fits every DICOM string VR (SH is 16)
    sql::Stmt s(impl_->db, "INSERT INTO pseudonyms(kind, original, pseudonym, created_at) VALUES (?,?,?,?) ON CONFLICT DO NOTHING");
    s.bind(1, kind).bind(2, original).bind(3, candidate).bind(4, utc_now());
    if (!s.run()) return *s.error();
    sql::Stmt q(impl_->db, "SELECT pseudonym FROM pseudonyms WHERE kind = ? AND original = ?");
    q.bind(1, kind).bind(2, original);
    if (q.step()) return q.text(0);
    if (q.error()) return *q.error();
  }
  return Error{ErrorKind::Io, "could not create a unique pseudonym"};
}

}  // namespace hilum::app
