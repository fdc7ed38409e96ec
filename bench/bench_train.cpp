// A full ViT training step (forward with a tape + backward from random dlogits, optionally the
// AdamW update) on random weights generated here: images/s and peak RSS.
//
//   build/bench/bench_train --variant ti16|b16 [--batch 8] [--steps 5] [--warmup 2] [--checkpoint]
//                           [--first-trainable K] [--optimizer] [--precision f32|bf16]
//
// One variant per process so that the peak RSS is that variant's. Threads: OMP_NUM_THREADS (2 on
// the project's machine). Prints one line per timed step, then the median and the best.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "hilum/inference/precision.hpp"
#include "hilum/training/backprop.hpp"
#include "hilum/training/init.hpp"
#include "hilum/training/optim.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using namespace hilum;

training::ViTConfig make_config(const std::string& variant) {
  auto c = training::architecture(variant == "b16" ? "vit-b16" : "vit-ti16", 224);
  if (!c) {
    std::fprintf(stderr, "bench_train: %s\n", c.error().message.c_str());
    std::exit(2);
  }
  for (int i = 0; i < 14; ++i) c->labels.push_back("L" + std::to_string(i));
  return *c;
}

// Minor page faults so far: fresh pages the kernel hands out (memory freed and allocated again).
long minor_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string variant = "ti16";
  int batch = 8, steps = 5, warmup = 2, first = 0;
  bool checkpoint = false, optimizer = false;
  std::string precision = "f32";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--variant") variant = next();
    else if (a == "--batch") batch = std::atoi(next().c_str());
    else if (a == "--steps") steps = std::atoi(next().c_str());
    else if (a == "--warmup") warmup = std::atoi(next().c_str());
    else if (a == "--first-trainable") first = std::atoi(next().c_str());
    else if (a == "--checkpoint") checkpoint = true;
    else if (a == "--optimizer") optimizer = true;
    else if (a == "--precision") precision = next();
    else {
      std::fprintf(stderr, "usage: %s --variant ti16|b16 [--batch N] [--steps N] [--warmup N] [--checkpoint] [--first-trainable K] [--optimizer] [--precision f32|bf16]\n", argv[0]);
      return 2;
    }
  }
  if ((variant != "ti16" && variant != "b16") || batch < 1 || steps < 1 || (precision != "f32" && precision != "bf16")) {
    std::fprintf(stderr, "bench_train: --variant ti16|b16, --precision f32|bf16, positive --batch and --steps\n");
    return 2;
  }
  const training::ViTConfig config = make_config(variant);
  training::ViTWeights weights = training::initial_weights(config, 301);
  std::mt19937 rng(7);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<training::Image> images;
  for (int b = 0; b < batch; ++b) {
    training::Image im{3, 224, 224, {}};
    im.data.resize(3 * 224 * 224);
    for (float& v : im.data) v = n(rng);
    images.push_back(std::move(im));
  }
  training::Matrix dlogits(batch, 14);
  for (Eigen::Index i = 0; i < dlogits.size(); ++i) dlogits.data()[i] = n(rng) / static_cast<float>(batch * 14);

  training::TrainOptions options;
  options.checkpoint_activations = checkpoint;
  options.first_trainable_block = first;
  options.precision = precision == "bf16" ? inference::Precision::BF16 : inference::Precision::F32;
  const bool bf16_runs = inference::available_precision(options.precision) == inference::Precision::BF16;
  training::ViTWeights grads = training::zeros_like(weights);
  training::AdamWOptions ao;
  ao.lr = 1e-6f;
  std::optional<training::AdamW> opt;
  if (optimizer) opt.emplace(weights, ao);
  training::Tape tape;
  int threads = 1;
#ifdef _OPENMP
  threads = omp_get_max_threads();
#endif
  std::printf("bench_train: %s, 224x224, batch %d, %d threads, %s products, %s%s%s\n", variant.c_str(), batch, threads,
              bf16_runs ? "BF16 mixed-precision" : "F32",
              checkpoint ? "checkpointed activations" : "all activations kept", first > 0 ? (", first trainable block " + std::to_string(first)).c_str() : "",
              optimizer ? ", AdamW step" : ", no optimizer");
  std::vector<double> times;
  for (int s = 0; s < warmup + steps; ++s) {
    const long faults0 = minor_faults();
    const auto t0 = std::chrono::steady_clock::now();
    training::set_zero(grads);
    (void)training::forward(config, weights, images, options, tape);
    const auto t1 = std::chrono::steady_clock::now();
    training::backward(config, weights, tape, dlogits, grads);
    const auto t2 = std::chrono::steady_clock::now();
    if (opt) opt->step(weights, grads, ao.lr);
    const auto t3 = std::chrono::steady_clock::now();
    const auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
    std::printf("%s step %d: %.1f ms (forward %.1f, backward %.1f, optimizer %.1f), tape %.1f MiB, %ld page faults\n", s < warmup ? "warm-up" : "timed",
                s, ms(t0, t3), ms(t0, t1), ms(t1, t2), ms(t2, t3), static_cast<double>(tape.bytes()) / 1048576.0, minor_faults() - faults0);
    if (s >= warmup) times.push_back(ms(t0, t3));
  }
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2], best = times.front();
  std::printf("RESULT variant=%s precision=%s batch=%d median_ms=%.1f best_ms=%.1f images_per_s_median=%.2f images_per_s_best=%.2f peak_rss_mib=%.0f\n",
              variant.c_str(), bf16_runs ? "bf16" : "f32", batch, median, best, 1000.0 * batch / median, 1000.0 * batch / best, peak_rss_mib());
  return 0;
}
