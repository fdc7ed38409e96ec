// Hilum's own GEMM for the ViT's linear layers: y = x W^T + b with W packed once (at the first
// forward after a load or a weight change) into the layout the AVX-512 micro-kernels read.
//
//  * F32: W in panels of 32 output columns, [panel][k][32] floats; a 12 x 32 register tile of
//    FMAs (vfmadd231ps with a broadcast x element).
//  * BF16: W rounded to bfloat16 (round to nearest even) and stored in pairs along k,
//    [panel][k/2][32] 32-bit words holding (W[j][2i], W[j][2i+1]); x is converted to bfloat16 per
//    call; vdpbf16ps (AVX512_BF16) accumulates the products of each pair in F32.
//
//  * BF16 split (three products): W = W_hi + W_lo and x = x_hi + x_lo, each part in bfloat16;
//    y = x_hi W_hi + x_hi W_lo + x_lo W_hi, run as one BF16 product over k three times as long
//    ([x_hi | x_hi | x_lo] against [W_hi | W_lo | W_hi], each segment padded to 32). About 16 bits
//    of each operand: close to F32 (the dropped x_lo W_lo is 2^-16 relative), at three times the
//    BF16 cost, which on AMX is still far below the F32 FMA tile.
//
// The epilogue adds the bias (and the old contents of y for a residual connection) and can apply
// GELU. Internal to inference/ (the tests include it); the functions are compiled with
// function-level target attributes, so the library builds with any -march and only calls them when
// the running CPU has the instructions (cpu_has_avx512(), cpu_has_avx512_bf16()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

namespace hilum::inference::gemm {

// 64-byte aligned storage for the packed panels (a zmm load never splits a cache line).
template <typename T>
struct AlignedAllocator {
  using value_type = T;
  AlignedAllocator() = default;
  template <typename U>
  AlignedAllocator(const AlignedAllocator<U>&) noexcept {}  // NOLINT(google-explicit-constructor)
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{64})); }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t{64}); }
  template <typename U>
  bool operator==(const AlignedAllocator<U>&) const noexcept { return true; }
};
template <typename T>
using AlignedVector = std::vector<T, AlignedAllocator<T>>;

constexpr int kPanel = 32;  // output columns per packed panel (two zmm registers)

bool cpu_has_avx512();       // avx512f + avx512bw + avx512vl + avx512dq, and the OS saves zmm state
bool cpu_has_avx512_bf16();  // the above + avx512_bf16
// AMX (amx_tile + amx_bf16) present and granted by the kernel (arch_prctl XCOMP_PERM); BF16 products
// (x given by rows or transposed, any k: the packed panels are zero-padded to whole tiles) then run
// on 16 x 16 tiles (TDPBF16PS), F32 accumulation as vdpbf16ps.
bool cpu_has_amx_bf16();
// Turns the AMX path off (true by default; HILUM_AMX=0 in the environment starts it off): for tests
// and benchmarks that compare it with the AVX-512 BF16 kernel.
void set_amx_enabled(bool enabled);
[[nodiscard]] bool amx_enabled();

enum class Format { F32, BF16, BF16Split };

// One part of a packed weight matrix: `rows` output rows of `k` inputs, row-major (stride k), and
// its bias (nullptr: zero). Several parts are stacked (Q, K and V become one 3D x D matrix).
struct Part {
  const float* w = nullptr;
  int rows = 0;
  const float* bias = nullptr;
};

struct PackedWeights {
  Format format = Format::F32;
  int n = 0;       // output columns
  int k = 0;       // inputs
  int panels = 0;  // ceil(n / 32)
  int k_steps = 0; // F32: k; BF16: ceil(k / 2) pairs
  // Steps stored per panel: F32 k_steps; BF16 k_steps rounded up to a multiple of 16 (zero pairs
  // after k_steps), so that AMX tiles of 16 pairs cover any k.
  int k_stride = 0;
  AlignedVector<float> f32;         // [panel][k][32]
  AlignedVector<std::uint32_t> bf16;  // [panel][k_stride][32]
  AlignedVector<float> bias;          // panels * 32, zero-padded
  [[nodiscard]] std::size_t bytes() const { return f32.size() * 4 + bf16.size() * 4 + bias.size() * 4; }
};

// BF16Split: the length of each of the three segments along k (k rounded up to 32).
[[nodiscard]] constexpr int split_segment(int k) { return (k + 31) / 32 * 32; }

// A stored weight's parts stacked and packed (with their biases) by pack_f32 / pack_bf16 (BF16Split:
// pack_bf16 of [W_hi | W_lo | W_hi]).
[[nodiscard]] PackedWeights pack(const std::vector<Part>& parts, int k, Format format);

// F32 packing into `out` (its storage is reused), also of matrices that change every call
// (attention's K_h and V_h, the trainer's operands). by_rows: W is n x k with row stride ld
// (y = x W^T); else W^T is given, k x n with row stride ld (y = x V). Bias zero.
void pack_f32(const float* w, std::size_t ld, int n, int k, bool by_rows, PackedWeights& out);

// The same in BF16 (rounded to nearest even, pairs along k; k odd: the last pair's second half is
// zero). Requires cpu_has_avx512_bf16().
void pack_bf16(const float* w, std::size_t ld, int n, int k, bool by_rows, PackedWeights& out);

enum class Activation { None, Gelu, GeluTanh };

// y[m x n] (row stride ldy) = (accumulate ? y : 0) + x[m x k] (row stride ldx) W^T + b, then the
// activation. Runs on up to `threads` OpenMP threads, which take the items of a Product as they come
// (no static split); 1 thread when called from inside a parallel region. BF16: x is converted to
// bfloat16 once, shared by the threads.
// Requires cpu_has_avx512() (F32) or cpu_has_avx512_bf16() (BF16).
void multiply(const float* x, std::size_t ldx, int m, const PackedWeights& w, float* y, std::size_t ldy, bool accumulate,
              Activation activation, int threads);

// The same product with x given transposed: xt is k x m (row stride ldxt), so y = xt^T W^T + b
// (the trainer's dW = dY^T X). BF16 with AMX transposes xt into bfloat16 rows of x as it converts;
// without AMX it interleaves xt's rows 2s and 2s+1 into bfloat16 pairs along k.
void multiply_transposed(const float* xt, std::size_t ldxt, int m, const PackedWeights& w, float* y, std::size_t ldy, bool accumulate,
                         int threads);

// One product y (+)= x W^T + b (then the activation) cut into items that the threads of a team
// take in any order (team.hpp): first conversions() pieces of x to bfloat16 (BF16 weights only;
// into a scratch of scratch_units() 16-bit words the caller provides), then items() blocks of y
// (a block of rows x a group of panels). All conversions must be complete before any item starts;
// items write disjoint parts of y. Every element of y is summed in the same order however the
// items are shared, so the result does not depend on the number of threads. multiply() and
// multiply_transposed() run one of these; the ViT forward runs every product of a forward inside
// one parallel region. `threads` sizes the items (about 16 per block of rows and thread).
class Product {
 public:
  Product(const float* x, std::size_t ldx, bool x_transposed, int m, const PackedWeights& w, float* y, std::size_t ldy, bool accumulate,
          Activation activation, int threads);
  [[nodiscard]] std::size_t scratch_units() const { return units_; }
  void set_scratch(std::uint16_t* scratch) { scratch_ = scratch; }
  [[nodiscard]] long conversions() const { return conversions_; }
  void convert(long i) const;
  [[nodiscard]] long items() const;
  void compute(long i) const;

 private:
  const float* x_;
  std::size_t ldx_;
  bool transposed_;
  int m_;
  const PackedWeights* w_;
  float* y_;
  std::size_t ldy_;
  bool accumulate_;
  Activation activation_;
  bool bf16_ = false, amx_ = false, pairs_by_column_ = false;
  int tile_rows_ = 1, tiles_ = 0, block_ = 1, row_blocks_ = 0, groups_ = 1;
  std::size_t ldb_ = 0, ldt_ = 0, units_ = 0;
  long conversions_ = 0;
  std::uint16_t* scratch_ = nullptr;
};

// F32 -> bfloat16, round to nearest even (NaN stays NaN); and back.
[[nodiscard]] std::uint16_t to_bf16(float f);
[[nodiscard]] float from_bf16(std::uint16_t h);

// GELU on a row-major block (Eigen's vectorised erf/tanh; the reference forward uses the same).
void gelu_inplace(float* y, std::size_t ldy, int rows, int cols, bool tanh_approximation);

}  // namespace hilum::inference::gemm
