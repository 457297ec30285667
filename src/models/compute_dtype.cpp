// Compute dtypes: option parsing and a probe of libtorch's CPU kernels (see compute_dtype.h).
#include "models/compute_dtype.h"

#include "candor/error.h"

namespace candor {

at::ScalarType parse_compute_dtype(const std::string& name) {
  if (name == "f32" || name == "float32") return at::kFloat;
  if (name == "bf16" || name == "bfloat16") return at::kBFloat16;
  if (name == "f16" || name == "float16" || name == "half") return at::kHalf;
  throw Error(ErrorCode::kInvalidArgument, "unknown compute dtype '" + name + "'",
              "use f32 (default) or bf16");
}

std::string compute_dtype_name(at::ScalarType type) {
  switch (type) {
    case at::kFloat:
      return "f32";
    case at::kBFloat16:
      return "bf16";
    case at::kHalf:
      return "f16";
    default:
      return std::string(c10::toString(type));
  }
}

void check_compute_dtype(at::ScalarType type) {
  if (type == at::kFloat) return;
  const std::string name = compute_dtype_name(type);
  // Tiny inputs: x [2, 3, 8] (differentiable, from float), weights [8, 8].
  at::Tensor xf = at::randn({2, 3, 8}).set_requires_grad(true);
  at::Tensor w = at::randn({8, 8}).to(type), b = at::randn({8}).to(type);
  at::Tensor x;
  std::string step;
  try {
    step = "conversion";
    x = xf.to(type);
    step = "linear";
    at::Tensor h = at::linear(x, w, b);  // [2, 3, 8]
    step = "batched matmul";
    at::Tensor s = at::matmul(h.view({2, 3, 2, 4}).transpose(1, 2),
                              h.view({2, 3, 2, 4}).permute({0, 2, 3, 1}));  // [2, 2, 3, 3]
    step = "softmax";
    at::Tensor att = at::softmax(s, -1, at::kFloat).to(type);
    step = "activations";
    h = at::silu(h) * at::gelu(h, "tanh") + at::gelu(h) + at::relu(h) + at::tanh(h);
    step = "norm";
    h = at::layer_norm(h.to(at::kFloat), {8}).to(type);
    step = "embedding";
    at::Tensor e = at::embedding(w, at::tensor(std::vector<int64_t>{1, 2}, at::kLong));
    step = "backward";
    at::Tensor out = (at::matmul(att, h.view({2, 2, 3, 4})).sum() + e.sum()).to(at::kFloat);
    out.backward();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& ex) {
    std::string what = ex.what();
    const size_t nl = what.find('\n');
    if (nl != std::string::npos) what.resize(nl);
    throw Error(ErrorCode::kUnsupported,
                "compute dtype " + name + " is not supported by this libtorch's CPU kernels (" +
                    step + ": " + what + ")",
                "use --dtype bf16 or --dtype f32 (f16 weights load and compute in f32 by default)");
  }
}

}  // namespace candor
