// The PostgreSQL engine when Hilum was built without libpq: a "postgresql://" catalog is refused clearly.
#include "database.hpp"

namespace hilum::app::sql {

bool is_postgresql_url(std::string_view location) {
  return location.rfind("postgresql://", 0) == 0 || location.rfind("postgres://", 0) == 0;
}

Result<Opened> open_postgresql(const std::string& url, Catalog::Mode) {
  (void)url;
  return Error{ErrorKind::CannotOpen, "this Hilum was built without PostgreSQL support (libpq); a PostgreSQL catalog cannot be opened"};
}

}  // namespace hilum::app::sql
