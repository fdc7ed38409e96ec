// The arithmetic of matrix products: the forward pass's linear layers (vit.hpp) and the public
// products of matmul.hpp that the trainer uses.
#pragma once

namespace hilum::inference {

// F32: single precision throughout. BF16: both operands rounded to bfloat16 (round to nearest
// even), products accumulated in F32 (AVX512_BF16 vdpbf16ps); the stored weights, the results
// and everything around the products stay F32. On a CPU without AVX512_BF16, BF16 runs as F32.
enum class Precision { F32, BF16 };

// True when the running CPU has the BF16 kernels (AVX-512 with AVX512_BF16).
[[nodiscard]] bool cpu_has_bf16_kernels();

// The arithmetic that runs when `requested` is asked for: BF16 only where cpu_has_bf16_kernels(),
// else F32. The forward pass, the public products (matmul.hpp) and the trainer's reports use it.
[[nodiscard]] Precision available_precision(Precision requested);

}  // namespace hilum::inference
