// SmoothGrad and VarGrad: the mean and the variance, over seeded Gaussian noise added to the
// feature tokens' embeddings, of a per-token gradient score (saliency or input x gradient).
#include <ATen/CPUGeneratorImpl.h>

#include "candor/error.h"
#include "explain/common.h"

namespace candor::explain {
namespace {

// Definitions, for n_samples noisy inputs x_n = x + e_n (e_n = 0 on BOS and other non-feature
// positions; e_n ~ N(0, sigma^2) elementwise elsewhere):
//   sigma      = stdev * (standard deviation of all elements of the feature tokens' input
//                embeddings), so `stdev` is a fraction of the embeddings' spread, as in the
//                SmoothGrad paper's "noise level" (there relative to the input's range).
//   base score = saliency: || grad f(x_n)[t] ||_2 per token t;
//                input_x_gradient: sum_d x_n[t, d] * grad f(x_n)[t, d] (the noisy input times
//                its gradient, i.e. the base method applied to the noisy input).
//   smoothgrad = mean over samples of the base score per token;
//   vargrad    = variance over samples (divided by n_samples) of the base score per token.
// A feature of several tokens (words, sentences) gets the sum of its tokens' values.
// With stdev = 0 smoothgrad equals its base method and vargrad is 0. Each sample's noise is
// drawn in turn from one generator seeded with `seed`, so results do not depend on
// internal_batch_size.
class NoiseExplainer : public Method {
 public:
  explicit NoiseExplainer(Options o) : Method(std::move(o)) {
    n_samples_ = o_.get_int("n_samples");
    stdev_ = o_.get_double("stdev");
    base_ = o_.get("base");  // saliency or input_x_gradient
    seed_ = o_.get_int("seed");
    batch_ = o_.get_int("internal_batch_size");
  }

  Attribution explain(const Model& model, const ExplainRequest& request,
                      const ExplainContext& context) const override {
    auto start = std::chrono::steady_clock::now();
    Problem p = prepare(model, request);
    const int64_t S = p.n_steps(), T = p.length(), D = p.embeddings.size(2);
    at::Tensor feature_rows = (p.token_feature >= 0).nonzero().squeeze(1);
    at::Tensor feature_emb = p.embeddings[0].index_select(0, feature_rows);  // [n, D]
    const double spread = feature_emb.numel() > 1 ? feature_emb.std().item<double>() : 0.0;
    const double sigma = stdev_ * spread;
    at::Tensor noise_mask = (p.token_feature >= 0).to(at::kFloat).view({1, T, 1});  // [1, T, 1]
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed_));

    // Per step and token: sum of (score - first sample's score) and of its square, in double;
    // the shift keeps the variance exact when all samples agree.
    at::Tensor shift, sum = at::zeros({S, T}, at::kDouble), sum_sq = at::zeros({S, T}, at::kDouble);
    int64_t max_batch = 0;
    double positions = 0;
    for (int64_t from = 0; from < n_samples_; from += batch_) {
      const int64_t B = std::min(batch_, n_samples_ - from);
      std::vector<at::Tensor> noise;
      for (int64_t b = 0; b < B; ++b) noise.push_back(at::randn({1, T, D}, gen, at::kFloat));
      at::Tensor emb = p.embeddings + (sigma * noise_mask) * at::cat(noise, 0);  // [B, T, D]
      ValuesAndGrads vg = values_and_grads(p, emb);
      std::vector<at::Tensor> rows;
      for (const at::Tensor& g : vg.grads) {                                      // [B, T, D]
        rows.push_back(base_ == "saliency" ? g.norm(2, -1) : (g * emb).sum(-1));  // [B, T]
      }
      at::Tensor score = at::stack(rows, 1).to(at::kDouble);  // [B, S, T]
      if (!shift.defined()) shift = score[0].clone();         // [S, T]
      at::Tensor centred = score - shift;
      sum += centred.sum(0);
      sum_sq += (centred * centred).sum(0);
      positions += static_cast<double>(B * T) * (1 + 2 * S);
      max_batch = std::max(max_batch, B);
      report_progress(&context, static_cast<double>(from + B) / n_samples_);
    }
    const double n = static_cast<double>(n_samples_);
    at::Tensor mean_centred = sum / n;
    at::Tensor token_scores = name() == "smoothgrad"
                                  ? shift + mean_centred
                                  : (sum_sq / n - mean_centred * mean_centred).clamp_min(0.0);
    Attribution out = finish(p, name(), o_, p.to_features(token_scores), start, positions);
    out.extra.update(nlohmann::json{{"noise_std", sigma}, {"max_batch", max_batch}});
    return out;
  }

 private:
  int64_t n_samples_ = 0;
  double stdev_ = 0;
  std::string base_;
  int64_t seed_ = 0;
  int64_t batch_ = 0;
};

}  // namespace

std::unique_ptr<Explainer> make_noise(const Options& o) {
  return std::make_unique<NoiseExplainer>(o);
}

}  // namespace candor::explain
