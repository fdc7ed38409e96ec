// Fuzz harness: a model folder as Hilum reads it (config.json, model.safetensors,
// preprocessor_config.json, hilum.json), then one forward pass of a model that loads.
// The input holds the files one after another, separated by kSeparator; missing trailing files are
// absent from the folder. Invariants beyond "no crash, no sanitizer report" (issue 16, defects 5-7):
//  - a config that loads has every number in a range a forward pass can run with;
//  - a model that loads has only finite weights, and its forward pass gives one row per image.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_support.hpp"
#include "hilum/inference/model_extras.hpp"
#include "hilum/inference/safetensors.hpp"
#include "hilum/inference/vit.hpp"

namespace inf = hilum::inference;
namespace fs = std::filesystem;
using hilum::fuzz::require;

namespace {

constexpr std::string_view kSeparator = "\n--hilum-fuzz-file--\n";
constexpr const char* kFiles[] = {"config.json", "model.safetensors", "preprocessor_config.json", "hilum.json"};

bool finite(const inf::Matrix& m) { return m.size() == 0 || m.allFinite(); }
bool finite(const inf::Vector& v) { return v.size() == 0 || v.allFinite(); }

void check_config(const inf::ViTConfig& c) {
  require(c.hidden_size > 0 && c.num_heads > 0 && c.hidden_size % c.num_heads == 0, "config: hidden size / heads");
  require(c.num_layers >= 0 && c.intermediate_size > 0 && c.patch_size > 0 && c.num_channels > 0, "config: sizes");
  require(c.image_size > 0 && c.input_height > 0 && c.input_width > 0, "config: image sizes");
  require(std::isfinite(c.layer_norm_eps) && c.layer_norm_eps > 0.0, "config: layer_norm_eps");
  for (int k = 0; k < 3; ++k) {
    require(std::isfinite(c.image_mean[static_cast<std::size_t>(k)]), "config: image_mean");
    require(std::isfinite(c.image_std[static_cast<std::size_t>(k)]) && c.image_std[static_cast<std::size_t>(k)] != 0.0f,
            "config: image_std");
  }
}

void check_model(const inf::ViTModel& model, const fs::path& dir) {
  const auto& c = model.config();
  check_config(c);
  const auto& w = model.weights();
  const auto linear = [](const inf::Linear& l) { return finite(l.w) && finite(l.b); };
  const auto norm = [](const inf::LayerNorm& n) { return finite(n.gamma) && finite(n.beta); };
  require(finite(w.patch_w) && finite(w.patch_b) && finite(w.cls_token) && finite(w.position), "non-finite embedding weights");
  for (const auto& b : w.blocks) {
    require(norm(b.ln_before) && norm(b.ln_after) && linear(b.query) && linear(b.key) && linear(b.value) && linear(b.attn_out) &&
                linear(b.fc1) && linear(b.fc2),
            "non-finite block weights");
  }
  require(norm(w.final_ln) && linear(w.classifier), "non-finite final weights");

  (void)inf::read_model_extras(dir, c);

  // One forward pass when it stays small (a fuzzer's valid model is tiny; a large one is not a defect).
  const double tokens = (double(c.input_height) / c.patch_size) * (double(c.input_width) / c.patch_size) + 1.0;
  if (tokens > 1024.0 || double(c.input_height) * c.input_width > 512.0 * 512.0 || c.num_layers > 8) return;
  std::vector<float> grey(48 * 40);
  for (std::size_t i = 0; i < grey.size(); ++i) grey[i] = static_cast<float>(i % 97) / 96.0f;
  const auto image = inf::preprocess(grey.data(), 48, 40, c);
  const auto out = model.forward({image});
  if (!out) return;
  require(out->logits.rows() == 1 && out->probabilities.rows() == 1, "forward: not one row per image");
  if (w.has_classifier) {
    require(out->logits.cols() == static_cast<Eigen::Index>(c.labels.size()), "forward: not one logit per label");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const fs::path dir = hilum::fuzz::scratch() / "model";
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir);
  const auto parts = hilum::fuzz::split(std::string_view(reinterpret_cast<const char*>(data), size), kSeparator);
  for (std::size_t i = 0; i < parts.size() && i < std::size(kFiles); ++i) hilum::fuzz::write_file(dir / kFiles[i], parts[i]);

  if (const auto config = inf::read_config(dir)) check_config(*config);

  // The weight file on its own: every tensor the header lists, read as F32 when small.
  if (auto file = inf::SafetensorsFile::open(dir / "model.safetensors")) {
    for (const auto& t : file->tensors()) {
      require(t.end >= t.begin, "safetensors: a tensor ends before it begins");
      if (t.numel() > (1 << 20)) continue;
      if (const auto values = file->read_f32(t.name)) {
        require(values->size() == static_cast<std::size_t>(t.numel()), "safetensors: read_f32 size");
        for (const float v : *values) require(std::isfinite(v), "safetensors: read_f32 gave a non-finite value");
      }
    }
  }

  if (const auto model = inf::ViTModel::load(dir)) check_model(*model, dir);
  return 0;
}
