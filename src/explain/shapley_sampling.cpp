// Shapley value sampling: each feature's marginal contribution v(prefix + f) - v(prefix) along
// random orderings of the features (each optionally paired with its reverse), averaged. Along
// one ordering the contributions telescope to f(x) - f(baseline), so the scores are efficient.
#include "candor/error.h"
#include "explain/common.h"
#include "explain/sampling.h"

namespace candor::explain {
namespace {

class ShapleySamplingExplainer : public Method {
 public:
  explicit ShapleySamplingExplainer(Options o) : Method(std::move(o)) {
    n_permutations_ = o_.get_int("n_permutations");
    antithetic_ = o_.get_bool("antithetic");
    seed_ = o_.get_int("seed");
    batch_ = o_.get_int("internal_batch_size");
  }

  Attribution explain(const Model& model, const ExplainRequest& request,
                      const ExplainContext& context) const override {
    auto start = std::chrono::steady_clock::now();
    Problem p = prepare(model, request);
    const int64_t F = p.n_features(), S = p.n_steps();
    MaskScorer scorer(p, batch_);
    const std::vector<double> full = to_doubles(scorer.full_values());    // [S]
    const std::vector<double> empty = to_doubles(scorer.empty_values());  // [S]

    Rng rng(static_cast<uint64_t>(seed_));
    std::vector<std::vector<int64_t>> orders;
    for (int64_t i = 0; i < n_permutations_; ++i) {
      std::vector<int64_t> order(F);
      for (int64_t f = 0; f < F; ++f) order[f] = f;
      rng.shuffle(order);
      orders.push_back(order);
      if (antithetic_) orders.emplace_back(order.rbegin(), order.rend());
    }
    const int64_t n_chains = static_cast<int64_t>(orders.size());

    // A chain's coalitions are the prefixes of its order; the empty and full ones are known, the
    // F - 1 in between are scored. Chains go to the scorer in rounds of bounded size.
    const int64_t inner = F - 1;
    const int64_t per_round = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, inner));
    std::vector<double> sums(S * F, 0.0);  // [S, F]
    for (int64_t c0 = 0; c0 < n_chains; c0 += per_round) {
      const int64_t nc = std::min(per_round, n_chains - c0);
      std::vector<uint8_t> masks(nc * inner * F, 0);  // [nc * inner, F]
      for (int64_t c = 0; c < nc; ++c) {
        const auto& order = orders[c0 + c];
        for (int64_t i = 0; i < inner; ++i) {
          uint8_t* row = &masks[(c * inner + i) * F];
          if (i > 0) std::copy(row - F, row, row);
          row[order[i]] = 1;  // prefix of length i + 1
        }
      }
      std::vector<double> v =
          score_masks(scorer, masks, F, S, &context, static_cast<double>(c0) / n_chains,
                      static_cast<double>(c0 + nc) / n_chains);  // [nc*inner, S]
      for (int64_t c = 0; c < nc; ++c) {
        const auto& order = orders[c0 + c];
        for (int64_t s = 0; s < S; ++s) {
          double prev = empty[s];
          for (int64_t i = 0; i < F; ++i) {
            const double cur = i < inner ? v[(c * inner + i) * S + s] : full[s];
            sums[s * F + order[i]] += cur - prev;
            prev = cur;
          }
        }
      }
    }
    at::Tensor scores = at::tensor(sums, at::kDouble).view({S, F}) / static_cast<double>(n_chains);
    return finish(p, name(), o_, scores, start, static_cast<double>(scorer.positions_run()));
  }

 private:
  int64_t n_permutations_ = 25, seed_ = 0, batch_ = 32;
  bool antithetic_ = true;
};

}  // namespace

std::unique_ptr<Explainer> make_shapley_sampling(const Options& o) {
  return std::make_unique<ShapleySamplingExplainer>(o);
}

}  // namespace candor::explain
