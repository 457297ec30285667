// Occlusion: the drop in the target when a window of consecutive features is replaced by the
// baseline; each feature gets the mean drop over the windows that cover it. window=1 is
// leave-one-out. Batched, reusing the KV cache before each window.
#include "explain/common.h"

#include <algorithm>

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
    const int64_t W = static_cast<int64_t>(starts.size());
    // The windows' rows, then one row with every feature removed: f(baseline) for the result,
    // scored in the same batched passes (it changes the first feature, like the first window)
    // instead of a separate forward in finish(); f(x) is the scorer's own unperturbed pass.
    at::Tensor keep = at::ones({W + 1, F}, at::kFloat);
    float* kp = keep.data_ptr<float>();
    for (int64_t i = 0; i < W; ++i) std::fill_n(kp + i * F + starts[i], w, 0.0f);
    std::fill_n(kp + W * F, F, 0.0f);
    MaskScorer scorer(p, batch_);
    const at::Tensor scored = scorer.score(keep, &context);  // [W + 1, S]
    const at::Tensor vals = scored.narrow(0, 0, W);              // [W, S]
    keep = keep.narrow(0, 0, W);
    p.input_values = scorer.full_values();
    p.baseline_values = scored[W];
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
