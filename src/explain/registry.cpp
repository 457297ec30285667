// The single explicit list of attribution methods: names, descriptions, typed options with their
// defaults, bounds and descriptions, and factories. The CLI, reports and tests all go through it.
#include <functional>

#include "candor/error.h"
#include "explain/common.h"

namespace candor {
namespace {

using S = OptionSpec;

struct Entry {
  const char* name;
  const char* description;
  OptionSpecs options;
  std::function<std::unique_ptr<Explainer>(const Options&)> make;
};

constexpr int64_t kMaxPoints = 1 << 20;

S seed() { return S::integer("seed", 0, 0, INT64_MAX, "seed of the random generator"); }
S batch(int64_t def, int64_t max) {
  return S::integer("internal_batch_size", def, 1, max,
                    "rows (points, masks, samples) run per forward pass; bounds memory, not the "
                    "result");
}

// smoothgrad and vargrad share their options.
OptionSpecs noise_options() {
  return {S::integer("n_samples", 32, 1, kMaxPoints, "noisy copies of the input"),
          S::real("stdev", 0.1, 0.0, 1e6,
                  "noise standard deviation, in units of the std of the feature embeddings"),
          S::choice("base", "saliency", {"saliency", "input_x_gradient"},
                    "the gradient score averaged over the copies"),
          seed(), batch(16, kMaxPoints)};
}

// integrated_gradients and layer_integrated_gradients share these.
OptionSpecs ig_options() {
  return {S::integer("n_steps", 64, 1, kMaxPoints,
                     "gradient points on the path (per step of a span with per_step)"),
          S::choice("method", "gausslegendre",
                    {"gausslegendre", "riemann_left", "riemann_right", "riemann_middle",
                     "riemann_trapezoid"},
                    "the integration rule"),
          S::choice("rule", "adaptive", {"adaptive", "probed", "plain"},
                    "how gausslegendre places its points: bisected Gauss-Lobatto panels, "
                    "probe-placed Gauss-Legendre panels, or one rule"),
          S::integer("probes", 32, 0, 1 << 16,
                     "forward passes + 1 that place rule=probed's panels (0: rule=plain)"),
          S::integer("per_panel", 0, 1, 64, "points per panel (auto: 2 for adaptive, 4 for probed)")
              .or_word("auto", true),
          S::boolean("per_step", true, "a rule per step of a span, sharing one budget"),
          S::real("tol", 0, 0, 1,
                  "stop once the panels' errors sum below tol x |f(x) - f(baseline)| (0: use "
                  "n_steps points)"),
          S::real("initial", 0, 0, 1,
                  "share of n_steps in the first equal panels (auto: 0.25 adaptive, 0.75 probed)")
              .or_word("auto", true),
          S::integer("max_steps", 0, 1, kMaxPoints,
                     "most points with tol > 0 (>= n_steps; n_steps: the same)")
              .or_word("n_steps", true),
          batch(16, kMaxPoints)};
}

S layer() {
  return S::integer("layer", 0, 0, 1 << 16,
                    "the layer (from 0) whose output is attributed: the residual stream after it");
}

S per_neuron() {
  return S::boolean("per_neuron", false,
                    "also the scores per unit of the layer's output, [step][position][unit], in "
                    "extra.neurons (not summed over the width)");
}

OptionSpecs with_layer(OptionSpecs o) {
  o.insert(o.begin(), layer());
  o.insert(o.begin() + 1, per_neuron());
  return o;
}

const std::vector<Entry>& registry() {
  static const std::vector<Entry> entries = {
      // --- gradient methods ------------------------------------------------------------------
      {"saliency",
       "norm of the target's gradient w.r.t. each token embedding",
       {S::choice("norm", "l2", {"l2", "l1", "max"}, "norm of the gradient over the embedding")},
       explain::make_gradient},
      {"input_x_gradient",
       "embedding times gradient, summed over the embedding",
       {},
       explain::make_gradient},
      {"integrated_gradients",
       "gradient integrated along the straight path from the baseline to the input embeddings "
       "(method: gausslegendre or riemann_left/right/middle/trapezoid), times input - baseline; "
       "gausslegendre is composite and self-checking (a panel's integral must equal f(b) - "
       "f(a)): rule=adaptive bisects the panels of per_panel + 1 Gauss-Lobatto points that miss "
       "most, every point a gradient point (about `initial` of n_steps start as equal panels); "
       "rule=probed places panels of per_panel Gauss-Legendre points from `probes` + 1 forward "
       "passes; rule=plain (or probes=0) is one n_steps-point Gauss-Legendre rule; tol > 0: "
       "stop once the panels' errors sum below tol, max_steps: allow more points until then; "
       "per_step: a rule per step of a span",
       ig_options(),
       explain::make_integrated_gradients},
      {"layer_integrated_gradients",
       "integrated gradients at a layer's output: the gradient of the rest of the stack "
       "integrated from the layer's output on the baseline input to its output on the input, "
       "times their difference, summed over the width per position (completeness: scores sum "
       "to f(x) - f(baseline)); options as integrated_gradients",
       with_layer(ig_options()), explain::make_integrated_gradients},
      {"layer_gradient_x_activation",
       "a layer's output times the target's gradient with respect to it, summed over the width "
       "per position",
       {layer(), per_neuron()},
       explain::make_gradient},
      {"smoothgrad",
       "mean over n_samples noisy copies of the input (noise std = stdev x the std of the "
       "feature embeddings) of the base gradient score (saliency or input_x_gradient)",
       noise_options(), explain::make_noise},
      {"vargrad", "variance over noisy copies of the input of the base gradient score per token",
       noise_options(), explain::make_noise},
      // --- internals -------------------------------------------------------------------------
      {"attention",
       "head-averaged attention from the explained position to each token (mode: last layer, "
       "mean over layers, or rollout); maps per layer in extra.attention",
       {S::choice("mode", "last", {"last", "mean", "rollout"},
                  "the last layer's attention, the mean over layers, or attention rollout")},
       explain::make_attention},
      {"logit_lens",
       "a view, no scores: the residual stream after each layer read through the unembedding, "
       "target probability and rank and top_k tokens per layer in extra.logit_lens",
       {S::integer("top_k", 5, 1, kMaxPoints, "tokens listed per layer")},
       explain::make_logit_lens},
      // --- perturbation methods --------------------------------------------------------------
      {"occlusion",
       "drop in the target when a sliding window of features is removed",
       {S::integer("window", 1, 1, kMaxPoints, "features removed together"),
        S::integer("stride", 1, 1, kMaxPoints, "features between window starts"),
        batch(32, 1 << 16)},
       explain::make_occlusion},
      {"leave_one_out",
       "occlusion of one feature at a time",
       {batch(32, 1 << 16)},
       explain::make_occlusion},
      {"shapley_sampling",
       "Shapley values estimated from marginal contributions along random feature orderings "
       "(n_permutations orderings, each also run reversed when antithetic)",
       {S::integer("n_permutations", 25, 1, kMaxPoints, "random feature orderings"),
        S::boolean("antithetic", true, "also run each ordering reversed"), seed(),
        batch(32, 1 << 16)},
       explain::make_shapley_sampling},
      {"kernel_shap",
       "Shapley values as a Shapley-kernel weighted linear fit to n_samples coalitions "
       "(sizes enumerated while the budget covers them, the rest sampled; all when "
       "2^F - 2 <= n_samples), efficiency exact",
       {S::integer("n_samples", 512, 1, 1 << 24, "coalitions fitted"), seed(), batch(32, 1 << 16),
        S::boolean("paired", true, "sample each coalition with its complement")},
       explain::make_kernel_shap},
      {"lime",
       "coefficients of a weighted ridge regression of the target on random feature masks, "
       "weighted by closeness to the input",
       {S::integer("n_samples", 512, 1, 1 << 24, "random feature masks (the input is the first)"),
        S::real("kernel_width", 0.25, 0, 1e6,
                "width of the exponential kernel on the share of removed features")
            .above(),
        seed(), S::real("alpha", 0.01, 0, 1e12, "ridge penalty"), batch(32, 1 << 16)},
       explain::make_lime},
      {"exact_shapley",
       "exact Shapley values from all 2^F coalitions (F <= max_features)",
       {S::integer("max_features", 12, 1, 20, "most features (2^F coalitions are run)"),
        batch(64, 1 << 16)},
       explain::make_exact_shapley},
  };
  return entries;
}

std::vector<std::string> names() {
  std::vector<std::string> out;
  for (const auto& e : registry()) out.push_back(e.name);
  return out;
}

}  // namespace

std::unique_ptr<Explainer> make_explainer(const std::string& spec) {
  auto [name, given] = parse_spec(spec);
  for (const auto& e : registry()) {
    if (name == e.name) return e.make(Options("method", e.name, e.options, given));
  }
  std::string list;
  for (const std::string& n : names()) list += (list.empty() ? "" : ", ") + n;
  const std::string near = closest_match(name, names());
  throw Error(ErrorCode::kInvalidArgument, "unknown attribution method '" + name + "'",
              (near.empty() ? "" : "did you mean " + near + "? ") + "available methods: " + list);
}

std::vector<ExplainerInfo> list_explainers() {
  std::vector<ExplainerInfo> out;
  for (const auto& e : registry())
    out.push_back({e.name, e.description, option_defaults(e.options), e.options});
  return out;
}

nlohmann::json explainers_to_json() {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& e : registry()) {
    out.push_back({{"name", e.name},
                   {"description", e.description},
                   {"options", options_to_json(e.options)}});
  }
  return out;
}

}  // namespace candor
