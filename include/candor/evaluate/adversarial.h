// Adversarial explanations: decoys made to mislead, attacks that change an explanation while
// keeping the output, consensus of several methods, and the ranking of methods against decoys.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "candor/evaluate/robustness.h"
#include "candor/explain.h"
#include "candor/model.h"
#include "candor/options.h"

namespace candor {

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

}  // namespace candor
