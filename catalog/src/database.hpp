// The catalog's storage engines behind one small interface, internal to catalog/. Every SQL
// statement of the catalog reaches its engine through a Database: prepare / bind / step (a
// Cursor), exec, transactions, the last inserted id. Two engines: SQLite (sqlite.cpp, the
// embedded default) and PostgreSQL through libpq (postgresql.cpp). The catalog's SQL is written
// to run on both (`?` / `?N` parameters, ON CONFLICT, CASE instead of boolean arithmetic); each
// engine has its own schema (DDL) and opening checks. Every failure becomes an app::Error.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hilum/app/catalog.hpp"

namespace hilum::app::sql {

enum class Engine { SQLite, PostgreSQL };

// One statement of an engine. Parameters are numbered from 1 (`?` in order, or `?N`), columns from 0.
class Cursor {
 public:
  virtual ~Cursor() = default;
  virtual void bind_int(int i, std::int64_t v) = 0;
  virtual void bind_real(int i, double v) = 0;
  virtual void bind_text(int i, std::string_view v) = 0;
  virtual void bind_blob(int i, const std::vector<std::uint8_t>& v) = 0;  // non-empty
  virtual void bind_null(int i) = 0;
  // A row: true. Done: false with `error` left empty. A failure: false with `error` set.
  virtual bool step(std::optional<Error>& error) = 0;
  // Back to before the first step, bindings cleared.
  virtual void reset() = 0;
  [[nodiscard]] virtual std::int64_t int64(int col) const = 0;
  [[nodiscard]] virtual double real(int col) const = 0;
  [[nodiscard]] virtual std::string text(int col) const = 0;
  [[nodiscard]] virtual std::vector<std::uint8_t> blob(int col) const = 0;
  [[nodiscard]] virtual bool is_null(int col) const = 0;
};

class Database {
 public:
  virtual ~Database() = default;
  [[nodiscard]] virtual Engine engine() const = 0;
  // nullptr with `error` set when the statement cannot be prepared.
  virtual std::unique_ptr<Cursor> prepare(std::string_view sql, std::optional<Error>& error) = 0;
  // Runs statements without results (several may be separated by ';').
  [[nodiscard]] virtual std::optional<Error> exec(const std::string& sql, std::string_view what) = 0;
  // The statement that opens the outermost transaction (SQLite: BEGIN IMMEDIATE, which takes the
  // write lock at once, so that two writers wait instead of failing at COMMIT).
  [[nodiscard]] virtual const char* begin_statement() const = 0;
  // The id of the row the last INSERT on this connection added; the rows the last statement changed.
  [[nodiscard]] virtual std::int64_t last_insert_id() = 0;
  [[nodiscard]] virtual std::int64_t changes() = 0;
  // "ok", or the engine's list of problems.
  [[nodiscard]] virtual Result<std::string> integrity_check() = 0;
  // Who is reading: the OS user (SQLite), the database role (PostgreSQL's current_user).
  [[nodiscard]] virtual std::string reader() = 0;
  // After rows were copied in with their ids (catalog migrate): the next id of `table` follows them.
  [[nodiscard]] virtual std::optional<Error> ids_copied(const std::string& table) {
    (void)table;
    return std::nullopt;
  }
  // A server catalog's name for its local files (PostgreSQL: "<host>_<port>_<database>" of the
  // connection, every character outside [A-Za-z0-9.-] made '_'); empty for a file catalog.
  [[nodiscard]] virtual std::string location_key() { return {}; }
  // The raw SQLite connection (tests only); nullptr on other engines.
  [[nodiscard]] virtual sqlite3* sqlite_handle() { return nullptr; }
};

[[nodiscard]] std::optional<Error> exec(Database* db, const std::string& sql, std::string_view what);

// A statement as the catalog's code uses it: binds chain, errors are kept (prepare_error(), error()).
class Stmt {
 public:
  Stmt(Database* db, std::string_view sql);
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt();

  [[nodiscard]] bool ok() const { return cursor_ != nullptr; }
  [[nodiscard]] const std::optional<Error>& prepare_error() const { return prepare_error_; }

  Stmt& bind(int i, std::int64_t v);
  Stmt& bind(int i, int v) { return bind(i, static_cast<std::int64_t>(v)); }
  Stmt& bind(int i, double v);
  Stmt& bind(int i, std::string_view v);
  Stmt& bind(int i, const std::string& v) { return bind(i, std::string_view(v)); }
  Stmt& bind(int i, const char* v) { return bind(i, std::string_view(v)); }
  Stmt& bind(int i, const std::optional<double>& v);
  Stmt& bind(int i, const std::optional<std::string>& v);
  Stmt& bind_blob(int i, const std::vector<std::uint8_t>& v);  // empty: NULL
  Stmt& bind_null(int i);

  // A row -> true; done -> false; anything else sets error().
  bool step();
  // Steps to completion (INSERT/UPDATE); false on error.
  bool run();
  void reset();

  [[nodiscard]] const std::optional<Error>& error() const { return error_; }

  [[nodiscard]] std::int64_t int64(int col) const { return cursor_->int64(col); }
  [[nodiscard]] double real(int col) const { return cursor_->real(col); }
  [[nodiscard]] std::optional<double> opt_real(int col) const;
  [[nodiscard]] std::string text(int col) const { return cursor_->text(col); }
  [[nodiscard]] std::optional<std::string> opt_text(int col) const;
  [[nodiscard]] std::vector<std::uint8_t> blob(int col) const { return cursor_->blob(col); }
  [[nodiscard]] bool is_null(int col) const { return cursor_->is_null(col); }

 private:
  std::unique_ptr<Cursor> cursor_;
  std::optional<Error> prepare_error_;
  std::optional<Error> error_;
};

// `CASE WHEN (condition) THEN 1 ELSE 0 END`: a condition counted or summed on every engine
// (PostgreSQL has no arithmetic on booleans).
[[nodiscard]] std::string flag(std::string_view condition);

// The views every engine's schema has (reader_labels, adjudicated_labels, consensus_labels).
[[nodiscard]] const std::string& label_views_sql();

// The INSERTs of the built-in vocabulary (builtin_findings()), created_at given as SQL.
[[nodiscard]] std::string builtin_findings_sql(const std::string& created_at);

// ---- Engines.

// Opens an SQLite catalog file: creates it with ReadWriteCreate, checks it is a Hilum catalog
// and not damaged, sets WAL, foreign keys and a busy timeout, runs the pending `migrations`.
// Returns the schema version it has after that.
struct Opened {
  std::unique_ptr<Database> db;
  int schema_version = 0;
};
[[nodiscard]] Result<Opened> open_sqlite(const std::filesystem::path& path, Catalog::Mode mode,
                                         const std::vector<std::string>& migrations);

// "postgresql://..." or "postgres://..." (libpq's connection URIs).
[[nodiscard]] bool is_postgresql_url(std::string_view location);

// Connects to a PostgreSQL catalog (libpq URI), creates its schema, roles' rights and the
// database-side rules (append-only audit, per-reader ownership) when the database is empty, and
// checks the schema version otherwise.
[[nodiscard]] Result<Opened> open_postgresql(const std::string& url, Catalog::Mode mode);

}  // namespace hilum::app::sql
