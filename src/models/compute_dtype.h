// Compute dtypes of the model runtime (LoadOptions::compute_dtype): parsing the option and
// checking that libtorch's CPU kernels implement what the forward and backward passes use.
// Internal header.
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace candor {

// "f32" / "float32" -> kFloat, "bf16" / "bfloat16" -> kBFloat16, "f16" / "float16" / "half" ->
// kHalf. Throws Error(kInvalidArgument) naming `name` for anything else.
at::ScalarType parse_compute_dtype(const std::string& name);
// kFloat -> "f32", kBFloat16 -> "bf16", kHalf -> "f16".
std::string compute_dtype_name(at::ScalarType type);

// Runs every kernel the runtime needs in `type` (linear with bias, batched matmul, activations,
// softmax and norms upcast to float, their backward) on tiny tensors. Throws
// Error(kUnsupported) naming the dtype and the first missing kernel, with a hint to use bf16 or
// f32 (libtorch 1.13 has no CPU matmul for float16). Never aborts.
void check_compute_dtype(at::ScalarType type);

}  // namespace candor
