// The public matrix products (matmul.hpp) on gemm.hpp's packed kernels.
#include "hilum/inference/matmul.hpp"

#include <algorithm>
#include <stdexcept>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "gemm.hpp"

namespace hilum::inference {

namespace {

int threads() {
#ifdef _OPENMP
  return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
  return 1;
#endif
}

void check(int m, int k, int n) {
  if (m < 0 || k < 0 || n < 0) throw std::invalid_argument("matmul: negative size");
  if (!gemm::cpu_has_avx512()) throw std::logic_error("matmul: this CPU has no AVX-512 (check matmul_available())");
}

// C = (accumulate ? C : 0) + A P with P packed (and its bias); k == 0 is a product of nothing.
void run(const float* a, int m, int k, const gemm::PackedWeights& p, float* c, int n, bool accumulate) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate) std::fill(c, c + static_cast<std::size_t>(m) * static_cast<std::size_t>(n), 0.0f);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) c[static_cast<std::size_t>(i) * static_cast<std::size_t>(n) + static_cast<std::size_t>(j)] += p.bias[static_cast<std::size_t>(j)];
    return;
  }
  gemm::multiply(a, static_cast<std::size_t>(k), m, p, c, static_cast<std::size_t>(n), accumulate, gemm::Activation::None, threads());
}

thread_local gemm::PackedWeights packed;

// Packs B (n x k by rows, else k x n) in the requested precision, F32 when the CPU has no AVX512_BF16.
void pack(const float* b, std::size_t ld, int n, int k, bool by_rows, Precision precision) {
  if (precision == Precision::BF16 && gemm::cpu_has_avx512_bf16()) gemm::pack_bf16(b, ld, n, k, by_rows, packed);
  else gemm::pack_f32(b, ld, n, k, by_rows, packed);
}

}  // namespace

bool matmul_available() { return gemm::cpu_has_avx512(); }
bool matmul_bf16_available() { return gemm::cpu_has_avx512_bf16(); }

void matmul_abt(const float* a, int m, int k, const float* b, int n, const float* bias, float* c, bool accumulate, Precision precision) {
  check(m, k, n);
  pack(b, static_cast<std::size_t>(k), n, k, true, precision);
  if (bias != nullptr) std::copy(bias, bias + n, packed.bias.begin());
  run(a, m, k, packed, c, n, accumulate);
}

void matmul_ab(const float* a, int m, int k, const float* b, int n, float* c, bool accumulate, Precision precision) {
  check(m, k, n);
  pack(b, static_cast<std::size_t>(n), n, k, false, precision);
  run(a, m, k, packed, c, n, accumulate);
}

void matmul_atb(const float* a, int k, int m, const float* b, int n, float* c, bool accumulate, Precision precision) {
  check(m, k, n);
  // The kernel reads A^T's tiles straight from A (k x m): no transposed copy (in BF16, A's rows are
  // interleaved in pairs instead).
  pack(b, static_cast<std::size_t>(n), n, k, false, precision);
  if (m == 0 || n == 0) return;
  if (k == 0) {
    run(nullptr, m, 0, packed, c, n, accumulate);
    return;
  }
  gemm::multiply_transposed(a, static_cast<std::size_t>(m), m, packed, c, static_cast<std::size_t>(n), accumulate, threads());
}

}  // namespace hilum::inference
