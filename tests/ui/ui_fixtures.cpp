#include "ui_fixtures.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "hilum/app/classify.hpp"
#include "hilum/app/import.hpp"
#include "hilum/inference/vit.hpp"
#include "hilum/testdata/phantom.hpp"
#include "random_vit.hpp"

namespace fs = std::filesystem;

namespace hilum::uitest {
namespace {
[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "ui fixture: %s\n", what.c_str());
  std::abort();
}
}  // namespace

void write_random_vit(const fs::path& dir, const VitSize& size, unsigned seed) {
  namespace inf = hilum::inference;
  inf::ViTConfig c;
  c.hidden_size = size.hidden;
  c.num_layers = size.layers;
  c.num_heads = size.heads;
  c.intermediate_size = size.intermediate;
  c.image_size = size.image;
  c.patch_size = size.patch;
  c.num_channels = 3;
  c.input_height = c.input_width = size.image;
  if (size.resize > size.image) c.resize_height = c.resize_width = size.resize;
  c.problem_type = "multi_label_classification";
  for (const auto& [name, description] : app::builtin_findings()) {
    (void)description;
    if (name != "No Finding") c.labels.push_back(name);
  }
  inf::ViTWeights w = hilum::test::random_vit_weights(c, seed, 0.05f);
  // Logits of standard deviation ~1.5 whatever the width (the final LayerNorm gives unit features).
  w.classifier.w *= 1.5f / (0.05f * std::sqrt(static_cast<float>(c.hidden_size)));
  auto model = inf::ViTModel::from_weights(c, std::move(w));
  if (!model) die("random ViT: " + model.error().message);
  std::error_code ec;
  fs::create_directories(dir, ec);
  auto saved = model->save(dir);
  if (!saved) die("saving the random ViT: " + saved.error().message);
}

std::vector<fs::path> write_phantoms(const fs::path& dir, int patients, int per_patient, int rows, int columns) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  std::vector<fs::path> out;
  for (int p = 0; p < patients; ++p) {
    for (int k = 0; k < per_patient; ++k) {
      testdata::DicomSpec spec;
      spec.phantom.rows = rows;
      spec.phantom.columns = columns;
      spec.phantom.seed = static_cast<std::uint32_t>(p * 100 + k + 1);
      spec.windows = {{2048, 4096, "FULL"}, {1400, 1800, "LUNG"}};
      char id[32];
      std::snprintf(id, sizeof id, "PAT-%03d", p + 1);
      spec.patient_id = id;
      spec.patient_name = "Phantom^Patient" + std::to_string(p + 1);
      spec.accession_number = "ACC" + std::to_string(1000 + p);
      spec.study_instance_uid = "1.2.826.0.1.3680043.10.1." + std::to_string(p + 1);
      spec.series_instance_uid = spec.study_instance_uid + ".1";
      spec.sop_instance_uid = spec.series_instance_uid + "." + std::to_string(k + 1);
      spec.instance_number = std::to_string(k + 1);
      spec.acquisition_date = "202601" + std::string(p + 1 < 10 ? "0" : "") + std::to_string(p % 28 + 1);
      const fs::path file = dir / ("phantom_" + std::to_string(p + 1) + "_" + std::to_string(k + 1) + ".dcm");
      testdata::write_dicom(file, spec);
      out.push_back(file);
    }
  }
  return out;
}

void import_into(const fs::path& db, const std::vector<fs::path>& inputs) {
  auto catalog = app::Catalog::open(db);
  if (!catalog) die("catalog: " + catalog.error().message);
  app::ImportOptions options;
  options.jobs = 2;
  const auto report = app::import_paths(catalog.value(), inputs, options);
  if (!report.ok()) die("import: " + report.error->message);
}

void label_every_image(const fs::path& db) {
  auto catalog = app::Catalog::open(db);
  if (!catalog) die("catalog: " + catalog.error().message);
  const auto images = catalog->list_instances({});
  if (!images) die("list: " + images.error().message);
  std::vector<app::LabelInput> labels;
  int k = 0;
  for (const auto& im : images.value()) {
    for (const char* f : {"Effusion", "Nodule"}) {
      app::LabelInput in;
      in.image = im.sop_instance_uid;
      in.finding = f;
      in.value = (k + (f[0] == 'N' ? 1 : 0)) % 2 == 0 ? app::LabelValue::Present : app::LabelValue::Absent;
      in.author = "dr.test";
      labels.push_back(in);
    }
    ++k;
  }
  const auto added = catalog->add_labels(labels);
  if (!added) die("labels: " + added.error().message);
}

void label_by_two_readers(const fs::path& db) {
  auto catalog = app::Catalog::open(db);
  if (!catalog) die("catalog: " + catalog.error().message);
  const auto images = catalog->list_instances({});
  if (!images) die("list: " + images.error().message);
  // Per image k (cycling): each reader's value of each finding, 1 present, 0 absent.
  const int effusion_a[] = {1, 1, 0, 0, 1, 0}, effusion_b[] = {1, 0, 0, 0, 1, 1};
  const int nodule_a[] = {1, 0, 0, 1, 0, 0}, nodule_b[] = {1, 0, 0, 1, 0, 1};
  std::vector<app::LabelInput> labels;
  int k = 0;
  for (const auto& im : images.value()) {
    for (const char* reader : {"dr.a", "dr.b"}) {
      const bool a = reader[3] == 'a';
      for (const char* f : {"Effusion", "Nodule"}) {
        const int* values = f[0] == 'E' ? (a ? effusion_a : effusion_b) : (a ? nodule_a : nodule_b);
        app::LabelInput in;
        in.image = im.sop_instance_uid;
        in.finding = f;
        in.value = values[k % 6] == 1 ? app::LabelValue::Present : app::LabelValue::Absent;
        in.author = reader;
        labels.push_back(in);
      }
    }
    ++k;
  }
  const auto added = catalog->add_labels(labels);
  if (!added) die("labels: " + added.error().message);
}

void register_model(const fs::path& db, const fs::path& model_dir, const std::string& version) {
  auto catalog = app::Catalog::open(db);
  if (!catalog) die("catalog: " + catalog.error().message);
  auto r = app::import_model(catalog.value(), model_dir, version, true);
  if (!r) die("model: " + r.error().message);
}

std::string builtin_or_random_model(const fs::path& db, const fs::path& dir) {
  const fs::path builtin = app::builtin_model_dir();
  if (!builtin.empty()) return "the built-in " + builtin.filename().string();
  write_random_vit(dir / "vit-ti16", {192, 12, 3, 768, 224, 16});
  register_model(db, dir / "vit-ti16", "hilum-vit-ti16-random-1");
  return "a random ViT-Ti/16 at 224 (no built-in model)";
}

fs::path make_temp_dir(const std::string& prefix) {
  std::string templ = (fs::temp_directory_path() / (prefix + "-XXXXXX")).string();
  if (mkdtemp(templ.data()) == nullptr) die("mkdtemp failed");
  return templ;
}

}  // namespace hilum::uitest
