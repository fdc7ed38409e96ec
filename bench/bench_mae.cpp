// One masked-autoencoder pre-training step (training/mae.hpp: forward with a tape over the kept
// patches, decoder, masked norm-pix loss, backward into encoder and decoder, both AdamW updates)
// on a random ViT-Ti/16 or ViT-S/16 and random images: images/s and peak RSS.
//
//   build/bench/bench_mae --variant ti16|s16 [--image-size 224] [--batch 32] [--mask-ratio 0.9]
//                         [--steps 5] [--warmup 1] [--precision f32|bf16]
//
// Decoder: 128 wide, 2 blocks, 4 heads (MaeConfig's defaults). A fresh random mask every step, as in
// training. Threads: OMP_NUM_THREADS (2 on the project's machine). bench/compare/mae_run.sh runs it
// interleaved with PyTorch's step (torch_mae_bench.py).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "hilum/inference/precision.hpp"
#include "hilum/training/init.hpp"
#include "hilum/training/mae.hpp"
#include "hilum/training/optim.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

int main(int argc, char** argv) {
  using namespace hilum;
  std::string variant = "ti16", precision = "f32";
  int batch = 32, steps = 5, warmup = 1, size = 224;
  float mask_ratio = 0.9f;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--variant") variant = next();
    else if (a == "--batch") batch = std::atoi(next().c_str());
    else if (a == "--steps") steps = std::atoi(next().c_str());
    else if (a == "--warmup") warmup = std::atoi(next().c_str());
    else if (a == "--image-size") size = std::atoi(next().c_str());
    else if (a == "--mask-ratio") mask_ratio = std::strtof(next().c_str(), nullptr);
    else if (a == "--precision") precision = next();
    else {
      std::fprintf(stderr, "usage: %s --variant ti16|s16 [--image-size N] [--batch N] [--mask-ratio R] [--steps N] [--warmup N] [--precision f32|bf16]\n", argv[0]);
      return 2;
    }
  }
  if ((variant != "ti16" && variant != "s16") || batch < 1 || steps < 1 || (precision != "f32" && precision != "bf16") ||
      !(mask_ratio > 0.0f && mask_ratio < 1.0f)) {
    std::fprintf(stderr, "bench_mae: --variant ti16|s16, --precision f32|bf16, positive --batch and --steps, --mask-ratio in (0, 1)\n");
    return 2;
  }
  auto c = training::architecture(variant == "s16" ? "vit-s16" : "vit-ti16", size);
  if (!c) {
    std::fprintf(stderr, "bench_mae: %s\n", c.error().message.c_str());
    return 2;
  }
  const training::ViTConfig config = *c;
  training::ViTWeights encoder = training::initial_weights(config, 301);
  encoder.has_classifier = false;
  training::MaeConfig mae;
  mae.mask_ratio = mask_ratio;
  training::ViTWeights decoder = training::initial_decoder(config, mae, 302);
  std::mt19937 rng(7);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<training::Image> images;
  for (int b = 0; b < batch; ++b) {
    training::Image im{3, size, size, std::vector<float>(static_cast<std::size_t>(3 * size * size))};
    for (float& v : im.data) v = n(rng);
    images.push_back(std::move(im));
  }
  training::TrainOptions options;
  options.precision = precision == "bf16" ? inference::Precision::BF16 : inference::Precision::F32;
  const bool bf16_runs = inference::available_precision(options.precision) == inference::Precision::BF16;
  training::AdamWOptions ao;
  ao.lr = 1e-6f;
  training::AdamW opt_e(encoder, ao), opt_d(decoder, ao);
  auto ge = training::zeros_like(encoder), gd = training::zeros_like(decoder);
  training::MaeTape tape;
  int threads = 1;
#ifdef _OPENMP
  threads = omp_get_max_threads();
#endif
  const int patches = (size / config.patch_size) * (size / config.patch_size);
  std::printf("bench_mae: %s, %dx%d, batch %d, mask %.2f (%d of %d patches kept), decoder %d wide x %d, %d threads, %s products\n",
              variant.c_str(), size, size, batch, static_cast<double>(mask_ratio), training::kept_patch_count(patches, mask_ratio), patches,
              mae.decoder_hidden, mae.decoder_layers, threads, bf16_runs ? "BF16 mixed-precision" : "F32");
  std::vector<double> times;
  for (int s = 0; s < warmup + steps; ++s) {
    const auto keep = training::random_keep(batch, patches, mask_ratio, static_cast<std::uint64_t>(s));
    const auto t0 = std::chrono::steady_clock::now();
    training::set_zero(ge);
    training::set_zero(gd);
    const auto out = training::mae_forward(config, encoder, mae, decoder, images, keep, options, tape);
    const auto t1 = std::chrono::steady_clock::now();
    training::mae_backward(config, encoder, decoder, tape, ge, gd);
    const auto t2 = std::chrono::steady_clock::now();
    opt_e.step(encoder, ge, ao.lr);
    opt_d.step(decoder, gd, ao.lr);
    const auto t3 = std::chrono::steady_clock::now();
    const auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
    std::printf("%s step %d: %.1f ms (forward %.1f, backward %.1f, optimizer %.1f), loss %.4f\n", s < warmup ? "warm-up" : "timed", s, ms(t0, t3),
                ms(t0, t1), ms(t1, t2), ms(t2, t3), out.loss);
    if (s >= warmup) times.push_back(ms(t0, t3));
  }
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2], best = times.front();
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  std::printf("RESULT variant=%s precision=%s batch=%d median_ms=%.1f best_ms=%.1f images_per_s_median=%.2f images_per_s_best=%.2f peak_rss_mib=%.0f\n",
              variant.c_str(), bf16_runs ? "bf16" : "f32", batch, median, best, 1000.0 * batch / median, 1000.0 * batch / best,
              static_cast<double>(u.ru_maxrss) / 1024.0);
  return 0;
}
