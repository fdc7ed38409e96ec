// Classification from the catalog: model registry, predictions stored per model version and
// identical to running the engine by hand on the displayed image, heatmaps.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>

#include "catalog_support.hpp"
#include "hilum/app/classify.hpp"
#include "hilum/app/viewer.hpp"
#include "hilum/app/model_input.hpp"
#include "hilum/dicom/display.hpp"
#include "hilum/dicom/reader.hpp"
#include "hilum/testdata/phantom.hpp"
#include "hilum/training/explain.hpp"

namespace hilum::test {
namespace {

const fs::path kTiny = fs::path(HILUM_GOLDEN_DIR) / "tiny_multilabel";

// The 1100 x 900 lossless JPEG 2000 phantom of the reduced-decode tests (issue 18).
testdata::DicomSpec big_j2k_film() {
  testdata::DicomSpec spec;
  spec.phantom.rows = 1100;
  spec.phantom.columns = 900;
  spec.encoding = testdata::Encoding::J2kLossless;
  return spec;
}

// How far the model input made from a reduced decode is from the one made from the full decode
// (display values in [0, 1]): the mean and the largest absolute difference.
struct InputDifference {
  double mean = 0, worst = 0;
};
InputDifference input_difference(const dicom::Radiograph& full, const dicom::Radiograph& reduced, app::InputSize size) {
  const auto a = app::display_image(full);
  const auto b = app::display_image(reduced);
  EXPECT_TRUE(a.ok() && b.ok());
  if (!a.ok() || !b.ok()) return {1.0, 1.0};
  const auto fa = app::model_input_of(a->grey.data(), a->width, a->height, size);
  const auto fb = app::model_input_of(b->grey.data(), b->width, b->height, size);
  InputDifference out;
  for (std::size_t i = 0; i < fa.size(); ++i) {
    const double d = std::abs(static_cast<double>(fa[i]) - fb[i]);
    out.mean += d;
    out.worst = std::max(out.worst, d);
  }
  out.mean /= static_cast<double>(fa.size());
  return out;
}

class ClassifyTest : public CatalogTest {
 protected:
  // Writes the phantom of `seed` (SOP Instance UID 1.2.826.0.1.3680043.9.<seed>) to path(name).
  fs::path write_phantom(const std::string& name, std::uint32_t seed) {
    testdata::DicomSpec spec;
    spec.phantom.seed = seed;
    spec.sop_instance_uid = "1.2.826.0.1.3680043.9." + std::to_string(seed);
    const fs::path file = path(name);
    testdata::write_dicom(file, spec);
    return file;
  }
  // Writes a phantom and catalogues it (attributes from the reader).
  app::Instance add_phantom(const std::string& name, std::uint32_t seed) { return catalogue_file(*catalog_, write_phantom(name, seed)); }
  // The same, catalogued with its file's SHA-256, by which the catalog's input cache keys its input.
  app::Instance add_hashed_phantom(const std::string& name, std::uint32_t seed) {
    const fs::path file = write_phantom(name, seed);
    app::InstanceRecord rec = record("1.2.826.0.1.3680043.9." + std::to_string(seed));
    rec.path = file.string();
    rec.content_hash = app::sha256_file(file).value();
    EXPECT_TRUE(catalog_->put_instances({rec}).ok());
    return catalog_->find_instance(rec.sop_instance_uid).value().value();
  }
  void SetUp() override {
    CatalogTest::SetUp();
    catalog_.emplace(open_catalog());
  }
  std::optional<app::Catalog> catalog_;
};

TEST_F(ClassifyTest, ModelsAreRegisteredAndOneIsActive) {
  auto none = app::load_model(*catalog_, "");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("no active model"), std::string::npos);
  auto first = app::import_model(*catalog_, kTiny, "tiny-1", true);
  ASSERT_TRUE(first.ok()) << first.error().message;
  auto second = app::import_model(*catalog_, kTiny, "tiny-2", false);
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(app::import_model(*catalog_, kTiny, "tiny-1", false).ok());  // versions are unique
  auto active = catalog_->active_model();
  ASSERT_TRUE(active.ok() && active->has_value());
  EXPECT_EQ((*active)->version, "tiny-1");
  ASSERT_TRUE(catalog_->activate_model(second->id, "test").ok());
  EXPECT_EQ(catalog_->active_model().value()->version, "tiny-2");
  EXPECT_EQ(catalog_->find_model("tiny-1").value()->status, app::ModelStatus::Candidate);
  EXPECT_EQ(catalog_->models()->size(), 2u);
  // A folder that is not a ViT is refused with the engine's reason.
  fs::create_directories(path("empty"));
  auto bad = app::import_model(*catalog_, path("empty"), "", false);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("config.json"), std::string::npos) << bad.error().message;
}

TEST_F(ClassifyTest, PredictionsAreStoredAndMatchTheEngine) {
  const app::Instance a = add_phantom("a.dcm", 11);
  const app::Instance b = add_phantom("b.dcm", 12);
  app::Instance missing = a;
  missing.id = 0;
  missing.path = path("gone.dcm").string();
  auto registered = app::import_model(*catalog_, kTiny, "tiny-1", true);
  ASSERT_TRUE(registered.ok());
  auto model = app::load_model(*catalog_, "");
  ASSERT_TRUE(model.ok()) << model.error().message;
  auto results = app::classify(*catalog_, *model, {a, missing, b}, 2);
  ASSERT_TRUE(results.ok()) << results.error().message;
  ASSERT_EQ(results->size(), 3u);
  EXPECT_FALSE(results->at(1).error.empty());  // the missing file is reported, the rest go on
  ASSERT_TRUE(results->at(0).error.empty());
  ASSERT_EQ(results->at(0).probabilities.size(), 6u);

  // The same numbers by hand: display rendering -> preprocess -> forward.
  auto image = dicom::read_radiograph(a.path);
  ASSERT_TRUE(image.ok());
  auto grey = dicom::render_float(image.value());
  ASSERT_TRUE(grey.ok());
  const auto input = inference::preprocess(grey->data(), image->columns, image->rows, model->model.config());
  auto direct = model->model.forward({input});
  ASSERT_TRUE(direct.ok());
  for (std::size_t k = 0; k < 6; ++k) {
    EXPECT_NEAR(results->at(0).probabilities[k].second, direct->probabilities(0, static_cast<Eigen::Index>(k)), 1e-6);
  }
  // Stored per model version, and classification of a different phantom differs.
  auto stored = catalog_->predictions(a.sop_instance_uid, registered->id);
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->size(), 6u);
  EXPECT_EQ(stored->at(2).finding, "Effusion");
  EXPECT_NEAR(stored->at(2).probability, results->at(0).probabilities[2].second, 1e-9);
  EXPECT_NE(results->at(0).probabilities, results->at(2).probabilities);
  // A radiograph the viewer already decoded gives the same probabilities, in the same order.
  auto from_radiograph = app::classify_radiograph(*model, image.value());
  ASSERT_TRUE(from_radiograph.ok()) << from_radiograph.error().message;
  ASSERT_EQ(from_radiograph->probabilities.size(), 6u);
  for (std::size_t k = 0; k < 6; ++k) {
    EXPECT_EQ(from_radiograph->probabilities.at(k).first, results->at(0).probabilities[k].first);
    EXPECT_NEAR(from_radiograph->probabilities.at(k).second, results->at(0).probabilities[k].second, 1e-6);
  }
  // Classifying again replaces, it does not duplicate.
  ASSERT_TRUE(app::classify(*catalog_, *model, {a}).ok());
  EXPECT_EQ(catalog_->predictions(a.sop_instance_uid, registered->id)->size(), 6u);
}

// Issue 18: a catalogued film is decoded once; classifying it again reads its cached model input
// (store/model-inputs beside the catalog) and gives the very same probabilities; a damaged or
// truncated cache file is ignored (the film is decoded again and the file rewritten).
TEST_F(ClassifyTest, CachedModelInputGivesIdenticalProbabilities) {
  const app::Instance a = add_hashed_phantom("c.dcm", 21);
  ASSERT_TRUE(app::import_model(*catalog_, kTiny, "tiny-1", true).ok());
  auto model = app::load_model(*catalog_, "");
  ASSERT_TRUE(model.ok()) << model.error().message;
  const app::InputSize size{model->model.config().input_width, model->model.config().input_height};
  const fs::path cached = app::cached_input_path(app::model_input_cache_dir(catalog_->path()), a.content_hash, size);

  auto first = app::classify(*catalog_, *model, {a});
  ASSERT_TRUE(first.ok() && first->at(0).error.empty());
  EXPECT_FALSE(first->at(0).from_cache);
  ASSERT_TRUE(fs::is_regular_file(cached)) << cached;
  const auto expect_same = [&](const app::ImagePrediction& p, bool from_cache, const char* what) {
    EXPECT_EQ(p.from_cache, from_cache) << what;
    ASSERT_TRUE(p.error.empty()) << what << ": " << p.error;
    EXPECT_EQ(p.probabilities, first->at(0).probabilities) << what;  // bit for bit
    EXPECT_EQ(p.domain.in_domain, first->at(0).domain.in_domain) << what;
  };
  auto second = app::classify(*catalog_, *model, {a});
  ASSERT_TRUE(second.ok());
  expect_same(second->at(0), true, "cached");

  // The lowest mantissa bit of a mid-grey value changed (still a value in [0, 1]): the checksum
  // refuses it; decoded again, and the file rewritten.
  const auto entry = app::read_cached_input(app::model_input_cache_dir(catalog_->path()), a.content_hash, size);
  ASSERT_TRUE(entry.has_value());
  const std::vector<float>* values = &entry->values;
  const auto mid = static_cast<std::size_t>(std::find_if(values->begin(), values->end(), [](float v) { return v > 0.2f && v < 0.8f; }) - values->begin());
  ASSERT_LT(mid, values->size());
  std::string bytes = file_bytes(cached);
  const std::size_t at = bytes.size() - 4 * values->size() + 4 * mid;
  bytes[at] = static_cast<char>(bytes[at] ^ 0x01);
  std::ofstream(cached, std::ios::binary | std::ios::trunc) << bytes;
  auto damaged = app::classify(*catalog_, *model, {a});
  ASSERT_TRUE(damaged.ok());
  expect_same(damaged->at(0), false, "damaged cache");
  auto rewritten = app::classify(*catalog_, *model, {a});
  ASSERT_TRUE(rewritten.ok());
  expect_same(rewritten->at(0), true, "rewritten cache");

  // Truncated, and missing: the same.
  fs::resize_file(cached, fs::file_size(cached) / 2);
  auto truncated = app::classify(*catalog_, *model, {a});
  ASSERT_TRUE(truncated.ok());
  expect_same(truncated->at(0), false, "truncated cache");
  fs::remove(cached);
  auto missing = app::classify(*catalog_, *model, {a});
  ASSERT_TRUE(missing.ok());
  expect_same(missing->at(0), false, "missing cache");
}

// write_cached_input answers with a Status (issue 16: one error convention), not a string whose
// emptiness meant success: each refusal has its kind.
TEST_F(ClassifyTest, ModelInputCacheWriteFailuresAreErrorsOfTheirKind) {
  const std::string hash(64, 'c');
  const app::InputSize size{2, 2};
  const std::vector<float> input(4, 0.5f);
  { std::ofstream(path("blocker")) << "a file where the cache folder would be"; }
  const auto blocked = app::write_cached_input(path("blocker") / "model-inputs", hash, size, input, 0.0);
  ASSERT_FALSE(blocked.ok());
  EXPECT_EQ(blocked.error().kind, app::ErrorKind::Io);
  EXPECT_NE(blocked.error().message.find("cannot create"), std::string::npos) << blocked.error().message;
  for (const auto& refused : {app::write_cached_input({}, hash, size, input, 0.0), app::write_cached_input(path("cache"), hash, {}, input, 0.0),
                              app::write_cached_input(path("cache"), hash, size, std::vector<float>(3, 0.5f), 0.0),
                              app::write_cached_input(path("cache"), hash, size, input, 1.5)}) {
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().kind, app::ErrorKind::Invalid);
    EXPECT_FALSE(refused.error().message.empty());
  }
  EXPECT_FALSE(fs::exists(path("cache")));
  EXPECT_TRUE(app::write_cached_input(path("cache"), hash, size, input, 0.0).ok());
  EXPECT_TRUE(app::read_cached_input(path("cache"), hash, size).has_value());
}

TEST_F(ClassifyTest, ModelInputCacheReadsBackWhatWasWrittenAndNothingElse) {
  const fs::path cache = path("store") / "model-inputs";
  const std::string hash(64, 'a');
  const app::InputSize size{4, 3};
  std::vector<float> input(12);
  for (std::size_t i = 0; i < input.size(); ++i) input[i] = static_cast<float>(i) / 11.0f;
  ASSERT_TRUE(app::write_cached_input(cache, hash, size, input, 0.125).ok());
  const auto back = app::read_cached_input(cache, hash, size);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->values, input);
  EXPECT_EQ(back->coloured_share, 0.125);
  EXPECT_FALSE(app::read_cached_input(cache, hash, {3, 4}).has_value());        // another key (input size)
  EXPECT_FALSE(app::read_cached_input(cache, std::string(64, 'b'), size).has_value());  // another film
  // Not a hash (a path, say): never written, never read.
  const auto escape = app::write_cached_input(cache, "../../escape", size, input, 0.0);
  ASSERT_FALSE(escape.ok());
  EXPECT_EQ(escape.error().kind, app::ErrorKind::Invalid);
  EXPECT_FALSE(app::read_cached_input(cache, "../../escape", size).has_value());
  // A changed bit, a trailing byte, or a value outside [0, 1] with a matching checksum, is not accepted.
  const fs::path file = app::cached_input_path(cache, hash, size);
  std::string bytes = file_bytes(file);
  {
    // The share in colour is under the checksum too: 0.125 read as 0.925 is refused.
    std::string share_changed = bytes;
    const auto at = share_changed.find("coloured 0.125\n");
    ASSERT_NE(at, std::string::npos) << share_changed.substr(0, 200);
    share_changed[at + 11] = '9';
    std::ofstream(file, std::ios::binary | std::ios::trunc) << share_changed;
    EXPECT_FALSE(app::read_cached_input(cache, hash, size).has_value());
    std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
    ASSERT_TRUE(app::read_cached_input(cache, hash, size).has_value());
  }
  bytes[bytes.size() - 8] = static_cast<char>(bytes[bytes.size() - 8] ^ 0x01);  // value 10 of 12, in [0, 1] either way
  { std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes; }
  EXPECT_FALSE(app::read_cached_input(cache, hash, size).has_value());
  ASSERT_TRUE(app::write_cached_input(cache, hash, size, input, 0.0).ok());
  { std::ofstream(file, std::ios::binary | std::ios::app) << 'x'; }
  EXPECT_FALSE(app::read_cached_input(cache, hash, size).has_value());
  input[5] = 2.0f;
  ASSERT_TRUE(app::write_cached_input(cache, hash, size, input, 0.0).ok());
  EXPECT_FALSE(app::read_cached_input(cache, hash, size).has_value());
}

// A catalog made before the cache kept the share in colour: its entries (format 1: magic, key,
// size, SHA-256 of the values) still read, the share unknown, and a damaged one is still refused.
TEST_F(ClassifyTest, ModelInputCacheReadsTheFirstFormatWithoutAShare) {
  const fs::path cache = path("store") / "model-inputs";
  const std::string hash(64, 'd');
  const app::InputSize size{3, 2};
  const std::vector<float> input{0.0f, 0.2f, 0.4f, 0.6f, 0.8f, 1.0f};
  const fs::path file = app::cached_input_path(cache, hash, size);
  fs::create_directories(file.parent_path());
  std::string entry = first_format_cache_entry(size, input);
  { std::ofstream(file, std::ios::binary) << entry; }
  const auto old = app::read_cached_input(cache, hash, size);
  ASSERT_TRUE(old.has_value());
  EXPECT_EQ(old->values, input);
  EXPECT_FALSE(old->coloured_share.has_value());
  const std::size_t byte = entry.size() - input.size() * sizeof(float) + 5;  // in the second value
  entry[byte] = static_cast<char>(entry[byte] ^ 0x01);
  { std::ofstream(file, std::ios::binary | std::ios::trunc) << entry; }
  EXPECT_FALSE(app::read_cached_input(cache, hash, size).has_value());
}

// Issue 18: a lossless JPEG 2000 film much larger than the model input is decoded at a reduced
// resolution level; its model input is close to the one made from the full decode. Lossy films,
// and films less than four times the needed side, are decoded in full.
TEST_F(ClassifyTest, ReducedJpeg2000DecodeIsCloseToTheFullDecodeDownsampled) {
  testdata::DicomSpec spec = big_j2k_film();
  const fs::path file = path("big.dcm");
  testdata::write_dicom(file, spec);
  dicom::ReadOptions full_options, reduced_options;
  reduced_options.min_side = 160;
  auto full = dicom::read_radiograph(file, full_options);
  auto reduced = dicom::read_radiograph(file, reduced_options);
  ASSERT_TRUE(full.ok() && reduced.ok());
  EXPECT_EQ(full->reduction, 0);
  EXPECT_EQ(reduced->reduction, 1);  // 900 / 2 = 450 >= 2 x 160 > 900 / 4
  EXPECT_EQ(reduced->rows, 550);
  EXPECT_EQ(reduced->columns, 450);
  EXPECT_EQ(reduced->full_rows, 1100);
  EXPECT_EQ(reduced->full_columns, 900);
  const auto [mean, worst] = input_difference(full.value(), reduced.value(), {160, 160});
  EXPECT_LT(mean, 0.006);  // 0.004 measured (display values in [0, 1])
  EXPECT_LT(worst, 0.08);  // 0.05 measured, at the collimator edge
  EXPECT_GT(worst, 0.0) << "the two reads gave the same input: no reduction happened";
  // A film less than four times the needed side is decoded in full.
  reduced_options.min_side = 300;
  auto whole = dicom::read_radiograph(file, reduced_options);
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(whole->reduction, 0);
  EXPECT_EQ(whole->rows, 1100);
  // Lossy JPEG 2000: in full.
  spec.encoding = testdata::Encoding::J2kLossy;
  testdata::write_dicom(file, spec);
  reduced_options.min_side = 160;
  auto lossy = dicom::read_radiograph(file, reduced_options);
  ASSERT_TRUE(lossy.ok());
  EXPECT_EQ(lossy->reduction, 0);
  EXPECT_EQ(lossy->columns, 900);
}

// Issue 18: the viewer's first decode of a film is reduced only as far as it still covers the film
// as shown fitted in the view, and the model's input by the classify rule.
TEST_F(ClassifyTest, ViewerFirstDecodeCoversTheFittedFilmAndTheModelInput) {
  // A 1760 x 1760 CR fitted in 730 x 870 is 730 pixels on screen: half the film (880) covers it.
  EXPECT_EQ(app::viewer_min_side(1760, 1760, 730, 870, 224), 365);
  EXPECT_EQ(app::viewer_min_side(1760, 1760, 730, 870, 0), 365);
  EXPECT_EQ(app::viewer_min_side(1760, 1760, 300, 300, 224), 224);  // the model needs more than the view
  EXPECT_EQ(app::viewer_min_side(1000, 800, 1200, 1000, 224), 0);   // shown at 1:1 or larger: in full
  EXPECT_EQ(app::viewer_min_side(0, 0, 730, 870, 224), 0);          // size unknown: in full
  const fs::path file = path("film.dcm");
  testdata::write_dicom(file, big_j2k_film());
  const double fit = 400.0 / 1100.0;  // in a 400 x 400 view
  dicom::ReadOptions options;
  options.min_side = app::viewer_min_side(900, 1100, 400, 400, 32);
  auto image = dicom::read_radiograph(file, options);
  ASSERT_TRUE(image.ok()) << image.error().message;
  EXPECT_EQ(image->reduction, 1);  // 450 x 550 covers 327 x 400; 225 x 275 would not
  EXPECT_GE(image->columns, fit * 900);
  EXPECT_GE(image->rows, fit * 1100);
}

// Issue 18: lossy 8-bit JPEG read for a small consumer is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's
// DCT scaling), by the same rule as JPEG 2000 (both sides >= 2 x min_side), and the model input made
// from it is close to the one made from DCMTK's full decode.
TEST_F(ClassifyTest, ScaledJpegDecodeIsCloseToTheFullDecodeDownsampled) {
  testdata::DicomSpec spec;
  spec.phantom.rows = 1300;
  spec.phantom.columns = 1100;
  spec.phantom.bits_allocated = 8;
  spec.phantom.bits_stored = 8;
  spec.phantom.high_bit = 7;
  spec.encoding = testdata::Encoding::JpegBaseline;
  const fs::path file = path("film.dcm");
  testdata::write_dicom(file, spec);
  dicom::ReadOptions full_options, reduced_options;
  reduced_options.min_side = 128;  // a thumbnail
  auto full = dicom::read_radiograph(file, full_options);
  auto reduced = dicom::read_radiograph(file, reduced_options);
  ASSERT_TRUE(full.ok() && reduced.ok()) << (full.ok() ? reduced.error().message : full.error().message);
  EXPECT_EQ(full->reduction, 0);
  EXPECT_EQ(full->columns, 1100);
  EXPECT_EQ(reduced->reduction, 2);  // 1100 / 4 = 275 >= 2 x 128 > 1100 / 8
  EXPECT_EQ(reduced->rows, 325);
  EXPECT_EQ(reduced->columns, 275);
  EXPECT_EQ(reduced->full_rows, 1300);
  EXPECT_EQ(reduced->full_columns, 1100);
  ASSERT_EQ(reduced->stored.size(), 325u * 275u);
  const auto [mean, worst] = input_difference(full.value(), reduced.value(), {128, 128});
  std::printf("scaled JPEG: mean |delta| %.4f, worst %.4f\n", mean, worst);
  EXPECT_LT(mean, 0.006);  // display values in [0, 1]; 0.0029 measured
  EXPECT_LT(worst, 0.08);  // 0.058 measured, at the collimator edge
  EXPECT_GT(worst, 0.0) << "the two reads gave the same input: no reduction happened";
  // The model's 160 px: 1/2 scale (550 >= 2 x 160 > 275).
  reduced_options.min_side = 160;
  auto half = dicom::read_radiograph(file, reduced_options);
  ASSERT_TRUE(half.ok());
  EXPECT_EQ(half->reduction, 1);
  EXPECT_EQ(half->columns, 550);
  EXPECT_EQ(half->rows, 650);
  // A film less than four times the needed side is decoded in full (DCMTK).
  reduced_options.min_side = 300;
  auto whole = dicom::read_radiograph(file, reduced_options);
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(whole->reduction, 0);
  EXPECT_EQ(whole->rows, 1300);
  // 12-bit lossy JPEG: in full (libjpeg here is 8-bit only).
  spec.phantom.bits_allocated = 16;
  spec.phantom.bits_stored = 12;
  spec.phantom.high_bit = 11;
  spec.encoding = testdata::Encoding::JpegExtended12;
  testdata::write_dicom(file, spec);
  reduced_options.min_side = 160;
  auto twelve = dicom::read_radiograph(file, reduced_options);
  ASSERT_TRUE(twelve.ok());
  EXPECT_EQ(twelve->reduction, 0);
  EXPECT_EQ(twelve->columns, 1100);
}

// Issue 18: classify decodes ahead on worker threads while the model runs; the results keep the
// images' order whatever the batch size, and cancelling stops after the batch under way.
TEST_F(ClassifyTest, PipelineKeepsOrderAndStopsWhenCancelled) {
  std::vector<app::Instance> images;
  for (std::uint32_t seed = 31; seed < 36; ++seed) images.push_back(add_phantom("p" + std::to_string(seed) + ".dcm", seed));
  app::Instance missing = images[0];
  missing.id = 0;
  missing.path = path("gone.dcm").string();
  images.insert(images.begin() + 2, missing);
  auto registered = app::import_model(*catalog_, kTiny, "tiny-1", true);
  ASSERT_TRUE(registered.ok());
  auto model = app::load_model(*catalog_, "");
  ASSERT_TRUE(model.ok());
  auto one = app::classify(*catalog_, *model, images, 1);
  auto four = app::classify(*catalog_, *model, images, 4);
  ASSERT_TRUE(one.ok() && four.ok());
  ASSERT_EQ(one->size(), images.size());
  ASSERT_EQ(four->size(), images.size());
  for (std::size_t i = 0; i < images.size(); ++i) {
    EXPECT_EQ(four->at(i).path, images[i].path) << i;
    EXPECT_EQ(four->at(i).error.empty(), i != 2) << i;
    ASSERT_EQ(four->at(i).probabilities.size(), one->at(i).probabilities.size()) << i;
    for (std::size_t k = 0; k < one->at(i).probabilities.size(); ++k) {
      EXPECT_NEAR(four->at(i).probabilities[k].second, one->at(i).probabilities[k].second, 1e-5) << i;
    }
  }
  EXPECT_NE(four->at(0).probabilities, four->at(1).probabilities);

  // Cancelled after the first batch (2 images): those stay stored, the rest are not classified.
  auto second = app::import_model(*catalog_, kTiny, "tiny-2", true);
  ASSERT_TRUE(second.ok());
  auto model2 = app::load_model(*catalog_, "");
  ASSERT_TRUE(model2.ok());
  std::atomic<bool> cancel{false};
  std::vector<std::size_t> seen;
  auto cancelled = app::classify(
      *catalog_, *model2, images, 2,
      [&](std::size_t done, std::size_t) {
        seen.push_back(done);
        cancel = true;
      },
      &cancel);
  ASSERT_FALSE(cancelled.ok());
  EXPECT_EQ(cancelled.error().kind, app::ErrorKind::Interrupted);
  EXPECT_EQ(seen, std::vector<std::size_t>{2});
  EXPECT_EQ(catalog_->predictions(images[0].sop_instance_uid, second->id)->size(), 6u);
  EXPECT_TRUE(catalog_->predictions(images[3].sop_instance_uid, second->id)->empty());
}

// Issue 16, defect 7: a folder with a NaN weight is refused at import, naming the tensor; a model
// that nevertheless answers NaN gets an error per image, never "ok" with a probability.
TEST_F(ClassifyTest, NonFiniteWeightsAreRefusedAndNonFiniteOutputsAreErrors) {
  auto good = app::load_model(*catalog_, kTiny.string());
  ASSERT_TRUE(good.ok()) << good.error().message;
  inference::ViTWeights w = good->model.weights();
  w.blocks[1].fc2.w(3, 5) = std::nanf("");
  auto damaged = inference::ViTModel::from_weights(good->model.config(), w);
  ASSERT_TRUE(damaged.ok());
  ASSERT_TRUE(damaged->save(path("nan-model")).ok());
  auto imported = app::import_model(*catalog_, path("nan-model"), "nan", true);
  ASSERT_FALSE(imported.ok());
  EXPECT_NE(imported.error().message.find("vit.encoder.layer.1.output.dense.weight holds a value that is not finite"), std::string::npos)
      << imported.error().message;
  EXPECT_TRUE(catalog_->models()->empty());

  const app::Instance a = add_phantom("a.dcm", 11);
  auto registered = app::import_model(*catalog_, kTiny, "tiny-1", true);
  ASSERT_TRUE(registered.ok());
  app::LoadedModel loaded{registered.value(), std::move(damaged.value()), {}};
  auto results = app::classify(*catalog_, loaded, {a});
  ASSERT_TRUE(results.ok()) << results.error().message;
  ASSERT_EQ(results->size(), 1u);
  EXPECT_NE(results->at(0).error.find("is not a number"), std::string::npos) << results->at(0).error;
  EXPECT_TRUE(results->at(0).probabilities.empty());
  EXPECT_TRUE(catalog_->predictions(a.sop_instance_uid, registered->id)->empty());  // nothing stored
  auto image = dicom::read_radiograph(a.path);
  ASSERT_TRUE(image.ok());
  EXPECT_FALSE(app::classify_radiograph(loaded, image.value()).ok());
  EXPECT_FALSE(app::heatmap(loaded, a.path, {}).ok());
}

// Issue 18: the map of a JPEG 2000 film for a small overlay (the GUI asks for 64 px) decodes only a
// reduced level, the same decode classify makes when the overlay is no larger than the model's
// input: the map then explains exactly the probabilities the worklist shows. A full-size overlay
// still decodes the film in full (its probabilities then differ a little).
TEST_F(ClassifyTest, HeatmapOfAJpeg2000FilmUsesTheReducedDecodeClassifyUses) {
  const fs::path file = path("big.dcm");
  testdata::write_dicom(file, big_j2k_film());
  auto model = app::load_model(*catalog_, kTiny.string());
  ASSERT_TRUE(model.ok()) << model.error().message;
  const int side = model->model.config().input_width;
  app::Instance film;
  film.path = file.string();
  auto classified = app::classify(*catalog_, *model, {film});
  ASSERT_TRUE(classified.ok()) << classified.error().message;
  ASSERT_EQ(classified->size(), 1u);
  ASSERT_TRUE(classified->front().error.empty()) << classified->front().error;
  const auto& shown = classified->front().probabilities;
  auto small = app::heatmap(*model, file, {app::HeatmapMethod::Rollout, "", 0.5f, 0.0f, side});
  ASSERT_TRUE(small.ok()) << small.error().message;
  ASSERT_EQ(small->probabilities.size(), shown.size());
  for (std::size_t k = 0; k < shown.size(); ++k) EXPECT_DOUBLE_EQ(small->probabilities[k].second, shown[k].second) << shown[k].first;
  EXPECT_LE(std::max(small->overlay.width, small->overlay.height), side);
  auto full = app::heatmap(*model, file, {app::HeatmapMethod::Rollout, "", 0.5f, 0.0f, 0});
  ASSERT_TRUE(full.ok()) << full.error().message;
  EXPECT_EQ(full->overlay.width, 900);
  EXPECT_EQ(full->overlay.height, 1100);
  double differs = 0;
  for (std::size_t k = 0; k < shown.size(); ++k) differs = std::max(differs, std::abs(full->probabilities[k].second - shown[k].second));
  EXPECT_GT(differs, 0.0) << "the full decode gave the reduced decode's probabilities: no reduction happened";
}

TEST_F(ClassifyTest, HeatmapCoversTheWholeRadiograph) {
  const app::Instance a = add_phantom("a.dcm", 21);
  auto model = app::load_model(*catalog_, kTiny.string());
  ASSERT_TRUE(model.ok()) << model.error().message;
  auto h = app::heatmap(*model, a.path, {app::HeatmapMethod::Rollout, "", 0.5f, 0.0f});
  ASSERT_TRUE(h.ok()) << h.error().message;
  EXPECT_EQ(h->grid.rows(), 4);
  EXPECT_EQ(h->grid.cols(), 4);
  EXPECT_FLOAT_EQ(h->grid.maxCoeff(), 1.0f);
  EXPECT_EQ(h->overlay.width, a.columns);
  EXPECT_EQ(h->overlay.height, a.rows);
  ASSERT_EQ(h->overlay.rgb.size(), static_cast<std::size_t>(a.columns) * a.rows * 3);
  // Opacity 0 is the plain grey rendering (R = G = B everywhere).
  auto plain = app::heatmap(*model, a.path, {app::HeatmapMethod::Rollout, "", 0.0f, 0.0f, 64});
  ASSERT_TRUE(plain.ok());
  EXPECT_LE(std::max(plain->overlay.width, plain->overlay.height), 64);
  for (std::size_t i = 0; i < plain->overlay.rgb.size(); i += 3) {
    ASSERT_EQ(plain->overlay.rgb[i], plain->overlay.rgb[i + 1]);
    ASSERT_EQ(plain->overlay.rgb[i], plain->overlay.rgb[i + 2]);
  }
  // With opacity the hottest patch is coloured.
  bool coloured = false;
  for (std::size_t i = 0; i < h->overlay.rgb.size() && !coloured; i += 3) coloured = h->overlay.rgb[i] != h->overlay.rgb[i + 2];
  EXPECT_TRUE(coloured);
}

// A model that crops the centre (preprocessor_config.json's do_center_crop) is shown its crop: its
// probabilities are the engine's on inference::preprocess of the displayed film, bit for bit from
// the catalog's cached input as from a fresh decode; the cached inputs of a model of the same
// input size without the crop are kept apart; its map covers the crop and nothing outside it.
TEST_F(ClassifyTest, AModelThatCropsTheCentreIsShownItsCrop) {
  const app::Instance a = add_hashed_phantom("a.dcm", 29);
  const fs::path cropped = path("cropped");
  fs::create_directories(cropped);
  for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(kTiny / f, cropped / f);
  auto plain = app::load_model(*catalog_, kTiny.string());
  ASSERT_TRUE(plain.ok()) << plain.error().message;
  const int side = plain->model.config().input_width;
  std::ofstream(cropped / "preprocessor_config.json")
      << R"({"do_center_crop": true, "size": )" << side * 5 / 4 << R"(, "crop_size": )" << side << "}";
  auto model = app::load_model(*catalog_, cropped.string());
  ASSERT_TRUE(model.ok()) << model.error().message;
  const auto& config = model->model.config();
  ASSERT_TRUE(config.centre_crop());
  const app::InputSize size = app::input_size_of(config);
  EXPECT_NE(app::model_input_key(size), app::model_input_key(app::input_size_of(plain->model.config())));

  auto display = app::display_image(fs::path(a.path));
  ASSERT_TRUE(display.ok());
  const auto image = inference::preprocess(display->grey.data(), display->width, display->height, config);
  auto by_hand = model->model.forward({image});
  ASSERT_TRUE(by_hand.ok());
  auto first = app::classify(*catalog_, *model, {a});
  ASSERT_TRUE(first.ok() && first->at(0).error.empty());
  auto again = app::classify(*catalog_, *model, {a});
  ASSERT_TRUE(again.ok() && again->at(0).error.empty());
  EXPECT_TRUE(again->at(0).from_cache);
  EXPECT_EQ(again->at(0).probabilities, first->at(0).probabilities);
  const auto cached = app::read_cached_input(app::model_input_cache_dir(catalog_->path()), a.content_hash, size);
  ASSERT_TRUE(cached.has_value());
  EXPECT_EQ(cached->values, inference::model_view(display->grey.data(), display->width, display->height, config));
  // The same weights without the crop see another image, and cache it apart.
  auto whole = app::classify(*catalog_, *plain, {a});
  ASSERT_TRUE(whole.ok() && whole->at(0).error.empty());
  EXPECT_FALSE(whole->at(0).from_cache);
  double moved = 0.0;
  for (std::size_t j = 0; j < first->at(0).probabilities.size(); ++j) {
    moved = std::max(moved, std::abs(first->at(0).probabilities[j].second - whole->at(0).probabilities[j].second));
  }
  EXPECT_GT(moved, 1e-4);
  // The logits by hand, through the model's own calibration (none: the plain sigmoid).
  for (std::size_t j = 0; j < first->at(0).probabilities.size(); ++j) {
    const double p = 1.0 / (1.0 + std::exp(-static_cast<double>(by_hand->logits(0, static_cast<Eigen::Index>(j)))));
    EXPECT_NEAR(first->at(0).probabilities[j].second, p, 1e-6) << j;
  }

  auto h = app::heatmap(*model, a.path, {app::HeatmapMethod::Rollout, "", 1.0f, 0.0f});
  ASSERT_TRUE(h.ok()) << h.error().message;
  EXPECT_NEAR(h->seen.x, 0.1, 0.02);  // (1.25 side - side) / 2 of 1.25 side, rounded down
  EXPECT_NEAR(h->seen.width, 0.8, 1e-9);
  // The corner pixel is outside the crop: grey as rendered (R = G = B); the centre is coloured.
  EXPECT_EQ(h->overlay.rgb[0], h->overlay.rgb[1]);
  EXPECT_EQ(h->overlay.rgb[0], h->overlay.rgb[2]);
  auto uncropped = app::heatmap(*plain, a.path, {app::HeatmapMethod::Rollout, "", 1.0f, 0.0f});
  ASSERT_TRUE(uncropped.ok());
  EXPECT_EQ(uncropped->seen.width, 1.0);
}

// The class-specific map is training::class_relevance of the image the model sees, for the chosen
// output (or the most probable one); another finding gives another map; an unknown one is an error.
TEST_F(ClassifyTest, ClassSpecificHeatmapExplainsOneFinding) {
  const app::Instance a = add_phantom("a.dcm", 23);
  auto model = app::load_model(*catalog_, kTiny.string());
  ASSERT_TRUE(model.ok()) << model.error().message;
  app::HeatmapOptions o;
  o.method = app::HeatmapMethod::ClassSpecific;
  o.finding = "effusion";
  auto h = app::heatmap(*model, a.path, o);
  ASSERT_TRUE(h.ok()) << h.error().message;
  EXPECT_EQ(h->finding, "Effusion");
  EXPECT_EQ(h->overlay.width, a.columns);
  auto display = app::display_image(fs::path(a.path));
  ASSERT_TRUE(display.ok());
  const auto& config = model->model.config();
  const auto image = inference::preprocess(display->grey.data(), display->width, display->height, config);
  const auto want = training::class_relevance(training::attention_gradients(config, model->model.weights(), image, 2));
  ASSERT_EQ(h->grid.rows(), want.rows());
  ASSERT_EQ(h->grid.cols(), want.cols());
  EXPECT_LT((h->grid - want).cwiseAbs().maxCoeff(), 1e-6f);
  EXPECT_FLOAT_EQ(h->grid.maxCoeff(), 1.0f);

  o.finding = "Atelectasis";
  auto other = app::heatmap(*model, a.path, o);
  ASSERT_TRUE(other.ok()) << other.error().message;
  EXPECT_GT((other->grid - h->grid).cwiseAbs().maxCoeff(), 1e-3f) << "two findings, one map";

  o.finding.clear();  // the most probable output
  auto top = app::heatmap(*model, a.path, o);
  ASSERT_TRUE(top.ok()) << top.error().message;
  const auto best = std::max_element(top->probabilities.begin(), top->probabilities.end(),
                                     [](const auto& x, const auto& y) { return x.second < y.second; });
  EXPECT_EQ(top->finding, best->first);

  o.finding = "Fracture";
  auto unknown = app::heatmap(*model, a.path, o);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().kind, app::ErrorKind::NotFound);
  EXPECT_NE(unknown.error().message.find("Effusion"), std::string::npos) << unknown.error().message;
}

// First run: a catalog without models registers the built-in model as its active model, once,
// with its training recipe and validation metrics; a broken built-in model is an error that
// leaves the catalog as it was; "none" turns it off.
TEST_F(ClassifyTest, BuiltinModelIsRegisteredOnFirstRun) {
  {
    ScopedEnv off("HILUM_BUILTIN_MODEL", "none");
    EXPECT_TRUE(app::builtin_model_dir().empty());
    auto r = app::register_builtin_model(*catalog_);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_FALSE(r->has_value());
  }
  const fs::path builtin = path("models") / "hilum-test-builtin";
  fs::create_directories(builtin);
  fs::copy_file(kTiny / "config.json", builtin / "config.json");
  fs::copy_file(kTiny / "model.safetensors", builtin / "model.safetensors");
  {
    std::ofstream report(builtin / "training_report.json");
    report << R"({"architecture": "vit-ti16", "epochs": 3, "seed": 1, "data": "/somewhere", "history": [],
                 "validation": {"findings": [{"finding": "Effusion", "auroc": 0.9}]}})";
  }
  ScopedEnv on("HILUM_BUILTIN_MODEL", builtin.string());
  EXPECT_EQ(app::builtin_model_dir(), builtin);
  auto r = app::register_builtin_model(*catalog_);
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->version, "hilum-test-builtin");
  EXPECT_EQ((*r)->strategy, "builtin");
  EXPECT_EQ((*r)->status, app::ModelStatus::Active);
  EXPECT_NE((*r)->hyperparameters.find("\"architecture\":\"vit-ti16\""), std::string::npos) << (*r)->hyperparameters;
  EXPECT_EQ((*r)->hyperparameters.find("somewhere"), std::string::npos) << "the training machine's paths stay out";
  EXPECT_NE((*r)->metrics.find("\"auroc\":0.9"), std::string::npos) << (*r)->metrics;
  auto active = catalog_->active_model();
  ASSERT_TRUE(active.ok() && active->has_value());
  EXPECT_EQ((*active)->id, (*r)->id);
  auto loaded = app::load_model(*catalog_, "");
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(loaded->model.config().labels.size(), 6u);
  // Only on the first run: a catalog with a model is left alone.
  auto again = app::register_builtin_model(*catalog_);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->has_value());
  EXPECT_EQ(catalog_->models()->size(), 1u);
  // An upgrade ships another built-in model: registered beside the old one as a candidate, once;
  // the active model stays.
  const fs::path newer = path("models") / "hilum-test-builtin-2";
  fs::create_directories(newer);
  fs::copy_file(kTiny / "config.json", newer / "config.json");
  fs::copy_file(kTiny / "model.safetensors", newer / "model.safetensors");
  {
    ScopedEnv upgraded("HILUM_BUILTIN_MODEL", newer.string());
    auto candidate = app::register_builtin_model(*catalog_);
    ASSERT_TRUE(candidate.ok()) << candidate.error().message;
    ASSERT_TRUE(candidate->has_value());
    EXPECT_EQ((*candidate)->version, "hilum-test-builtin-2");
    EXPECT_EQ((*candidate)->status, app::ModelStatus::Candidate);
    auto still = catalog_->active_model();
    ASSERT_TRUE(still.ok() && still->has_value());
    EXPECT_EQ((*still)->id, (*r)->id) << "the site's active model is not replaced behind its back";
    auto twice = app::register_builtin_model(*catalog_);
    ASSERT_TRUE(twice.ok());
    EXPECT_FALSE(twice->has_value());
    EXPECT_EQ(catalog_->models()->size(), 2u);
  }
  // A damaged built-in model: an error naming it, and nothing registered.
  auto other = app::Catalog::open(path("other.db"));
  ASSERT_TRUE(other.ok());
  fs::resize_file(builtin / "model.safetensors", fs::file_size(builtin / "model.safetensors") / 2);
  auto broken = app::register_builtin_model(*other);
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.error().message.find("hilum-test-builtin"), std::string::npos) << broken.error().message;
  EXPECT_TRUE(other->models()->empty());
}

}  // namespace
}  // namespace hilum::test
