// Row-major single-precision matrix products on the engine's packed AVX-512 kernels, for
// code outside the forward pass (the trainer's linear layers, its attention products and their
// backward passes). A matrix is contiguous (row stride = its column count) unless `Strides` gives
// its row stride (a head's block of Q, K or V inside the rows of all heads). The right-hand matrix
// is packed per call into a per-thread buffer; both cores are used unless called from inside an
// OpenMP region (then the call runs on its own thread).
//
// Precision::BF16 (mixed precision) rounds both operands to bfloat16 and accumulates in F32: the
// results are those of the F32 product of the rounded operands, up to summation order. Without
// cpu_has_bf16_kernels() it runs as F32 (available_precision, precision.hpp).
#pragma once

#include <cstddef>

#include "hilum/inference/precision.hpp"

namespace hilum::inference {

// Row strides (in floats) of A, B and C; 0 means contiguous.
struct Strides {
  std::size_t a = 0, b = 0, c = 0;
};

// True when the CPU has AVX-512 (F, BW, VL, DQ); otherwise callers use their own path.
[[nodiscard]] bool matmul_available();

// C[m x n] = (accumulate ? C : 0) + A[m x k] B^T + bias, with B n x k (a linear layer's weight)
// and bias n floats or nullptr.
void matmul_abt(const float* a, int m, int k, const float* b, int n, const float* bias, float* c, bool accumulate,
                Precision precision = Precision::F32, Strides strides = {});

// C[m x n] = (accumulate ? C : 0) + A[m x k] B, with B k x n.
void matmul_ab(const float* a, int m, int k, const float* b, int n, float* c, bool accumulate, Precision precision = Precision::F32,
               Strides strides = {});

// C[m x n] = (accumulate ? C : 0) + A^T B, with A k x m and B k x n (a weight's gradient).
void matmul_atb(const float* a, int k, int m, const float* b, int n, float* c, bool accumulate, Precision precision = Precision::F32,
                Strides strides = {});

}  // namespace hilum::inference
