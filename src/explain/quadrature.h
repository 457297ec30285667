// Integration rules on [0, 1] for path methods (integrated gradients): Gauss-Legendre,
// Gauss-Lobatto and the Riemann sums. Internal header; defined in ig_quadrature.cpp.
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

// The n-point Gauss-Lobatto rule on [0, 1] (n >= 2): both edges and the n - 2 roots of
// P_{n-1}', exact for polynomials of degree < 2n - 2; for odd n the centre is exactly 0.5.
Quadrature gauss_lobatto(int64_t n);

// Panel edges 0 = e_0 < ... < e_panels = 1 placed by equidistribution: from the target sampled
// at ascending `alphas` [M] (0 to 1) with `values` [M], the density beta + (1 - beta) |df| /
// (total variation), constant over each sample cell, is integrated and the edges put at equal
// steps of it, so each panel holds about the same share of f's change (a sharp change gets
// several short panels, flat stretches long ones). Flat f: equal panels.
std::vector<double> equidistributed_edges(int64_t panels, const std::vector<double>& alphas,
                                          const std::vector<double>& values, double beta = 0.5);

}  // namespace candor::explain
