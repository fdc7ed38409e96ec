// The state behind hilum::app::Catalog, shared by the files that implement the catalog
// (catalog.cpp, catalog_worklist.cpp): the engine (database.hpp) and who is reading. Internal to catalog/.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "database.hpp"
#include "hilum/app/catalog.hpp"

namespace hilum::app {

struct Catalog::Impl {
  std::unique_ptr<sql::Database> owner;
  sql::Database* db = nullptr;  // owner.get()
  std::filesystem::path path;
  std::filesystem::path local_path;  // Catalog::local_path()
  std::string reader;           // the OS user (SQLite) or the database role (PostgreSQL)
  int schema_version = 0;
  int depth = 0;  // transaction nesting
};

}  // namespace hilum::app
