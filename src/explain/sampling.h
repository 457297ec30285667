// Small helpers of the sampling explainers (Shapley sampling, KernelSHAP, LIME, exact Shapley):
// a seeded generator whose draws are identical on every platform, and a dense symmetric
// positive-definite solver in double precision. Internal header.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "candor/error.h"
#include "explain/common.h"

namespace candor::explain {

// std::mt19937_64's sequence is fixed by the C++ standard; the conversions below are our own
// (the standard distributions differ between library implementations).
class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}

  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(gen_() >> 11) * 0x1.0p-53; }
  // Uniform integer in [0, n), n >= 1 (rejection sampling: no modulo bias).
  int64_t below(int64_t n) {
    const uint64_t un = static_cast<uint64_t>(n);
    const uint64_t limit = UINT64_MAX - UINT64_MAX % un;
    uint64_t x;
    do x = gen_();
    while (x >= limit);
    return static_cast<int64_t>(x % un);
  }
  // Fisher-Yates: a uniformly random order of v.
  template <typename T>
  void shuffle(std::vector<T>& v) {
    for (int64_t i = static_cast<int64_t>(v.size()) - 1; i > 0; --i)
      std::swap(v[i], v[below(i + 1)]);
  }
  // `k` distinct indices of [0, n), uniformly (the first k of a partial Fisher-Yates shuffle).
  std::vector<int64_t> choose(int64_t n, int64_t k) {
    std::vector<int64_t> idx(n);
    for (int64_t i = 0; i < n; ++i) idx[i] = i;
    for (int64_t i = 0; i < k; ++i) std::swap(idx[i], idx[i + below(n - i)]);
    idx.resize(k);
    return idx;
  }
  // An index drawn with probability proportional to cdf[i] - cdf[i-1] (cdf ascending, > 0).
  int64_t pick(const std::vector<double>& cdf) {
    const double u = uniform() * cdf.back();
    int64_t lo = 0, hi = static_cast<int64_t>(cdf.size()) - 1;
    while (lo < hi) {
      int64_t mid = (lo + hi) / 2;
      if (cdf[mid] > u)
        hi = mid;
      else
        lo = mid + 1;
    }
    return lo;
  }

 private:
  std::mt19937_64 gen_;
};

// log of the binomial coefficient C(n, k) (0 <= k <= n).
inline double log_choose(int64_t n, int64_t k) {
  return std::lgamma(n + 1.0) - std::lgamma(k + 1.0) - std::lgamma(n - k + 1.0);
}

// Solves A x = b for symmetric positive semi-definite A ([n, n] row-major) by Cholesky. A tiny
// ridge (1e-10 of the mean diagonal, grown until the factorisation succeeds) keeps singular
// systems solvable; it changes well-conditioned solutions only at the level of rounding.
// With several right-hand sides, `b` holds them as columns: [n, m] row-major.
inline std::vector<double> solve_psd(std::vector<double> a, std::vector<double> b, int64_t n,
                                     int64_t m = 1) {
  if (n == 0) return {};
  double trace = 0;
  for (int64_t i = 0; i < n; ++i) trace += a[i * n + i];
  double ridge = 1e-10 * (trace > 0 ? trace / n : 1.0);
  std::vector<double> l;
  for (int attempt = 0;; ++attempt) {
    l = a;
    bool ok = true;
    for (int64_t j = 0; j < n && ok; ++j) {
      double d = l[j * n + j] + ridge;
      for (int64_t k = 0; k < j; ++k) d -= l[j * n + k] * l[j * n + k];
      if (!(d > 0)) {
        ok = false;
        break;
      }
      d = std::sqrt(d);
      l[j * n + j] = d;
      for (int64_t i = j + 1; i < n; ++i) {
        double s = l[i * n + j];
        for (int64_t k = 0; k < j; ++k) s -= l[i * n + k] * l[j * n + k];
        l[i * n + j] = s / d;
      }
    }
    if (ok) break;
    if (attempt > 40) throw Error(ErrorCode::kInternal, "linear system could not be solved");
    ridge = ridge * 100 + 1e-300;
  }
  for (int64_t c = 0; c < m; ++c) {
    for (int64_t i = 0; i < n; ++i) {  // L y = b
      double s = b[i * m + c];
      for (int64_t k = 0; k < i; ++k) s -= l[i * n + k] * b[k * m + c];
      b[i * m + c] = s / l[i * n + i];
    }
    for (int64_t i = n - 1; i >= 0; --i) {  // L^T x = y
      double s = b[i * m + c];
      for (int64_t k = i + 1; k < n; ++k) s -= l[k * n + i] * b[k * m + c];
      b[i * m + c] = s / l[i * n + i];
    }
  }
  return b;
}

// Number of features visible to each step: features are in position order, so those whose
// first token precedes the step position form a prefix. [n_steps]
inline std::vector<int64_t> visible_counts(const Problem& p) {
  std::vector<int64_t> out;
  for (int64_t s = 0; s < p.n_steps(); ++s) {
    int64_t n = 0;
    while (n < p.n_features() && p.features[n].begin <= p.step_positions[s]) ++n;
    out.push_back(n);
  }
  return out;
}

// Scores binary masks `masks` ([N, F] row-major, 1 keeps a feature) with `scorer`, at most
// `piece` rows per call so the mask tensor stays small; progress runs from `from` to `to`.
// Returns the target values [N, n_steps] row-major in double precision.
inline std::vector<double> score_masks(MaskScorer& scorer, const std::vector<uint8_t>& masks,
                                       int64_t F, int64_t S, const ExplainContext* context,
                                       double from = 0, double to = 1, int64_t piece = 8192) {
  const int64_t N = F > 0 ? static_cast<int64_t>(masks.size()) / F : 0;
  std::vector<double> out(N * S);
  for (int64_t r0 = 0; r0 < N; r0 += piece) {
    const int64_t n = std::min(piece, N - r0);
    at::Tensor keep = at::empty({n, F}, at::kFloat);  // [n, F]
    float* k = keep.data_ptr<float>();
    for (int64_t i = 0; i < n * F; ++i) k[i] = masks[r0 * F + i];
    at::Tensor v =
        scorer.score(keep, context, from + (to - from) * r0 / N,
                     from + (to - from) * (r0 + n) / N)
            .to(at::kDouble)
            .contiguous();  // [n, S]
    std::copy(v.data_ptr<double>(), v.data_ptr<double>() + n * S, out.begin() + r0 * S);
  }
  if (N == 0) report_progress(context, to);
  return out;
}

// A tensor's values as a vector of doubles.
inline std::vector<double> to_doubles(const at::Tensor& t) {
  at::Tensor d = t.to(at::kDouble).contiguous();
  return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
}

}  // namespace candor::explain
