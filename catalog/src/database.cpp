// The engine-neutral half of the storage seam: Stmt over an engine's Cursor.
#include "database.hpp"

namespace hilum::app::sql {

std::optional<Error> exec(Database* db, const std::string& sql, std::string_view what) { return db->exec(sql, what); }

std::string flag(std::string_view condition) { return "CASE WHEN (" + std::string(condition) + ") THEN 1 ELSE 0 END"; }

Stmt::Stmt(Database* db, std::string_view sql) {
  std::optional<Error> error;
  cursor_ = db->prepare(sql, error);
  if (cursor_ == nullptr) {
    prepare_error_ = error ? *error : Error{ErrorKind::Io, "preparing a catalog query failed"};
    error_ = prepare_error_;
  }
}

Stmt::~Stmt() = default;

Stmt& Stmt::bind(int i, std::int64_t v) {
  if (cursor_) cursor_->bind_int(i, v);
  return *this;
}
Stmt& Stmt::bind(int i, double v) {
  if (cursor_) cursor_->bind_real(i, v);
  return *this;
}
Stmt& Stmt::bind(int i, std::string_view v) {
  if (cursor_) cursor_->bind_text(i, v);
  return *this;
}
Stmt& Stmt::bind(int i, const std::optional<double>& v) { return v ? bind(i, *v) : bind_null(i); }
Stmt& Stmt::bind(int i, const std::optional<std::string>& v) { return v ? bind(i, std::string_view(*v)) : bind_null(i); }
Stmt& Stmt::bind_blob(int i, const std::vector<std::uint8_t>& v) {
  if (!cursor_) return *this;
  if (v.empty()) return bind_null(i);
  cursor_->bind_blob(i, v);
  return *this;
}
Stmt& Stmt::bind_null(int i) {
  if (cursor_) cursor_->bind_null(i);
  return *this;
}

bool Stmt::step() {
  if (!cursor_) return false;
  std::optional<Error> error;
  if (cursor_->step(error)) return true;
  if (error) error_ = std::move(error);
  return false;
}

bool Stmt::run() {
  if (!cursor_) return false;
  while (step()) {
  }
  return !error_.has_value();
}

void Stmt::reset() {
  if (!cursor_) return;
  cursor_->reset();
  error_.reset();
}

std::optional<double> Stmt::opt_real(int col) const {
  if (is_null(col)) return std::nullopt;
  return real(col);
}
std::optional<std::string> Stmt::opt_text(int col) const {
  if (is_null(col)) return std::nullopt;
  return text(col);
}

}  // namespace hilum::app::sql
