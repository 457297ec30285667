// KernelSHAP: Shapley values as the Shapley-kernel weighted least-squares fit of a linear model
// to the target of coalitions (enumerated where the budget allows, sampled otherwise), with
// v(empty) as intercept and efficiency (sum = f(x) - f(baseline)) exact by a Lagrange multiplier.
#include <cmath>

#include "candor/error.h"
#include "explain/common.h"
#include "explain/sampling.h"

namespace candor::explain {
namespace {

// log of the Shapley kernel weight of one coalition of size k among n players:
// (n-1) / (C(n,k) k (n-k)).
double log_kernel(int64_t n, int64_t k) {
  return std::log(n - 1.0) - log_choose(n, k) - std::log(static_cast<double>(k) * (n - k));
}

// Advances idx (k ascending indices of [0, n)) to the next combination; false after the last.
bool next_combination(std::vector<int64_t>& idx, int64_t n) {
  const int64_t k = static_cast<int64_t>(idx.size());
  int64_t i = k - 1;
  while (i >= 0 && idx[i] == n - k + i) --i;
  if (i < 0) return false;
  ++idx[i];
  for (int64_t j = i + 1; j < k; ++j) idx[j] = idx[j - 1] + 1;
  return true;
}

// The coalitions to score, each with a design weight d: sum_z d(z) h(z) estimates (or, where
// enumerated, equals) the sum of K(z) h(z) over every coalition but the empty and the full one,
// K being the Shapley kernel of F players.
struct Design {
  std::vector<uint8_t> masks;  // [N, F], 1 keeps a feature
  std::vector<double> log_d;   // [N]
  bool complete = false;       // every coalition enumerated
  int64_t enumerated_sizes = 0;
};

// All coalitions when 2^F - 2 <= n_samples. Otherwise sizes are taken in pairs (k, F-k) from
// the outside in, and a pair is enumerated whole while the budget left, shared in proportion to
// the kernel mass (F-1)/(k(F-k)) of the sizes not yet enumerated, covers it; the rest of the
// budget samples the remaining sizes (size by kernel mass, then a uniform coalition; with
// `paired` each draw also adds its complement), each sample weighing mass_left / samples.
Design make_design(int64_t F, int64_t n_samples, bool paired, uint64_t seed) {
  Design d;
  auto add = [&](const std::vector<uint8_t>& row, double log_d) {
    d.masks.insert(d.masks.end(), row.begin(), row.end());
    d.log_d.push_back(log_d);
  };
  if (F < 2 || (F < 40 && (int64_t{1} << F) - 2 <= n_samples)) {
    d.complete = true;
    d.enumerated_sizes = std::max<int64_t>(0, F - 1);
    for (int64_t m = 1; m + 1 < (int64_t{1} << F); ++m) {
      std::vector<uint8_t> row(F);
      for (int64_t f = 0; f < F; ++f) row[f] = static_cast<uint8_t>((m >> f) & 1);
      add(row, log_kernel(F, __builtin_popcountll(static_cast<unsigned long long>(m))));
    }
    return d;
  }
  auto mass = [&](int64_t k) { return (F - 1.0) / (static_cast<double>(k) * (F - k)); };
  std::vector<bool> done(F, false);  // by size
  double mass_left = 0;
  for (int64_t k = 1; k < F; ++k) mass_left += mass(k);
  int64_t budget = n_samples;
  for (int64_t k = 1; 2 * k <= F; ++k) {
    const int64_t kk = F - k;
    const double count = std::exp(log_choose(F, k)) * (k == kk ? 1 : 2);
    const double pair_mass = mass(k) + (k == kk ? 0 : mass(kk));
    if (count > budget * pair_mass / mass_left + 1e-9) break;
    std::vector<int64_t> idx(k);
    for (int64_t i = 0; i < k; ++i) idx[i] = i;
    do {
      std::vector<uint8_t> row(F, 0);
      for (int64_t f : idx) row[f] = 1;
      add(row, log_kernel(F, k));
      if (kk != k) {
        for (uint8_t& x : row) x = 1 - x;
        add(row, log_kernel(F, kk));
      }
    } while (next_combination(idx, F));
    budget -= static_cast<int64_t>(std::llround(count));
    mass_left -= pair_mass;
    done[k] = done[kk] = true;
    d.enumerated_sizes += k == kk ? 1 : 2;
  }
  std::vector<double> cdf;
  std::vector<int64_t> sizes;
  for (int64_t k = 1; k < F; ++k) {
    if (done[k]) continue;
    sizes.push_back(k);
    cdf.push_back((cdf.empty() ? 0 : cdf.back()) + mass(k));
  }
  if (sizes.empty() || budget <= 0) {
    d.complete = sizes.empty();
    return d;
  }
  const double log_each = std::log(mass_left / budget);
  Rng rng(seed);
  for (int64_t n = 0; n < budget;) {
    const int64_t k = sizes[rng.pick(cdf)];
    std::vector<uint8_t> row(F, 0);
    for (int64_t f : rng.choose(F, k)) row[f] = 1;
    add(row, log_each);
    ++n;
    if (paired && n < budget) {
      for (uint8_t& x : row) x = 1 - x;
      add(row, log_each);
      ++n;
    }
  }
  return d;
}

class KernelShapExplainer : public Method {
 public:
  explicit KernelShapExplainer(Options o) : Method(std::move(o)) {
    n_samples_ = o_.get_int("n_samples");
    seed_ = o_.get_int("seed");
    batch_ = o_.get_int("internal_batch_size");
    paired_ = o_.get_bool("paired");
  }

  Attribution explain(const Model& model, const ExplainRequest& request,
                      const ExplainContext& context) const override {
    auto start = std::chrono::steady_clock::now();
    Problem p = prepare(model, request);
    const int64_t F = p.n_features(), S = p.n_steps();
    MaskScorer scorer(p, batch_);
    const std::vector<double> full = to_doubles(scorer.full_values());    // [S]
    const std::vector<double> empty = to_doubles(scorer.empty_values());  // [S]

    // Coalitions other than the empty and the full one (those are the constraints).
    const Design design = make_design(F, n_samples_, paired_, static_cast<uint64_t>(seed_));
    const std::vector<uint8_t>& masks = design.masks;  // [N, F]
    const int64_t N = static_cast<int64_t>(design.log_d.size());
    std::vector<double> y = score_masks(scorer, masks, F, S, &context);  // [N, S]

    double top_d = -INFINITY;  // scale of the design weights (they may be tiny for large F)
    for (double l : design.log_d) top_d = std::max(top_d, l);
    std::vector<double> scores(S * F, 0.0);  // [S, F]
    const std::vector<int64_t> visible = visible_counts(p);
    // A step sees only its first V features, so a coalition counts as its restriction to them.
    // The Shapley kernel is consistent under restriction: the kernel mass of F players on all
    // coalitions with a given restriction of size j, sum_k C(F-V, k-j) K_F(k), is proportional
    // to K_V(j). So the same coalitions and weights fit every step's game of V players.
    for (int64_t s = 0; s < S; ++s) {
      const int64_t V = visible[s];  // the step's players: features [0, V)
      const double delta = full[s] - empty[s];
      if (V == 0) continue;
      if (V == 1) {
        scores[s * F] = delta;
        continue;
      }
      // Normal equations of min sum_i w_i (y_i - v(empty) - z_i . phi)^2 over phi in R^V.
      std::vector<double> a(V * V, 0.0), rhs(V * 2, 0.0);  // rhs columns: Z^T W y', ones
      std::vector<int64_t> on;
      for (int64_t i = 0; i < N; ++i) {
        const uint8_t* z = &masks[i * F];
        on.clear();
        for (int64_t f = 0; f < V; ++f)
          if (z[f]) on.push_back(f);
        const int64_t j = static_cast<int64_t>(on.size());
        if (j == 0 || j == V) continue;  // the step sees the empty or full coalition: constraint
        const double wi = std::exp(design.log_d[i] - top_d), yi = y[i * S + s] - empty[s];
        for (int64_t f : on) {
          rhs[f * 2] += wi * yi;
          for (int64_t g : on) a[f * V + g] += wi;
        }
      }
      for (int64_t f = 0; f < V; ++f) rhs[f * 2 + 1] = 1.0;
      // phi = A^-1 c + nu A^-1 1, with nu such that sum phi = delta.
      std::vector<double> sol = solve_psd(a, rhs, V, 2);
      double sum_c = 0, sum_1 = 0;
      for (int64_t f = 0; f < V; ++f) {
        sum_c += sol[f * 2];
        sum_1 += sol[f * 2 + 1];
      }
      const double nu = (delta - sum_c) / sum_1;
      for (int64_t f = 0; f < V; ++f) scores[s * F + f] = sol[f * 2] + nu * sol[f * 2 + 1];
    }
    at::Tensor t = at::tensor(scores, at::kDouble).view({S, F});
    Attribution out = finish(p, name(), o_, t, start, static_cast<double>(scorer.positions_run()));
    out.extra["coalitions"] = N;
    out.extra["enumerated"] = design.complete;
    out.extra["enumerated_sizes"] = design.enumerated_sizes;
    return out;
  }

 private:
  int64_t n_samples_ = 512, seed_ = 0, batch_ = 32;
  bool paired_ = true;
};

}  // namespace

std::unique_ptr<Explainer> make_kernel_shap(const Options& o) {
  return std::make_unique<KernelShapExplainer>(o);
}

}  // namespace candor::explain
