// The domain check on every prediction: header rules, the pixel check against the reference stored
// with the model, lying headers, models without a reference, the catalog and the worklist.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <fstream>
#include <cstdio>
#include <optional>

#include <jpeglib.h>

#include "catalog_support.hpp"
#include "hilum/app/classify.hpp"
#include "hilum/app/export.hpp"
#include "hilum/app/model_input.hpp"
#include "hilum/app/domain.hpp"
#include "hilum/app/png.hpp"
#include "hilum/app/train.hpp"
#include "hilum/app/worklist.hpp"
#include "hilum/dicom/reader.hpp"
#include "hilum/inference/model_extras.hpp"
#include "hilum/testdata/phantom.hpp"
#include "hilum/training/calibrate.hpp"

namespace hilum::test {
namespace {

inference::Population population(const std::string& name, double min_age, double max_age, int images) {
  inference::Population p;
  p.name = name;
  p.min_age_years = min_age;
  p.max_age_years = max_age;
  p.images = images;
  return p;
}

const fs::path kTiny = fs::path(HILUM_GOLDEN_DIR) / "tiny_multilabel";

TEST(DomainHeader, AgesParseAsDicomAgeStrings) {
  EXPECT_EQ(app::years_of_age_string("045Y"), 45.0);
  EXPECT_NEAR(*app::years_of_age_string("006M"), 0.5, 1e-12);
  EXPECT_NEAR(*app::years_of_age_string("010D"), 10 / 365.25, 1e-12);
  EXPECT_FALSE(app::years_of_age_string("").has_value());
  EXPECT_FALSE(app::years_of_age_string("4X5Y").has_value());
  // A bare number (some converters drop the unit, as two of ../shared's real DX/CR files do) is years.
  EXPECT_EQ(app::years_of_age_string("045"), 45.0);
  EXPECT_EQ(app::years_of_age_string("81"), 81.0);
  EXPECT_EQ(app::years_of_age_string(" 7 "), 7.0);
  EXPECT_FALSE(app::years_of_age_string("999").has_value());
  EXPECT_FALSE(app::years_of_age_string("1234").has_value());
  EXPECT_FALSE(app::years_of_age_string("-5").has_value());
}

// Without PatientAge the age comes from the birth date to the study date (else the acquisition
// date): whole calendar years plus the share of the year since the last birthday.
TEST(DomainHeader, AgesComeFromTheDatesWhenTheHeaderHasNoAge) {
  EXPECT_EQ(app::patient_age_years("045Y", "20000101", "20260101"), 45.0);  // the Age String first
  EXPECT_EQ(app::patient_age_years("", "19700615", "20260615"), 56.0);       // a birthday
  EXPECT_NEAR(*app::patient_age_years("", "19700615", "20260101"), 55.0 + 200.0 / 365.0, 1e-9);
  EXPECT_NEAR(*app::patient_age_years("", "20260301", "20260601"), 92.0 / 365.0, 1e-9);
  // 29 February: the birthday is 1 March in a common year.
  EXPECT_LT(*app::patient_age_years("", "20200229", "20210228"), 1.0);
  EXPECT_EQ(app::patient_age_years("", "20200229", "20210301"), 1.0);
  EXPECT_FALSE(app::patient_age_years("", "20260601", "20260301").has_value());  // dated before the birth
  EXPECT_FALSE(app::patient_age_years("", "20261345", "20270101").has_value());  // no 13th month
  EXPECT_FALSE(app::patient_age_years("", "1970", "20260101").has_value());
  EXPECT_FALSE(app::patient_age_years("", "18500101", "20260101").has_value());  // over 130
  EXPECT_FALSE(app::patient_age_years("", "", "20260101").has_value());
  // A header: the study date, else the acquisition date.
  dicom::Metadata m;
  m.patient_birth_date = "20250901";
  m.acquisition_date = "20251201";
  EXPECT_NEAR(*app::patient_age_years(m), 91.0 / 365.0, 1e-9);
  m.study_date = "20260901";
  EXPECT_EQ(app::patient_age_years(m), 1.0);
  // Export's whole years are the same reading, rounded down.
  EXPECT_EQ(app::age_in_years("", "20200229", "20210228"), 0);
  EXPECT_EQ(app::age_in_years("", "20200229", "20210301"), 1);
}

TEST(DomainHeader, ForeignModalitiesBodyPartsAndAgesAreNamed) {
  dicom::Radiograph r;
  r.meta.modality = "DX";
  r.meta.body_part_examined = "CHEST";
  r.meta.patient_age = "034Y";
  inference::DomainReference domain;
  domain.populations = {population("pediatric", 1.0, 5.0, 10), population("adult", 18.0, 90.0, 10)};
  EXPECT_EQ(app::header_out_of_domain(r, &domain), "");
  r.meta.modality = "MR";
  EXPECT_NE(app::header_out_of_domain(r, &domain).find("modality MR (magnetic resonance)"), std::string::npos);
  r.meta.modality = "CR";
  r.meta.body_part_examined = "SKULL";
  EXPECT_NE(app::header_out_of_domain(r, &domain).find("body part SKULL"), std::string::npos);
  r.meta.body_part_examined = "";  // missing: nothing against it
  r.meta.patient_age = "003M";
  const std::string young = app::header_out_of_domain(r, &domain);
  EXPECT_NE(young.find("3 months"), std::string::npos) << young;
  EXPECT_NE(young.find("1.0 years"), std::string::npos) << young;
  // The same infant without PatientAge, by the dates: as young.
  r.meta.patient_age = "";
  r.meta.patient_birth_date = "20260101";
  r.meta.study_date = "20260402";
  EXPECT_NE(app::header_out_of_domain(r, &domain).find("3 months"), std::string::npos) << app::header_out_of_domain(r, &domain);
  r.meta.patient_birth_date.clear();
  r.meta.study_date.clear();
  r.meta.sop_class_uid = "1.2.840.10008.5.1.4.1.1.1.2";
  EXPECT_NE(app::header_out_of_domain(r, &domain).find("mammogram"), std::string::npos);
  // Without a reference the generic rules still hold, ages are not judged.
  r.meta.sop_class_uid.clear();
  r.meta.patient_age = "003M";
  EXPECT_EQ(app::header_out_of_domain(r, nullptr), "");
}

class DomainTest : public CatalogTest {
 protected:
  void SetUp() override {
    CatalogTest::SetUp();
    catalog_.emplace(open_catalog());
  }
  fs::path phantom(const std::string& name, std::uint32_t seed, const std::function<void(testdata::DicomSpec&)>& edit = {}) {
    testdata::DicomSpec spec;
    spec.phantom.seed = seed;
    spec.sop_instance_uid = "1.2.826.0.1.3680043.9.77." + std::to_string(seed);
    spec.patient_id = "P" + std::to_string(seed);
    if (edit) edit(spec);
    const fs::path file = path(name);
    testdata::write_dicom(file, spec);
    return file;
  }
  app::Instance catalogue(const fs::path& file) { return catalogue_file(*catalog_, file); }
  // CLS embeddings of files under `model`.
  inference::Matrix embeddings(const app::LoadedModel& model, const std::vector<fs::path>& files) {
    inference::Matrix out(static_cast<Eigen::Index>(files.size()), model.model.config().hidden_size);
    for (std::size_t i = 0; i < files.size(); ++i) {
      auto d = app::display_image(files[i]);
      EXPECT_TRUE(d.ok());
      auto f = model.model.forward({inference::preprocess(d->grey.data(), d->width, d->height, model.model.config())});
      EXPECT_TRUE(f.ok());
      out.row(static_cast<Eigen::Index>(i)) = f->embeddings.row(0);
    }
    return out;
  }
  std::optional<app::Catalog> catalog_;
};

// A checkerboard with the header of a chest DX: the pixels give it away.
void checkerboard(testdata::DicomSpec& spec) {
  spec.draw = [](std::vector<std::int32_t>& stored, int rows, int columns) {
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < columns; ++c) stored[static_cast<std::size_t>(r * columns + c)] = ((r / 8 + c / 8) % 2) * 4000;
  };
}

TEST_F(DomainTest, ThePixelsDecideAndTheHeaderCanOnlyTakeAnImageOut) {
  // A model folder with a domain reference fitted on phantom chest films.
  fs::copy(kTiny, path("model"), fs::copy_options::recursive);
  auto plain = app::load_model(*catalog_, path("model").string());
  ASSERT_TRUE(plain.ok()) << plain.error().message;
  std::vector<fs::path> train, held;
  for (std::uint32_t s = 1; s <= 40; ++s) train.push_back(phantom("train" + std::to_string(s) + ".dcm", s));
  for (std::uint32_t s = 41; s <= 60; ++s) held.push_back(phantom("held" + std::to_string(s) + ".dcm", s));
  inference::ModelExtras extras;
  extras.domain = inference::DomainReference{};
  extras.domain->embedding = training::fit_subspace(embeddings(*plain, train), embeddings(*plain, held), 8, 1.0, 1.5);
  extras.domain->populations = {population("adult", 18.0, 90.0, 40)};
  ASSERT_TRUE(inference::write_model_extras(path("model"), extras).ok());
  auto record = app::import_model(*catalog_, path("model"), "tiny-domain", true);
  ASSERT_TRUE(record.ok()) << record.error().message;
  auto model = app::load_model(*catalog_, "");
  ASSERT_TRUE(model.ok()) << model.error().message;
  ASSERT_TRUE(model->extras.domain.has_value());

  const auto chest = catalogue(phantom("chest.dcm", 99));
  const auto board = catalogue(phantom("board.dcm", 100, checkerboard));
  const auto mr = catalogue(phantom("mr.dcm", 101, [](testdata::DicomSpec& s) { s.modality = "MR"; }));
  auto results = app::classify(*catalog_, *model, {chest, board, mr});
  ASSERT_TRUE(results.ok()) << results.error().message;
  const auto& r = results.value();
  ASSERT_EQ(r.size(), 3u);
  // A chest film like the training films.
  EXPECT_TRUE(r[0].domain.in_domain) << r[0].domain.reason;
  ASSERT_TRUE(r[0].domain.score.has_value());
  EXPECT_LE(*r[0].domain.score, 1.0);
  EXPECT_NE(r[0].domain.reason.find("looks like the training films"), std::string::npos);
  // A checkerboard labelled DX CHEST: out, from the pixels.
  EXPECT_FALSE(r[1].domain.in_domain);
  EXPECT_GT(*r[1].domain.score, 1.0);
  EXPECT_NE(r[1].domain.reason.find("does not look like"), std::string::npos) << r[1].domain.reason;
  // The reason names the part of the reference it is unlike: this reference has only the features.
  EXPECT_NE(r[1].domain.reason.find("unlike them in the model's features of it"), std::string::npos) << r[1].domain.reason;
  // A chest phantom whose header says MR: out, from the header (the pixels alone would pass).
  EXPECT_FALSE(r[2].domain.in_domain);
  EXPECT_LE(*r[2].domain.score, 1.0);
  EXPECT_NE(r[2].domain.reason.find("modality MR"), std::string::npos) << r[2].domain.reason;

  // Stored with the predictions, and the worklist can leave them out.
  auto stored = catalog_->prediction_domain(board.sop_instance_uid, record->id);
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_FALSE((*stored)->in_domain);
  EXPECT_EQ((*stored)->reason, r[1].domain.reason);
  EXPECT_NEAR(*(*stored)->score, *r[1].domain.score, 1e-12);
  app::WorklistQuery q;
  q.with_thumbnails = false;
  auto all = app::worklist(*catalog_, q);
  ASSERT_TRUE(all.ok()) << all.error().message;
  EXPECT_EQ(all->size(), 3u);
  int flagged = 0;
  for (const auto& w : all.value()) flagged += w.in_domain && !*w.in_domain ? 1 : 0;
  EXPECT_EQ(flagged, 2);
  q.hide_out_of_domain = true;
  auto kept = app::worklist(*catalog_, q);
  ASSERT_TRUE(kept.ok());
  ASSERT_EQ(kept->size(), 1u);
  EXPECT_EQ(kept->front().sop_instance_uid, chest.sop_instance_uid);
  auto counts = app::worklist_counts(*catalog_, q);
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->out_of_domain, 2);

  // The viewer's path gives the same verdicts.
  auto image = dicom::read_radiograph(board.path);
  ASSERT_TRUE(image.ok());
  auto direct = app::classify_radiograph(*model, image.value());
  ASSERT_TRUE(direct.ok());
  EXPECT_FALSE(direct->domain.in_domain);
  EXPECT_NEAR(*direct->domain.score, *r[1].domain.score, 1e-6);
}

// A scanned page with a chest DX header whose embedding passes (a reference that lets every
// embedding through): its pixel statistics still give it away, and a chest film's do not.
TEST_F(DomainTest, PixelStatisticsCatchAPageWhoseEmbeddingPasses) {
  fs::copy(kTiny, path("model"), fs::copy_options::recursive);
  auto plain = app::load_model(*catalog_, path("model").string());
  ASSERT_TRUE(plain.ok()) << plain.error().message;
  const auto& config = plain->model.config();
  const auto statistics = [&](const std::vector<fs::path>& files) {
    inference::Matrix out(static_cast<Eigen::Index>(files.size()), inference::kDomainStatistics);
    for (std::size_t i = 0; i < files.size(); ++i) {
      auto d = app::display_image(files[i]);
      EXPECT_TRUE(d.ok());
      const auto input = inference::resize_antialiased(d->grey.data(), d->width, d->height, config.input_width, config.input_height);
      const auto f = inference::domain_statistics(input.data(), config.input_width, config.input_height);
      for (std::size_t k = 0; k < f.size(); ++k) out(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(k)) = f[k];
    }
    return out;
  };
  std::vector<fs::path> train, held;
  for (std::uint32_t s = 1; s <= 60; ++s) train.push_back(phantom("train" + std::to_string(s) + ".dcm", s));
  for (std::uint32_t s = 61; s <= 80; ++s) held.push_back(phantom("held" + std::to_string(s) + ".dcm", s));
  inference::ModelExtras extras;
  extras.domain = inference::DomainReference{};
  extras.domain->embedding = training::fit_subspace(embeddings(*plain, train), embeddings(*plain, held), 8, 1.0, 1e6);
  extras.domain->statistics = training::fit_subspace(statistics(train), statistics(held), inference::kDomainStatistics - 1, 1.0, 1.5);
  extras.domain->populations = {population("adult", 18.0, 90.0, 60)};
  ASSERT_TRUE(inference::write_model_extras(path("model"), extras).ok());
  ASSERT_TRUE(app::import_model(*catalog_, path("model"), "tiny-statistics", true).ok());
  auto model = app::load_model(*catalog_, "");
  ASSERT_TRUE(model.ok()) << model.error().message;
  ASSERT_GT(model->extras.domain->statistics.mean.size(), 0);

  const auto chest = catalogue(phantom("chest.dcm", 99));
  // White paper, lines of dark text.
  const auto page = catalogue(phantom("page.dcm", 100, [](testdata::DicomSpec& spec) {
    spec.draw = [](std::vector<std::int32_t>& stored, int rows, int columns) {
      for (int r = 0; r < rows; ++r)
        for (int c = 0; c < columns; ++c)
          stored[static_cast<std::size_t>(r * columns + c)] = (r % 12 < 3 && c % 7 < 5 && c > columns / 10 && c < columns * 9 / 10) ? 0 : 4000;
    };
  }));
  auto results = app::classify(*catalog_, *model, {chest, page});
  ASSERT_TRUE(results.ok()) << results.error().message;
  const auto& r = results.value();
  ASSERT_EQ(r.size(), 2u);
  EXPECT_TRUE(r[0].domain.in_domain) << r[0].domain.reason;
  EXPECT_FALSE(r[1].domain.in_domain) << r[1].domain.reason;
  ASSERT_TRUE(r[1].domain.score.has_value());
  EXPECT_GT(*r[1].domain.score, 1.0);
  // Caught by its grey levels and edges alone; the features (a limit of 1e6) are not named.
  EXPECT_NE(r[1].domain.reason.find("unlike them in its grey levels and edges"), std::string::npos) << r[1].domain.reason;
  EXPECT_EQ(r[1].domain.reason.find("features"), std::string::npos) << r[1].domain.reason;
  // Without the statistics part the same reference lets the page through.
  extras.domain->statistics = inference::Subspace{};
  ASSERT_TRUE(inference::write_model_extras(path("model"), extras).ok());
  ASSERT_TRUE(app::import_model(*catalog_, path("model"), "tiny-no-statistics", true).ok());
  auto without = app::load_model(*catalog_, "");
  ASSERT_TRUE(without.ok()) << without.error().message;
  auto image = dicom::read_radiograph(page.path);
  ASSERT_TRUE(image.ok());
  auto direct = app::classify_radiograph(*without, image.value());
  ASSERT_TRUE(direct.ok());
  EXPECT_TRUE(direct->domain.in_domain) << direct->domain.reason;
}

TEST_F(DomainTest, AModelWithoutAReferenceSaysTheCheckIsUnavailable) {
  ASSERT_TRUE(app::import_model(*catalog_, kTiny, "tiny", true).ok());
  auto model = app::load_model(*catalog_, "");
  ASSERT_TRUE(model.ok());
  const auto chest = catalogue(phantom("chest.dcm", 5));
  const auto mr = catalogue(phantom("mr.dcm", 6, [](testdata::DicomSpec& s) { s.modality = "MR"; }));
  auto r = app::classify(*catalog_, *model, {chest, mr});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE((*r)[0].domain.in_domain);
  EXPECT_FALSE((*r)[0].domain.pixel_check);
  EXPECT_FALSE((*r)[0].domain.score.has_value());
  EXPECT_NE((*r)[0].domain.reason.find("unavailable"), std::string::npos);
  EXPECT_EQ((*r)[0].probabilities.size(), 6u);  // it still classifies
  EXPECT_FALSE((*r)[1].domain.in_domain);        // the header rules still apply
}

// `outside` was called outside the domain by the rule its reason names (`rule`); `inside` was not,
// and its reason does not mention `word`.
void expect_only_first_outside(const app::ImagePrediction& outside, const app::ImagePrediction& inside, const std::string& rule,
                               const std::string& word) {
  EXPECT_FALSE(outside.domain.in_domain);
  EXPECT_NE(outside.domain.reason.find(rule), std::string::npos) << outside.domain.reason;
  EXPECT_TRUE(inside.domain.in_domain) << inside.domain.reason;
  EXPECT_EQ(inside.domain.reason.find(word), std::string::npos) << inside.domain.reason;
}

// An axial CT slice in its reconstruction circle, sent with the header of a chest DX: the round
// field on its empty background takes it out, even under a model without a reference of its
// training films; the phantom chest film beside it stays in.
TEST_F(DomainTest, ARoundFieldIsOutsideWhateverItsHeaderSays) {
  ASSERT_TRUE(app::import_model(*catalog_, kTiny, "tiny", true).ok());
  auto model = app::load_model(*catalog_, "");
  ASSERT_TRUE(model.ok());
  const auto slice = catalogue(phantom("ct-as-dx.dcm", 7, [](testdata::DicomSpec& spec) {
    spec.modality = "DX";
    spec.body_part = "CHEST";
    spec.draw = testdata::draw_axial_ct_slice;
  }));
  const auto chest = catalogue(phantom("chest.dcm", 8));
  auto r = app::classify(*catalog_, *model, {slice, chest});
  ASSERT_TRUE(r.ok()) << r.error().message;
  expect_only_first_outside((*r)[0], (*r)[1], "a round field on an empty background", "round");
}

// An ultrasound frame, a photograph or a figure sent as a colour image with a chest DX header: the
// share of its pixels in colour takes it out; a chest film sent in colour (grey in every pixel)
// stays in. Before, both were refused at import (a colour photometric interpretation). The
// colour is judged also when the model input comes from the cache (which holds no colour).
TEST_F(DomainTest, AColourImageIsOutsideAndAGreyFilmSentInColourIsNot) {
  ASSERT_TRUE(app::import_model(*catalog_, kTiny, "tiny", true).ok());
  auto model = app::load_model(*catalog_, "");
  ASSERT_TRUE(model.ok());
  testdata::ColourDicomSpec spec;
  spec.modality = "DX";
  spec.body_part = "CHEST";
  spec.rows = 96;
  spec.columns = 96;
  spec.colour = [](int row, int column) {
    const auto v = static_cast<std::uint8_t>(40 + (row + column) % 150);
    // A Doppler-like box of red and blue over a grey image: 1/9 of the pixels.
    if (row >= 32 && row < 64 && column >= 32 && column < 64) return std::array<std::uint8_t, 3>{column % 2 ? std::uint8_t{220} : std::uint8_t{30}, 20, column % 2 ? std::uint8_t{30} : std::uint8_t{220}};
    return std::array<std::uint8_t, 3>{v, v, v};
  };
  spec.photometric = "YBR_FULL";
  testdata::write_colour_dicom(path("doppler.dcm"), spec);
  auto grey_spec = spec;
  grey_spec.photometric = "RGB";
  grey_spec.colour = [](int row, int column) {
    const auto v = static_cast<std::uint8_t>(40 + (row + column) % 150);
    return std::array<std::uint8_t, 3>{v, v, v};
  };
  testdata::write_colour_dicom(path("grey-film.dcm"), grey_spec);
  const auto doppler = catalogue(path("doppler.dcm"));
  const auto film = catalogue(path("grey-film.dcm"));
  auto r = app::classify(*catalog_, *model, {doppler, film});
  ASSERT_TRUE(r.ok()) << r.error().message;
  expect_only_first_outside((*r)[0], (*r)[1], "a colour image (11% of its pixels in colour)", "colour");

  // Through the cache of model inputs: the second read of each is the cache's, and the colour is
  // judged the same (the entry keeps the share in colour). An entry without a share (the cache's
  // first format) has a colour image decoded again.
  const fs::path cache = path("cache");
  fs::create_directories(cache);
  const auto mono = catalogue(phantom("mono.dcm", 7));
  for (const auto& [instance, colour] : {std::pair{doppler, true}, std::pair{mono, false}}) {
    app::Instance cached = instance;
    cached.content_hash = std::string(64, colour ? 'a' : 'b');  // a SHA-256 in hex
    const auto first = app::prepare_input(cached, {160, 160}, cache);
    ASSERT_TRUE(first.input.has_value()) << first.error;
    ASSERT_TRUE(first.cache_error.empty()) << first.cache_error;
    const auto second = app::prepare_input(cached, {160, 160}, cache);
    ASSERT_TRUE(second.input.has_value() && second.header.has_value()) << second.error;
    EXPECT_TRUE(second.from_cache);
    EXPECT_EQ(second.coloured_share, first.coloured_share);
    EXPECT_EQ(second.coloured_share >= app::kColouredShareLimit, colour) << second.coloured_share;
    EXPECT_EQ(second.input, first.input);
    // The same entry in the first format (no share): a greyscale film is still read from it, a
    // colour image decoded again.
    const fs::path entry = app::cached_input_path(cache, cached.content_hash, {160, 160});
    { std::ofstream(entry, std::ios::binary | std::ios::trunc) << first_format_cache_entry({160, 160}, *first.input); }
    const auto old_format = app::prepare_input(cached, {160, 160}, cache);
    ASSERT_TRUE(old_format.input.has_value()) << old_format.error;
    EXPECT_EQ(old_format.from_cache, !colour);
    EXPECT_EQ(old_format.coloured_share, first.coloured_share);
  }
}

// A JPEG of `rgb` (row-major R, G, B) through libjpeg, quality 95, chroma at full resolution
// (subsampled: at half, 4:2:0, libjpeg's default).
// stored_rgb: the colour stored as R, G, B (an Adobe RGB JPEG) instead of Y, Cb, Cr.
void write_jpeg(const fs::path& file, int width, int height, const std::vector<std::uint8_t>& rgb, bool grey = false,
                bool subsampled = false, bool stored_rgb = false) {
  jpeg_compress_struct cinfo{};
  jpeg_error_mgr err{};
  cinfo.err = jpeg_std_error(&err);
  jpeg_create_compress(&cinfo);
  std::FILE* f = std::fopen(file.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  jpeg_stdio_dest(&cinfo, f);
  cinfo.image_width = static_cast<JDIMENSION>(width);
  cinfo.image_height = static_cast<JDIMENSION>(height);
  cinfo.input_components = grey ? 1 : 3;
  cinfo.in_color_space = grey ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, 95, TRUE);
  if (stored_rgb) jpeg_set_colorspace(&cinfo, JCS_RGB);
  if (!grey && !subsampled) cinfo.comp_info[0].h_samp_factor = cinfo.comp_info[0].v_samp_factor = 1;  // else 4:2:0
  jpeg_start_compress(&cinfo, TRUE);
  std::vector<JSAMPLE> row(static_cast<std::size_t>(width) * (grey ? 1 : 3));
  while (cinfo.next_scanline < cinfo.image_height) {
    const std::size_t y = cinfo.next_scanline;
    for (std::size_t i = 0; i < row.size(); ++i) row[i] = rgb[(y * static_cast<std::size_t>(width)) * (grey ? 1 : 3) + i];
    JSAMPROW rows[1] = {row.data()};
    jpeg_write_scanlines(&cinfo, rows, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  std::fclose(f);
}

// libjpeg's own greyscale decode of a JPEG, [0, 1]: what training read colour JPEGs as before.
std::vector<float> libjpeg_grey(const fs::path& file) {
  jpeg_decompress_struct cinfo{};
  jpeg_error_mgr err{};
  cinfo.err = jpeg_std_error(&err);
  jpeg_create_decompress(&cinfo);
  std::FILE* f = std::fopen(file.c_str(), "rb");
  jpeg_stdio_src(&cinfo, f);
  jpeg_read_header(&cinfo, TRUE);
  cinfo.out_color_space = JCS_GRAYSCALE;
  jpeg_start_decompress(&cinfo);
  std::vector<float> out;
  std::vector<JSAMPLE> row(cinfo.output_width);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW rows[1] = {row.data()};
    jpeg_read_scanlines(&cinfo, rows, 1);
    for (JSAMPLE v : row) out.push_back(static_cast<float>(v) / 255.0f);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  std::fclose(f);
  return out;
}

// Loose pictures (classify FILE.png / FILE.jpg, image folders for training): an RGB PNG of a grey
// film reads as that film (before: refused, "not an 8- or 16-bit grayscale PNG"); a colour PNG or
// JPEG reads with its share in colour, and classify calls it outside the domain; a colour JPEG's
// grey is still exactly libjpeg's greyscale decode (the values every model was trained on), also
// for one stored as R, G, B (an Adobe JPEG, refused for a while: libjpeg cannot output it as Y, Cb, Cr).
TEST_F(DomainTest, ALoosePictureInColourIsOutsideAndAGreyOneInColourIsAFilm) {
  const int w = 96, h = 96;
  std::vector<std::uint8_t> grey_rgb, colour_rgb;
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const auto v = static_cast<std::uint8_t>(40 + (3 * y + x) % 150);
      const bool box = y >= 32 && y < 64 && x >= 32 && x < 64;
      for (int k = 0; k < 3; ++k) {
        grey_rgb.push_back(v);
        colour_rgb.push_back(box ? (k == 0 ? std::uint8_t{220} : std::uint8_t{30}) : v);
      }
    }
  }
  ASSERT_TRUE(app::write_png_rgb8(path("grey.png"), w, h, grey_rgb).ok());
  ASSERT_TRUE(app::write_png_rgb8(path("colour.png"), w, h, colour_rgb).ok());
  write_jpeg(path("grey.jpg"), w, h, grey_rgb);
  write_jpeg(path("colour.jpg"), w, h, colour_rgb);
  write_jpeg(path("colour-420.jpg"), w, h, colour_rgb, false, true);
  write_jpeg(path("colour-rgb.jpg"), w, h, colour_rgb, false, false, true);

  auto grey_png = app::read_grey_image(path("grey.png"));
  ASSERT_TRUE(grey_png.ok()) << grey_png.error().message;
  EXPECT_EQ(grey_png->coloured_share, 0.0);
  EXPECT_FLOAT_EQ(grey_png->grey[5 * w + 7], static_cast<float>(40 + (15 + 7) % 150) / 255.0f);
  auto colour_png = app::read_grey_image(path("colour.png"));
  ASSERT_TRUE(colour_png.ok()) << colour_png.error().message;
  EXPECT_NEAR(colour_png->coloured_share, 1.0 / 9.0, 1e-9);
  // Red 220, green and blue 30: grey (0.299 * 220 + 0.587 * 30 + 0.114 * 30) rounded.
  EXPECT_FLOAT_EQ(colour_png->grey[40 * w + 40], static_cast<float>((299 * 220 + 587 * 30 + 114 * 30 + 500) / 1000) / 255.0f);
  for (const char* name : {"grey.jpg", "colour.jpg", "colour-420.jpg", "colour-rgb.jpg"}) {
    auto jpeg = app::read_grey_image(path(name));
    ASSERT_TRUE(jpeg.ok()) << jpeg.error().message;
    EXPECT_EQ(jpeg->grey, libjpeg_grey(path(name))) << name;
    if (std::string(name) == "grey.jpg") {
      EXPECT_LT(jpeg->coloured_share, app::kColouredShareLimit);
    } else {
      EXPECT_NEAR(jpeg->coloured_share, 1.0 / 9.0, 0.03);  // chroma at half resolution blurs the box's edge
    }
  }

  ASSERT_TRUE(app::import_model(*catalog_, kTiny, "tiny", true).ok());
  auto model = app::load_model(*catalog_, "");
  ASSERT_TRUE(model.ok());
  std::vector<app::Instance> loose;
  for (const char* name : {"grey.png", "colour.png", "grey.jpg", "colour.jpg"}) {
    app::Instance i;
    i.path = path(name).string();
    loose.push_back(i);
  }
  auto r = app::classify(*catalog_, *model, loose);
  ASSERT_TRUE(r.ok()) << r.error().message;
  for (std::size_t i = 0; i < loose.size(); ++i) {
    const bool colour = loose[i].path.find("colour") != std::string::npos;
    ASSERT_TRUE((*r)[i].error.empty()) << (*r)[i].error;
    EXPECT_EQ((*r)[i].domain.in_domain, !colour) << loose[i].path << ": " << (*r)[i].domain.reason;
    if (colour) {
      EXPECT_NE((*r)[i].domain.reason.find("a colour image"), std::string::npos) << (*r)[i].domain.reason;
    }
  }
}

TEST_F(DomainTest, CalibrationStoredWithTheModelChangesWhatIsShown) {
  fs::copy(kTiny, path("model"), fs::copy_options::recursive);
  inference::ModelExtras extras;
  inference::Calibration c;
  c.labels = {"Effusion"};
  c.scaling = {{-1.0, 0.5}};
  extras.calibration = c;
  ASSERT_TRUE(inference::write_model_extras(path("model"), extras).ok());
  auto calibrated = app::load_model(*catalog_, path("model").string());
  auto plain = app::load_model(*catalog_, kTiny.string());
  ASSERT_TRUE(calibrated.ok() && plain.ok());
  const auto file = phantom("chest.dcm", 3);
  auto image = dicom::read_radiograph(file);
  ASSERT_TRUE(image.ok());
  auto a = app::classify_radiograph(*calibrated, image.value());
  auto b = app::classify_radiograph(*plain, image.value());
  ASSERT_TRUE(a.ok() && b.ok());
  for (std::size_t k = 0; k < 6; ++k) {
    const double p = b->probabilities[k].second;
    if (b->probabilities[k].first == "Effusion") {
      const double logit = std::log(p / (1.0 - p));
      EXPECT_NEAR(a->probabilities[k].second, 1.0 / (1.0 + std::exp(-(-logit + 0.5))), 1e-5);
    } else {
      EXPECT_NEAR(a->probabilities[k].second, p, 1e-7);
    }
  }
}

// Each population's own calibration, chosen by the header's age or else by the image's embedding,
// and the prediction says which it carries (classify --json's "population" / "population_from").
TEST_F(DomainTest, ThePopulationWhoseCalibrationAnImageGetsIsNamedWithWhatChoseIt) {
  fs::copy(kTiny, path("model"), fs::copy_options::recursive);
  auto plain = app::load_model(*catalog_, path("model").string());
  ASSERT_TRUE(plain.ok()) << plain.error().message;
  // No age in its header: no PatientAge, and no birth date to count from.
  const auto file = phantom("chest.dcm", 7, [](testdata::DicomSpec& s) { s.patient_birth_date.clear(); });
  const inference::Matrix e = embeddings(*plain, {file});
  std::vector<fs::path> train, held;
  for (std::uint32_t s = 21; s <= 32; ++s) train.push_back(phantom("train" + std::to_string(s) + ".dcm", s));
  for (std::uint32_t s = 33; s <= 38; ++s) held.push_back(phantom("held" + std::to_string(s) + ".dcm", s));
  inference::ModelExtras extras;
  extras.domain = inference::DomainReference{};
  extras.domain->embedding = training::fit_subspace(embeddings(*plain, train), embeddings(*plain, held), 4, 1.0, 1.5);
  auto pediatric = population("pediatric", 1.0, 5.0, 10);
  auto adult = population("adult", 18.0, 90.0, 10);
  pediatric.centroid = e.row(0).transpose();                                            // the image's own embedding
  adult.centroid = (e.row(0).transpose().array() + 10.0f).matrix();                       // far from it
  const auto scaled = [](double b) {
    inference::Calibration c;
    c.labels = {"Effusion"};
    c.scaling = {{1.0, b}};
    return c;
  };
  pediatric.calibration = scaled(2.0);
  adult.calibration = scaled(-2.0);
  extras.domain->populations = {pediatric, adult};
  ASSERT_TRUE(inference::write_model_extras(path("model"), extras).ok());
  auto model = app::load_model(*catalog_, path("model").string());
  ASSERT_TRUE(model.ok()) << model.error().message;

  auto image = dicom::read_radiograph(file);
  ASSERT_TRUE(image.ok());
  auto base = app::classify_radiograph(*plain, image.value());
  ASSERT_TRUE(base.ok());
  EXPECT_EQ(base->domain.population.population, "");  // a model without populations names none
  double logit = 0.0;
  std::size_t effusion = 0;
  for (std::size_t k = 0; k < base->probabilities.size(); ++k) {
    if (base->probabilities[k].first != "Effusion") continue;
    effusion = k;
    const double p = base->probabilities[k].second;
    logit = std::log(p / (1.0 - p));
  }
  const auto sigmoid = [](double z) { return 1.0 / (1.0 + std::exp(-z)); };
  // No age in the header: the embedding chooses, and it sits on the pediatric centroid.
  auto by_image = app::classify_radiograph(*model, image.value());
  ASSERT_TRUE(by_image.ok());
  EXPECT_EQ(by_image->domain.population.population, "pediatric");
  EXPECT_EQ(by_image->domain.population.chosen_by, "image");
  EXPECT_NEAR(by_image->probabilities[effusion].second, sigmoid(logit + 2.0), 1e-5);
  // An adult's age outweighs the embedding.
  image->meta.patient_age = "045Y";
  auto by_age = app::classify_radiograph(*model, image.value());
  ASSERT_TRUE(by_age.ok());
  EXPECT_EQ(by_age->domain.population.population, "adult");
  EXPECT_EQ(by_age->domain.population.chosen_by, "age");
  EXPECT_NEAR(by_age->probabilities[effusion].second, sigmoid(logit - 2.0), 1e-5);
  // No PatientAge, but a birth date and a study date 45 years apart: the age still decides.
  image->meta.patient_age.clear();
  image->meta.patient_birth_date = "19800301";
  image->meta.study_date = "20250615";
  auto by_dates = app::classify_radiograph(*model, image.value());
  ASSERT_TRUE(by_dates.ok());
  EXPECT_EQ(by_dates->domain.population.population, "adult");
  EXPECT_EQ(by_dates->domain.population.chosen_by, "age");
  image->meta.patient_birth_date.clear();
  // The catalog's path says the same.
  auto results = app::classify(*catalog_, *model, {catalogue(file)});
  ASSERT_TRUE(results.ok()) << results.error().message;
  ASSERT_EQ(results->size(), 1u);
  EXPECT_EQ(results->front().domain.population.population, "pediatric");
  EXPECT_EQ(results->front().domain.population.chosen_by, "image");
  EXPECT_NEAR(results->front().probabilities[effusion].second, sigmoid(logit + 2.0), 1e-5);
  // Stored with the prediction (the GUI names it for a film classified before), and the catalog
  // refuses a name it does not know for what chose it.
  ASSERT_TRUE(app::import_model(*catalog_, path("model"), "populations-1", true).ok());
  auto registered = app::load_model(*catalog_, "");
  ASSERT_TRUE(registered.ok()) << registered.error().message;
  const app::Instance film = catalogue(file);
  ASSERT_TRUE(app::classify(*catalog_, *registered, {film}).ok());
  auto stored = catalog_->prediction_domain(film.sop_instance_uid, registered->record.id);
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ((*stored)->population, (app::PopulationChoice{"pediatric", "image"}));
  app::DomainCheck guessed;
  guessed.population = {"adult", "a guess"};
  EXPECT_FALSE(catalog_->put_predictions(film.sop_instance_uid, registered->record.id, {{"Effusion", 0.5}}, guessed).ok());
  stored = catalog_->prediction_domain(film.sop_instance_uid, registered->record.id);
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ((*stored)->population.population, "pediatric") << "the refused write changed nothing";
}

}  // namespace
}  // namespace hilum::test
