#include "hilum/inference/model_extras.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <fstream>
#include <sstream>
#include <system_error>

#include <nlohmann/json.hpp>

#include "hilum/core/atomic_file.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace hilum::inference {
namespace {

constexpr const char* kFile = "hilum.json";
constexpr std::uintmax_t kMaxBytes = 64u << 20;  // a B/16 reference with 256 axes is ~3 MB

Error invalid(const fs::path& file, const std::string& why) { return Error{ErrorKind::Invalid, file.string() + ": " + why}; }

bool finite_number(const json& v) { return v.is_number() && std::isfinite(v.get<double>()); }

Result<std::vector<double>> numbers(const json& v, const fs::path& file, const std::string& what) {
  if (!v.is_array()) return invalid(file, what + " must be an array of numbers");
  std::vector<double> out;
  out.reserve(v.size());
  for (const auto& x : v) {
    if (!finite_number(x)) return invalid(file, what + " holds a value that is not a finite number");
    out.push_back(x.get<double>());
  }
  return out;
}

json to_json(const Vector& v) {
  json a = json::array();
  for (Eigen::Index i = 0; i < v.size(); ++i) a.push_back(static_cast<double>(v(i)));
  return a;
}

}  // namespace

Result<ModelExtras> read_model_extras(const fs::path& dir, const ViTConfig& config) {
  const fs::path file = dir / kFile;
  std::error_code ec;
  if (!fs::exists(file, ec)) return ModelExtras{};
  const auto size = fs::file_size(file, ec);
  if (ec) return Error{ErrorKind::Io, "cannot read " + file.string() + ": " + ec.message()};
  if (size > kMaxBytes) return Error{ErrorKind::TooLarge, file.string() + " is larger than 64 MB"};
  std::ifstream in(file, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in.good() && !in.eof()) return Error{ErrorKind::Io, "cannot read " + file.string()};
  // Nesting is bounded by the format: refuse anything deeper before building a tree of it.
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text.str()) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '{' || c == '[') deepest = std::max(deepest, ++depth);
    else if (c == '}' || c == ']') --depth;
  }
  if (deepest > 8) return invalid(file, "nested deeper than the format allows");
  const json j = json::parse(text.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return invalid(file, "not a JSON object");

  ModelExtras out;
  if (j.contains("calibration")) {
    const json& c = j["calibration"];
    if (!c.is_object() || !c.contains("labels") || !c.contains("parameters")) return invalid(file, "calibration needs labels and parameters");
    Calibration cal;
    cal.method = c.value("method", "platt");
    if (cal.method != "platt") return invalid(file, "unknown calibration method \"" + cal.method + "\" (this version knows platt)");
    cal.fitted_on = c.value("fitted_on", "");
    cal.images = c.value("images", 0);
    if (!c["labels"].is_array() || !c["parameters"].is_array() || c["labels"].size() != c["parameters"].size()) {
      return invalid(file, "calibration labels and parameters differ in length");
    }
    for (std::size_t i = 0; i < c["labels"].size(); ++i) {
      if (!c["labels"][i].is_string()) return invalid(file, "calibration labels must be strings");
      const std::string label = c["labels"][i].get<std::string>();
      if (std::find(config.labels.begin(), config.labels.end(), label) == config.labels.end()) {
        return invalid(file, "calibration for \"" + label + "\", which is not one of the model's outputs");
      }
      auto ab = numbers(c["parameters"][i], file, "calibration parameters");
      if (!ab) return ab.error();
      if (ab->size() != 2) return invalid(file, "calibration parameters are pairs [a, b]");
      cal.labels.push_back(label);
      cal.scaling.push_back(PlattScaling{(*ab)[0], (*ab)[1]});
    }
    // Aligned with the model's outputs; an output without parameters keeps the plain sigmoid.
    Calibration aligned = cal;
    aligned.labels = config.labels;
    aligned.scaling.assign(config.labels.size(), PlattScaling{});
    for (std::size_t i = 0; i < cal.labels.size(); ++i) {
      const auto at = std::find(config.labels.begin(), config.labels.end(), cal.labels[i]) - config.labels.begin();
      aligned.scaling[static_cast<std::size_t>(at)] = cal.scaling[i];
    }
    out.calibration = std::move(aligned);
  }
  if (j.contains("domain")) {
    const json& d = j["domain"];
    if (!d.is_object()) return invalid(file, "domain must be an object");
    DomainReference ref;
    ref.features = d.value("features", "cls");
    if (ref.features != "cls") return invalid(file, "unknown domain features \"" + ref.features + "\" (this version knows cls)");
    auto mean = numbers(d.value("mean", json()), file, "domain mean");
    if (!mean) return mean.error();
    const auto dim = static_cast<Eigen::Index>(mean->size());
    if (dim != config.hidden_size) return invalid(file, "domain reference of width " + std::to_string(dim) + " for a model of hidden size " + std::to_string(config.hidden_size));
    ref.mean = Vector(dim);
    for (Eigen::Index i = 0; i < dim; ++i) ref.mean(i) = static_cast<float>((*mean)[static_cast<std::size_t>(i)]);
    auto variances = numbers(d.value("variances", json()), file, "domain variances");
    if (!variances) return variances.error();
    const auto k = static_cast<Eigen::Index>(variances->size());
    if (k > dim) return invalid(file, "more domain axes than dimensions");
    const json axes = d.value("axes", json());
    if (!axes.is_array() || static_cast<Eigen::Index>(axes.size()) != k) return invalid(file, "domain axes and variances differ in number");
    ref.axes = Matrix(k, dim);
    ref.variances = Vector(k);
    for (Eigen::Index a = 0; a < k; ++a) {
      auto row = numbers(axes[static_cast<std::size_t>(a)], file, "domain axis");
      if (!row) return row.error();
      if (static_cast<Eigen::Index>(row->size()) != dim) return invalid(file, "a domain axis of the wrong width");
      for (Eigen::Index i = 0; i < dim; ++i) ref.axes(a, i) = static_cast<float>((*row)[static_cast<std::size_t>(i)]);
      const double v = (*variances)[static_cast<std::size_t>(a)];
      if (!(v > 0.0)) return invalid(file, "domain variances must be positive");
      ref.variances(a) = static_cast<float>(v);
    }
    for (const char* key : {"residual_variance", "threshold"}) {
      if (!d.contains(key) || !finite_number(d[key]) || !(d[key].get<double>() > 0.0)) {
        return invalid(file, std::string("domain ") + key + " must be a positive number");
      }
    }
    ref.residual_variance = d["residual_variance"].get<double>();
    ref.threshold = d["threshold"].get<double>();
    ref.threshold_quantile = d.value("threshold_quantile", 0.99);
    ref.images = d.value("images", 0);
    if (d.contains("modalities") && d["modalities"].is_array()) {
      for (const auto& m : d["modalities"]) {
        if (m.is_string()) ref.modalities.push_back(m.get<std::string>());
      }
    }
    if (d.contains("thumbnail")) {
      const json& t = d["thumbnail"];
      if (!t.is_object() || !t.contains("side") || !t["side"].is_number_integer()) return invalid(file, "domain thumbnail needs its side");
      const int side = t["side"].get<int>();
      if (side < 2 || side > 64) return invalid(file, "domain thumbnail side must be 2..64");
      auto tm = numbers(t.value("mean", json()), file, "thumbnail mean");
      if (!tm) return tm.error();
      const Eigen::Index n = static_cast<Eigen::Index>(side) * side;
      if (static_cast<Eigen::Index>(tm->size()) != n) return invalid(file, "thumbnail mean of the wrong size");
      auto tv = numbers(t.value("variances", json()), file, "thumbnail variances");
      if (!tv) return tv.error();
      const auto tk = static_cast<Eigen::Index>(tv->size());
      const json taxes = t.value("axes", json());
      if (tk > n || !taxes.is_array() || static_cast<Eigen::Index>(taxes.size()) != tk) return invalid(file, "thumbnail axes and variances differ in number");
      ref.thumbnail_side = side;
      ref.thumbnail_mean = Vector(n);
      for (Eigen::Index i = 0; i < n; ++i) ref.thumbnail_mean(i) = static_cast<float>((*tm)[static_cast<std::size_t>(i)]);
      ref.thumbnail_axes = Matrix(tk, n);
      ref.thumbnail_variances = Vector(tk);
      for (Eigen::Index a = 0; a < tk; ++a) {
        auto row = numbers(taxes[static_cast<std::size_t>(a)], file, "thumbnail axis");
        if (!row) return row.error();
        if (static_cast<Eigen::Index>(row->size()) != n) return invalid(file, "a thumbnail axis of the wrong size");
        for (Eigen::Index i = 0; i < n; ++i) ref.thumbnail_axes(a, i) = static_cast<float>((*row)[static_cast<std::size_t>(i)]);
        if (!((*tv)[static_cast<std::size_t>(a)] > 0.0)) return invalid(file, "thumbnail variances must be positive");
        ref.thumbnail_variances(a) = static_cast<float>((*tv)[static_cast<std::size_t>(a)]);
      }
      for (const char* key : {"residual_variance", "threshold"}) {
        if (!t.contains(key) || !finite_number(t[key]) || !(t[key].get<double>() > 0.0)) {
          return invalid(file, std::string("thumbnail ") + key + " must be a positive number");
        }
      }
      ref.thumbnail_residual_variance = t["residual_variance"].get<double>();
      ref.thumbnail_threshold = t["threshold"].get<double>();
    }
    if (d.contains("populations") && d["populations"].is_array()) {
      for (const auto& p : d["populations"]) {
        if (!p.is_object()) return invalid(file, "domain populations must be objects");
        Population pop;
        pop.name = p.value("name", "");
        pop.min_age_years = p.value("min_age_years", 0.0);
        pop.max_age_years = p.value("max_age_years", 0.0);
        pop.images = p.value("images", 0);
        if (!std::isfinite(pop.min_age_years) || !std::isfinite(pop.max_age_years) || pop.min_age_years < 0 ||
            pop.max_age_years < pop.min_age_years) {
          return invalid(file, "population \"" + pop.name + "\" has an impossible age range");
        }
        ref.populations.push_back(std::move(pop));
      }
    }
    out.domain = std::move(ref);
  }
  return out;
}

Status write_model_extras(const fs::path& dir, const ModelExtras& extras) {
  json j = json::object();
  j["format"] = 1;
  if (extras.calibration) {
    const Calibration& c = *extras.calibration;
    json params = json::array();
    for (const auto& s : c.scaling) params.push_back({s.a, s.b});
    j["calibration"] = {{"method", c.method}, {"labels", c.labels}, {"parameters", params}, {"fitted_on", c.fitted_on}, {"images", c.images}};
  }
  if (extras.domain) {
    const DomainReference& d = *extras.domain;
    json axes = json::array();
    for (Eigen::Index a = 0; a < d.axes.rows(); ++a) {
      json row = json::array();
      for (Eigen::Index i = 0; i < d.axes.cols(); ++i) row.push_back(static_cast<double>(d.axes(a, i)));
      axes.push_back(std::move(row));
    }
    json pops = json::array();
    for (const auto& p : d.populations) {
      pops.push_back({{"name", p.name}, {"min_age_years", p.min_age_years}, {"max_age_years", p.max_age_years}, {"images", p.images}});
    }
    j["domain"] = {{"features", d.features},       {"mean", to_json(d.mean)},
                   {"axes", axes},                 {"variances", to_json(d.variances)},
                   {"residual_variance", d.residual_variance}, {"threshold", d.threshold},
                   {"threshold_quantile", d.threshold_quantile}, {"images", d.images},
                   {"modalities", d.modalities},   {"populations", pops}};
    if (d.thumbnail_side > 0) {
      json taxes = json::array();
      for (Eigen::Index a = 0; a < d.thumbnail_axes.rows(); ++a) {
        json row = json::array();
        for (Eigen::Index i = 0; i < d.thumbnail_axes.cols(); ++i) row.push_back(static_cast<double>(d.thumbnail_axes(a, i)));
        taxes.push_back(std::move(row));
      }
      j["domain"]["thumbnail"] = {{"side", d.thumbnail_side}, {"mean", to_json(d.thumbnail_mean)}, {"axes", taxes},
                                  {"variances", to_json(d.thumbnail_variances)}, {"residual_variance", d.thumbnail_residual_variance},
                                  {"threshold", d.thumbnail_threshold}};
    }
  }
  const std::string failure = core::write_file_atomically(dir / kFile, j.dump(1) + "\n");
  if (!failure.empty()) return Error{ErrorKind::Io, failure};
  return core::Done{};
}

Matrix calibrated_probabilities(const Matrix& logits, const std::optional<Calibration>& calibration) {
  Matrix p(logits.rows(), logits.cols());
  for (Eigen::Index j = 0; j < logits.cols(); ++j) {
    PlattScaling s;
    if (calibration && static_cast<std::size_t>(j) < calibration->scaling.size()) s = calibration->scaling[static_cast<std::size_t>(j)];
    for (Eigen::Index i = 0; i < logits.rows(); ++i) {
      const double z = s.a * static_cast<double>(logits(i, j)) + s.b;
      p(i, j) = static_cast<float>(1.0 / (1.0 + std::exp(-z)));
    }
  }
  return p;
}

namespace {

double subspace_distance(const Vector& mean, const Matrix& axes, const Vector& variances, double residual_variance, const float* x_in, Eigen::Index n) {
  if (mean.size() != n || n == 0) return std::numeric_limits<double>::infinity();
  Eigen::VectorXd x(n);
  for (Eigen::Index i = 0; i < n; ++i) x(i) = static_cast<double>(x_in[i]) - static_cast<double>(mean(i));
  double along = 0.0;
  Eigen::VectorXd off = x;
  for (Eigen::Index a = 0; a < axes.rows(); ++a) {
    const Eigen::VectorXd axis = axes.row(a).transpose().cast<double>();
    const double z = axis.dot(x);
    along += z * z / static_cast<double>(variances(a));
    off -= z * axis;
  }
  const double d2 = along + off.squaredNorm() / residual_variance;
  return std::sqrt(d2 / static_cast<double>(n));
}

}  // namespace

double domain_distance(const DomainReference& r, const float* embedding, int dim) {
  return subspace_distance(r.mean, r.axes, r.variances, r.residual_variance, embedding, dim);
}

std::vector<float> domain_thumbnail(const float* grey, int width, int height, int side) {
  std::vector<float> t = resize_antialiased(grey, width, height, side, side);
  double sum = 0.0, sq = 0.0;
  for (float v : t) {
    sum += v;
    sq += static_cast<double>(v) * v;
  }
  const double n = static_cast<double>(t.size());
  const double mean = sum / n;
  const double sd = std::sqrt(std::max(sq / n - mean * mean, 0.0));
  for (float& v : t) v = static_cast<float>(sd > 1e-6 ? (v - mean) / sd : 0.0);
  return t;
}

double thumbnail_distance(const DomainReference& r, const std::vector<float>& thumbnail) {
  if (r.thumbnail_side <= 0) return std::numeric_limits<double>::infinity();
  return subspace_distance(r.thumbnail_mean, r.thumbnail_axes, r.thumbnail_variances, r.thumbnail_residual_variance, thumbnail.data(),
                           static_cast<Eigen::Index>(thumbnail.size()));
}

}  // namespace hilum::inference
