#include "hilum/inference/model_extras.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <system_error>
#include <utility>

#include <nlohmann/json.hpp>

#include "hilum/core/atomic_file.hpp"
#include "json_file.hpp"

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

// A subspace description from `o` (the domain object or its "thumbnail"), `n` values wide.
Result<Subspace> read_subspace(const json& o, Eigen::Index n, const fs::path& file, const std::string& what) {
  Subspace sub;
  auto mean = numbers(o.value("mean", json()), file, what + " mean");
  if (!mean) return mean.error();
  if (static_cast<Eigen::Index>(mean->size()) != n) {
    return invalid(file, what + " of width " + std::to_string(mean->size()) + " where " + std::to_string(n) + " values were expected");
  }
  sub.mean = Vector(n);
  for (Eigen::Index i = 0; i < n; ++i) sub.mean(i) = static_cast<float>((*mean)[static_cast<std::size_t>(i)]);
  auto variances = numbers(o.value("variances", json()), file, what + " variances");
  if (!variances) return variances.error();
  const auto k = static_cast<Eigen::Index>(variances->size());
  const json axes = o.value("axes", json());
  if (k > n || !axes.is_array() || static_cast<Eigen::Index>(axes.size()) != k) return invalid(file, what + " axes and variances differ in number");
  sub.axes = Matrix(k, n);
  sub.variances = Vector(k);
  for (Eigen::Index a = 0; a < k; ++a) {
    auto row = numbers(axes[static_cast<std::size_t>(a)], file, what + " axis");
    if (!row) return row.error();
    if (static_cast<Eigen::Index>(row->size()) != n) return invalid(file, "a " + what + " axis of the wrong width");
    for (Eigen::Index i = 0; i < n; ++i) sub.axes(a, i) = static_cast<float>((*row)[static_cast<std::size_t>(i)]);
    const double v = (*variances)[static_cast<std::size_t>(a)];
    if (!(v > 0.0)) return invalid(file, what + " variances must be positive");
    sub.variances(a) = static_cast<float>(v);
  }
  for (const char* key : {"residual_variance", "threshold"}) {
    if (!o.contains(key) || !finite_number(o[key]) || !(o[key].get<double>() > 0.0)) {
      return invalid(file, what + " " + key + " must be a positive number");
    }
  }
  sub.residual_variance = o["residual_variance"].get<double>();
  sub.threshold = o["threshold"].get<double>();
  sub.quantile = o.value("threshold_quantile", 0.99);
  sub.images = o.value("images", 0);
  return sub;
}

void write_subspace(json& o, const Subspace& sub) {
  json axes = json::array();
  for (Eigen::Index a = 0; a < sub.axes.rows(); ++a) {
    json row = json::array();
    for (Eigen::Index i = 0; i < sub.axes.cols(); ++i) row.push_back(static_cast<double>(sub.axes(a, i)));
    axes.push_back(std::move(row));
  }
  o["mean"] = to_json(sub.mean);
  o["axes"] = std::move(axes);
  o["variances"] = to_json(sub.variances);
  o["residual_variance"] = sub.residual_variance;
  o["threshold"] = sub.threshold;
  o["threshold_quantile"] = sub.quantile;
  o["images"] = sub.images;
}


// A calibration object (`what` names it in messages), aligned with the model's outputs: an output
// without parameters keeps the plain sigmoid.
Result<Calibration> read_calibration(const json& c, const ViTConfig& config, const fs::path& file, const std::string& what) {
  if (!c.is_object() || !c.contains("labels") || !c.contains("parameters")) return invalid(file, what + " needs labels and parameters");
  Calibration cal;
  cal.method = c.value("method", "platt");
  if (cal.method != "platt") return invalid(file, "unknown " + what + " method \"" + cal.method + "\" (this version knows platt)");
  cal.fitted_on = c.value("fitted_on", "");
  cal.images = c.value("images", 0);
  if (!c["labels"].is_array() || !c["parameters"].is_array() || c["labels"].size() != c["parameters"].size()) {
    return invalid(file, what + " labels and parameters differ in length");
  }
  Calibration aligned = cal;
  aligned.labels = config.labels;
  aligned.scaling.assign(config.labels.size(), PlattScaling{});
  for (std::size_t i = 0; i < c["labels"].size(); ++i) {
    if (!c["labels"][i].is_string()) return invalid(file, what + " labels must be strings");
    const std::string label = c["labels"][i].get<std::string>();
    const auto at = std::find(config.labels.begin(), config.labels.end(), label);
    if (at == config.labels.end()) return invalid(file, what + " for \"" + label + "\", which is not one of the model's outputs");
    auto ab = numbers(c["parameters"][i], file, what + " parameters");
    if (!ab) return ab.error();
    if (ab->size() != 2) return invalid(file, what + " parameters are pairs [a, b]");
    aligned.scaling[static_cast<std::size_t>(at - config.labels.begin())] = PlattScaling{(*ab)[0], (*ab)[1]};
  }
  return aligned;
}

json calibration_json(const Calibration& c) {
  json params = json::array();
  for (const auto& s : c.scaling) params.push_back({s.a, s.b});
  return {{"method", c.method}, {"labels", c.labels}, {"parameters", params}, {"fitted_on", c.fitted_on}, {"images", c.images}};
}

}  // namespace

Result<ModelExtras> read_model_extras(const fs::path& dir, const ViTConfig& config) {
  const fs::path file = dir / kFile;
  std::error_code ec;
  if (!fs::exists(file, ec)) return ModelExtras{};
  // The format nests 4 levels (domain > thumbnail > axes > row); a B/16 reference is a few MB.
  auto parsed = detail::read_json(file, nullptr, detail::JsonLimits{kMaxBytes, 8});
  if (!parsed) return Error{parsed.error().kind, file.string() + ": " + parsed.error().message};
  const json& j = *parsed;
  if (!j.is_object()) return invalid(file, "not a JSON object");

  ModelExtras out;
  if (j.contains("calibration")) {
    auto cal = read_calibration(j["calibration"], config, file, "calibration");
    if (!cal) return cal.error();
    out.calibration = std::move(cal.value());
  }
  if (j.contains("domain")) {
    const json& d = j["domain"];
    if (!d.is_object()) return invalid(file, "domain must be an object");
    DomainReference ref;
    ref.features = d.value("features", "cls");
    if (ref.features != "cls" && ref.features != "none") {
      return invalid(file, "unknown domain features \"" + ref.features + "\" (this version knows cls and none)");
    }
    if (ref.features == "cls") {
      if (const json m = d.value("mean", json()); m.is_array() && static_cast<int>(m.size()) != config.hidden_size) {
        return invalid(file, "domain reference of width " + std::to_string(m.size()) + " for a model of hidden size " + std::to_string(config.hidden_size));
      }
      auto embedding = read_subspace(d, config.hidden_size, file, "domain");
      if (!embedding) return embedding.error();
      ref.embedding = std::move(embedding.value());
    }
    if (d.contains("thumbnail")) {
      const json& t = d["thumbnail"];
      if (!t.is_object() || !t.contains("side") || !t["side"].is_number_integer()) return invalid(file, "domain thumbnail needs its side");
      const int side = t["side"].get<int>();
      if (side < 2 || side > 64) return invalid(file, "domain thumbnail side must be 2..64");
      auto thumbnail = read_subspace(t, static_cast<Eigen::Index>(side) * side, file, "thumbnail");
      if (!thumbnail) return thumbnail.error();
      ref.thumbnail_side = side;
      ref.thumbnail = std::move(thumbnail.value());
    }
    if (d.contains("statistics")) {
      const json& t = d["statistics"];
      if (!t.is_object()) return invalid(file, "domain statistics must be an object");
      auto statistics = read_subspace(t, kDomainStatistics, file, "statistics");
      if (!statistics) return statistics.error();
      ref.statistics = std::move(statistics.value());
    }
    if (ref.features == "none" && ref.thumbnail_side == 0 && ref.statistics.mean.size() == 0) {
      return invalid(file, "a domain reference with features \"none\" needs its thumbnail or statistics part");
    }
    if (d.contains("modalities") && d["modalities"].is_array()) {
      for (const auto& m : d["modalities"]) {
        if (m.is_string()) ref.modalities.push_back(m.get<std::string>());
      }
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
        if (p.contains("centroid")) {
          auto centroid = numbers(p["centroid"], file, "population centroid");
          if (!centroid) return centroid.error();
          if (static_cast<int>(centroid->size()) != config.hidden_size) {
            return invalid(file, "population \"" + pop.name + "\" has a centroid of width " + std::to_string(centroid->size()) +
                                     " for a model of hidden size " + std::to_string(config.hidden_size));
          }
          pop.centroid = Eigen::Map<const Eigen::VectorXd>(centroid->data(), static_cast<Eigen::Index>(centroid->size())).cast<float>();
        }
        if (p.contains("calibration")) {
          auto cal = read_calibration(p["calibration"], config, file, "population \"" + pop.name + "\" calibration");
          if (!cal) return cal.error();
          pop.calibration = std::move(cal.value());
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
    j["calibration"] = calibration_json(*extras.calibration);
  }
  if (extras.domain) {
    const DomainReference& d = *extras.domain;
    json pops = json::array();
    for (const auto& p : d.populations) {
      json pj = {{"name", p.name}, {"min_age_years", p.min_age_years}, {"max_age_years", p.max_age_years}, {"images", p.images}};
      if (p.centroid.size() > 0) pj["centroid"] = to_json(p.centroid);
      if (p.calibration) pj["calibration"] = calibration_json(*p.calibration);
      pops.push_back(std::move(pj));
    }
    const bool features = d.embedding.mean.size() > 0;
    json o = {{"features", features ? d.features : std::string("none")}, {"modalities", d.modalities}, {"populations", pops}};
    if (features) write_subspace(o, d.embedding);
    if (d.thumbnail_side > 0) {
      json t = {{"side", d.thumbnail_side}};
      write_subspace(t, d.thumbnail);
      o["thumbnail"] = std::move(t);
    }
    if (d.statistics.mean.size() > 0) {
      json t = {{"features", "standardised: histogram16 over -3..3 sd, tails beyond 2.5 sd, gradient mean/p90, skewness, mirror difference"}};
      write_subspace(t, d.statistics);
      o["statistics"] = std::move(t);
    }
    j["domain"] = std::move(o);
  }
  if (auto written = core::write_file_atomically(dir / kFile, j.dump(1) + "\n"); !written)
    return Error{ErrorKind::Io, written.error().message};
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

int choose_population(const ModelExtras& extras, const float* embedding, Eigen::Index n, std::optional<double> age_years) {
  return pick_population(extras, embedding, n, age_years).index;
}

PopulationPick pick_population(const ModelExtras& extras, const float* embedding, Eigen::Index n, std::optional<double> age_years) {
  using By = PopulationPick::By;
  if (!extras.domain || extras.domain->populations.empty()) return {};
  const auto& pops = extras.domain->populations;
  int best = -1;
  double best_gap = std::numeric_limits<double>::infinity();
  if (age_years && std::isfinite(*age_years)) {
    for (std::size_t i = 0; i < pops.size(); ++i) {
      if (pops[i].max_age_years <= 0.0) continue;  // ages unknown
      const double gap = *age_years < pops[i].min_age_years ? pops[i].min_age_years - *age_years
                         : *age_years > pops[i].max_age_years ? *age_years - pops[i].max_age_years
                                                                : 0.0;
      if (gap < best_gap) {
        best_gap = gap;
        best = static_cast<int>(i);
      }
    }
    if (best >= 0) return {best, By::Age};
  }
  if (pops.size() == 1) return {0, By::OnlyOne};
  if (embedding == nullptr) return {};
  const Eigen::Map<const Eigen::VectorXf> x(embedding, n);
  for (std::size_t i = 0; i < pops.size(); ++i) {
    if (pops[i].centroid.size() != n) continue;
    const double d = (x - pops[i].centroid).squaredNorm();
    if (d < best_gap) {
      best_gap = d;
      best = static_cast<int>(i);
    }
  }
  return best >= 0 ? PopulationPick{best, By::Embedding} : PopulationPick{};
}

const std::optional<Calibration>& calibration_for(const ModelExtras& extras, int population) {
  if (extras.domain && population >= 0 && static_cast<std::size_t>(population) < extras.domain->populations.size()) {
    const auto& own = extras.domain->populations[static_cast<std::size_t>(population)].calibration;
    if (own) return own;
  }
  return extras.calibration;
}

Matrix calibrated_probabilities(const ModelExtras& extras, const Matrix& logits, const Matrix& embeddings,
                                const std::vector<std::optional<double>>& ages, std::vector<PopulationPick>* chosen) {
  Matrix p(logits.rows(), logits.cols());
  if (chosen != nullptr) chosen->assign(static_cast<std::size_t>(logits.rows()), PopulationPick{});
  for (Eigen::Index i = 0; i < logits.rows(); ++i) {
    const std::optional<double> age = static_cast<std::size_t>(i) < ages.size() ? ages[static_cast<std::size_t>(i)] : std::nullopt;
    const bool has_embedding = i < embeddings.rows() && embeddings.cols() > 0;
    const Eigen::VectorXf e = has_embedding ? Eigen::VectorXf(embeddings.row(i).transpose()) : Eigen::VectorXf();
    const PopulationPick pick = pick_population(extras, has_embedding ? e.data() : nullptr, e.size(), age);
    p.row(i) = calibrated_probabilities(logits.row(i), calibration_for(extras, pick.index));
    if (chosen != nullptr) (*chosen)[static_cast<std::size_t>(i)] = pick;
  }
  return p;
}

double distance(const Subspace& sub, const float* x_in, Eigen::Index n) {
  if (sub.mean.size() != n || n == 0) return std::numeric_limits<double>::infinity();
  Eigen::VectorXd x(n);
  for (Eigen::Index i = 0; i < n; ++i) x(i) = static_cast<double>(x_in[i]) - static_cast<double>(sub.mean(i));
  double along = 0.0;
  Eigen::VectorXd off = x;
  for (Eigen::Index a = 0; a < sub.axes.rows(); ++a) {
    const Eigen::VectorXd axis = sub.axes.row(a).transpose().cast<double>();
    const double z = axis.dot(x);
    along += z * z / static_cast<double>(sub.variances(a));
    off -= z * axis;
  }
  const double d2 = along + off.squaredNorm() / sub.residual_variance;
  return std::sqrt(d2 / static_cast<double>(n));
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

std::vector<float> domain_statistics(const float* grey, int width, int height) {
  std::vector<float> out(kDomainStatistics, 0.0f);
  if (grey == nullptr || width <= 0 || height <= 0) return out;
  const auto n = static_cast<std::size_t>(width) * static_cast<std::size_t>(height);
  const double count = static_cast<double>(n);
  // Standardised first, so that a window's level and width (a DICOM file's automatic window
  // against a JPEG's plain grey) do not count, only the shape of what is there.
  std::vector<double> z(n);
  double sum = 0.0, sq = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    z[i] = std::isfinite(grey[i]) ? std::clamp(static_cast<double>(grey[i]), 0.0, 1.0) : 0.0;
    sum += z[i];
    sq += z[i] * z[i];
  }
  const double mean = sum / count;
  const double sd = std::sqrt(std::max(sq / count - mean * mean, 0.0));
  for (double& v : z) v = sd > 1e-6 ? (v - mean) / sd : 0.0;
  const auto at = [&](int x, int y) { return z[static_cast<std::size_t>(y) * static_cast<std::size_t>(width) + static_cast<std::size_t>(x)]; };
  double low = 0.0, high = 0.0, cube = 0.0, mirror = 0.0, gradient_sum = 0.0;
  std::vector<double> gradient;
  gradient.reserve(n);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const double v = at(x, y);
      out[static_cast<std::size_t>(std::clamp(static_cast<int>(std::floor((v + 3.0) / 6.0 * 16.0)), 0, 15))] += 1.0f;
      low += v <= -2.5 ? 1.0 : 0.0;
      high += v >= 2.5 ? 1.0 : 0.0;
      cube += v * v * v;
      mirror += std::abs(v - at(width - 1 - x, y));
      // central differences inside, one-sided at the borders (as numpy.gradient)
      const double gx = width < 2 ? 0.0 : x == 0 ? at(1, y) - v : x == width - 1 ? v - at(x - 1, y) : (at(x + 1, y) - at(x - 1, y)) / 2.0;
      const double gy = height < 2 ? 0.0 : y == 0 ? at(x, 1) - v : y == height - 1 ? v - at(x, y - 1) : (at(x, y + 1) - at(x, y - 1)) / 2.0;
      gradient.push_back(std::hypot(gx, gy));
      gradient_sum += gradient.back();
    }
  }
  for (std::size_t b = 0; b < 16; ++b) out[b] = static_cast<float>(out[b] / count);
  const auto p90 = gradient.begin() + static_cast<std::ptrdiff_t>(static_cast<double>(n - 1) * 0.9);
  std::nth_element(gradient.begin(), p90, gradient.end());
  out[16] = static_cast<float>(low / count);
  out[17] = static_cast<float>(high / count);
  out[18] = static_cast<float>(gradient_sum / count);
  out[19] = static_cast<float>(*p90);
  out[20] = static_cast<float>(cube / count);
  out[21] = static_cast<float>(mirror / count);
  return out;
}

double corner_content(const float* grey, int width, int height) {
  if (grey == nullptr || width <= 0 || height <= 0) return 1.0;
  const auto n = static_cast<std::size_t>(width) * static_cast<std::size_t>(height);
  std::vector<float> sorted(grey, grey + n);
  for (float& v : sorted) v = std::isfinite(v) ? v : 0.0f;
  const auto at_quantile = [&](double q) {
    const auto k = sorted.begin() + static_cast<std::ptrdiff_t>(q * static_cast<double>(n - 1));
    std::nth_element(sorted.begin(), k, sorted.end());
    return static_cast<double>(*k);
  };
  const double low = at_quantile(0.01), high = at_quantile(0.99);
  if (!(high - low > 1e-6)) return 1.0;
  const double cut = low + 0.08 * (high - low);
  std::vector<unsigned char> content(n);
  std::vector<int> row_count(static_cast<std::size_t>(height), 0), column_count(static_cast<std::size_t>(width), 0);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const std::size_t i = static_cast<std::size_t>(y) * static_cast<std::size_t>(width) + static_cast<std::size_t>(x);
      const float v = grey[i];
      content[i] = std::isfinite(v) && v > cut ? 1 : 0;
      row_count[static_cast<std::size_t>(y)] += content[i];
      column_count[static_cast<std::size_t>(x)] += content[i];
    }
  }
  const auto span = [](const std::vector<int>& counts, int across) -> std::pair<int, int> {
    int first = -1, last = -1;
    for (int i = 0; i < static_cast<int>(counts.size()); ++i) {
      if (counts[static_cast<std::size_t>(i)] > 0.03 * across) {
        if (first < 0) first = i;
        last = i;
      }
    }
    return {first, last + 1};
  };
  const auto [y0, y1] = span(row_count, width);
  const auto [x0, x1] = span(column_count, height);
  const int h = y1 - y0, w = x1 - x0;
  if (y0 < 0 || x0 < 0 || h < std::max(2, height / 10) || w < std::max(2, width / 10)) return 1.0;
  std::array<double, 4> filled{}, area{};
  for (int y = 0; y < h; ++y) {
    const double dy = (y + 0.5 - h / 2.0) / (h / 2.0);
    for (int x = 0; x < w; ++x) {
      const double dx = (x + 0.5 - w / 2.0) / (w / 2.0);
      if (dx * dx + dy * dy < 1.1) continue;
      const std::size_t corner = (dy < 0.0 ? 0u : 2u) + (dx < 0.0 ? 0u : 1u);
      area[corner] += 1.0;
      filled[corner] += content[static_cast<std::size_t>(y0 + y) * static_cast<std::size_t>(width) + static_cast<std::size_t>(x0 + x)];
    }
  }
  double fullest = 0.0;
  for (std::size_t c = 0; c < 4; ++c) fullest = std::max(fullest, area[c] > 0.0 ? filled[c] / area[c] : 1.0);
  return fullest;
}

std::vector<float> domain_pixels(const DomainReference& domain, const float* grey, int width, int height) {
  std::vector<float> out;
  if (domain.thumbnail_side > 0) out = domain_thumbnail(grey, width, height, domain.thumbnail_side);
  if (domain.statistics.mean.size() > 0) {
    const std::vector<float> s = domain_statistics(grey, width, height);
    out.insert(out.end(), s.begin(), s.end());
  }
  return out;
}

PixelScores pixel_scores(const DomainReference& domain, const std::vector<float>& pixels) {
  const Eigen::Index side = domain.thumbnail_side > 0 ? static_cast<Eigen::Index>(domain.thumbnail_side) * domain.thumbnail_side : 0;
  const Eigen::Index statistics = domain.statistics.mean.size() > 0 ? kDomainStatistics : 0;
  PixelScores out;
  if (side + statistics == 0) return out;
  if (static_cast<Eigen::Index>(pixels.size()) != side + statistics) {
    out.thumbnail = out.statistics = std::numeric_limits<double>::infinity();
    return out;
  }
  if (side > 0) out.thumbnail = distance(domain.thumbnail, pixels.data(), side) / domain.thumbnail.threshold;
  if (statistics > 0) out.statistics = distance(domain.statistics, pixels.data() + side, statistics) / domain.statistics.threshold;
  return out;
}

double pixel_score(const DomainReference& domain, const std::vector<float>& pixels) {
  const PixelScores parts = pixel_scores(domain, pixels);
  return std::max(parts.thumbnail, parts.statistics);
}

}  // namespace hilum::inference
