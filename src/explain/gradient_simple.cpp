// Single-gradient methods: saliency (gradient norm per token), input x gradient, and layer
// gradient x activation (a layer's output times the gradient with respect to it).
#include "explain/common.h"

#include "candor/error.h"

namespace candor::explain {
namespace {

class GradientExplainer : public Method {
 public:
  explicit GradientExplainer(Options o) : Method(std::move(o)) {
    if (name() == "saliency") {
      norm_ = o_.get("norm");  // l2, l1 or max (checked against the declaration)
    }
    if (name() == "layer_gradient_x_activation") {
      layer_ = o_.get_int("layer");
      per_neuron_ = o_.get_bool("per_neuron");
    }
  }

  Attribution explain(const Model& model, const ExplainRequest& request,
                      const ExplainContext& context) const override {
    auto start = std::chrono::steady_clock::now();
    // One pass for everything: the predicted target (when none is given) from its logits,
    // f(baseline) as a second batch row that no gradient flows from, f(x) and its gradient.
    Problem p = prepare(model, request, /*defer_prediction=*/layer_ < 0);
    // At a layer: its outputs on the input and the baseline input become the pass's inputs.
    if (layer_ >= 0) enter_layer(p, layer_, name());
    ValuesAndGrads vg =
        values_and_grads(p, at::cat({p.embeddings, p.baseline_embeddings}, 0), /*grad_rows=*/1);
    p.input_values = vg.values[0];
    p.baseline_values = vg.values[1];
    std::vector<at::Tensor> rows, units;
    for (const at::Tensor& full : vg.grads) {
      const at::Tensor g = full.narrow(0, 0, 1);  // [1, T, D]
      at::Tensor per_token;
      if (name() == "input_x_gradient" || layer_ >= 0) {
        const at::Tensor per_unit = g * p.embeddings;  // [1, T, D]
        if (per_neuron_) units.push_back(per_unit[0]);
        per_token = per_unit.sum(-1);
      } else if (norm_ == "l2") {
        per_token = g.norm(2, -1);
      } else if (norm_ == "l1") {
        per_token = g.abs().sum(-1);
      } else {
        per_token = std::get<0>(g.abs().max(-1));
      }
      rows.push_back(per_token);  // [1, T]
    }
    at::Tensor token_scores = at::stack(rows, 1);  // [1, S, T]
    report_progress(&context, 1.0);
    // One forward of two rows and one backward of one row per step (a backward costs about
    // two forwards).
    double positions = static_cast<double>(p.length()) * (2 + 2 * p.n_steps());
    if (layer_ >= 0) positions += 2 * static_cast<double>(p.length());  // enter_layer's pass
    Attribution out = finish(p, name(), o_, p.to_features(token_scores)[0], start, positions);
    if (layer_ >= 0) {
      out.extra["layer"] = layer_;
      if (per_neuron_) out.extra["neurons"] = neurons_json(layer_, at::stack(units, 0));
    }
    return out;
  }

 private:
  std::string norm_;
  int64_t layer_ = -1;
  bool per_neuron_ = false;  // also the scores per unit of the layer's output (extra.neurons)
};

}  // namespace

std::unique_ptr<Explainer> make_gradient(const Options& o) {
  return std::make_unique<GradientExplainer>(o);
}

}  // namespace candor::explain
