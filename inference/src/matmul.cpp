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

std::size_t stride(std::size_t given, int cols) { return given != 0 ? given : static_cast<std::size_t>(cols); }

// C = (accumulate ? C : 0) + A P with P packed (and its bias); k == 0 is a product of nothing.
// A has row stride lda, C ldc.
void run(const float* a, std::size_t lda, int m, int k, const gemm::PackedWeights& p, float* c, std::size_t ldc, int n, bool accumulate) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int i = 0; i < m; ++i) {
      float* row = c + static_cast<std::size_t>(i) * ldc;
      for (int j = 0; j < n; ++j) row[j] = (accumulate ? row[j] : 0.0f) + p.bias[static_cast<std::size_t>(j)];
    }
    return;
  }
  gemm::multiply(a, lda, m, p, c, ldc, accumulate, gemm::Activation::None, threads());
}

thread_local gemm::PackedWeights packed;

// Packs B (n x k by rows, else k x n) in the precision that runs for the requested one.
void pack(const float* b, std::size_t ld, int n, int k, bool by_rows, Precision precision) {
  if (available_precision(precision) == Precision::BF16) gemm::pack_bf16(b, ld, n, k, by_rows, packed);
  else gemm::pack_f32(b, ld, n, k, by_rows, packed);
}

}  // namespace

bool matmul_available() { return gemm::cpu_has_avx512(); }

void matmul_abt(const float* a, int m, int k, const float* b, int n, const float* bias, float* c, bool accumulate, Precision precision,
                Strides strides) {
  check(m, k, n);
  pack(b, stride(strides.b, k), n, k, true, precision);
  if (bias != nullptr) std::copy(bias, bias + n, packed.bias.begin());
  run(a, stride(strides.a, k), m, k, packed, c, stride(strides.c, n), n, accumulate);
}

void matmul_ab(const float* a, int m, int k, const float* b, int n, float* c, bool accumulate, Precision precision, Strides strides) {
  check(m, k, n);
  pack(b, stride(strides.b, n), n, k, false, precision);
  run(a, stride(strides.a, k), m, k, packed, c, stride(strides.c, n), n, accumulate);
}

void matmul_atb(const float* a, int k, int m, const float* b, int n, float* c, bool accumulate, Precision precision, Strides strides) {
  check(m, k, n);
  // The kernel reads A^T's tiles straight from A (k x m): no transposed copy (in BF16, A's rows are
  // interleaved in pairs instead).
  pack(b, stride(strides.b, n), n, k, false, precision);
  if (m == 0 || n == 0) return;
  if (k == 0) {
    run(nullptr, 0, m, 0, packed, c, stride(strides.c, n), n, accumulate);
    return;
  }
  gemm::multiply_transposed(a, stride(strides.a, m), m, packed, c, stride(strides.c, n), accumulate, threads());
}

}  // namespace hilum::inference
