// Packed-weight GEMM with AVX-512 micro-kernels (F32 FMA and BF16 vdpbf16ps). See gemm.hpp.
#include "gemm.hpp"

#include "team.hpp"

#include <Eigen/Core>
#include <unsupported/Eigen/SpecialFunctions>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <bit>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <utility>

#if defined(__x86_64__) || defined(_M_X64)
#define HILUM_X86 1
#include <cpuid.h>
#include <immintrin.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

#if HILUM_X86
#define HILUM_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define HILUM_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))
#define HILUM_AMX __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,amx-tile,amx-bf16")))
#endif

namespace hilum::inference::gemm {

namespace {
constexpr int kMaxRows = 12;  // rows of the register tile: 12 x 2 accumulators + 2 weights + 1 broadcast
}

bool cpu_has_avx512() {
#if HILUM_X86
  static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return yes;
#else
  return false;
#endif
}

bool cpu_has_avx512_bf16() {
#if HILUM_X86
  static const bool yes = cpu_has_avx512() && __builtin_cpu_supports("avx512bf16");
  return yes;
#else
  return false;
#endif
}

bool cpu_has_amx_bf16() {
#if HILUM_X86 && defined(__linux__)
  static const bool yes = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!cpu_has_avx512_bf16() || __get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return false;
    if ((d & (1u << 22)) == 0 || (d & (1u << 24)) == 0) return false;  // AMX-BF16, AMX-TILE
    // Linux hands out the tile data state only on request (ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA).
    constexpr long kReqXcompPerm = 0x1023, kXtileData = 18;
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXtileData) == 0;
  }();
  return yes;
#else
  return false;
#endif
}

namespace {
std::atomic<bool> g_amx_enabled{[] {
  const char* env = std::getenv("HILUM_AMX");
  return env == nullptr || std::string_view(env) != "0";
}()};
}  // namespace

void set_amx_enabled(bool enabled) { g_amx_enabled.store(enabled); }
bool amx_enabled() { return g_amx_enabled.load(std::memory_order_relaxed); }

std::uint16_t to_bf16(float f) {
  auto u = std::bit_cast<std::uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

float from_bf16(std::uint16_t h) { return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16); }

void gelu_inplace(float* y, std::size_t ldy, int rows, int cols, bool tanh_approximation) {
  using Block = Eigen::Map<Eigen::Array<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, 0, Eigen::OuterStride<>>;
  Block a(y, rows, cols, Eigen::OuterStride<>(static_cast<Eigen::Index>(ldy)));
  if (tanh_approximation) {
    a = 0.5f * a * (1.0f + (0.7978845608028654f * (a + 0.044715f * a.cube())).tanh());
  } else {
    a = 0.5f * a * (1.0f + (a * 0.7071067811865476f).erf());
  }
}

PackedWeights pack(const std::vector<Part>& parts, int k, Format format) {
  int n = 0;
  for (const Part& part : parts) n += part.rows;
  // The parts stacked into one n x k matrix (a single part is used in place).
  std::vector<float> stacked;
  const float* w = parts.size() == 1 ? parts[0].w : nullptr;
  if (w == nullptr) {
    stacked.reserve(static_cast<std::size_t>(n) * static_cast<std::size_t>(k));
    for (const Part& part : parts) stacked.insert(stacked.end(), part.w, part.w + static_cast<std::size_t>(part.rows) * static_cast<std::size_t>(k));
    w = stacked.data();
  }
  PackedWeights p;
  if (format == Format::F32) {
    pack_f32(w, static_cast<std::size_t>(k), n, k, true, p);
  } else if (format == Format::BF16) {
    pack_bf16(w, static_cast<std::size_t>(k), n, k, true, p);
  } else {
    // [W_hi | W_lo | W_hi], each segment k rounded up to 32 (zero past k): whole pairs and tiles, so
    // that the converted x's segments line up with them. Both parts are exact in bfloat16, so
    // pack_bf16's rounding keeps them as they are.
    const int seg = split_segment(k);
    const auto ks = static_cast<std::size_t>(k), ld = 3 * static_cast<std::size_t>(seg);
    std::vector<float> split(static_cast<std::size_t>(n) * ld, 0.0f);
    for (std::size_t r = 0; r < static_cast<std::size_t>(n); ++r) {
      const float* src = w + r * ks;
      float* dst = split.data() + r * ld;
      for (std::size_t j = 0; j < ks; ++j) {
        const float hi = from_bf16(to_bf16(src[j]));
        dst[j] = hi;
        dst[static_cast<std::size_t>(seg) + j] = from_bf16(to_bf16(src[j] - hi));
        dst[2 * static_cast<std::size_t>(seg) + j] = hi;
      }
    }
    pack_bf16(split.data(), ld, n, static_cast<int>(ld), true, p);
    p.format = Format::BF16Split;
    p.k = k;
  }
  std::size_t j = 0;
  for (const Part& part : parts) {
    if (part.bias != nullptr) std::copy(part.bias, part.bias + part.rows, p.bias.begin() + static_cast<std::ptrdiff_t>(j));
    j += static_cast<std::size_t>(part.rows);
  }
  return p;
}

void pack_f32(const float* w, std::size_t ld, int n, int k, bool by_rows, PackedWeights& out) {
  out.format = Format::F32;
  out.n = n;
  out.k = k;
  out.k_steps = k;
  out.k_stride = k;
  out.panels = (n + kPanel - 1) / kPanel;
  const auto panels = static_cast<std::size_t>(out.panels), steps = static_cast<std::size_t>(k);
  out.bias.assign(panels * kPanel, 0.0f);
  out.f32.resize(panels * steps * kPanel);
  for (std::size_t p = 0; p < panels; ++p) {
    const std::size_t col0 = p * kPanel, cols = std::min<std::size_t>(kPanel, static_cast<std::size_t>(n) - col0);
    float* dst = out.f32.data() + p * steps * kPanel;
    if (by_rows) {
      if (cols < kPanel) std::fill(dst, dst + steps * kPanel, 0.0f);
      for (std::size_t j = 0; j < cols; ++j) {
        const float* src = w + (col0 + j) * ld;
        for (std::size_t kk = 0; kk < steps; ++kk) dst[kk * kPanel + j] = src[kk];
      }
    } else {
      for (std::size_t kk = 0; kk < steps; ++kk) {
        const float* src = w + kk * ld + col0;
        std::copy(src, src + cols, dst + kk * kPanel);
        std::fill(dst + kk * kPanel + cols, dst + (kk + 1) * kPanel, 0.0f);
      }
    }
  }
}

#if HILUM_X86
namespace {

// One register tile: rows x 32 outputs over all of k. `a` points at the tile's first input row
// (floats for F32, bf16 pairs for BF16; row stride lda in those units), `b` at the panel.
// Transposed (F32 only): the input is given transposed, element (r, kk) at a[kk * lda + r] (the
// MR values of one k step are contiguous), for products A^T B without transposing A first.
template <int MR, bool Transposed = false>
HILUM_AVX512 void tile_f32(const float* a, std::size_t lda, const float* b, int steps, float* c, std::size_t ldc, const float* bias,
                           bool load_c, __mmask16 m0, __mmask16 m1) {
  __m512 acc0[MR], acc1[MR];
  const __m512 bias0 = _mm512_load_ps(bias), bias1 = _mm512_load_ps(bias + 16);
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    if (load_c) {
      acc0[r] = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, c + r * ldc), bias0);
      acc1[r] = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, c + r * ldc + 16), bias1);
    } else {
      acc0[r] = bias0;
      acc1[r] = bias1;
    }
  }
  for (int kk = 0; kk < steps; ++kk) {
    const __m512 b0 = _mm512_load_ps(b + kk * kPanel), b1 = _mm512_load_ps(b + kk * kPanel + 16);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m512 av = _mm512_set1_ps(Transposed ? a[static_cast<std::size_t>(kk) * lda + static_cast<std::size_t>(r)]
                                                  : a[r * lda + static_cast<std::size_t>(kk)]);
      acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
      acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    _mm512_mask_storeu_ps(c + r * ldc, m0, acc0[r]);
    _mm512_mask_storeu_ps(c + r * ldc + 16, m1, acc1[r]);
  }
}

// Transposed: pair (r, s) at a[s * lda + r] (xt's rows 2s and 2s+1 interleaved, see interleave_pairs).
template <int MR, bool Transposed = false>
HILUM_AVX512BF16 void tile_bf16(const std::uint32_t* a, std::size_t lda, const std::uint32_t* b, int steps, float* c, std::size_t ldc,
                                const float* bias, bool load_c, __mmask16 m0, __mmask16 m1) {
  __m512 acc0[MR], acc1[MR];
  const __m512 bias0 = _mm512_load_ps(bias), bias1 = _mm512_load_ps(bias + 16);
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    if (load_c) {
      acc0[r] = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, c + r * ldc), bias0);
      acc1[r] = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, c + r * ldc + 16), bias1);
    } else {
      acc0[r] = bias0;
      acc1[r] = bias1;
    }
  }
  for (int kk = 0; kk < steps; ++kk) {
    const auto b0 = reinterpret_cast<__m512bh>(_mm512_load_si512(b + kk * kPanel));
    const auto b1 = reinterpret_cast<__m512bh>(_mm512_load_si512(b + kk * kPanel + 16));
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const auto av = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(
          Transposed ? a[static_cast<std::size_t>(kk) * lda + static_cast<std::size_t>(r)] : a[r * lda + static_cast<std::size_t>(kk)])));
      acc0[r] = _mm512_dpbf16_ps(acc0[r], av, b0);
      acc1[r] = _mm512_dpbf16_ps(acc1[r], av, b1);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    _mm512_mask_storeu_ps(c + r * ldc, m0, acc0[r]);
    _mm512_mask_storeu_ps(c + r * ldc + 16, m1, acc1[r]);
  }
}

using TileF32 = void (*)(const float*, std::size_t, const float*, int, float*, std::size_t, const float*, bool, __mmask16, __mmask16);
using TileBF16 = void (*)(const std::uint32_t*, std::size_t, const std::uint32_t*, int, float*, std::size_t, const float*, bool, __mmask16,
                          __mmask16);

template <std::size_t... I>
constexpr std::array<TileF32, sizeof...(I)> f32_tiles(std::index_sequence<I...>) {
  return {&tile_f32<static_cast<int>(I) + 1>...};
}
template <std::size_t... I>
constexpr std::array<TileF32, sizeof...(I)> f32_tiles_t(std::index_sequence<I...>) {
  return {&tile_f32<static_cast<int>(I) + 1, true>...};
}
template <std::size_t... I>
constexpr std::array<TileBF16, sizeof...(I)> bf16_tiles(std::index_sequence<I...>) {
  return {&tile_bf16<static_cast<int>(I) + 1>...};
}
template <std::size_t... I>
constexpr std::array<TileBF16, sizeof...(I)> bf16_tiles_t(std::index_sequence<I...>) {
  return {&tile_bf16<static_cast<int>(I) + 1, true>...};
}
constexpr auto kTilesF32 = f32_tiles(std::make_index_sequence<kMaxRows>{});
constexpr auto kTilesF32T = f32_tiles_t(std::make_index_sequence<kMaxRows>{});
constexpr auto kTilesBF16 = bf16_tiles(std::make_index_sequence<kMaxRows>{});
constexpr auto kTilesBF16T = bf16_tiles_t(std::make_index_sequence<kMaxRows>{});

// Rows [r0, r1) of x (m x k floats) to bfloat16 pairs, row stride ldb (in 16-bit units, a
// multiple of 32), zero beyond k.
HILUM_AVX512BF16 void convert_rows(const float* x, std::size_t ldx, int k, int r0, int r1, std::uint16_t* out, std::size_t ldb) {
  for (int r = r0; r < r1; ++r) {
    const float* src = x + static_cast<std::size_t>(r) * ldx;
    std::uint16_t* dst = out + static_cast<std::size_t>(r) * ldb;
    for (int j = 0; j < static_cast<int>(ldb); j += 32) {
      const int left = std::max(0, k - j);
      const auto m_lo = static_cast<__mmask16>(left >= 16 ? 0xffffu : (1u << left) - 1u);
      const auto m_hi = static_cast<__mmask16>(left >= 32 ? 0xffffu : left <= 16 ? 0u : (1u << (left - 16)) - 1u);
      const __m512 lo = _mm512_maskz_loadu_ps(m_lo, src + j);
      const __m512 hi = _mm512_maskz_loadu_ps(m_hi, src + j + 16);
      _mm512_store_si512(dst + j, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo)));
    }
  }
}

// Rows [r0, r1) of x to the split input [x_hi | x_hi | x_lo] (BF16Split): each segment `seg`
// elements (a multiple of 32, zero past k), x_lo = bfloat16(x - x_hi) (the difference is exact in F32).
HILUM_AVX512BF16 void convert_rows_split(const float* x, std::size_t ldx, int k, int seg, int r0, int r1, std::uint16_t* out, std::size_t ldb) {
  for (int r = r0; r < r1; ++r) {
    const float* src = x + static_cast<std::size_t>(r) * ldx;
    std::uint16_t* dst = out + static_cast<std::size_t>(r) * ldb;
    for (int j = 0; j < seg; j += 32) {
      const int left = std::max(0, k - j);
      const auto m_lo = static_cast<__mmask16>(left >= 16 ? 0xffffu : (1u << left) - 1u);
      const auto m_hi = static_cast<__mmask16>(left >= 32 ? 0xffffu : left <= 16 ? 0u : (1u << (left - 16)) - 1u);
      const __m512 lo = _mm512_maskz_loadu_ps(m_lo, src + j);
      const __m512 hi = _mm512_maskz_loadu_ps(m_hi, src + j + 16);
      const __m512bh top = _mm512_cvtne2ps_pbh(hi, lo);
      // bfloat16 back to F32: the 16 bits in the upper half of each word.
      const __m512i words = reinterpret_cast<__m512i>(top);
      const __m512 lo_top = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(words)), 16));
      const __m512 hi_top = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(words, 1)), 16));
      const __m512bh rest = _mm512_cvtne2ps_pbh(_mm512_sub_ps(hi, hi_top), _mm512_sub_ps(lo, lo_top));
      _mm512_store_si512(dst + j, words);
      _mm512_store_si512(dst + seg + j, words);
      _mm512_store_si512(dst + 2 * seg + j, reinterpret_cast<__m512i>(rest));
    }
    std::fill(dst + 3 * static_cast<std::size_t>(seg), dst + ldb, std::uint16_t{0});
  }
}

// The 16-bit words of _mm512_cvtne2ps_pbh(hi, lo) reordered into pairs: word 2j <- word j (lo's
// element j), word 2j + 1 <- word 16 + j (hi's element j).
alignas(64) constexpr std::uint16_t kPairOrder[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                                      8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};

// Pairs along a column: for s in [s0, s1), dst[s * ldd + j] = (bf16(src[2s][j]), bf16(src[2s+1][j]))
// for j < cols (src has `rows` rows of row stride ld; a missing row 2s+1 counts as zeros), and zero
// for cols <= j < width (a multiple of 16).
HILUM_AVX512BF16 void interleave_pairs(const float* src, std::size_t ld, int rows, int cols, int s0, int s1, std::uint32_t* dst,
                                       std::size_t ldd, int width) {
  const __m512i order = _mm512_load_si512(kPairOrder);
  for (int s = s0; s < s1; ++s) {
    const float* lo_row = src + static_cast<std::size_t>(2 * s) * ld;
    const float* hi_row = 2 * s + 1 < rows ? lo_row + ld : nullptr;
    std::uint32_t* out = dst + static_cast<std::size_t>(s) * ldd;
    for (int j = 0; j < width; j += 16) {
      const int left = std::max(0, cols - j);
      const auto m = static_cast<__mmask16>(left >= 16 ? 0xffffu : (1u << left) - 1u);
      const __m512 lo = _mm512_maskz_loadu_ps(m, lo_row + j);
      const __m512 hi = hi_row != nullptr ? _mm512_maskz_loadu_ps(m, hi_row + j) : _mm512_setzero_ps();
      const auto both = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));
      _mm512_storeu_si512(out + j, _mm512_permutexvar_epi16(order, both));
    }
  }
}

// Columns [r0, r1) of xt (k rows of row stride ldx) as rows of bfloat16 along k: out row r
// (row stride ldb elements) holds the pairs (bf16(xt[2s][r]), bf16(xt[2s+1][r])) for s < words,
// zero past k. By blocks of 16 columns x 16 pairs: each step's 16 pairs are made as in
// interleave_pairs, then the 16 x 16 block of 32-bit words is transposed through the stack.
HILUM_AVX512BF16 void transpose_pairs(const float* xt, std::size_t ldx, int k, int r0, int r1, int words, std::uint16_t* out,
                                      std::size_t ldb) {
  alignas(64) static constexpr std::int32_t kColumn[16] = {0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240};
  const __m512i order = _mm512_load_si512(kPairOrder);
  const __m512i column = _mm512_load_si512(kColumn);
  alignas(64) std::uint32_t block[16 * 16];
  for (int r = r0; r < r1; r += 16) {
    const int cols = std::min(16, r1 - r);
    const auto m = static_cast<__mmask16>(cols >= 16 ? 0xffffu : (1u << cols) - 1u);
    for (int s = 0; s < words; s += 16) {
      for (int i = 0; i < 16; ++i) {
        const int row = 2 * (s + i);
        const __m512 lo = row < k ? _mm512_maskz_loadu_ps(m, xt + static_cast<std::size_t>(row) * ldx + r) : _mm512_setzero_ps();
        const __m512 hi = row + 1 < k ? _mm512_maskz_loadu_ps(m, xt + static_cast<std::size_t>(row + 1) * ldx + r) : _mm512_setzero_ps();
        const auto both = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));
        _mm512_store_si512(block + 16 * i, _mm512_permutexvar_epi16(order, both));
      }
      for (int j = 0; j < cols; ++j) {
        const __m512i pairs = _mm512_i32gather_epi32(_mm512_add_epi32(column, _mm512_set1_epi32(j)), block, 4);
        _mm512_storeu_si512(out + static_cast<std::size_t>(r + j) * ldb + 2 * static_cast<std::size_t>(s), pairs);
      }
    }
  }
}

// AMX: eight tiles of 16 rows x 64 bytes. Tiles 0-3 accumulate a 32 x 32 block of y (F32), 4-5
// hold 32 rows of x (16 bf16 pairs each), 6-7 the panel's two halves over 16 k steps; the packed
// BF16 panel ([k_stride][32] words, zero past k_steps) is read in place with a row stride of 128 bytes.
struct alignas(64) TileConfig {
  std::uint8_t palette = 1;
  std::uint8_t start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t colsb[16] = {64, 64, 64, 64, 64, 64, 64, 64};
  std::uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
};

HILUM_AMX void amx_configure() {
  static const TileConfig config;
  _tile_loadconfig(&config);
}

HILUM_AMX void amx_release() { _tile_release(); }

// out (32 x 32 floats, row stride 32) = a (32 rows of bf16, row stride lda elements) times the
// panel b over `steps` pairs (a multiple of 16).
HILUM_AMX void amx_block(const std::uint16_t* a, std::size_t lda, const std::uint32_t* b, int steps, float* out) {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  const auto stride_a = static_cast<long>(lda * 2);
  const std::uint16_t* a1 = a + 16 * lda;
  for (int s = 0; s < steps; s += 16) {
    const std::size_t off = static_cast<std::size_t>(s);
    _tile_loadd(4, a + 2 * off, stride_a);
    _tile_loadd(5, a1 + 2 * off, stride_a);
    _tile_loadd(6, b + off * kPanel, 128);
    _tile_loadd(7, b + off * kPanel + 16, 128);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, out, 128);
  _tile_stored(1, out + 16, 128);
  _tile_stored(2, out + 16 * 32, 128);
  _tile_stored(3, out + 16 * 32 + 16, 128);
}

// The epilogue of one AMX block: y rows = block + bias (+ y).
HILUM_AVX512 void amx_store(const float* block, int rows, float* c, std::size_t ldc, const float* bias, bool load_c, __mmask16 m0,
                            __mmask16 m1) {
  const __m512 bias0 = _mm512_load_ps(bias), bias1 = _mm512_load_ps(bias + 16);
  for (int r = 0; r < rows; ++r) {
    __m512 v0 = _mm512_add_ps(_mm512_load_ps(block + r * 32), bias0);
    __m512 v1 = _mm512_add_ps(_mm512_load_ps(block + r * 32 + 16), bias1);
    float* row = c + static_cast<std::size_t>(r) * ldc;
    if (load_c) {
      v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, row));
      v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, row + 16));
    }
    _mm512_mask_storeu_ps(row, m0, v0);
    _mm512_mask_storeu_ps(row + 16, m1, v1);
  }
}

thread_local AlignedVector<std::uint16_t> t_bf16_input;
thread_local AlignedVector<std::uint16_t> t_bf16_rows;  // pack_bf16's rows of one panel

}  // namespace
#endif

void pack_bf16(const float* w, std::size_t ld, int n, int k, bool by_rows, PackedWeights& out) {
  out.format = Format::BF16;
  out.n = n;
  out.k = k;
  out.k_steps = (k + 1) / 2;
  out.k_stride = (out.k_steps + 15) / 16 * 16;
  out.panels = (n + kPanel - 1) / kPanel;
  const auto panels = static_cast<std::size_t>(out.panels), steps = static_cast<std::size_t>(out.k_steps),
             stride = static_cast<std::size_t>(out.k_stride);
  out.bias.assign(panels * kPanel, 0.0f);
  out.bf16.resize(panels * stride * kPanel);
  out.f32.clear();
#if HILUM_X86
  if (!cpu_has_avx512_bf16()) throw std::logic_error("gemm::pack_bf16: this CPU has no AVX512_BF16");
  // Rows of one panel in bfloat16 (by_rows): row stride a multiple of 32 elements (2 * stride).
  const std::size_t ldb = 2 * stride;
  const auto pack_panel = [&](std::size_t p, std::uint16_t* rows) {
    const std::size_t col0 = p * kPanel, cols = std::min<std::size_t>(kPanel, static_cast<std::size_t>(n) - col0);
    std::uint32_t* dst = out.bf16.data() + p * stride * kPanel;
    if (by_rows) {
      // Each row's bfloat16 sequence read as 32-bit words is its pairs along k (zero past k).
      convert_rows(w + col0 * ld, ld, k, 0, static_cast<int>(cols), rows, ldb);
      for (std::size_t j = 0; j < kPanel; ++j) {
        const auto* row = reinterpret_cast<const std::uint32_t*>(rows + j * ldb);
        for (std::size_t st = 0; st < stride; ++st) dst[st * kPanel + j] = j < cols ? row[st] : 0u;
      }
    } else {
      interleave_pairs(w + col0, ld, k, static_cast<int>(cols), 0, static_cast<int>(steps), dst, kPanel, kPanel);
      std::fill(dst + steps * kPanel, dst + stride * kPanel, 0u);
    }
  };
  const int nthreads =
#ifdef _OPENMP
      omp_in_parallel() ? 1 : std::min(omp_get_max_threads(), out.panels);
#else
      1;
#endif
  const std::size_t row_units = by_rows ? kPanel * ldb : 0;
  if (nthreads <= 1 || panels * steps < 4096) {
    if (t_bf16_rows.size() < row_units) t_bf16_rows.resize(row_units);
    for (std::size_t p = 0; p < panels; ++p) pack_panel(p, t_bf16_rows.data());
    return;
  }
#pragma omp parallel num_threads(nthreads)
  {
    if (t_bf16_rows.size() < row_units) t_bf16_rows.resize(row_units);
#pragma omp for schedule(dynamic)
    for (std::size_t p = 0; p < panels; ++p) pack_panel(p, t_bf16_rows.data());
  }
#else
  (void)w, (void)ld, (void)by_rows;
  throw std::logic_error("gemm::pack_bf16: needs x86-64 with AVX512_BF16");
#endif
}

Product::Product(const float* x, std::size_t ldx, bool x_transposed, int m, const PackedWeights& w, float* y, std::size_t ldy,
                 bool accumulate, Activation activation, int threads)
    : x_(x), ldx_(ldx), transposed_(x_transposed), m_(std::max(0, m)), w_(&w), y_(y), ldy_(ldy), accumulate_(accumulate), activation_(activation) {
  if (m_ <= 0 || w.n <= 0) return;
  bf16_ = w.format == Format::BF16 || w.format == Format::BF16Split;
  if (w.format == Format::BF16Split && x_transposed) throw std::logic_error("gemm::Product: split BF16 weights take x by rows");
  // AMX: blocks of 32 rows x one panel, k in whole tiles of 16 pairs (the panels are zero-padded).
  amx_ = bf16_ && amx_enabled() && cpu_has_amx_bf16();
  tile_rows_ = amx_ ? 32 : kMaxRows;
  tiles_ = (m_ + tile_rows_ - 1) / tile_rows_;
  // BF16 input by rows: row stride a multiple of 32 elements, plus 32 so that rows do not share cache
  // sets. Transposed without AMX: k_steps rows of m pairs (32-bit words), row stride ldt words (a
  // multiple of 16, plus 16).
  ldb_ = static_cast<std::size_t>((2 * w.k_steps + 31) / 32 * 32 + 32);
  ldt_ = static_cast<std::size_t>((m_ + 15) / 16 * 16 + 16);
  pairs_by_column_ = bf16_ && x_transposed && !amx_;
  // AMX reads whole 16-row tiles: rows up to the next multiple of 32 exist (their values unused).
  units_ = !bf16_ ? 0
           : pairs_by_column_ ? 2 * ldt_ * static_cast<std::size_t>(w.k_steps)
                              : static_cast<std::size_t>(tiles_ * tile_rows_) * ldb_;
  // Blocks of row tiles whose inputs (about 512 KB) stay in L2 while the panels pass.
  const std::size_t row_bytes = bf16_ ? ldb_ * 2 : static_cast<std::size_t>(w.k) * 4;
  block_ = std::max(1, static_cast<int>((512u * 1024u) / (row_bytes * static_cast<std::size_t>(tile_rows_))));
  row_blocks_ = (tiles_ + block_ - 1) / block_;
  // Items small enough that a thread the scheduler parks holds little back (about 16 per block of
  // rows and thread), large enough that taking one costs nothing (a panel at least).
  groups_ = std::min(w.panels, 16 * std::max(1, threads));
  // The conversion to bfloat16 in pieces of 32 rows (by rows) or 16 pairs (pairs by column).
  conversions_ = !bf16_ ? 0 : pairs_by_column_ ? (w.k_steps + 15) / 16 : (m_ + 31) / 32;
}

long Product::items() const { return static_cast<long>(row_blocks_) * groups_; }

void Product::convert(long i) const {
#if HILUM_X86
  const PackedWeights& w = *w_;
  if (pairs_by_column_) {
    const int s0 = static_cast<int>(i) * 16, s1 = std::min(w.k_steps, s0 + 16);
    interleave_pairs(x_, ldx_, w.k, m_, s0, s1, reinterpret_cast<std::uint32_t*>(scratch_), ldt_, (m_ + 15) / 16 * 16);
    return;
  }
  const int r0 = static_cast<int>(i) * 32, r1 = std::min(m_, r0 + 32);
  if (transposed_) transpose_pairs(x_, ldx_, w.k, r0, r1, w.k_stride, scratch_, ldb_);
  else if (w.format == Format::BF16Split) convert_rows_split(x_, ldx_, w.k, split_segment(w.k), r0, r1, scratch_, ldb_);
  else convert_rows(x_, ldx_, w.k, r0, r1, scratch_, ldb_);
#else
  (void)i;
#endif
}

void Product::compute(long item) const {
#if HILUM_X86
  const PackedWeights& w = *w_;
  const int rb = static_cast<int>(item / groups_), g = static_cast<int>(item % groups_);
  const int t0 = rb * block_, t1 = std::min(tiles_, t0 + block_);
  const int p0 = w.panels * g / groups_, p1 = w.panels * (g + 1) / groups_;
  const std::uint16_t* xb = scratch_;
  const auto stride = static_cast<std::size_t>(w.k_stride);
  alignas(64) float amx_out[32 * 32];  // one AMX block of y before its epilogue
  if (amx_) amx_configure();
  for (int p = p0; p < p1; ++p) {
    const int col0 = p * kPanel;
    const int cols = std::min(kPanel, w.n - col0);
    const auto m0 = static_cast<__mmask16>(cols >= 16 ? 0xffffu : (1u << cols) - 1u);
    const auto m1 = static_cast<__mmask16>(cols >= 32 ? 0xffffu : cols <= 16 ? 0u : (1u << (cols - 16)) - 1u);
    const float* bias = w.bias.data() + col0;
    for (int tt = t0; tt < t1; ++tt) {
      const int row0 = tt * tile_rows_;
      const int rows = std::min(tile_rows_, m_ - row0);
      float* c = y_ + static_cast<std::size_t>(row0) * ldy_ + col0;
      if (amx_) {
        amx_block(xb + static_cast<std::size_t>(row0) * ldb_, ldb_, w.bf16.data() + static_cast<std::size_t>(p) * stride * kPanel, w.k_stride,
                  amx_out);
        amx_store(amx_out, rows, c, ldy_, bias, accumulate_, m0, m1);
      } else if (bf16_) {
        const auto* words = reinterpret_cast<const std::uint32_t*>(xb);
        const std::uint32_t* packed = w.bf16.data() + static_cast<std::size_t>(p) * stride * kPanel;
        if (transposed_) {
          kTilesBF16T[static_cast<std::size_t>(rows - 1)](words + row0, ldt_, packed, w.k_steps, c, ldy_, bias, accumulate_, m0, m1);
        } else {
          kTilesBF16[static_cast<std::size_t>(rows - 1)](words + static_cast<std::size_t>(row0) * (ldb_ / 2), ldb_ / 2, packed, w.k_steps, c,
                                                         ldy_, bias, accumulate_, m0, m1);
        }
      } else {
        (transposed_ ? kTilesF32T : kTilesF32)[static_cast<std::size_t>(rows - 1)](
            x_ + static_cast<std::size_t>(row0) * (transposed_ ? 1 : ldx_), ldx_, w.f32.data() + static_cast<std::size_t>(p) * stride * kPanel,
            w.k_steps, c, ldy_, bias, accumulate_, m0, m1);
      }
      if (activation_ != Activation::None) gelu_inplace(c, ldy_, rows, cols, activation_ == Activation::GeluTanh);
    }
  }
  if (amx_) amx_release();
#else
  (void)item;
#endif
}

namespace {

// x_transposed: x is given as its transpose.
void multiply_impl(const float* x, std::size_t ldx, bool x_transposed, int m, const PackedWeights& w, float* y, std::size_t ldy,
                   bool accumulate, Activation activation, int threads) {
#if HILUM_X86
  if (m <= 0 || w.n <= 0) return;
#ifdef _OPENMP
  if (omp_in_parallel()) threads = 1;
#endif
  Product product(x, ldx, x_transposed, m, w, y, ldy, accumulate, activation, threads);
  threads = static_cast<int>(std::max(1L, std::min<long>(threads, product.items())));
  if (t_bf16_input.size() < product.scratch_units()) t_bf16_input.resize(product.scratch_units());
  product.set_scratch(t_bf16_input.data());
  if (threads == 1) {
    for (long i = 0; i < product.conversions(); ++i) product.convert(i);
    for (long i = 0; i < product.items(); ++i) product.compute(i);
    return;
  }
  // The conversion, then the products, taken item by item (team.hpp): no static split for a parked
  // thread to hold back.
  team::Steps steps;
#pragma omp parallel num_threads(threads)
  {
    team::Steps::Cursor cursor;
    steps.run(cursor, product.conversions(), [&](long i) { product.convert(i); });
    steps.run(cursor, product.items(), [&](long i) { product.compute(i); });
  }
#else
  (void)x, (void)ldx, (void)x_transposed, (void)m, (void)w, (void)y, (void)ldy, (void)accumulate, (void)activation, (void)threads;
#endif
}

}  // namespace

void multiply(const float* x, std::size_t ldx, int m, const PackedWeights& w, float* y, std::size_t ldy, bool accumulate,
              Activation activation, int threads) {
  multiply_impl(x, ldx, false, m, w, y, ldy, accumulate, activation, threads);
}

void multiply_transposed(const float* xt, std::size_t ldxt, int m, const PackedWeights& w, float* y, std::size_t ldy, bool accumulate,
                         int threads) {
  multiply_impl(xt, ldxt, true, m, w, y, ldy, accumulate, Activation::None, threads);
}

}  // namespace hilum::inference::gemm
