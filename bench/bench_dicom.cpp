// DICOM reader throughput: `info` (attributes only) and full decode of a 2,000 x 2,500 16-bit
// radiograph per transfer syntax, plus the display rendering. Files are generated once into a
// temporary folder by the test-data generator (so the numbers need nothing but this repository).
//   build/bench/bench_dicom --benchmark_min_time=1
// Results are written down in bench/README.md.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>

#include <unistd.h>

#include "hilum/dicom/display.hpp"
#include "hilum/dicom/reader.hpp"
#include "hilum/testdata/phantom.hpp"

namespace fs = std::filesystem;
namespace dcm = hilum::dicom;
namespace td = hilum::testdata;

namespace {

constexpr int kRows = 2500;
constexpr int kColumns = 2000;

const fs::path& folder() {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("hilum-bench-" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

// One file per encoding, written on first use. JPEG baseline is 8-bit by definition and
// JPEG extended is 12-bit; every other encoding holds 16 bits allocated, 12 stored (a typical CR/DX).
const fs::path& file_for(td::Encoding e) {
  static std::map<td::Encoding, fs::path> files;
  auto it = files.find(e);
  if (it != files.end()) return it->second;
  td::DicomSpec spec;
  spec.phantom.rows = kRows;
  spec.phantom.columns = kColumns;
  spec.encoding = e;
  if (e == td::Encoding::JpegBaseline) {
    spec.phantom.bits_allocated = 8;
    spec.phantom.bits_stored = 8;
    spec.phantom.high_bit = 7;
  }
  const fs::path path = folder() / (std::string(td::to_string(e)) + ".dcm");
  td::write_dicom(path, spec);
  return files.emplace(e, path).first->second;
}

void BM_Info(benchmark::State& state) {
  const fs::path& path = file_for(td::Encoding::ExplicitLittle);
  dcm::ReadOptions options;
  options.decode_pixels = false;
  for (auto _ : state) {
    auto r = dcm::read_radiograph(path, options);
    if (!r) state.SkipWithError(r.error().message.c_str());
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["files/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Info)->Unit(benchmark::kMicrosecond);

void BM_Decode(benchmark::State& state) {
  const auto encoding = static_cast<td::Encoding>(state.range(0));
  const fs::path& path = file_for(encoding);
  state.SetLabel(td::to_string(encoding));
  for (auto _ : state) {
    auto r = dcm::read_radiograph(path);
    if (!r) state.SkipWithError(r.error().message.c_str());
    benchmark::DoNotOptimize(r);
  }
  state.counters["files/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["MB/file"] = static_cast<double>(fs::file_size(path)) / 1e6;
}

// 8-bit display rendering of a decoded image: with a given window (what window/level dragging
// costs) and with the automatic window (histogram of the exposed field computed each time).
void BM_Render8(benchmark::State& state) {
  auto r = dcm::read_radiograph(file_for(td::Encoding::ExplicitLittle));
  if (!r) {
    state.SkipWithError(r.error().message.c_str());
    return;
  }
  const bool automatic = state.range(0) != 0;
  state.SetLabel(automatic ? "automatic window" : "given window");
  const dcm::DisplayOptions options{automatic ? dcm::VoiChoice::automatic() : dcm::VoiChoice::custom(2048, 4096), false};
  for (auto _ : state) {
    auto out = dcm::render_8bit(r.value(), options);
    benchmark::DoNotOptimize(out);
  }
  state.counters["Mpixel/s"] = benchmark::Counter(static_cast<double>(state.iterations()) * kRows * kColumns / 1e6,
                                                  benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Render8)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

void register_decodes() {
  for (const auto e : td::all_encodings()) {
    benchmark::RegisterBenchmark((std::string("BM_Decode/") + td::to_string(e)).c_str(), BM_Decode)
        ->Arg(static_cast<int>(e))
        ->UseRealTime()  // the JPEG 2000 decoder uses both cores
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_decodes();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  std::error_code ec;
  fs::remove_all(folder(), ec);
  return 0;
}
