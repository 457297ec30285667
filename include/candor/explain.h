// Attribution of a model output (next token, a generated span, a contrast, the entropy) to the
// input's tokens, words, sentences or given spans, by any registered method.
// Methods are built from a registry string such as "integrated_gradients:n_steps=64".
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "candor/model.h"
#include "candor/options.h"

namespace candor {

// ---------------------------------------------------------------------------------------------
// What is explained
// ---------------------------------------------------------------------------------------------

// The step function: the scalar computed from the next-token distribution at one position.
enum class TargetFunction {
  kLogProb,   // log p(token)
  kProb,      // p(token)
  kLogit,     // logit(token)
  kContrast,  // log p(token) - log p(contrast_token): "token rather than contrast_token"
  kEntropy,   // entropy of the next-token distribution (token unused)
  // log p(token) - log(1 - p(token)), the log-odds: unlike prob and logprob it does not flatten
  // out when p(token) is near 1, so it is the default target of classifiers in the explain job.
  kLogOdds,
};
const char* target_function_name(TargetFunction f);  // "logprob", "prob", ...
// Parses "logprob", "prob", "logit", "contrast", "entropy", "logodds"; throws
// Error(kInvalidArgument).
TargetFunction parse_target_function(const std::string& name);

// A hidden unit as the target (Captum's NeuronGradient / NeuronIntegratedGradients): unit
// `unit` of the residual stream after layer `layer` (from 0) at token position `position`
// (negative: from the end, -1 the last position of the input). Gradient methods only
// (saliency, input_x_gradient, integrated_gradients, smoothgrad, vargrad); the others score
// the model's outputs and refuse it. Computed through libtorch autograd (the whole forward runs,
// the residual stream captured on the graph).
struct NeuronTarget {
  int64_t layer = -1;  // -1: no neuron target
  int64_t position = -1;
  int64_t unit = 0;
  bool active() const { return layer >= 0; }
};
// Parses "neuron:LAYER:POSITION:UNIT" (e.g. "neuron:2:-1:17"); throws Error(kInvalidArgument)
// naming the form for anything else. Ranges are checked against the model by the explainers.
NeuronTarget parse_neuron_target(const std::string& text);

// For a classifier model (ModelKind::kClassifier) the target is a class: `token` and
// `contrast_token` are class indices (the "class" target; -1: the predicted class), the step
// function is taken over the class distribution, and `span` must be empty.
struct Target {
  TargetFunction function = TargetFunction::kLogProb;
  TokenId token = -1;           // next token; -1: the model's top prediction for the input
  TokenId contrast_token = -1;  // required by kContrast
  // A continuation to score step by step with teacher forcing. When non-empty, step i explains
  // span[i] at the position after input + span[:i]; `token` is unused.
  std::vector<TokenId> span;
  // When active, a hidden unit is explained instead (function, token and span unused).
  NeuronTarget neuron;
};

enum class Granularity { kToken, kWord, kSentence };
Granularity parse_granularity(const std::string& name);  // "token" | "word" | "sentence"

// What a removed feature becomes.
struct Baseline {
  enum class Kind {
    kZero,   // the zero embedding
    kUnk,    // the tokenizer's unknown token (Default)
    kPad,    // the padding token (the unknown token for vocabularies without one)
    kToken,  // `token`
  };
  // Default unk: a real token keeps every RMSNorm input well away from zero. Paths from the
  // zero embedding cross RMSNorm's ill-conditioned region near 0, where integrated gradients
  // needs thousands of steps to converge on stories260K (64 steps: relative completeness error
  // 3.3 from zero vs 8e-3 from unk).
  Kind kind = Kind::kUnk;
  TokenId token = -1;
};
Baseline parse_baseline(const std::string& text);  // "zero" | "unk" | "pad" | a token id

// A feature: consecutive token positions [begin, end) that are attributed and removed together.
struct Feature {
  std::string label;
  int64_t begin = 0;
  int64_t end = 0;
};

struct ExplainRequest {
  std::vector<TokenId> input_ids;  // the input as the model reads it, BOS included
  Target target;
  Granularity granularity = Granularity::kToken;
  // User-given features (token positions); when non-empty they replace `granularity`.
  std::vector<Feature> features;
  Baseline baseline;
};

// ---------------------------------------------------------------------------------------------
// The result: same shape for every method
// ---------------------------------------------------------------------------------------------

struct Attribution {
  std::string method;                          // registry name
  std::map<std::string, std::string> options;  // every option, defaults filled in
  std::string target_function;                 // "logprob", ...
  std::vector<TokenId> tokens;                 // the sequence seen: input, then span[:-1] for spans
  std::vector<std::string> token_texts;        // decoded piece of each token
  int64_t n_input_tokens = 0;                  // tokens of the input (the rest are generated)
  std::vector<Feature> features;               // attributed features, in order
  std::vector<TokenId> step_tokens;            // the token explained at each step (-1 for entropy)
  std::vector<std::string> step_texts;
  std::vector<int64_t> step_positions;  // position whose next-token distribution is explained
  // [n_steps, n_features] row-major. A feature after a step's position cannot affect it and
  // scores 0 there. Empty for views that attribute nothing (logit_lens: see `extra`).
  std::vector<double> scores;
  std::vector<double> target_values;    // f(x) per step
  std::vector<double> baseline_values;  // f(baseline input) per step: every feature removed
  // Path methods: per step, sum of scores - (f(x) - f(baseline)); empty otherwise.
  std::vector<double> convergence_delta;
  double elapsed_ms = 0;
  // Cost in forward-pass equivalents: token positions run through the model (a backward pass
  // counted as two forwards) divided by the length of one full forward.
  double forward_passes = 0;
  // Method-specific views (attention maps, logit-lens tables), JSON.
  nlohmann::json extra;
  // What the reader should know before trusting the scores, in words: e.g. a saturated target
  // (saturation_warnings). Empty when there is nothing to say.
  std::vector<std::string> warnings;

  int64_t n_steps() const { return static_cast<int64_t>(step_tokens.size()); }
  int64_t n_features() const { return static_cast<int64_t>(features.size()); }
  double score(int64_t step, int64_t feature) const {
    return scores[step * n_features() + feature];
  }
  // Scores summed over the steps of a span: [n_features] (zeros when `scores` is empty).
  std::vector<double> total() const;
};

// ---------------------------------------------------------------------------------------------
// Explainers
// ---------------------------------------------------------------------------------------------

struct ExplainContext {
  // Called with the fraction done (0..1); return false to cancel (Error(kCancelled)).
  std::function<bool(double)> progress;
};

// Thread safety: explain() is const and may run concurrently on one explainer.
class Explainer {
 public:
  virtual ~Explainer() = default;
  virtual std::string name() const = 0;
  // Every option with its value (defaults filled in).
  virtual std::map<std::string, std::string> options() const = 0;
  // Throws Error(kInvalidArgument) for requests the model cannot take (ids out of range, too
  // long, empty input, contrast without a contrast token), Error(kCancelled) when cancelled.
  virtual Attribution explain(const Model& model, const ExplainRequest& request,
                              const ExplainContext& context = {}) const = 0;
};

struct ExplainerInfo {
  std::string name;
  std::string description;
  std::map<std::string, std::string> defaults;  // option -> default value
  OptionSpecs options;                          // the declarations, in declaration order
};

// Builds an explainer from "name" or "name:key=value,key=value". Throws Error(kInvalidArgument)
// for unknown names (listing the registered ones) or options (listing the method's options).
std::unique_ptr<Explainer> make_explainer(const std::string& spec);
// Every registered method, in registry order.
std::vector<ExplainerInfo> list_explainers();
// Every registered method as JSON, in registry order: [{"name", "description", "options":
// options_to_json(...)}] (`candor methods --json`).
nlohmann::json explainers_to_json();

// The class index of a classifier's label: its name in id2label ("POSITIVE") or an index ("1",
// "#1"). Throws Error(kInvalidArgument) listing the labels, or when `model` is no classifier.
TokenId parse_class(const Model& model, const std::string& label);

// Features of `request` for `model`'s tokenizer: the given ones, or tokens/words/sentences of
// input + span[:-1]. BOS is never a feature. Throws Error(kInvalidArgument) for bad spans.
std::vector<Feature> make_features(const Model& model, const ExplainRequest& request);

// The probability at or above which a prob or logprob target counts as saturated.
constexpr double kSaturatedProbability = 0.99;
// Warnings for a target that saturates: the explained token (class) has p >= 0.99 at some step
// and the target function is prob or logprob, which barely move there, so removing features
// changes the target by almost nothing and the scores are near zero, dominated by noise, and the
// methods may disagree in sign. Empty for every other target function (logodds, logit,
// contrast, entropy). Every explainer fills Attribution::warnings with these.
std::vector<std::string> saturation_warnings(const Attribution& attribution);

// JSON form of an attribution (schema: docs/attribution-json.md).
nlohmann::json attribution_to_json(const Attribution& a);

}  // namespace candor
