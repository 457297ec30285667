// The evaluator: how true an attribution is to the model (faithfulness), how stable it is under
// small input changes (robustness), whether it depends on the model at all (sanity checks), and
// whether it can be told apart from explanations made to mislead (decoys, attacks, consensus).
//
// Every metric explains the scalar f = the sum over the attribution's steps of the target
// function (log p of the explained token by default), and reads an attribution's per-feature
// scores summed over steps (Attribution::total()). Masked inputs are scored in batches that reuse
// the KV cache of the unchanged prefix; identical masks are scored once.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "candor/explain.h"
#include "candor/model.h"

namespace candor {

// How a feature is removed from the input.
enum class Removal {
  kBaseline,  // its tokens' embeddings are replaced by the request's baseline (Default)
  kDelete,    // its tokens are deleted: the sequence gets shorter
};
Removal parse_removal(const std::string& name);  // "baseline" | "delete"
const char* removal_name(Removal r);

struct FaithfulnessOptions {
  Removal removal = Removal::kBaseline;
  // Top fractions of the features for comprehensiveness/sufficiency and their AOPC. A fraction q
  // removes (keeps) the n = clamp(ceil(q * F), 1, F) highest-scoring features.
  std::vector<double> fractions = {0.01, 0.05, 0.10, 0.20, 0.50};
  // Points of the deletion/insertion curves: k = round(i * F / (curve_points - 1)) features
  // removed (inserted), i = 0..curve_points-1; 0 or >= F + 1: every k = 0..F.
  int64_t curve_points = 0;
  int64_t infidelity_samples = 32;  // random removal masks (each feature removed with p = 0.5)
  uint64_t seed = 0;
  int64_t batch_size = 32;  // masked inputs per forward
  // Which metrics to compute (all by default).
  bool comprehensiveness = true;  // and sufficiency
  bool curves = true;             // deletion and insertion
  bool infidelity = true;
  bool loo = true;  // Kendall tau with leave-one-out
};

struct Curve {
  std::vector<double> fraction;  // features removed (deletion) or inserted (insertion) / F
  std::vector<double> value;     // f at that point
  double area = 0;               // trapezoid area of value over fraction in [0, 1]
};

struct Faithfulness {
  double full_value = 0;   // f(x)
  double empty_value = 0;  // f with every feature removed
  std::vector<double> fractions;
  std::vector<int64_t> counts;            // features removed/kept per fraction
  std::vector<double> comprehensiveness;  // f(x) - f(x without the top n)   (higher: better)
  std::vector<double> sufficiency;        // f(x) - f(only the top n kept)   (lower: better)
  double comprehensiveness_aopc = 0;      // mean over the fractions
  double sufficiency_aopc = 0;            // mean over the fractions
  Curve deletion;                         // most important first; lower area: better
  Curve insertion;                        // most important first; higher area: better
  double infidelity = 0;                  // mean (sum of removed scores - (f(x) - f(x')))^2
  std::vector<double> loo;                // f(x) - f(x without feature i)
  double loo_kendall = 0;                 // Kendall tau-b of the scores with `loo`
  double forward_passes = 0;              // cost in forward-pass equivalents
  int64_t masks_scored = 0;               // distinct masked inputs run
};

// Faithfulness of `attribution` (made for `request` on `model`). The target tokens are taken
// from the attribution. Throws Error(kInvalidArgument) when the attribution has no scores or
// does not match the request.
Faithfulness evaluate_faithfulness(const Model& model, const ExplainRequest& request,
                                   const Attribution& attribution,
                                   const FaithfulnessOptions& options = {});
// The same for several attributions of one request and target (e.g. real methods and decoys),
// scored from one shared bank of masks: a mask that two attributions share (the same top
// features removed) is run once and gives both exactly the same value, so equal removal sets
// compare as exact ties rather than by float noise of different batch layouts (~1e-5 on
// stories260K). forward_passes and masks_scored are those of the whole shared bank. Throws
// Error(kInvalidArgument) when the attributions explain different tokens.
std::vector<Faithfulness> evaluate_faithfulness(const Model& model, const ExplainRequest& request,
                                                const std::vector<Attribution>& attributions,
                                                const FaithfulnessOptions& options = {});
nlohmann::json faithfulness_to_json(const Faithfulness& f);

// Scores many keep-masks [N][F] (1 keep, 0 remove) of a request: f per mask. Batched, with
// prefix reuse; for tests and custom metrics.
std::vector<double> score_masks(const Model& model, const ExplainRequest& request,
                                const Attribution& attribution,
                                const std::vector<std::vector<uint8_t>>& keep, Removal removal,
                                int64_t batch_size = 32, double* forward_passes = nullptr);

// --- rank statistics --------------------------------------------------------------------------
double kendall_tau(const std::vector<double>& a, const std::vector<double>& b);  // tau-b
double spearman(const std::vector<double>& a, const std::vector<double>& b);     // average ranks
// |top-k(a) ∩ top-k(b)| / k, top by value, ties broken by position.
double topk_intersection(const std::vector<double>& a, const std::vector<double>& b, int64_t k);
// Feature indices by score, highest first (ties: earlier feature first).
std::vector<int64_t> rank_order(const std::vector<double>& scores);

// ---------------------------------------------------------------------------------------------
// Robustness
// ---------------------------------------------------------------------------------------------

enum class PerturbationSpace {
  kEmbedding,  // uniform noise in the L-inf ball of `radius` x (std of the embedding matrix)
  kToken,      // `n_substitutions` feature tokens replaced by one of their `neighbours` nearest
               // tokens (cosine) in the embedding matrix
};

struct RobustnessOptions {
  PerturbationSpace space = PerturbationSpace::kEmbedding;
  int64_t n_samples = 8;
  double radius = 0.05;
  int64_t n_substitutions = 1;
  int64_t neighbours = 5;
  int64_t top_k = 5;  // for the top-k intersection (clamped to F)
  uint64_t seed = 0;
};

struct Robustness {
  std::string space;                       // "embedding" | "token"
  double max_sensitivity = 0;              // max over samples of |phi(x') - phi(x)|_2 / |phi(x)|_2
  double avg_sensitivity = 0;              // mean of the same
  double mean_topk_intersection = 0;       // mean over samples
  double mean_spearman = 0;                // mean rank correlation phi(x) vs phi(x')
  std::vector<double> sensitivities;       // per sample
  std::vector<std::string> perturbations;  // what each sample changed
  double forward_passes = 0;               // the explainer's cost over all samples
};

Robustness evaluate_robustness(const Model& model, const ExplainRequest& request,
                               const Explainer& explainer, const Attribution& attribution,
                               const RobustnessOptions& options = {});
nlohmann::json robustness_to_json(const Robustness& r);

// The `k` nearest tokens to `token` by cosine similarity of embedding rows (itself excluded,
// special tokens BOS/EOS/UNK/PAD excluded), nearest first.
std::vector<TokenId> nearest_tokens(const Model& model, TokenId token, int64_t k);

// A model that reads `noise` [T, D] added to the embeddings of every length-T token sequence it
// embeds (and to nothing else): the embedding-space perturbation every explainer sees.
std::unique_ptr<Model> with_embedding_noise(const Model& model, at::Tensor noise);

// ---------------------------------------------------------------------------------------------
// Sanity checks
// ---------------------------------------------------------------------------------------------

struct RandomisationStep {
  std::string randomised;   // what was randomised at this step ("final_norm", "layers.4", ...)
  double spearman = 0;      // rank correlation with the original explanation
  double spearman_abs = 0;  // same on |scores|
  double topk_intersection = 0;
};

struct SanityOptions {
  bool cascading = true;  // output layer first, then each layer down to the embeddings,
                          // accumulating; false: one layer at a time (independent)
  int64_t top_k = 5;
  uint64_t seed = 0;
};

// Model-parameter randomisation test (Adebayo et al. 2018). Parameters are re-drawn (matrices
// from N(0, std of the original), 1-D norm weights from N(mean, std)) in a copy of the model
// (Model::clone): `model` is never changed, so others may use it meanwhile. Models that cannot
// be copied throw Error(kUnsupported).
std::vector<RandomisationStep> randomisation_test(const Model& model, const ExplainRequest& request,
                                                  const Explainer& explainer,
                                                  const Attribution& attribution,
                                                  const SanityOptions& options = {});

struct RandomLogit {
  TokenId random_token = -1;
  double spearman = 0;
  double topk_intersection = 0;
};
// Explains a random other token (seeded) and compares with the original explanation.
RandomLogit random_logit_test(const Model& model, const ExplainRequest& request,
                              const Explainer& explainer, const Attribution& attribution,
                              const SanityOptions& options = {});

// ---------------------------------------------------------------------------------------------
// Adversarial explanations
// ---------------------------------------------------------------------------------------------

// Word -> valence (any sign), read from ../shared/lexicons formats: VADER (token TAB mean ...),
// AFINN (word,value CSV) or Bing (word,positive|negative CSV).
struct Lexicon {
  std::map<std::string, double> valence;
};
Lexicon load_lexicon(const std::string& path);

// An attribution of `shape`'s request and features, named `name`, whose scores summed over the
// steps are `total` (all in the first step): how a decoy is made from any per-feature scores.
Attribution decoy_with_scores(const Attribution& shape, const std::string& name,
                              const std::vector<double>& total);

struct DecoyOptions {
  uint64_t seed = 0;
  const Lexicon* lexicon = nullptr;         // null: no lexicon decoy
  const Explainer* other_target = nullptr;  // null: no different-target decoy
};

// Decoy explanations with the shape of `attribution`: "random", "inverted", "first", "last",
// "other_target" (the explanation of a random other token by `other_target`; for a span target,
// of a span of the same length whose every token is a random other token), "lexicon"
// (|valence| of each feature's text).
std::vector<Attribution> make_decoys(const Model& model, const ExplainRequest& request,
                                     const Attribution& attribution, const DecoyOptions& options);

struct AttackOptions {
  PerturbationSpace space = PerturbationSpace::kToken;
  int64_t n_candidates = 8;  // candidate changes tried per round
  int64_t n_rounds = 2;      // greedy rounds (token space: one more substitution per round)
  int64_t neighbours = 5;
  double radius = 0.05;           // embedding noise radius (x std of the embedding matrix)
  double max_prob_change = 0.05;  // |p'(top) - p(top)| allowed
  int64_t top_k = 5;
  double success_below = 0.5;  // attack succeeds when the top-k intersection drops below this
  uint64_t seed = 0;
};

// A token substitution found by an attack.
struct Substitution {
  int64_t position = 0;  // token position in the input
  TokenId from = -1, to = -1;
};

struct AttackResult {
  bool success = false;
  double topk_intersection = 1;      // best (lowest) found with the output kept
  double prob_change = 0;            // |p'(top) - p(top)| of the change kept
  std::vector<std::string> changes;  // "pos 3: ' cat' -> ' dog'" or "noise |d|inf=..."
  int64_t candidates_tried = 0;
  int64_t candidates_valid = 0;  // kept the output
  // The model's output that had to be kept: its top next token after the input, and that
  // token's probability before and after the change kept (equal when nothing was kept).
  TokenId top_token = -1;
  double top_prob = 0, perturbed_prob = 0;
  // Token space: the input with the substitutions kept (the input itself when none), and the
  // substitutions in the order found. Embedding space: the input, no substitutions, and the
  // L-inf norm of the noise kept in `noise_linf` (0 when none).
  std::vector<TokenId> perturbed_ids;
  std::vector<Substitution> substitutions;
  double noise_linf = 0;
};

AttackResult attack_explainer(const Model& model, const ExplainRequest& request,
                              const Explainer& explainer, const Attribution& attribution,
                              const AttackOptions& options = {});

// Parses an attack specification of `candor evaluate --attack`: "substitution" (alias "token")
// or "noise" (alias "embedding"), optionally followed by ":key=value,..." with the keys
// n_candidates, n_rounds, top_k, success_below, max_prob_change, and neighbours (substitution) or
// radius (noise). Throws Error(kInvalidArgument) naming the bad part and listing the options.
AttackOptions parse_attack(const std::string& spec);
// The declared options of an attack in `space` (defaults: AttackOptions'), e.g. for
// options_to_json.
OptionSpecs attack_option_specs(PerturbationSpace space);
// "substitution" or "noise".
const char* attack_space_name(const AttackOptions& options);
// The settings as JSON (space and every option).
nlohmann::json attack_options_to_json(const AttackOptions& options);
// The result as JSON: success, topk_intersection, prob_change, top token and probabilities,
// changes, candidates; token space adds perturbed_ids and substitutions (with their pieces
// when `tokenizer` is given).
nlohmann::json attack_result_to_json(const AttackResult& r, const Tokenizer* tokenizer = nullptr);

// A consensus of several attributions of the same request: each normalised to unit max |score|,
// weighted by max(0, its mean Spearman correlation with the others) (equal weights when every
// weight is 0). Method "consensus"; options hold the weights.
Attribution consensus(const std::vector<Attribution>& attributions);

// How often real methods beat decoys: for each (method, decoy) pair, the fraction of examples
// where the method's value is better (higher when higher_is_better).
struct DecoyRanking {
  std::vector<std::string> methods, decoys;
  std::vector<std::vector<double>> win_rate;  // [method][decoy]
  std::vector<std::vector<double>> tie_rate;  // [method][decoy]: equal within 1e-9 (relative)
  std::vector<double> caught_rate;            // [decoy]: every method beats it
  int64_t n_examples = 0;
};
// values[example][name] for every method and decoy name.
DecoyRanking rank_against_decoys(const std::vector<std::map<std::string, double>>& values,
                                 const std::vector<std::string>& methods,
                                 const std::vector<std::string>& decoys,
                                 bool higher_is_better = true);

// ---------------------------------------------------------------------------------------------
// The quality block of `candor explain --evaluate`
// ---------------------------------------------------------------------------------------------

struct QualityOptions {
  FaithfulnessOptions faithfulness;  // curves, infidelity and LOO off by default here
  RobustnessOptions robustness;      // n_samples 4
  QualityOptions() {
    faithfulness.curves = false;
    faithfulness.infidelity = false;
    faithfulness.loo = false;
    robustness.n_samples = 4;
  }
};

// Comprehensiveness, sufficiency (per fraction and AOPC), sensitivity, and the Spearman
// agreement of each attribution with the others; stored as JSON in extra["quality"] of each.
void attach_quality(const Model& model, const ExplainRequest& request,
                    const std::vector<const Explainer*>& explainers,
                    std::vector<Attribution>& attributions, const QualityOptions& options = {});

// ---------------------------------------------------------------------------------------------
// The benchmark table of `candor evaluate`
// ---------------------------------------------------------------------------------------------

// Metric names of `candor evaluate --metric`, in table order. "faithfulness" stands for the
// first six.
const std::vector<std::string>& benchmark_metric_names();
// Expands and checks --metric values; throws Error(kInvalidArgument) listing the names.
std::vector<std::string> parse_benchmark_metrics(const std::vector<std::string>& given);
// Whether a higher value of the metric means a better explanation.
bool metric_higher_is_better(const std::string& metric);

// Per-example result of one method: metric -> value, and the deletion/insertion curves
// resampled to fractions 0, 0.05, ..., 1 (empty when not computed).
struct MethodRecord {
  std::map<std::string, double> metrics;
  std::vector<double> deletion_curve, insertion_curve;
  nlohmann::json attack;  // attack_result_to_json of an attack on this method (null: none)
};
// Evaluates one attribution for the benchmark (metrics as parsed by parse_benchmark_metrics).
MethodRecord benchmark_record(const Model& model, const ExplainRequest& request,
                              const Explainer& explainer, const Attribution& attribution,
                              const std::vector<std::string>& metrics,
                              const FaithfulnessOptions& faithfulness,
                              const RobustnessOptions& robustness);
// The faithfulness metrics among `metrics` for several attributions of one request and target
// (the methods and the decoys of an example), scored from one shared mask bank so that equal
// removal sets give equal values (see evaluate_faithfulness above).
std::vector<MethodRecord> benchmark_faithfulness_records(
    const Model& model, const ExplainRequest& request, const std::vector<Attribution>& attributions,
    const std::vector<std::string>& metrics, const FaithfulnessOptions& faithfulness);
nlohmann::json method_record_to_json(const MethodRecord& r);
MethodRecord method_record_from_json(const nlohmann::json& j);

// The methods x metrics table: mean and percentile-bootstrap 95% interval per cell (seeded),
// mean curves per method. records[example][method].
nlohmann::json summarize_benchmark(const std::vector<std::map<std::string, MethodRecord>>& records,
                                   const std::vector<std::string>& methods,
                                   const std::vector<std::string>& metrics, int64_t n_bootstrap,
                                   uint64_t seed);
// The attack block of the table (summary["attacks"]): the options, and per method the success
// rate, mean top-k intersection and mean |Δp(top)| over the examples whose record holds an
// attack, with each example's result (lines[i]: the data line of records[i]).
nlohmann::json summarize_attacks(const std::vector<std::map<std::string, MethodRecord>>& records,
                                 const std::vector<std::string>& methods,
                                 const std::vector<int64_t>& lines, const AttackOptions& options);
// The summary as a Markdown table and as a self-contained HTML page (curves as inline SVG); an
// "attacks" block adds its table and the changes found per example.
std::string render_benchmark_markdown(const nlohmann::json& summary);
std::string render_benchmark_html(const nlohmann::json& summary);

}  // namespace candor
