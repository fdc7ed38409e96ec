// hilum.json beside a model's weights: calibration and domain reference survive a round trip,
// are aligned with the model's outputs, and a damaged or mismatched file is refused with a reason.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <limits>

#include <nlohmann/json.hpp>

#include "hilum/inference/model_extras.hpp"
#include "temp_dir_test.hpp"

namespace hilum::test {
namespace {

namespace fs = std::filesystem;
using inference::Calibration;
using inference::DomainReference;
using inference::ModelExtras;
using inference::Population;

inference::ViTConfig config3() {
  inference::ViTConfig c;
  c.hidden_size = 4;
  c.labels = {"Pneumonia", "No Finding", "Effusion"};
  c.problem_type = "multi_label_classification";
  return c;
}

ModelExtras sample_extras() {
  ModelExtras e;
  Calibration c;
  c.labels = {"Effusion", "Pneumonia"};  // not in the model's order, and one output missing
  c.scaling = {{2.0, -0.5}, {0.5, 1.0}};
  c.fitted_on = "test";
  c.images = 10;
  e.calibration = c;
  DomainReference d;
  d.embedding.mean = inference::Vector::Zero(4);
  d.embedding.mean(0) = 1.0f;
  d.embedding.axes = inference::Matrix::Zero(2, 4);
  d.embedding.axes(0, 0) = 1.0f;
  d.embedding.axes(1, 1) = 1.0f;
  d.embedding.variances = inference::Vector(2);
  d.embedding.variances << 4.0f, 1.0f;
  d.embedding.residual_variance = 0.25;
  d.embedding.threshold = 1.5;
  d.embedding.images = 100;
  d.modalities = {"CR", "DX"};
  Population children, adults;
  children.name = "pediatric";
  children.min_age_years = 1.0;
  children.max_age_years = 5.0;
  children.images = 60;
  adults.name = "adult";
  adults.min_age_years = 18.0;
  adults.max_age_years = 90.0;
  adults.images = 40;
  d.populations = {children, adults};
  d.thumbnail_side = 2;
  d.thumbnail.mean = inference::Vector::Zero(4);
  d.thumbnail.axes = inference::Matrix::Zero(1, 4);
  d.thumbnail.axes(0, 3) = 1.0f;
  d.thumbnail.variances = inference::Vector::Constant(1, 9.0f);
  d.thumbnail.residual_variance = 1.0;
  d.thumbnail.threshold = 2.0;
  e.domain = d;
  return e;
}

class ModelExtrasTest : public TempDirTest {};

TEST_F(ModelExtrasTest, NoFileMeansNoExtras) {
  auto e = inference::read_model_extras(dir_, config3());
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE(e->calibration.has_value());
  EXPECT_FALSE(e->domain.has_value());
}

TEST_F(ModelExtrasTest, RoundTripAlignsCalibrationWithTheOutputs) {
  ASSERT_TRUE(inference::write_model_extras(dir_, sample_extras()).ok());
  auto e = inference::read_model_extras(dir_, config3());
  ASSERT_TRUE(e.ok()) << e.error().message;
  ASSERT_TRUE(e->calibration.has_value());
  ASSERT_EQ(e->calibration->scaling.size(), 3u);
  EXPECT_EQ(e->calibration->labels, config3().labels);
  EXPECT_EQ(e->calibration->scaling[0].a, 0.5);   // Pneumonia
  EXPECT_EQ(e->calibration->scaling[1].a, 1.0);   // No Finding: none given, identity
  EXPECT_EQ(e->calibration->scaling[1].b, 0.0);
  EXPECT_EQ(e->calibration->scaling[2].a, 2.0);   // Effusion
  EXPECT_EQ(e->calibration->scaling[2].b, -0.5);
  // Calibrated probabilities use each output's own scaling.
  inference::Matrix logits(1, 3);
  logits << 1.0f, 1.0f, 1.0f;
  const auto p = inference::calibrated_probabilities(logits, e->calibration);
  EXPECT_NEAR(p(0, 0), 1.0 / (1.0 + std::exp(-1.5)), 1e-6);
  EXPECT_NEAR(p(0, 1), 1.0 / (1.0 + std::exp(-1.0)), 1e-6);
  EXPECT_NEAR(p(0, 2), 1.0 / (1.0 + std::exp(-1.5)), 1e-6);
  ASSERT_TRUE(e->domain.has_value());
  EXPECT_EQ(e->domain->embedding.threshold, 1.5);
  EXPECT_EQ(e->domain->populations.size(), 2u);
  EXPECT_EQ(e->domain->populations[1].min_age_years, 18.0);
  EXPECT_EQ(e->domain->modalities, (std::vector<std::string>{"CR", "DX"}));
  // Distances: along the first axis over its variance, off the axes over the residual variance.
  const float at_mean[4] = {1.0f, 0.0f, 0.0f, 0.0f};
  EXPECT_NEAR(inference::distance(e->domain->embedding, at_mean, 4), 0.0, 1e-9);
  const float along[4] = {3.0f, 0.0f, 0.0f, 0.0f};  // 2 / sqrt(4) = 1 -> sqrt(1 / 4)
  EXPECT_NEAR(inference::distance(e->domain->embedding, along, 4), 0.5, 1e-6);
  const float off[4] = {1.0f, 0.0f, 1.0f, 0.0f};  // 1 / 0.25 = 4 -> sqrt(4 / 4)
  EXPECT_NEAR(inference::distance(e->domain->embedding, off, 4), 1.0, 1e-6);
  // The pixel reference survives too, and measures thumbnails the same way.
  ASSERT_EQ(e->domain->thumbnail_side, 2);
  const auto thumb_distance = [&](std::vector<float> t) { return inference::distance(e->domain->thumbnail, t.data(), static_cast<Eigen::Index>(t.size())); };
  EXPECT_EQ(e->domain->thumbnail.threshold, 2.0);
  EXPECT_NEAR(thumb_distance({0.0f, 0.0f, 0.0f, 3.0f}), std::sqrt(1.0 / 4.0), 1e-6);  // along the axis
  EXPECT_NEAR(thumb_distance({2.0f, 0.0f, 0.0f, 0.0f}), std::sqrt(4.0 / 4.0), 1e-6);  // off it
  EXPECT_TRUE(std::isinf(thumb_distance({1.0f, 2.0f})));  // another size
}

TEST(DomainThumbnail, IsStandardisedSoExposureDoesNotCount) {
  std::vector<float> grey(64 * 48), brighter(64 * 48);
  for (int y = 0; y < 48; ++y)
    for (int x = 0; x < 64; ++x) {
      grey[static_cast<std::size_t>(y * 64 + x)] = 0.1f + 0.005f * static_cast<float>(x + y);
      brighter[static_cast<std::size_t>(y * 64 + x)] = 0.3f + 2.0f * grey[static_cast<std::size_t>(y * 64 + x)] * 0.5f;
    }
  const auto a = inference::domain_thumbnail(grey.data(), 64, 48, 8);
  const auto b = inference::domain_thumbnail(brighter.data(), 64, 48, 8);
  ASSERT_EQ(a.size(), 64u);
  double sum = 0.0, sq = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    sum += a[i];
    sq += static_cast<double>(a[i]) * a[i];
    EXPECT_NEAR(a[i], b[i], 1e-4);
  }
  EXPECT_NEAR(sum / 64.0, 0.0, 1e-5);
  EXPECT_NEAR(sq / 64.0, 1.0, 1e-4);
  const std::vector<float> flat(100, 0.5f);
  for (float v : inference::domain_thumbnail(flat.data(), 10, 10, 4)) EXPECT_EQ(v, 0.0f);
}

// The statistics a scanned page or a CT slice cannot hide: worked by hand on small images.
TEST(DomainStatistics, StandardisedHistogramTailsEdgesSkewAndSymmetry) {
  const std::vector<float> flat(8 * 4, 0.5f);
  const auto f = inference::domain_statistics(flat.data(), 8, 4);
  ASSERT_EQ(f.size(), static_cast<std::size_t>(inference::kDomainStatistics));
  for (int b = 0; b < 16; ++b) EXPECT_FLOAT_EQ(f[static_cast<std::size_t>(b)], b == 8 ? 1.0f : 0.0f) << b;
  for (int k = 16; k < 22; ++k) EXPECT_FLOAT_EQ(f[static_cast<std::size_t>(k)], 0.0f) << k;
  // Left half black, right half white (8 x 4): standardised to -1 and +1, so half in bin 5
  // ([-1.125, -0.75)) and half in bin 10 ([0.75, 1.125)), no tails, no skew, every pixel 2 from its
  // mirror, and a gradient of 1 on the two middle columns (central differences), 0 elsewhere.
  std::vector<float> halves(8 * 4);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 8; ++x) halves[static_cast<std::size_t>(y * 8 + x)] = x < 4 ? 0.0f : 1.0f;
  const auto h = inference::domain_statistics(halves.data(), 8, 4);
  EXPECT_FLOAT_EQ(h[5], 0.5f);
  EXPECT_FLOAT_EQ(h[10], 0.5f);
  EXPECT_FLOAT_EQ(h[16], 0.0f);
  EXPECT_FLOAT_EQ(h[17], 0.0f);
  EXPECT_FLOAT_EQ(h[18], 1.0f * 8.0f / 32.0f);
  EXPECT_FLOAT_EQ(h[19], 1.0f) << "a quarter of the pixels have gradient 1, so the 90th percentile is";
  EXPECT_NEAR(h[20], 0.0f, 1e-6);
  EXPECT_FLOAT_EQ(h[21], 2.0f);
  // The same picture in another window (darker, less contrast) has the same statistics.
  std::vector<float> windowed(halves.size());
  for (std::size_t i = 0; i < halves.size(); ++i) windowed[i] = 0.2f + 0.3f * halves[i];
  const auto w = inference::domain_statistics(windowed.data(), 8, 4);
  for (std::size_t k = 0; k < w.size(); ++k) EXPECT_NEAR(w[k], h[k], 1e-5) << k;
  // A page: mostly white, a little black text: skewed to the left, with a dark tail.
  std::vector<float> page(20 * 20, 1.0f);
  for (int i = 0; i < 20; ++i) page[static_cast<std::size_t>(i)] = 0.0f;
  const auto p = inference::domain_statistics(page.data(), 20, 20);
  EXPECT_LT(p[20], -3.0f);
  EXPECT_NEAR(p[16], 20.0f / 400.0f, 1e-6);
  // Out-of-range and non-finite values are clamped, not propagated.
  std::vector<float> wild(4 * 4, 2.0f);
  wild[5] = std::numeric_limits<float>::quiet_NaN();
  for (float v : inference::domain_statistics(wild.data(), 4, 4)) EXPECT_TRUE(std::isfinite(v));
}

// A round field on an empty background leaves the corners of its content's box empty; a film
// fills them, whatever its window; too little content says nothing.
TEST(CornerContent, ARoundFieldLeavesTheCornersEmptyAndAFilmFillsThem) {
  const auto image = [](int w, int h, const std::function<float(double, double)>& at) {
    std::vector<float> g(static_cast<std::size_t>(w) * static_cast<std::size_t>(h));
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) g[static_cast<std::size_t>(y * w + x)] = at((x + 0.5) / w, (y + 0.5) / h);
    return g;
  };
  // A textured disc (a CT slice in its reconstruction circle) on black, in the middle of a wider
  // image: the box is the disc's, its four corners are empty.
  const auto disc = image(120, 80, [](double x, double y) {
    const double dx = (x - 0.5) * 120.0 / 70.0, dy = (y - 0.5) * 80.0 / 70.0;
    return dx * dx + dy * dy <= 0.25 ? static_cast<float>(0.4 + 0.3 * std::sin(40.0 * x) * std::sin(30.0 * y)) : 0.0f;
  });
  EXPECT_EQ(inference::corner_content(disc.data(), 120, 80), 0.0);
  // An ellipse filling a tall image (an MR cross-section), dark lungs inside it: still round.
  const auto ellipse = image(60, 100, [](double x, double y) {
    const double dx = (x - 0.5) / 0.5, dy = (y - 0.5) / 0.5;
    const bool lung = std::abs(dx) > 0.2 && std::abs(dx) < 0.6 && std::abs(dy) < 0.5;
    return dx * dx + dy * dy <= 1.0 ? (lung ? 0.02f : 0.7f) : 0.0f;
  });
  EXPECT_LT(inference::corner_content(ellipse.data(), 60, 100), inference::kRoundFieldLimit);
  // A chest film: air above the shoulders (dark top corners), the abdomen and the arms below
  // (full bottom corners), a black border around the detector's field.
  const auto film = [&](float low, float high) {
    return image(100, 100, [=](double x, double y) {
      if (x < 0.05 || x > 0.95 || y < 0.05 || y > 0.95) return low;
      const bool air = y < 0.3 && std::abs(x - 0.5) > 0.1 + y;
      const bool lung = y > 0.25 && y < 0.7 && std::abs(x - 0.5) > 0.08 && std::abs(x - 0.5) < 0.35;
      return low + (high - low) * (air ? 0.0f : lung ? 0.3f : 0.9f);
    });
  };
  const auto bright = film(0.0f, 1.0f);
  const double filled = inference::corner_content(bright.data(), 100, 100);
  EXPECT_GT(filled, 0.9);
  const auto dim = film(0.1f, 0.5f);  // another window
  EXPECT_DOUBLE_EQ(inference::corner_content(dim.data(), 100, 100), filled);
  // Flat, empty or tiny: nothing to say.
  const std::vector<float> flat(64 * 64, 0.3f);
  EXPECT_EQ(inference::corner_content(flat.data(), 64, 64), 1.0);
  std::vector<float> speck(64 * 64, 0.0f);
  for (int y = 30; y < 33; ++y)
    for (int x = 30; x < 33; ++x) speck[static_cast<std::size_t>(y * 64 + x)] = 1.0f;
  EXPECT_EQ(inference::corner_content(speck.data(), 64, 64), 1.0);
  EXPECT_EQ(inference::corner_content(nullptr, 64, 64), 1.0);
  // Non-finite values count as background, not as content.
  auto holed = disc;
  holed[0] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(inference::corner_content(holed.data(), 120, 80), 0.0);
}

// domain_pixels = thumbnail then statistics; pixel_score is the larger part's distance over its
// limit; the statistics part round-trips through hilum.json.
TEST_F(ModelExtrasTest, StatisticsPartScoresAndRoundTrips) {
  inference::ModelExtras e = sample_extras();
  inference::Subspace& s = e.domain->statistics;
  s.mean = inference::Vector::Zero(inference::kDomainStatistics);
  s.axes = inference::Matrix::Zero(0, inference::kDomainStatistics);
  s.variances = inference::Vector(0);
  s.residual_variance = 0.01;
  s.threshold = 3.0;
  ASSERT_TRUE(inference::write_model_extras(dir_, e).ok());
  auto back = inference::read_model_extras(dir_, config3());
  ASSERT_TRUE(back.ok()) << back.error().message;
  ASSERT_EQ(back->domain->statistics.mean.size(), inference::kDomainStatistics);
  EXPECT_EQ(back->domain->statistics.threshold, 3.0);
  const inference::DomainReference& d = *back->domain;
  const std::vector<float> flat(6 * 6, 0.5f);
  const auto pixels = inference::domain_pixels(d, flat.data(), 6, 6);
  ASSERT_EQ(pixels.size(), 4u + static_cast<std::size_t>(inference::kDomainStatistics)) << "a 2 x 2 thumbnail, then the statistics";
  // The flat image: thumbnail all 0 (distance 0); statistics: one histogram bin at 1, the rest 0,
  // so sqrt(1 / 0.01 / 22) / 3.
  EXPECT_NEAR(inference::pixel_score(d, pixels), std::sqrt(100.0 / 22.0) / 3.0, 1e-5);
  std::vector<float> far = pixels;
  far[3] = 30.0f;  // along the thumbnail's axis: sqrt(900 / 9 / 4) / 2 = 2.5, above the statistics' 0.71
  EXPECT_NEAR(inference::pixel_score(d, far), 2.5, 1e-5);
  // Each part on its own (what the domain reason names).
  const auto parts = inference::pixel_scores(d, far);
  EXPECT_NEAR(parts.thumbnail, 2.5, 1e-5);
  EXPECT_NEAR(parts.statistics, std::sqrt(100.0 / 22.0) / 3.0, 1e-5);
  EXPECT_TRUE(std::isinf(inference::pixel_score(d, std::vector<float>(5, 0.0f)))) << "a descriptor of another size";
  inference::DomainReference none;
  EXPECT_EQ(inference::pixel_score(none, {}), 0.0);
  EXPECT_EQ(inference::pixel_scores(none, {}).thumbnail, 0.0);
  EXPECT_TRUE(inference::domain_pixels(none, flat.data(), 6, 6).empty());
  // A statistics part of the wrong width is refused.
  std::ifstream in(dir_ / "hilum.json");
  auto j = nlohmann::json::parse(in);
  in.close();
  j["domain"]["statistics"]["mean"].push_back(0.0);
  std::ofstream(dir_ / "hilum.json") << j.dump();
  auto refused = inference::read_model_extras(dir_, config3());
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("statistics"), std::string::npos) << refused.error().message;
}

TEST_F(ModelExtrasTest, DamagedOrMismatchedFilesAreRefusedWithAReason) {
  ASSERT_TRUE(inference::write_model_extras(dir_, sample_extras()).ok());
  // Another model's width.
  inference::ViTConfig wide = config3();
  wide.hidden_size = 8;
  auto w = inference::read_model_extras(dir_, wide);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.error().message.find("hidden size 8"), std::string::npos) << w.error().message;
  // Calibration for an output the model lacks.
  inference::ViTConfig other = config3();
  other.labels = {"Pneumonia", "No Finding"};
  auto o = inference::read_model_extras(dir_, other);
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.error().message.find("Effusion"), std::string::npos) << o.error().message;
  // Truncated, non-finite, too deep.
  auto write = [&](const std::string& text) { std::ofstream(dir_ / "hilum.json", std::ios::binary | std::ios::trunc) << text; };
  std::ifstream in(dir_ / "hilum.json");
  const std::string good((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write(good.substr(0, good.size() / 2));
  EXPECT_FALSE(inference::read_model_extras(dir_, config3()).ok());
  write(R"({"domain": {"mean": [0,0,0,0], "axes": [], "variances": [], "residual_variance": -1, "threshold": 1}})");
  auto neg = inference::read_model_extras(dir_, config3());
  ASSERT_FALSE(neg.ok());
  EXPECT_NE(neg.error().message.find("residual_variance"), std::string::npos);
  write(std::string(10000, '[') + std::string(10000, ']'));
  auto deep = inference::read_model_extras(dir_, config3());
  ASSERT_FALSE(deep.ok());
  EXPECT_NE(deep.error().message.find("nested"), std::string::npos);
}


// A reference without an embedding part (features "none": a fine-tune with too few films within its
// parent's pixel reference keeps that reference alone) round-trips without one; "none" with no pixel
// part either says nothing and is refused.
TEST_F(ModelExtrasTest, AReferenceWithoutAnEmbeddingPartKeepsItsPixelParts) {
  ModelExtras extras = sample_extras();
  extras.domain->features = "none";
  extras.domain->embedding = {};
  ASSERT_TRUE(inference::write_model_extras(dir_, extras).ok());
  std::ifstream in(dir_ / "hilum.json");
  const auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j["domain"]["features"], "none");
  EXPECT_FALSE(j["domain"].contains("mean"));
  auto e = inference::read_model_extras(dir_, config3());
  ASSERT_TRUE(e.ok()) << e.error().message;
  ASSERT_TRUE(e->domain.has_value());
  EXPECT_EQ(e->domain->features, "none");
  EXPECT_EQ(e->domain->embedding.mean.size(), 0);
  EXPECT_EQ(e->domain->thumbnail_side, 2);
  EXPECT_TRUE(e->domain->thumbnail.mean.isApprox(extras.domain->thumbnail.mean));
  EXPECT_EQ(e->domain->thumbnail.threshold, 2.0);
  EXPECT_EQ(e->domain->populations.size(), 2u);

  auto write = [&](const std::string& text) { std::ofstream(dir_ / "hilum.json", std::ios::binary | std::ios::trunc) << text; };
  write(R"({"domain": {"features": "none", "modalities": ["DX"]}})");
  auto empty = inference::read_model_extras(dir_, config3());
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.error().message.find("thumbnail or statistics"), std::string::npos) << empty.error().message;
  write(R"({"domain": {"features": "patch-mean"}})");
  auto unknown = inference::read_model_extras(dir_, config3());
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.error().message.find("patch-mean"), std::string::npos) << unknown.error().message;
}

// Each population may carry its own calibration; an image gets its population's, chosen by the
// patient's age when known and else by the nearest centroid of its embedding.
TEST_F(ModelExtrasTest, PopulationsCarryTheirOwnCalibrationChosenByAgeOrEmbedding) {
  ModelExtras e = sample_extras();
  auto& pops = e.domain->populations;
  pops[0].centroid = inference::Vector::Zero(4);
  pops[0].centroid(0) = -1.0f;
  pops[1].centroid = inference::Vector::Zero(4);
  pops[1].centroid(0) = 1.0f;
  Calibration adult;
  adult.labels = {"Pneumonia"};
  adult.scaling = {{1.0, -3.0}};  // adults: far fewer pneumonias at the same logit
  adult.fitted_on = "adult validation films";
  adult.images = 70;
  pops[1].calibration = adult;
  ASSERT_TRUE(inference::write_model_extras(dir_, e).ok());
  auto r = inference::read_model_extras(dir_, config3());
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->domain->populations.size(), 2u);
  EXPECT_FALSE(r->domain->populations[0].calibration.has_value());
  ASSERT_TRUE(r->domain->populations[1].calibration.has_value());
  EXPECT_EQ(r->domain->populations[1].calibration->scaling[0].b, -3.0);  // aligned: Pneumonia is output 0
  EXPECT_EQ(r->domain->populations[1].calibration->scaling[1].a, 1.0);   // not given: identity
  ASSERT_EQ(r->domain->populations[1].centroid.size(), 4);
  EXPECT_EQ(r->domain->populations[1].centroid(0), 1.0f);

  inference::Vector children(4), adults(4);
  children << -0.8f, 0.1f, 0.0f, 0.0f;
  adults << 0.9f, -0.2f, 0.0f, 0.0f;
  const float* near_children = children.data();
  const float* near_adults = adults.data();
  // By age first: the range that holds it, else the nearest range; the embedding decides without one.
  EXPECT_EQ(inference::choose_population(*r, near_adults, 4, 3.0), 0);
  EXPECT_EQ(inference::choose_population(*r, near_children, 4, 45.0), 1);
  EXPECT_EQ(inference::choose_population(*r, near_children, 4, 8.0), 0);   // 3 years from 5, 10 from 18
  EXPECT_EQ(inference::choose_population(*r, near_children, 4, 14.0), 1);  // 9 from 5, 4 from 18
  EXPECT_EQ(inference::choose_population(*r, near_children, 4, std::nullopt), 0);
  EXPECT_EQ(inference::choose_population(*r, near_adults, 4, std::nullopt), 1);
  EXPECT_EQ(inference::choose_population(ModelExtras{}, near_adults, 4, 45.0), -1);

  // Row by row: the child gets the model's calibration, the adult its population's.
  inference::Matrix logits(2, 3);
  logits << 1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f;
  inference::Matrix embeddings(2, 4);
  embeddings.row(0) = children.transpose();
  embeddings.row(1) = adults.transpose();
  const auto p = inference::calibrated_probabilities(*r, logits, embeddings, {});
  EXPECT_NEAR(p(0, 0), 1.0 / (1.0 + std::exp(-1.5)), 1e-6);  // the model's: 0.5 * 1 + 1
  EXPECT_NEAR(p(1, 0), 1.0 / (1.0 + std::exp(2.0)), 1e-6);   // the adults': 1 * 1 - 3
  EXPECT_NEAR(p(1, 1), 1.0 / (1.0 + std::exp(-1.0)), 1e-6);
  // An age overrides the embedding.
  std::vector<inference::PopulationPick> chosen;
  const auto q = inference::calibrated_probabilities(*r, logits, embeddings, {std::optional<double>(60.0), std::optional<double>(2.0)}, &chosen);
  EXPECT_NEAR(q(0, 0), 1.0 / (1.0 + std::exp(2.0)), 1e-6);
  EXPECT_NEAR(q(1, 0), 1.0 / (1.0 + std::exp(-1.5)), 1e-6);
  // Each row's choice comes back with it, and what made it: the 60-year-old's embedding is a
  // child's, yet adults, by the age.
  using By = inference::PopulationPick::By;
  ASSERT_EQ(chosen.size(), 2u);
  EXPECT_EQ(chosen[0].index, 1);
  EXPECT_EQ(chosen[0].by, By::Age);
  EXPECT_EQ(chosen[1].index, 0);
  EXPECT_EQ(chosen[1].by, By::Age);
  // Without ages the embedding decides; with one population there is nothing to decide.
  (void)inference::calibrated_probabilities(*r, logits, embeddings, {}, &chosen);
  EXPECT_EQ(chosen[0].by, By::Embedding);
  EXPECT_EQ(chosen[1].index, 1);
  ModelExtras one = *r;
  one.domain->populations.resize(1);
  const auto only = inference::pick_population(one, adults.data(), 4, std::nullopt);
  EXPECT_EQ(only.index, 0);
  EXPECT_EQ(only.by, By::OnlyOne);
  EXPECT_EQ(inference::pick_population(ModelExtras{}, adults.data(), 4, 45.0).by, By::None);
}

TEST_F(ModelExtrasTest, APopulationCalibrationForAnUnknownOutputOrACentroidOfTheWrongWidthIsRefused) {
  ModelExtras e = sample_extras();
  e.domain->populations[0].centroid = inference::Vector::Zero(3);
  ASSERT_TRUE(inference::write_model_extras(dir_, e).ok());
  auto r = inference::read_model_extras(dir_, config3());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("centroid of width 3"), std::string::npos) << r.error().message;

  e = sample_extras();
  Calibration c;
  c.labels = {"Cardiomegaly"};
  c.scaling = {{1.0, 0.0}};
  e.domain->populations[1].calibration = c;
  ASSERT_TRUE(inference::write_model_extras(dir_, e).ok());
  r = inference::read_model_extras(dir_, config3());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("Cardiomegaly"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace hilum::test
