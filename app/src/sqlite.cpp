#include "sqlite.hpp"

namespace hilum::app::sql {

Error error_from(sqlite3* db, int rc, std::string_view what) {
  const int primary = rc & 0xFF;
  std::string detail = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  std::string message = std::string(what) + ": " + detail;
  switch (primary) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return {ErrorKind::Locked, std::string(what) + ": the catalog is locked by another program (waited 30 s); " +
                                     "close the other Hilum window or command and try again"};
    case SQLITE_READONLY:
      return {ErrorKind::ReadOnly, std::string(what) + ": the catalog or its folder is read-only (" + detail + ")"};
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return {ErrorKind::Corrupt, std::string(what) + ": the catalog file is damaged or not a database (" + detail +
                                      "); it was left untouched"};
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return {ErrorKind::CannotOpen, message};
    case SQLITE_IOERR:
    case SQLITE_FULL:
      return {ErrorKind::Io, message};
    case SQLITE_CONSTRAINT:
      return {ErrorKind::Invalid, message};
    default:
      return {ErrorKind::Io, message};
  }
}

std::optional<Error> exec(sqlite3* db, const std::string& sql, std::string_view what) {
  char* msg = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg);
  if (msg != nullptr) sqlite3_free(msg);
  if (rc != SQLITE_OK) return error_from(db, rc, what);
  return std::nullopt;
}

Stmt::Stmt(sqlite3* db, std::string_view sql) : db_(db), sql_(sql) {
  const int rc = sqlite3_prepare_v2(db, sql_.c_str(), static_cast<int>(sql_.size()), &stmt_, nullptr);
  if (rc != SQLITE_OK) {
    prepare_error_ = error_from(db, rc, "preparing a catalog query");
    error_ = prepare_error_;
    sqlite3_finalize(stmt_);
    stmt_ = nullptr;
  }
}

Stmt::~Stmt() { sqlite3_finalize(stmt_); }

Stmt& Stmt::bind(int i, std::int64_t v) {
  if (stmt_) sqlite3_bind_int64(stmt_, i, v);
  return *this;
}
Stmt& Stmt::bind(int i, double v) {
  if (stmt_) sqlite3_bind_double(stmt_, i, v);
  return *this;
}
Stmt& Stmt::bind(int i, std::string_view v) {
  if (stmt_) sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  return *this;
}
Stmt& Stmt::bind(int i, const std::optional<double>& v) { return v ? bind(i, *v) : bind_null(i); }
Stmt& Stmt::bind(int i, const std::optional<std::string>& v) { return v ? bind(i, std::string_view(*v)) : bind_null(i); }
Stmt& Stmt::bind_blob(int i, const std::vector<std::uint8_t>& v) {
  if (!stmt_) return *this;
  if (v.empty()) return bind_null(i);
  sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  return *this;
}
Stmt& Stmt::bind_null(int i) {
  if (stmt_) sqlite3_bind_null(stmt_, i);
  return *this;
}

bool Stmt::step() {
  if (!stmt_) return false;
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc != SQLITE_DONE) error_ = error_from(db_, rc, "catalog query");
  return false;
}

bool Stmt::run() {
  if (!stmt_) return false;
  while (step()) {
  }
  return !error_.has_value();
}

void Stmt::reset() {
  if (!stmt_) return;
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  error_.reset();
}

std::int64_t Stmt::int64(int col) const { return sqlite3_column_int64(stmt_, col); }
double Stmt::real(int col) const { return sqlite3_column_double(stmt_, col); }
std::optional<double> Stmt::opt_real(int col) const {
  if (is_null(col)) return std::nullopt;
  return real(col);
}
std::string Stmt::text(int col) const {
  const auto* p = sqlite3_column_text(stmt_, col);
  if (p == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col)));
}
std::optional<std::string> Stmt::opt_text(int col) const {
  if (is_null(col)) return std::nullopt;
  return text(col);
}
std::vector<std::uint8_t> Stmt::blob(int col) const {
  const auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt_, col));
  const int n = sqlite3_column_bytes(stmt_, col);
  if (p == nullptr || n <= 0) return {};
  return {p, p + n};
}
bool Stmt::is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

}  // namespace hilum::app::sql
