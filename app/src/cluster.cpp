// Training on a cluster and back: the training-set export and the import of what
// cluster/train.py writes. See cluster.hpp.
#include "hilum/app/cluster.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <set>
#include <system_error>

#include <unistd.h>

#include "finetune_detail.hpp"
#include "hilum/app/classify.hpp"
#include "hilum/app/hash.hpp"
#include "hilum/app/labels_csv.hpp"
#include "hilum/app/png.hpp"
#include "hilum/core/atomic_file.hpp"
#include "hilum/core/numbers.hpp"
#include "hilum/dicom/deidentify.hpp"
#include "hilum/dicom/reader.hpp"
#include "text.hpp"
#include "trainer.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace hilum::app {
namespace {

constexpr const char* kFormat = "hilum-training-set";
constexpr const char* kReportFormat = "hilum-cluster-training-report";
constexpr const char* kManifest = "manifest.json";
constexpr const char* kLabels = "labels.csv";
constexpr const char* kReport = "training_report.json";
constexpr std::uintmax_t kMaxJsonBytes = 64u << 20;   // a report of 100,000 validation images fits
constexpr std::uintmax_t kMaxLabelBytes = 256u << 20;
// Our engine (F32) must reproduce PyTorch's probabilities on the validation images this closely,
// else the folder is not the model that was trained (another architecture, another preprocessing).
constexpr double kAgreementLimit = 1e-3;

Error invalid(std::string message) { return Error{ErrorKind::Invalid, std::move(message)}; }

// One row of labels.csv: an image, its patient and split, one cell per output ("1", "0", "").
struct Row {
  std::string image;
  std::string patient;
  std::string split;
  std::vector<std::string> cells;
};

std::string cell_of(const detail::Sample& s, std::size_t j) {
  if (s.mask[j] <= 0.0f) return {};
  return s.target[j] > 0.5f ? "1" : "0";
}

// The label snapshot (images, patients and their labels, no split) and the split (patient, split),
// each as canonical text whose SHA-256 the manifest carries. Rows sorted by image.
std::string snapshot_text(const std::vector<std::string>& outputs, const std::vector<Row>& rows) {
  std::vector<CsvCell> header{"image", "patient"};
  for (const auto& o : outputs) header.emplace_back(o);
  std::string text = csv_line(header);
  for (const auto& r : rows) {
    std::vector<CsvCell> cells{r.image, r.patient};
    for (const auto& c : r.cells) cells.emplace_back(c);
    text += csv_line(cells);
  }
  return text;
}

std::string split_text(const std::vector<Row>& rows) {
  std::set<std::pair<std::string, std::string>> patients;
  for (const auto& r : rows) patients.emplace(r.patient, r.split);
  std::string text;
  for (const auto& [patient, split] : patients) text += csv_line({patient, split});
  return text;
}

std::string sha_of(const std::string& text) { return sha256_hex(text.data(), text.size()); }

Result<std::string> read_bounded(const fs::path& file, std::uintmax_t limit) {
  std::error_code ec;
  const auto size = fs::file_size(file, ec);
  if (ec) return invalid(file.filename().string() + " is missing from " + file.parent_path().string());
  if (size > limit) return invalid(file.string() + " is larger than " + std::to_string(limit >> 20) + " MiB");
  std::ifstream in(file, std::ios::binary);
  std::string text(static_cast<std::size_t>(size), '\0');
  if (!in.read(text.data(), static_cast<std::streamsize>(size))) return Error{ErrorKind::Io, "cannot read " + file.string()};
  return text;
}

Result<json> read_json_object(const fs::path& file) {
  auto text = read_bounded(file, kMaxJsonBytes);
  if (!text) return text.error();
  json j = json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return invalid(file.string() + " is not a JSON object");
  return j;
}

std::string string_field(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

Result<std::vector<Row>> read_labels(const fs::path& file, const std::vector<std::string>& outputs) {
  auto text = read_bounded(file, kMaxLabelBytes);
  if (!text) return text.error();
  auto parsed = parse_csv(*text);
  if (!parsed) return parsed.error();
  if (parsed->empty() || parsed->front().size() != outputs.size() + 3) {
    return invalid(file.string() + ": its columns are not the manifest's outputs");
  }
  std::vector<Row> rows;
  for (std::size_t i = 1; i < parsed->size(); ++i) {
    const auto& f = (*parsed)[i];
    if (f.size() == 1 && f[0].empty()) continue;
    if (f.size() != outputs.size() + 3) return invalid(file.string() + ": a row with " + std::to_string(f.size()) + " fields");
    rows.push_back(Row{f[0], f[1], f[2], {f.begin() + 3, f.end()}});
  }
  return rows;
}

// The catalog's current samples as rows (pseudonymous image and patient, the gate's split).
Result<std::vector<Row>> rows_of(Catalog& catalog, detail::TrainingData& data,
                                 std::map<std::string, detail::Sample*>* by_image = nullptr) {
  InstanceFilter filter;
  filter.with_thumbnails = false;
  auto instances = catalog.list_instances(filter);
  if (!instances) return instances.error();
  std::map<std::int64_t, std::string> uid_of;
  for (const auto& in : *instances) uid_of.emplace(in.id, in.sop_instance_uid);
  std::vector<Row> rows;
  auto done = catalog.transaction([&]() -> Status {
    for (auto& s : data.samples) {
      auto image = catalog.pseudonym("uid", uid_of[s.instance_id]);
      if (!image) return image.error();
      auto patient = catalog.pseudonym("patient_id", s.patient);
      if (!patient) return patient.error();
      Row r{*image, *patient, s.validation ? "validation" : "train", {}};
      for (std::size_t j = 0; j < data.outputs.size(); ++j) r.cells.push_back(cell_of(s, j));
      if (by_image != nullptr) (*by_image)[r.image] = &s;
      rows.push_back(std::move(r));
    }
    return core::Done{};
  });
  if (!done) return done.error();
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.image < b.image; });
  return rows;
}

std::string now_utc() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Every regular file under `dir`, relative, sorted.
std::vector<std::string> files_under(const fs::path& dir) {
  std::vector<std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) files.push_back(fs::relative(e.path(), dir).generic_string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

Result<std::string> catalog_identity(Catalog& catalog) {
  auto secret = catalog.secret();
  if (!secret) return secret.error();
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(keyed_hash(*secret, "catalog-identity", "")));
  return std::string(hex);
}

bool is_cluster_model_folder(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_regular_file(dir / kReport, ec)) return false;  // (other tools write a training_report.json too: its format says)
  auto report = read_json_object(dir / kReport);
  return report && string_field(*report, "format") == kReportFormat;
}

std::string trained_on(const ModelRecord& model) {
  auto hp = json::parse(model.hyperparameters, nullptr, false);
  if (hp.is_object()) {
    const std::string where = string_field(hp, "trained_on");
    if (!where.empty()) return where;
  }
  if (model.strategy == "builtin") return "built in";
  if (model.strategy == "imported") return "imported";
  return "this workstation";
}

// ---- Out ---------------------------------------------------------------------------------------

Result<DatasetExportReport> export_dataset(Catalog& catalog, const DatasetExportOptions& options, const ExportProgressFn& progress,
                                           const std::atomic<bool>* cancel) {
  if (options.out_dir.empty()) return invalid("no output folder");
  std::error_code ec;
  const fs::path out = fs::absolute(options.out_dir, ec).lexically_normal();
  if (fs::exists(out, ec) && !(fs::is_directory(out, ec) && fs::is_empty(out, ec))) {
    return invalid(out.string() + " already exists and is not an empty folder: a training set is written to a new folder");
  }
  auto base = load_model(catalog, options.base_model);
  if (!base) return base.error();
  if (!base->model.config().multi_label()) return invalid("the starting model " + base->record.version + " is single-label");
  auto data = detail::training_data(catalog, base->model.config().labels, 0, true);
  if (!data) return data.error();
  if (data->samples.empty()) return invalid("no labelled images in the catalog: label some first");
  auto identity = catalog_identity(catalog);
  if (!identity) return identity.error();
  auto secret = catalog.secret();
  if (!secret) return secret.error();
  std::map<std::string, detail::Sample*> by_image;
  auto rows = rows_of(catalog, *data, &by_image);
  if (!rows) return rows.error();

  DatasetExportReport report;
  report.out_dir = out;
  report.catalog_id = *identity;
  report.base_model = base->record.version;
  report.outputs = data->outputs;

  const fs::path tmp = out.parent_path() / ("." + out.filename().string() + ".tmp-" + std::to_string(::getpid()));
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp / "images", ec);
  if (ec) return Error{ErrorKind::Io, "cannot create " + tmp.string() + ": " + ec.message()};
  const auto fail = [&](Error e) {
    std::error_code ignored;
    fs::remove_all(tmp, ignored);
    return e;
  };

  // Images (rows whose pixels cannot go out are dropped from the set).
  std::vector<Row> kept;
  ExportProgress state;
  state.total = rows->size();
  for (const Row& row : *rows) {
    if (cancel != nullptr && cancel->load()) return fail(Error{ErrorKind::Interrupted, "cancelled; nothing was written"});
    const detail::Sample& s = *by_image.at(row.image);
    auto image = dicom::read_radiograph(s.path);
    ++state.done;
    if (progress) progress(state);
    if (!image) {
      report.skipped.push_back({row.image, "cannot read the image: " + image.error().message});
      continue;
    }
    if (dicom::may_have_burned_in_annotation(image->meta.sop_class_uid, image->meta.burned_in_annotation)) {
      report.skipped.push_back({row.image, "burned-in annotation: the pixels may show the patient's identity"});
      continue;
    }
    auto shown = display_image(*image);
    if (!shown) {
      report.skipped.push_back({row.image, shown.error().message});
      continue;
    }
    std::vector<std::uint16_t> pixels(shown->grey.size());
    for (std::size_t i = 0; i < pixels.size(); ++i) {
      pixels[i] = static_cast<std::uint16_t>(std::lround(std::clamp(shown->grey[i], 0.0f, 1.0f) * 65535.0f));
    }
    if (auto written = write_png_gray16(tmp / "images" / (row.image + ".png"), shown->width, shown->height, pixels); !written)
      return fail(written.error());
    if (options.dicom) {
      std::optional<Error> mapping_error;
      dicom::DeidentifyPlan plan;
      plan.date_shift_days = patient_date_shift(*secret, s.patient);
      plan.pseudonym = [&](const std::string& kind, const std::string& original) -> std::string {
        Result<std::string> p = invalid("unknown pseudonym kind " + kind);
        if (kind == "uid") p = catalog.pseudonym("uid", original);
        else if (kind == "patient_id") p = Result<std::string>(row.patient);
        else if (kind == "patient_name") p = catalog.pseudonym("patient_name", s.patient);
        else if (kind == "accession") p = original.empty() ? Result<std::string>(std::string()) : catalog.pseudonym("accession", original);
        if (p) return *p;
        if (!mapping_error) mapping_error = p.error();
        return "\\invalid";
      };
      auto done = dicom::write_deidentified(s.path, tmp / "images" / (row.image + ".dcm"), plan);
      if (mapping_error) return fail(*mapping_error);
      if (!done) return fail(Error{ErrorKind::Io, row.image + ": cannot write the de-identified DICOM: " + done.error().message});
      ++report.dicoms;
    }
    kept.push_back(row);
  }
  if (kept.empty()) return fail(invalid("no labelled image could be exported"));

  // Labels, the starting model, then the manifest naming every file.
  std::vector<CsvCell> header{"image", "patient", "split"};
  for (const auto& o : data->outputs) header.emplace_back(o);
  std::string labels = csv_line(header);
  std::set<std::string> train_patients, validation_patients;
  for (const Row& r : kept) {
    std::vector<CsvCell> cells{r.image, r.patient, r.split};
    for (const auto& c : r.cells) cells.emplace_back(c);
    labels += csv_line(cells);
    const bool validation = r.split == "validation";
    (validation ? validation_patients : train_patients).insert(r.patient);
    ++(validation ? report.validation : report.train).images;
  }
  report.train.patients = train_patients.size();
  report.validation.patients = validation_patients.size();
  if (auto e = core::write_file_atomically(tmp / kLabels, labels); !e) return fail(Error{ErrorKind::Io, e.error().message});
  if (auto saved = base->model.save(tmp / "model", inference::DType::F32); !saved) return fail(detail::from_inference(saved.error()));

  // The snapshot is of the catalog's labels (images left out included), so that an import can tell
  // a catalog that changed from one that did not.
  report.snapshot_sha256 = sha_of(snapshot_text(data->outputs, *rows));
  report.split_sha256 = sha_of(split_text(*rows));
  json left_out = json::array();
  for (const auto& s : report.skipped) left_out.push_back({{"image", s.image}, {"reason", s.reason}});
  json files = json::array();
  for (const auto& f : files_under(tmp)) {
    auto sha = sha256_file(tmp / f);
    if (!sha) return fail(sha.error());
    files.push_back({{"path", f}, {"sha256", sha.value()}, {"bytes", fs::file_size(tmp / f, ec)}});
    report.files.push_back(f);
  }
  json manifest = {{"format", kFormat},
                   {"version", 1},
                   {"created_at", now_utc()},
                   {"catalog_id", *identity},
                   {"snapshot_sha256", report.snapshot_sha256},
                   {"split_sha256", report.split_sha256},
                   {"outputs", data->outputs},
                   {"label_values", {{"1", "present"}, {"0", "absent"}, {"", "not assessed"}}},
                   {"labels", kLabels},
                   {"images", "images/<image>.png: 16-bit grey display image, grey = value / 65535 (1 = white)"},
                   {"split", {{"method", "fine-tune gate: 20% of patients by HMAC of the catalog secret"},
                              {"train", {{"patients", report.train.patients}, {"images", report.train.images}}},
                              {"validation", {{"patients", report.validation.patients}, {"images", report.validation.images}}}}},
                   {"base_model", {{"version", base->record.version}, {"folder", "model"}}},
                   {"left_out", left_out},
                   {"files", files}};
  const std::string manifest_text = dump_json(manifest, 2) + "\n";
  if (auto e = core::write_file_atomically(tmp / kManifest, manifest_text); !e) return fail(Error{ErrorKind::Io, e.error().message});
  report.manifest_sha256 = sha_of(manifest_text);
  report.files.emplace_back(kManifest);

  // Into place: an empty folder given by the user is replaced by the complete one.
  if (fs::exists(out, ec)) fs::remove(out, ec);
  fs::rename(tmp, out, ec);
  if (ec) return fail(Error{ErrorKind::Io, "cannot rename " + tmp.string() + " to " + out.string() + ": " + ec.message()});
  (void)core::fsync_folder(out.parent_path());
  return report;
}

// ---- Back --------------------------------------------------------------------------------------

Result<ClusterImportResult> import_cluster_model(Catalog& catalog, const fs::path& dir, const ClusterImportOptions& options,
                                                 const FinetuneCallback& progress, const std::atomic<bool>* cancel) {
  const std::string refused = "refused " + dir.string() + ": ";
  auto report = read_json_object(dir / kReport);
  if (!report) return report.error();
  if (string_field(*report, "format") != kReportFormat) return invalid(refused + std::string(kReport) + " is not a Hilum cluster training report");

  // Every file as the report names it.
  const auto files = report->find("files");
  if (files == report->end() || !files->is_object()) return invalid(refused + "the training report lists no file checksums");
  for (const char* name : {"config.json", "model.safetensors", "preprocessor_config.json", kManifest, kLabels}) {
    const std::string expected = string_field(*files, name);
    if (expected.empty()) return invalid(refused + "the training report gives no checksum for " + name);
    std::error_code ec;
    if (!fs::is_regular_file(dir / name, ec)) return invalid(refused + name + " is missing");
    auto hashed = sha256_file(dir / name);
    if (!hashed) return invalid(refused + hashed.error().message);
    const std::string& actual = hashed.value();
    if (actual != expected) return invalid(refused + name + " was altered: its SHA-256 is " + actual + ", the training report says " + expected);
  }
  const std::string manifest_sha = string_field(*files, kManifest);
  if (string_field(*report, "manifest_sha256") != manifest_sha) {
    return invalid(refused + "the training report names manifest " + quoted_excerpt(string_field(*report, "manifest_sha256")) +
                   ", not the manifest.json beside it");
  }
  auto manifest = read_json_object(dir / kManifest);
  if (!manifest) return manifest.error();
  if (string_field(*manifest, "format") != kFormat) return invalid(refused + "manifest.json is not a Hilum training-set manifest");
  // labels.csv as the export wrote it.
  std::string labels_sha;
  if (auto mf = manifest->find("files"); mf != manifest->end() && mf->is_array()) {
    for (const auto& f : *mf) {
      if (f.is_object() && string_field(f, "path") == kLabels) labels_sha = string_field(f, "sha256");
    }
  }
  if (labels_sha != string_field(*files, kLabels)) return invalid(refused + "labels.csv is not the one the export's manifest names");

  auto identity = catalog_identity(catalog);
  if (!identity) return identity.error();
  const std::string exported_from = string_field(*manifest, "catalog_id");
  if (exported_from != *identity) {
    return invalid(refused + "its training set was exported from another catalog (" + quoted_excerpt(exported_from) + "; this catalog is " +
                   *identity + ")");
  }

  // The model, and the catalog's samples for its outputs.
  auto model = inference::ViTModel::load(dir);
  if (!model) return detail::from_inference(model.error());
  const auto& labels = model->config().labels;
  std::vector<std::string> outputs;
  if (auto o = manifest->find("outputs"); o != manifest->end() && o->is_array()) {
    for (const auto& v : *o) outputs.push_back(v.is_string() ? v.get<std::string>() : std::string());
  }
  if (outputs != labels) return invalid(refused + "the model's outputs are not the training set's");
  if (!model->weights().has_classifier || !model->config().multi_label()) return invalid(refused + "not a multi-label classifier");
  auto exported = read_labels(dir / kLabels, outputs);
  if (!exported) return exported.error();
  auto data = detail::training_data(catalog, labels, 0, false);
  if (!data) return data.error();
  std::map<std::string, detail::Sample*> by_image;
  auto now = rows_of(catalog, *data, &by_image);
  if (!now) return now.error();

  // The gate's validation patients now, by pseudonym (every catalogued patient).
  auto secret = catalog.secret();
  if (!secret) return secret.error();
  InstanceFilter everything;
  everything.with_thumbnails = false;
  auto instances = catalog.list_instances(everything);
  if (!instances) return instances.error();
  std::set<std::string> validation_patients;
  auto mapped = catalog.transaction([&]() -> Status {
    std::set<std::string> seen;
    for (const auto& in : *instances) {
      const std::string key = patient_key(in.patient_id, in.patient_name, in.study_instance_uid);
      if (!seen.insert(key).second || !detail::is_validation_patient(*secret, key)) continue;
      auto p = catalog.pseudonym("patient_id", key);
      if (!p) return p.error();
      validation_patients.insert(*p);
    }
    return core::Done{};
  });
  if (!mapped) return mapped.error();

  // Trained only on training patients.
  std::map<std::string, const Row*> exported_by_image;
  for (const auto& r : *exported) exported_by_image[r.image] = &r;
  const auto trained = report->find("trained_images");
  if (trained == report->end() || !trained->is_array()) return invalid(refused + "the training report does not list the images it trained on");
  int on_validation = 0;
  std::string example;
  for (const auto& t : *trained) {
    const std::string image = t.is_string() ? t.get<std::string>() : std::string();
    auto it = exported_by_image.find(image);
    if (it == exported_by_image.end()) return invalid(refused + "it trained on " + quoted_excerpt(image) + ", an image the training set does not have");
    if (it->second->split != "train" || validation_patients.count(it->second->patient) > 0) {
      if (on_validation++ == 0) example = image;
    }
  }
  if (on_validation > 0) {
    return invalid(refused + "it was trained on " + std::to_string(on_validation) + " image(s) of patients in the gate's validation split (" +
                   example + (on_validation > 1 ? ", ..." : "") + "): its validation would not be honest");
  }

  // What changed since the export.
  ClusterImportResult result;
  result.manifest_sha256 = manifest_sha;
  if (sha_of(snapshot_text(outputs, *now)) != string_field(*manifest, "snapshot_sha256") ||
      sha_of(split_text(*now)) != string_field(*manifest, "split_sha256")) {
    std::map<std::string, const Row*> now_by_image;
    for (const auto& r : *now) now_by_image[r.image] = &r;
    std::set<std::string> left_out;  // labelled at the export, pixels not exported
    if (auto l = manifest->find("left_out"); l != manifest->end() && l->is_array()) {
      for (const auto& e : *l) {
        if (e.is_object()) left_out.insert(string_field(e, "image"));
      }
    }
    int added = 0, removed = 0, relabelled = 0, resplit = 0;
    for (const auto& [image, row] : now_by_image) {
      auto it = exported_by_image.find(image);
      if (it == exported_by_image.end()) added += left_out.count(image) == 0 ? 1 : 0;
      else if (it->second->cells != row->cells) ++relabelled;
      if (it != exported_by_image.end() && it->second->split != row->split) ++resplit;
    }
    for (const auto& [image, row] : exported_by_image) removed += now_by_image.count(image) == 0 ? 1 : 0;
    if (added > 0) result.changes.push_back(std::to_string(added) + " labelled image(s) added since the export");
    if (removed > 0) result.changes.push_back(std::to_string(removed) + " exported image(s) no longer labelled");
    if (relabelled > 0) result.changes.push_back(std::to_string(relabelled) + " image(s) relabelled since the export");
    if (resplit > 0) result.changes.push_back(std::to_string(resplit) + " image(s) whose patient changed split");
    if (result.changes.empty()) result.changes.push_back("the label snapshot differs from the export's");
  }

  // Our engine against PyTorch on the validation images the report gives probabilities for.
  std::vector<std::string> report_labels;
  if (auto l = report->find("labels"); l != report->end() && l->is_array()) {
    for (const auto& v : *l) report_labels.push_back(v.is_string() ? v.get<std::string>() : std::string());
  }
  if (report_labels != labels) return invalid(refused + "the training report's labels are not the model's");
  std::vector<std::string> problems;
  if (auto vp = report->find("validation_probabilities"); vp != report->end() && vp->is_object()) {
    std::vector<detail::Sample*> compare;
    std::map<const detail::Sample*, std::string> image_of;
    for (const auto& [image, sample] : by_image) {
      auto it = vp->find(image);
      if (!sample->validation || it == vp->end() || !it->is_array() || it->size() != labels.size()) continue;
      compare.push_back(sample);
      image_of[sample] = image;
    }
    auto loaded = detail::load_images(compare, model->config(), [](const fs::path& f) { return display_image(f); }, cancel, problems);  // drops unreadable ones
    if (!loaded) return loaded.error();
    const std::vector<const detail::Sample*> ordered(compare.begin(), compare.end());
    inference::ViTModel f32 = *model;
    f32.set_precision(inference::Precision::F32);
    auto out = detail::forward_samples(f32, ordered, cancel);
    if (!out) return out.error();
    double worst = 0.0;
    for (std::size_t i = 0; i < ordered.size(); ++i) {
      for (std::size_t j = 0; j < labels.size(); ++j) {
        const json& v = vp->at(image_of.at(ordered[i]))[j];
        const double p = v.is_number() ? v.get<double>() : std::nan("");
        const double d = std::abs(p - out->probabilities(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)));
        worst = std::isfinite(d) ? std::max(worst, d) : 1.0;
      }
    }
    result.compared_images = static_cast<int>(ordered.size());
    result.max_probability_difference = worst;
    if (worst > kAgreementLimit) {
      return invalid(refused + "our engine does not reproduce PyTorch's probabilities on the validation images (largest difference " +
                     core::format_number(worst, 3) + "): the folder is not the model that was trained");
    }
  }

  // The starting model named by the manifest (else the active one) is the parent.
  std::string base_version;
  if (auto b = manifest->find("base_model"); b != manifest->end() && b->is_object()) base_version = string_field(*b, "version");
  auto known = base_version.empty() ? Result<std::optional<ModelRecord>>(std::nullopt) : catalog.find_model(base_version);
  if (!known) return known.error();
  auto base = load_model(catalog, known->has_value() ? base_version : std::string());
  if (!base) return base.error();

  detail::Candidate candidate;
  candidate.config = model->config();
  candidate.weights = model->weights();
  candidate.strategy = "cluster";
  candidate.backbone_trained = true;
  candidate.run_name = "cluster";
  json hp = {{"trained_on", "cluster (manifest sha256:" + manifest_sha.substr(0, 16) + ")"}, {"manifest_sha256", manifest_sha}};
  for (const char* key : {"epochs", "learning_rate", "batch_size", "world_size", "backend", "device", "precision", "torch_version", "seed"}) {
    if (auto it = report->find(key); it != report->end() && (it->is_primitive())) hp[key] = *it;
  }
  if (auto h = report->find("history"); h != report->end() && h->is_array()) {
    for (const auto& e : *h) {
      if (!e.is_object()) continue;
      EpochRecord r;
      if (auto ep = e.find("epoch"); ep != e.end() && ep->is_number_integer()) r.epoch = ep->get<int>();
      if (auto l = e.find("train_loss"); l != e.end() && l->is_number()) r.train_loss = l->get<double>();
      candidate.history.push_back(r);
    }
  }
  candidate.hyperparameters = hp;
  candidate.extra_metrics = {{"cluster",
                              {{"manifest_sha256", manifest_sha},
                               {"changes_since_export", result.changes},
                               {"pytorch_agreement", {{"images", result.compared_images}, {"max_abs_difference", result.max_probability_difference}}}}}};
  FinetuneOptions fo;
  fo.gate_tolerance = options.gate_tolerance;
  fo.allow_promotion = options.allow_promotion;
  fo.author = options.author;
  auto registered = detail::register_candidate(catalog, *base, candidate, *data, fo, problems, progress, cancel);
  if (!registered) return registered.error();
  result.result = std::move(registered.value());
  return result;
}

}  // namespace hilum::app
