// Exporting the current labels (ChestX-ray14-style CSV or JSON), optionally de-identified, with
// 16-bit PNGs and de-identified DICOM copies of the images. See export.hpp.
#include "hilum/app/export.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <system_error>
#include <tuple>
#include <utility>

#include "hilum/app/domain.hpp"
#include "hilum/app/hash.hpp"
#include "hilum/app/json.hpp"
#include "hilum/app/png.hpp"
#include "hilum/core/atomic_file.hpp"
#include "hilum/core/enum_names.hpp"
#include "hilum/core/numbers.hpp"
#include "hilum/dicom/deidentify.hpp"
#include "hilum/dicom/reader.hpp"
#include "text.hpp"

namespace fs = std::filesystem;

namespace hilum::app {
namespace {

constexpr const char* kDataEntryFile = "Data_Entry_2017.csv";
constexpr const char* kBBoxFile = "BBox_List_2017.csv";
constexpr const char* kJsonFile = "labels.json";
constexpr const char* kImagesDir = "images";
constexpr const char* kScalingFile = "pixel_scaling.csv";
constexpr const char* kScalingHeader = "Image Index,Offset,Slope,Photometric Interpretation";
constexpr const char* kCrlf = "\r\n";  // RFC 4180 line ends

Error io_error(std::string message) { return Error{ErrorKind::Io, std::move(message)}; }

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string format_number(double v) { return core::format_number(v, 10); }  // whatever the locale



// A file name made of a UID (or anything else the catalog holds): characters outside
// [0-9A-Za-z._-] become '_'.
std::string safe_stem(const std::string& s) {
  std::string out = s.empty() ? std::string("unnamed") : s;
  for (char& c : out) {
    const bool keep = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' ||
                      c == '-' || c == '_';
    if (!keep) c = '_';
  }
  if (out[0] == '.') out[0] = '_';
  return out;
}

// "2026-11-25T12:00:00.123Z" with its date moved by `days`; empty when it is not such a time.
std::string shift_iso_timestamp(const std::string& ts, int days) {
  if (ts.size() < 10 || ts[4] != '-' || ts[7] != '-') return {};
  auto date = dicom::shift_dicom_date(ts.substr(0, 4) + ts.substr(5, 2) + ts.substr(8, 2), days);
  if (!date) return {};
  return date->substr(0, 4) + "-" + date->substr(4, 2) + "-" + date->substr(6, 2) + ts.substr(10);
}

// ---- Atomic files. ----

// ---- The output folder: new, empty, or an earlier export. ----

bool is_label_file(const std::string& name) { return name == kDataEntryFile || name == kBBoxFile || name == kJsonFile; }
bool is_image_file(const std::string& name) {
  return name == kScalingFile || ((ends_with(name, ".png") || ends_with(name, ".dcm")) && name[0] != '.');
}

// A temporary file left by an interrupted write of `accepts` (".NAME.tmp-..." or "NAME.tmp-...").
template <typename Accepts>
bool is_leftover_tmp(const std::string& name, Accepts accepts) {
  const auto at = name.rfind(".tmp-");
  if (at == std::string::npos) return false;
  const std::string tail = name.substr(at + 5);
  if (tail.empty() || !std::all_of(tail.begin(), tail.end(), [](char c) { return (c >= '0' && c <= '9') || c == '-'; }))
    return false;
  std::string base = name.substr(0, at);
  if (!base.empty() && base[0] == '.') base.erase(0, 1);
  return !base.empty() && accepts(base);
}

// The export's manifest: every file an export of this folder may have written, one relative path a
// line after a header. Only files it lists are ever replaced or removed; anything else in the folder
// belongs to someone else, and the folder is refused.
constexpr const char* kManifestFile = ".hilum-export-manifest";
constexpr const char* kManifestHeader = "hilum-export-manifest 1";

// A path an export writes: a label file, or an image file in images/ (no other folder, no "..").
bool is_export_path(const std::string& relative) {
  const std::string prefix = std::string(kImagesDir) + "/";
  if (relative.compare(0, prefix.size(), prefix) == 0) {
    const std::string name = relative.substr(prefix.size());
    return !name.empty() && name.find('/') == std::string::npos && name[0] != '.' && is_image_file(name);
  }
  return is_label_file(relative);
}

Result<std::set<std::string>> read_manifest(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return io_error("cannot read " + file.string());
  std::string line;
  if (!std::getline(in, line) || line != kManifestHeader)
    return Error{ErrorKind::Invalid, "the export manifest " + file.string() + " is not one Hilum wrote"};
  std::set<std::string> files;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (!is_export_path(line))
      return Error{ErrorKind::Invalid, "the export manifest " + file.string() + " names a file Hilum does not write"};
    files.insert(line);
  }
  if (in.bad()) return io_error("cannot read " + file.string());
  return files;
}

std::string manifest_text(const std::set<std::string>& files) {
  std::string text = std::string(kManifestHeader) + "\n";
  for (const auto& f : files) text += f + "\n";
  return text;
}

struct ExistingExport {
  std::set<std::string> listed;    // the earlier export's manifest
  std::vector<std::string> files;  // files of the folder that the manifest lists
  std::vector<std::string> tmp;    // leftover temporary files of those (or of the manifest)
};

Result<ExistingExport> inspect_output_folder(const fs::path& out) {
  ExistingExport existing;
  std::error_code ec;
  if (!fs::exists(out, ec)) return existing;
  if (!fs::is_directory(out, ec)) return Error{ErrorKind::Invalid, "the output path is not a folder: " + out.string()};
  const fs::path manifest = out / kManifestFile;
  if (fs::is_regular_file(manifest, ec)) {
    auto listed = read_manifest(manifest);
    if (!listed) return listed.error();
    existing.listed = std::move(*listed);
  }
  const auto foreign = [&](const std::string& name) {
    return Error{ErrorKind::Invalid, "the output folder " + out.string() + " holds files that Hilum did not export (" +
                                         name + "); choose a new or empty folder"};
  };
  const auto listed = [&](const std::string& relative) { return existing.listed.count(relative) > 0; };
  for (fs::directory_iterator it(out, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code type_ec;
    if (name == kImagesDir && it->is_directory(type_ec) && !it->is_symlink(type_ec)) {
      const std::string prefix = std::string(kImagesDir) + "/";
      const auto listed_image = [&](const std::string& base) { return listed(prefix + base); };
      for (fs::directory_iterator jt(it->path(), ec), jend; !ec && jt != jend; jt.increment(ec)) {
        const std::string image = jt->path().filename().string();
        const bool regular = jt->is_regular_file(type_ec) && !jt->is_symlink(type_ec);
        if (regular && listed(prefix + image)) existing.files.push_back(prefix + image);
        else if (regular && is_leftover_tmp(image, listed_image)) existing.tmp.push_back(prefix + image);
        else return foreign(prefix + image);
      }
      continue;
    }
    const bool regular = it->is_regular_file(type_ec) && !it->is_symlink(type_ec);
    const auto is_manifest = [](const std::string& base) { return base == kManifestFile; };
    if (regular && name == kManifestFile) continue;
    if (regular && listed(name)) existing.files.push_back(name);
    else if (regular && (is_leftover_tmp(name, listed) || is_leftover_tmp(name, is_manifest))) existing.tmp.push_back(name);
    else return foreign(name);
  }
  if (ec) return io_error("cannot list " + out.string() + ": " + ec.message());
  return existing;
}

// ---- Rows. ----

struct ImageRow {
  Instance instance;
  std::vector<LabelEvent> labels;    // the consensus labels, by finding name
  std::vector<LabelEvent> readings;  // each reader's current labels
  std::string key;                 // patient key
  Split split = Split::Train;
  int follow_up = 0;
  int date_shift = 0;              // de-identified exports only
  // As written (pseudonymous with deidentify).
  std::string stem;                // file name stem: SOP Instance UID or its pseudonym
  std::string image_index;         // stem + ".png"
  std::string patient_id;
  std::string accession;
  std::string study_uid;
  std::string series_uid;
  std::string study_date;
  // Pixels.
  std::string png;                 // relative path, when written
  std::string dicom;               // relative path, when written
  double offset = 0.0;
  double slope = 1.0;
  std::string pixels_note;         // why the pixels are not there
};

bool is_no_finding(const std::string& finding) { return lower(finding) == "no finding"; }

// ChestX-ray14's "Finding Labels": the present findings; "No Finding" only when it was labelled
// itself or every other finding of the vocabulary was assessed absent; else empty (not assessed:
// "Pneumonia absent" alone says nothing about the other findings).
std::string finding_labels(const ImageRow& row, const std::vector<std::string>& vocabulary) {
  std::vector<std::string> present;
  std::set<std::string> absent;
  bool no_finding = false;
  for (const auto& l : row.labels) {
    if (is_no_finding(l.finding)) {
      no_finding = no_finding || l.value == LabelValue::Present;
      continue;
    }
    if (l.value == LabelValue::Present) present.push_back(l.finding);
    if (l.value == LabelValue::Absent) absent.insert(l.finding);
  }
  if (present.empty()) {
    if (no_finding) return "No Finding";
    for (const auto& f : vocabulary)
      if (!is_no_finding(f) && !absent.count(f)) return {};
    return "No Finding";
  }
  std::sort(present.begin(), present.end());
  present.erase(std::unique(present.begin(), present.end()), present.end());
  std::string out;
  for (std::size_t i = 0; i < present.size(); ++i) {
    if (i) out += '|';
    out += present[i];
  }
  return out;
}

std::string gender(const std::string& sex) {
  const std::string s = lower(sex);
  if (s == "m") return "M";
  if (s == "f") return "F";
  return {};
}

// Modality value = PNG value * slope + offset. The identity for the common unsigned images;
// stored values minus their minimum when a Rescale Slope applies; a range fitted to 16 bits
// otherwise.
std::pair<double, double> png_scaling(const dicom::Radiograph& r) {
  const double lo = r.min_modality;
  const double hi = r.max_modality;
  double slope = 1.0;
  if (!r.modality_lut && r.rescale_slope != 0.0 && std::isfinite(r.rescale_slope)) slope = std::fabs(r.rescale_slope);
  double offset = (lo >= 0.0 && hi / slope <= 65535.0) ? 0.0 : lo;
  if ((hi - offset) / slope > 65535.0) slope = (hi - offset) / 65535.0;
  return {offset, slope};
}

std::vector<std::uint16_t> png_pixels(const dicom::Radiograph& r, double offset, double slope) {
  std::vector<std::uint16_t> out(r.modality.size());
  for (std::size_t i = 0; i < r.modality.size(); ++i) {
    const double v = std::round((static_cast<double>(r.modality[i]) - offset) / slope);
    out[i] = static_cast<std::uint16_t>(std::clamp(v, 0.0, 65535.0));
  }
  return out;
}

// The catalog's pseudonyms, UIDs checked.
class Pseudonyms {
 public:
  explicit Pseudonyms(Catalog& catalog) : catalog_(catalog) {}

  Result<std::string> uid(const std::string& original) {
    auto p = catalog_.pseudonym("uid", original);
    if (!p) return p.error();
    if (!dicom::is_valid_uid(*p)) return Error{ErrorKind::Invalid, "the catalog's pseudonym for a UID is not a valid UID"};
    return p;
  }
  Result<std::string> get(const std::string& kind, const std::string& original) { return catalog_.pseudonym(kind, original); }
  Result<std::string> accession(const std::string& original) {
    if (original.empty()) return std::string();
    return catalog_.pseudonym("accession", original);
  }

 private:
  Catalog& catalog_;
};

std::string label_json(const LabelEvent& l, const ImageRow& row, bool deidentify) {
  JsonObject o;
  o.add("finding", l.finding);
  o.add("value", to_string(l.value));
  o.add("author", l.author);
  o.add("created_at", deidentify ? shift_iso_timestamp(l.created_at, row.date_shift) : l.created_at);
  if (l.region) {
    o.add_raw("region", l.region->to_json());
    const Region box = l.region->bounding_box();
    JsonObject b;
    b.add("x", box.x).add("y", box.y).add("w", box.w).add("h", box.h);
    o.add_raw("bounding_box", b.str());
  } else {
    o.add_null("region");
  }
  if (l.model_version) o.add("model_version", *l.model_version);
  else o.add_null("model_version");
  if (l.model_probability) o.add("model_probability", *l.model_probability);
  else o.add_null("model_probability");
  if (!deidentify) o.add("comment", l.comment);  // free text may name the patient
  o.add("source", to_string(l.source));
  return o.str();
}

// Every finding of the vocabulary: its consensus status (present, absent, uncertain, or
// not_assessed), how the consensus was reached, and each reader's current value.
std::string assessment_json(const ImageRow& row, const std::vector<std::string>& vocabulary) {
  JsonObject o;
  for (const auto& f : vocabulary) {
    JsonObject a;
    const auto c = std::find_if(row.labels.begin(), row.labels.end(), [&](const LabelEvent& l) { return l.finding == f; });
    if (c != row.labels.end()) {
      a.add("status", to_string(c->value)).add("basis", c->basis);
    } else {
      a.add("status", "not_assessed");
    }
    JsonObject readers;
    for (const auto& r : row.readings)
      if (r.finding == f) readers.add(r.author, to_string(r.value));
    a.add_raw("readers", readers.str());
    o.add_raw(f, a.str());
  }
  return o.str();
}

std::string image_json(const ImageRow& row, bool deidentify, const std::vector<std::string>& vocabulary) {
  const Instance& in = row.instance;
  JsonObject o;
  o.add("image_index", row.image_index);
  o.add("sop_instance_uid", deidentify ? row.stem : in.sop_instance_uid);
  o.add("study_instance_uid", row.study_uid);
  o.add("series_instance_uid", row.series_uid);
  o.add("patient_id", row.patient_id);
  if (!deidentify) o.add("patient_name", in.patient_name);
  o.add("patient_age", in.patient_age);
  if (auto age = age_in_years(in.patient_age, in.patient_birth_date, in.study_date)) o.add("patient_age_years", *age);
  else o.add_null("patient_age_years");
  o.add("patient_sex", in.patient_sex);
  o.add("accession_number", row.accession);
  o.add("study_date", row.study_date);
  o.add("follow_up", row.follow_up);
  o.add("split", to_string(row.split));
  o.add("modality", in.modality);
  o.add("view_position", in.view_position);
  o.add("body_part", in.body_part);
  o.add("laterality", in.laterality);
  o.add("photometric", in.photometric);
  o.add("rows", in.rows).add("columns", in.columns).add("bits_stored", in.bits_stored);
  if (in.pixel_spacing_row && in.pixel_spacing_column) {
    JsonObject s;
    s.add("x", *in.pixel_spacing_column).add("y", *in.pixel_spacing_row);
    o.add_raw("pixel_spacing", s.str());
  } else {
    o.add_null("pixel_spacing");
  }
  if (!deidentify) o.add("path", in.path);
  if (!row.png.empty()) {
    o.add("png", row.png);
    JsonObject s;
    s.add("offset", row.offset).add("slope", row.slope);
    o.add_raw("pixel_scaling", s.str());
  }
  if (!row.dicom.empty()) o.add("dicom", row.dicom);
  if (!row.pixels_note.empty()) o.add("pixels_not_exported", row.pixels_note);
  std::string labels = "[";
  for (std::size_t i = 0; i < row.labels.size(); ++i) {
    if (i) labels += ",";
    labels += label_json(row.labels[i], row, deidentify);
  }
  labels += "]";
  o.add_raw("labels", labels);
  o.add_raw("assessment", assessment_json(row, vocabulary));
  return o.str();
}

}  // namespace

// ---- Building blocks. ----

namespace {
constexpr core::EnumName<ExportFormat> kExportFormats[] = {{ExportFormat::Csv, "csv"}, {ExportFormat::Json, "json"}};
constexpr core::EnumName<Split> kSplits[] = {{Split::Train, "train"}, {Split::Validation, "validation"}, {Split::Test, "test"}};
}  // namespace

const char* to_string(ExportFormat format) { return core::c_name_of(kExportFormats, format); }

Result<ExportFormat> export_format_from_string(std::string_view s) {
  if (auto v = core::value_of(kExportFormats, s)) return *v;
  return Error{ErrorKind::Invalid, core::unknown_name_message(kExportFormats, "export format", s)};
}

std::optional<ExportFormat> parse_export_format(const std::string& s) { return core::value_of(kExportFormats, lower(s)); }

const char* to_string(Split split) { return core::c_name_of(kSplits, split); }

Result<Split> split_from_string(std::string_view s) {
  if (auto v = core::value_of(kSplits, s)) return *v;
  return Error{ErrorKind::Invalid, core::unknown_name_message(kSplits, "split", s)};
}


Split patient_split(const std::string& secret, const std::string& key) {
  const std::uint64_t bucket = keyed_hash(secret, "split", key) % 10u;
  if (bucket < 8) return Split::Train;
  return bucket == 8 ? Split::Validation : Split::Test;
}

int patient_date_shift(const std::string& secret, const std::string& key) {
  const std::uint64_t h = keyed_hash(secret, "date-shift", key);
  return -static_cast<int>(365 + h % (3652 - 365 + 1));
}

std::optional<int> age_in_years(const std::string& dicom_age, const std::string& birth_date, const std::string& study_date) {
  const auto years = patient_age_years(dicom_age, birth_date, study_date);
  if (!years) return std::nullopt;
  return static_cast<int>(std::floor(*years));
}

std::string csv_field(std::string_view value) {
  const bool formula = !value.empty() && std::string_view("=+-@\t\r").find(value.front()) != std::string_view::npos;
  if (!formula && value.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(value);
  std::string out = formula ? "\"'" : "\"";
  for (const char c : value) {
    if (c == '"') out += "\"\"";
    else out.push_back(c);
  }
  return out + "\"";
}

std::string csv_line(const std::vector<CsvCell>& cells) {
  std::string line;
  for (std::size_t i = 0; i < cells.size(); ++i) {
    if (i) line += ',';
    line += cells[i].numeric ? cells[i].value : csv_field(cells[i].value);
  }
  return line + kCrlf;
}

// ---- The export. ----

Result<ExportReport> export_labels(Catalog& catalog, const ExportOptions& options, const ExportProgressFn& progress,
                                   const std::atomic<bool>* cancel) {
  if (options.out_dir.empty()) return Error{ErrorKind::Invalid, "no output folder given"};
  ExportReport report;
  report.out_dir = options.out_dir;
  const bool deid = options.deidentify;
  const fs::path out = options.out_dir;

  // The output folder first: nothing is read from the catalog for a folder we may not use.
  auto existing = inspect_output_folder(out);
  if (!existing) return existing.error();

  // ---- What to export: images with at least one consensus label (the readers' consensus under the
  // catalog's policy, never one reader's labels), and each reader's labels beside it (JSON).
  auto policy = catalog.consensus_policy();
  if (!policy) return policy.error();
  report.labels_used = "consensus: " + policy->describe();
  auto current = catalog.consensus_labels();
  if (!current) return current.error();
  std::map<std::string, std::vector<LabelEvent>> by_image;
  for (auto& l : current.value()) by_image[l.sop_instance_uid].push_back(std::move(l));
  auto readings = catalog.reader_labels();
  if (!readings) return readings.error();
  std::map<std::string, std::vector<LabelEvent>> readings_of;
  for (auto& l : readings.value())
    if (by_image.count(l.sop_instance_uid)) readings_of[l.sop_instance_uid].push_back(std::move(l));
  auto findings = catalog.findings();
  if (!findings) return findings.error();
  std::vector<std::string> vocabulary;
  for (const auto& f : findings.value()) vocabulary.push_back(f.name);

  InstanceFilter labelled;
  labelled.labelled = InstanceFilter::Labelled::Labelled;
  labelled.with_thumbnails = false;
  auto instances = catalog.list_instances(labelled);
  if (!instances) return instances.error();
  std::map<std::string, Instance> instance_of;
  for (auto& i : instances.value()) {
    if (by_image.count(i.sop_instance_uid)) {
      const std::string uid = i.sop_instance_uid;
      instance_of.emplace(uid, std::move(i));
    }
  }
  for (const auto& [uid, labels] : by_image) {
    if (instance_of.count(uid)) continue;
    auto found = catalog.find_instance(uid);
    if (!found) return found.error();
    if (!found->has_value()) return Error{ErrorKind::NotFound, "a labelled image is missing from the catalog: " + uid};
    instance_of.emplace(uid, std::move(**found));
  }

  auto secret = catalog.secret();
  if (!secret) return secret.error();

  // Follow-up numbers: the study's place among the patient's studies by date.
  auto studies = catalog.list_studies();
  if (!studies) return studies.error();
  std::map<std::string, std::vector<std::tuple<bool, std::string, std::string>>> studies_of;
  for (const auto& s : studies.value()) {
    studies_of[patient_key(s.patient_id, s.patient_name, s.study_instance_uid)].emplace_back(
        s.study_date.empty(), s.study_date, s.study_instance_uid);
  }
  std::map<std::pair<std::string, std::string>, int> follow_up;
  for (auto& [key, list] : studies_of) {
    std::sort(list.begin(), list.end());
    for (std::size_t i = 0; i < list.size(); ++i) follow_up[{key, std::get<2>(list[i])}] = static_cast<int>(i);
  }

  std::vector<ImageRow> rows;
  rows.reserve(instance_of.size());
  for (auto& [uid, instance] : instance_of) {
    ImageRow row;
    row.labels = std::move(by_image[uid]);
    row.readings = std::move(readings_of[uid]);
    std::sort(row.labels.begin(), row.labels.end(),
              [](const LabelEvent& a, const LabelEvent& b) { return a.finding < b.finding; });
    row.instance = std::move(instance);
    const Instance& in = row.instance;
    row.key = patient_key(in.patient_id, in.patient_name, in.study_instance_uid);
    row.split = patient_split(*secret, row.key);
    if (auto f = follow_up.find({row.key, in.study_instance_uid}); f != follow_up.end()) row.follow_up = f->second;
    rows.push_back(std::move(row));
  }

  // ---- Identifiers as written. With deidentify, every pseudonym is created in one transaction.
  Pseudonyms pseudonyms(catalog);
  if (deid) {
    auto done = catalog.transaction([&]() -> Status {
      for (ImageRow& row : rows) {
        const Instance& in = row.instance;
        auto sop = pseudonyms.uid(in.sop_instance_uid);
        if (!sop) return sop.error();
        auto study = pseudonyms.uid(in.study_instance_uid);
        if (!study) return study.error();
        auto series = pseudonyms.uid(in.series_instance_uid);
        if (!series) return series.error();
        auto patient = pseudonyms.get("patient_id", row.key);
        if (!patient) return patient.error();
        auto name = pseudonyms.get("patient_name", row.key);  // for the DICOM copies
        if (!name) return name.error();
        auto accession = pseudonyms.accession(in.accession_number);
        if (!accession) return accession.error();
        row.stem = *sop;
        row.study_uid = *study;
        row.series_uid = *series;
        row.patient_id = *patient;
        row.accession = *accession;
        row.date_shift = patient_date_shift(*secret, row.key);
        row.study_date = dicom::shift_dicom_date(in.study_date, row.date_shift).value_or("");
      }
      return core::Done{};
    });
    if (!done) return done.error();
  } else {
    for (ImageRow& row : rows) {
      const Instance& in = row.instance;
      row.stem = safe_stem(in.sop_instance_uid);
      row.study_uid = in.study_instance_uid;
      row.series_uid = in.series_instance_uid;
      row.patient_id = in.patient_id;
      row.accession = in.accession_number;
      row.study_date = in.study_date;
    }
  }
  for (ImageRow& row : rows) row.image_index = row.stem + ".png";
  std::sort(rows.begin(), rows.end(), [](const ImageRow& a, const ImageRow& b) { return a.image_index < b.image_index; });

  // ---- Counts.
  std::map<std::string, Split> patients;
  for (const ImageRow& row : rows) {
    patients.emplace(row.key, row.split);
    SplitCounts& c = row.split == Split::Train ? report.train : row.split == Split::Validation ? report.validation : report.test;
    ++c.images;
    report.labels += row.labels.size();
    for (const auto& l : row.labels)
      if (l.value == LabelValue::Present && l.region) ++report.bounding_boxes;
  }
  for (const auto& [key, split] : patients) {
    SplitCounts& c = split == Split::Train ? report.train : split == Split::Validation ? report.validation : report.test;
    ++c.patients;
  }
  report.images = rows.size();
  report.patients = patients.size();

  // ---- The folder.
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) return io_error("cannot create " + out.string() + ": " + ec.message());
  for (const auto& tmp : existing->tmp) fs::remove(out / tmp, ec);
  // The manifest first: the earlier export's files and every file this one may write, so that
  // whatever an interrupted run leaves behind is known to be ours the next time.
  std::set<std::string> planned = existing->listed;
  if (options.images) {
    planned.insert(std::string(kImagesDir) + "/" + kScalingFile);
    for (const ImageRow& row : rows) {
      planned.insert(std::string(kImagesDir) + "/" + row.stem + ".png");
      if (deid && options.format == ExportFormat::Json) planned.insert(std::string(kImagesDir) + "/" + row.stem + ".dcm");
    }
  }
  if (options.format == ExportFormat::Csv) {
    planned.insert(kDataEntryFile);
    planned.insert(kBBoxFile);
  } else {
    planned.insert(kJsonFile);
  }
  if (auto saved = core::write_file_atomically(out / kManifestFile, manifest_text(planned)); !saved)
    return io_error(saved.error().message);
  std::set<std::string> written;
  const auto record = [&](const std::string& relative) {
    report.files.push_back(relative);
    written.insert(relative);
  };

  // ---- Pixels (before the label files, so that these never name an image that is not there).
  const fs::path images_dir = out / kImagesDir;
  if (options.images) {
    fs::create_directories(images_dir, ec);
    if (ec) return io_error("cannot create " + images_dir.string() + ": " + ec.message());
  }
  ExportProgress state;
  state.total = rows.size();
  for (ImageRow& row : rows) {
    if (cancel != nullptr && cancel->load()) {
      report.interrupted = true;
      return report;
    }
    if (options.images) {
      const Instance& in = row.instance;
      fs::path source = in.path;
      if (!fs::is_regular_file(source, ec) && !in.stored_path.empty()) source = in.stored_path;
      auto image = dicom::read_radiograph(source);
      if (!image) {
        row.pixels_note = "cannot read the image: " + image.error().message;
        report.failed.push_back({row.image_index, row.pixels_note});
      } else if (deid && dicom::may_have_burned_in_annotation(image->meta.sop_class_uid, image->meta.burned_in_annotation)) {
        row.pixels_note = "burned-in annotation: the pixels may show the patient's identity";
        report.skipped.push_back({row.image_index, row.pixels_note});
      } else {
        std::tie(row.offset, row.slope) = png_scaling(*image);
        const std::string png = std::string(kImagesDir) + "/" + row.stem + ".png";
        const auto png_saved = write_png_gray16(out / png, image->columns, image->rows, png_pixels(*image, row.offset, row.slope));
        if (!png_saved) {
          row.pixels_note = "cannot write the PNG: " + png_saved.error().message;
          report.failed.push_back({row.image_index, row.pixels_note});
        } else {
          row.png = png;
          record(png);
          ++report.pngs;
        }
        if (png_saved && deid && options.format == ExportFormat::Json) {
          std::optional<Error> mapping_error;
          dicom::DeidentifyPlan plan;
          plan.date_shift_days = row.date_shift;
          plan.pseudonym = [&](const std::string& kind, const std::string& original) -> std::string {
            Result<std::string> p = Error{ErrorKind::Invalid, "unknown pseudonym kind " + kind};
            if (kind == "uid") p = pseudonyms.uid(original);
            else if (kind == "patient_id") p = Result<std::string>(row.patient_id);
            else if (kind == "patient_name") p = pseudonyms.get("patient_name", row.key);
            else if (kind == "accession") p = pseudonyms.accession(original);
            if (p) return *p;
            if (!mapping_error) mapping_error = p.error();
            return "\\invalid";  // refused by write_deidentified
          };
          const std::string dcm = std::string(kImagesDir) + "/" + row.stem + ".dcm";
          auto done = dicom::write_deidentified(source, out / dcm, plan);
          if (mapping_error) {
            if (done) fs::remove(out / dcm, ec);
            return *mapping_error;
          }
          if (!done) {
            row.pixels_note = "cannot write the de-identified DICOM: " + done.error().message;
            report.failed.push_back({row.image_index, row.pixels_note});
          } else {
            row.dicom = dcm;
            record(dcm);
            ++report.dicoms;
          }
        }
      }
    }
    ++state.done;
    if (progress) progress(state);
  }

  // ---- Sidecar and label files.
  const auto write = [&](const std::string& relative, const std::string& content) -> Status {
    if (auto saved = core::write_file_atomically(out / relative, content); !saved) return io_error(saved.error().message);
    record(relative);
    return core::Done{};
  };
  if (options.images) {
    std::string scaling = std::string(kScalingHeader) + kCrlf;
    for (const ImageRow& row : rows) {
      if (row.png.empty()) continue;
      scaling += csv_line({row.image_index, CsvCell::number(format_number(row.offset)), CsvCell::number(format_number(row.slope)),
                           row.instance.photometric});
    }
    if (auto s = write(std::string(kImagesDir) + "/" + kScalingFile, scaling); !s) return s.error();
    (void)core::fsync_folder(images_dir);  // best effort: the files were flushed before their rename
  }

  if (options.format == ExportFormat::Csv) {
    std::string entries = std::string(kDataEntryHeader) + kCrlf;
    std::string boxes = std::string(kBBoxHeader) + kCrlf;
    for (const ImageRow& row : rows) {
      const Instance& in = row.instance;
      const auto age = age_in_years(in.patient_age, in.patient_birth_date, in.study_date);
      const bool spacing = in.pixel_spacing_row && in.pixel_spacing_column;
      entries += csv_line({row.image_index, finding_labels(row, vocabulary), CsvCell::number(std::to_string(row.follow_up)), row.patient_id,
                           CsvCell::number(age ? std::to_string(*age) : std::string()), gender(in.patient_sex), in.view_position,
                           CsvCell::number(std::to_string(in.columns)), CsvCell::number(std::to_string(in.rows)),
                           CsvCell::number(spacing ? format_number(*in.pixel_spacing_column) : std::string()),
                           CsvCell::number(spacing ? format_number(*in.pixel_spacing_row) : std::string()), to_string(row.split)});
      for (const auto& l : row.labels) {
        if (l.value != LabelValue::Present || !l.region) continue;
        const Region box = l.region->bounding_box();
        boxes += csv_line({row.image_index, l.finding, CsvCell::number(format_number(box.x)), CsvCell::number(format_number(box.y)),
                           CsvCell::number(format_number(box.w)), CsvCell::number(format_number(box.h))});
      }
    }
    if (auto s = write(kDataEntryFile, entries); !s) return s.error();
    if (auto s = write(kBBoxFile, boxes); !s) return s.error();
  } else {
    std::string names = "[";
    for (std::size_t i = 0; i < vocabulary.size(); ++i) {
      if (i) names += ",";
      names += json_escape(vocabulary[i]);
    }
    names += "]";
    std::string json = "{\"format\":\"hilum-labels\",\"version\":2,\"labels\":" + json_escape(report.labels_used) + ",\"deidentified\":";
    json += deid ? "true" : "false";
    json += ",\"dates\":";
    json += json_escape(deid ? "shifted by a per-patient number of days" : "as recorded");
    json += ",\"findings\":" + names + ",\"images\":[\n";
    for (std::size_t i = 0; i < rows.size(); ++i) {
      json += image_json(rows[i], deid, vocabulary);
      json += i + 1 < rows.size() ? ",\n" : "\n";
    }
    json += "]}\n";
    if (auto s = write(kJsonFile, json); !s) return s.error();
  }

  // ---- Files of an earlier export (listed in its manifest) that this one did not write again;
  // then the manifest names exactly what is there.
  for (const auto& old : existing->files) {
    if (written.count(old)) continue;
    if (fs::remove(out / old, ec)) report.removed.push_back(old);
    else if (ec) return io_error("cannot remove the stale " + (out / old).string() + ": " + ec.message());
  }
  if (!options.images && fs::is_directory(images_dir, ec) && fs::is_empty(images_dir, ec)) fs::remove(images_dir, ec);
  if (auto done = core::write_file_atomically(out / kManifestFile, manifest_text(written)); !done)
    return io_error(done.error().message);
  (void)core::fsync_folder(out);
  return report;
}

}  // namespace hilum::app
