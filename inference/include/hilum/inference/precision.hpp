// The arithmetic of matrix products: the forward pass's linear layers (vit.hpp) and the public
// products of matmul.hpp that the trainer uses.
#pragma once

namespace hilum::inference {

// F32: single precision throughout. BF16: both operands rounded to bfloat16 (round to nearest
// even), products accumulated in F32 (AVX512_BF16 vdpbf16ps); the stored weights, the results
// and everything around the products stay F32. On a CPU without AVX512_BF16, BF16 runs as F32.
enum class Precision { F32, BF16 };

}  // namespace hilum::inference
