// The single explicit list of attribution methods: names, descriptions, options with defaults,
// and factories. The CLI, reports and tests all go through it.
#include <functional>

#include "candor/error.h"
#include "explain/common.h"

namespace candor {
namespace {

struct Entry {
  const char* name;
  const char* description;
  std::map<std::string, std::string> defaults;
  std::function<std::unique_ptr<Explainer>(const Options&)> make;
};

const std::vector<Entry>& registry() {
  static const std::vector<Entry> entries = {
      // --- gradient methods ------------------------------------------------------------------
      {"saliency",
       "norm of the target's gradient w.r.t. each token embedding",
       {{"norm", "l2"}},
       explain::make_saliency},
      {"input_x_gradient",
       "embedding times gradient, summed over the embedding",
       {},
       explain::make_input_x_gradient},
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
       {{"n_steps", "64"},
        {"method", "gausslegendre"},
        {"rule", "adaptive"},
        {"probes", "32"},
        {"per_panel", "auto"},
        {"per_step", "true"},
        {"tol", "0"},
        {"initial", "auto"},
        {"max_steps", "n_steps"},
        {"internal_batch_size", "16"}},
       explain::make_integrated_gradients},
      {"smoothgrad",
       "mean over n_samples noisy copies of the input (noise std = stdev x the std of the "
       "feature embeddings) of the base gradient score (saliency or input_x_gradient)",
       {{"n_samples", "32"},
        {"stdev", "0.1"},
        {"base", "saliency"},
        {"seed", "0"},
        {"internal_batch_size", "16"}},
       explain::make_smoothgrad},
      {"vargrad",
       "variance over noisy copies of the input of the base gradient score per token",
       {{"n_samples", "32"},
        {"stdev", "0.1"},
        {"base", "saliency"},
        {"seed", "0"},
        {"internal_batch_size", "16"}},
       explain::make_vargrad},
      // --- internals -------------------------------------------------------------------------
      {"attention",
       "head-averaged attention from the explained position to each token (mode: last layer, "
       "mean over layers, or rollout); maps per layer in extra.attention",
       {{"mode", "last"}},
       explain::make_attention},
      {"logit_lens",
       "a view, no scores: the residual stream after each layer read through the unembedding, "
       "target probability and rank and top_k tokens per layer in extra.logit_lens",
       {{"top_k", "5"}},
       explain::make_logit_lens},
      // --- perturbation methods --------------------------------------------------------------
      {"occlusion",
       "drop in the target when a sliding window of features is removed",
       {{"window", "1"}, {"stride", "1"}, {"internal_batch_size", "32"}},
       explain::make_occlusion},
      {"leave_one_out",
       "occlusion of one feature at a time",
       {{"internal_batch_size", "32"}},
       explain::make_occlusion},
      {"shapley_sampling",
       "Shapley values estimated from marginal contributions along random feature orderings "
       "(n_permutations orderings, each also run reversed when antithetic)",
       {{"n_permutations", "25"},
        {"antithetic", "true"},
        {"seed", "0"},
        {"internal_batch_size", "32"}},
       explain::make_shapley_sampling},
      {"kernel_shap",
       "Shapley values as a Shapley-kernel weighted linear fit to n_samples coalitions "
       "(sizes enumerated while the budget covers them, the rest sampled; all when "
       "2^F - 2 <= n_samples), efficiency exact",
       {{"n_samples", "512"}, {"seed", "0"}, {"internal_batch_size", "32"}, {"paired", "true"}},
       explain::make_kernel_shap},
      {"lime",
       "coefficients of a weighted ridge regression of the target on random feature masks, "
       "weighted by closeness to the input",
       {{"n_samples", "512"},
        {"kernel_width", "0.25"},
        {"seed", "0"},
        {"alpha", "0.01"},
        {"internal_batch_size", "32"}},
       explain::make_lime},
      {"exact_shapley",
       "exact Shapley values from all 2^F coalitions (F <= max_features)",
       {{"max_features", "12"}, {"internal_batch_size", "64"}},
       explain::make_exact_shapley},
  };
  return entries;
}

std::string names() {
  std::string s;
  for (const auto& e : registry()) s += (s.empty() ? "" : ", ") + std::string(e.name);
  return s;
}

}  // namespace

std::unique_ptr<Explainer> make_explainer(const std::string& spec) {
  auto [name, given] = parse_spec(spec);
  for (const auto& e : registry()) {
    if (name == e.name) return e.make(Options(e.name, e.defaults, given));
  }
  throw Error(ErrorCode::kInvalidArgument, "unknown attribution method '" + name + "'",
              "available methods: " + names());
}

std::vector<ExplainerInfo> list_explainers() {
  std::vector<ExplainerInfo> out;
  for (const auto& e : registry()) out.push_back({e.name, e.description, e.defaults});
  return out;
}

}  // namespace candor
