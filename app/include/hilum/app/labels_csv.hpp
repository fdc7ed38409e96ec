// Hilum app: bulk label entry from a CSV file.
// Accepted layouts (header row required, RFC 4180 quoting):
//  - `image` (SOP Instance UID or a catalogued path) plus one column per finding, each cell
//    present/absent/uncertain (also 1/0/-1, yes/no); an empty cell leaves that finding alone;
//  - ChestX-ray14's `Finding Labels` column ("Effusion|Mass", "No Finding"), with the image in
//    `image` or `Image Index`: listed findings are present and every other ChestX-ray14 finding
//    (and "No Finding") absent, as that data set means it.
// Rows naming an unknown image or finding, or with an unreadable value, are reported by line and
// skipped; all valid rows are applied in one transaction.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "hilum/app/catalog.hpp"

namespace hilum::app {

struct CsvRowProblem {
  int line = 0;  // 1-based line in the file (the header is line 1)
  std::string message;
};

struct CsvLabelReport {
  int rows = 0;            // data rows read
  int rows_applied = 0;    // rows whose labels were written
  int labels_written = 0;  // label events appended
  std::vector<CsvRowProblem> problems;
};

// Parses one CSV document into rows of fields (RFC 4180: quotes, doubled quotes, CRLF).
[[nodiscard]] Result<std::vector<std::vector<std::string>>> parse_csv(const std::string& text);

// Reads and checks a label CSV without writing anything: the valid rows' labels go to `valid`
// (rows_applied counts them; labels_written stays 0).
[[nodiscard]] Result<CsvLabelReport> read_label_csv(Catalog& catalog, const std::filesystem::path& csv, const std::string& author,
                                                    std::vector<LabelInput>& valid);
[[nodiscard]] Result<CsvLabelReport> import_label_csv(Catalog& catalog, const std::filesystem::path& csv,
                                                      const std::string& author);

}  // namespace hilum::app
