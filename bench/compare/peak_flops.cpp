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
// find both cores free than a long one.  The line `peak_gflops threads=T value=X` is for run.sh.
// With AVX512_BF16 it then measures the BF16 peak the same way: vdpbf16ps multiplies 16 lanes x 2
// bfloat16 pairs and adds them into F32 (64 flops per instruction), `peak_bf16_gflops ...`.
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

// kChains independent chains acc[i] = step(acc[i]) in registers, summed at the end.
template <typename Step>
float chains(long iters, float seed, Step step) {
  Vec acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = vset(seed + 0.01f * static_cast<float>(i));
  for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < kChains; ++i) acc[i] = step(acc[i]);
  }
  Vec s = acc[0];
  for (int i = 1; i < kChains; ++i) s = vadd(s, acc[i]);
  return vsum(s);
}

// acc = acc * a + b converges to b / (1 - a) = 1: no overflow, no denormals, nothing to fold.
float kernel(long iters, float seed) {
  const Vec a = vset(0.999999f);
  const Vec b = vset(1e-6f);
  return chains(iters, seed, [&](Vec acc) { return vfma(acc, a, b); });
}

#if defined(__AVX512BF16__)
// acc += 2 * (1e-3 * 1e-3) per lane and iteration: no overflow, no denormals. (AVX512_BF16
// implies AVX-512F, so Vec is __m512 here.)
float kernel_bf16(long iters, float seed) {
  const __m512 small = _mm512_set1_ps(1e-3f);
  const __m512bh a = _mm512_cvtne2ps_pbh(small, small);
  return chains(iters, seed, [&](Vec acc) { return _mm512_dpbf16_ps(acc, a, a); });
}
#endif

using Clock = std::chrono::steady_clock;
using Kernel = float (*)(long, float);

// Runs `threads` threads of `iters` iterations each; returns wall seconds.
double trial(Kernel kernel, int threads, long iters, float* sink) {
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

// Calibrates on one thread (iterations for `seconds` per trial), then the best 1-thread and
// `threads`-thread GFLOP/s over the trials.
struct Peak {
  long iters = 0;
  double one = 0, all = 0;
};
Peak measure(Kernel kernel, double flops_per_iter, int threads, double seconds, int trials, float* sink) {
  Peak p;
  p.iters = 1 << 20;
  for (;;) {
    const double s = trial(kernel, 1, p.iters, sink);
    if (s > 0.05) {
      p.iters = static_cast<long>(static_cast<double>(p.iters) * seconds / s);
      break;
    }
    p.iters *= 4;
  }
  for (int k = 0; k < trials; ++k) {
    p.one = std::max(p.one, flops_per_iter * static_cast<double>(p.iters) / trial(kernel, 1, p.iters, sink) / 1e9);
    p.all = std::max(p.all, flops_per_iter * static_cast<double>(p.iters) * threads / trial(kernel, threads, p.iters, sink) / 1e9);
  }
  return p;
}

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
  const Peak f32 = measure(kernel, 2.0 * kLanes * kChains, threads, seconds, trials, &sink);
  std::printf("%s, %d accumulators, %ld iterations per thread per trial\n", kIsa, kChains, f32.iters);
  std::printf("1 thread: %.1f GFLOP/s; %d threads: %.1f GFLOP/s (best of %d; checksum %g)\n", f32.one, threads, f32.all, trials,
              static_cast<double>(sink));
  std::printf("peak_gflops threads=%d value=%.3f\n", threads, f32.all);
#if defined(__AVX512BF16__)
  const Peak bf16 = measure(kernel_bf16, 4.0 * 16 * kChains, threads, seconds, trials, &sink);
  std::printf("BF16 (zmm vdpbf16ps), %d accumulators: 1 thread %.1f GFLOP/s; %d threads: %.1f GFLOP/s (checksum %g)\n", kChains, bf16.one,
              threads, bf16.all, static_cast<double>(sink));
  std::printf("peak_bf16_gflops threads=%d value=%.3f\n", threads, bf16.all);
#endif
  return 0;
}
