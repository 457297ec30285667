// Shared machinery of the explainers: the prepared problem (sequence, features, steps,
// baseline), target values from logits, gradients of the target, and a batched scorer of
// feature masks that reuses the KV cache of the unperturbed prefix. Internal header.
#pragma once

#include <ATen/ATen.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "candor/explain.h"
#include "candor/options.h"

namespace candor::explain {

// One request, prepared once for any method.
struct Problem {
  const Model* model = nullptr;
  std::vector<TokenId> tokens;  // input + span[:-1]
  int64_t n_input = 0;
  std::vector<Feature> features;
  std::vector<int64_t> feature_of_token;  // [T]: feature index, or -1 (BOS, not a feature)
  at::Tensor token_feature;               // [T] int64 tensor of the same
  std::vector<int64_t> step_positions;    // [n_steps]
  std::vector<TokenId> step_tokens;       // [n_steps] (-1 for entropy)
  TargetFunction function = TargetFunction::kLogProb;
  TokenId contrast = -1;
  at::Tensor ids;                  // [1, T] int64
  // Layer attribution (enter_layer): the pass starts at this layer, and `embeddings` and
  // `baseline_embeddings` are the residual stream after layer start_layer - 1 of the input and
  // of the baseline input; 0: input embeddings.
  int64_t start_layer = 0;
  at::Tensor embeddings;           // [1, T, D] detached input embeddings
  at::Tensor baseline_embeddings;  // [1, T, D] each position replaced by the baseline
  at::Tensor step_positions_t;     // [n_steps] int64
  at::Tensor step_tokens_t;        // [n_steps] int64 (0 where unused)
  // [n_steps] f(x), when a pass already computed it: prepare()'s target prediction, or the
  // method's own pass at the input; undefined otherwise (finish() then runs the forward).
  at::Tensor input_values;
  // [n_steps] f(baseline input), when a pass already computed it (a batch row beside f(x)).
  at::Tensor baseline_values;
  // True while the predicted target token is still to be taken from the first gradient pass
  // (prepare(..., defer_prediction = true)); step_tokens then holds a placeholder.
  bool target_pending = false;
  // A neuron target (Target::neuron): the layer and unit; the position is step_positions[0].
  // -1: the target is an output.
  int64_t neuron_layer = -1;
  int64_t neuron_unit = -1;
  bool neuron() const { return neuron_layer >= 0; }

  int64_t length() const { return static_cast<int64_t>(tokens.size()); }
  int64_t n_steps() const { return static_cast<int64_t>(step_positions.size()); }
  int64_t n_features() const { return static_cast<int64_t>(features.size()); }

  // Target values [B, S] from logits [B, S, V] taken at the step positions; `tokens` [S] are
  // the steps' target tokens (default: all steps', S = n_steps).
  at::Tensor values_from_step_logits(const at::Tensor& logits, const at::Tensor& tokens = {}) const;
  // Differentiable forward from embeddings [B, T, D]: target values [B, n_steps].
  at::Tensor values(const at::Tensor& embeddings) const;
  // A neuron target's values [B, 1] from embeddings [B, T, D] (differentiable; libtorch path,
  // the residual stream captured).
  at::Tensor neuron_values(const at::Tensor& embeddings) const;
  // Embeddings [B, T, D] with features mixed: keep [B, n_features] in [0, 1] (1 keeps the input,
  // 0 puts the baseline). Positions outside features are kept.
  at::Tensor mix(const at::Tensor& keep) const;
  // Per-token scores [B, n_steps, T] -> per-feature scores [B, n_steps, n_features] (sums).
  at::Tensor to_features(const at::Tensor& token_scores) const;
  // 1 where feature f can affect step s (its first token precedes the step position):
  // [n_steps, n_features] float.
  at::Tensor visible() const;
};

// Moves a prepared problem to layer `layer`'s output (0-based; the residual stream after that
// layer): embeddings and baseline_embeddings become that layer's output for the input and for
// the baseline input (one no-grad pass capturing the residual stream), start_layer = layer + 1.
// Values, gradients and f(baseline) are then those of the rest of the stack; f(x) is unchanged.
void enter_layer(Problem& p, int64_t layer, const std::string& method);

// Throws Error(kUnsupported) when `p` has a neuron target: `method` scores the model's
// outputs (masks, attention, the logit lens), not a hidden unit.
void refuse_neuron_target(const Problem& p, const std::string& method);

// The per-neuron view of a layer method (extra.neurons): {"layer", "positions" T, "units" D,
// "scores": [step][position][unit]} from scores [S, T, D] of the layer's output (positions
// outside the features included; BOS's row is 0 for a causal model).
nlohmann::json neurons_json(int64_t layer, const at::Tensor& scores);

// Validates the request and prepares it: builds features, decides the target token(s),
// computes the embeddings of the input and of the baseline.
// With `defer_prediction`, a predicted target (no token given) is not computed here but taken
// from the logits of the first values_and_grads pass (one forward less).
Problem prepare(const Model& model, const ExplainRequest& request, bool defer_prediction = false);

// Values [B, n_steps] and per-step gradients w.r.t. `embeddings` ([n_steps] x [B, T, D]).
struct ValuesAndGrads {
  at::Tensor values;
  std::vector<at::Tensor> grads;
};
// Gradients flow from rows [0, grad_rows) of the batch only (-1: all rows); the other rows'
// gradients are zero and, on the fused path, cost nothing (rows whose values only are wanted).
// The model's hand-written backward runs where it has one (Model::forward_with_tape), libtorch
// autograd otherwise. A Problem whose target is pending gets it from this pass's logits.
ValuesAndGrads values_and_grads(Problem& p, const at::Tensor& embeddings, int64_t grad_rows = -1);
ValuesAndGrads values_and_grads(const Problem& p, const at::Tensor& embeddings,
                                int64_t grad_rows = -1);
// The gradient of step `step`'s values (summed over the batch) w.r.t. embeddings [B, T, D]
// (one forward, one backward); `values`, when given, receives the forward's values [B, n_steps].
at::Tensor value_grad_of_step(const Problem& p, const at::Tensor& embeddings, int64_t step,
                              at::Tensor* values = nullptr);

// Scores many binary feature masks: keep [N, n_features] (1 keep, 0 remove) -> values
// [N, n_steps]. Rows are sorted by their first removed position and run in chunks of
// `batch_size`, each chunk continuing a copy of the unperturbed sequence's KV cache up to the
// chunk's first change (causal models; a bidirectional encoder reruns whole sequences).
// Memory is bounded by `batch_size`, not N.
class MaskScorer {
 public:
  MaskScorer(const Problem& p, int64_t batch_size);
  at::Tensor score(const at::Tensor& keep, const ExplainContext* context = nullptr,
                   double progress_from = 0, double progress_to = 1);
  // Target values of the unperturbed input [n_steps] and of the all-removed input [n_steps].
  const at::Tensor& full_values() const { return full_values_; }
  at::Tensor empty_values();
  // Token positions run so far (including the initial full pass), for forward-pass counting.
  int64_t positions_run() const { return positions_run_; }

 private:
  const Problem& p_;
  int64_t batch_size_;
  bool causal_ = true;  // false: bidirectional model, no prefix reuse
  KVCache base_cache_;
  at::Tensor full_values_;
  int64_t positions_run_ = 0;
};

// Calls the progress callback; throws Error(kCancelled) when it asks to stop.
void report_progress(const ExplainContext* context, double fraction);

// Fills the fields every method shares (tokens, features, steps, f(x), f(baseline), timing).
// `scores` is [n_steps, n_features]; forward_positions counts token positions run.
Attribution finish(const Problem& p, const std::string& method, const Options& options,
                   const at::Tensor& scores, std::chrono::steady_clock::time_point start,
                   double forward_positions);

// f(x) and f(baseline input) per step (no-grad forwards; f(x) from p.input_values when set).
std::pair<at::Tensor, at::Tensor> endpoint_values(const Problem& p);

// The base of every method: its name and its options are those of the Options it is built
// from (made by the registry from the method's declarations, so already checked).
class Method : public Explainer {
 public:
  explicit Method(Options o) : o_(std::move(o)) {}
  std::string name() const override { return o_.name(); }
  std::map<std::string, std::string> options() const override { return o_.values(); }

 protected:
  Options o_;
};

// The method factories, each defined in the method's own file; methods that share a file share
// a factory and tell themselves apart by Options::name().
std::unique_ptr<Explainer> make_gradient(const Options& o);  // saliency, input_x_gradient
std::unique_ptr<Explainer> make_integrated_gradients(const Options& o);
std::unique_ptr<Explainer> make_noise(const Options& o);      // smoothgrad, vargrad
std::unique_ptr<Explainer> make_occlusion(const Options& o);  // occlusion, leave_one_out
std::unique_ptr<Explainer> make_shapley_sampling(const Options& o);
std::unique_ptr<Explainer> make_kernel_shap(const Options& o);
std::unique_ptr<Explainer> make_lime(const Options& o);
std::unique_ptr<Explainer> make_exact_shapley(const Options& o);
std::unique_ptr<Explainer> make_attention(const Options& o);
std::unique_ptr<Explainer> make_logit_lens(const Options& o);

}  // namespace candor::explain
