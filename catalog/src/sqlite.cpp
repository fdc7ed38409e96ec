// The SQLite engine of the catalog: a thin RAII layer over SQLite's C API (every failure becomes an
// app::Error) and the opening checks of a catalog file (application id, schema version, damage,
// read-only storage, WAL). Internal to catalog/.
#include <sqlite3.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdio>
#include <system_error>

#include "database.hpp"

namespace fs = std::filesystem;

namespace hilum::app::sql {
namespace {

constexpr int kApplicationId = 0x48494C4D;  // "HILM": marks a file as a Hilum catalog
constexpr int kBusyTimeoutMs = 30000;  // several readers labelling at once wait, not fail

// Maps an SQLite result code (and the connection's message) to a Hilum error.
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

class SqliteCursor final : public Cursor {
 public:
  SqliteCursor(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  ~SqliteCursor() override { sqlite3_finalize(stmt_); }
  SqliteCursor(const SqliteCursor&) = delete;
  SqliteCursor& operator=(const SqliteCursor&) = delete;

  void bind_int(int i, std::int64_t v) override { sqlite3_bind_int64(stmt_, i, v); }
  void bind_real(int i, double v) override { sqlite3_bind_double(stmt_, i, v); }
  void bind_text(int i, std::string_view v) override {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void bind_blob(int i, const std::vector<std::uint8_t>& v) override {
    sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void bind_null(int i) override { sqlite3_bind_null(stmt_, i); }
  bool step(std::optional<Error>& error) override {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc != SQLITE_DONE) error = error_from(db_, rc, "catalog query");
    return false;
  }
  void reset() override {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  std::int64_t int64(int col) const override { return sqlite3_column_int64(stmt_, col); }
  double real(int col) const override { return sqlite3_column_double(stmt_, col); }
  std::string text(int col) const override {
    const auto* p = sqlite3_column_text(stmt_, col);
    if (p == nullptr) return {};
    return std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col)));
  }
  std::vector<std::uint8_t> blob(int col) const override {
    const auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt_, col));
    const int n = sqlite3_column_bytes(stmt_, col);
    if (p == nullptr || n <= 0) return {};
    return {p, p + n};
  }
  bool is_null(int col) const override { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

class SqliteDatabase final : public Database {
 public:
  SqliteDatabase() = default;
  SqliteDatabase(const SqliteDatabase&) = delete;
  SqliteDatabase& operator=(const SqliteDatabase&) = delete;
  ~SqliteDatabase() override {
    if (db != nullptr) sqlite3_close_v2(db);
  }
  Engine engine() const override { return Engine::SQLite; }
  std::unique_ptr<Cursor> prepare(std::string_view sql, std::optional<Error>& error) override {
    sqlite3_stmt* stmt = nullptr;
    const int rc = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
    if (rc != SQLITE_OK) {
      error = error_from(db, rc, "preparing a catalog query");
      sqlite3_finalize(stmt);
      return nullptr;
    }
    return std::make_unique<SqliteCursor>(db, stmt);
  }
  std::optional<Error> exec(const std::string& sql, std::string_view what) override {
    char* msg = nullptr;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg);
    if (msg != nullptr) sqlite3_free(msg);
    if (rc != SQLITE_OK) return error_from(db, rc, what);
    return std::nullopt;
  }
  const char* begin_statement() const override { return "BEGIN IMMEDIATE"; }
  std::int64_t last_insert_id() override { return sqlite3_last_insert_rowid(db); }
  std::int64_t changes() override { return sqlite3_changes(db); }
  Result<std::string> integrity_check() override {
    Stmt s(this, "PRAGMA integrity_check");
    if (!s.ok()) return *s.prepare_error();
    std::string out;
    while (s.step()) {
      if (!out.empty()) out += "; ";
      out += s.text(0);
    }
    if (s.error()) return *s.error();
    return out;
  }
  std::string reader() override { return current_os_user(); }
  sqlite3* sqlite_handle() override { return db; }

  sqlite3* db = nullptr;
};

// Whether this process cannot write the catalog's storage: a read-only file system (a CD, a
// read-only share or mount), or no write permission on the file or its folder (which root
// ignores; a read-only mount it does not).
bool storage_read_only(const fs::path& file) {
  std::error_code ec;
  fs::path folder = fs::absolute(file, ec).parent_path();
  if (folder.empty()) folder = ".";
  struct statvfs vfs {};
  if (::statvfs(folder.c_str(), &vfs) == 0 && (vfs.f_flag & ST_RDONLY) != 0) return true;
  if (::access(folder.c_str(), W_OK) != 0) return true;
  return fs::exists(file, ec) && ::access(file.c_str(), W_OK) != 0;
}

// A "file:" URI for sqlite3_open_v2 (SQLITE_OPEN_URI): the path with '%', '?' and '#' escaped.
std::string file_uri(const fs::path& path, bool immutable) {
  std::error_code ec;
  const std::string p = fs::absolute(path, ec).string();
  std::string uri = "file:";
  for (const char c : p) {
    if (c == '%' || c == '?' || c == '#') {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", static_cast<unsigned char>(c));
      uri += buf;
    } else {
      uri += c;
    }
  }
  return uri + "?mode=ro" + (immutable ? "&immutable=1" : "");
}

}  // namespace

Result<Opened> open_sqlite(const fs::path& path, Catalog::Mode mode, const std::vector<std::string>& migrations) {
  using Mode = Catalog::Mode;
  const int latest = static_cast<int>(migrations.size());
  std::error_code ec;
  if (path.empty()) return Error{ErrorKind::CannotOpen, "no catalog path given"};
  const bool exists = fs::exists(path, ec);
  if (!exists && mode != Mode::ReadWriteCreate) {
    return Error{ErrorKind::CannotOpen, "no catalog at " + path.string()};
  }
  if (exists && fs::is_directory(path, ec)) return Error{ErrorKind::CannotOpen, path.string() + " is a folder, not a catalog file"};
  if (!exists) {
    const fs::path parent = fs::absolute(path, ec).parent_path();
    fs::create_directories(parent, ec);
    if (ec) return Error{ErrorKind::CannotOpen, "cannot create the catalog folder " + parent.string() + ": " + ec.message()};
  }
  if (exists && mode != Mode::ReadOnly && storage_read_only(path)) {
    return Error{ErrorKind::ReadOnly, "the catalog " + path.string() +
                                          " is on read-only storage or not writable: browsing (list, labels history, "
                                          "models list) works, but this needs a writable catalog (copy it to a writable folder)"};
  }
  auto impl = std::make_unique<SqliteDatabase>();
  const std::string where = "opening the catalog " + path.string();
  // Read-only: SQLite's "mode=ro"; on storage that cannot be written also "immutable=1", without
  // which a WAL catalog cannot even be read there (SQLite could not create its -shm file). When
  // that file cannot be created for another reason, the catalog is read as immutable too.
  bool immutable = mode == Mode::ReadOnly && storage_read_only(path);
  int app_id = 0;
  for (;;) {
    const int flags = (mode == Mode::ReadOnly ? SQLITE_OPEN_READONLY | SQLITE_OPEN_URI
                                              : SQLITE_OPEN_READWRITE | (mode == Mode::ReadWriteCreate ? SQLITE_OPEN_CREATE : 0)) |
                      SQLITE_OPEN_FULLMUTEX;
    const std::string name = mode == Mode::ReadOnly ? file_uri(path, immutable) : path.string();
    if (impl->db != nullptr) {
      sqlite3_close_v2(impl->db);
      impl->db = nullptr;
    }
    int rc = sqlite3_open_v2(name.c_str(), &impl->db, flags, nullptr);
    if (rc != SQLITE_OK) return error_from(impl->db, rc, "opening the catalog " + path.string());
    sqlite3_extended_result_codes(impl->db, 1);
    sqlite3_busy_timeout(impl->db, kBusyTimeoutMs);

    // Is it a database at all, and ours? (Reading the header fails with NOTADB on a damaged file.)
    Stmt s(impl.get(), "PRAGMA application_id");
    if (s.ok() && s.step()) {
      app_id = static_cast<int>(s.int64(0));
      break;
    }
    const int code = s.ok() ? sqlite3_errcode(impl->db) : SQLITE_NOTADB;
    if (mode == Mode::ReadOnly && !immutable && (code & 0xff) == SQLITE_CANTOPEN) {
      immutable = true;
      continue;
    }
    return error_from(impl->db, code, where);
  }
  int user_version = 0;
  int table_count = 0;
  {
    Stmt s(impl.get(), "PRAGMA user_version");
    if (!s.ok() || !s.step()) return *s.error();
    user_version = static_cast<int>(s.int64(0));
  }
  {
    Stmt s(impl.get(), "SELECT count(*) FROM sqlite_master");
    if (!s.ok() || !s.step()) return s.error() ? *s.error() : error_from(impl->db, SQLITE_CORRUPT, where);
    table_count = static_cast<int>(s.int64(0));
  }
  if (table_count > 0 && app_id != kApplicationId) {
    return Error{ErrorKind::Corrupt, path.string() + " is an SQLite database but not a Hilum catalog; it was left untouched"};
  }
  if (user_version > latest) {
    return Error{ErrorKind::NewerSchema, path.string() + " was written by a newer Hilum (catalog schema " +
                                             std::to_string(user_version) + ", this version knows " +
                                             std::to_string(latest) + "); it was left untouched"};
  }
  // A quick structural check before anything is written: a damaged catalog is reported, never
  // "repaired" by writing over it.
  if (table_count > 0) {
    Stmt s(impl.get(), "PRAGMA quick_check(1)");
    if (!s.ok()) return *s.prepare_error();
    if (!s.step()) return s.error() ? *s.error() : Error{ErrorKind::Corrupt, where + ": integrity check failed"};
    const std::string result = s.text(0);
    if (result != "ok") return Error{ErrorKind::Corrupt, where + ": the catalog is damaged (" + result + "); it was left untouched"};
  }

  if (mode != Mode::ReadOnly) {
    if (auto e = impl->exec("PRAGMA journal_mode=WAL", where)) return *e;
    if (auto e = impl->exec("PRAGMA synchronous=NORMAL", where)) return *e;
  }
  if (auto e = impl->exec("PRAGMA foreign_keys=ON", where)) return *e;

  if (user_version < latest) {
    if (mode == Mode::ReadOnly) {
      return Error{ErrorKind::ReadOnly, path.string() + " needs an upgrade (schema " + std::to_string(user_version) +
                                            " -> " + std::to_string(latest) + ") but was opened read-only"};
    }
    // All pending steps in one transaction: a crash mid-migration leaves the old version intact.
    if (auto e = impl->exec("BEGIN IMMEDIATE", "upgrading the catalog")) return *e;
    for (int v = user_version; v < latest; ++v) {
      if (auto e = impl->exec(migrations[static_cast<std::size_t>(v)],
                             "upgrading the catalog to schema " + std::to_string(v + 1))) {
        (void)impl->exec("ROLLBACK", "rollback");
        return *e;
      }
    }
    const std::string stamp = "PRAGMA application_id=" + std::to_string(kApplicationId) +
                              "; PRAGMA user_version=" + std::to_string(latest);
    if (auto e = impl->exec(stamp, "upgrading the catalog")) {
      (void)impl->exec("ROLLBACK", "rollback");
      return *e;
    }
    if (auto e = impl->exec("COMMIT", "upgrading the catalog")) {
      (void)impl->exec("ROLLBACK", "rollback");
      return *e;
    }
  }
  return Opened{std::move(impl), latest};
}

}  // namespace hilum::app::sql
