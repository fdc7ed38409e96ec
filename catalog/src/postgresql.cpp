// The PostgreSQL engine of the catalog, through libpq: the catalog's portable SQL (`?` / `?N`
// parameters become `$N`), typed parameters, results read as text, and the schema with the rules
// the database itself enforces:
//  - the label history is append-only: a trigger refuses UPDATE, DELETE and TRUNCATE of
//    label_events for every role (the readers' group role has no such right either);
//  - per-reader ownership: a role inserts label events as itself (author = current_user) and
//    records itself as the one who entered them (recorded_by), unless it is a member of
//    hilum_importer (importing a colleague's labels: author may differ) or owns the catalog
//    (moving a catalog over with `catalog migrate` keeps who entered what);
//  - adjudications (label events of kind 'adjudication') only by members of hilum_adjudicator
//    (or the catalog's owner).
// The schema has its own revisions (pg_migrations(), upgraded in a transaction on opening; a newer
// one is refused). The reader is the database role (current_user). A connection lost mid-session gives a clear
// error; the next statement outside a transaction reconnects.
#include <libpq-fe.h>

#include <charconv>
#include <cmath>
#include <cstring>
#include <set>

#include "database.hpp"
#include "hilum/core/numbers.hpp"

namespace hilum::app::sql {
namespace {

constexpr unsigned kInt8 = 20, kText = 25, kFloat8 = 701, kBytea = 17;
// The catalog's write lock: every writing transaction takes it first, as SQLite's BEGIN IMMEDIATE
// does, so that "check, then write" (No Finding's exclusivity, adjudicate's "who was first") holds.
constexpr const char* kBegin = "BEGIN; SELECT pg_advisory_xact_lock(1212763213)";

std::string trimmed(const char* s) {
  std::string out = s != nullptr ? s : "";
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

// `?` (in order) and `?N` become `$N`, outside quoted text. Records which parameters are used.
std::string translate(std::string_view sql, std::set<int>& used) {
  std::string out;
  out.reserve(sql.size() + 8);
  int next = 0;
  for (std::size_t i = 0; i < sql.size(); ++i) {
    const char c = sql[i];
    if (c == '\'' || c == '"') {
      const std::size_t end = sql.find(c, i + 1);
      const std::size_t stop = end == std::string_view::npos ? sql.size() : end + 1;
      out.append(sql.substr(i, stop - i));
      i = stop - 1;
      continue;
    }
    if (c != '?') {
      out.push_back(c);
      continue;
    }
    int n = 0;
    std::size_t j = i + 1;
    while (j < sql.size() && sql[j] >= '0' && sql[j] <= '9') n = n * 10 + (sql[j++] - '0');
    if (j == i + 1) n = ++next;
    else next = std::max(next, n);
    used.insert(n);
    out += "$" + std::to_string(n);
    i = j - 1;
  }
  return out;
}

bool connection_lost(PGconn* conn, const char* sqlstate) {
  if (PQstatus(conn) == CONNECTION_BAD) return true;
  const std::string s = sqlstate != nullptr ? sqlstate : "";
  return s.rfind("08", 0) == 0 || s == "57P01" || s == "57P02" || s == "57P03";
}

class PgDatabase;

Error error_from(PGconn* conn, const PGresult* result, std::string_view what);

class PgCursor final : public Cursor {
 public:
  PgCursor(PgDatabase* db, std::string sql, std::set<int> used) : db_(db), sql_(std::move(sql)), used_(std::move(used)) {
    nparams_ = used_.empty() ? 0 : *used_.rbegin();
    values_.resize(static_cast<std::size_t>(nparams_));
    types_.assign(static_cast<std::size_t>(nparams_), 0u);
    formats_.assign(static_cast<std::size_t>(nparams_), 0);
  }
  ~PgCursor() override { PQclear(result_); }
  PgCursor(const PgCursor&) = delete;
  PgCursor& operator=(const PgCursor&) = delete;

  void bind_int(int i, std::int64_t v) override { set(i, std::to_string(v), kInt8, 0); }
  void bind_real(int i, double v) override {
    if (std::isnan(v)) return set(i, "NaN", kFloat8, 0);
    if (std::isinf(v)) return set(i, v > 0 ? "Infinity" : "-Infinity", kFloat8, 0);
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest round trip, never the locale's comma
    set(i, std::string(buf, r.ptr), kFloat8, 0);
  }
  void bind_text(int i, std::string_view v) override { set(i, std::string(v), 0u, 0); }
  void bind_blob(int i, const std::vector<std::uint8_t>& v) override {
    set(i, std::string(reinterpret_cast<const char*>(v.data()), v.size()), kBytea, 1);
  }
  void bind_null(int i) override {
    if (i < 1 || i > nparams_) return;
    values_[static_cast<std::size_t>(i - 1)].reset();
  }
  bool step(std::optional<Error>& error) override;
  void reset() override {
    PQclear(result_);
    result_ = nullptr;
    row_ = -1;
    for (auto& v : values_) v.reset();
    types_.assign(static_cast<std::size_t>(nparams_), 0u);
    formats_.assign(static_cast<std::size_t>(nparams_), 0);
  }
  std::int64_t int64(int col) const override {
    const char* v = value(col);
    if (v == nullptr || *v == '\0') return 0;
    if (v[0] == 't' && v[1] == '\0') return 1;  // a boolean
    if (v[0] == 'f' && v[1] == '\0') return 0;
    std::int64_t out = 0;
    if (std::from_chars(v, v + std::strlen(v), out).ec == std::errc{}) return out;
    return static_cast<std::int64_t>(real(col));  // numeric results ("3.0")
  }
  double real(int col) const override {
    const char* v = value(col);
    if (v == nullptr) return 0.0;
    return core::parse_number(v).value_or(0.0);
  }
  std::string text(int col) const override {
    const char* v = value(col);
    if (v == nullptr) return {};
    return std::string(v, static_cast<std::size_t>(PQgetlength(result_, row_, col)));
  }
  std::vector<std::uint8_t> blob(int col) const override {
    const char* v = value(col);
    if (v == nullptr) return {};
    std::size_t n = 0;
    unsigned char* bytes = PQunescapeBytea(reinterpret_cast<const unsigned char*>(v), &n);
    if (bytes == nullptr) return {};
    std::vector<std::uint8_t> out(bytes, bytes + n);
    PQfreemem(bytes);
    return out;
  }
  bool is_null(int col) const override { return result_ == nullptr || row_ < 0 || PQgetisnull(result_, row_, col) != 0; }

 private:
  void set(int i, std::string v, unsigned type, int format) {
    if (i < 1 || i > nparams_) return;  // a parameter the statement does not use
    values_[static_cast<std::size_t>(i - 1)] = std::move(v);
    types_[static_cast<std::size_t>(i - 1)] = type;
    formats_[static_cast<std::size_t>(i - 1)] = format;
  }
  const char* value(int col) const {
    if (result_ == nullptr || row_ < 0 || col >= PQnfields(result_) || PQgetisnull(result_, row_, col)) return nullptr;
    return PQgetvalue(result_, row_, col);
  }

  PgDatabase* db_;
  std::string sql_;
  std::set<int> used_;
  int nparams_ = 0;
  std::vector<std::optional<std::string>> values_;
  std::vector<unsigned> types_;
  std::vector<int> formats_;
  PGresult* result_ = nullptr;
  int row_ = -1;
};

class PgDatabase final : public Database {
 public:
  PgDatabase(PGconn* conn, std::string url) : conn_(conn), url_(std::move(url)) {}
  ~PgDatabase() override { PQfinish(conn_); }
  PgDatabase(const PgDatabase&) = delete;
  PgDatabase& operator=(const PgDatabase&) = delete;

  Engine engine() const override { return Engine::PostgreSQL; }
  std::unique_ptr<Cursor> prepare(std::string_view sql, std::optional<Error>& error) override {
    (void)error;  // the server checks the statement when it runs
    std::set<int> used;
    std::string translated = translate(sql, used);
    return std::make_unique<PgCursor>(this, std::move(translated), std::move(used));
  }
  std::optional<Error> exec(const std::string& sql, std::string_view what) override {
    const bool ends = sql == "COMMIT" || sql == "ROLLBACK";
    if (PQstatus(conn_) == CONNECTION_BAD) {
      if (in_transaction_) {
        // The server rolled the transaction back when the connection went: rolling back succeeds,
        // anything else (COMMIT above all) is told that nothing was saved.
        if (sql.rfind("ROLLBACK", 0) == 0) {
          if (ends) in_transaction_ = false;
          return std::nullopt;
        }
        return lost(what);
      }
      if (auto e = reconnect(what)) return e;
    }
    if (sql.rfind("BEGIN", 0) == 0) in_transaction_ = true;
    PGresult* r = PQexec(conn_, sql.c_str());
    const auto status = PQresultStatus(r);
    std::optional<Error> out;
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) out = error_from(conn_, r, what);
    else note_changes(r);
    PQclear(r);
    if (ends) in_transaction_ = false;
    return out;
  }
  const char* begin_statement() const override { return kBegin; }
  std::int64_t last_insert_id() override {
    PGresult* r = PQexec(conn_, "SELECT lastval()");
    std::int64_t id = 0;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
      const char* v = PQgetvalue(r, 0, 0);
      (void)std::from_chars(v, v + std::strlen(v), id);
    }
    PQclear(r);
    return id;
  }
  std::int64_t changes() override { return changes_; }
  Result<std::string> integrity_check() override {
    // The server keeps its own storage consistent (checksums, WAL); what can be checked from here is
    // that the catalog's tables answer.
    Stmt s(this, "SELECT count(*) FROM label_events");
    if (!s.ok() || !s.step()) return s.error() ? *s.error() : Error{ErrorKind::Io, "the catalog server did not answer"};
    return std::string("ok");
  }
  std::optional<Error> ids_copied(const std::string& table) override {
    return exec("SELECT setval(pg_get_serial_sequence('" + table + "', 'id'), coalesce((SELECT max(id) FROM " + table +
                    "), 0) + 1, false)",
                "copying " + table);
  }
  std::string location_key() override {
    // What the connection actually reached (libpq's defaults filled in: a socket folder, 5432, the user's name).
    const auto part = [](const char* v, const char* fallback) {
      std::string in = v != nullptr && *v != '\0' ? v : fallback;
      if (in.size() > 80) in = in.substr(in.size() - 80);  // a long socket folder: its end names it
      std::string out;
      for (const char c : in) {
        const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
        out.push_back(keep ? c : '_');
      }
      if (out.front() == '.') out.front() = '_';  // never ".", "..", nor a hidden folder
      return out;
    };
    return part(PQhost(conn_), "localhost") + "_" + part(PQport(conn_), "5432") + "_" + part(PQdb(conn_), "postgres");
  }
  std::string reader() override {
    Stmt s(this, "SELECT current_user");
    if (s.ok() && s.step()) return s.text(0);
    return {};
  }

  // Runs `sql` with parameters; a lost connection outside a transaction is re-established once.
  PGresult* run(const std::string& sql, int n, const unsigned* types, const char* const* values, const int* lengths,
                const int* formats, std::optional<Error>& error) {
    if (PQstatus(conn_) == CONNECTION_BAD) {
      if (in_transaction_) {
        error = lost("catalog query");
        return nullptr;
      }
      if (auto e = reconnect("catalog query")) {
        error = e;
        return nullptr;
      }
    }
    PGresult* r = PQexecParams(conn_, sql.c_str(), n, types, values, lengths, formats, 0);
    const auto status = PQresultStatus(r);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      error = error_from(conn_, r, "catalog query");
      PQclear(r);
      return nullptr;
    }
    note_changes(r);
    return r;
  }

  Error lost(std::string_view what) const {
    return {ErrorKind::CannotOpen, std::string(what) + ": the connection to the catalog server " + shown_catalog_location(url_) +
                                       " was lost; this change was not saved (Hilum reconnects on the next action)"};
  }

 private:
  void note_changes(PGresult* r) {
    const char* n = PQcmdTuples(r);
    changes_ = 0;
    if (n != nullptr && *n != '\0') (void)std::from_chars(n, n + std::strlen(n), changes_);
  }
  std::optional<Error> reconnect(std::string_view what) {
    PQreset(conn_);
    if (PQstatus(conn_) != CONNECTION_OK) {
      return Error{ErrorKind::CannotOpen, std::string(what) + ": cannot reach the catalog server " + shown_catalog_location(url_) + " (" +
                                              trimmed(PQerrorMessage(conn_)) + ")"};
    }
    in_transaction_ = false;
    return std::nullopt;
  }

  PGconn* conn_;
  std::string url_;
  std::int64_t changes_ = 0;
  bool in_transaction_ = false;
};

Error error_from(PGconn* conn, const PGresult* result, std::string_view what) {
  const char* state = result != nullptr ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  std::string detail = trimmed(result != nullptr ? PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY) : nullptr);
  if (detail.empty()) detail = trimmed(PQerrorMessage(conn));
  const std::string s = state != nullptr ? state : "";
  if (connection_lost(conn, state)) {
    return {ErrorKind::CannotOpen, std::string(what) + ": the connection to the catalog server was lost (" + detail +
                                       "); this change was not saved (Hilum reconnects on the next action)"};
  }
  if (s == "42501") return {ErrorKind::ReadOnly, std::string(what) + ": the catalog server refused: " + detail};
  if (s == "25006") return {ErrorKind::ReadOnly, std::string(what) + ": the catalog was opened read-only (" + detail + ")"};
  if (s == "40001" || s == "40P01" || s == "55P03") {
    return {ErrorKind::Locked, std::string(what) + ": another session holds the catalog (" + detail + "); try again"};
  }
  if (s.rfind("23", 0) == 0 || s.rfind("22", 0) == 0) return {ErrorKind::Invalid, std::string(what) + ": " + detail};
  if (s == "XX001" || s == "XX002") return {ErrorKind::Corrupt, std::string(what) + ": " + detail};
  return {ErrorKind::Io, std::string(what) + ": " + detail + (s.empty() ? "" : " (SQLSTATE " + s + ")")};
}

bool PgCursor::step(std::optional<Error>& error) {
  if (result_ == nullptr) {
    std::vector<const char*> values(static_cast<std::size_t>(nparams_));
    std::vector<int> lengths(static_cast<std::size_t>(nparams_), 0);
    std::vector<unsigned> types = types_;
    for (int k = 0; k < nparams_; ++k) {
      const auto& v = values_[static_cast<std::size_t>(k)];
      values[static_cast<std::size_t>(k)] = v ? v->data() : nullptr;
      lengths[static_cast<std::size_t>(k)] = v ? static_cast<int>(v->size()) : 0;
      // A parameter the statement skips needs a type the server need not infer.
      if (!used_.count(k + 1) && types[static_cast<std::size_t>(k)] == 0u) types[static_cast<std::size_t>(k)] = kText;
    }
    static_assert(sizeof(unsigned) == sizeof(Oid));
    result_ = db_->run(sql_, nparams_, reinterpret_cast<const Oid*>(types.data()), values.data(), lengths.data(), formats_.data(),
                       error);
    if (result_ == nullptr) return false;
    row_ = -1;
  }
  if (row_ + 1 < PQntuples(result_)) {
    ++row_;
    return true;
  }
  row_ = PQntuples(result_);
  return false;
}

// ---- The schema ------------------------------------------------------------------------------

// Schema 5 (the SQLite catalog's latest) in PostgreSQL's types: identity keys (BY DEFAULT, so that
// `catalog migrate` keeps the ids), double precision, bytea, a case-insensitive collation for
// finding names (SQLite's NOCASE).
constexpr const char* kSchema = R"SQL(
CREATE COLLATION IF NOT EXISTS nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE hilum_catalog (schema_version INTEGER NOT NULL);
CREATE TABLE patients (
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  patient_key TEXT NOT NULL UNIQUE,
  patient_id TEXT NOT NULL DEFAULT '',
  name TEXT NOT NULL DEFAULT '',
  birth_date TEXT NOT NULL DEFAULT '',
  sex TEXT NOT NULL DEFAULT ''
);
CREATE TABLE studies (
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  study_uid TEXT NOT NULL UNIQUE,
  patient_ref BIGINT NOT NULL REFERENCES patients(id),
  study_date TEXT NOT NULL DEFAULT '',
  study_time TEXT NOT NULL DEFAULT '',
  description TEXT NOT NULL DEFAULT '',
  accession_number TEXT NOT NULL DEFAULT ''
);
CREATE INDEX studies_patient ON studies(patient_ref);
CREATE TABLE series (
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  series_uid TEXT NOT NULL UNIQUE,
  study_ref BIGINT NOT NULL REFERENCES studies(id),
  modality TEXT NOT NULL DEFAULT '',
  series_number TEXT NOT NULL DEFAULT '',
  description TEXT NOT NULL DEFAULT ''
);
CREATE INDEX series_study ON series(study_ref);
CREATE TABLE instances (
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  sop_uid TEXT NOT NULL UNIQUE,
  series_ref BIGINT NOT NULL REFERENCES series(id),
  sop_class_uid TEXT NOT NULL DEFAULT '',
  path TEXT NOT NULL,
  stored_path TEXT NOT NULL DEFAULT '',
  file_size BIGINT NOT NULL DEFAULT 0,
  file_mtime BIGINT NOT NULL DEFAULT 0,
  content_hash TEXT NOT NULL,
  transfer_syntax_uid TEXT NOT NULL DEFAULT '',
  photometric TEXT NOT NULL DEFAULT '',
  rows BIGINT NOT NULL DEFAULT 0,
  columns BIGINT NOT NULL DEFAULT 0,
  bits_stored BIGINT NOT NULL DEFAULT 0,
  view_position TEXT NOT NULL DEFAULT '',
  body_part TEXT NOT NULL DEFAULT '',
  laterality TEXT NOT NULL DEFAULT '',
  pixel_spacing_row DOUBLE PRECISION,
  pixel_spacing_column DOUBLE PRECISION,
  acquisition_date TEXT NOT NULL DEFAULT '',
  acquisition_time TEXT NOT NULL DEFAULT '',
  patient_age TEXT NOT NULL DEFAULT '',
  burned_in_annotation TEXT NOT NULL DEFAULT '',
  window_center DOUBLE PRECISION,
  window_width DOUBLE PRECISION,
  thumbnail BYTEA,
  imported_at TEXT NOT NULL
);
CREATE INDEX instances_series ON instances(series_ref);
CREATE INDEX instances_path ON instances(path);
CREATE TABLE jobs (
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  kind TEXT NOT NULL,
  params TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('running','interrupted','done','failed')),
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  summary TEXT NOT NULL DEFAULT ''
);
CREATE TABLE job_items (
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  job_ref BIGINT NOT NULL REFERENCES jobs(id),
  path TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending',
  reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX job_items_job ON job_items(job_ref, status);
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE findings (
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  name TEXT NOT NULL UNIQUE COLLATE nocase,
  description TEXT NOT NULL DEFAULT '',
  builtin BIGINT NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL
);
CREATE TABLE label_events (
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  instance_ref BIGINT NOT NULL REFERENCES instances(id),
  finding_ref BIGINT NOT NULL REFERENCES findings(id),
  value TEXT NOT NULL CHECK (value IN ('present','absent','uncertain','cleared')),
  region TEXT,
  author TEXT NOT NULL CHECK (author <> ''),
  created_at TEXT NOT NULL,
  model_version TEXT,
  model_probability DOUBLE PRECISION CHECK (model_probability IS NULL OR (model_probability >= 0 AND model_probability <= 1)),
  comment TEXT NOT NULL DEFAULT '',
  source TEXT NOT NULL DEFAULT 'cli',
  kind TEXT NOT NULL DEFAULT 'reading' CHECK (kind IN ('reading','adjudication')),
  recorded_by TEXT NOT NULL DEFAULT ''
);
CREATE INDEX label_events_instance ON label_events(instance_ref, finding_ref, id);
CREATE INDEX label_events_reader ON label_events(instance_ref, finding_ref, kind, author, id);
CREATE TABLE models (
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  version TEXT NOT NULL UNIQUE,
  parent_ref BIGINT REFERENCES models(id),
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
  instance_ref BIGINT NOT NULL REFERENCES instances(id),
  model_ref BIGINT NOT NULL REFERENCES models(id),
  finding_ref BIGINT NOT NULL REFERENCES findings(id),
  probability DOUBLE PRECISION NOT NULL,
  computed_at TEXT NOT NULL,
  PRIMARY KEY (instance_ref, model_ref, finding_ref)
);
CREATE TABLE embeddings (
  instance_ref BIGINT NOT NULL REFERENCES instances(id),
  backbone_version TEXT NOT NULL,
  dim BIGINT NOT NULL,
  vector BYTEA NOT NULL,
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
CREATE TABLE prediction_domain (
  instance_ref BIGINT NOT NULL REFERENCES instances(id),
  model_ref BIGINT NOT NULL REFERENCES models(id),
  in_domain BIGINT NOT NULL CHECK (in_domain IN (0, 1)),
  score DOUBLE PRECISION,
  pixel_check BIGINT NOT NULL CHECK (pixel_check IN (0, 1)),
  reason TEXT NOT NULL,
  computed_at TEXT NOT NULL,
  PRIMARY KEY (instance_ref, model_ref)
);
CREATE TABLE reading_submissions (
  instance_ref BIGINT NOT NULL REFERENCES instances(id),
  author TEXT NOT NULL,
  recorded_by TEXT NOT NULL,
  submitted_at TEXT NOT NULL,
  PRIMARY KEY (instance_ref, author)
);
)SQL";

// What the database enforces by itself, and the readers' rights.
constexpr const char* kRules = R"SQL(
CREATE FUNCTION hilum_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the label history is append-only: % on label_events is refused (role %)', TG_OP, current_user
    USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER label_events_append_only BEFORE UPDATE OR DELETE ON label_events
  FOR EACH ROW EXECUTE FUNCTION hilum_append_only();
CREATE TRIGGER label_events_no_truncate BEFORE TRUNCATE ON label_events
  FOR EACH STATEMENT EXECUTE FUNCTION hilum_append_only();
CREATE FUNCTION hilum_label_owner() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  owner boolean := pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'MEMBER');
  importer boolean := owner OR (EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hilum_importer')
                                AND pg_has_role(current_user, 'hilum_importer', 'MEMBER'));
BEGIN
  IF NEW.recorded_by = '' AND NOT owner THEN NEW.recorded_by := current_user; END IF;
  IF NEW.recorded_by <> current_user AND NOT owner THEN
    RAISE EXCEPTION 'role % cannot record a label as entered by %', current_user, NEW.recorded_by
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF NEW.author <> current_user AND NOT importer THEN
    RAISE EXCEPTION 'role % may add labels only as itself, not as "%" (importing another reader''s labels needs the hilum_importer role)',
      current_user, NEW.author USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER label_events_owner BEFORE INSERT ON label_events FOR EACH ROW EXECUTE FUNCTION hilum_label_owner();
CREATE TRIGGER reading_submissions_owner BEFORE INSERT ON reading_submissions FOR EACH ROW EXECUTE FUNCTION hilum_label_owner();
CREATE TRIGGER reading_submissions_append_only BEFORE UPDATE OR DELETE ON reading_submissions
  FOR EACH ROW EXECUTE FUNCTION hilum_append_only();
DO $$
BEGIN
  BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hilum_reader') THEN CREATE ROLE hilum_reader NOLOGIN; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hilum_importer') THEN CREATE ROLE hilum_importer NOLOGIN; END IF;
  EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'the roles hilum_reader and hilum_importer could not be created (no CREATEROLE right)';
  END;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hilum_reader') THEN
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO hilum_reader', current_schema());
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO hilum_reader', current_schema());
    REVOKE UPDATE, DELETE, TRUNCATE ON label_events, reading_submissions, hilum_catalog FROM hilum_reader;
    REVOKE INSERT ON hilum_catalog FROM hilum_reader;
  END IF;
END $$;
)SQL";

// ---- Revisions of the PostgreSQL schema -----------------------------------------------------------
// The PostgreSQL schema has its own revisions (its rules and rights, which SQLite has not), upgraded
// as SQLite's catalog_migrations() are: in order, in the transaction that opens the catalog.
// Revision 1 is kSchema + the label views + kRules at catalog schema 5 (the first release); it
// stores no revision (hilum_catalog had no pg_revision column). Each later step ends by recording
// its revision (and, when it changes tables, the catalog schema it brings the catalog to). Never
// edit a released step: add one.

// Revision 2: only members of hilum_adjudicator (or the catalog's owner) record adjudications.
constexpr const char* kRevision2 = R"SQL(
ALTER TABLE hilum_catalog ADD COLUMN pg_revision INTEGER NOT NULL DEFAULT 1;
CREATE FUNCTION hilum_adjudicator_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'MEMBER')
     OR (EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hilum_adjudicator')
         AND pg_has_role(current_user, 'hilum_adjudicator', 'MEMBER')) THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'role % may not record adjudications (an administrator grants it: GRANT hilum_adjudicator TO %)',
    current_user, current_user USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER label_events_adjudicator BEFORE INSERT ON label_events FOR EACH ROW
  WHEN (NEW.kind = 'adjudication') EXECUTE FUNCTION hilum_adjudicator_only();
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hilum_adjudicator') THEN CREATE ROLE hilum_adjudicator NOLOGIN; END IF;
EXCEPTION WHEN insufficient_privilege THEN
  RAISE NOTICE 'the role hilum_adjudicator could not be created (no CREATEROLE right)';
END $$;
UPDATE hilum_catalog SET pg_revision = 2;
)SQL";

// Revision 3 (catalog schema 6): a client-generated key per label event, unique, so that a change
// retried after a lost reply is written once (SQLite's step 5 -> 6).
constexpr const char* kRevision3 = R"SQL(
ALTER TABLE label_events ADD COLUMN event_key TEXT CHECK (event_key IS NULL OR (event_key <> '' AND length(event_key) <= 128));
CREATE UNIQUE INDEX label_events_event_key ON label_events(event_key);
UPDATE hilum_catalog SET pg_revision = 3, schema_version = 6;
)SQL";

// Revision 4 (catalog schema 7): where a label was entered is one of four names (SQLite's step
// 6 -> 7). NOT VALID: the rows already there are not scanned (the label history cannot change).
constexpr const char* kRevision4 = R"SQL(
ALTER TABLE label_events ADD CONSTRAINT label_events_source CHECK (source IN ('cli','csv','gui','adjudication')) NOT VALID;
UPDATE hilum_catalog SET pg_revision = 4, schema_version = 7;
)SQL";

// Revision 5 (catalog schema 8): which of the model's populations each image was taken for (whose
// calibration its probabilities carry), stored with its domain check (SQLite's step 7 -> 8).
constexpr const char* kRevision5 = R"SQL(
ALTER TABLE prediction_domain ADD COLUMN population TEXT NOT NULL DEFAULT '' CHECK (length(population) <= 128);
ALTER TABLE prediction_domain ADD COLUMN population_from TEXT NOT NULL DEFAULT '' CHECK (population_from IN ('', 'age', 'image', 'only population'));
UPDATE hilum_catalog SET pg_revision = 5, schema_version = 8;
)SQL";

const std::vector<const char*>& pg_migrations() {  // [i] upgrades revision i + 1 to i + 2
  static const std::vector<const char*> steps{kRevision2, kRevision3, kRevision4, kRevision5};
  return steps;
}

struct StoredVersion {
  int schema = 0;
  int revision = 1;
};

// The catalog's schema and revision; nullopt when the database holds no catalog.
Result<std::optional<StoredVersion>> stored_version(Database* db, const std::string& where) {
  Stmt s(db, "SELECT to_regclass('hilum_catalog') IS NOT NULL");
  if (!s.step()) return s.error() ? *s.error() : Error{ErrorKind::Io, where + ": no answer"};
  if (s.int64(0) == 0) return std::optional<StoredVersion>();
  Stmt has(db, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'hilum_catalog'::regclass AND attname = 'pg_revision' "
               "AND NOT attisdropped");
  if (!has.step()) return has.error() ? *has.error() : Error{ErrorKind::Io, where + ": no answer"};
  Stmt v(db, has.int64(0) > 0 ? "SELECT max(schema_version), max(pg_revision) FROM hilum_catalog"
                              : "SELECT max(schema_version), 1 FROM hilum_catalog");
  if (!v.step()) return v.error() ? *v.error() : Error{ErrorKind::Io, where + ": no answer"};
  return std::optional<StoredVersion>(StoredVersion{static_cast<int>(v.int64(0)), static_cast<int>(v.int64(1))});
}

// Runs the steps after revision `from`, inside the caller's transaction.
std::optional<Error> upgrade(Database* db, int from, const std::string& what) {
  const auto& steps = pg_migrations();
  for (auto i = static_cast<std::size_t>(from - 1); i < steps.size(); ++i) {
    if (auto e = db->exec(steps[i], what)) return e;
  }
  return std::nullopt;
}

}  // namespace

bool is_postgresql_url(std::string_view location) {
  return location.rfind("postgresql://", 0) == 0 || location.rfind("postgres://", 0) == 0;
}

Result<Opened> open_postgresql(const std::string& url, Catalog::Mode mode) {
  const std::string where = "opening the catalog " + shown_catalog_location(url);
  // A server that cannot be reached is given up on after 10 s (libpq waits for TCP's own timeout,
  // minutes, by default), on opening and on every reconnection (PQreset keeps these options): the
  // GUI retries kept labels on its own thread. A connect_timeout in the URL overrides it.
  const char* const keys[] = {"connect_timeout", "dbname", nullptr};
  const char* const values[] = {"10", url.c_str(), nullptr};
  PGconn* conn = PQconnectdbParams(keys, values, 1);
  if (conn == nullptr) return Error{ErrorKind::CannotOpen, where + ": out of memory"};
  if (PQstatus(conn) != CONNECTION_OK) {
    Error e{ErrorKind::CannotOpen, where + ": cannot connect (" + trimmed(PQerrorMessage(conn)) + ")"};
    PQfinish(conn);
    return e;
  }
  PQsetClientEncoding(conn, "UTF8");
  auto db = std::make_unique<PgDatabase>(conn, url);
  if (auto e = db->exec("SET client_min_messages = warning", where)) return *e;
  if (mode == Catalog::Mode::ReadOnly) {
    if (auto e = db->exec("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", where)) return *e;
  }
  const int latest = Catalog::latest_schema_version();
  const int latest_revision = 1 + static_cast<int>(pg_migrations().size());
  auto found = stored_version(db.get(), where);
  if (!found) return found.error();
  const auto rollback = [&](Error e) -> Result<Opened> {
    (void)db->exec("ROLLBACK", where);
    return e;
  };
  if (!found->has_value()) {
    if (mode != Catalog::Mode::ReadWriteCreate) return Error{ErrorKind::CannotOpen, "no Hilum catalog in " + shown_catalog_location(url)};
    // Two sessions creating the schema at once: the lock makes the second one find it made.
    if (auto e = db->exec(kBegin, where)) return *e;
    auto again = stored_version(db.get(), where);
    if (!again) return rollback(again.error());
    if (!again->has_value()) {
      Stmt tables(db.get(), "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()");
      if (!tables.step()) return rollback(tables.error() ? *tables.error() : Error{ErrorKind::Io, where});
      if (tables.int64(0) > 0) {
        return rollback(Error{ErrorKind::Corrupt, shown_catalog_location(url) + " holds tables but no Hilum catalog; it was left untouched "
                                                                   "(give Hilum an empty database)"});
      }
      // Revision 1 (catalog schema 5), then every revision after it: a new catalog takes the same path as an old one.
      const std::string findings = builtin_findings_sql("'" + utc_now() + "'");
      for (const std::string& step : {std::string(kSchema), label_views_sql(), std::string(kRules), findings,
                                      std::string("INSERT INTO hilum_catalog(schema_version) VALUES (5)")}) {
        if (auto e = db->exec(step, "creating the catalog in " + shown_catalog_location(url))) return rollback(*e);
      }
      if (auto e = upgrade(db.get(), 1, "creating the catalog in " + shown_catalog_location(url))) return rollback(*e);
    }
    if (auto e = db->exec("COMMIT", where)) return *e;
    return Opened{std::move(db), latest};
  }
  const auto refuse_newer = [&](const StoredVersion& v) -> std::optional<Error> {
    if (v.schema <= latest && v.revision <= latest_revision) return std::nullopt;
    return Error{ErrorKind::NewerSchema, shown_catalog_location(url) + " was written by a newer Hilum (catalog schema " + std::to_string(v.schema) +
                                             ", PostgreSQL revision " + std::to_string(v.revision) + "; this version knows schema " +
                                             std::to_string(latest) + ", revision " + std::to_string(latest_revision) +
                                             "); it was left untouched: use a Hilum at least as new as the one that wrote it"};
  };
  if (auto e = refuse_newer(**found)) return *e;
  if ((*found)->revision < latest_revision && mode != Catalog::Mode::ReadOnly) {
    // Upgraded in one transaction under the catalog's write lock: another session that upgraded first
    // is seen after the lock, and a failing step leaves the catalog as it was.
    if (auto e = db->exec(kBegin, where)) return *e;
    auto again = stored_version(db.get(), where);
    if (!again) return rollback(again.error());
    if (!again->has_value()) return rollback(Error{ErrorKind::Corrupt, shown_catalog_location(url) + ": the catalog's version table went away"});
    if (auto e = refuse_newer(**again)) return rollback(*e);
    const int from = (*again)->revision;
    if (auto e = upgrade(db.get(), from,
                         "upgrading the catalog " + shown_catalog_location(url) + " from PostgreSQL revision " + std::to_string(from) + " to " +
                             std::to_string(latest_revision) + " (the role that owns the catalog must open it once)")) {
      return rollback(*e);
    }
    if (auto e = db->exec("COMMIT", where)) return *e;
    found = stored_version(db.get(), where);
    if (!found) return found.error();
  }
  const int v = (*found)->schema;
  // Read-only, an older revision is read as it is (schema 5 on: what reading needs is there).
  if (v < latest && !(mode == Catalog::Mode::ReadOnly && v >= 5)) {
    return Error{ErrorKind::NewerSchema, shown_catalog_location(url) + " has catalog schema " + std::to_string(v) + ", which this Hilum cannot upgrade"};
  }
  return Opened{std::move(db), v};
}

}  // namespace hilum::app::sql
