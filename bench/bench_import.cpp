// Batch import throughput: hilum::app::import_paths on 2,000 generated radiographs (512 x 512,
// 16 bits allocated / 12 stored, explicit little endian; 20 patients x 100 images, each with its
// own UIDs) into a fresh catalog: read + full decode, SHA-256, display window, 128-pixel PNG
// thumbnail, and the catalog writes (64 files per transaction). Then the same folder again into
// the filled catalog (every file already present: the path/size/mtime fast path).
//   build/bench/bench_import
// The files are generated once into a temporary folder (and stay in the page cache: these are
// warm-cache numbers). Results are written down in bench/README.md.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include <unistd.h>

#include "hilum/app/catalog.hpp"
#include "hilum/app/import.hpp"
#include "hilum/testdata/phantom.hpp"

namespace fs = std::filesystem;
namespace app = hilum::app;
namespace td = hilum::testdata;

namespace {

constexpr int kPatients = 20;
constexpr int kImagesPerPatient = 100;
constexpr int kFiles = kPatients * kImagesPerPatient;
constexpr int kSide = 512;

struct Folder {
  fs::path root = fs::temp_directory_path() / ("hilum-bench-import-" + std::to_string(::getpid()));
  ~Folder() {
    std::error_code ec;
    fs::remove_all(root, ec);
  }
};

Folder& folder() {
  static Folder f;
  return f;
}

// 20 patients, each with two studies (PA + lateral series) holding 100 images in all.
const fs::path& images() {
  static const fs::path dir = [] {
    const fs::path in = folder().root / "in";
    const auto start = std::chrono::steady_clock::now();
    for (int p = 0; p < kPatients; ++p) {
      for (int i = 0; i < kImagesPerPatient; ++i) {
        const int study = i % 2;
        td::DicomSpec s;
        s.phantom.rows = kSide;
        s.phantom.columns = kSide;
        s.phantom.seed = static_cast<std::uint32_t>(p * kImagesPerPatient + i + 1);
        s.encoding = td::Encoding::ExplicitLittle;
        s.patient_id = "BENCH-" + std::to_string(p);
        s.patient_name = "Bench^Patient" + std::to_string(p);
        s.study_instance_uid = "1.2.826.0.1.3680043.10.997.2." + std::to_string(p) + "." + std::to_string(study);
        s.series_instance_uid = "1.2.826.0.1.3680043.10.997.3." + std::to_string(p) + "." + std::to_string(study);
        s.sop_instance_uid = "1.2.826.0.1.3680043.10.997.4." + std::to_string(p) + "." + std::to_string(i);
        s.view_position = study == 0 ? "PA" : "LL";
        s.instance_number = std::to_string(i + 1);
        const fs::path sub = in / ("patient" + std::to_string(p)) / ("study" + std::to_string(study));
        fs::create_directories(sub);
        char name[32];
        std::snprintf(name, sizeof name, "IM%04d.dcm", i);
        td::write_dicom(sub / name, s);
      }
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "generated %d files (%d x %d) in %.1f s\n", kFiles, kSide, kSide, seconds);
    // Write the 1 GB back now: otherwise the kernel's writeback competes with the first timed import.
    ::sync();
    return in;
  }();
  return dir;
}

// Imports the folder into a fresh catalog per iteration (catalog creation not timed).
void BM_ImportFresh(benchmark::State& state) {
  const fs::path& in = images();
  const fs::path db = folder().root / "catalog" / "hilum.db";
  app::ImportOptions options;
  options.jobs = static_cast<int>(state.range(0));
  for (auto _ : state) {
    state.PauseTiming();
    std::error_code ec;
    fs::remove_all(db.parent_path(), ec);
    auto catalog = app::Catalog::open(db);
    if (!catalog) {
      state.SkipWithError(catalog.error().message.c_str());
      break;
    }
    state.ResumeTiming();
    const auto start = std::chrono::steady_clock::now();
    const app::ImportReport report = app::import_paths(*catalog, {in}, options);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    state.SetIterationTime(seconds);
    if (!report.ok() || report.counts.imported != static_cast<std::size_t>(kFiles)) {
      state.SkipWithError(report.ok() ? "not every file was imported" : report.error->message.c_str());
      break;
    }
    state.counters["files/s"] = static_cast<double>(kFiles) / seconds;
    state.counters["ms/file"] = 1000.0 * seconds / kFiles;
  }
  state.SetLabel("jobs=" + std::to_string(state.range(0)));
}
BENCHMARK(BM_ImportFresh)->Arg(2)->Arg(1)->Unit(benchmark::kSecond)->UseManualTime()->Iterations(1)->Repetitions(3);

// The same folder into a catalog that already holds it: a new job, every file "already present"
// from the path/size/mtime stamps without reading it.
void BM_ReimportAllPresent(benchmark::State& state) {
  const fs::path& in = images();
  const fs::path db = folder().root / "catalog-full" / "hilum.db";
  auto catalog = app::Catalog::open(db);
  if (!catalog) {
    state.SkipWithError(catalog.error().message.c_str());
    return;
  }
  app::ImportOptions options;
  options.jobs = 2;
  if (auto count = catalog->count_instances(); count && count.value() == 0) {
    const auto first = app::import_paths(*catalog, {in}, options);
    if (!first.ok()) {
      state.SkipWithError(first.error->message.c_str());
      return;
    }
  }
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    const app::ImportReport report = app::import_paths(*catalog, {in}, options);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    state.SetIterationTime(seconds);
    if (!report.ok() || report.counts.already_present != static_cast<std::size_t>(kFiles)) {
      state.SkipWithError(report.ok() ? "not every file was already present" : report.error->message.c_str());
      break;
    }
    state.counters["files/s"] = static_cast<double>(kFiles) / seconds;
  }
}
BENCHMARK(BM_ReimportAllPresent)->Unit(benchmark::kMillisecond)->UseManualTime()->Iterations(1)->Repetitions(3);

}  // namespace

BENCHMARK_MAIN();
