// Integration rules on [0, 1] for path methods: Gauss-Legendre (Newton on P_n), Gauss-Lobatto
// (Newton on P_{n-1}'), the Riemann sums, and equidistributed panel edges.
#include <algorithm>
#include <cmath>

#include "candor/error.h"
#include "explain/quadrature.h"

namespace candor::explain {
namespace {

// Gauss-Legendre nodes and weights on [-1, 1] by Newton's method on P_n, returned on [0, 1].
Quadrature gauss_legendre(int64_t n) {
  const double pi = std::acos(-1.0);
  Quadrature q;
  q.alphas.resize(n);
  q.weights.resize(n);
  // Roots come in +-x pairs: find the (n + 1) / 2 non-negative ones.
  for (int64_t i = 0; i < (n + 1) / 2; ++i) {
    double x = std::cos(pi * (static_cast<double>(i) + 0.75) / (static_cast<double>(n) + 0.5));
    double dp = 0;  // P_n'(x)
    for (int iter = 0; iter < 100; ++iter) {
      // P_0 = 1, P_1 = x, (k + 1) P_{k+1} = (2k + 1) x P_k - k P_{k-1}.
      double p_prev = 1.0, p = x;
      for (int64_t k = 1; k < n; ++k) {
        double next = ((2.0 * k + 1.0) * x * p - k * p_prev) / (k + 1.0);
        p_prev = p;
        p = next;
      }
      dp = static_cast<double>(n) * (x * p - p_prev) / (x * x - 1.0);
      double step = p / dp;
      x -= step;
      if (std::abs(step) < 1e-16) break;
    }
    // Recompute P_n' at the converged root for the weight.
    double p_prev = 1.0, p = x;
    for (int64_t k = 1; k < n; ++k) {
      double next = ((2.0 * k + 1.0) * x * p - k * p_prev) / (k + 1.0);
      p_prev = p;
      p = next;
    }
    dp = static_cast<double>(n) * (x * p - p_prev) / (x * x - 1.0);
    double w = 2.0 / ((1.0 - x * x) * dp * dp);
    // x > 0 here (descending in i); map t = (1 + x) / 2, and the mirror (1 - x) / 2.
    q.alphas[i] = (1.0 - x) / 2.0;
    q.weights[i] = w / 2.0;
    q.alphas[n - 1 - i] = (1.0 + x) / 2.0;
    q.weights[n - 1 - i] = w / 2.0;
  }
  if (n % 2 == 1) q.alphas[n / 2] = 0.5;  // the middle root is exactly 0
  return q;
}

}  // namespace

Quadrature gauss_lobatto(int64_t n) {
  if (n < 2) {
    throw Error(ErrorCode::kInvalidArgument,
                "a Gauss-Lobatto rule needs at least 2 points, got " + std::to_string(n));
  }
  const double pi = std::acos(-1.0);
  const int64_t k = n - 1;  // interior nodes: the roots of P_k'
  // P_k(x) and P_k'(x) by the three-term recurrence.
  auto legendre = [k](double x, double* dp) {
    double p_prev = 1.0, p = x;
    for (int64_t j = 1; j < k; ++j) {
      double next = ((2.0 * j + 1.0) * x * p - j * p_prev) / (j + 1.0);
      p_prev = p;
      p = next;
    }
    if (k == 0) p = 1.0;
    *dp = k == 0 ? 0.0 : static_cast<double>(k) * (x * p - p_prev) / (x * x - 1.0);
    return p;
  };
  Quadrature q;
  q.alphas.assign(n, 0.0);
  q.weights.assign(n, 0.0);
  const double end_weight = 2.0 / (static_cast<double>(n) * static_cast<double>(k));
  q.alphas[0] = 0.0;
  q.alphas[n - 1] = 1.0;
  q.weights[0] = q.weights[n - 1] = end_weight / 2.0;
  for (int64_t i = 1; i <= (n - 2 + 1) / 2; ++i) {
    // Newton on P_k' from the Chebyshev-Gauss-Lobatto guess; P_k'' from Legendre's equation.
    double x = std::cos(pi * static_cast<double>(i) / static_cast<double>(k));
    for (int iter = 0; iter < 100; ++iter) {
      double dp = 0;
      const double p = legendre(x, &dp);
      const double d2p = (2.0 * x * dp - static_cast<double>(k * (k + 1)) * p) / (1.0 - x * x);
      const double step = dp / d2p;
      x -= step;
      if (std::abs(step) < 1e-16) break;
    }
    double dp = 0;
    const double p = legendre(x, &dp);
    const double w = end_weight / (p * p);
    q.alphas[i] = (1.0 - x) / 2.0;  // x > 0, descending in i
    q.weights[i] = w / 2.0;
    q.alphas[n - 1 - i] = (1.0 + x) / 2.0;
    q.weights[n - 1 - i] = w / 2.0;
  }
  if (n % 2 == 1) q.alphas[n / 2] = 0.5;  // exactly the centre, so a bisection reuses it
  return q;
}

Quadrature make_quadrature(const std::string& method, int64_t n) {
  if (n < 1) {
    throw Error(
        ErrorCode::kInvalidArgument,
        "option n_steps of method 'integrated_gradients' must be >= 1, got " + std::to_string(n));
  }
  if (method == "gausslegendre") return gauss_legendre(n);
  Quadrature q;
  const double dn = static_cast<double>(n);
  if (method == "riemann_left" || method == "riemann_right" || method == "riemann_middle") {
    const double shift = method == "riemann_left" ? 0.0 : method == "riemann_right" ? 1.0 : 0.5;
    for (int64_t i = 0; i < n; ++i) {
      q.alphas.push_back((static_cast<double>(i) + shift) / dn);
      q.weights.push_back(1.0 / dn);
    }
    return q;
  }
  if (method == "riemann_trapezoid") {
    if (n < 2) {
      throw Error(ErrorCode::kInvalidArgument,
                  "option n_steps of method 'integrated_gradients' must be >= 2 with "
                  "method=riemann_trapezoid, got " +
                      std::to_string(n));
    }
    for (int64_t i = 0; i < n; ++i) {
      q.alphas.push_back(static_cast<double>(i) / (dn - 1.0));
      q.weights.push_back((i == 0 || i == n - 1 ? 0.5 : 1.0) / (dn - 1.0));
    }
    return q;
  }
  throw Error(ErrorCode::kInvalidArgument,
              "option method of method 'integrated_gradients' must be gausslegendre, "
              "riemann_left, riemann_right, riemann_middle or riemann_trapezoid, got '" +
                  method + "'");
}

std::vector<double> equidistributed_edges(int64_t panels, const std::vector<double>& alphas,
                                          const std::vector<double>& values, double beta) {
  const size_t M = alphas.size();
  panels = std::max<int64_t>(1, panels);
  double variation = 0;
  for (size_t i = 0; i + 1 < M; ++i) variation += std::abs(values[i + 1] - values[i]);
  if (M < 2 || !(variation > 0) || !std::isfinite(variation)) beta = 1;
  std::vector<double> edges = {0.0};
  if (M < 2) {
    for (int64_t k = 1; k <= panels; ++k) edges.push_back(static_cast<double>(k) / panels);
    return edges;
  }
  // Cumulative density at the samples: beta (uniform) + (1 - beta) |df| / variation.
  std::vector<double> cum(M, 0.0);
  for (size_t i = 0; i + 1 < M; ++i) {
    const double v = beta < 1 ? std::abs(values[i + 1] - values[i]) / variation : 0;
    cum[i + 1] = cum[i] + beta * (alphas[i + 1] - alphas[i]) + (1 - beta) * v;
  }
  size_t i = 0;
  for (int64_t k = 1; k < panels; ++k) {
    const double target = cum[M - 1] * static_cast<double>(k) / static_cast<double>(panels);
    while (i + 2 < M && cum[i + 1] < target) ++i;
    const double span = cum[i + 1] - cum[i];
    const double t = span > 0 ? std::min(1.0, std::max(0.0, (target - cum[i]) / span)) : 0;
    edges.push_back(alphas[i] + t * (alphas[i + 1] - alphas[i]));
  }
  edges.push_back(1.0);
  return edges;
}

}  // namespace candor::explain
