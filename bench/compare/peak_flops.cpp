// Measured F32 peak of this machine: independent fused multiply-add chains in registers,
// one per thread, no memory traffic.  Build and run (run.sh does this in its temp dir):
//
//   g++ -O3 -march=native -std=c++17 -pthread bench/compare/peak_flops.cpp -o peak_flops
//   ./peak_flops [threads=2] [seconds per trial=0.25] [trials=12]
//
// With AVX-512 each FMA is 16 lanes x 2 flops on a zmm register (AVX2: 8 lanes on ymm); 16
// independent accumulators hide the FMA latency (4 cycles) on two FMA pipes.  Each thread runs
// the same number of iterations; GFLOP/s = total flops / wall time from a common start to the
// last thread's end.  Best of the trials: on a shared machine a short trial is more likely to
// find both cores free than a long one.  The last line is `peak_gflops threads=T value=X` for run.sh.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
constexpr const char* kIsa = "AVX-512 (zmm FMA)";
using Vec = __m512;
inline Vec vset(float x) { return _mm512_set1_ps(x); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline Vec vadd(Vec a, Vec b) { return _mm512_add_ps(a, b); }
inline float vsum(Vec v) {  // not _mm512_reduce_add_ps: GCC 12 warns falsely inside it
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  float s = 0;
  for (float x : t) s += x;
  return s;
}
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int kLanes = 8;
constexpr const char* kIsa = "AVX2 (ymm FMA)";
using Vec = __m256;
inline Vec vset(float x) { return _mm256_set1_ps(x); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline Vec vadd(Vec a, Vec b) { return _mm256_add_ps(a, b); }
inline float vsum(Vec v) {
  alignas(32) float t[8];
  _mm256_store_ps(t, v);
  float s = 0;
  for (float x : t) s += x;
  return s;
}
#else
#error "peak_flops.cpp needs AVX-512F or AVX2+FMA (compile with -march=native on such a CPU)"
#endif

constexpr int kChains = 16;

// acc = acc * a + b converges to b / (1 - a) = 1: no overflow, no denormals, nothing to fold.
float kernel(long iters, float seed) {
  const Vec a = vset(0.999999f);
  const Vec b = vset(1e-6f);
  Vec acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = vset(seed + 0.01f * static_cast<float>(i));
  for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < kChains; ++i) acc[i] = vfma(acc[i], a, b);
  }
  Vec s = acc[0];
  for (int i = 1; i < kChains; ++i) s = vadd(s, acc[i]);
  return vsum(s);
}


using Clock = std::chrono::steady_clock;

// Runs `threads` threads of `iters` iterations each; returns wall seconds.
double trial(int threads, long iters, float* sink) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  std::vector<float> out(static_cast<std::size_t>(threads));
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {
      }
      out[static_cast<std::size_t>(t)] = kernel(iters, 0.5f + static_cast<float>(t));
    });
  }
  while (ready.load() != threads) {
  }
  const auto start = Clock::now();
  go.store(true, std::memory_order_release);
  for (auto& th : pool) th.join();
  const double s = std::chrono::duration<double>(Clock::now() - start).count();
  for (float x : out) *sink += x;
  return s;
}

double flops_per_iter() { return 2.0 * kLanes * kChains; }

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const double seconds = argc > 2 ? std::atof(argv[2]) : 0.25;
  const int trials = argc > 3 ? std::atoi(argv[3]) : 12;
  if (threads < 1 || seconds <= 0 || trials < 1) {
    std::fprintf(stderr, "usage: peak_flops [threads=2] [seconds per trial=0.25] [trials=12]\n");
    return 2;
  }
  float sink = 0;
  // Calibrate on one thread: iterations for `seconds` per trial.
  long iters = 1 << 20;
  for (;;) {
    const double s = trial(1, iters, &sink);
    if (s > 0.05) {
      iters = static_cast<long>(static_cast<double>(iters) * seconds / s);
      break;
    }
    iters *= 4;
  }
  std::printf("%s, %d accumulators, %ld iterations per thread per trial\n", kIsa, kChains, iters);
  double best1 = 0, best = 0;
  for (int k = 0; k < trials; ++k) {
    const double g1 = flops_per_iter() * static_cast<double>(iters) / trial(1, iters, &sink) / 1e9;
    const double gt = flops_per_iter() * static_cast<double>(iters) * threads / trial(threads, iters, &sink) / 1e9;
    best1 = std::max(best1, g1);
    best = std::max(best, gt);
  }
  std::printf("1 thread: %.1f GFLOP/s; %d threads: %.1f GFLOP/s (best of %d; checksum %g)\n", best1, threads, best,
              trials, static_cast<double>(sink));
  std::printf("peak_gflops threads=%d value=%.3f\n", threads, best);
  return 0;
}
