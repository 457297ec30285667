// LIME: a local linear surrogate. Random masks (a random number of features removed), weighted
// by exp(-d^2 / width^2) with d the cosine distance to the unperturbed input, and a weighted
// ridge regression with intercept of the target on the masks; the scores are its coefficients.
#include <cmath>

#include "candor/error.h"
#include "explain/common.h"
#include "explain/sampling.h"

namespace candor::explain {
namespace {

class LimeExplainer : public Method {
 public:
  explicit LimeExplainer(Options o) : Method(std::move(o)) {
    n_samples_ = o_.get_int("n_samples");
    width_ = o_.get_double("kernel_width");  // > 0
    seed_ = o_.get_int("seed");
    alpha_ = o_.get_double("alpha");
    batch_ = o_.get_int("internal_batch_size");
  }

  Attribution explain(const Model& model, const ExplainRequest& request,
                      const ExplainContext& context) const override {
    auto start = std::chrono::steady_clock::now();
    Problem p = prepare(model, request);
    const int64_t F = p.n_features(), S = p.n_steps();
    MaskScorer scorer(p, batch_);

    // The unperturbed input first, then masks with 1..F features removed (count uniform).
    std::vector<uint8_t> masks(F, 1);
    Rng rng(static_cast<uint64_t>(seed_));
    for (int64_t n = 1; n < n_samples_; ++n) {
      std::vector<uint8_t> row(F, 1);
      for (int64_t f : rng.choose(F, 1 + rng.below(F))) row[f] = 0;
      masks.insert(masks.end(), row.begin(), row.end());
    }
    const int64_t N = n_samples_;
    std::vector<double> y = score_masks(scorer, masks, F, S, &context);  // [N, S]

    std::vector<double> scores(S * F, 0.0);  // [S, F]
    const std::vector<int64_t> visible = visible_counts(p);
    for (int64_t s = 0; s < S; ++s) {
      const int64_t V = visible[s];  // the step's features: [0, V)
      if (V == 0) continue;
      // Weights from the cosine distance between the visible mask and all-ones:
      // cos = |z| / (sqrt(|z|) sqrt(V)) = sqrt(|z| / V); an empty mask is at distance 1.
      std::vector<double> w(N);
      double wsum = 0, ybar = 0;
      std::vector<double> zbar(V, 0.0);
      for (int64_t i = 0; i < N; ++i) {
        int64_t kept = 0;
        for (int64_t f = 0; f < V; ++f) kept += masks[i * F + f];
        const double d = 1.0 - std::sqrt(static_cast<double>(kept) / V);
        w[i] = std::exp(-d * d / (width_ * width_));
        wsum += w[i];
        ybar += w[i] * y[i * S + s];
        for (int64_t f = 0; f < V; ++f) zbar[f] += w[i] * masks[i * F + f];
      }
      ybar /= wsum;
      for (double& z : zbar) z /= wsum;
      // The intercept is left out of the penalty: centre by the weighted means, then
      // (Zc^T W Zc + alpha I) c = Zc^T W yc.
      std::vector<double> a(V * V, 0.0), b(V, 0.0), zc(V);
      for (int64_t i = 0; i < N; ++i) {
        for (int64_t f = 0; f < V; ++f) zc[f] = masks[i * F + f] - zbar[f];
        const double yc = y[i * S + s] - ybar;
        for (int64_t f = 0; f < V; ++f) {
          b[f] += w[i] * zc[f] * yc;
          for (int64_t g = 0; g < V; ++g) a[f * V + g] += w[i] * zc[f] * zc[g];
        }
      }
      for (int64_t f = 0; f < V; ++f) a[f * V + f] += alpha_;
      std::vector<double> c = solve_psd(a, b, V);
      for (int64_t f = 0; f < V; ++f) scores[s * F + f] = c[f];
    }
    at::Tensor t = at::tensor(scores, at::kDouble).view({S, F});
    return finish(p, name(), o_, t, start, static_cast<double>(scorer.positions_run()));
  }

 private:
  int64_t n_samples_ = 512, seed_ = 0, batch_ = 32;
  double width_ = 0.25, alpha_ = 0.01;
};

}  // namespace

std::unique_ptr<Explainer> make_lime(const Options& o) {
  return std::make_unique<LimeExplainer>(o);
}

}  // namespace candor::explain
