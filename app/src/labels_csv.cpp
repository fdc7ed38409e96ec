#include "hilum/app/labels_csv.hpp"
#include "text.hpp"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace hilum::app {

Result<std::vector<std::vector<std::string>>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false;
  bool field_started = false;
  std::size_t i = 0;
  if (text.size() >= 3 && static_cast<unsigned char>(text[0]) == 0xEF && static_cast<unsigned char>(text[1]) == 0xBB &&
      static_cast<unsigned char>(text[2]) == 0xBF) {
    i = 3;  // UTF-8 byte order mark (spreadsheets write one)
  }
  const auto end_row = [&] {
    row.push_back(field);
    field.clear();
    field_started = false;
    if (!(row.size() == 1 && row[0].empty())) rows.push_back(row);  // skip blank lines
    row.clear();
  };
  for (; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field.push_back('"');
          ++i;
        } else {
          quoted = false;
        }
      } else {
        field.push_back(c);
      }
      continue;
    }
    if (c == '"' && !field_started) {
      quoted = true;
      field_started = true;
    } else if (c == ',') {
      row.push_back(field);
      field.clear();
      field_started = false;
    } else if (c == '\n') {
      end_row();
    } else if (c == '\r') {
      if (i + 1 < text.size() && text[i + 1] == '\n') continue;
      end_row();
    } else {
      field.push_back(c);
      field_started = true;
    }
  }
  if (quoted) return Error{ErrorKind::Invalid, "CSV: a quoted field is not closed before the end of the file"};
  if (field_started || !row.empty()) end_row();
  return rows;
}

Result<CsvLabelReport> read_label_csv(Catalog& catalog, const std::filesystem::path& csv, const std::string& author,
                                      std::vector<LabelInput>& valid) {
  if (author.empty()) return Error{ErrorKind::Invalid, "an author is required for labels"};
  std::ifstream file(csv, std::ios::binary);
  if (!file) return Error{ErrorKind::Io, "cannot read " + csv.string()};
  std::stringstream buffer;
  buffer << file.rdbuf();
  auto parsed = parse_csv(buffer.str());
  if (!parsed) return parsed.error();
  const auto& rows = parsed.value();
  if (rows.empty()) return Error{ErrorKind::Invalid, csv.string() + " is empty: a header row is required"};

  auto vocabulary = catalog.findings();
  if (!vocabulary) return vocabulary.error();
  std::map<std::string, std::string> canonical;  // lower-case -> vocabulary spelling
  for (const auto& f : vocabulary.value()) canonical[lower(f.name)] = f.name;
  std::vector<std::string> chestxray14;
  for (const auto& [name, description] : builtin_findings()) chestxray14.push_back(name);

  // Header.
  const auto& header = rows[0];
  int image_col = -1;
  int finding_labels_col = -1;
  std::vector<std::pair<int, std::string>> finding_cols;
  std::vector<std::string> unknown_columns;
  for (std::size_t c = 0; c < header.size(); ++c) {
    const std::string h = trim(header[c]);
    const std::string l = lower(h);
    if (l == "image" || l == "image index" || l == "sop_instance_uid" || l == "path") {
      if (image_col < 0) image_col = static_cast<int>(c);
    } else if (l == "finding labels") {
      finding_labels_col = static_cast<int>(c);
    } else if (auto it = canonical.find(l); it != canonical.end()) {
      finding_cols.emplace_back(static_cast<int>(c), it->second);
    } else if (!h.empty()) {
      unknown_columns.push_back(h);
    }
  }
  if (image_col < 0) return Error{ErrorKind::Invalid, csv.string() + ": no `image` (or `Image Index`) column in the header"};
  if (finding_labels_col < 0 && finding_cols.empty()) {
    return Error{ErrorKind::Invalid, csv.string() + ": no finding columns and no `Finding Labels` column in the header"};
  }

  CsvLabelReport report;
  if (finding_labels_col < 0) {
    for (const auto& u : unknown_columns) {
      const std::string why = finding_name_problem(u);
      report.problems.push_back({1, "unknown finding column " + quoted_excerpt(u) + " ignored" + (why.empty() ? "" : " (" + why + ")")});
    }
  }
  valid.clear();
  std::vector<int> valid_lines;
  for (std::size_t r = 1; r < rows.size(); ++r) {
    const int line = static_cast<int>(r) + 1;
    const auto& row = rows[r];
    ++report.rows;
    const auto cell = [&row](int c) { return c >= 0 && static_cast<std::size_t>(c) < row.size() ? trim(row[static_cast<std::size_t>(c)]) : std::string(); };
    std::string image = cell(image_col);
    if (image.empty()) {
      report.problems.push_back({line, "no image given"});
      continue;
    }
    auto found = catalog.find_instance(image);
    if (!found) return found.error();
    if (!found->has_value() && image.size() > 4 && lower(image.substr(image.size() - 4)) == ".png") {
      found = catalog.find_instance(image.substr(0, image.size() - 4));  // ChestX-ray14 "Image Index"
      if (!found) return found.error();
    }
    if (!found->has_value()) {
      report.problems.push_back({line, "unknown image " + quoted_excerpt(image)});
      continue;
    }
    const std::string uid = (*found)->sop_instance_uid;
    std::vector<LabelInput> row_labels;
    std::string problem;
    const auto add = [&](const std::string& finding, LabelValue value) {
      LabelInput in;
      in.image = uid;
      in.finding = finding;
      in.value = value;
      in.author = author;
      in.source = LabelSource::Csv;
      row_labels.push_back(std::move(in));
    };
    if (finding_labels_col >= 0) {
      std::set<std::string> present;
      std::string list = cell(finding_labels_col);
      std::size_t start = 0;
      while (start <= list.size()) {
        const auto bar = list.find('|', start);
        const std::string name = trim(list.substr(start, bar == std::string::npos ? std::string::npos : bar - start));
        if (!name.empty()) {
          auto it = canonical.find(lower(name));
          if (it == canonical.end()) {
            const std::string why = finding_name_problem(name);
            problem = "unknown finding " + quoted_excerpt(name) + (why.empty() ? "" : " (" + why + ")");
            break;
          }
          present.insert(it->second);
        }
        if (bar == std::string::npos) break;
        start = bar + 1;
      }
      if (problem.empty() && present.empty()) problem = "empty Finding Labels";
      if (problem.empty() && present.count("No Finding") && present.size() > 1) problem = "\"No Finding\" listed with other findings";
      if (problem.empty()) {
        for (const auto& name : present) add(name, LabelValue::Present);
        for (const auto& name : chestxray14) {
          if (!present.count(name)) add(name, LabelValue::Absent);
        }
      }
    } else {
      for (const auto& [col, name] : finding_cols) {
        const std::string v = cell(col);
        if (v.empty()) continue;
        auto value = parse_label_value(v);
        if (!value) {
          problem = "unreadable value " + quoted_excerpt(v) + " for " + name + " (present, absent, uncertain)";
          break;
        }
        add(name, *value);
      }
      if (problem.empty() && row_labels.empty()) problem = "no label values on this row";
    }
    if (problem.empty()) {
      // Check the row on its own (e.g. "No Finding" exclusivity against labels already stored)
      // by validating it against the catalog without writing: add_labels is all-or-nothing, so
      // run it inside a transaction that is rolled back.
      Status trial = catalog.transaction([&]() -> Status {
        auto r2 = catalog.add_labels(row_labels);
        if (!r2) return r2.error();
        return Error{ErrorKind::Interrupted, "trial"};
      });
      if (!trial && trial.error().kind != ErrorKind::Interrupted) problem = trial.error().message;
    }
    if (!problem.empty()) {
      report.problems.push_back({line, problem});
      continue;
    }
    valid.insert(valid.end(), row_labels.begin(), row_labels.end());
    valid_lines.push_back(line);
  }
  report.rows_applied = static_cast<int>(valid_lines.size());
  return report;
}

Result<CsvLabelReport> import_label_csv(Catalog& catalog, const std::filesystem::path& csv, const std::string& author) {
  std::vector<LabelInput> valid;
  auto report = read_label_csv(catalog, csv, author, valid);
  if (!report) return report;
  if (!valid.empty()) {
    auto written = catalog.add_labels(valid);
    if (!written) return written.error();
    report->labels_written = static_cast<int>(written->size());
  }
  return report;
}

}  // namespace hilum::app
