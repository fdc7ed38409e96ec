// Fuzz harness: the label CSV reader (hilum-cli label --from-csv, the GUI's CSV import) against a
// catalog of two images (SOP Instance UIDs 1.2.826.0.1.3680043.10.1138.1 and .2, patients P1, P2).
// Nothing is written to the catalog (read_label_csv checks without writing). Invariants beyond
// "no crash, no sanitizer report" (issue 16, defects 9 and 10):
//  - every label accepted carries well-formed UTF-8 text, a known image, a finding and the author;
//  - a message about a row quotes at most an excerpt of it (never a whole megabyte of a cell);
//  - the RFC 4180 parser and the reader agree on the number of data rows.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "fuzz_support.hpp"
#include "hilum/app/catalog.hpp"
#include "hilum/app/import.hpp"
#include "hilum/app/labels_csv.hpp"
#include "hilum/testdata/phantom.hpp"

namespace app = hilum::app;
namespace fs = std::filesystem;
using hilum::fuzz::require;
using hilum::fuzz::valid_utf8;

namespace {

constexpr std::size_t kMaxMessage = 1024;  // a message quotes excerpts: 60 bytes of a value and a little text

std::unique_ptr<app::Catalog>& catalog() {
  static std::unique_ptr<app::Catalog> c;
  return c;
}

void set_up() {
  const fs::path dir = hilum::fuzz::scratch() / "catalog";
  fs::create_directories(dir / "images");
  for (int i = 1; i <= 2; ++i) {
    hilum::testdata::DicomSpec spec;
    spec.phantom.rows = 32;
    spec.phantom.columns = 32;
    spec.sop_instance_uid = "1.2.826.0.1.3680043.10.1138." + std::to_string(i);
    spec.patient_id = "P" + std::to_string(i);
    hilum::testdata::write_dicom(dir / "images" / ("im" + std::to_string(i) + ".dcm"), spec);
  }
  auto opened = app::Catalog::open(dir / "hilum.db");
  if (!opened) hilum::fuzz::fail("cannot create the catalog: " + opened.error().message);
  catalog() = std::make_unique<app::Catalog>(std::move(*opened));
  const auto report = app::import_paths(*catalog(), {dir / "images"});
  if (!report.ok() || report.counts.imported != 2) hilum::fuzz::fail("cannot import the two images");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (!catalog()) set_up();
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto rows = app::parse_csv(text);

  const fs::path csv = hilum::fuzz::scratch() / "labels.csv";
  hilum::fuzz::write_file(csv, text);
  std::vector<app::LabelInput> valid;
  const std::string author = "fuzz reader";
  const auto report = app::read_label_csv(*catalog(), csv, author, valid);
  if (!report) {
    require(report.error().message.size() <= kMaxMessage, "an error message longer than " + std::to_string(kMaxMessage) + " bytes");
    return 0;
  }
  require(report->rows_applied <= report->rows, "more rows applied than read");
  require(report->labels_written == 0, "read_label_csv wrote labels");
  if (rows && !rows->empty()) {
    require(report->rows <= static_cast<int>(rows->size()), "more data rows than the parser found");
  }
  for (const auto& p : report->problems) {
    require(p.message.size() <= kMaxMessage, "a row message longer than " + std::to_string(kMaxMessage) + " bytes (line " +
                                                 std::to_string(p.line) + ")");
  }
  for (const auto& in : valid) {
    require(!in.image.empty() && !in.finding.empty(), "a label without image or finding");
    require(in.author == author, "a label with another author");
    require(valid_utf8(in.image) && valid_utf8(in.finding) && valid_utf8(in.comment), "a label with text that is not UTF-8");
    auto found = catalog()->find_instance(in.image);
    require(found && found->has_value(), "a label for an image the catalog does not hold: " + in.image.substr(0, 80));
  }
  return 0;
}
