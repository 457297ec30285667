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

// Where the integrand of a path method changes fast: a centre on [0, 1] and a width (about the
// distance of the nearest complex singularity from the real line).
struct Transition {
  double center = 0;
  double width = 0;
};

// Finds transitions of the target along the path from values sampled at ascending points:
// `alphas` [M] from 0 to 1, `values` [M][S] (S target steps). A transition is a local maximum of
// the finite-difference slope |df/dalpha| of a step at >= 20% of that step's steepest slope; its
// width is 2 J / (4 slope), J the change of f over the five cells around it (a logistic of jump
// J and scale s has slope J / (4 s) and poles at distance pi s).
std::vector<Transition> find_transitions(const std::vector<double>& alphas,
                                         const std::vector<std::vector<double>>& values);

// Gauss-Legendre with n points under a change of variables that crowds the points into the
// transitions: u(alpha) = beta alpha + sum_j a_j asinh((alpha - c_j) / w_j) (normalised to
// [0, 1]; a_j = (1 - beta) / #transitions), Gauss-Legendre in u, weights divided by u'(alpha).
// Near a transition the map is alpha = c + w sinh(t), which moves a pole at distance w to
// distance ~pi/2 in t, so the rule converges as if the integrand were smooth. No transitions:
// plain Gauss-Legendre.
Quadrature mapped_gauss_legendre(int64_t n, const std::vector<Transition>& transitions,
                                 double beta = 0.3);

}  // namespace candor::explain
