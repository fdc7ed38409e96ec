// Hilum's ViT engine: latency for one 224 x 224 image and for a batch of 8, on a model folder
// made by `tests/reference/make_vit_reference.py --bench DIR --variant b16|ti16`.
//   OMP_NUM_THREADS=2 build/bench/bench_vit --model DIR [--benchmark_repetitions=5 ...]
// Before timing it checks the probabilities against the folder's reference.safetensors (PyTorch).
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "hilum/inference/safetensors.hpp"
#include "hilum/inference/vit.hpp"

namespace inf = hilum::inference;

namespace {

const inf::ViTModel* g_model = nullptr;
std::vector<inf::Image> g_images;

void BM_Forward(benchmark::State& state) {
  const auto batch_size = static_cast<std::size_t>(state.range(0));
  std::vector<inf::Image> batch;
  for (std::size_t i = 0; i < batch_size; ++i) batch.push_back(g_images[i % g_images.size()]);
  for (auto _ : state) {
    auto out = g_model->forward(batch);
    if (!out) state.SkipWithError(out.error().message.c_str());
    benchmark::DoNotOptimize(out);
  }
  // kIsRate | kInvert gives seconds per unit: counting images in thousands yields ms per image.
  state.counters["ms/image"] = benchmark::Counter(static_cast<double>(batch_size) * static_cast<double>(state.iterations()) / 1000.0,
                                                  benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--model") == 0 && i + 1 < argc) {
      dir = argv[i + 1];
      for (int k = i; k + 2 <= argc; ++k) argv[k] = argv[k + 2];
      argc -= 2;
      break;
    }
  }
  if (dir.empty()) {
    std::fprintf(stderr, "usage: bench_vit --model DIR [benchmark options]\n");
    return 2;
  }
  auto model = inf::ViTModel::load(dir);
  if (!model) {
    std::fprintf(stderr, "bench_vit: %s\n", model.error().message.c_str());
    return 1;
  }
  g_model = &model.value();
  const auto& c = model->config();
  // Inputs: the reference's pixel values when present (and check the answers), else noise.
  auto ref = inf::SafetensorsFile::open(std::filesystem::path(dir) / "reference.safetensors");
  if (ref && ref->find("pixel_values") != nullptr) {
    const auto* info = ref->find("pixel_values");
    auto px = ref->read_f32("pixel_values");
    const auto n = static_cast<std::size_t>(c.num_channels) * static_cast<std::size_t>(info->shape[2] * info->shape[3]);
    for (std::int64_t b = 0; b < info->shape[0]; ++b) {
      g_images.push_back({c.num_channels, static_cast<int>(info->shape[2]), static_cast<int>(info->shape[3]),
                          std::vector<float>(px->begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(b) * n),
                                             px->begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(b + 1) * n))});
    }
    auto out = model->forward(g_images);
    auto probs = ref->read_f32("probabilities");
    if (out && probs) {
      double worst = 0;
      for (Eigen::Index i = 0; i < out->probabilities.size(); ++i) worst = std::max(worst, static_cast<double>(std::abs(out->probabilities.data()[i] - (*probs)[static_cast<std::size_t>(i)])));
      std::printf("check: max |p_hilum - p_pytorch| = %.3g over %ld probabilities\n", worst, static_cast<long>(out->probabilities.size()));
    }
  } else {
    inf::Image im{c.num_channels, c.image_size, c.image_size, std::vector<float>(static_cast<std::size_t>(c.num_channels * c.image_size * c.image_size), 0.1f)};
    g_images.push_back(im);
  }
  benchmark::RegisterBenchmark("BM_Forward", BM_Forward)->Arg(1)->Arg(8)->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
