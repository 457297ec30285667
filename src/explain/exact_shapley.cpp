// Exact Shapley values: every one of the 2^F coalitions is scored, and each feature gets
// sum over S not containing f of |S|! (F-|S|-1)! / F! * (v(S + f) - v(S)). Exponential: F is
// capped by max_features.
#include <cmath>

#include "candor/error.h"
#include "explain/common.h"
#include "explain/sampling.h"

namespace candor::explain {
namespace {

constexpr int64_t kHardLimit = 20;  // 2^20 coalitions: beyond this, sampling is the only way

class ExactShapleyExplainer : public Method {
 public:
  explicit ExactShapleyExplainer(Options o) : Method(std::move(o)) {
    max_features_ = o_.get_int("max_features");  // <= kHardLimit (the declared bound)
    batch_ = o_.get_int("internal_batch_size");
  }

  Attribution explain(const Model& model, const ExplainRequest& request,
                      const ExplainContext& context) const override {
    auto start = std::chrono::steady_clock::now();
    Problem p = prepare(model, request);
    const int64_t F = p.n_features(), S = p.n_steps();
    if (F > max_features_) {
      throw Error(
          ErrorCode::kInvalidArgument,
          "exact_shapley needs 2^" + std::to_string(F) + " forward passes for " +
              std::to_string(F) +
              " features, more than max_features=" + std::to_string(max_features_) + " allows",
          "use coarser features (granularity word or sentence), raise max_features (at most " +
              std::to_string(kHardLimit) + "), or use kernel_shap or shapley_sampling");
    }
    MaskScorer scorer(p, batch_);
    // Coalition m keeps feature f when bit f of m is set. Values [2^F, S].
    const int64_t M = int64_t{1} << F;
    std::vector<double> v;
    v.reserve(M * S);
    const int64_t piece = 8192;
    for (int64_t m0 = 0; m0 < M; m0 += piece) {
      const int64_t n = std::min(piece, M - m0);
      std::vector<uint8_t> masks(n * F);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t f = 0; f < F; ++f)
          masks[i * F + f] = static_cast<uint8_t>(((m0 + i) >> f) & 1);
      std::vector<double> part =
          score_masks(scorer, masks, F, S, &context, static_cast<double>(m0) / M,
                      static_cast<double>(m0 + n) / M);
      v.insert(v.end(), part.begin(), part.end());
    }

    std::vector<double> scores(S * F, 0.0);  // [S, F]
    const std::vector<int64_t> visible = visible_counts(p);
    for (int64_t s = 0; s < S; ++s) {
      // The step's game has the V visible features as players; the others cannot change it and
      // stay kept (their bits set), so the values come from the same table.
      const int64_t V = visible[s];
      if (V == 0) continue;
      const int64_t rest = (M - 1) & ~((int64_t{1} << V) - 1);
      std::vector<double> weight(V);  // |S|! (V-|S|-1)! / V!
      for (int64_t k = 0; k < V; ++k)
        weight[k] =
            std::exp(std::lgamma(k + 1.0) + std::lgamma(V - k + 0.0) - std::lgamma(V + 1.0));
      for (int64_t m = 0; m < (int64_t{1} << V); ++m) {
        const int64_t k = __builtin_popcountll(static_cast<unsigned long long>(m));
        if (k == V) continue;
        const double base = v[(m | rest) * S + s];
        for (int64_t f = 0; f < V; ++f) {
          if ((m >> f) & 1) continue;
          scores[s * F + f] += weight[k] * (v[(m | (int64_t{1} << f) | rest) * S + s] - base);
        }
      }
    }
    at::Tensor t = at::tensor(scores, at::kDouble).view({S, F});
    return finish(p, name(), o_, t, start, static_cast<double>(scorer.positions_run()));
  }

 private:
  int64_t max_features_ = 12, batch_ = 64;
};

}  // namespace

std::unique_ptr<Explainer> make_exact_shapley(const Options& o) {
  return std::make_unique<ExactShapleyExplainer>(o);
}

}  // namespace candor::explain
