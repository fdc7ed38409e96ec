// Where the time goes per film (issue 18): for each DICOM file given, one thread, median of
// --runs (default 3) reads of each stage, in ms:
//   decode       read_radiograph, full resolution (decoder_threads 1)
//   decode_min   read_radiograph with min_side = the model's input side (what import/classify use)
//   display      the display chain on the full decode (render_float: modality, default VOI, polarity)
//   preprocess   resize to the model's input + normalise (model_input_of, inference::normalise)
//   model        the model's forward on that one image (batch 1)
//   cache_read   reading the cached model input back (model_input.hpp), what classify pays later
//   bench_films --model DIR FILE...   (OMP_NUM_THREADS=1 for per-core figures)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <unistd.h>

#include "hilum/app/classify.hpp"
#include "hilum/app/model_input.hpp"
#include "hilum/dicom/display.hpp"
#include "hilum/dicom/reader.hpp"
#include "hilum/inference/vit.hpp"

namespace fs = std::filesystem;
using namespace hilum;

namespace {

double median_ms(int runs, const std::function<void()>& f) {
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir;
  int runs = 3;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--model") == 0 && i + 1 < argc) model_dir = argv[++i];
    else if (std::strcmp(argv[i], "--runs") == 0 && i + 1 < argc) runs = std::max(1, std::atoi(argv[++i]));
    else files.emplace_back(argv[i]);
  }
  if (model_dir.empty() || files.empty()) {
    std::fprintf(stderr, "usage: bench_films --model DIR [--runs N] FILE...\n");
    return 2;
  }
  auto model = inference::ViTModel::load(model_dir);
  if (!model) {
    std::fprintf(stderr, "bench_films: %s\n", model.error().message.c_str());
    return 1;
  }
  const auto& c = model->config();
  const app::InputSize size = app::input_size_of(c);  // with the model's centre crop, if any
  const fs::path cache = fs::temp_directory_path() / ("bench_films_cache_" + std::to_string(::getpid()));
  (void)model->forward({inference::Image{c.num_channels, c.input_height, c.input_width,
                                         std::vector<float>(static_cast<std::size_t>(c.num_channels) * size.width * size.height, 0.5f)}});
  std::printf("| film | size | decode | decode (min_side %d) | reduced to | display | preprocess | model | cache read |\n", std::max(size.width, size.height));
  std::printf("|---|---|---:|---:|---|---:|---:|---:|---:|\n");
  for (const auto& file : files) {
    dicom::ReadOptions full_options, small_options;
    full_options.decoder_threads = small_options.decoder_threads = 1;
    small_options.min_side = std::max(size.width, size.height);
    auto image = dicom::read_radiograph(file, full_options);
    auto small = dicom::read_radiograph(file, small_options);
    if (!image || !small) {
      std::printf("| %s | unreadable | | | | | | | |\n", fs::path(file).filename().c_str());
      continue;
    }
    const double decode = median_ms(runs, [&] { (void)dicom::read_radiograph(file, full_options); });
    const double decode_min = median_ms(runs, [&] { (void)dicom::read_radiograph(file, small_options); });
    std::vector<float> grey;
    const double display = median_ms(runs, [&] { grey = dicom::render_float(image.value()).value(); });
    std::vector<float> input;
    inference::Image normalised;
    const double preprocess = median_ms(runs, [&] {
      input = app::model_input_of(grey.data(), image->columns, image->rows, size);
      normalised = inference::normalise(input.data(), c);
    });
    const double forward = median_ms(runs, [&] { (void)model->forward({normalised}); });
    const std::string hash(64, 'a');
    (void)app::write_cached_input(cache, hash, size, input, 0.0);
    const double cache_read = median_ms(runs, [&] { (void)app::read_cached_input(cache, hash, size); });
    std::printf("| %s | %d x %d | %.1f | %.1f | %d x %d | %.1f | %.1f | %.2f | %.2f |\n", fs::path(file).filename().c_str(), image->columns,
                image->rows, decode, decode_min, small->columns, small->rows, display, preprocess, forward, cache_read);
  }
  std::error_code ec;
  fs::remove_all(cache, ec);
  return 0;
}
