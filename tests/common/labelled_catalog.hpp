// A small labelled catalog for the cluster round trip and its tests (no GoogleTest here: the
// round trip's generator uses it too). `patients` patients with two DX phantoms each; about half
// show a bright square in the upper left quarter ("Pattern" present, else absent); every third
// image's "Effusion" is labelled absent and the others' are not assessed; a tiny random ViT
// (1 channel, 32 x 32, patch 8, D = 32, 2 blocks, outputs Effusion and Pattern) is the active model.
#pragma once

#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "hilum/app/catalog.hpp"
#include "hilum/app/classify.hpp"
#include "hilum/app/import.hpp"
#include "hilum/testdata/phantom.hpp"
#include "random_vit.hpp"

namespace hilum::test {

// The tiny ViT of the fine-tune and cluster tests (outputs Effusion and Pattern).
inline inference::ViTConfig tiny_cluster_config() {
  inference::ViTConfig c;
  c.hidden_size = 32;
  c.num_layers = 2;
  c.num_heads = 4;
  c.intermediate_size = 64;
  c.image_size = 32;
  c.patch_size = 8;
  c.num_channels = 1;
  c.layer_norm_eps = 1e-6;
  c.labels = {"Effusion", "Pattern"};
  c.problem_type = "multi_label_classification";
  c.input_height = c.input_width = 32;
  return c;
}

// Writes `patients` patients with two 96 x 96 DX phantoms each into `dir` (img<N>.dcm, SOP Instance
// UID 1.2.826.0.1.3680043.10.2.<N>); about half carry a bright square in the upper left quarter.
// Returns (SOP Instance UID, has the square) per image, in image order.
inline std::vector<std::pair<std::string, bool>> write_pattern_phantoms(const std::filesystem::path& dir, int patients, unsigned seed = 7) {
  std::mt19937 rng(seed);
  std::filesystem::create_directories(dir);
  std::vector<std::pair<std::string, bool>> truth;
  for (int p = 0; p < patients; ++p) {
    for (int k = 0; k < 2; ++k) {
      const int index = 2 * p + k;
      const bool pattern = (rng() % 2) == 0;
      testdata::DicomSpec spec;
      spec.phantom.rows = 96;
      spec.phantom.columns = 96;
      spec.phantom.collimator_border = false;
      spec.phantom.seed = static_cast<std::uint32_t>(100 + index);
      spec.patient_id = "PAT" + std::to_string(p);
      spec.patient_name = "Patient^" + std::to_string(p);
      spec.study_instance_uid = "1.2.826.0.1.3680043.10.1." + std::to_string(p);
      spec.sop_instance_uid = "1.2.826.0.1.3680043.10.2." + std::to_string(index);
      if (pattern) {
        spec.draw = [](std::vector<std::int32_t>& v, int rows, int cols) {
          for (int r = 8; r < rows / 2; ++r)
            for (int c = 8; c < cols / 2; ++c) v[static_cast<std::size_t>(r * cols + c)] = 4095;
        };
      }
      testdata::write_dicom(dir / ("img" + std::to_string(index) + ".dcm"), spec);
      truth.emplace_back(spec.sop_instance_uid, pattern);
    }
  }
  return truth;
}

// Returns "" or what went wrong. Images go to work/images, the model to work/tiny-base; with
// `resize` > 32 the model sees the centre 32 x 32 of the films resized to resize x resize.
inline std::string make_labelled_catalog(app::Catalog& catalog, const std::filesystem::path& work, int patients, unsigned seed = 7,
                                         int resize = 0) {
  const auto truth = write_pattern_phantoms(work / "images", patients, seed);
  app::ImportOptions io;
  auto report = app::import_paths(catalog, {work / "images"}, io);
  if (report.error) return report.error->message;
  if (auto f = catalog.add_finding("Pattern", "a bright square (test)"); !f) return f.error().message;
  std::vector<app::LabelInput> labels;
  for (std::size_t i = 0; i < truth.size(); ++i) {
    app::LabelInput l;
    l.image = truth[i].first;
    l.finding = "Pattern";
    l.value = truth[i].second ? app::LabelValue::Present : app::LabelValue::Absent;
    l.author = "tester";
    labels.push_back(l);
    if (i % 3 == 0) {
      l.finding = "Effusion";
      l.value = app::LabelValue::Absent;
      labels.push_back(l);
    }
  }
  if (auto added = catalog.add_labels(labels); !added) return added.error().message;
  inference::ViTConfig c = tiny_cluster_config();
  if (resize > c.input_width) c.resize_width = c.resize_height = resize;
  auto model = inference::ViTModel::from_weights(c, random_vit_weights(c, seed, 0.2f));
  if (!model) return model.error().message;
  if (auto saved = model->save(work / "tiny-base"); !saved) return saved.error().message;
  if (auto m = app::import_model(catalog, work / "tiny-base", "tiny-base", true); !m) return m.error().message;
  return {};
}

}  // namespace hilum::test
