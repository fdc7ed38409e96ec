// Hilum's ViT engine: latency for one 224 x 224 image and for a batch of 8, on a model folder
// made by `tests/reference/make_vit_reference.py --bench DIR --variant b16|ti16`.
//   OMP_NUM_THREADS=2 build/bench/bench_vit --model DIR [--precision f32|bf16] [--benchmark_repetitions=5 ...]
// --precision picks the arithmetic of the linear layers (default: the engine's default, BF16 where
// the CPU has AVX512_BF16). Before timing it prints
//   check: max |p_hilum - p_pytorch|   against the folder's reference.safetensors (PyTorch, F32)
//   check: max |p_hilum - p_f32|       against Hilum's F32 reference path (Eigen GEMMs, unpacked)
//   memory: ...                         VmHWM after loading, after the first batch-1 forward (which
//                                       packs the weights) and after a batch-8 forward.
// The benchmark counters give ms/image and GFLOP/s (2 x the MACs of every matrix product).
// When the folder carries a domain reference (hilum.json), BM_DomainPixels times what the domain
// check adds per image beside the forward: the pixel descriptor (thumbnail, statistics), its two
// distances, and the round-field measure (inference::corner_content), at the model's input size.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "hilum/inference/model_extras.hpp"
#include "hilum/inference/safetensors.hpp"
#include "hilum/inference/vit.hpp"

namespace inf = hilum::inference;

namespace {

inf::ViTModel* g_model = nullptr;
std::vector<inf::Image> g_images;
double g_flops_per_image = 0;

std::vector<inf::Image> make_batch(std::size_t n) {
  std::vector<inf::Image> batch;
  for (std::size_t i = 0; i < n; ++i) batch.push_back(g_images[i % g_images.size()]);
  return batch;
}

void BM_Forward(benchmark::State& state) {
  const auto batch_size = static_cast<std::size_t>(state.range(0));
  const std::vector<inf::Image> batch = make_batch(batch_size);
  for (auto _ : state) {
    auto out = g_model->forward(batch);
    if (!out) state.SkipWithError(out.error().message.c_str());
    benchmark::DoNotOptimize(out);
  }
  const double images = static_cast<double>(batch_size) * static_cast<double>(state.iterations());
  // kIsRate | kInvert gives seconds per unit: counting images in thousands yields ms per image.
  state.counters["ms/image"] = benchmark::Counter(images / 1000.0, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["GFLOP/s"] = benchmark::Counter(images * g_flops_per_image / 1e9, benchmark::Counter::kIsRate);
}

const inf::DomainReference* g_domain = nullptr;

// A smooth film-like grey image with fine texture, in [0, 1], at the model's input size.
std::vector<float> film_like_input() {
  const auto& c = g_model->config();
  std::vector<float> grey(static_cast<std::size_t>(c.input_width) * static_cast<std::size_t>(c.input_height));
  for (int y = 0; y < c.input_height; ++y)
    for (int x = 0; x < c.input_width; ++x)
      grey[static_cast<std::size_t>(y * c.input_width + x)] =
          static_cast<float>(0.5 + 0.3 * std::sin(x * 0.07) * std::cos(y * 0.05) + 0.05 * std::sin(x * 1.3 + y * 0.7));
  return grey;
}

// state.range(0): 1 the whole pixel side of the check, 0 the round-field measure alone.
void BM_DomainPixels(benchmark::State& state) {
  const auto& c = g_model->config();
  const std::vector<float> grey = film_like_input();
  const bool all = state.range(0) == 1;
  for (auto _ : state) {
    if (all) {
      const auto descriptor = inf::domain_pixels(*g_domain, grey.data(), c.input_width, c.input_height);
      const auto scores = inf::pixel_scores(*g_domain, descriptor);
      benchmark::DoNotOptimize(scores);
    }
    const double corners = inf::corner_content(grey.data(), c.input_width, c.input_height);
    benchmark::DoNotOptimize(corners);
  }
  state.counters["ms/image"] = benchmark::Counter(static_cast<double>(state.iterations()) / 1000.0,
                                                  benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// The process's peak resident set so far, in MiB (Linux: VmHWM).
double peak_rss_mib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0;
}

// 2 x MACs of one image's matrix products (as bench/compare/report.py counts them).
double flops_per_image(const inf::ViTConfig& c) {
  const double d = c.hidden_size, inter = c.intermediate_size, layers = c.num_layers;
  const double n = static_cast<double>(c.image_size / c.patch_size) * (c.image_size / c.patch_size), t = n + 1;
  const double labels = c.labels.empty() ? 2 : static_cast<double>(c.labels.size());
  const double macs = n * c.num_channels * c.patch_size * c.patch_size * d + layers * (4 * t * d * d + 2 * t * t * d + 2 * t * d * inter) + d * labels;
  return 2 * macs;
}

double max_abs_diff(const inf::Matrix& a, const float* b) {
  double worst = 0;
  for (Eigen::Index i = 0; i < a.size(); ++i) worst = std::max(worst, static_cast<double>(std::abs(a.data()[i] - b[i])));
  return worst;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir, precision_arg;
  for (int i = 1; i < argc;) {
    const bool model = std::strcmp(argv[i], "--model") == 0, precision = std::strcmp(argv[i], "--precision") == 0;
    if ((model || precision) && i + 1 < argc) {
      (model ? dir : precision_arg) = argv[i + 1];
      for (int k = i; k + 2 <= argc; ++k) argv[k] = argv[k + 2];
      argc -= 2;
    } else {
      ++i;
    }
  }
  if (dir.empty() || (!precision_arg.empty() && precision_arg != "f32" && precision_arg != "bf16")) {
    std::fprintf(stderr, "usage: bench_vit --model DIR [--precision f32|bf16] [benchmark options]\n");
    return 2;
  }
  auto model = inf::ViTModel::load(dir);
  if (!model) {
    std::fprintf(stderr, "bench_vit: %s\n", model.error().message.c_str());
    return 1;
  }
  const double rss_loaded = peak_rss_mib();
  g_model = &model.value();
  if (!precision_arg.empty()) model->set_precision(precision_arg == "bf16" ? inf::Precision::BF16 : inf::Precision::F32);
  const bool bf16 = inf::available_precision(model->precision()) == inf::Precision::BF16;
  const bool avx512 = inf::cpu_has_avx512_kernels();
  std::printf("engine: %s GEMMs, %s\n", avx512 ? "AVX-512 packed" : "Eigen (no AVX-512)", bf16 ? "BF16 (AVX512_BF16, F32 accumulation)" : "F32");
  const auto& c = model->config();
  g_flops_per_image = flops_per_image(c);
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
  } else {
    inf::Image im{c.num_channels, c.image_size, c.image_size, std::vector<float>(static_cast<std::size_t>(c.num_channels * c.image_size * c.image_size), 0.1f)};
    g_images.push_back(im);
  }
  // Memory: the first forward packs the weights; a batch of 8 then shows the activations per image.
  {
    auto one = model->forward(make_batch(1));
    const double rss_one = peak_rss_mib();
    auto eight = model->forward(make_batch(8));
    const double rss_eight = peak_rss_mib();
    if (!one || !eight) {
      std::fprintf(stderr, "bench_vit: forward failed\n");
      return 1;
    }
    std::printf("memory: peak RSS %.0f MiB after load, %.0f MiB after a batch-1 forward (packed weights %.0f MiB), %.0f MiB after batch 8: "
                "%.1f MiB per extra image\n",
                rss_loaded, rss_one, static_cast<double>(model->packed_bytes()) / 1048576.0, rss_eight, (rss_eight - rss_one) / 7.0);
  }
  if (ref && ref->find("probabilities") != nullptr) {
    auto out = model->forward(g_images);
    auto probs = ref->read_f32("probabilities");
    if (out && probs) {
      std::printf("check: max |p_hilum - p_pytorch| = %.3g over %ld probabilities\n", max_abs_diff(out->probabilities, probs->data()),
                  static_cast<long>(out->probabilities.size()));
      // Hilum's own F32 reference: Eigen's GEMM on the unpacked weights (packs nothing).
      model->set_kernels(inf::Kernels::Eigen);
      auto f32 = model->forward(g_images);
      model->set_kernels(inf::Kernels::Auto);
      if (f32) std::printf("check: max |p_hilum - p_f32| = %.3g\n", max_abs_diff(out->probabilities, f32->probabilities.data()));
    }
  }
  benchmark::RegisterBenchmark("BM_Forward", BM_Forward)->Arg(1)->Arg(8)->Unit(benchmark::kMillisecond)->UseRealTime();
  auto extras = inf::read_model_extras(dir, c);
  if (extras && extras->domain) {
    g_domain = &*extras->domain;
    benchmark::RegisterBenchmark("BM_DomainPixels", BM_DomainPixels)->Arg(1)->Arg(0)->Unit(benchmark::kMicrosecond)->UseRealTime();
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
