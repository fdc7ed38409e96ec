// A thin RAII layer over SQLite's C API, internal to app/. Every failure becomes an app::Error.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hilum/app/catalog.hpp"

namespace hilum::app::sql {

// Maps an SQLite result code (and the connection's message) to a Hilum error.
[[nodiscard]] Error error_from(sqlite3* db, int rc, std::string_view what);

// Runs statements without results (schema, pragmas). Returns an error or nothing.
[[nodiscard]] std::optional<Error> exec(sqlite3* db, const std::string& sql, std::string_view what);

class Stmt {
 public:
  Stmt(sqlite3* db, std::string_view sql);
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt();

  [[nodiscard]] bool ok() const { return stmt_ != nullptr; }
  [[nodiscard]] const std::optional<Error>& prepare_error() const { return prepare_error_; }

  Stmt& bind(int i, std::int64_t v);
  Stmt& bind(int i, int v) { return bind(i, static_cast<std::int64_t>(v)); }
  Stmt& bind(int i, double v);
  Stmt& bind(int i, std::string_view v);
  Stmt& bind(int i, const std::string& v) { return bind(i, std::string_view(v)); }
  Stmt& bind(int i, const char* v) { return bind(i, std::string_view(v)); }
  Stmt& bind(int i, const std::optional<double>& v);
  Stmt& bind(int i, const std::optional<std::string>& v);
  Stmt& bind_blob(int i, const std::vector<std::uint8_t>& v);
  Stmt& bind_null(int i);

  // SQLITE_ROW -> true, SQLITE_DONE -> false; anything else sets error().
  bool step();
  // Steps to completion (for INSERT/UPDATE); false on error.
  bool run();
  void reset();

  [[nodiscard]] const std::optional<Error>& error() const { return error_; }

  [[nodiscard]] std::int64_t int64(int col) const;
  [[nodiscard]] double real(int col) const;
  [[nodiscard]] std::optional<double> opt_real(int col) const;
  [[nodiscard]] std::string text(int col) const;
  [[nodiscard]] std::optional<std::string> opt_text(int col) const;
  [[nodiscard]] std::vector<std::uint8_t> blob(int col) const;
  [[nodiscard]] bool is_null(int col) const;

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
  std::string sql_;
  std::optional<Error> prepare_error_;
  std::optional<Error> error_;
};

}  // namespace hilum::app::sql
