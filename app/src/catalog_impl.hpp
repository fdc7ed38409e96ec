// The SQLite engine's state behind hilum::app::Catalog, shared by the files that implement the
// catalog (catalog.cpp, catalog_worklist.cpp). Internal to app/.
#pragma once

#include <sqlite3.h>

#include <filesystem>

#include "hilum/app/catalog.hpp"

namespace hilum::app {

struct Catalog::Impl {
  sqlite3* db = nullptr;
  std::filesystem::path path;
  int schema_version = 0;
  int depth = 0;  // transaction nesting
  ~Impl() {
    if (db != nullptr) sqlite3_close_v2(db);
  }
};

}  // namespace hilum::app
