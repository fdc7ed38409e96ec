// Batch import: generated studies, re-import, conflicts, unreadable files, DICOMDIR media,
// cancellation and resuming, copies into the managed store; and the hash / thumbnail helpers.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "catalog_support.hpp"
#include "hilum/app/hash.hpp"
#include "hilum/app/import.hpp"
#include "hilum/app/model_input.hpp"
#include "hilum/app/png.hpp"
#include "hilum/app/thumbnail.hpp"
#include "hilum/dicom/display.hpp"
#include "hilum/dicom/reader.hpp"
#include "hilum/testdata/phantom.hpp"

namespace hilum::test {
namespace {

namespace td = hilum::testdata;
using app::Catalog;
using app::ImportOptions;
using app::ImportReport;

// Small, fast images that still go through the whole reader (64 x 64, 12 bits stored).
td::DicomSpec small_spec(const std::string& patient, const std::string& study, const std::string& series,
                         const std::string& sop, std::uint32_t seed) {
  td::DicomSpec s;
  s.phantom.rows = 64;
  s.phantom.columns = 64;
  s.phantom.seed = seed;
  s.patient_id = patient;
  s.patient_name = "Patient^" + patient;
  s.study_instance_uid = study;
  s.series_instance_uid = series;
  s.sop_instance_uid = sop;
  return s;
}

std::string uid(const std::string& prefix, int a, int b = -1, int c = -1) {
  std::string u = "1.2.826.0.1.3680043.10.999." + prefix + "." + std::to_string(a);
  if (b >= 0) u += "." + std::to_string(b);
  if (c >= 0) u += "." + std::to_string(c);
  return u;
}

std::map<std::string, std::string> items_by_status(Catalog& c, std::int64_t job) {
  auto items = c.job_items(job, false);
  EXPECT_TRUE(items.ok());
  std::map<std::string, std::string> out;
  if (items.ok()) {
    for (const auto& i : items.value()) out[i.path] = app::to_string(i.status);
  }
  return out;
}

class ImportTest : public CatalogTest {
 protected:
  // patients x studies x series x images files under `folder`, nested like a PACS export.
  // Returns the SOP Instance UIDs written.
  std::vector<std::string> write_studies(const fs::path& folder, int patients, int studies, int series, int images) {
    std::vector<std::string> sops;
    std::uint32_t seed = 1;
    for (int p = 0; p < patients; ++p) {
      for (int s = 0; s < studies; ++s) {
        for (int e = 0; e < series; ++e) {
          const fs::path dir = folder / ("P" + std::to_string(p)) / ("S" + std::to_string(s)) / ("E" + std::to_string(e));
          fs::create_directories(dir);
          for (int i = 0; i < images; ++i) {
            const std::string sop = uid("4", p * 100 + s, e, i);
            td::write_dicom(dir / ("IM" + std::to_string(i) + ".dcm"),
                            small_spec("PAT-" + std::to_string(p), uid("2", p * 100 + s), uid("3", p * 100 + s, e), sop, seed++));
            sops.push_back(sop);
          }
        }
      }
    }
    return sops;
  }

  ImportOptions options(int batch = 64) const {
    ImportOptions o;
    o.jobs = 2;
    o.batch_size = batch;
    return o;
  }
};

// ---- helpers

TEST(Hash, Sha256MatchesKnownVectorsAndStreamsLargeFiles) {
  EXPECT_EQ(app::sha256_hex("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(app::sha256_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const fs::path dir = fs::temp_directory_path() / ("hilum-hash-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  // 3 MiB + 17 bytes: crosses the 1 MiB read buffer several times and ends mid-buffer.
  std::string data(3 * 1024 * 1024 + 17, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 131 + i / 977) & 0xff);
  {
    std::ofstream out(dir / "big.bin", std::ios::binary);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
  }
  const auto big = app::sha256_file(dir / "big.bin");
  ASSERT_TRUE(big.ok()) << big.error().message;
  EXPECT_EQ(big.value(), app::sha256_hex(data.data(), data.size()));
  // A file that cannot be read is an error value naming it, not an empty digest.
  const auto missing = app::sha256_file(dir / "missing.bin");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().kind, app::ErrorKind::Io);
  EXPECT_NE(missing.error().message.find("missing.bin"), std::string::npos) << missing.error().message;
  const auto folder = app::sha256_file(dir);  // a folder opens, but cannot be read
  ASSERT_FALSE(folder.ok());
  EXPECT_EQ(folder.error().kind, app::ErrorKind::Io);
  EXPECT_NE(folder.error().message.find(dir.string()), std::string::npos) << folder.error().message;
  fs::remove_all(dir);
}

TEST(Thumbnail, EncodesPngInMemory) {
  std::vector<std::uint8_t> pixels(5 * 3);
  for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<std::uint8_t>(i * 17);
  const auto encoded = app::encode_png_gray8(5, 3, pixels);
  ASSERT_TRUE(encoded.ok()) << encoded.error().message;
  const std::vector<std::uint8_t>& png = encoded.value();
  ASSERT_GT(png.size(), 8u);
  EXPECT_EQ(png[1], 'P');
  const fs::path file = fs::temp_directory_path() / ("hilum-thumb-" + std::to_string(::getpid()) + ".png");
  {
    std::ofstream out(file, std::ios::binary);
    out.write(reinterpret_cast<const char*>(png.data()), static_cast<std::streamsize>(png.size()));
  }
  const auto read = app::read_png_gray(file);
  fs::remove(file);
  ASSERT_TRUE(read.ok()) << read.error().message;
  const app::GrayImage& back = read.value();
  EXPECT_EQ(back.width, 5);
  EXPECT_EQ(back.height, 3);
  ASSERT_EQ(back.pixels.size(), pixels.size());
  for (std::size_t i = 0; i < pixels.size(); ++i) EXPECT_EQ(back.pixels[i], pixels[i]) << i;

  const auto wrong_size = app::encode_png_gray8(5, 4, pixels);
  ASSERT_FALSE(wrong_size.ok());
  EXPECT_EQ(wrong_size.error().kind, app::ErrorKind::Invalid);
  EXPECT_NE(wrong_size.error().message.find("5 x 4"), std::string::npos) << wrong_size.error().message;
  EXPECT_FALSE(app::encode_png_gray8(0, 0, {}).ok());
}

// The PNG writers and reader fail with error values naming the file: a folder that does not exist,
// pixels that do not match the size, and files that are not (whole, grayscale) PNGs.
TEST(Png, FailuresAreErrorValuesNamingTheFile) {
  const fs::path dir = fs::temp_directory_path() / ("hilum-png-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::vector<std::uint8_t> gray(4 * 3, 100);
  const auto unwritable = app::write_png_gray8(dir / "no-such-folder" / "a.png", 4, 3, gray);
  ASSERT_FALSE(unwritable.ok());
  EXPECT_EQ(unwritable.error().kind, app::ErrorKind::Io);
  EXPECT_NE(unwritable.error().message.find("no-such-folder"), std::string::npos) << unwritable.error().message;
  const auto mismatch = app::write_png_gray16(dir / "b.png", 4, 4, std::vector<std::uint16_t>(12, 1));
  ASSERT_FALSE(mismatch.ok());
  EXPECT_EQ(mismatch.error().kind, app::ErrorKind::Invalid);
  EXPECT_FALSE(app::write_png_rgb8(dir / "c.png", 4, 3, gray).ok());  // 3 bytes per pixel needed
  EXPECT_FALSE(fs::exists(dir / "b.png"));
  EXPECT_FALSE(fs::exists(dir / "c.png"));

  const auto missing = app::read_png_gray(dir / "missing.png");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().kind, app::ErrorKind::Io);
  EXPECT_NE(missing.error().message.find("missing.png"), std::string::npos) << missing.error().message;

  { std::ofstream(dir / "garbage.png", std::ios::binary) << "this is not a PNG file at all, only text"; }
  const auto garbage = app::read_png_gray(dir / "garbage.png");
  ASSERT_FALSE(garbage.ok());
  EXPECT_EQ(garbage.error().kind, app::ErrorKind::Invalid);
  EXPECT_NE(garbage.error().message.find("garbage.png"), std::string::npos) << garbage.error().message;

  // A whole PNG, then the same cut in the middle of its pixel data.
  std::vector<std::uint8_t> noisy(64 * 64);
  for (std::size_t i = 0; i < noisy.size(); ++i) noisy[i] = static_cast<std::uint8_t>((i * 7919) % 251);
  ASSERT_TRUE(app::write_png_gray8(dir / "whole.png", 64, 64, noisy).ok());
  ASSERT_TRUE(app::read_png_gray(dir / "whole.png").ok());
  fs::copy_file(dir / "whole.png", dir / "cut.png");
  fs::resize_file(dir / "cut.png", fs::file_size(dir / "whole.png") / 2);
  const auto cut = app::read_png_gray(dir / "cut.png");
  ASSERT_FALSE(cut.ok());
  EXPECT_EQ(cut.error().kind, app::ErrorKind::Invalid);
  EXPECT_NE(cut.error().message.find("cut.png"), std::string::npos) << cut.error().message;

  ASSERT_TRUE(app::write_png_rgb8(dir / "colour.png", 4, 3, std::vector<std::uint8_t>(4 * 3 * 3, 50)).ok());
  // An RGB PNG is read as the grey of its colours (before 2026-12-06: refused).
  const auto colour = app::read_png_gray(dir / "colour.png");
  ASSERT_TRUE(colour.ok()) << colour.error().message;
  EXPECT_EQ(colour->bit_depth, 8);
  EXPECT_EQ(colour->pixels, std::vector<std::uint16_t>(4 * 3, 50));
  EXPECT_EQ(colour->coloured_share, 0.0);
  fs::remove_all(dir);
}

// A radiograph without decoded pixels gets no thumbnail, and says why.
TEST(Thumbnail, AnImageWithoutPixelsIsAnErrorValue) {
  dicom::Radiograph empty;
  const auto none = app::make_thumbnail(empty, 128);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().kind, app::ErrorKind::Invalid);
  EXPECT_NE(none.error().message.find("no decoded pixels"), std::string::npos) << none.error().message;
  dicom::Window window;
  window.center = 40;
  window.width = 400;
  EXPECT_FALSE(app::make_thumbnail(empty, window, 128).ok());
}

TEST(Thumbnail, ShowsTheDisplayImageShrunkWithLungsDarkInBothPolarities) {
  const fs::path dir = fs::temp_directory_path() / ("hilum-thumb2-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  for (const bool mono1 : {false, true}) {
    td::DicomSpec spec;  // 320 x 256
    spec.phantom.monochrome1 = mono1;
    td::write_dicom(dir / "x.dcm", spec);
    auto image = dicom::read_radiograph(dir / "x.dcm");
    ASSERT_TRUE(image.ok()) << image.error().message;
    const auto made = app::make_thumbnail(image.value(), 128);
    ASSERT_TRUE(made.ok()) << made.error().message;
    const std::vector<std::uint8_t>& png = made.value();
    ASSERT_FALSE(png.empty());
    {
      std::ofstream out(dir / "t.png", std::ios::binary);
      out.write(reinterpret_cast<const char*>(png.data()), static_cast<std::streamsize>(png.size()));
    }
    const auto read = app::read_png_gray(dir / "t.png");
    ASSERT_TRUE(read.ok()) << read.error().message;
    const app::GrayImage& t = read.value();
    EXPECT_EQ(t.height, 128);
    EXPECT_EQ(t.width, 102);  // 256 * 128 / 320, aspect kept
    const td::PhantomLayout layout = td::phantom_layout(spec.phantom);
    const double scale = 128.0 / 320.0;
    auto mean = [&](const td::PixelBox& b) {
      double sum = 0;
      int n = 0;
      for (int r = static_cast<int>(b.row0 * scale) + 1; r < static_cast<int>(b.row1 * scale) - 1; ++r) {
        for (int c = static_cast<int>(b.col0 * scale) + 1; c < static_cast<int>(b.col1 * scale) - 1; ++c) {
          sum += t.pixels[static_cast<std::size_t>(r) * static_cast<std::size_t>(t.width) + static_cast<std::size_t>(c)];
          ++n;
        }
      }
      return n > 0 ? sum / n : -1.0;
    };
    EXPECT_LT(mean(layout.right_lung) + 40.0, mean(layout.spine)) << "MONOCHROME1: " << mono1;
    EXPECT_LT(mean(layout.left_lung) + 40.0, mean(layout.spine)) << "MONOCHROME1: " << mono1;
  }
  fs::remove_all(dir);
}

// ---- import

TEST_F(ImportTest, ImportsSeveralPatientsStudiesAndSeriesWithCompleteRecords) {
  const auto sops = write_studies(path("in"), 3, 2, 2, 2);  // 24 files
  Catalog c = open_catalog();
  std::vector<app::ImportProgress> calls;
  const ImportReport r = app::import_paths(c, {path("in")}, options(5), [&](const app::ImportProgress& p) { calls.push_back(p); });
  ASSERT_TRUE(r.ok()) << r.error->message;
  EXPECT_FALSE(r.interrupted);
  EXPECT_FALSE(r.resumed);
  EXPECT_EQ(r.files, 24u);
  EXPECT_EQ(r.counts.imported, 24u);
  EXPECT_EQ(r.counts.total(), 24u);
  EXPECT_TRUE(r.failed.empty());
  EXPECT_TRUE(r.skipped.empty());

  auto count = c.count_instances();
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(count.value(), 24);
  auto studies = c.list_studies();
  ASSERT_TRUE(studies.ok());
  EXPECT_EQ(studies->size(), 6u);
  for (const auto& s : studies.value()) EXPECT_EQ(s.images, 4) << s.study_instance_uid;

  auto list = c.list_instances();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 24u);
  std::set<std::string> seen;
  for (const auto& im : list.value()) {
    seen.insert(im.sop_instance_uid);
    const fs::path p(im.path);
    EXPECT_TRUE(p.is_absolute()) << im.path;
    EXPECT_TRUE(fs::exists(p)) << im.path;
    EXPECT_EQ(static_cast<std::uintmax_t>(im.file_size), fs::file_size(p));
    EXPECT_GT(im.file_mtime, 1'600'000'000);
    EXPECT_EQ(im.content_hash, app::sha256_file(p).value()) << im.path;
    EXPECT_EQ(im.rows, 64);
    EXPECT_EQ(im.columns, 64);
    EXPECT_EQ(im.bits_stored, 12);
    EXPECT_EQ(im.photometric, "MONOCHROME2");
    EXPECT_EQ(im.transfer_syntax_uid, "1.2.840.10008.1.2.1");
    EXPECT_EQ(im.view_position, "PA");
    EXPECT_EQ(im.modality, "DX");
    ASSERT_TRUE(im.pixel_spacing_row.has_value());
    EXPECT_DOUBLE_EQ(*im.pixel_spacing_row, 0.143);
    EXPECT_TRUE(im.window_center.has_value());
    EXPECT_TRUE(im.window_width.has_value());
    ASSERT_GT(im.thumbnail_png.size(), 8u);
    EXPECT_EQ(im.thumbnail_png[1], 'P');
    EXPECT_TRUE(im.stored_path.empty());
    EXPECT_EQ(im.patient_id.rfind("PAT-", 0), 0u);
  }
  EXPECT_EQ(seen, std::set<std::string>(sops.begin(), sops.end()));

  // The job is done and every item says so.
  auto job = c.job(r.job_id);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->status, app::JobStatus::Done);
  EXPECT_EQ(job->kind, "import");
  EXPECT_NE(job->summary.find("\"imported\":24"), std::string::npos) << job->summary;
  for (const auto& [p, status] : items_by_status(c, r.job_id)) EXPECT_EQ(status, "imported") << p;

  // Progress: reported, monotonic, ends at 24/24.
  ASSERT_FALSE(calls.empty());
  for (std::size_t i = 1; i < calls.size(); ++i) EXPECT_GE(calls[i].done, calls[i - 1].done);
  EXPECT_EQ(calls.back().done, 24u);
  EXPECT_EQ(calls.back().total, 24u);
  EXPECT_EQ(calls.back().committed, 24u);
  EXPECT_EQ(calls.back().counts.imported, 24u);
}

TEST_F(ImportTest, ReimportIsAllAlreadyPresentWithOrWithoutTheFastPath) {
  write_studies(path("in"), 2, 1, 1, 3);  // 6 files
  Catalog c = open_catalog();
  const ImportReport first = app::import_paths(c, {path("in")}, options());
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first.counts.imported, 6u);

  const ImportReport again = app::import_paths(c, {path("in")}, options());
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again.resumed);  // the first job is done: a new job
  EXPECT_NE(again.job_id, first.job_id);
  EXPECT_EQ(again.counts.imported, 0u);
  EXPECT_EQ(again.counts.already_present, 6u);

  // A touched file (same bytes, new mtime) is read and hashed again: still the same image.
  const fs::path touched = path("in/P0/S0/E0/IM1.dcm");
  fs::last_write_time(touched, fs::last_write_time(touched) + std::chrono::hours(1));
  const ImportReport third = app::import_paths(c, {path("in/P0/S0/E0/IM1.dcm"), path("in")}, options());
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third.files, 6u) << "a file reached twice is read once";
  EXPECT_EQ(third.counts.already_present, 6u);
  EXPECT_EQ(third.counts.conflicts, 0u);
  auto count = c.count_instances();
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(count.value(), 6);
}

// Issue 18: a large lossless JPEG 2000 film is read at a reduced resolution level (all the import
// needs is a thumbnail and the model input), but the catalog records the file's own size; with
// model_input set, the model input is cached from those pixels and equals what classify would make.
TEST_F(ImportTest, ReducedJpeg2000ReadKeepsTheFilesSizeAndCachesTheModelInput) {
  fs::create_directories(path("in"));
  td::DicomSpec spec = small_spec("P", uid("2", 9), uid("3", 9), uid("4", 9), 9);
  spec.phantom.rows = 1100;
  spec.phantom.columns = 900;
  spec.encoding = td::Encoding::J2kLossless;
  td::write_dicom(path("in/big.dcm"), spec);
  Catalog c = open_catalog();
  ImportOptions o = options();
  o.model_input = {160, 160};
  int callbacks = 0;
  o.on_committed = [&](const std::vector<std::string>& uids) {
    ++callbacks;
    EXPECT_EQ(uids, std::vector<std::string>{uid("4", 9)});
  };
  const ImportReport r = app::import_paths(c, {path("in")}, o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.counts.imported, 1u);
  EXPECT_EQ(callbacks, 1);
  EXPECT_EQ(r.imported, std::vector<std::string>{uid("4", 9)});
  auto found = c.find_instance(uid("4", 9));
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->rows, 1100);
  EXPECT_EQ((*found)->columns, 900);
  const auto cached = app::read_cached_input(app::model_input_cache_dir(c.path()), (*found)->content_hash, o.model_input);
  ASSERT_TRUE(cached.has_value());
  dicom::ReadOptions reduced;
  reduced.min_side = 160;
  auto image = dicom::read_radiograph(path("in/big.dcm"), reduced);
  ASSERT_TRUE(image.ok());
  EXPECT_GT(image->reduction, 0);
  auto grey = dicom::render_float(image.value());
  ASSERT_TRUE(grey.ok());
  EXPECT_EQ(cached->values, app::model_input_of(grey->data(), image->columns, image->rows, o.model_input));
  EXPECT_EQ(cached->coloured_share, 0.0) << "a greyscale film";
}

TEST_F(ImportTest, ConflictKeepsTheFirstFileAndReportsBothPaths) {
  fs::create_directories(path("a"));
  fs::create_directories(path("b"));
  const std::string sop = uid("4", 7);
  td::write_dicom(path("a/one.dcm"), small_spec("P", uid("2", 7), uid("3", 7), sop, 1));
  td::write_dicom(path("b/one.dcm"), small_spec("P", uid("2", 7), uid("3", 7), sop, 2));  // other pixels
  td::write_dicom(path("b/two.dcm"), small_spec("P", uid("2", 7), uid("3", 7), uid("4", 8), 3));
  Catalog c = open_catalog();
  ASSERT_TRUE(app::import_paths(c, {path("a")}, options()).ok());
  const std::string first_hash = app::sha256_file(path("a/one.dcm")).value();

  const ImportReport r = app::import_paths(c, {path("b")}, options());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.counts.imported, 1u);
  EXPECT_EQ(r.counts.conflicts, 1u);
  ASSERT_EQ(r.conflicts.size(), 1u);
  EXPECT_EQ(r.conflicts[0].path, fs::weakly_canonical(path("b/one.dcm")).string());
  EXPECT_EQ(r.conflicts[0].existing_path, fs::weakly_canonical(path("a/one.dcm")).string());
  EXPECT_EQ(r.conflicts[0].sop_instance_uid, sop);
  EXPECT_NE(r.conflicts[0].reason.find(sop), std::string::npos) << r.conflicts[0].reason;
  auto found = c.find_instance(sop);
  ASSERT_TRUE(found.ok());
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ(found->value().path, fs::weakly_canonical(path("a/one.dcm")).string());
  EXPECT_EQ(found->value().content_hash, first_hash);
  EXPECT_EQ(items_by_status(c, r.job_id)[r.conflicts[0].path], "conflict");

  // Both in one import (same batch): the first in file order wins, the second conflicts.
  Catalog fresh = open_catalog("other.db");
  const ImportReport both = app::import_paths(fresh, {path("b"), path("a")}, options());
  ASSERT_TRUE(both.ok());
  EXPECT_EQ(both.counts.imported, 2u);
  EXPECT_EQ(both.counts.conflicts, 1u);
  ASSERT_EQ(both.conflicts.size(), 1u);
  EXPECT_EQ(both.conflicts[0].path, fs::weakly_canonical(path("b/one.dcm")).string());
}

// Issue 16, defect 2: a Study Instance UID reused for another patient merged the two patients.
TEST_F(ImportTest, StudyUidOfAnotherPatientIsAConflictAndNeverMergesPatients) {
  fs::create_directories(path("in"));
  const std::string study = uid("2", 20);
  td::write_dicom(path("in/a1.dcm"), small_spec("PAT-ALPHA", study, uid("3", 20), uid("4", 20, 1), 1));
  td::write_dicom(path("in/a2.dcm"), small_spec("PAT-ALPHA", study, uid("3", 20), uid("4", 20, 2), 2));  // same patient
  td::write_dicom(path("in/b1.dcm"), small_spec("PAT-BRAVO", study, uid("3", 21), uid("4", 21, 1), 3));  // reused study UID
  td::write_dicom(path("in/c1.dcm"), small_spec("PAT-ALPHA", uid("2", 22), uid("3", 20), uid("4", 22, 1), 4));  // reused series UID
  Catalog c = open_catalog();
  const ImportReport r = app::import_paths(c, {path("in")}, options());
  ASSERT_TRUE(r.ok()) << r.error->message;
  EXPECT_EQ(r.counts.imported, 2u);
  EXPECT_EQ(r.counts.conflicts, 2u) << "a study (or series) UID of another patient was taken as the same study";
  ASSERT_EQ(r.conflicts.size(), 2u);
  std::map<std::string, app::ImportIssue> by_path;
  for (const auto& i : r.conflicts) by_path[fs::path(i.path).filename().string()] = i;
  ASSERT_EQ(by_path.count("b1.dcm"), 1u);
  const std::string& why = by_path["b1.dcm"].reason;
  EXPECT_NE(why.find("PAT-ALPHA"), std::string::npos) << why;
  EXPECT_NE(why.find("PAT-BRAVO"), std::string::npos) << why;
  EXPECT_NE(why.find(study), std::string::npos) << why;
  EXPECT_EQ(by_path["b1.dcm"].sop_instance_uid, uid("4", 21, 1));
  ASSERT_EQ(by_path.count("c1.dcm"), 1u);
  EXPECT_NE(by_path["c1.dcm"].reason.find("Series Instance UID"), std::string::npos) << by_path["c1.dcm"].reason;
  EXPECT_EQ(items_by_status(c, r.job_id)[by_path["b1.dcm"].path], "conflict");

  // Nothing of the second patient is attached to the first one.
  auto b = c.find_instance(uid("4", 21, 1));
  ASSERT_TRUE(b.ok());
  EXPECT_FALSE(b->has_value()) << "PAT-BRAVO's image is listed under " << b->value().patient_id;
  auto instances = c.list_instances();
  ASSERT_TRUE(instances.ok());
  ASSERT_EQ(instances->size(), 2u);
  for (const auto& i : instances.value()) EXPECT_EQ(i.patient_id, "PAT-ALPHA");
  auto studies = c.list_studies();
  ASSERT_TRUE(studies.ok());
  ASSERT_EQ(studies->size(), 1u);
  EXPECT_EQ(studies->at(0).patient_id, "PAT-ALPHA");
  EXPECT_EQ(studies->at(0).images, 2);

  // The same in a later import, and in the other order: whoever came first keeps the study.
  Catalog other = open_catalog("other.db");
  ASSERT_TRUE(app::import_paths(other, {path("in/b1.dcm")}, options()).ok());
  const ImportReport later = app::import_paths(other, {path("in/a1.dcm")}, options());
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(later.counts.imported, 0u);
  EXPECT_EQ(later.counts.conflicts, 1u);
  auto a = other.find_instance(uid("4", 20, 1));
  ASSERT_TRUE(a.ok());
  EXPECT_FALSE(a->has_value());
}

TEST_F(ImportTest, UnreadableFilesAreReportedWithReasonsAndDoNotStopTheRest) {
  fs::create_directories(path("in/sub"));
  td::write_dicom(path("in/a.dcm"), small_spec("P", uid("2", 1), uid("3", 1), uid("4", 1), 1));
  td::write_basic_text_sr(path("in/b-report.dcm"));
  td::write_not_dicom(path("in/c-notes.txt"));
  td::write_truncated(path("in/d-cut.dcm"), 100);
  td::write_dicom(path("in/sub/e.dcm"), small_spec("P", uid("2", 1), uid("3", 1), uid("4", 2), 2));
  td::write_not_dicom(path("in/.hidden"));
  fs::create_directories(path("in/.cache"));
  td::write_not_dicom(path("in/.cache/x.dcm"));
  Catalog c = open_catalog();
  const ImportReport r = app::import_paths(c, {path("in"), path("missing-folder")}, options(2));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.files, 6u);  // 5 visible files + the missing input; hidden ones never looked at
  EXPECT_EQ(r.counts.imported, 2u);
  EXPECT_EQ(r.counts.skipped, 1u);
  EXPECT_EQ(r.counts.failed, 2u);
  EXPECT_EQ(r.counts.not_dicom, 1u);  // c-notes.txt, met walking the folder
  ASSERT_EQ(r.skipped.size(), 1u);
  EXPECT_NE(r.skipped[0].path.find("b-report.dcm"), std::string::npos);
  EXPECT_EQ(r.skipped[0].reason, "not an image: Basic Text SR");
  ASSERT_EQ(r.failed.size(), 2u);
  ASSERT_EQ(r.not_dicom.size(), 1u);
  std::map<std::string, std::string> reasons;
  for (const auto& f : r.failed) reasons[fs::path(f.path).filename().string()] = f.reason;
  for (const auto& f : r.not_dicom) reasons[fs::path(f.path).filename().string()] = f.reason;
  EXPECT_NE(reasons["missing-folder"].find("no such file or folder"), std::string::npos) << reasons["missing-folder"];
  EXPECT_NE(reasons["c-notes.txt"].find("not a DICOM file"), std::string::npos) << reasons["c-notes.txt"];
  EXPECT_NE(reasons["d-cut.dcm"].find("truncated"), std::string::npos) << reasons["d-cut.dcm"];
  auto count = c.count_instances();
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(count.value(), 2);

  // The job items carry the same outcomes and reasons.
  auto items = c.job_items(r.job_id, false);
  ASSERT_TRUE(items.ok());
  ASSERT_EQ(items->size(), 6u);
  for (const auto& item : items.value()) {
    const std::string name = fs::path(item.path).filename().string();
    if (name == "a.dcm" || name == "e.dcm") EXPECT_EQ(item.status, app::JobItemStatus::Imported) << name;
    else if (name == "b-report.dcm") EXPECT_EQ(item.status, app::JobItemStatus::Skipped);
    else if (name == "c-notes.txt") EXPECT_EQ(item.status, app::JobItemStatus::NotDicom);
    else {
      EXPECT_EQ(item.status, app::JobItemStatus::Failed) << name;
      EXPECT_EQ(item.reason, reasons[name]);
    }
  }
}

// A chest film that arrives as a colour secondary capture (grey in every pixel) is imported and
// keeps its photometric interpretation in the catalog; a colour picture (here a Doppler-like box
// over a grey image, 1/9 of its pixels) is skipped with its reason. Before, both were skipped as
// "unsupported photometric interpretation".
TEST_F(ImportTest, AFilmSentInColourIsImportedAndAColourPictureIsSkipped) {
  fs::create_directories(path("in"));
  td::ColourDicomSpec film;
  film.photometric = "YBR_FULL_422";
  film.modality = "DX";
  film.body_part = "CHEST";
  film.rows = 96;
  film.columns = 96;
  film.colour = [](int row, int column) {
    const auto v = static_cast<std::uint8_t>(30 + (row * 2 + column) % 200);
    return std::array<std::uint8_t, 3>{v, v, v};
  };
  td::write_colour_dicom(path("in/film.dcm"), film);
  td::ColourDicomSpec picture = film;
  picture.photometric = "RGB";
  picture.colour = [](int row, int column) {
    if (row >= 32 && row < 64 && column >= 32 && column < 64) return std::array<std::uint8_t, 3>{200, 30, 30};
    const auto v = static_cast<std::uint8_t>(30 + (row * 2 + column) % 200);
    return std::array<std::uint8_t, 3>{v, v, v};
  };
  td::write_colour_dicom(path("in/picture.dcm"), picture);
  Catalog c = open_catalog();
  const ImportReport r = app::import_paths(c, {path("in")}, options(1));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.counts.imported, 1u);
  EXPECT_EQ(r.counts.skipped, 1u);
  ASSERT_EQ(r.skipped.size(), 1u);
  EXPECT_NE(r.skipped[0].path.find("picture.dcm"), std::string::npos);
  EXPECT_EQ(r.skipped[0].reason, "a colour picture (RGB, 11% of its pixels in colour), not a film");
  auto images = c.list_instances();
  ASSERT_TRUE(images.ok());
  ASSERT_EQ(images->size(), 1u);
  EXPECT_EQ(images->front().photometric, "YBR_FULL_422");
  EXPECT_EQ(images->front().rows, 96);
}

// Issue 16, defect 14: a README, a CSV or thumbnails beside the images made a folder import fail.
TEST_F(ImportTest, FilesThatAreNotDicomInAWalkedFolderAreCountedNotFailed) {
  fs::create_directories(path("study/thumbs"));
  td::write_dicom(path("study/IM1.dcm"), small_spec("P", uid("2", 30), uid("3", 30), uid("4", 30), 1));
  std::ofstream(path("study/README")) << "Exported by the PACS on 2026-01-01\n";
  std::ofstream(path("study/index.csv")) << "file,patient\nIM1.dcm,P\n";
  std::ofstream(path("study/thumbs/IM1.png"), std::ios::binary) << std::string("\x89PNG\r\n\x1a\n", 8) << "not really";
  td::write_truncated(path("study/IM2.dcm"), 100);  // DICOM, but broken: still a failure
  Catalog c = open_catalog();
  const ImportReport r = app::import_paths(c, {path("study")}, options());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.counts.imported, 1u);
  EXPECT_EQ(r.counts.not_dicom, 3u);
  EXPECT_EQ(r.counts.failed, 1u) << "files that are not DICOM were counted as failures";
  ASSERT_EQ(r.failed.size(), 1u);
  EXPECT_EQ(fs::path(r.failed[0].path).filename(), "IM2.dcm");
  ASSERT_EQ(r.not_dicom.size(), 3u);
  std::set<std::string> left_out;
  for (const auto& i : r.not_dicom) left_out.insert(fs::path(i.path).filename().string());
  EXPECT_EQ(left_out, (std::set<std::string>{"README", "index.csv", "IM1.png"}));
  EXPECT_EQ(items_by_status(c, r.job_id)[fs::weakly_canonical(path("study/README")).string()], "not-dicom");
  EXPECT_NE(app::to_json(r.counts).find("\"not_dicom\":3"), std::string::npos) << app::to_json(r.counts);

  // Named explicitly, the same file is an error.
  const ImportReport named = app::import_paths(c, {path("study/README")}, options());
  ASSERT_TRUE(named.ok());
  EXPECT_EQ(named.counts.not_dicom, 0u);
  EXPECT_EQ(named.counts.failed, 1u);
  ASSERT_EQ(named.failed.size(), 1u);
  EXPECT_NE(named.failed[0].reason.find("not a DICOM file"), std::string::npos) << named.failed[0].reason;
}

TEST_F(ImportTest, DicomdirInputImportsTheReferencedImagesAndFolderWalksSkipIt) {
  const auto sops = td::write_dicomdir_media(path("media"), 2);
  ASSERT_EQ(sops.size(), 4u);
  Catalog c = open_catalog();
  const ImportReport r = app::import_paths(c, {path("media/DICOMDIR")}, options());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.files, 4u);
  EXPECT_EQ(r.counts.imported, 4u);
  auto list = c.list_instances();
  ASSERT_TRUE(list.ok());
  std::set<std::string> got;
  for (const auto& im : list.value()) {
    got.insert(im.sop_instance_uid);
    EXPECT_NE(im.path.find("/media/IMAGES/IM"), std::string::npos) << im.path;
  }
  EXPECT_EQ(got, std::set<std::string>(sops.begin(), sops.end()));
  auto studies = c.list_studies();
  ASSERT_TRUE(studies.ok());
  EXPECT_EQ(studies->size(), 2u);

  // The media folder as a folder: the same 4 files (already present), the DICOMDIR itself left out.
  const ImportReport walk = app::import_paths(c, {path("media")}, options());
  ASSERT_TRUE(walk.ok());
  EXPECT_EQ(walk.files, 4u);
  EXPECT_EQ(walk.counts.already_present, 4u);
  EXPECT_EQ(walk.counts.skipped, 0u);
}

// Issue 16, defect 3: a DICOMDIR pointing at a DICOM file outside its medium imported it.
TEST_F(ImportTest, DicomdirReferencesOutsideTheMediumFailAndTheRestImports) {
  const auto sops = td::write_dicomdir_media(path("media"), 2);
  ASSERT_EQ(sops.size(), 4u);
  fs::create_directories(path("elsewhere"));
  const std::string stranger = uid("4", 99);
  td::write_dicom(path("elsewhere/X.dcm"), small_spec("STRANGER", uid("2", 99), uid("3", 99), stranger, 9));
  td::set_dicomdir_file_id(path("media/DICOMDIR"), 1, "..\\elsewhere\\X.dcm");
  Catalog c = open_catalog();
  const ImportReport r = app::import_paths(c, {path("media/DICOMDIR")}, options());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.counts.imported, 3u);
  EXPECT_EQ(r.counts.failed, 1u);
  ASSERT_EQ(r.failed.size(), 1u);
  EXPECT_NE(r.failed[0].reason.find("..\\elsewhere\\X.dcm"), std::string::npos) << r.failed[0].reason;
  EXPECT_NE(r.failed[0].reason.find("refused"), std::string::npos) << r.failed[0].reason;
  auto found = c.find_instance(stranger);
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->has_value()) << "a file outside the medium was imported";
}

TEST_F(ImportTest, CancelledImportLeavesAConsistentCatalogAndTheSameImportFinishesIt) {
  write_studies(path("in"), 4, 1, 1, 10);  // 40 files
  Catalog c = open_catalog();
  std::atomic<bool> cancel{false};
  const ImportOptions opts = options(4);
  const ImportReport first = app::import_paths(
      c, {path("in")}, opts,
      [&](const app::ImportProgress& p) {
        if (p.committed >= 4) cancel = true;  // after the first batch is committed
      },
      &cancel);
  ASSERT_TRUE(first.ok()) << first.error->message;
  EXPECT_TRUE(first.interrupted);
  EXPECT_EQ(first.files, 40u);
  EXPECT_GE(first.counts.imported, 4u);
  EXPECT_LT(first.counts.imported, 40u);  // at most a few batches were read ahead
  EXPECT_EQ(first.counts.total(), first.counts.imported);

  // Consistent: the job is interrupted, and its finished items are exactly the catalogued files.
  auto job = c.job(first.job_id);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->status, app::JobStatus::Interrupted);
  auto pending = c.job_items(first.job_id, true);
  ASSERT_TRUE(pending.ok());
  EXPECT_EQ(pending->size(), 40u - first.counts.imported);
  auto list = c.list_instances();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), first.counts.imported);
  const auto statuses = items_by_status(c, first.job_id);
  for (const auto& im : list.value()) {
    EXPECT_EQ(statuses.at(im.path), "imported") << im.path;
    EXPECT_FALSE(im.thumbnail_png.empty());
    EXPECT_EQ(im.content_hash.size(), 64u);
  }
  auto check = c.integrity_check();
  ASSERT_TRUE(check.ok());
  EXPECT_EQ(check.value(), "ok");

  // The same import again continues the job: only the pending files are read.
  const ImportReport second = app::import_paths(c, {path("in")}, opts);
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE(second.resumed);
  EXPECT_FALSE(second.interrupted);
  EXPECT_EQ(second.job_id, first.job_id);
  EXPECT_EQ(second.files, 40u);
  EXPECT_EQ(second.earlier.imported, first.counts.imported);
  EXPECT_EQ(second.counts.imported, 40u - first.counts.imported);
  EXPECT_EQ(second.counts.already_present, 0u);
  EXPECT_EQ(second.counts.total() + second.earlier.total(), 40u);
  auto count = c.count_instances();
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(count.value(), 40);
  job = c.job(first.job_id);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->status, app::JobStatus::Done);
  pending = c.job_items(first.job_id, true);
  ASSERT_TRUE(pending.ok());
  EXPECT_TRUE(pending->empty());
}

TEST_F(ImportTest, CopyToStoreCopiesAtomicallyAndNeverReplacesAStoredFile) {
  fs::create_directories(path("in"));
  fs::create_directories(path("other"));
  const std::string study = uid("2", 5);
  const std::string sop = uid("4", 5, 1);
  td::write_dicom(path("in/a.dcm"), small_spec("P", study, uid("3", 5), sop, 1));
  td::write_dicom(path("in/b.dcm"), small_spec("P", study, uid("3", 5), uid("4", 5, 2), 2));
  td::write_dicom(path("other/a-changed.dcm"), small_spec("P", study, uid("3", 5), sop, 9));  // conflicts with a.dcm
  Catalog c = open_catalog("cat/hilum.db");
  ImportOptions opts = options();
  opts.copy_to_store = true;
  const ImportReport r = app::import_paths(c, {path("in")}, opts);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.counts.imported, 2u);
  auto list = c.list_instances();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  for (const auto& im : list.value()) {
    const fs::path expected = fs::weakly_canonical(path("cat/store")) / study / (im.sop_instance_uid + ".dcm");
    EXPECT_EQ(im.stored_path, expected.string());
    ASSERT_TRUE(fs::exists(im.stored_path));
    EXPECT_EQ(file_bytes(im.stored_path), file_bytes(im.path));
    EXPECT_EQ(app::sha256_file(im.stored_path).value(), im.content_hash);
  }

  // A conflicting file with the same SOP Instance UID: the stored copy stays as it was and no
  // copy of the newcomer is left behind.
  const std::string stored_before = file_bytes(path("cat/store") / study / (sop + ".dcm"));
  const ImportReport conflict = app::import_paths(c, {path("other")}, opts);
  ASSERT_TRUE(conflict.ok());
  EXPECT_EQ(conflict.counts.conflicts, 1u);
  EXPECT_EQ(file_bytes(path("cat/store") / study / (sop + ".dcm")), stored_before);
  std::vector<std::string> names;
  for (const auto& e : fs::recursive_directory_iterator(path("cat/store"))) {
    if (e.is_regular_file()) names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{sop + ".dcm", uid("4", 5, 2) + ".dcm"}))
      << "no temporary or orphan files in the store";
}

TEST_F(ImportTest, RecordsTheWindowShownByDefault) {
  fs::create_directories(path("in"));
  td::DicomSpec with_window = small_spec("P", uid("2", 9), uid("3", 9), uid("4", 9, 1), 1);
  with_window.windows = {{1500.0, 2500.0, "SOFT"}, {2048.0, 4096.0, "FULL"}};
  td::write_dicom(path("in/a-window.dcm"), with_window);
  td::DicomSpec with_lut = small_spec("P", uid("2", 9), uid("3", 9), uid("4", 9, 2), 2);
  std::vector<std::uint16_t> table(4096);
  for (std::size_t i = 0; i < table.size(); ++i) table[i] = static_cast<std::uint16_t>(4095 - i);
  with_lut.voi_luts = {{0, 16, table, "INVERSE"}};
  td::write_dicom(path("in/b-lut.dcm"), with_lut);
  td::write_dicom(path("in/c-none.dcm"), small_spec("P", uid("2", 9), uid("3", 9), uid("4", 9, 3), 3));
  Catalog c = open_catalog();
  ASSERT_TRUE(app::import_paths(c, {path("in")}, options()).ok());

  auto a = c.find_instance(uid("4", 9, 1));
  ASSERT_TRUE(a.ok() && a->has_value());
  ASSERT_TRUE(a->value().window_center.has_value());
  EXPECT_DOUBLE_EQ(*a->value().window_center, 1500.0);
  EXPECT_DOUBLE_EQ(*a->value().window_width, 2500.0);
  auto b = c.find_instance(uid("4", 9, 2));
  ASSERT_TRUE(b.ok() && b->has_value());
  EXPECT_FALSE(b->value().window_center.has_value());  // a VOI LUT is not a window
  auto none = c.find_instance(uid("4", 9, 3));
  ASSERT_TRUE(none.ok() && none->has_value());
  auto image = dicom::read_radiograph(path("in/c-none.dcm"));
  ASSERT_TRUE(image.ok());
  const dicom::Window automatic = dicom::auto_window(image.value());
  ASSERT_TRUE(none->value().window_center.has_value());
  EXPECT_DOUBLE_EQ(*none->value().window_center, automatic.center);
  EXPECT_DOUBLE_EQ(*none->value().window_width, automatic.width);
  // The thumbnail is the automatic-window rendering, whichever way it is asked for.
  EXPECT_EQ(none->value().thumbnail_png, app::make_thumbnail(image.value(), 128).value());
  EXPECT_EQ(app::make_thumbnail(image.value(), automatic, 128).value(), app::make_thumbnail(image.value(), 128).value());
}

TEST_F(ImportTest, ProgressReportsRateAndEtaAndNothingToImportIsAnError) {
  write_studies(path("in"), 1, 1, 1, 12);
  Catalog c = open_catalog();
  std::vector<app::ImportProgress> calls;
  const ImportReport r = app::import_paths(c, {path("in")}, options(4), [&](const app::ImportProgress& p) { calls.push_back(p); });
  ASSERT_TRUE(r.ok());
  ASSERT_GE(calls.size(), 3u);  // at least once per committed batch
  bool saw_rate = false;
  for (const auto& p : calls) {
    EXPECT_EQ(p.total, 12u);
    EXPECT_LE(p.done, 12u);
    EXPECT_LE(p.committed, p.done);
    // Workers read ahead of the commits, so on a fast machine every call may already see all
    // 12 files done: check rate and ETA on every call with progress, not only mid-way ones.
    if (p.done > 0) {
      saw_rate = saw_rate || p.files_per_second > 0.0;
      EXPECT_GE(p.eta_seconds, 0.0);
      if (p.done == 12) {
        EXPECT_DOUBLE_EQ(p.eta_seconds, 0.0);
      }
    }
  }
  EXPECT_TRUE(saw_rate);
  EXPECT_GT(r.files_per_second, 0.0);

  const ImportReport none = app::import_paths(c, {}, options());
  EXPECT_FALSE(none.ok());
  EXPECT_EQ(none.error->kind, app::ErrorKind::Invalid);
}

}  // namespace
}  // namespace hilum::test
