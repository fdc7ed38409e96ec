// Shared by the ui tests, the screenshot tool and bench_ui: synthetic radiographs imported into a
// temporary catalog, and a random ViT written with inference::ViTModel::save.
#pragma once

#include <QString>

#include <filesystem>
#include <string>
#include <vector>

#include "hilum/app/catalog.hpp"

namespace hilum::uitest {

struct VitSize {
  int hidden = 32;
  int layers = 2;
  int heads = 2;
  int intermediate = 64;
  int image = 32;
  int patch = 8;
  int resize = 0;  // > image: the model sees the centre image x image of the film resized to this (a centre crop)
};

// A multi-label ViT with random weights and the ChestX-ray14 findings as outputs, saved as a
// Hugging Face folder at `dir`.
void write_random_vit(const std::filesystem::path& dir, const VitSize& size = {}, unsigned seed = 7);

// Phantom radiographs (DX, 12-bit, two window presets, pixel spacing 0.143 mm), one per patient
// unless `per_patient` says otherwise, written under `dir`. Returns their paths.
std::vector<std::filesystem::path> write_phantoms(const std::filesystem::path& dir, int patients, int per_patient = 1, int rows = 320,
                                                  int columns = 256);

// Imports `inputs` into the catalog at `db` (created); aborts with a message on failure.
void import_into(const std::filesystem::path& db, const std::vector<std::filesystem::path>& inputs);

// Labels every image of the catalog at `db` with Effusion and Nodule, present and absent in turn
// (Effusion present on every other image, Nodule on the others), by dr.test.
void label_every_image(const std::filesystem::path& db);

// Labels every image of the catalog at `db` with Effusion and Nodule by two readers, dr.a and dr.b,
// who agree on some images and not on others (a fixed pattern over every six images).
void label_by_two_readers(const std::filesystem::path& db);

// Registers (and activates) the model folder in the catalog at `db`.
void register_model(const std::filesystem::path& db, const std::filesystem::path& model_dir, const std::string& version);

// The model a window under test runs: the built-in model when there is one (the session registers
// it on first run; nothing to do), else a random ViT-Ti/16 at 224 written under `dir` and
// registered. Returns a description for the log.
std::string builtin_or_random_model(const std::filesystem::path& db, const std::filesystem::path& dir);

// A fresh temporary folder (removed by the caller).
std::filesystem::path make_temp_dir(const std::string& prefix);

}  // namespace hilum::uitest
