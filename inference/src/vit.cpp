// ViT: config, weights I/O in the Hugging Face layout, and the forward pass (F32 or BF16 GEMMs).
#include "hilum/inference/vit.hpp"

#include "hilum/core/atomic_file.hpp"
#include "json_file.hpp"

#include "gemm.hpp"
#include "team.hpp"

#include <algorithm>
#include <charconv>
#include <optional>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <string_view>
#include <system_error>

#include <nlohmann/json.hpp>
#include <unsupported/Eigen/SpecialFunctions>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace hilum::inference {
namespace {

Error invalid(std::string m) { return {ErrorKind::Invalid, std::move(m)}; }

using detail::parse_bounded_json;
using detail::read_json;

Status write_text_atomically(const fs::path& path, const std::string& text) {
  if (auto written = core::write_file_atomically(path, text); !written) return Error{ErrorKind::Io, written.error().message};
  return core::Done{};
}

// A value as a message shows it: short, and valid UTF-8 whatever the file held.
std::string shown(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 40) s = s.substr(0, 40) + "...";
  return s;
}

// The fields of one JSON object of `file`, each checked against its allowed range when read: a
// number that is out of range, not integral where an integer is wanted, or of the wrong type is an
// error naming the field, its range and the value (never truncated, wrapped or cast with overflow).
class Fields {
 public:
  Fields(const json& object, std::string file, std::string prefix = "") : v_(object), file_(std::move(file)), prefix_(std::move(prefix)) {}

  // An integral JSON number in lo..hi (16.0 is accepted; 16.5, 4294967304 and 1e30 are not).
  void integer(const char* key, int lo, int hi, int& out) {
    const json* x = find(key);
    if (x == nullptr) return;
    const auto fail = [&] { fail_with(key, "must be an integer in " + std::to_string(lo) + ".." + std::to_string(hi) + ", got " + shown(*x)); };
    if (x->is_number_unsigned()) {
      const auto u = x->get<std::uint64_t>();
      if (u > static_cast<std::uint64_t>(hi) || static_cast<std::int64_t>(u) < lo) return fail();
      out = static_cast<int>(u);
    } else if (x->is_number_integer()) {
      const auto i = x->get<std::int64_t>();
      if (i < lo || i > hi) return fail();
      out = static_cast<int>(i);
    } else if (x->is_number_float()) {
      const double d = x->get<double>();
      if (!(d >= lo && d <= hi) || d != std::floor(d)) return fail();
      out = static_cast<int>(d);
    } else {
      return fail();
    }
  }
  // A finite number in lo..hi (open at lo when lo_open); `range` says so in the message.
  void number(const char* key, double lo, double hi, bool lo_open, const std::string& range, double& out) {
    const json* x = find(key);
    if (x != nullptr) out = number_value(*x, key, lo, hi, lo_open, range);
  }
  double number_value(const json& x, const std::string& name, double lo, double hi, bool lo_open, const std::string& range) {
    const double d = x.is_number() ? x.get<double>() : std::nan("");
    if (!std::isfinite(d) || d < lo || d > hi || (lo_open && d == lo)) {
      fail_with(name, "must be " + range + ", got " + shown(x));
      return 0.0;
    }
    return d;
  }
  void text(const char* key, std::string& out) {
    const json* x = find(key);
    if (x == nullptr) return;
    if (!x->is_string()) return fail_with(key, "must be a string, got " + shown(*x));
    out = x->get<std::string>();
  }
  void boolean(const char* key, bool& out) {
    const json* x = find(key);
    if (x == nullptr) return;
    if (!x->is_boolean()) return fail_with(key, "must be true or false, got " + shown(*x));
    out = x->get<bool>();
  }
  void fail_with(const std::string& key, const std::string& rule) {
    if (!error) error = invalid(file_ + ": " + prefix_ + key + " " + rule);
  }
  // Absent or null: the default stays.
  [[nodiscard]] const json* find(const char* key) const {
    const auto it = v_.find(key);
    return it == v_.end() || it->is_null() ? nullptr : &*it;
  }

  std::optional<Error> error;

 private:
  const json& v_;
  std::string file_, prefix_;
};

// The allowed ranges. Sizes are those of any ViT that fits in memory; input sides are those of
// an image worth classifying.
constexpr int kMaxHidden = 16384, kMaxLayers = 256, kMaxHeads = 256, kMaxIntermediate = 65536, kMaxPatch = 1024;
constexpr int kMinSide = 16, kMaxSide = 4096;
constexpr int kMaxLabels = 100000;

}  // namespace

// ---- Config ------------------------------------------------------------------------------

Result<ViTConfig> read_config(const fs::path& dir) {
  ViTConfig c;
  auto j = read_json(dir / "config.json", &c.original_json);
  if (!j) return j.error();
  const json& v = j.value();
  if (!v.is_object()) return invalid("config.json is not a JSON object");
  if (v.contains("model_type") && v["model_type"] != "vit") {
    return Error{ErrorKind::Unsupported, "config.json: model_type " + shown(v["model_type"]) + " is not a ViT"};
  }
  Fields f(v, "config.json");
  f.integer("hidden_size", 1, kMaxHidden, c.hidden_size);
  f.integer("num_hidden_layers", 1, kMaxLayers, c.num_layers);
  f.integer("num_attention_heads", 1, kMaxHeads, c.num_heads);
  f.integer("intermediate_size", 1, kMaxIntermediate, c.intermediate_size);
  f.integer("image_size", kMinSide, kMaxSide, c.image_size);
  f.integer("patch_size", 1, kMaxPatch, c.patch_size);
  f.integer("num_channels", 1, 3, c.num_channels);
  f.number("layer_norm_eps", 0.0, 1.0, true, "a number in (0, 1]", c.layer_norm_eps);
  f.text("hidden_act", c.hidden_act);
  f.boolean("qkv_bias", c.qkv_bias);
  f.text("problem_type", c.problem_type);
  if (f.error) return *f.error;
  if (c.hidden_size % c.num_heads != 0) {
    return invalid("config.json: inconsistent sizes: num_attention_heads " + std::to_string(c.num_heads) + " does not divide hidden_size " +
                   std::to_string(c.hidden_size));
  }
  if (c.image_size % c.patch_size != 0) {
    return invalid("config.json: inconsistent sizes: patch_size " + std::to_string(c.patch_size) + " does not divide image_size " +
                   std::to_string(c.image_size));
  }
  if (c.hidden_act != "gelu" && c.hidden_act != "gelu_new" && c.hidden_act != "gelu_pytorch_tanh") {
    return Error{ErrorKind::Unsupported, "config.json: activation " + shown(json(c.hidden_act)) + " is not supported (gelu, gelu_new)"};
  }
  if (const json* id2label = f.find("id2label"); id2label != nullptr) {
    if (!id2label->is_object()) return invalid("config.json: id2label must be an object, got " + shown(*id2label));
    if (id2label->size() > static_cast<std::size_t>(kMaxLabels)) {
      return invalid("config.json: id2label may name at most " + std::to_string(kMaxLabels) + " labels, got " + std::to_string(id2label->size()));
    }
    std::vector<std::pair<int, std::string>> labels;
    for (auto it = id2label->begin(); it != id2label->end(); ++it) {
      const std::string& key = it.key();
      int id = -1;
      const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), id);
      if (ec != std::errc{} || end != key.data() + key.size() || id < 0 || id >= kMaxLabels) {
        return invalid("config.json: id2label's keys must be integers in 0.." + std::to_string(kMaxLabels - 1) + ", got " + shown(json(key)));
      }
      if (!it.value().is_string()) return invalid("config.json: id2label[" + key + "] must be a string, got " + shown(it.value()));
      labels.emplace_back(id, it.value().get<std::string>());
    }
    std::sort(labels.begin(), labels.end());
    for (std::size_t i = 0; i < labels.size(); ++i) {
      if (labels[i].first != static_cast<int>(i)) return invalid("config.json: id2label must number its labels 0..n-1");
      c.labels.push_back(labels[i].second);
    }
  }
  c.input_height = c.input_width = c.image_size;
  if (fs::exists(dir / "preprocessor_config.json")) {
    auto p = read_json(dir / "preprocessor_config.json");
    if (!p) return p.error();
    const json& pv = p.value();
    if (!pv.is_object()) return invalid("preprocessor_config.json is not a JSON object");
    Fields pf(pv, "preprocessor_config.json");
    // image_mean and image_std: one number per channel (or one for all).
    const auto per_channel = [&](const char* key, double lo, double hi, bool lo_open, const std::string& range, std::array<float, 3>& out) {
      const json* x = pf.find(key);
      if (x == nullptr) return;
      if (x->is_number()) {
        out.fill(static_cast<float>(pf.number_value(*x, key, lo, hi, lo_open, range)));
        return;
      }
      if (!x->is_array() || (x->size() != 1 && x->size() != 3 && x->size() != static_cast<std::size_t>(c.num_channels))) {
        return pf.fail_with(key, "must be a number or an array of 1 or 3 numbers, got " + shown(*x));
      }
      for (std::size_t i = 0; i < 3; ++i) {
        const json& e = (*x)[std::min(i, x->size() - 1)];
        out[i] = static_cast<float>(pf.number_value(e, std::string(key) + "[" + std::to_string(std::min(i, x->size() - 1)) + "]", lo, hi, lo_open, range));
      }
    };
    per_channel("image_mean", -1000.0, 1000.0, false, "a number in -1000..1000", c.image_mean);
    per_channel("image_std", 1e-6, 1000.0, false, "a number in 1e-06..1000", c.image_std);
    // size: one side for both, or {height, width}; a side the model's patches tile.
    // (A crop's resized size need not be tiled: `tiled` false.)
    const auto side = [&](Fields& fields, const char* key, int& out, bool tiled) {
      const json* x = fields.find(key);
      if (x == nullptr) return;
      int value = 0;
      fields.integer(key, kMinSide, kMaxSide, value);
      if (fields.error) return;
      if (tiled && value % c.patch_size != 0) {
        return fields.fail_with(key, "must be divisible by patch_size " + std::to_string(c.patch_size) + ", got " + std::to_string(value));
      }
      out = value;
    };
    // A size (`key`): one side for both, or {height, width}.
    const auto sides = [&](const char* key, int& height, int& width, bool tiled) -> bool {
      const json* size = pf.find(key);
      if (size == nullptr) return false;
      if (size->is_object()) {
        Fields sf(*size, "preprocessor_config.json", std::string(key) + ".");
        side(sf, "height", height, tiled);
        side(sf, "width", width, tiled);
        if (sf.error) pf.error = sf.error;
      } else if (size->is_number()) {
        side(pf, key, height, tiled);
        width = height;
      } else {
        pf.fail_with(key, "must be an integer or {\"height\": H, \"width\": W}, got " + shown(*size));
      }
      return true;
    };
    bool crop = false;
    pf.boolean("do_center_crop", crop);
    if (crop && !pf.error) {
      // Resize to `size`, keep the centre `crop_size` (the model's input, tiled by its patches).
      if (!sides("crop_size", c.input_height, c.input_width, true) && !pf.error) {
        pf.fail_with("crop_size", "is missing while do_center_crop is true");
      }
      if (!pf.error) {
        c.resize_height = c.input_height;
        c.resize_width = c.input_width;
        sides("size", c.resize_height, c.resize_width, false);
        if (!pf.error && (c.resize_height < c.input_height || c.resize_width < c.input_width)) {
          pf.fail_with("size", "must be at least crop_size (" + std::to_string(c.input_height) + " x " + std::to_string(c.input_width) +
                                   ") to crop it, got " + std::to_string(c.resize_height) + " x " + std::to_string(c.resize_width));
        }
      }
    } else if (!pf.error) {
      sides("size", c.input_height, c.input_width, true);
    }
    if (pf.error) return *pf.error;
  }
  return c;
}

// ---- Loading -----------------------------------------------------------------------------

namespace {

struct Loader {
  const SafetensorsFile& file;
  std::string prefix;  // "vit." or ""
  std::set<std::string> used;
  std::optional<Error> error;

  Matrix matrix(const std::string& name, std::int64_t rows, std::int64_t cols, bool with_prefix = true) {
    const std::string full = (with_prefix ? prefix : "") + name;
    used.insert(full);
    if (error) return {};
    auto data = file.read_f32(full, {rows, cols});
    if (!data) {
      error = data.error();
      return {};
    }
    Matrix m(rows, cols);
    std::copy(data->begin(), data->end(), m.data());
    file.release(*file.find(full));
    return m;
  }
  Vector vector(const std::string& name, std::int64_t n, bool with_prefix = true, std::vector<std::int64_t> shape = {}) {
    const std::string full = (with_prefix ? prefix : "") + name;
    used.insert(full);
    if (error) return {};
    auto data = file.read_f32(full, shape.empty() ? std::vector<std::int64_t>{n} : shape);
    if (!data) {
      error = data.error();
      return {};
    }
    file.release(*file.find(full));
    return Eigen::Map<const Vector>(data->data(), n);
  }
};

}  // namespace

Result<ViTModel> ViTModel::load(const fs::path& dir) {
  auto config = read_config(dir);
  if (!config) return config.error();
  auto file = SafetensorsFile::open(dir / "model.safetensors");
  if (!file) return file.error();
  const ViTConfig& c = config.value();
  const std::int64_t D = c.hidden_size, I = c.intermediate_size, C = c.num_channels, P = c.patch_size;
  const std::int64_t grid = c.image_size / c.patch_size;

  Loader L{file.value(), "", {}, std::nullopt};
  if (file->find("vit.embeddings.cls_token") != nullptr) L.prefix = "vit.";
  else if (file->find("embeddings.cls_token") == nullptr) return invalid("model.safetensors has no ViT embeddings (vit.embeddings.cls_token)");

  ViTWeights w;
  w.cls_token = L.vector("embeddings.cls_token", D, true, {1, 1, D});
  {
    const std::string name = L.prefix + "embeddings.position_embeddings";
    L.used.insert(name);
    auto pos = file->read_f32(name, {1, 1 + grid * grid, D});
    if (!pos) return pos.error();
    w.position = Eigen::Map<const Matrix>(pos->data(), 1 + grid * grid, D);
  }
  {
    const std::string name = L.prefix + "embeddings.patch_embeddings.projection.weight";
    L.used.insert(name);
    auto pw = file->read_f32(name, {D, C, P, P});
    if (!pw) return pw.error();
    w.patch_w = Eigen::Map<const Matrix>(pw->data(), D, C * P * P);
  }
  w.patch_b = L.vector("embeddings.patch_embeddings.projection.bias", D);
  for (int i = 0; i < c.num_layers && !L.error; ++i) {
    const std::string b = "encoder.layer." + std::to_string(i) + ".";
    Block blk;
    blk.ln_before = {L.vector(b + "layernorm_before.weight", D), L.vector(b + "layernorm_before.bias", D)};
    const auto qkv = [&](const std::string& n) {
      Linear l{L.matrix(b + "attention.attention." + n + ".weight", D, D), {}};
      if (c.qkv_bias) l.b = L.vector(b + "attention.attention." + n + ".bias", D);
      return l;
    };
    blk.query = qkv("query");
    blk.key = qkv("key");
    blk.value = qkv("value");
    blk.attn_out = {L.matrix(b + "attention.output.dense.weight", D, D), L.vector(b + "attention.output.dense.bias", D)};
    blk.ln_after = {L.vector(b + "layernorm_after.weight", D), L.vector(b + "layernorm_after.bias", D)};
    blk.fc1 = {L.matrix(b + "intermediate.dense.weight", I, D), L.vector(b + "intermediate.dense.bias", I)};
    blk.fc2 = {L.matrix(b + "output.dense.weight", D, I), L.vector(b + "output.dense.bias", D)};
    w.blocks.push_back(std::move(blk));
  }
  w.final_ln = {L.vector("layernorm.weight", D), L.vector("layernorm.bias", D)};
  if (file->find("classifier.weight") != nullptr) {
    const TensorInfo* t = file->find("classifier.weight");
    const std::int64_t labels = t->shape.empty() ? 0 : t->shape[0];
    if (!c.labels.empty() && labels != static_cast<std::int64_t>(c.labels.size())) {
      return invalid("classifier.weight has " + std::to_string(labels) + " outputs but config.json names " + std::to_string(c.labels.size()) + " labels");
    }
    w.has_classifier = true;
    w.classifier = {L.matrix("classifier.weight", labels, D, false), L.vector("classifier.bias", labels, false)};
  }
  if (L.error) return *L.error;
  // A ViTModel backbone may carry its pooler; anything else unknown is an error (a wrong model).
  for (const auto& t : file->tensors()) {
    if (L.used.count(t.name)) continue;
    if (t.name.rfind(L.prefix + "pooler.", 0) == 0 || t.name.rfind("pooler.", 0) == 0) continue;
    return invalid("model.safetensors has an unexpected tensor " + t.name + " (not part of a ViT with this config)");
  }
  ViTConfig cfg = std::move(config.value());
  if (cfg.labels.empty() && w.has_classifier) {
    for (Eigen::Index k = 0; k < w.classifier.w.rows(); ++k) cfg.labels.push_back("LABEL_" + std::to_string(k));
  }
  return from_weights(std::move(cfg), std::move(w));
}

Result<ViTModel> ViTModel::from_weights(ViTConfig config, ViTWeights weights) {
  if (static_cast<int>(weights.blocks.size()) != config.num_layers) return invalid("the weights do not have the configured number of layers");
  if (weights.has_classifier && config.labels.size() != static_cast<std::size_t>(weights.classifier.w.rows())) {
    return invalid("the classifier's outputs do not match the labels");
  }
  ViTModel m;
  m.config_ = std::move(config);
  m.weights_ = std::move(weights);
  return m;
}

// ---- Saving ------------------------------------------------------------------------------

Status ViTModel::save(const fs::path& dir, DType dtype) const {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Error{ErrorKind::Io, "cannot create " + dir.string() + ": " + ec.message()};
  const ViTConfig& c = config_;
  const ViTWeights& w = weights_;
  const std::int64_t D = c.hidden_size, I = c.intermediate_size, C = c.num_channels, P = c.patch_size;
  std::vector<TensorToWrite> t;
  // Column vectors and row-major matrices are contiguous in the layout safetensors wants.
  const std::int64_t positions = w.position.rows();
  t.push_back({"vit.embeddings.cls_token", {1, 1, D}, w.cls_token.data(), dtype});
  t.push_back({"vit.embeddings.position_embeddings", {1, positions, D}, w.position.data(), dtype});
  t.push_back({"vit.embeddings.patch_embeddings.projection.weight", {D, C, P, P}, w.patch_w.data(), dtype});
  t.push_back({"vit.embeddings.patch_embeddings.projection.bias", {D}, w.patch_b.data(), dtype});
  for (int i = 0; i < c.num_layers; ++i) {
    const Block& b = w.blocks[static_cast<std::size_t>(i)];
    const std::string p = "vit.encoder.layer." + std::to_string(i) + ".";
    t.push_back({p + "layernorm_before.weight", {D}, b.ln_before.gamma.data(), dtype});
    t.push_back({p + "layernorm_before.bias", {D}, b.ln_before.beta.data(), dtype});
    for (const auto& [name, l] : {std::pair<const char*, const Linear*>{"query", &b.query}, {"key", &b.key}, {"value", &b.value}}) {
      t.push_back({p + "attention.attention." + name + ".weight", {D, D}, l->w.data(), dtype});
      if (c.qkv_bias) t.push_back({p + "attention.attention." + name + ".bias", {D}, l->b.data(), dtype});
    }
    t.push_back({p + "attention.output.dense.weight", {D, D}, b.attn_out.w.data(), dtype});
    t.push_back({p + "attention.output.dense.bias", {D}, b.attn_out.b.data(), dtype});
    t.push_back({p + "layernorm_after.weight", {D}, b.ln_after.gamma.data(), dtype});
    t.push_back({p + "layernorm_after.bias", {D}, b.ln_after.beta.data(), dtype});
    t.push_back({p + "intermediate.dense.weight", {I, D}, b.fc1.w.data(), dtype});
    t.push_back({p + "intermediate.dense.bias", {I}, b.fc1.b.data(), dtype});
    t.push_back({p + "output.dense.weight", {D, I}, b.fc2.w.data(), dtype});
    t.push_back({p + "output.dense.bias", {D}, b.fc2.b.data(), dtype});
  }
  t.push_back({"vit.layernorm.weight", {D}, w.final_ln.gamma.data(), dtype});
  t.push_back({"vit.layernorm.bias", {D}, w.final_ln.beta.data(), dtype});
  if (w.has_classifier) {
    const std::int64_t L = w.classifier.w.rows();
    t.push_back({"classifier.weight", {L, D}, w.classifier.w.data(), dtype});
    t.push_back({"classifier.bias", {L}, w.classifier.b.data(), dtype});
  }
  // config.json: the original fields, updated with what we know.
  json j = json::object();
  if (!c.original_json.empty()) {
    // The bytes read_config kept (bounded there); bounded again, since a ViTConfig can be built by hand.
    if (auto original = parse_bounded_json(c.original_json, "config.json"); original && original->is_object()) j = std::move(original.value());
  }
  j["model_type"] = "vit";
  j["architectures"] = {w.has_classifier ? "ViTForImageClassification" : "ViTModel"};
  j["hidden_size"] = c.hidden_size;
  j["num_hidden_layers"] = c.num_layers;
  j["num_attention_heads"] = c.num_heads;
  j["intermediate_size"] = c.intermediate_size;
  j["image_size"] = c.image_size;
  j["patch_size"] = c.patch_size;
  j["num_channels"] = c.num_channels;
  j["layer_norm_eps"] = c.layer_norm_eps;
  j["hidden_act"] = c.hidden_act;
  j["qkv_bias"] = c.qkv_bias;
  if (!j.contains("hidden_dropout_prob")) j["hidden_dropout_prob"] = 0.0;
  if (!j.contains("attention_probs_dropout_prob")) j["attention_probs_dropout_prob"] = 0.0;
  if (!j.contains("initializer_range")) j["initializer_range"] = 0.02;
  if (!j.contains("encoder_stride")) j["encoder_stride"] = c.patch_size;
  if (!c.problem_type.empty()) j["problem_type"] = c.problem_type;
  json id2label = json::object(), label2id = json::object();
  for (std::size_t k = 0; k < c.labels.size(); ++k) {
    id2label[std::to_string(k)] = c.labels[k];
    label2id[c.labels[k]] = k;
  }
  j["id2label"] = id2label;
  j["label2id"] = label2id;
  j["torch_dtype"] = dtype == DType::F32 ? "float32" : dtype == DType::F16 ? "float16" : "bfloat16";
  if (auto s = write_safetensors(dir / "model.safetensors", t); !s) return s;
  if (auto s = write_text_atomically(dir / "config.json", j.dump(2, ' ', false, json::error_handler_t::replace) + "\n"); !s) return s;
  json pre = {{"do_normalize", true}, {"do_rescale", true}, {"do_resize", true}, {"rescale_factor", 1.0 / 255.0},
              {"image_mean", c.image_mean}, {"image_std", c.image_std}, {"resample", 2},
              {"size", {{"height", c.input_height}, {"width", c.input_width}}}, {"image_processor_type", "ViTImageProcessor"}};
  if (c.centre_crop()) {
    // Hugging Face's processor with a centre crop: resize to `size`, keep `crop_size`.
    pre["image_processor_type"] = "DeiTImageProcessor";
    pre["do_center_crop"] = true;
    pre["crop_size"] = {{"height", c.input_height}, {"width", c.input_width}};
    pre["size"] = {{"height", c.resize_height > 0 ? c.resize_height : c.input_height},
                   {"width", c.resize_width > 0 ? c.resize_width : c.input_width}};
  }
  return write_text_atomically(dir / "preprocessor_config.json", pre.dump(2) + "\n");
}

// ---- Building blocks ---------------------------------------------------------------------

void layer_norm(const Matrix& x, const LayerNorm& ln, double eps, Matrix& out) {
  out.resize(x.rows(), x.cols());
  const Eigen::Index rows = x.rows();
#pragma omp parallel for schedule(static)
  for (Eigen::Index r = 0; r < rows; ++r) {
    const float* in = x.row(r).data();
    const Eigen::Index n = x.cols();
    double mean = 0.0;
    for (Eigen::Index k = 0; k < n; ++k) mean += in[k];
    mean /= static_cast<double>(n);
    double var = 0.0;
    for (Eigen::Index k = 0; k < n; ++k) {
      const double d = in[k] - mean;
      var += d * d;
    }
    var /= static_cast<double>(n);
    const auto inv = static_cast<float>(1.0 / std::sqrt(var + eps));
    const auto m = static_cast<float>(mean);
    float* o = out.row(r).data();
    for (Eigen::Index k = 0; k < n; ++k) o[k] = (in[k] - m) * inv * ln.gamma[k] + ln.beta[k];
  }
}

void linear(const Matrix& x, const Linear& l, Matrix& out) {
  out.noalias() = x * l.w.transpose();
  if (l.b.size() > 0) out.rowwise() += l.b.transpose();
}

float gelu(float x, bool tanh_approximation) {
  if (tanh_approximation) {
    const float k = 0.7978845608028654f;  // sqrt(2/pi)
    return 0.5f * x * (1.0f + std::tanh(k * (x + 0.044715f * x * x * x)));
  }
  return 0.5f * x * (1.0f + std::erf(x * 0.7071067811865476f));
}

std::vector<PositionTap> position_interpolation_taps(int old_grid, int grid_h, int grid_w) {
  // PyTorch's bicubic (A = -0.75), align_corners=False: source = (dst + 0.5) * in/out - 0.5,
  // taps at floor(source) - 1 .. + 2 clamped to the edge.
  const auto cubic = [](double t, double w[4]) {
    const double A = -0.75;
    const auto c1 = [A](double x) { return ((A + 2) * x - (A + 3)) * x * x + 1; };
    const auto c2 = [A](double x) { return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; };
    w[0] = c2(t + 1);
    w[1] = c1(t);
    w[2] = c1(1 - t);
    w[3] = c2(2 - t);
  };
  const auto taps = [&](int dst, int out_size, int idx[4], double w[4]) {
    const double scale = static_cast<double>(old_grid) / out_size;
    const double src = (dst + 0.5) * scale - 0.5;
    const double f = std::floor(src);
    cubic(src - f, w);
    for (int k = 0; k < 4; ++k) idx[k] = std::clamp(static_cast<int>(f) - 1 + k, 0, old_grid - 1);
  };
  std::vector<PositionTap> out;
  out.reserve(static_cast<std::size_t>(grid_h) * static_cast<std::size_t>(grid_w) * 16);
  for (int y = 0; y < grid_h; ++y) {
    int iy[4];
    double wy[4];
    taps(y, grid_h, iy, wy);
    for (int x = 0; x < grid_w; ++x) {
      int ix[4];
      double wx[4];
      taps(x, grid_w, ix, wx);
      for (int a = 0; a < 4; ++a) {
        for (int b = 0; b < 4; ++b) {
          out.push_back({1 + static_cast<Eigen::Index>(y) * grid_w + x, 1 + static_cast<Eigen::Index>(iy[a]) * old_grid + ix[b], wy[a] * wx[b]});
        }
      }
    }
  }
  return out;
}

Matrix interpolate_positions(const Matrix& position, int grid_h, int grid_w) {
  const Eigen::Index D = position.cols();
  const auto old = static_cast<int>(std::lround(std::sqrt(static_cast<double>(position.rows() - 1))));
  if (old == grid_h && old == grid_w) return position;
  Matrix out(1 + static_cast<Eigen::Index>(grid_h) * grid_w, D);
  out.row(0) = position.row(0);
  const std::vector<PositionTap> taps = position_interpolation_taps(old, grid_h, grid_w);
  Eigen::VectorXd acc(D);
  for (std::size_t i = 0; i < taps.size(); i += 16) {
    acc.setZero();
    for (std::size_t j = i; j < i + 16; ++j) acc += taps[j].weight * position.row(taps[j].in).transpose().cast<double>();
    out.row(taps[i].out) = acc.cast<float>().transpose();
  }
  return out;
}

// ---- Forward -----------------------------------------------------------------------------

bool cpu_has_avx512_kernels() { return gemm::cpu_has_avx512(); }
bool cpu_has_bf16_kernels() { return gemm::cpu_has_avx512_bf16(); }
Precision available_precision(Precision requested) {
  return requested == Precision::BF16 && cpu_has_bf16_kernels() ? Precision::BF16 : Precision::F32;
}

Precision ViTModel::default_precision() { return Precision::BF16; }

namespace detail {

// The linear layers of every block, packed for the kernels in one precision.
struct PackedModel {
  Precision precision = Precision::F32;
  gemm::PackedWeights patch;  // always F32
  struct Layer {
    gemm::PackedWeights qkv, attn_out, fc1, fc2;
  };
  std::vector<Layer> layers;
  std::vector<const void*> fingerprint;  // where the weights were when packed, and their sizes

  [[nodiscard]] std::size_t bytes() const {
    std::size_t n = patch.bytes();
    for (const Layer& l : layers) n += l.qkv.bytes() + l.attn_out.bytes() + l.fc1.bytes() + l.fc2.bytes();
    return n;
  }
};

struct PackCache::State {
  std::mutex mutex;
  std::shared_ptr<const PackedModel> packed;
};

PackCache::PackCache() : state_(std::make_unique<State>()) {}
PackCache::~PackCache() = default;
PackCache::PackCache(const PackCache&) : state_(std::make_unique<State>()) {}
PackCache& PackCache::operator=(const PackCache& other) {
  if (this != &other) invalidate();
  return *this;
}
PackCache::PackCache(PackCache&& other) noexcept : state_(std::move(other.state_)) {}
PackCache& PackCache::operator=(PackCache&& other) noexcept {
  std::swap(state_, other.state_);
  other.invalidate();
  return *this;
}
void PackCache::invalidate() {
  if (!state_) return;
  std::lock_guard lock(state_->mutex);
  state_->packed.reset();
}

}  // namespace detail

std::size_t ViTModel::packed_bytes() const {
  if (!pack_.has_state()) return 0;
  std::lock_guard lock(pack_.state().mutex);
  return pack_.state().packed ? pack_.state().packed->bytes() : 0;
}

namespace {

int thread_count() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

std::vector<const void*> fingerprint(const ViTWeights& w) {
  std::vector<const void*> f;
  const auto add = [&f](const auto& m) {
    f.push_back(m.data());
    f.push_back(reinterpret_cast<const void*>(static_cast<std::uintptr_t>(m.size())));
  };
  add(w.patch_w);
  add(w.patch_b);
  for (const Block& b : w.blocks) {
    for (const Linear* l : {&b.query, &b.key, &b.value, &b.attn_out, &b.fc1, &b.fc2}) {
      add(l->w);
      add(l->b);
    }
  }
  return f;
}

// Precision::BF16 runs the linear layers of the first sixth of the blocks (2 of ViT-B's 12; none of
// a 2-block test model) as split BF16 (gemm::Format::BF16Split, close to F32): their rounding errors
// travel through every later block (ViT-B/16 benchmark: max |p - p_f32| 2.8e-3 with every block in
// BF16, 1.2e-3 with the first two in F32). Split BF16 keeps that accuracy on the AMX tiles, at
// about a third of what the F32 tile cost (bench/README.md, issue 18).
long split_leading_blocks(std::size_t blocks) { return static_cast<long>(blocks / 6); }

gemm::Part part(const Linear& l) { return {l.w.data(), static_cast<int>(l.w.rows()), l.b.size() > 0 ? l.b.data() : nullptr}; }

std::shared_ptr<const detail::PackedModel> pack_model(const ViTWeights& w, Precision precision) {
  auto p = std::make_shared<detail::PackedModel>();
  p->precision = precision;
  p->fingerprint = fingerprint(w);
  const gemm::Format f = precision == Precision::BF16 ? gemm::Format::BF16 : gemm::Format::F32;
  p->patch = gemm::pack({gemm::Part{w.patch_w.data(), static_cast<int>(w.patch_w.rows()), w.patch_b.data()}}, static_cast<int>(w.patch_w.cols()),
                        gemm::Format::F32);
  p->layers.resize(w.blocks.size());
  const auto layers = static_cast<long>(w.blocks.size());
#pragma omp parallel for schedule(dynamic)
  for (long i = 0; i < layers; ++i) {
    const Block& b = w.blocks[static_cast<std::size_t>(i)];
    detail::PackedModel::Layer& l = p->layers[static_cast<std::size_t>(i)];
    const int D = static_cast<int>(b.query.w.cols()), I = static_cast<int>(b.fc1.w.rows());
    const gemm::Format f_block = f == gemm::Format::BF16 && i < split_leading_blocks(w.blocks.size()) ? gemm::Format::BF16Split : f;
    l.qkv = gemm::pack({part(b.query), part(b.key), part(b.value)}, D, f_block);
    l.attn_out = gemm::pack({part(b.attn_out)}, D, f_block);
    l.fc1 = gemm::pack({part(b.fc1)}, D, f_block);
    l.fc2 = gemm::pack({part(b.fc2)}, I, f_block);
  }
  return p;
}

// Activations: row-major with a padded row stride (a multiple of 16 floats plus 16, so that the
// rows of a register tile do not all fall into the same cache set).
struct Buf {
  gemm::AlignedVector<float> v;
  Eigen::Index rows = 0, cols = 0;
  std::size_t ld = 0;
  void resize(Eigen::Index r, Eigen::Index c) {
    rows = r;
    cols = c;
    ld = static_cast<std::size_t>((c + 15) / 16 * 16 + 16);
    if (v.size() < static_cast<std::size_t>(r) * ld) v.resize(static_cast<std::size_t>(r) * ld);
  }
  float* row(Eigen::Index r) { return v.data() + static_cast<std::size_t>(r) * ld; }
  [[nodiscard]] const float* row(Eigen::Index r) const { return v.data() + static_cast<std::size_t>(r) * ld; }
  [[nodiscard]] std::size_t bytes() const { return v.size() * sizeof(float); }
};

using StridedMap = Eigen::Map<Matrix, 0, Eigen::OuterStride<>>;
using ConstStridedMap = Eigen::Map<const Matrix, 0, Eigen::OuterStride<>>;

// y (+)= x W^T + b (then GELU) for the parts stacked along y's columns. With packed weights the
// AVX-512 kernels; without, Eigen's GEMM on column slices of W spread over the cores.
void apply_linear(const float* x, std::size_t ldx, Eigen::Index m, const gemm::PackedWeights* packed, const std::vector<const Linear*>& parts,
                  float* y, std::size_t ldy, bool accumulate, gemm::Activation act, int threads) {
  if (packed != nullptr) {
    gemm::multiply(x, ldx, static_cast<int>(m), *packed, y, ldy, accumulate, act, threads);
    return;
  }
  Eigen::Index col = 0;
  for (const Linear* l : parts) {
    const Eigen::Index n_out = l->w.rows(), k = l->w.cols();
    const ConstStridedMap X(x, m, k, Eigen::OuterStride<>(static_cast<Eigen::Index>(ldx)));
    const int t_count = std::max(1, std::min<int>(threads, static_cast<int>(n_out / 64)));
    const Eigen::Index chunk = ((n_out + t_count - 1) / t_count + 15) / 16 * 16;
#pragma omp parallel for num_threads(t_count) schedule(static, 1)
    for (int t = 0; t < t_count; ++t) {
      const Eigen::Index c0 = t * chunk;
      if (c0 >= n_out) continue;
      const Eigen::Index n = std::min(chunk, n_out - c0);
      StridedMap Y(y + col + c0, m, n, Eigen::OuterStride<>(static_cast<Eigen::Index>(ldy)));
      if (accumulate) Y.noalias() += X * l->w.middleRows(c0, n).transpose();
      else Y.noalias() = X * l->w.middleRows(c0, n).transpose();
      if (l->b.size() > 0) Y.rowwise() += l->b.segment(c0, n).transpose();
    }
    col += n_out;
  }
  if (act != gemm::Activation::None) {
    const auto rows = static_cast<long>(m);
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; ++r) gemm::gelu_inplace(y + static_cast<std::size_t>(r) * ldy, ldy, 1, static_cast<int>(col), act == gemm::Activation::GeluTanh);
  }
}

// LayerNorm of rows [r0, r1) (F32 sums; the public layer_norm() accumulates in double); `out` has
// x's size.
void layer_norm_range(const Buf& x, const LayerNorm& ln, double eps, Buf& out, long r0, long r1) {
  const Eigen::Index n = x.cols;
  for (long r = r0; r < r1; ++r) {
    const Eigen::Map<const Eigen::ArrayXf> in(x.row(r), n);
    Eigen::Map<Eigen::ArrayXf> o(out.row(r), n);
    const float mean = in.sum() / static_cast<float>(n);
    const float var = (in - mean).square().sum() / static_cast<float>(n);
    const auto inv = static_cast<float>(1.0 / std::sqrt(static_cast<double>(var) + eps));
    o = (in - mean) * inv * ln.gamma.array() + ln.beta.array();
  }
}

// LayerNorm of every row.
void layer_norm_rows(const Buf& x, const LayerNorm& ln, double eps, Buf& out) {
  out.resize(x.rows, x.cols);
  const long rows = static_cast<long>(x.rows);
#pragma omp parallel for schedule(static)
  for (long r = 0; r < rows; ++r) layer_norm_range(x, ln, eps, out, r, r + 1);
}

// Attention of one (image, head) pair, query rows [r0, r0 + rows), on the linear layers' kernels
// (bf16: the BF16 ones, as the linear layers of Precision::BF16; else F32): S = Q_h K_h^T with K_h
// packed as the weights, softmax(scale * S) in place, ctx_h = P V_h with V_h packed. kp, vp and
// scores are the calling thread's (scores has `rows` rows at least). Each output row is computed
// alone, so the result does not depend on how the rows are cut.
void attention_rows(const Buf& qkv, Eigen::Index b, Eigen::Index hd, Eigen::Index r0, Eigen::Index rows, Eigen::Index T, Eigen::Index D,
                    int dh, float scale, bool bf16, gemm::PackedWeights& kp, gemm::PackedWeights& vp, Buf& scores, Buf& ctx, Matrix* probs) {
  const float* base = qkv.row(b * T) + hd * dh;
  const auto pack = bf16 ? &gemm::pack_bf16 : &gemm::pack_f32;
  pack(base + D, qkv.ld, static_cast<int>(T), dh, true, kp);
  gemm::multiply(base + static_cast<std::size_t>(r0) * qkv.ld, qkv.ld, static_cast<int>(rows), kp, scores.row(0), scores.ld, false,
                 gemm::Activation::None, 1);
  for (Eigen::Index r2 = 0; r2 < rows; ++r2) {
    Eigen::Map<Eigen::ArrayXf> row(scores.row(r2), T);
    const float mx = row.maxCoeff();
    row = ((row - mx) * scale).exp();
    row *= 1.0f / row.sum();
  }
  pack(base + 2 * D, qkv.ld, dh, static_cast<int>(T), false, vp);
  gemm::multiply(scores.row(0), scores.ld, static_cast<int>(rows), vp, ctx.row(b * T + r0) + hd * dh, ctx.ld, false, gemm::Activation::None,
                 1);
  if (probs != nullptr) {
    probs->middleRows(r0, rows) = ConstStridedMap(scores.row(0), rows, T, Eigen::OuterStride<>(static_cast<Eigen::Index>(scores.ld)));
  }
}

}  // namespace

Result<ForwardOutput> ViTModel::forward(const std::vector<Image>& batch, const ForwardOptions& options) const {
  const ViTConfig& c = config_;
  const ViTWeights& w = weights_;
  if (batch.empty()) return invalid("an empty batch");
#ifdef _OPENMP
  // The calling thread's team size for every parallel region below, restored on return.
  struct TeamSize {
    int saved = omp_get_max_threads();
    explicit TeamSize(int n) {
      if (n > 0) omp_set_num_threads(std::min(n, saved));
    }
    ~TeamSize() { omp_set_num_threads(saved); }
    TeamSize(const TeamSize&) = delete;
    TeamSize& operator=(const TeamSize&) = delete;
  } team(options.threads);
#endif
  const int P = c.patch_size, C = c.num_channels;
  const int gh = batch[0].height / P, gw = batch[0].width / P;
  for (const Image& im : batch) {
    if (im.channels != C || im.height <= 0 || im.width <= 0 || im.height % P != 0 || im.width % P != 0 ||
        im.data.size() != static_cast<std::size_t>(im.channels) * im.height * im.width) {
      return invalid("an input image is " + std::to_string(im.channels) + " x " + std::to_string(im.height) + " x " +
                     std::to_string(im.width) + "; the model takes " + std::to_string(C) +
                     " channels and sides divisible by " + std::to_string(P));
    }
    if (im.height / P != gh || im.width / P != gw) return invalid("all images of a batch must have the same size");
  }

  // Packed weights for the AVX-512 kernels (packed here on first use, and again after a change).
  std::shared_ptr<const detail::PackedModel> packed;
  if (kernels_ == Kernels::Auto && gemm::cpu_has_avx512()) {
    const Precision wanted = precision_;
    const Precision use = available_precision(wanted);
    if (pack_.has_state()) {
      std::lock_guard lock(pack_.state().mutex);
      auto& cached = pack_.state().packed;
      if (!cached || cached->precision != use || cached->fingerprint != fingerprint(w)) {
        cached.reset();  // free the old pack before building the new one
        cached = pack_model(w, use);
      }
      packed = cached;
    } else {
      packed = pack_model(w, use);
    }
  }
  const detail::PackedModel* pk = packed.get();

  const Matrix positions = interpolate_positions(w.position, gh, gw);
  const auto B = static_cast<Eigen::Index>(batch.size());
  const Eigen::Index N = static_cast<Eigen::Index>(gh) * gw, T = N + 1, D = c.hidden_size;
  const int threads = thread_count();

  // Tokens of every image stacked: rows [b*T, (b+1)*T) belong to image b, row b*T is its CLS.
  Buf x, patches;
  x.resize(B * T, D);
  patches.resize(B * N, static_cast<Eigen::Index>(C) * P * P);
  for (Eigen::Index b = 0; b < B; ++b) {
    const Image& image = batch[static_cast<std::size_t>(b)];
    for (int py = 0; py < gh; ++py)
      for (int px = 0; px < gw; ++px) {
        float* row = patches.row(b * N + py * gw + px);
        for (int ch = 0; ch < C; ++ch)
          for (int y = 0; y < P; ++y) {
            const float* src = image.data.data() + (static_cast<std::size_t>(ch) * image.height + py * P + y) * image.width + px * P;
            std::copy(src, src + P, row + (ch * P + y) * P);
          }
      }
  }
  // x = positions (+ CLS); then the patch rows += patches W^T + b.
  for (Eigen::Index b = 0; b < B; ++b) {
    for (Eigen::Index t = 0; t < T; ++t) Eigen::Map<Eigen::RowVectorXf>(x.row(b * T + t), D) = positions.row(t);
    Eigen::Map<Eigen::RowVectorXf>(x.row(b * T), D) += w.cls_token.transpose();
  }

  ForwardOutput out;
  out.grid_h = gh;
  out.grid_w = gw;
  const std::size_t layers = w.blocks.size();
  const int H = c.num_heads, dh = c.head_dim();
  const long pairs = static_cast<long>(B) * H;
  // Filled in place (no allocation while the threads share the work).
  if (options.keep_hidden_states) {
    out.hidden_states.assign(static_cast<std::size_t>(B), std::vector<Matrix>(layers + 2, Matrix(T, D)));
  }
  if (options.keep_attentions) {
    out.attentions.assign(static_cast<std::size_t>(B), std::vector<std::vector<Matrix>>(layers, std::vector<Matrix>(static_cast<std::size_t>(H), Matrix(T, T))));
  }
  const auto keep_hidden = [&](const Buf& m, std::size_t stage) {
    if (!options.keep_hidden_states) return;
    for (Eigen::Index b = 0; b < B; ++b) {
      out.hidden_states[static_cast<std::size_t>(b)][stage] = ConstStridedMap(m.row(b * T), T, D, Eigen::OuterStride<>(static_cast<Eigen::Index>(m.ld)));
    }
  };
  const auto probs_of = [&](std::size_t layer, long p) -> Matrix* {
    if (!options.keep_attentions) return nullptr;
    return &out.attentions[static_cast<std::size_t>(p / H)][layer][static_cast<std::size_t>(p % H)];
  };

  const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
  const gemm::Activation act = c.hidden_act != "gelu" ? gemm::Activation::GeluTanh : gemm::Activation::Gelu;
  Buf h, qkv, ctx, mlp;
  h.resize(B * T, D);
  qkv.resize(B * T, 3 * D);
  ctx.resize(B * T, D);
  mlp.resize(B * T, c.intermediate_size);
  if (pk != nullptr) {
    // The whole forward in one parallel region: its steps (LayerNorm, the conversion of a product's
    // input to bfloat16, the product, attention) are cut into items the threads take as they come
    // (team.hpp), and a step waits only for the items of the one before that are still running. A
    // thread the scheduler parks on a busy machine then holds nobody up, where a barrier per step
    // (about eight per block) made the other thread wait for it each time.
    std::vector<gemm::Product> products;  // per image the patch embedding, then per block qkv, attn_out, fc1, fc2
    products.reserve(static_cast<std::size_t>(B) + 4 * layers);
    for (Eigen::Index b = 0; b < B; ++b) {
      products.emplace_back(patches.row(b * N), patches.ld, false, static_cast<int>(N), pk->patch, x.row(b * T + 1), x.ld, true,
                            gemm::Activation::None, threads);
    }
    for (std::size_t layer = 0; layer < layers; ++layer) {
      const detail::PackedModel::Layer& pl = pk->layers[layer];
      const int m = static_cast<int>(B * T);
      products.emplace_back(h.row(0), h.ld, false, m, pl.qkv, qkv.row(0), qkv.ld, false, gemm::Activation::None, threads);
      products.emplace_back(ctx.row(0), ctx.ld, false, m, pl.attn_out, x.row(0), x.ld, true, gemm::Activation::None, threads);
      products.emplace_back(h.row(0), h.ld, false, m, pl.fc1, mlp.row(0), mlp.ld, false, act, threads);
      products.emplace_back(mlp.row(0), mlp.ld, false, m, pl.fc2, x.row(0), x.ld, true, gemm::Activation::None, threads);
    }
    std::size_t scratch_units = 0;
    for (const gemm::Product& pr : products) scratch_units = std::max(scratch_units, pr.scratch_units());
    gemm::AlignedVector<std::uint16_t> scratch(scratch_units);
    for (gemm::Product& pr : products) pr.set_scratch(scratch.data());
    const long patch_items = B > 0 ? products[0].items() : 0;
    // LayerNorm in pieces of 16 rows; attention per (image, head), its query rows cut in pieces
    // when there are few pairs (ViT-Ti: 3 per image), so that a step has items enough to share.
    constexpr long kNormRows = 16;
    const long rows_total = static_cast<long>(B * T);
    const long norm_items = (rows_total + kNormRows - 1) / kNormRows;
    const long chunks = std::clamp((8L * threads + pairs - 1) / pairs, 1L, 4L);
    const Eigen::Index chunk_rows = ((T + chunks - 1) / chunks + 11) / 12 * 12;
    const bool attention_bf16 = pk->precision == Precision::BF16;
    team::Steps steps;
    const auto forward_steps = [&] {
      team::Steps::Cursor cursor;
      const auto norm = [&](const Buf& in, const LayerNorm& ln, Buf& o) {
        steps.run(cursor, norm_items, [&](long i) {
          layer_norm_range(in, ln, c.layer_norm_eps, o, i * kNormRows, std::min(rows_total, (i + 1) * kNormRows));
        });
      };
      const auto product = [&](const gemm::Product& pr) {
        steps.run(cursor, pr.conversions(), [&](long i) { pr.convert(i); });
        steps.run(cursor, pr.items(), [&](long i) { pr.compute(i); });
      };
      const auto once = [&](auto&& f) { steps.run(cursor, 1, [&](long) { f(); }); };
      gemm::PackedWeights kp, vp;  // this thread's
      Buf scores;
      scores.resize(chunk_rows, T);
      steps.run(cursor, static_cast<long>(B) * patch_items,
                [&](long i) { products[static_cast<std::size_t>(i / patch_items)].compute(i % patch_items); });
      if (options.keep_hidden_states) once([&] { keep_hidden(x, 0); });
      for (std::size_t layer = 0; layer < layers; ++layer) {
        const Block& blk = w.blocks[layer];
        const gemm::Product* pr = &products[static_cast<std::size_t>(B) + 4 * layer];
        norm(x, blk.ln_before, h);
        product(pr[0]);
        steps.run(cursor, pairs * chunks, [&](long item) {
          const long p = item / chunks;
          const Eigen::Index r0 = (item % chunks) * chunk_rows;
          if (r0 >= T) return;
          attention_rows(qkv, p / H, p % H, r0, std::min(chunk_rows, T - r0), T, D, dh, scale, attention_bf16, kp, vp, scores, ctx,
                         probs_of(layer, p));
        });
        // x += ctx Wo^T + bo; x += GELU(LN(x) W1^T + b1) W2^T + b2 (the residuals in the epilogue).
        product(pr[1]);
        norm(x, blk.ln_after, h);
        product(pr[2]);
        product(pr[3]);
        if (options.keep_hidden_states) once([&] { keep_hidden(x, layer + 1); });
      }
      norm(x, w.final_ln, h);
    };
    if (threads > 1) {
#pragma omp parallel num_threads(threads)
      forward_steps();
    } else {
      forward_steps();
    }
    keep_hidden(h, layers + 1);
  } else {
    const Linear patch_linear{w.patch_w, w.patch_b};
    for (Eigen::Index b = 0; b < B; ++b) {
      apply_linear(patches.row(b * N), patches.ld, N, nullptr, {&patch_linear}, x.row(b * T + 1), x.ld, true, gemm::Activation::None, threads);
    }
    keep_hidden(x, 0);
    const auto ld = [](const Buf& m) { return Eigen::OuterStride<>(static_cast<Eigen::Index>(m.ld)); };
    for (std::size_t layer = 0; layer < layers; ++layer) {
      const Block& blk = w.blocks[layer];
      layer_norm_rows(x, blk.ln_before, c.layer_norm_eps, h);
      apply_linear(h.row(0), h.ld, B * T, nullptr, {&blk.query, &blk.key, &blk.value}, qkv.row(0), qkv.ld, false, gemm::Activation::None,
                   threads);
#pragma omp parallel
      {
        Matrix scores(T, T);
#pragma omp for schedule(static)
        for (long p = 0; p < pairs; ++p) {
          const Eigen::Index b = p / H, hd = p % H;
          const float* base = qkv.row(b * T) + hd * dh;
          const ConstStridedMap q(base, T, dh, ld(qkv)), k(base + D, T, dh, ld(qkv)), v(base + 2 * D, T, dh, ld(qkv));
          scores.noalias() = (q * k.transpose()) * scale;
          for (Eigen::Index r2 = 0; r2 < T; ++r2) {
            auto row = scores.row(r2);
            const float mx = row.maxCoeff();
            row = (row.array() - mx).exp();
            row /= row.sum();
          }
          StridedMap(ctx.row(b * T) + hd * dh, T, dh, ld(ctx)).noalias() = scores * v;
          if (Matrix* probs = probs_of(layer, p)) *probs = scores;
        }
      }
      // x += ctx Wo^T + bo; x += GELU(LN(x) W1^T + b1) W2^T + b2 (the residuals in the epilogue).
      apply_linear(ctx.row(0), ctx.ld, B * T, nullptr, {&blk.attn_out}, x.row(0), x.ld, true, gemm::Activation::None, threads);
      layer_norm_rows(x, blk.ln_after, c.layer_norm_eps, h);
      apply_linear(h.row(0), h.ld, B * T, nullptr, {&blk.fc1}, mlp.row(0), mlp.ld, false, act, threads);
      apply_linear(mlp.row(0), mlp.ld, B * T, nullptr, {&blk.fc2}, x.row(0), x.ld, true, gemm::Activation::None, threads);
      keep_hidden(x, layer + 1);
    }
    layer_norm_rows(x, w.final_ln, c.layer_norm_eps, h);
    keep_hidden(h, layers + 1);
  }
  out.embeddings.resize(B, D);
  for (Eigen::Index b = 0; b < B; ++b) out.embeddings.row(b) = Eigen::Map<const Eigen::RowVectorXf>(h.row(b * T), D);
  if (w.has_classifier) {
    linear(out.embeddings, w.classifier, out.logits);
    out.probabilities.resize(out.logits.rows(), out.logits.cols());
    for (Eigen::Index i = 0; i < out.logits.rows(); ++i) {
      if (c.multi_label()) {
        for (Eigen::Index kk = 0; kk < out.logits.cols(); ++kk) out.probabilities(i, kk) = 1.0f / (1.0f + std::exp(-out.logits(i, kk)));
      } else {
        const float mx = out.logits.row(i).maxCoeff();
        out.probabilities.row(i) = (out.logits.row(i).array() - mx).exp();
        out.probabilities.row(i) /= out.probabilities.row(i).sum();
      }
    }
  } else {
    out.logits.resize(B, 0);
    out.probabilities.resize(B, 0);
  }
  return out;
}

// ---- Attention rollout -------------------------------------------------------------------

Matrix attention_rollout(const std::vector<std::vector<Matrix>>& attentions, HeadFusion fusion, float discard_ratio, int grid_h, int grid_w) {
  if (attentions.empty() || attentions[0].empty()) return Matrix::Zero(grid_h, grid_w);
  const Eigen::Index T = attentions[0][0].rows();
  Eigen::MatrixXd result = Eigen::MatrixXd::Identity(T, T);
  for (const auto& heads : attentions) {
    Eigen::MatrixXd fused = heads[0].cast<double>();
    for (std::size_t hd = 1; hd < heads.size(); ++hd) {
      const Eigen::MatrixXd a = heads[hd].cast<double>();
      if (fusion == HeadFusion::Mean) fused += a;
      else if (fusion == HeadFusion::Max) fused = fused.cwiseMax(a);
      else fused = fused.cwiseMin(a);
    }
    if (fusion == HeadFusion::Mean) fused /= static_cast<double>(heads.size());
    if (discard_ratio > 0.0f) {
      // Zero the lowest entries (row-major order, as torch.flatten), never the CLS->CLS entry.
      const auto count = static_cast<std::size_t>(static_cast<double>(T * T) * static_cast<double>(discard_ratio));
      std::vector<std::pair<double, Eigen::Index>> flat;
      flat.reserve(static_cast<std::size_t>(T * T));
      for (Eigen::Index r = 0; r < T; ++r)
        for (Eigen::Index c2 = 0; c2 < T; ++c2) flat.emplace_back(fused(r, c2), r * T + c2);
      std::partial_sort(flat.begin(), flat.begin() + static_cast<std::ptrdiff_t>(count), flat.end());
      for (std::size_t k = 0; k < count; ++k) {
        const Eigen::Index idx = flat[k].second;
        if (idx == 0) continue;
        fused(idx / T, idx % T) = 0.0;
      }
    }
    Eigen::MatrixXd a = (fused + Eigen::MatrixXd::Identity(T, T)) / 2.0;
    for (Eigen::Index r = 0; r < T; ++r) a.row(r) /= a.row(r).sum();
    result = a * result;
  }
  Matrix map(grid_h, grid_w);
  for (int y = 0; y < grid_h; ++y)
    for (int x = 0; x < grid_w; ++x) map(y, x) = static_cast<float>(result(0, 1 + y * grid_w + x));
  const float mx = map.maxCoeff();
  if (mx > 0) map /= mx;
  return map;
}

}  // namespace hilum::inference
