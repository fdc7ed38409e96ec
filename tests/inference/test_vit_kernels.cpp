// The packed-weight GEMM kernels (inference/src/gemm.hpp) and the forward paths built on them:
// each kernel against a naive product on sizes that are not multiples of the 12 x 32 tile (odd k
// for the BF16 pairs), BF16 probabilities within 2e-3 of F32 on every golden case, re-packing
// after a weight changes, and the Eigen fallback against the F32 kernels.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <thread>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "gemm.hpp"
#include "team.hpp"
#include "hilum/inference/matmul.hpp"
#include "hilum/inference/safetensors.hpp"
#include "hilum/inference/vit.hpp"

namespace fs = std::filesystem;
namespace inf = hilum::inference;
namespace gemm = hilum::inference::gemm;

namespace {

struct Shape {
  int m, n, k;
};

// Naive y = (accumulate ? y0 : 0) + x W^T + b (then GELU), in double; with `bf16` the inputs and
// weights are first rounded to bfloat16 exactly as the kernel does.
std::vector<double> naive(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& b, const std::vector<float>& y0,
                          const Shape& s, bool accumulate, bool gelu, bool bf16, std::vector<double>& magnitude) {
  const auto round = [bf16](float v) { return bf16 ? static_cast<double>(gemm::from_bf16(gemm::to_bf16(v))) : static_cast<double>(v); };
  std::vector<double> y(static_cast<std::size_t>(s.m) * s.n);
  magnitude.assign(y.size(), 0.0);
  for (int i = 0; i < s.m; ++i)
    for (int j = 0; j < s.n; ++j) {
      const std::size_t o = static_cast<std::size_t>(i) * s.n + j;
      double acc = b[static_cast<std::size_t>(j)] + (accumulate ? y0[o] : 0.0);
      double mag = std::abs(acc);
      for (int kk = 0; kk < s.k; ++kk) {
        const double t = round(x[static_cast<std::size_t>(i) * s.k + kk]) * round(w[static_cast<std::size_t>(j) * s.k + kk]);
        acc += t;
        mag += std::abs(t);
      }
      if (gelu) acc = 0.5 * acc * (1.0 + std::erf(acc / std::sqrt(2.0)));
      y[o] = acc;
      magnitude[o] = mag;
    }
  return y;
}

void check_kernel(gemm::Format format, const Shape& s, bool accumulate, bool gelu, int threads) {
  std::mt19937 rng(static_cast<unsigned>(s.m * 1000003 + s.n * 1009 + s.k));
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const auto fill = [&](std::size_t n) {
    std::vector<float> v(n);
    for (float& f : v) f = dist(rng);
    return v;
  };
  const std::vector<float> x = fill(static_cast<std::size_t>(s.m) * s.k), w = fill(static_cast<std::size_t>(s.n) * s.k),
                           b = fill(static_cast<std::size_t>(s.n)), y0 = fill(static_cast<std::size_t>(s.m) * s.n);
  // Two parts stacked (as Q, K and V are), the second without bias.
  const int first = s.n / 2;
  std::vector<float> b_used = b;
  for (int j = first; j < s.n; ++j) b_used[static_cast<std::size_t>(j)] = 0.0f;
  const gemm::PackedWeights packed =
      gemm::pack({gemm::Part{w.data(), first, b.data()}, gemm::Part{w.data() + static_cast<std::size_t>(first) * s.k, s.n - first, nullptr}}, s.k, format);
  ASSERT_EQ(packed.n, s.n);
  // Strided x and y (odd strides), with a guard value around y's rows to catch stray writes.
  const std::size_t ldx = static_cast<std::size_t>(s.k) + 3, ldy = static_cast<std::size_t>(s.n) + 5;
  std::vector<float> xs(static_cast<std::size_t>(s.m) * ldx, 7.0f), ys(static_cast<std::size_t>(s.m) * ldy, 7.0f);
  for (int i = 0; i < s.m; ++i) {
    std::copy_n(x.begin() + static_cast<std::ptrdiff_t>(i) * s.k, s.k, xs.begin() + static_cast<std::ptrdiff_t>(i * ldx));
    std::copy_n(y0.begin() + static_cast<std::ptrdiff_t>(i) * s.n, s.n, ys.begin() + static_cast<std::ptrdiff_t>(i * ldy));
  }
  gemm::multiply(xs.data(), ldx, s.m, packed, ys.data(), ldy, accumulate, gelu ? gemm::Activation::Gelu : gemm::Activation::None, threads);
  std::vector<double> magnitude;
  const std::vector<double> ref = naive(x, w, b_used, y0, s, accumulate, gelu, format == gemm::Format::BF16, magnitude);
  const double split_tolerance = format == gemm::Format::BF16Split ? 0x1p-16 : 0.0;
  const std::string what = std::string(format == gemm::Format::BF16 ? "BF16" : format == gemm::Format::F32 ? "F32" : "BF16 split") + " m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) +
                           " k=" + std::to_string(s.k) + (accumulate ? " accumulate" : "") + (gelu ? " gelu" : "") + " threads=" + std::to_string(threads);
  for (int i = 0; i < s.m; ++i) {
    for (int j = 0; j < s.n; ++j) {
      const std::size_t o = static_cast<std::size_t>(i) * s.n + j;
      const double got = ys[static_cast<std::size_t>(i) * ldy + j];
      // F32 sums in a different order: a few ulps of the sum of magnitudes. Split BF16 against the
      // unrounded operands: the dropped x_lo W_lo and the rounding of the two lo parts, each at most
      // 2^-18 of a product's magnitude.
      ASSERT_NEAR(got, ref[o], split_tolerance * magnitude[o] + 1e-6 * (magnitude[o] + 1.0)) << what << " at (" << i << ", " << j << ")";
    }
    for (std::size_t j = static_cast<std::size_t>(s.n); j < ldy; ++j) ASSERT_EQ(ys[static_cast<std::size_t>(i) * ldy + j], 7.0f) << what << ": wrote past row " << i;
  }
}

const std::vector<Shape> kShapes = {{1, 1, 1}, {1, 32, 16}, {5, 17, 3}, {12, 32, 64}, {13, 33, 7}, {25, 70, 31}, {11, 100, 1}, {197, 96, 65}, {40, 200, 129}};

TEST(GemmKernel, F32MatchesNaiveProduct) {
  if (!gemm::cpu_has_avx512()) GTEST_SKIP() << "this CPU has no AVX-512: the engine uses Eigen";
  for (const Shape& s : kShapes)
    for (int threads : {1, 2})
      for (bool accumulate : {false, true}) check_kernel(gemm::Format::F32, s, accumulate, !accumulate && s.k % 2 == 1, threads);
}

// The public products the trainer uses (matmul.hpp): A B^T + bias, A B and A^T B, against double
// loops, overwriting and accumulating, contiguous and with row strides (a head's columns inside a
// wider matrix; the padding must stay untouched), on odd shapes (and k = 0: only the bias, or
// nothing). In BF16 the loops multiply the operands rounded to bfloat16 (the F32 operands'
// products differ from those by ~1e-3 relative, far beyond the tolerance), unless the CPU lacks
// AVX512_BF16 and BF16 runs as F32.
TEST(Matmul, ThreeProductsMatchDoubleLoops) {
  if (!inf::matmul_available()) {
    std::vector<float> c(1);
    const float one = 1.0f;
    EXPECT_THROW(inf::matmul_ab(&one, 1, 1, &one, 1, c.data(), false), std::logic_error);
    return;
  }
  std::mt19937 rng(42);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const auto fill = [&](std::size_t n) {
    std::vector<float> v(n);
    for (float& f : v) f = dist(rng);
    return v;
  };
  const auto sz = [](std::size_t r, std::size_t c) { return r * c; };
  int checked = 0;
  for (const inf::Precision precision : {inf::Precision::F32, inf::Precision::BF16}) {
    const bool rounded = inf::available_precision(precision) == inf::Precision::BF16;
    const auto round_operand = [&](float x) { return rounded ? gemm::from_bf16(gemm::to_bf16(x)) : x; };
    for (const Shape& s : kShapes) {
      for (int which = 0; which < 3; ++which) {
        for (bool accumulate : {false, true}) {
          for (bool strided : {false, true}) {
            // which 0: A m x k, B n x k (+ bias); 1: A m x k, B k x n; 2: A k x m, B k x n.
            const std::size_t a_rows = which == 2 ? s.k : s.m, a_cols = which == 2 ? s.m : s.k;
            const std::size_t b_rows = which == 0 ? s.n : s.k, b_cols = which == 0 ? s.k : s.n;
            const std::size_t lda = a_cols + (strided ? 3 : 0), ldb = b_cols + (strided ? 5 : 0), ldc = s.n + (strided ? 2 : 0);
            const inf::Strides strides = strided ? inf::Strides{lda, ldb, ldc} : inf::Strides{};
            const std::vector<float> a = fill(sz(a_rows, lda)), b = fill(sz(b_rows, ldb)), bias = fill(static_cast<std::size_t>(s.n)),
                                     c0 = fill(sz(s.m, ldc));
            std::vector<float> c = c0;
            if (which == 0) inf::matmul_abt(a.data(), s.m, s.k, b.data(), s.n, bias.data(), c.data(), accumulate, precision, strides);
            else if (which == 1) inf::matmul_ab(a.data(), s.m, s.k, b.data(), s.n, c.data(), accumulate, precision, strides);
            else inf::matmul_atb(a.data(), s.k, s.m, b.data(), s.n, c.data(), accumulate, precision, strides);
            const std::string what = std::string(rounded ? "BF16" : "F32") + " product " + std::to_string(which) + " m=" + std::to_string(s.m) +
                                     " n=" + std::to_string(s.n) + " k=" + std::to_string(s.k) + (accumulate ? " accumulate" : "") +
                                     (strided ? " strided" : "");
            for (std::size_t i = 0; i < static_cast<std::size_t>(s.m); ++i) {
              for (std::size_t j = 0; j < static_cast<std::size_t>(s.n); ++j) {
                double want = (accumulate ? c0[i * ldc + j] : 0.0) + (which == 0 ? bias[j] : 0.0f);
                double mag = std::abs(want);
                for (std::size_t kk = 0; kk < static_cast<std::size_t>(s.k); ++kk) {
                  const double x = round_operand(which == 2 ? a[kk * lda + i] : a[i * lda + kk]);
                  const double y = round_operand(which == 0 ? b[j * ldb + kk] : b[kk * ldb + j]);
                  want += x * y;
                  mag += std::abs(x * y);
                }
                ASSERT_NEAR(c[i * ldc + j], want, 1e-6 * (mag + 1.0)) << what << " at (" << i << ", " << j << ")";
              }
              for (std::size_t j = static_cast<std::size_t>(s.n); j < ldc; ++j) ASSERT_EQ(c[i * ldc + j], c0[i * ldc + j]) << what << ": wrote into the padding";
            }
            ++checked;
          }
        }
      }
    }
  }
  EXPECT_EQ(checked, 2 * static_cast<int>(kShapes.size()) * 3 * 2 * 2);
  std::vector<float> c(6, 5.0f);
  const std::vector<float> bias = {1.0f, 2.0f, 3.0f};
  inf::matmul_abt(nullptr, 2, 0, nullptr, 3, bias.data(), c.data(), false);
  EXPECT_EQ(c, (std::vector<float>{1, 2, 3, 1, 2, 3}));
  inf::matmul_atb(nullptr, 0, 2, nullptr, 3, c.data(), true);
  EXPECT_EQ(c, (std::vector<float>{1, 2, 3, 1, 2, 3}));
  // k = 0 with a row stride: only the bias, and the padding stays.
  std::vector<float> padded(8, 5.0f);
  inf::matmul_abt(nullptr, 2, 0, nullptr, 3, bias.data(), padded.data(), true, inf::Precision::F32, {0, 0, 4});
  EXPECT_EQ(padded, (std::vector<float>{6, 7, 8, 5, 6, 7, 8, 5}));
}

// The trainer's three BF16 products (A B^T + bias, A B, and A^T B: its forward, dX = dY W and
// dW = dY^T X) on the AMX tiles and on the AVX-512 BF16 kernel, on shapes of the MAE step (20
// tokens per image, 21 and 197 for k that is no whole tile, 6 images' rows for dW's k), with 1 and
// 2 threads: each against double loops on the bfloat16-rounded operands (summation order only) and
// against the F32 product (within bfloat16's rounding of both operands); and AMX must really
// have run for each product: its sums differ in the last bits from the AVX-512 kernel's.
TEST(Matmul, BF16ProductsOnAmxMatchRoundedLoopsAndF32) {
  if (!inf::matmul_available() || inf::available_precision(inf::Precision::BF16) != inf::Precision::BF16)
    GTEST_SKIP() << "this CPU has no AVX512_BF16: BF16 runs as F32";
  const bool has_amx = gemm::cpu_has_amx_bf16();
#ifdef _OPENMP
  const int saved_threads = omp_get_max_threads();
#endif
  std::mt19937 rng(11);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const auto fill = [&](std::size_t n) {
    std::vector<float> v(n);
    for (float& f : v) f = dist(rng);
    return v;
  };
  const auto round = [](float x) { return static_cast<double>(gemm::from_bf16(gemm::to_bf16(x))); };
  const std::vector<Shape> shapes = {{20, 576, 192}, {40, 192, 768}, {20, 64, 20}, {21, 64, 21}, {197, 128, 64}, {64, 33, 197}, {192, 128, 120}};
  for (int which = 0; which < 3; ++which) {
    double amx_vs_avx512 = 0.0;
    for (const Shape& s : shapes) {
      // which 0: A m x k, B n x k (+ bias); 1: A m x k, B k x n; 2: A k x m, B k x n.
      const std::size_t mm = static_cast<std::size_t>(s.m), nn = static_cast<std::size_t>(s.n), kk = static_cast<std::size_t>(s.k);
      const std::vector<float> a = fill(mm * kk), b = fill(nn * kk), bias = fill(nn);
      const auto product = [&](inf::Precision precision) {
        std::vector<float> c(mm * nn);
        if (which == 0) inf::matmul_abt(a.data(), s.m, s.k, b.data(), s.n, bias.data(), c.data(), false, precision);
        else if (which == 1) inf::matmul_ab(a.data(), s.m, s.k, b.data(), s.n, c.data(), false, precision);
        else inf::matmul_atb(a.data(), s.k, s.m, b.data(), s.n, c.data(), false, precision);
        return c;
      };
      const std::vector<float> f32 = product(inf::Precision::F32);
      std::vector<std::vector<float>> runs;
      for (const bool amx : {true, false}) {
        gemm::set_amx_enabled(amx);
        for (const int threads : {1, 2}) {
#ifdef _OPENMP
          omp_set_num_threads(threads);
#endif
          runs.push_back(product(inf::Precision::BF16));
        }
      }
      gemm::set_amx_enabled(true);
#ifdef _OPENMP
      omp_set_num_threads(saved_threads);
#endif
      const std::string what = "product " + std::to_string(which) + " m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) + " k=" + std::to_string(s.k);
      for (std::size_t r = 0; r < runs.size(); ++r) {
        const std::vector<float>& c = runs[r];
        for (std::size_t i = 0; i < mm; ++i) {
          for (std::size_t j = 0; j < nn; ++j) {
            double want = which == 0 ? bias[j] : 0.0, mag = std::abs(want);
            for (std::size_t t = 0; t < kk; ++t) {
              const double x = which == 2 ? a[t * mm + i] : a[i * kk + t], y = which == 0 ? b[j * kk + t] : b[t * nn + j];
              want += round(static_cast<float>(x)) * round(static_cast<float>(y));
              mag += std::abs(x * y);
            }
            const double got = c[i * nn + j];
            ASSERT_NEAR(got, want, 1e-6 * (mag + 1.0)) << what << (r < 2 ? " AMX" : " AVX-512") << " at (" << i << ", " << j << ")";
            // Both operands rounded to 8 significant bits: at most 2^-8 of the magnitude (plus F32's rounding).
            ASSERT_NEAR(got, f32[i * nn + j], 0x1p-8 * mag + 1e-5 * (mag + 1.0)) << what << ": BF16 against F32 at (" << i << ", " << j << ")";
          }
        }
      }
      EXPECT_EQ(runs[0], runs[1]) << what << ": AMX gave other results on 2 threads";
      for (std::size_t i = 0; i < runs[0].size(); ++i)
        amx_vs_avx512 = std::max(amx_vs_avx512, static_cast<double>(std::abs(runs[0][i] - runs[2][i])));
    }
    if (has_amx) {
      EXPECT_GT(amx_vs_avx512, 0.0) << "product " << which << ": AMX and AVX-512 gave identical bits: AMX did not run";
    }
  }
}

TEST(GemmKernel, BF16MatchesNaiveProductOnRoundedInputs) {
  if (!gemm::cpu_has_avx512_bf16()) GTEST_SKIP() << "this CPU has no AVX512_BF16: BF16 runs as F32";
  for (const Shape& s : kShapes)
    for (int threads : {1, 2})
      for (bool accumulate : {false, true}) check_kernel(gemm::Format::BF16, s, accumulate, !accumulate && s.k % 2 == 1, threads);
}

// Shapes whose k is a whole number of AMX tiles (32 bf16): 32-row blocks with tails in m and n.
TEST(GemmKernel, BF16AmxShapesMatchNaiveProduct) {
  if (!gemm::cpu_has_avx512_bf16()) GTEST_SKIP() << "this CPU has no AVX512_BF16: BF16 runs as F32";
  for (const bool amx : {true, false}) {
    gemm::set_amx_enabled(amx);
    for (const Shape& s : std::vector<Shape>{{1, 32, 32}, {17, 40, 64}, {33, 96, 96}, {197, 70, 192}, {64, 33, 768}})
      for (int threads : {1, 2})
        for (bool accumulate : {false, true}) check_kernel(gemm::Format::BF16, s, accumulate, !accumulate, threads);
  }
  gemm::set_amx_enabled(true);
}

// Split BF16 (the engine's leading blocks in Precision::BF16) against the product of the unrounded
// operands, on the AMX tiles and on the AVX-512 kernel: odd k (padded segments), tails in m and n,
// strided x and y, two threads.
TEST(GemmKernel, SplitBF16MatchesUnroundedProduct) {
  if (!gemm::cpu_has_avx512_bf16()) GTEST_SKIP() << "this CPU has no AVX512_BF16: BF16 runs as F32";
  for (const bool amx : {true, false}) {
    gemm::set_amx_enabled(amx);
    for (const Shape& s : kShapes)
      for (int threads : {1, 2})
        for (bool accumulate : {false, true}) check_kernel(gemm::Format::BF16Split, s, accumulate, !accumulate && s.k % 2 == 1, threads);
    check_kernel(gemm::Format::BF16Split, {197, 96, 768}, true, false, 2);
  }
  gemm::set_amx_enabled(true);
}

// What the split buys: on a ViT-B sized product its largest error is hundreds of times smaller
// than plain BF16's (both against the unrounded product in double).
TEST(GemmKernel, SplitBF16IsFarCloserThanBF16) {
  if (!gemm::cpu_has_avx512_bf16()) GTEST_SKIP() << "this CPU has no AVX512_BF16: BF16 runs as F32";
  const int m = 64, n = 96, k = 768;
  std::mt19937 rng(11);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(m) * k), w(static_cast<std::size_t>(n) * k);
  for (float& f : x) f = dist(rng);
  for (float& f : w) f = dist(rng);
  const auto worst = [&](gemm::Format format) {
    const gemm::PackedWeights packed = gemm::pack({gemm::Part{w.data(), n, nullptr}}, k, format);
    std::vector<float> y(static_cast<std::size_t>(m) * n);
    gemm::multiply(x.data(), k, m, packed, y.data(), n, false, gemm::Activation::None, 2);
    double err = 0.0;
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) {
        double want = 0.0;
        for (int t = 0; t < k; ++t) want += static_cast<double>(x[static_cast<std::size_t>(i) * k + t]) * w[static_cast<std::size_t>(j) * k + t];
        err = std::max(err, std::abs(want - y[static_cast<std::size_t>(i) * n + j]));
      }
    return err;
  };
  const double bf16 = worst(gemm::Format::BF16), split = worst(gemm::Format::BF16Split), f32 = worst(gemm::Format::F32);
  EXPECT_GT(bf16, 0.01);  // sums of 768 products of magnitude ~1 with 8-bit operands
  EXPECT_LT(split, bf16 / 100) << "BF16 " << bf16 << ", split " << split << ", F32 " << f32;
  EXPECT_LT(split, 20 * f32 + 1e-4) << "BF16 " << bf16 << ", split " << split << ", F32 " << f32;
}

// The AMX path (where the CPU has it) and the AVX-512 BF16 kernel multiply the same bfloat16
// operands: the same sums in another order.
TEST(GemmKernel, AmxAgreesWithAvx512BF16) {
  if (!gemm::cpu_has_amx_bf16()) GTEST_SKIP() << "this CPU (or kernel) gives no AMX-BF16";
  const int m = 197, n = 96, k = 768;
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(m) * k), w(static_cast<std::size_t>(n) * k);
  for (float& f : x) f = dist(rng);
  for (float& f : w) f = dist(rng);
  const gemm::PackedWeights packed = gemm::pack({gemm::Part{w.data(), n, nullptr}}, k, gemm::Format::BF16);
  std::vector<float> with(static_cast<std::size_t>(m) * n), without(with.size());
  gemm::multiply(x.data(), k, m, packed, with.data(), n, false, gemm::Activation::None, 2);
  gemm::set_amx_enabled(false);
  gemm::multiply(x.data(), k, m, packed, without.data(), n, false, gemm::Activation::None, 2);
  gemm::set_amx_enabled(true);
  double worst = 0;
  for (std::size_t i = 0; i < with.size(); ++i) worst = std::max(worst, static_cast<double>(std::abs(with[i] - without[i])));
  EXPECT_LT(worst, 1e-3);  // sums of 768 products of magnitude ~1: F32 rounding only
  EXPECT_GT(worst, 0.0) << "the two paths gave identical bits: AMX did not run";
}

TEST(GemmKernel, BF16RoundsToNearestEven) {
  EXPECT_EQ(gemm::to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(gemm::to_bf16(std::bit_cast<float>(0x3f808000u)), 0x3f80);  // tie, even stays
  EXPECT_EQ(gemm::to_bf16(std::bit_cast<float>(0x3f818000u)), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(gemm::to_bf16(std::bit_cast<float>(0x3f808001u)), 0x3f81);
  EXPECT_TRUE(std::isnan(gemm::from_bf16(gemm::to_bf16(NAN))));
  EXPECT_EQ(gemm::from_bf16(gemm::to_bf16(-2.5f)), -2.5f);
}

// ---- The forward paths on the golden models ------------------------------------------------

struct Case {
  inf::ViTModel model;
  std::vector<inf::Image> batch;
};

Case load_case(const std::string& name) {
  const fs::path dir = fs::path(HILUM_GOLDEN_DIR) / name;
  auto model = inf::ViTModel::load(dir);
  EXPECT_TRUE(model.ok()) << name << ": " << (model.ok() ? "" : model.error().message);
  Case c{model.ok() ? std::move(model.value()) : inf::ViTModel{}, {}};
  auto ref = inf::SafetensorsFile::open(dir / "reference.safetensors");
  EXPECT_TRUE(ref.ok());
  if (!ref.ok()) return c;
  const inf::TensorInfo* px = ref->find("pixel_values");
  auto pixels = ref->read_f32("pixel_values");
  EXPECT_TRUE(px != nullptr && pixels.ok());
  if (px == nullptr || !pixels.ok()) return c;
  const auto B = static_cast<int>(px->shape[0]), C = static_cast<int>(px->shape[1]), H = static_cast<int>(px->shape[2]),
             W = static_cast<int>(px->shape[3]);
  const std::size_t n = static_cast<std::size_t>(C) * H * W;
  for (int b = 0; b < B; ++b) {
    c.batch.push_back({C, H, W, std::vector<float>(pixels->begin() + static_cast<std::ptrdiff_t>(b * n), pixels->begin() + static_cast<std::ptrdiff_t>((b + 1) * n))});
  }
  return c;
}

std::vector<std::string> golden_cases() {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(HILUM_GOLDEN_DIR)) {
    if (e.is_directory() && fs::exists(e.path() / "reference.safetensors")) out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

double max_diff(const inf::Matrix& a, const inf::Matrix& b) {
  EXPECT_EQ(a.rows(), b.rows());
  EXPECT_EQ(a.cols(), b.cols());
  if (a.size() != b.size()) return INFINITY;
  return a.size() == 0 ? 0.0 : static_cast<double>((a - b).cwiseAbs().maxCoeff());
}

double relative(const inf::Matrix& a, const inf::Matrix& b) {
  if (b.size() == 0) return max_diff(a, b);
  return max_diff(a, b) / std::max(1e-12, static_cast<double>(b.cwiseAbs().maxCoeff()));
}

class Paths : public ::testing::TestWithParam<std::string> {};

TEST_P(Paths, BF16ProbabilitiesWithin2e3OfF32) {
  Case c = load_case(GetParam());
  ASSERT_FALSE(c.batch.empty());
  c.model.set_precision(inf::Precision::F32);
  auto f32 = c.model.forward(c.batch);
  c.model.set_precision(inf::Precision::BF16);
  auto bf16 = c.model.forward(c.batch);
  ASSERT_TRUE(f32.ok() && bf16.ok());
  EXPECT_LE(max_diff(bf16->probabilities, f32->probabilities), 2e-3) << GetParam();
  // The embeddings (the fine-tuning head's input) stay close as well.
  EXPECT_LT(relative(bf16->embeddings, f32->embeddings), 3e-2) << GetParam();
  if (inf::cpu_has_bf16_kernels()) {
    EXPECT_GT(max_diff(bf16->embeddings, f32->embeddings), 0.0) << GetParam() << ": BF16 did not run (same answer as F32)";
  }
}

TEST_P(Paths, EigenFallbackEqualsF32Kernels) {
  Case c = load_case(GetParam());
  ASSERT_FALSE(c.batch.empty());
  c.model.set_precision(inf::Precision::F32);
  auto kernels = c.model.forward(c.batch, {true, true});
  c.model.set_kernels(inf::Kernels::Eigen);
  c.model.set_precision(inf::Precision::BF16);  // ignored on the Eigen path: always F32
  auto eigen = c.model.forward(c.batch, {true, true});
  ASSERT_TRUE(kernels.ok() && eigen.ok());
  EXPECT_LT(relative(eigen->embeddings, kernels->embeddings), 1e-5) << GetParam();
  EXPECT_LT(relative(eigen->logits, kernels->logits), 1e-5) << GetParam();
  ASSERT_EQ(eigen->hidden_states.size(), kernels->hidden_states.size());
  for (std::size_t b = 0; b < eigen->hidden_states.size(); ++b)
    for (std::size_t s = 0; s < eigen->hidden_states[b].size(); ++s)
      EXPECT_LT(relative(eigen->hidden_states[b][s], kernels->hidden_states[b][s]), 1e-5) << GetParam() << " image " << b << " stage " << s;
  for (std::size_t b = 0; b < eigen->attentions.size(); ++b)
    for (std::size_t l = 0; l < eigen->attentions[b].size(); ++l)
      for (std::size_t h = 0; h < eigen->attentions[b][l].size(); ++h)
        EXPECT_LT(max_diff(eigen->attentions[b][l][h], kernels->attentions[b][l][h]), 1e-5) << GetParam() << " layer " << l << " head " << h;
}

INSTANTIATE_TEST_SUITE_P(Golden, Paths, ::testing::ValuesIn(golden_cases()));

// After mutable_weights() changes a weight the packed copy is rebuilt: the forward equals that of a
// model built from scratch with the changed weights, and differs from the answer before.
TEST(Repack, FollowsMutableWeights) {
  for (inf::Precision precision : {inf::Precision::F32, inf::Precision::BF16}) {
    Case c = load_case("tiny_multilabel");
    ASSERT_FALSE(c.batch.empty());
    c.model.set_precision(precision);
    auto before = c.model.forward(c.batch);
    ASSERT_TRUE(before.ok());
    if (inf::cpu_has_avx512_kernels()) {
      EXPECT_GT(c.model.packed_bytes(), 0u);
    }
    inf::Block& blk = c.model.mutable_weights().blocks[0];
    blk.query.w *= 1.5f;
    blk.fc1.b.array() += 0.25f;
    blk.fc2.w(1, 2) += 0.5f;
    auto after = c.model.forward(c.batch);
    auto fresh = inf::ViTModel::from_weights(c.model.config(), c.model.weights());
    ASSERT_TRUE(after.ok() && fresh.ok());
    fresh->set_precision(precision);
    auto expected = fresh->forward(c.batch);
    ASSERT_TRUE(expected.ok());
    EXPECT_EQ(max_diff(after->logits, expected->logits), 0.0) << "stale packed weights";
    EXPECT_GT(max_diff(after->logits, before->logits), 1e-4) << "the change did not reach the output";
  }
}

// A caller that kept the reference from before a forward: repack() picks an in-place change up,
// and a matrix moved in (new storage) is noticed even without it.
TEST(Repack, ExplicitRepackAndReplacedMatrices) {
  Case c = load_case("tiny_multilabel");
  ASSERT_FALSE(c.batch.empty());
  c.model.set_precision(inf::Precision::F32);
  inf::ViTWeights& w = c.model.mutable_weights();
  auto before = c.model.forward(c.batch);
  w.blocks[1].attn_out.w *= -1.0f;  // in place, through the old reference
  c.model.repack();
  auto after = c.model.forward(c.batch);
  auto fresh = inf::ViTModel::from_weights(c.model.config(), c.model.weights());
  ASSERT_TRUE(before.ok() && after.ok() && fresh.ok());
  fresh->set_precision(inf::Precision::F32);
  EXPECT_EQ(max_diff(after->logits, fresh->forward(c.batch)->logits), 0.0);
  EXPECT_GT(max_diff(after->logits, before->logits), 1e-4);

  inf::Matrix zero = inf::Matrix::Zero(w.blocks[0].fc2.w.rows(), w.blocks[0].fc2.w.cols());
  w.blocks[0].fc2.w = std::move(zero);  // moved in: new storage, no repack() call
  auto zeroed = c.model.forward(c.batch);
  auto fresh2 = inf::ViTModel::from_weights(c.model.config(), c.model.weights());
  ASSERT_TRUE(zeroed.ok() && fresh2.ok());
  fresh2->set_precision(inf::Precision::F32);
  EXPECT_EQ(max_diff(zeroed->logits, fresh2->forward(c.batch)->logits), 0.0);
}

// A copy packs its own weights: changing the copy leaves the original's answers alone.
TEST(Repack, CopiesDoNotShareThePack) {
  Case c = load_case("tiny_multilabel");
  ASSERT_FALSE(c.batch.empty());
  auto original = c.model.forward(c.batch);
  inf::ViTModel copy = c.model;
  copy.mutable_weights().blocks[0].fc1.w *= 2.0f;
  auto changed = copy.forward(c.batch);
  auto again = c.model.forward(c.batch);
  ASSERT_TRUE(original.ok() && changed.ok() && again.ok());
  EXPECT_EQ(max_diff(again->logits, original->logits), 0.0);
  EXPECT_GT(max_diff(changed->logits, original->logits), 1e-4);
}

}  // namespace

// Issue 18: the steps of a forward shared by a team without barriers (team.hpp). Every item of a
// step sees all results of the step before; a thread that the scheduler parks before it takes any
// item holds nobody up (the other threads finish every step without it; with a barrier per step
// the first step would wait for it); a thread that comes late finds the steps it missed complete.
#ifdef _OPENMP
TEST(TeamSteps, EachStepSeesTheLastAndAParkedThreadHoldsNobodyUp) {
  constexpr int kSteps = 200;
  constexpr long kItems = 37;
  std::vector<long> a(kItems, 0), b(kItems, 0);
  std::vector<int> taken_by(kItems * kSteps, -1);
  std::atomic<bool> woke{false};
  std::atomic<int> finished_before_the_late_one_woke{0};
  int team = 0;
  inf::team::Steps steps;
#pragma omp parallel num_threads(2)
  {
#pragma omp single
    team = omp_get_num_threads();
    const int me = omp_get_thread_num();
    // Thread 1 is "parked" for 400 ms before it starts.
    if (me == 1) {
      std::this_thread::sleep_for(std::chrono::milliseconds(400));
      woke = true;
    }
    inf::team::Steps::Cursor cursor;
    for (int s = 0; s < kSteps; ++s) {
      std::vector<long>& from = s % 2 == 0 ? a : b;
      std::vector<long>& to = s % 2 == 0 ? b : a;
      steps.run(cursor, kItems, [&](long i) {
        // Each item reads two results of the step before (its own and the next one's).
        to[static_cast<std::size_t>(i)] = from[static_cast<std::size_t>(i)] + from[static_cast<std::size_t>((i + 1) % kItems)] % 2 + 1;
        taken_by[static_cast<std::size_t>(s * kItems + i)] = me;
      });
    }
    if (me == 0 && !woke) finished_before_the_late_one_woke = 1;
  }
  if (team < 2) GTEST_SKIP() << "no second OpenMP thread";
  // The same recurrence on one thread.
  std::vector<long> ea(kItems, 0), eb(kItems, 0);
  for (int s = 0; s < kSteps; ++s) {
    std::vector<long>& from = s % 2 == 0 ? ea : eb;
    std::vector<long>& to = s % 2 == 0 ? eb : ea;
    for (long i = 0; i < kItems; ++i) to[static_cast<std::size_t>(i)] = from[static_cast<std::size_t>(i)] + from[static_cast<std::size_t>((i + 1) % kItems)] % 2 + 1;
  }
  EXPECT_EQ(a, ea);
  EXPECT_EQ(b, eb);
  EXPECT_EQ(std::count(taken_by.begin(), taken_by.end(), -1), 0) << "an item was not run";
  EXPECT_EQ(finished_before_the_late_one_woke.load(), 1) << "thread 0 waited for the parked thread";
  EXPECT_EQ(std::count(taken_by.begin(), taken_by.end(), 0), static_cast<long>(taken_by.size()));
}
#endif
