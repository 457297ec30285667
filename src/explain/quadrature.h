// Integration rules on [0, 1] for path methods (integrated gradients): Gauss-Legendre and the
// Riemann sums. Internal header; defined in integrated_gradients.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace candor::explain {

// Points alpha_i in [0, 1] (ascending) and weights w_i with sum_i w_i f(alpha_i) ~ int_0^1 f.
struct Quadrature {
  std::vector<double> alphas;
  std::vector<double> weights;
};

// `method`: "gausslegendre" (exact for polynomials of degree < 2n), "riemann_left",
// "riemann_right", "riemann_middle", "riemann_trapezoid" (n >= 2). Throws Error(kInvalidArgument)
// naming the option `method` (or `n_steps`) of integrated_gradients for bad values.
Quadrature make_quadrature(const std::string& method, int64_t n);

}  // namespace candor::explain
