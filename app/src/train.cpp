// Training from an image folder (the built-in model's recipe).
#include "hilum/app/train.hpp"

#include <jpeglib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <csetjmp>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <system_error>
#include <thread>

#include "hilum/app/classify.hpp"
#include "hilum/app/hash.hpp"
#include "hilum/app/labels_csv.hpp"
#include "hilum/app/png.hpp"
#include "hilum/core/atomic_file.hpp"
#include "hilum/core/numbers.hpp"
#include "hilum/dicom/colour.hpp"
#include "hilum/inference/model_extras.hpp"
#include "hilum/training/calibrate.hpp"
#include "hilum/training/init.hpp"
#include "hilum/training/metrics.hpp"
#include "trainer.hpp"
#include "text.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace hilum::app {

namespace {
// PatientSplit's slices are whole hundredths of a percent of the keyed hash, so that a fold's
// bounds are exact integers and fold 0 is the split of every model before folds.
constexpr std::uint64_t kSplitBuckets = 10000;
std::uint64_t slice_width(double fraction) {
  return static_cast<std::uint64_t>(std::llround(std::clamp(fraction, 0.0, 1.0) * static_cast<double>(kSplitBuckets)));
}
}  // namespace

bool PatientSplit::holds_out(const std::string& patient) const {
  if (fold < 0 || fold >= folds()) return false;
  const std::uint64_t width = slice_width(fraction);
  const std::uint64_t bucket = keyed_hash("train-split-" + std::to_string(seed), "patient", patient) % kSplitBuckets;
  const std::uint64_t low = static_cast<std::uint64_t>(fold) * width;
  return bucket >= low && bucket < low + width;
}

int PatientSplit::folds() const {
  const std::uint64_t width = slice_width(fraction);
  return width == 0 ? 0 : static_cast<int>(kSplitBuckets / width);
}

namespace {

bool is_negative_class(const std::string& name) {
  const std::string l = lower(name);
  return l == "normal" || l == "no finding" || l == "no_finding" || l == "negative";
}

std::string finding_name(const std::string& folder) {
  std::string out = lower(folder);
  bool start = true;
  for (char& c : out) {
    if (start) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    start = c == ' ' || c == '_';
    if (c == '_') c = ' ';
  }
  return out;
}

struct JpegError {
  jpeg_error_mgr base;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void on_jpeg_error(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->message);
  std::longjmp(e->jump, 1);
}

Result<DisplayImage> read_jpeg(const fs::path& file) {
  std::FILE* f = std::fopen(file.c_str(), "rb");
  if (f == nullptr) return Error{ErrorKind::Io, "cannot open " + file.string()};
  jpeg_decompress_struct cinfo{};
  JpegError err{};
  cinfo.err = jpeg_std_error(&err.base);
  err.base.error_exit = on_jpeg_error;
  // Everything libjpeg's longjmp may cross is constructed before setjmp (no destructor skipped).
  DisplayImage out;
  std::vector<JSAMPLE> row;
  dicom::ColourPlanes planes;  // a colour JPEG's RGB of each pixel, for its share in colour
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    std::fclose(f);
    return Error{ErrorKind::Invalid, file.string() + ": " + err.message};
  }
  jpeg_create_decompress(&cinfo);
  jpeg_stdio_src(&cinfo, f);
  jpeg_read_header(&cinfo, TRUE);
  // A colour JPEG stored as Y, Cb, Cr (JFIF, nearly all) is decoded to them: its grey is Y, exactly
  // what libjpeg's greyscale output gives (the values training has always seen), and Cb, Cr say
  // which pixels are in colour. One stored as R, G, B (Adobe) is decoded to them, its grey the
  // same weighted sum (libjpeg converts neither RGB to Y, Cb, Cr nor back on output).
  const bool ycc = cinfo.num_components == 3 && cinfo.jpeg_color_space == JCS_YCbCr;
  const bool rgb = cinfo.num_components == 3 && cinfo.jpeg_color_space == JCS_RGB;
  cinfo.out_color_space = ycc ? JCS_YCbCr : rgb ? JCS_RGB : JCS_GRAYSCALE;
  jpeg_start_decompress(&cinfo);
  if (cinfo.output_width == 0 || cinfo.output_height == 0 || cinfo.output_width > 16384 || cinfo.output_height > 16384) {
    jpeg_destroy_decompress(&cinfo);
    std::fclose(f);
    return Error{ErrorKind::Invalid, file.string() + ": unreasonable JPEG size"};
  }
  out.width = static_cast<int>(cinfo.output_width);
  out.height = static_cast<int>(cinfo.output_height);
  out.grey.resize(static_cast<std::size_t>(out.width) * static_cast<std::size_t>(out.height));
  const std::size_t components = static_cast<std::size_t>(cinfo.output_components);
  row.resize(cinfo.output_width * components);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW rows[1] = {row.data()};
    const auto y = cinfo.output_scanline;
    jpeg_read_scanlines(&cinfo, rows, 1);
    for (JDIMENSION x = 0; x < cinfo.output_width; ++x) {
      const JSAMPLE* p = row.data() + x * components;
      out.grey[static_cast<std::size_t>(y) * cinfo.output_width + x] = static_cast<float>(p[0]) / 255.0f;
      if (components == 3) {
        std::int32_t r = p[0], g = p[1], b = p[2];
        if (ycc) dicom::rgb_of_ybr(p[0], p[1], p[2], false, 255, r, g, b);
        planes.red.push_back(r);
        planes.green.push_back(g);
        planes.blue.push_back(b);
      }
    }
  }
  if (components == 3) {
    const dicom::GreyOfColour grey = dicom::grey_of(planes, 255);
    out.coloured_share = grey.coloured_share;
    if (rgb) {
      for (std::size_t i = 0; i < out.grey.size(); ++i) out.grey[i] = static_cast<float>(grey.grey[i]) / 255.0f;
    }
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  std::fclose(f);
  return out;
}

// Samples in a seeded order (a subset for small runs), each patient in the validation split or
// not by a keyed hash of the seed and the patient: stable across runs, never both sides.
std::vector<detail::Sample> split_samples(const FolderDataset& data, const PatientSplit& split, int max_images) {
  const std::uint64_t seed = split.seed;
  std::vector<std::size_t> order(data.files.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::mt19937_64 pick(seed);
  std::shuffle(order.begin(), order.end(), pick);
  if (max_images > 0 && static_cast<std::size_t>(max_images) < order.size()) order.resize(static_cast<std::size_t>(max_images));
  std::vector<detail::Sample> kept;
  kept.reserve(order.size());
  for (std::size_t i : order) {
    detail::Sample s;
    s.path = data.files[i].string();
    s.patient = data.patients[i];
    s.validation = split.holds_out(s.patient);
    s.target = data.targets[i];
    if (i < data.ages.size() && std::isfinite(data.ages[i])) s.age_years = data.ages[i];
    if (i < data.masks.size()) s.mask = data.masks[i];
    else s.mask.assign(s.target.size(), 1.0f);
    kept.push_back(std::move(s));
  }
  return kept;
}

}  // namespace

std::string patient_from_file_name(const std::string& stem) {
  if (const auto u = stem.find('_'); u != std::string::npos && u > 0) return stem.substr(0, u);
  if (const auto d = stem.rfind('-'); d != std::string::npos && d > 0) return stem.substr(0, d);
  return stem;
}

Result<DisplayImage> read_grey_image(const fs::path& file) {
  const std::string ext = lower(file.extension().string());
  if (ext == ".jpg" || ext == ".jpeg") return read_jpeg(file);
  if (ext == ".png") {
    auto read = read_png_gray(file);
    if (!read) return read.error();
    const GrayImage& g = read.value();
    const float scale = 1.0f / static_cast<float>((1 << g.bit_depth) - 1);
    DisplayImage out{g.width, g.height, std::vector<float>(g.pixels.size()), g.coloured_share};
    for (std::size_t i = 0; i < g.pixels.size(); ++i) out.grey[i] = static_cast<float>(g.pixels[i]) * scale;
    return out;
  }
  return display_image(file);
}

namespace {

bool is_image_extension(const std::string& ext) { return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".dcm" || ext.empty(); }

// One image per row of DIR/labels.csv (train.hpp).
Result<FolderDataset> scan_label_table(const fs::path& dir) {
  const fs::path csv = dir / "labels.csv";
  std::ifstream in(csv, std::ios::binary);
  if (!in) return Error{ErrorKind::Io, "cannot read " + csv.string()};
  std::stringstream text;
  text << in.rdbuf();
  auto rows = parse_csv(text.str());
  if (!rows) return rows.error();
  if (rows->empty()) return Error{ErrorKind::Invalid, csv.string() + ": empty"};
  const auto& header = rows->front();
  int image_col = -1, patient_col = -1, age_col = -1;
  std::vector<std::pair<std::size_t, std::string>> finding_cols;
  for (std::size_t c = 0; c < header.size(); ++c) {
    const std::string name = trim(header[c]);
    const std::string l = lower(name);
    if (l == "image" || l == "image index") image_col = static_cast<int>(c);
    else if (l == "patient_id" || l == "patient id") patient_col = static_cast<int>(c);
    else if (l == "age" || l == "patient age") age_col = static_cast<int>(c);
    else if (l == "sex" || l == "view" || l == "patient gender" || l == "view position") continue;
    else if (!name.empty()) finding_cols.emplace_back(c, name);
  }
  if (image_col < 0) return Error{ErrorKind::Invalid, csv.string() + ": no `image` column"};
  if (finding_cols.empty()) return Error{ErrorKind::Invalid, csv.string() + ": no finding columns"};
  FolderDataset data;
  data.class_folders = false;
  for (const auto& [c, name] : finding_cols) data.findings.push_back(name);
  for (std::size_t r = 1; r < rows->size(); ++r) {
    const auto& row = (*rows)[r];
    if (row.size() == 1 && trim(row[0]).empty()) continue;  // blank line
    if (row.size() != header.size()) {
      return Error{ErrorKind::Invalid, csv.string() + ": line " + std::to_string(r + 1) + " has " + std::to_string(row.size()) + " fields, the header " +
                                           std::to_string(header.size())};
    }
    const std::string image = trim(row[static_cast<std::size_t>(image_col)]);
    const fs::path file = dir / fs::path(image).filename();  // names only: never a path out of the folder
    if (image.empty() || fs::path(image).filename() != fs::path(image)) {
      return Error{ErrorKind::Invalid, csv.string() + ": line " + std::to_string(r + 1) + ": `image` must be a file name in the folder"};
    }
    std::vector<float> target(finding_cols.size(), 0.0f), mask(finding_cols.size(), 0.0f);
    for (std::size_t j = 0; j < finding_cols.size(); ++j) {
      const std::string cell = trim(row[finding_cols[j].first]);
      if (cell.empty()) continue;  // not assessed
      const auto value = parse_label_value(cell);
      if (!value) {
        return Error{ErrorKind::Invalid, csv.string() + ": line " + std::to_string(r + 1) + ": " + quoted_excerpt(cell) + " for " +
                                             finding_cols[j].second + " is not 1, 0 or empty"};
      }
      if (*value != LabelValue::Present && *value != LabelValue::Absent) continue;  // uncertain: not assessed either
      target[j] = *value == LabelValue::Present ? 1.0f : 0.0f;
      mask[j] = 1.0f;
    }
    double age = std::numeric_limits<double>::quiet_NaN();
    if (age_col >= 0) {
      const auto years = core::parse_number(trim(row[static_cast<std::size_t>(age_col)]));
      if (years && *years >= 0.0 && *years < 150.0) age = *years;
    }
    const std::string patient = patient_col >= 0 ? trim(row[static_cast<std::size_t>(patient_col)]) : patient_from_file_name(file.stem().string());
    data.files.push_back(file);
    // Keyed by the folder too: patient numbers of two tables never collide.
    data.patients.push_back(dir.filename().string() + "/" + patient);
    data.targets.push_back(std::move(target));
    data.masks.push_back(std::move(mask));
    data.ages.push_back(age);
  }
  if (data.files.empty()) return Error{ErrorKind::Invalid, csv.string() + ": no images"};
  return data;
}

}  // namespace

Result<FolderDataset> scan_image_folder(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return Error{ErrorKind::NotFound, dir.string() + " is not a folder"};
  if (fs::is_regular_file(dir / "labels.csv", ec)) return scan_label_table(dir);
  std::vector<std::pair<std::string, fs::path>> classes;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_directory()) classes.emplace_back(entry.path().filename().string(), entry.path());
  }
  std::sort(classes.begin(), classes.end());
  FolderDataset data;
  for (const auto& [name, path] : classes) {
    if (!is_negative_class(name)) data.findings.push_back(finding_name(name));
  }
  if (data.findings.empty()) return Error{ErrorKind::Invalid, dir.string() + ": no finding folders (one sub-folder per class, e.g. NORMAL and PNEUMONIA)"};
  for (const auto& [name, path] : classes) {
    std::vector<fs::path> files;
    for (const auto& entry : fs::recursive_directory_iterator(path, ec)) {
      if (!entry.is_regular_file()) continue;
      if (is_image_extension(lower(entry.path().extension().string()))) files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    std::vector<float> target(data.findings.size(), 0.0f);
    if (!is_negative_class(name)) {
      target[static_cast<std::size_t>(std::find(data.findings.begin(), data.findings.end(), finding_name(name)) - data.findings.begin())] = 1.0f;
    }
    for (const auto& f : files) {
      data.files.push_back(f);
      data.patients.push_back(patient_from_file_name(f.stem().string()));
      data.targets.push_back(target);
      data.masks.emplace_back(target.size(), 1.0f);
      data.ages.push_back(std::numeric_limits<double>::quiet_NaN());
    }
  }
  if (data.files.empty()) return Error{ErrorKind::Invalid, dir.string() + ": no images"};
  return data;
}

Result<MergedDataset> merge_sources(const std::vector<DataSource>& sources, const std::vector<std::string>& wanted) {
  if (sources.empty()) return Error{ErrorKind::Invalid, "no data folder"};
  std::vector<FolderDataset> sets;
  for (const auto& src : sources) {
    auto d = scan_image_folder(src.dir);
    if (!d) return d.error();
    sets.push_back(std::move(d.value()));
  }
  std::vector<std::string> outputs = wanted;
  if (outputs.empty()) {
    auto add = [&](const std::string& f) {
      if (std::find(outputs.begin(), outputs.end(), f) == outputs.end()) outputs.push_back(f);
    };
    for (const auto& d : sets) {
      for (const auto& f : d.findings) add(f);
    }
  }
  MergedDataset out;
  out.data.findings = outputs;
  out.data.class_folders = sets.size() == 1 && sets.front().class_folders;
  const std::size_t n_out = outputs.size();
  for (std::size_t k = 0; k < sets.size(); ++k) {
    const FolderDataset& d = sets[k];
    std::vector<bool> used(d.findings.size(), false);
    for (std::size_t i = 0; i < d.files.size(); ++i) {
      std::vector<float> target(n_out, 0.0f), mask(n_out, 0.0f);
      bool positive = false;
      for (std::size_t f = 0; f < d.findings.size(); ++f) positive = positive || (d.targets[i][f] > 0.5f && d.findings[f] != "No Finding");
      for (std::size_t j = 0; j < n_out; ++j) {
        const auto at = std::find(d.findings.begin(), d.findings.end(), outputs[j]);
        if (at != d.findings.end()) {
          const auto f = static_cast<std::size_t>(at - d.findings.begin());
          target[j] = d.targets[i][f];
          mask[j] = d.masks[i][f];
          used[f] = true;
        } else if (d.class_folders) {
          // A class folder assesses everything for its negative images, and "No Finding" for all.
          if (outputs[j] == "No Finding") {
            target[j] = positive ? 0.0f : 1.0f;
            mask[j] = 1.0f;
          } else if (!positive) {
            mask[j] = 1.0f;
          }
        } else if (const auto nf = std::find(d.findings.begin(), d.findings.end(), "No Finding");
                   nf != d.findings.end() && d.targets[i][static_cast<std::size_t>(nf - d.findings.begin())] > 0.5f) {
          mask[j] = 1.0f;  // "No Finding" present: every finding absent
        }
      }
      out.data.files.push_back(d.files[i]);
      out.data.patients.push_back(d.patients[i]);
      out.data.targets.push_back(std::move(target));
      out.data.masks.push_back(std::move(mask));
      out.data.ages.push_back(d.ages[i]);
      out.source.push_back(static_cast<int>(k));
      std::string population = sources[k].population;
      if (population.empty()) population = std::isnan(d.ages[i]) ? sources[k].dir.filename().string() : d.ages[i] < 18.0 ? "pediatric" : "adult";
      out.population.push_back(std::move(population));
    }
    if (!wanted.empty()) {
      bool any = false;
      for (bool u : used) any = any || u;
      if (!any && !d.class_folders) return Error{ErrorKind::Invalid, sources[k].dir.string() + " has none of the outputs"};
    }
  }
  return out;
}

namespace {

// The folder's samples at the seed's split, with their populations and repeats.
std::vector<detail::Sample> split_merged(const MergedDataset& merged, const std::vector<DataSource>& sources, const PatientSplit& split,
                                         int max_images) {
  std::vector<detail::Sample> kept = split_samples(merged.data, split, max_images);
  std::map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < merged.data.files.size(); ++i) index[merged.data.files[i].string()] = i;
  for (auto& s : kept) {
    const std::size_t i = index[s.path];
    s.population = merged.population[i];
    s.repeat = std::max(1, sources[static_cast<std::size_t>(merged.source[i])].repeat);
  }
  return kept;
}

}  // namespace

Result<std::set<std::string>> held_out_files(const fs::path& dir, const PatientSplit& split) {
  auto merged = merge_sources({DataSource::folder(dir)}, {});
  if (!merged) {
    // A folder of unlabelled films holds no validation patients; a broken label table is an error.
    std::error_code ec;
    if (fs::is_regular_file(dir / "labels.csv", ec)) return merged.error();
    return std::set<std::string>{};
  }
  std::set<std::string> out;
  for (const auto& s : split_merged(*merged, {DataSource::folder(dir)}, split, 0)) {
    if (s.validation) out.insert(s.path);
  }
  return out;
}

namespace {

std::vector<std::string> populations_of(const std::vector<const detail::Sample*>& samples) {
  std::vector<std::string> out;
  for (const auto* s : samples) {
    if (std::find(out.begin(), out.end(), s->population) == out.end()) out.push_back(s->population);
  }
  return out;
}

}  // namespace

Result<EvaluationReport> evaluate_folder(const inference::ViTModel& model, const fs::path& dir, const PatientSplit& split,
                                         const std::atomic<bool>* cancel, const inference::ModelExtras* extras) {
  const auto& config = model.config();
  // The folder's findings the model has: what it assesses of them is scored.
  auto merged = merge_sources({DataSource::folder(dir)}, config.labels);
  if (!merged) return merged.error();
  std::vector<detail::Sample> samples = split_merged(*merged, {DataSource::folder(dir)}, split, 0);
  std::erase_if(samples, [](const detail::Sample& s) { return !s.validation; });
  std::vector<detail::Sample*> all;
  for (auto& s : samples) all.push_back(&s);
  std::vector<std::string> problems;
  auto loaded = detail::load_images(all, config, read_grey_image, cancel, problems);
  if (!loaded) return loaded.error();
  std::erase_if(samples, [](const detail::Sample& s) { return s.grey.empty(); });
  if (samples.empty()) return Error{ErrorKind::Invalid, dir.string() + ": no validation images"};
  std::vector<const detail::Sample*> validation;
  for (const auto& s : samples) validation.push_back(&s);
  auto out = detail::forward_samples(model, validation, cancel);
  if (!out) return out.error();
  const inference::Matrix p = config.multi_label() && extras != nullptr ? detail::shown_probabilities(*extras, validation, *out)
                              : config.multi_label()                    ? inference::calibrated_probabilities(out->logits, std::nullopt)
                                                                        : out->probabilities;
  return detail::evaluate_probabilities(config.labels, validation, p, config.labels);
}

Result<TrainReport> train_from_folder(const TrainOptions& o, const FinetuneCallback& progress, const std::atomic<bool>* cancel) {
  const auto t0 = std::chrono::steady_clock::now();
  auto merged = merge_sources(o.data, o.outputs);
  if (!merged) return merged.error();
  const FolderDataset& data = merged->data;

  inference::ViTConfig config;
  inference::ViTWeights weights;
  bool new_head = false;
  if (!o.init.empty()) {
    auto model = inference::ViTModel::load(o.init);
    if (!model) return detail::from_inference(model.error());
    config = model->config();
    weights = model->weights();
    if (config.labels != data.findings || !weights.has_classifier) {
      // A backbone (pretrain's output) or a model for other findings: its encoder, and a classifier
      // initialised afresh for the outputs (as training::initial_weights does), except the rows of
      // outputs the model already has, which are kept.
      std::vector<std::string> had = weights.has_classifier ? config.labels : std::vector<std::string>{};
      const inference::Linear old = weights.classifier;
      config.labels = data.findings;
      config.problem_type = "multi_label_classification";
      weights.classifier = training::initial_weights(config, o.seed).classifier;
      weights.has_classifier = true;
      for (std::size_t j = 0; j < data.findings.size(); ++j) {
        const auto at = std::find(had.begin(), had.end(), data.findings[j]);
        if (at == had.end()) {
          new_head = true;
          continue;
        }
        const auto from = static_cast<Eigen::Index>(at - had.begin());
        weights.classifier.w.row(static_cast<Eigen::Index>(j)) = old.w.row(from);
        weights.classifier.b(static_cast<Eigen::Index>(j)) = old.b(from);
      }
    }
  } else {
    auto c = training::architecture(o.arch, o.image_size);
    if (!c) return detail::from_inference(c.error());
    config = *c;
    config.labels = data.findings;
    weights = training::initial_weights(config, o.seed);
  }

  if (o.center_crop > 0.0) {
    if (!(o.center_crop >= 0.5 && o.center_crop <= 1.0)) return Error{ErrorKind::Invalid, "the centre crop is a share of each side in 0.5..1"};
    // The resized size whose centre input-size crop keeps that share (1: no crop).
    config.resize_width = o.center_crop < 1.0 ? static_cast<int>(std::lround(config.input_width / o.center_crop)) : 0;
    config.resize_height = o.center_crop < 1.0 ? static_cast<int>(std::lround(config.input_height / o.center_crop)) : 0;
  }
  if (o.validation_fold < 0 || o.validation_fold >= o.split().folds()) {
    return Error{ErrorKind::Invalid, "validation fold " + std::to_string(o.validation_fold) + " is outside 0.." +
                                         std::to_string(o.split().folds() - 1) + " at this validation fraction"};
  }
  std::vector<detail::Sample> kept = split_merged(*merged, o.data, o.split(), o.max_images);
  FinetuneProgress state;
  state.phase = Phase::Preparing;
  if (progress) progress(state);
  std::vector<std::string> problems;
  {
    std::vector<detail::Sample*> all;
    for (auto& s : kept) all.push_back(&s);
    auto loaded = detail::load_images(all, config, read_grey_image, cancel, problems);
    if (!loaded) return loaded.error();
    std::erase_if(kept, [](const detail::Sample& s) { return s.grey.empty(); });
  }
  std::vector<const detail::Sample*> train, validation;
  std::set<std::string> train_patients, validation_patients;
  std::size_t per_epoch = 0;
  for (const auto& s : kept) {
    (s.validation ? validation : train).push_back(&s);
    (s.validation ? validation_patients : train_patients).insert(s.patient);
    if (!s.validation) per_epoch += static_cast<std::size_t>(s.repeat);
  }
  if (train.empty() || validation.empty()) return Error{ErrorKind::Invalid, "too few images for a training and a validation split"};

  detail::LoopOptions lo;
  lo.epochs = o.epochs;
  lo.batch_size = o.batch_size;
  lo.learning_rate = o.learning_rate;
  lo.min_learning_rate = o.learning_rate * 0.01f;
  lo.weight_decay = o.weight_decay;
  lo.drop_path = o.drop_path;
  lo.layer_decay = o.layer_decay;
  lo.augment = true;
  lo.seed = o.seed;
  lo.precision = o.precision;
  const std::int64_t steps_per_epoch = static_cast<std::int64_t>((per_epoch + static_cast<std::size_t>(lo.batch_size) - 1) / static_cast<std::size_t>(lo.batch_size));
  lo.warmup_steps = std::max<std::int64_t>(1, steps_per_epoch * o.warmup_epochs);
  auto plan = [&](int, std::mt19937_64& rng) {
    std::vector<const detail::Sample*> epoch;
    epoch.reserve(per_epoch);
    for (const auto* s : train) {
      for (int r = 0; r < s->repeat; ++r) epoch.push_back(s);
    }
    std::shuffle(epoch.begin(), epoch.end(), rng);
    return epoch;
  };
  fs::path checkpoints = o.out;
  checkpoints += ".checkpoints";
  auto loop = detail::run_training(config, weights, train, per_epoch, plan, validation, config.labels, lo, checkpoints, state, progress, cancel);
  if (!loop) return loop.error();

  auto model = inference::ViTModel::from_weights(config, weights);
  if (!model) return detail::from_inference(model.error());
  state.phase = Phase::Calibrating;
  if (progress) progress(state);
  auto val_out = detail::forward_samples(*model, validation, cancel);
  if (!val_out) return val_out.error();
  auto train_out = detail::forward_samples(*model, train, cancel);
  if (!train_out) return train_out.error();

  // The domain reference of the training films (and of the reference folders' films), limits from
  // the held-out ones.
  std::vector<detail::Sample> reference;
  json reference_json = json::array();
  for (const auto& dir : o.reference_data) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return Error{ErrorKind::NotFound, "--reference-data " + dir.string() + " is not a folder"};
    const auto files = detail::image_files(dir);
    if (files.empty()) return Error{ErrorKind::Invalid, "--reference-data " + dir.string() + " holds no images"};
    for (const auto& f : files) {
      detail::Sample s;
      s.path = f.string();
      s.validation = keyed_hash("reference-split", "file", f.filename().string()) % 100u < 15u;
      reference.push_back(std::move(s));
    }
    reference_json.push_back({{"folder", dir.lexically_normal().string()}, {"images", files.size()}});
  }
  std::vector<const detail::Sample*> domain_train = train, domain_validation = validation;
  inference::Matrix domain_train_embeddings = train_out->embeddings, domain_validation_embeddings = val_out->embeddings;
  if (!reference.empty()) {
    state.phase = Phase::Calibrating;  // and describing the reference films
    if (progress) progress(state);
    std::vector<detail::Sample*> all;
    for (auto& s : reference) all.push_back(&s);
    auto loaded = detail::load_images(all, config, read_grey_image, cancel, problems);
    if (!loaded) return loaded.error();
    std::erase_if(reference, [](const detail::Sample& s) { return s.grey.empty(); });
    const auto append = [&](std::vector<const detail::Sample*>& to, inference::Matrix& embeddings, bool held_out) -> Status {
      std::vector<const detail::Sample*> part;
      for (const auto& s : reference) {
        if (s.validation == held_out) part.push_back(&s);
      }
      auto out = detail::forward_samples(*model, part, cancel);
      if (!out) return out.error();
      const Eigen::Index before = embeddings.rows();
      embeddings.conservativeResize(before + out->embeddings.rows(), Eigen::NoChange);
      embeddings.bottomRows(out->embeddings.rows()) = out->embeddings;
      to.insert(to.end(), part.begin(), part.end());
      return core::Done{};
    };
    if (auto a = append(domain_train, domain_train_embeddings, false); !a) return a.error();
    if (auto a = append(domain_validation, domain_validation_embeddings, true); !a) return a.error();
  }
  inference::ModelExtras extras;
  extras.domain = detail::fit_domain(config, domain_train, domain_train_embeddings, domain_validation, domain_validation_embeddings);
  extras.domain->modalities = {"CR", "DX"};
  for (const auto& name : populations_of(train)) {
    inference::Population pop;
    pop.name = name;
    double lo_age = std::numeric_limits<double>::infinity(), hi_age = 0.0;
    for (std::size_t i = 0; i < data.files.size(); ++i) {
      if (merged->population[i] != name) continue;
      const DataSource& src = o.data[static_cast<std::size_t>(merged->source[i])];
      const double a = data.ages[i];
      if (!std::isnan(a)) {
        lo_age = std::min(lo_age, a);
        hi_age = std::max(hi_age, a);
      } else if (src.max_age_years > 0.0) {
        lo_age = std::min(lo_age, src.min_age_years);
        hi_age = std::max(hi_age, src.max_age_years);
      }
    }
    pop.min_age_years = std::isfinite(lo_age) ? lo_age : 0.0;
    pop.max_age_years = std::isfinite(lo_age) ? hi_age : 0.0;
    pop.centroid = inference::Vector::Zero(config.hidden_size);
    for (std::size_t i = 0; i < train.size(); ++i) {
      if (train[i]->population != name) continue;
      pop.centroid += train_out->embeddings.row(static_cast<Eigen::Index>(i)).transpose();
      ++pop.images;
    }
    if (pop.images > 0) pop.centroid /= static_cast<float>(pop.images);
    extras.domain->populations.push_back(pop);
  }
  // Calibration on the validation patients: the model's, and each population's own (a probability
  // fitted on children's films does not mean the same on adults'); a reader's image gets the one of
  // the population its age, or else its embedding, points to.
  detail::fit_calibrations(extras, config.labels, validation, val_out->logits,
                           "Platt scaling on the " + std::to_string(validation.size()) + " validation images of " +
                               std::to_string(validation_patients.size()) + " patients held out of training",
                           o.min_population_calibration_images);
  const inference::Matrix calibrated = detail::shown_probabilities(extras, validation, *val_out);
  const inference::Matrix cross =
      detail::cross_fitted_probabilities(extras, config.labels, validation, *val_out, o.min_population_calibration_images);

  TrainReport report;
  report.validation = detail::evaluate_probabilities(config.labels, validation, calibrated, config.labels);
  report.validation.model_version = o.out.filename().string();
  for (const auto& name : populations_of(validation)) {
    PopulationReport pr;
    pr.population = name;
    auto [rows, cal] = detail::population_rows(validation, calibrated, name);
    pr.validation = detail::evaluate_probabilities(config.labels, rows, cal, config.labels);
    const auto plain = detail::population_rows(validation, val_out->probabilities, name).second;
    const auto crossed = detail::population_rows(validation, cross, name).second;
    const auto un = detail::evaluate_probabilities(config.labels, rows, plain, config.labels);
    const auto cf = detail::evaluate_probabilities(config.labels, rows, crossed, config.labels);
    for (const auto& f : un.findings) pr.ece_uncalibrated.push_back(f.ece);
    for (const auto& f : cf.findings) pr.ece_cross_fitted.push_back(f.ece);
    for (const auto& f : pr.validation.findings) {
      const auto col = static_cast<Eigen::Index>(std::find(config.labels.begin(), config.labels.end(), f.finding) - config.labels.begin());
      std::vector<double> shown;
      for (std::size_t i = 0; i < rows.size(); ++i)
        if (rows[i]->mask[static_cast<std::size_t>(col)] > 0.0f) shown.push_back(cal(static_cast<Eigen::Index>(i), col));
      pr.ece_by_chance.push_back(training::ece_by_chance(shown));
    }
    report.populations.push_back(std::move(pr));
  }
  report.history = loop->history;
  report.train_images = static_cast<int>(train.size());
  report.validation_images = static_cast<int>(validation.size());
  report.train_patients = static_cast<int>(train_patients.size());
  report.validation_patients = static_cast<int>(validation_patients.size());
  json validation_json = detail::to_json(report.validation);
  for (std::size_t j = 0; j < report.validation.findings.size(); ++j) {
    const auto& f = report.validation.findings[j];
    const auto col = static_cast<std::size_t>(std::find(config.labels.begin(), config.labels.end(), f.finding) - config.labels.begin());
    int correct = 0, counted = 0;
    for (std::size_t i = 0; i < validation.size(); ++i) {
      if (validation[i]->mask[col] <= 0.0f) continue;
      const bool predicted = calibrated(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(col)) >= f.threshold;
      correct += predicted == (validation[i]->target[col] > 0.5f) ? 1 : 0;
      ++counted;
    }
    const double accuracy = counted > 0 ? static_cast<double>(correct) / static_cast<double>(counted) : 0.0;
    report.accuracy.push_back(accuracy);
    validation_json["findings"][j]["accuracy"] = accuracy;  // at the Youden threshold
  }
  json populations_json = json::array();
  for (const auto& pr : report.populations) {
    json pj = detail::to_json(pr.validation);
    pj["population"] = pr.population;
    // How often a validation image of this population gets its own population's calibration (by
    // its age when the data gives one, else by its embedding).
    int own = 0, of = 0;
    for (std::size_t i = 0; i < validation.size(); ++i) {
      if (validation[i]->population != pr.population) continue;
      const Eigen::VectorXf e = val_out->embeddings.row(static_cast<Eigen::Index>(i)).transpose();
      const int chosen = inference::choose_population(extras, e.data(), e.size(), validation[i]->age_years);
      own += chosen >= 0 && extras.domain->populations[static_cast<std::size_t>(chosen)].name == pr.population ? 1 : 0;
      ++of;
    }
    pj["population_recognised"] = of > 0 ? static_cast<double>(own) / of : 0.0;
    for (std::size_t j = 0; j < pr.validation.findings.size(); ++j) {
      pj["findings"][j]["ece_uncalibrated"] = pr.ece_uncalibrated[j];
      pj["findings"][j]["ece_cross_fitted"] = pr.ece_cross_fitted[j];
      pj["findings"][j]["ece_by_chance_p95"] = pr.ece_by_chance[j];
    }
    populations_json.push_back(std::move(pj));
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  json data_json = json::array();
  for (const auto& src : o.data) {
    json d = {{"folder", src.dir.lexically_normal().string()}, {"repeat", src.repeat}};  // as given: no machine paths in shipped reports
    if (!src.population.empty()) d["population"] = src.population;
    data_json.push_back(std::move(d));
  }
  json r = {{"data", data_json},
            {"outputs", config.labels},
            {"architecture", o.init.empty() ? o.arch : (new_head ? "encoder of " : "continued from ") + detail::folder_name(o.init)},
            {"image_size", config.input_width},
            // The share of each side the model sees (its centre crop; 1 = the whole film).
            {"center_crop", config.centre_crop() && config.resize_width > 0 ? static_cast<double>(config.input_width) / config.resize_width : 1.0},
            {"epochs", o.epochs},
            {"batch_size", o.batch_size},
            {"learning_rate", o.learning_rate},
            {"weight_decay", o.weight_decay},
            {"drop_path", o.drop_path},
            {"layer_decay", o.layer_decay},
            {"warmup_epochs", o.warmup_epochs},
            {"precision", detail::precision_name(o.precision)},
            {"seed", o.seed},
            {"validation_fold", o.validation_fold},
            {"train_images", report.train_images},
            {"validation_images", report.validation_images},
            {"train_patients", report.train_patients},
            {"validation_patients", report.validation_patients},
            {"seconds", report.seconds},
            {"validation", validation_json},
            {"populations", populations_json},
            {"domain", {{"threshold", extras.domain->embedding.threshold}, {"quantile", extras.domain->embedding.quantile},
                        {"axes", extras.domain->embedding.axes.rows()}, {"thumbnail_side", extras.domain->thumbnail_side},
                        {"thumbnail_threshold", extras.domain->thumbnail.threshold},
                        {"statistics_threshold", extras.domain->statistics.threshold}, {"images", extras.domain->embedding.images},
                        {"reference_data", reference_json}}},
            {"history", detail::to_json(report.history)}};
  if (!problems.empty()) r["unreadable"] = problems;
  report.report_json = dump_json(r, 2);

  std::error_code ec;
  const fs::path tmp = o.out.parent_path() / (o.out.filename().string() + ".partial");
  fs::remove_all(tmp, ec);
  auto saved = model->save(tmp, o.dtype);
  if (!saved) return detail::from_inference(saved.error());
  if (auto written = inference::write_model_extras(tmp, extras); !written) return detail::from_inference(written.error());
  if (auto written = core::write_file_atomically(tmp / "training_report.json", report.report_json); !written)
    return Error{ErrorKind::Io, written.error().message};
  fs::remove_all(o.out, ec);
  fs::rename(tmp, o.out, ec);
  if (ec) return Error{ErrorKind::Io, "cannot move " + tmp.string() + " to " + o.out.string() + ": " + ec.message()};
  fs::remove_all(checkpoints, ec);
  return report;
}

}  // namespace hilum::app
