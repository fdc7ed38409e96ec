// Shared helpers of the app/ tests: a temporary folder and catalog records made up in memory.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "hilum/app/catalog.hpp"
#include "hilum/app/hash.hpp"
#include "hilum/app/model_input.hpp"
#include "hilum/dicom/reader.hpp"
#include "pg_server.hpp"
#include "temp_dir_test.hpp"

namespace hilum::test {

namespace fs = std::filesystem;

// The bytes of a model-input cache entry in the cache's first format (magic, key, size, SHA-256 of
// the values; no share in colour), as catalogs made before format 2 hold them.
inline std::string first_format_cache_entry(app::InputSize size, const std::vector<float>& values) {
  const std::string payload(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
  return "hilum-model-input 1\n" + app::model_input_key(size) + "\n" + std::to_string(size.width) + " " + std::to_string(size.height) + "\n" +
         app::sha256_hex(payload.data(), payload.size()) + "\n" + payload;
}

class CatalogTest : public TempDirTest {
 protected:
  // Where the test's catalog `name` lives: a file in the test's folder, or, in the PostgreSQL run
  // (pg_server.hpp), a fresh database of its own.
  [[nodiscard]] std::string location(const std::string& name = "hilum.db") const {
    if (pg::enabled()) return pg::catalog_url(path(name).string());
    return path(name).string();
  }
  // Opens (creating) the test's catalog; fails the test when it cannot.
  app::Catalog open_catalog(const std::string& name = "hilum.db") {
    auto c = app::Catalog::open(location(name));
    EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
    if (!c.ok()) std::abort();
    return std::move(c.value());
  }
};

// Sets (or, with nullopt, unsets) an environment variable for one test, restoring it afterwards
// (CTest runs these tests with HILUM_BUILTIN_MODEL=none).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::optional<std::string>& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) ::setenv(name, value->c_str(), 1);
    else ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_) ::setenv(name_, old_->c_str(), 1);
    else ::unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// A made-up catalogued image (no file behind it: the catalog only stores what it is given).
inline app::InstanceRecord record(const std::string& sop, const std::string& patient = "P1", const std::string& study = "1.2.3.1",
                                  const std::string& series = "1.2.3.1.1", const std::string& hash = "h") {
  app::InstanceRecord r;
  r.sop_instance_uid = sop;
  r.sop_class_uid = "1.2.840.10008.5.1.4.1.1.1.1";
  r.path = "/data/" + sop + ".dcm";
  r.file_size = 1000;
  r.file_mtime = 1700000000;
  r.content_hash = hash + sop;
  r.patient_id = patient;
  r.patient_name = "Name^" + patient;
  r.patient_sex = "F";
  r.patient_age = "045Y";
  r.study_instance_uid = study;
  r.study_date = "20260101";
  r.series_instance_uid = series;
  r.modality = "DX";
  r.photometric = "MONOCHROME2";
  r.rows = 2500;
  r.columns = 2000;
  r.bits_stored = 12;
  r.view_position = "PA";
  r.thumbnail_png = {0x89, 'P', 'N', 'G'};
  return r;
}

// One reader's label of an image.
inline app::LabelInput reading(const std::string& image, const std::string& finding, app::LabelValue v, const std::string& author) {
  app::LabelInput in;
  in.image = image;
  in.finding = finding;
  in.value = v;
  in.author = author;
  return in;
}

// Catalogues a DICOM file as it is (UID and size from the reader, the rest from record()).
inline app::Instance catalogue_file(app::Catalog& catalog, const fs::path& file) {
  auto r = dicom::read_radiograph(file);
  EXPECT_TRUE(r.ok()) << file;
  app::InstanceRecord rec = record(r->meta.sop_instance_uid);
  rec.path = file.string();
  rec.rows = r->rows;
  rec.columns = r->columns;
  EXPECT_TRUE(catalog.put_instances({rec}).ok());
  return catalog.find_instance(rec.sop_instance_uid).value().value();
}

inline std::string file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace hilum::test
