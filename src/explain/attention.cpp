// Attention as attribution: the head-averaged attention from each explained position to the
// input tokens (last layer, mean over layers, or Abnar & Zuidema's attention rollout).
#include <cmath>

#include "candor/error.h"
#include "explain/common.h"

namespace candor::explain {
namespace {

// Full maps above this many values (layers x T x T) are left out of extra["attention"], so a
// long input does not produce megabytes of JSON.
constexpr int64_t kMaxMapValues = 1 << 18;

double rounded(double v) { return std::round(v * 1e6) / 1e6; }

nlohmann::json rows_json(const at::Tensor& m) {  // [R, K] double -> [[...], ...]
  at::Tensor c = m.contiguous();
  const double* d = c.data_ptr<double>();
  nlohmann::json out = nlohmann::json::array();
  for (int64_t r = 0; r < c.size(0); ++r) {
    std::vector<double> row(c.size(1));
    for (int64_t k = 0; k < c.size(1); ++k) row[k] = rounded(d[r * c.size(1) + k]);
    out.push_back(row);
  }
  return out;
}

class AttentionExplainer : public Method {
 public:
  explicit AttentionExplainer(Options o) : Method(std::move(o)) {
    mode_ = o_.get("mode");  // last, mean or rollout
  }

  Attribution explain(const Model& model, const ExplainRequest& request,
                      const ExplainContext& context) const override {
    auto start = std::chrono::steady_clock::now();
    Problem p = prepare(model, request);
    refuse_neuron_target(p, name());
    const int64_t T = p.length();
    at::Tensor maps;  // [L, T, T] head-averaged attention per layer, double
    {
      at::NoGradGuard no_grad;
      Activations acts;
      ForwardArgs a;
      a.embeddings = p.embeddings;
      a.last_only = true;
      a.capture = &acts;
      a.capture_options.attention = true;
      model.forward(a);
      std::vector<at::Tensor> layers;
      for (const at::Tensor& att : acts.attention) {  // [1, H, T, T]
        layers.push_back(att[0].to(at::kDouble).mean(0));
      }
      maps = at::stack(layers, 0);
    }
    const int64_t L = maps.size(0);
    at::Tensor combined;  // [T, T]: row q = what position q draws from each token
    if (mode_ == "last") {
      combined = maps[L - 1];
    } else if (mode_ == "mean") {
      combined = maps.mean(0);
    } else {
      // Rollout: residual connections as 0.5 A + 0.5 I, rows renormalised, multiplied from the
      // first layer up: R = A'_L ... A'_1.
      at::Tensor eye = at::eye(T, at::kDouble);
      combined = eye;
      for (int64_t l = 0; l < L; ++l) {
        at::Tensor a = 0.5 * maps[l] + 0.5 * eye;
        a = a / a.sum(-1, /*keepdim=*/true);
        combined = at::matmul(a, combined);
      }
    }
    at::Tensor step_rows = combined.index_select(0, p.step_positions_t);  // [S, T]
    report_progress(&context, 1.0);
    Attribution out =
        finish(p, name(), o_, p.to_features(step_rows), start, static_cast<double>(T));

    // extra["attention"]: the full head-averaged maps [layer][query][key] of the sequence, when
    // they are small enough; extra["attention_steps"]: always, the rows of the explained
    // positions, per layer and for `mode` (what the scores were read from).
    if (L * T * T <= kMaxMapValues) {
      nlohmann::json layers = nlohmann::json::array();
      for (int64_t l = 0; l < L; ++l) layers.push_back(rows_json(maps[l]));
      out.extra["attention"] = layers;
    }
    nlohmann::json step_layers = nlohmann::json::array();
    for (int64_t l = 0; l < L; ++l) {
      step_layers.push_back(rows_json(maps[l].index_select(0, p.step_positions_t)));
    }
    out.extra["attention_steps"] = {{"mode", mode_},
                                    {"positions", p.step_positions},
                                    {"layers", step_layers},              // [layer][step][key]
                                    {"combined", rows_json(step_rows)}};  // [step][key]
    return out;
  }

 private:
  std::string mode_;
};

}  // namespace

std::unique_ptr<Explainer> make_attention(const Options& o) {
  return std::make_unique<AttentionExplainer>(o);
}

}  // namespace candor::explain
