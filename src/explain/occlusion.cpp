// Occlusion: the drop in the target when a window of consecutive features is replaced by the
// baseline; each feature gets the mean drop over the windows that cover it. window=1 is
// leave-one-out. Batched, reusing the KV cache before each window.
#include "explain/common.h"

namespace candor::explain {
namespace {

class OcclusionExplainer : public Method {
 public:
  explicit OcclusionExplainer(Options o) : Method(std::move(o)) {
    // leave_one_out is occlusion with window 1 and stride 1.
    window_ = name() == "occlusion" ? o_.get_int("window") : 1;
    stride_ = name() == "occlusion" ? o_.get_int("stride") : 1;
    batch_ = o_.get_int("internal_batch_size");
  }

  Attribution explain(const Model& model, const ExplainRequest& request,
                      const ExplainContext& context) const override {
    auto start = std::chrono::steady_clock::now();
    Problem p = prepare(model, request);
    const int64_t F = p.n_features();
    const int64_t w = std::min(window_, F);
    std::vector<int64_t> starts;
    for (int64_t s = 0; s + w <= F; s += stride_) starts.push_back(s);
    if (starts.empty() || starts.back() + w < F) starts.push_back(F - w);  // cover the tail
    at::Tensor keep = at::ones({static_cast<int64_t>(starts.size()), F}, at::kFloat);
    for (size_t i = 0; i < starts.size(); ++i) keep[i].narrow(0, starts[i], w).fill_(0.0f);
    MaskScorer scorer(p, batch_);
    at::Tensor vals = scorer.score(keep, &context);              // [W, S]
    at::Tensor drop = scorer.full_values().unsqueeze(0) - vals;  // [W, S]
    at::Tensor covered = 1.0f - keep;                            // [W, F]
    at::Tensor sums = at::matmul(drop.t(), covered);             // [S, F]
    at::Tensor counts = covered.sum(0).clamp_min(1.0f);          // [F]
    return finish(p, name(), o_, sums / counts, start, static_cast<double>(scorer.positions_run()));
  }

 private:
  int64_t window_ = 1, stride_ = 1, batch_ = 32;
};

}  // namespace

std::unique_ptr<Explainer> make_occlusion(const Options& o) {
  return std::make_unique<OcclusionExplainer>(o);
}

}  // namespace candor::explain
