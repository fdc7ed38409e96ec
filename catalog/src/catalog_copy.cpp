// Moving a whole catalog into another one (another engine): hilum-cli catalog migrate.
#include <openssl/evp.h>

#include <array>

#include "catalog_impl.hpp"
#include "hilum/core/numbers.hpp"

namespace hilum::app {
namespace {

// Every table of schema 6, parents before children, with its columns and their types
// (i integer, r real, t text, b blob).
struct Table {
  const char* name;
  std::vector<std::pair<const char*, char>> columns;
  bool has_id;
};

const std::vector<Table>& tables() {
  static const std::vector<Table> t{
      {"patients", {{"id", 'i'}, {"patient_key", 't'}, {"patient_id", 't'}, {"name", 't'}, {"birth_date", 't'}, {"sex", 't'}}, true},
      {"studies",
       {{"id", 'i'}, {"study_uid", 't'}, {"patient_ref", 'i'}, {"study_date", 't'}, {"study_time", 't'}, {"description", 't'},
        {"accession_number", 't'}},
       true},
      {"series",
       {{"id", 'i'}, {"series_uid", 't'}, {"study_ref", 'i'}, {"modality", 't'}, {"series_number", 't'}, {"description", 't'}},
       true},
      {"instances",
       {{"id", 'i'}, {"sop_uid", 't'}, {"series_ref", 'i'}, {"sop_class_uid", 't'}, {"path", 't'}, {"stored_path", 't'},
        {"file_size", 'i'}, {"file_mtime", 'i'}, {"content_hash", 't'}, {"transfer_syntax_uid", 't'}, {"photometric", 't'},
        {"rows", 'i'}, {"columns", 'i'}, {"bits_stored", 'i'}, {"view_position", 't'}, {"body_part", 't'}, {"laterality", 't'},
        {"pixel_spacing_row", 'r'}, {"pixel_spacing_column", 'r'}, {"acquisition_date", 't'}, {"acquisition_time", 't'},
        {"patient_age", 't'}, {"burned_in_annotation", 't'}, {"window_center", 'r'}, {"window_width", 'r'}, {"thumbnail", 'b'},
        {"imported_at", 't'}},
       true},
      {"jobs",
       {{"id", 'i'}, {"kind", 't'}, {"params", 't'}, {"status", 't'}, {"created_at", 't'}, {"updated_at", 't'}, {"summary", 't'}},
       true},
      {"job_items", {{"id", 'i'}, {"job_ref", 'i'}, {"path", 't'}, {"status", 't'}, {"reason", 't'}}, true},
      {"settings", {{"key", 't'}, {"value", 't'}}, false},
      {"findings", {{"id", 'i'}, {"name", 't'}, {"description", 't'}, {"builtin", 'i'}, {"created_at", 't'}}, true},
      {"models",
       {{"id", 'i'}, {"version", 't'}, {"parent_ref", 'i'}, {"name", 't'}, {"strategy", 't'}, {"hyperparameters", 't'},
        {"label_snapshot", 't'}, {"metrics", 't'}, {"status", 't'}, {"status_reason", 't'}, {"path", 't'}, {"created_at", 't'}},
       true},
      {"label_events",
       {{"id", 'i'}, {"instance_ref", 'i'}, {"finding_ref", 'i'}, {"value", 't'}, {"region", 't'}, {"author", 't'},
        {"created_at", 't'}, {"model_version", 't'}, {"model_probability", 'r'}, {"comment", 't'}, {"source", 't'},
        {"kind", 't'}, {"recorded_by", 't'}, {"event_key", 't'}},
       true},
      {"predictions",
       {{"instance_ref", 'i'}, {"model_ref", 'i'}, {"finding_ref", 'i'}, {"probability", 'r'}, {"computed_at", 't'}},
       false},
      {"embeddings",
       {{"instance_ref", 'i'}, {"backbone_version", 't'}, {"dim", 'i'}, {"vector", 'b'}, {"computed_at", 't'}},
       false},
      {"pseudonyms", {{"kind", 't'}, {"original", 't'}, {"pseudonym", 't'}, {"created_at", 't'}}, false},
      {"prediction_domain",
       {{"instance_ref", 'i'}, {"model_ref", 'i'}, {"in_domain", 'i'}, {"score", 'r'}, {"pixel_check", 'i'}, {"reason", 't'},
        {"computed_at", 't'}, {"population", 't'}, {"population_from", 't'}},
       false},
      {"reading_submissions", {{"instance_ref", 'i'}, {"author", 't'}, {"recorded_by", 't'}, {"submitted_at", 't'}}, false},
  };
  return t;
}

Result<std::int64_t> count_rows(sql::Database* db, const std::string& table) {
  sql::Stmt s(db, "SELECT count(*) FROM " + table);
  if (!s.step()) return s.error() ? *s.error() : Error{ErrorKind::Io, "counting " + table + " returned nothing"};
  return s.int64(0);
}

Result<std::vector<std::pair<std::string, std::int64_t>>> count_all(sql::Database* db) {
  std::vector<std::pair<std::string, std::int64_t>> out;
  for (const Table& t : tables()) {
    auto n = count_rows(db, t.name);
    if (!n) return n.error();
    out.emplace_back(t.name, *n);
  }
  return out;
}

Status copy_table(sql::Database* from, sql::Database* to, const Table& t) {
  std::string columns, marks;
  for (std::size_t k = 0; k < t.columns.size(); ++k) {
    columns += std::string(k ? ", " : "") + t.columns[k].first;
    marks += k ? ", ?" : "?";
  }
  sql::Stmt read(from, "SELECT " + columns + " FROM " + t.name + " ORDER BY " + (t.has_id ? "id" : "1, 2"));
  if (!read.ok()) return *read.prepare_error();
  sql::Stmt write(to, "INSERT INTO " + std::string(t.name) + "(" + columns + ") VALUES (" + marks + ")");
  if (!write.ok()) return *write.prepare_error();
  while (read.step()) {
    write.reset();
    for (std::size_t k = 0; k < t.columns.size(); ++k) {
      const int c = static_cast<int>(k);
      if (read.is_null(c)) {
        write.bind_null(c + 1);
        continue;
      }
      switch (t.columns[k].second) {
        case 'i': write.bind(c + 1, read.int64(c)); break;
        case 'r': write.bind(c + 1, read.real(c)); break;
        case 'b': write.bind_blob(c + 1, read.blob(c)); break;
        default: write.bind(c + 1, read.text(c)); break;
      }
    }
    if (!write.run()) return *write.error();
  }
  if (read.error()) return *read.error();
  if (t.has_id) {
    if (auto e = to->ids_copied(t.name)) return *e;
  }
  return core::Done{};
}

}  // namespace

Result<std::string> Catalog::label_events_checksum() {
  auto events = label_history();
  if (!events) return events.error();
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr || EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1) {
    EVP_MD_CTX_free(ctx);
    return Error{ErrorKind::Io, "SHA-256 is not available"};
  }
  for (const LabelEvent& e : *events) {
    const std::string row = std::to_string(e.id) + '\x1f' + e.sop_instance_uid + '\x1f' + e.finding + '\x1f' + to_string(e.value) +
                            '\x1f' + (e.region ? e.region->to_json() : "") + '\x1f' + e.author + '\x1f' + e.created_at + '\x1f' +
                            e.model_version.value_or("") + '\x1f' +
                            (e.model_probability ? core::format_number(*e.model_probability, 17) : "") + '\x1f' + e.comment +
                            '\x1f' + to_string(e.source) + '\x1f' + to_string(e.kind) + '\x1f' + e.recorded_by + '\x1e';
    EVP_DigestUpdate(ctx, row.data(), row.size());
  }
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx, digest.data(), &n);
  EVP_MD_CTX_free(ctx);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < n; ++i) {
    out.push_back(hex[digest[i] >> 4]);
    out.push_back(hex[digest[i] & 0xF]);
  }
  return out;
}

Result<CopyReport> Catalog::copy_to(Catalog& target) {
  sql::Database* to = target.impl_->db;
  for (const char* table : {"instances", "label_events", "models", "jobs"}) {
    auto n = count_rows(to, table);
    if (!n) return n.error();
    if (*n > 0) {
      return Error{ErrorKind::Conflict, "the target catalog " + target.path().string() + " is not empty (its " + table +
                                            " table has rows); a catalog moves only into a new one"};
    }
  }
  Status copied = target.transaction([&]() -> Status {
    // The new catalog's own vocabulary and settings give way to the source's (same ids as its labels).
    for (const char* table : {"findings", "settings"}) {
      if (auto e = sql::exec(to, std::string("DELETE FROM ") + table, "emptying the target catalog")) return *e;
    }
    for (const Table& t : tables()) {
      if (auto s = copy_table(impl_->db, to, t); !s) return s;
    }
    return core::Done{};
  });
  if (!copied) return copied.error();
  CopyReport report;
  auto source_rows = count_all(impl_->db);
  if (!source_rows) return source_rows.error();
  auto target_rows = count_all(to);
  if (!target_rows) return target_rows.error();
  report.source_rows = std::move(*source_rows);
  report.target_rows = std::move(*target_rows);
  auto a = label_events_checksum();
  if (!a) return a.error();
  auto b = target.label_events_checksum();
  if (!b) return b.error();
  report.source_checksum = *a;
  report.target_checksum = *b;
  return report;
}

}  // namespace hilum::app
