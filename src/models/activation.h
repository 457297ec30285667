// The feed-forward activations of ModelConfig::activation, shared by the decoder and encoder
// runtimes. Internal header.
#pragma once

#include <ATen/ATen.h>

#include "candor/model.h"

namespace candor {

// SwiGLU: f [..., 2 * F] (gate, then up) -> silu(gate) * up [..., F]; the others: elementwise,
// same shape.
inline at::Tensor activate(Activation a, const at::Tensor& f) {
  switch (a) {
    case Activation::kSwiGLU: {
      auto gate_up = f.chunk(2, -1);
      return at::silu(gate_up[0]) * gate_up[1];
    }
    case Activation::kGeluTanh:
      return at::gelu(f, "tanh");
    case Activation::kGelu:
      return at::gelu(f);
    case Activation::kRelu:
      return at::relu(f);
  }
  return f;
}

}  // namespace candor
