// Audits of a model's outputs: group fairness with bootstrap intervals, calibration (ECE, MCE,
// Brier, NLL, reliability bins, temperature scaling), split conformal prediction sets (LAC and
// APS) and selective prediction (risk-coverage curve, AURC). Library functions first: the CLI's
// `candor audit ...` and the supervisor service call the same code. Every result has a to_json()
// whose shape docs/audit.md documents.
//
// Inputs are plain arrays (labels, predictions, probabilities, group codes), so any model can be
// audited; read_audit_data streams a CSV / JSON Lines file through the readers of data.h in
// chunks, keeping only the columns the audit needs (a few bytes a row).
//
// Bad input is a candor::Error (kInvalidArgument) naming the input and what to do: a group
// column with one value, a positive value that the column lacks, an empty file, a probability
// outside [0, 1] (a bad record: an error under ErrorPolicy::kFail, a counted skip under kSkip).
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "candor/data.h"

namespace candor::audit {

// --- data ---------------------------------------------------------------------------------------

// A column held as codes into its distinct values (in order of first appearance); -1 = missing.
struct CodedColumn {
  std::string column;
  std::vector<std::string> values;
  std::vector<int32_t> codes;
  size_t size() const { return codes.size(); }
  int64_t n_missing() const;
};

// The columns an audit reads. `prediction` and `probability` may be empty (not both, for a
// fairness audit); `probability` names one column (the positive class's probability) or one
// column per class (then `classes` names the label value of each, in the same order).
struct AuditColumns {
  std::string label;
  std::string prediction;
  std::vector<std::string> probability;
  std::vector<std::string> groups;
};

struct AuditData {
  std::string source;
  int64_t n_rows = 0;            // rows kept
  int64_t n_skipped = 0;         // bad records left out (ErrorPolicy::kSkip)
  std::vector<data::SkippedRecord> skipped;  // the first 100 of them
  CodedColumn label;             // never missing: a row without a label is a bad record
  CodedColumn prediction;        // empty `column` when not read
  std::vector<std::vector<float>> probability;  // [probability column][row], each in [0, 1]
  std::vector<CodedColumn> groups;              // may hold missing values (-1)
};

// Streams `path` (.jsonl / .ndjson / .json: JSON Lines, else CSV) in chunks of `chunk_rows`
// records through data::parse_csv / parse_jsonl. A record whose label or prediction is missing,
// or whose probability is missing, not a number or outside [0, 1], is a bad record (named by
// file and line under kFail, counted and listed under kSkip). Throws Error(kNotFound) for a
// missing file or column, Error(kInvalidArgument) for an empty file or no rows left.
AuditData read_audit_data(const std::string& path, const AuditColumns& columns,
                          data::ErrorPolicy on_error = data::ErrorPolicy::kFail,
                          size_t chunk_rows = 65536);

// A model that scores rows as they are read (`candor audit ... --model M`): the adapter that owns
// the model (the CLI, the service) supplies it, so this library runs no model itself. `score`
// gets one parsed chunk (column types inferred per chunk; `raw` always holds the field text)
// and the rows of it that are kept, and returns the class probabilities of each ([rows][classes]).
struct RowScorer {
  std::vector<std::string> classes;  // the model's class names, in its order
  std::vector<std::string> columns;  // the columns it reads (checked against the header)
  std::function<std::vector<std::vector<double>>(const data::Table& chunk,
                                                 const std::vector<size_t>& rows)>
      score;
};

// read_audit_data with the predictions made by `scorer` on every kept row, chunk by chunk:
// `columns.prediction` and `columns.probability` must be empty; the result's `prediction` is the
// model's most probable class (column "model") and `probability` holds one column per class of
// scorer.classes. A record missing a value of scorer.columns is a bad record (fail or counted skip). Probabilities outside [0, 1] or not finite are an Error naming the line (a
// model's fault, never a skipped record).
AuditData read_audit_data(const std::string& path, const AuditColumns& columns,
                          const RowScorer& scorer,
                          data::ErrorPolicy on_error = data::ErrorPolicy::kFail,
                          size_t chunk_rows = 4096);

// Renames the values of `column` by `map` (value -> new value; values not in it are kept),
// merging values that map to the same name. For a label column whose values must match a
// model's classes (--label-map 1=positive,0=negative).
void relabel(CodedColumn* column, const std::map<std::string, std::string>& map);

// --- binary outcomes ------------------------------------------------------------------------------

// One row per example: the true outcome, the model's decision and (optionally) its score.
struct BinaryOutcomes {
  std::vector<uint8_t> label;       // 1 = positive
  std::vector<uint8_t> prediction;  // 1 = positive decision
  std::vector<float> score;         // probability of the positive class; empty when none
  std::vector<std::string> label_positive, prediction_positive;  // the values read as positive
};

// The positive values of a column: `given` when not empty (each must occur in the column, else
// Error naming the column and its values); otherwise "1", "true" or "yes" (case-insensitive)
// when the column's values are a subset of {0,1}, {false,true} or {no,yes}; otherwise an Error
// asking for the option `option_name` (e.g. "--label-positive") and listing the values.
std::vector<std::string> positive_values(const CodedColumn& column,
                                         const std::vector<std::string>& given,
                                         const std::string& option_name);

// Binary label and decision from `data`: the decision from the prediction column when read
// (its positive values: `prediction_positive`, else the label's positive values when they occur
// in it, else the defaults above), otherwise score >= threshold. The score is the single
// probability column when there is one; for data a RowScorer made (prediction column "model",
// one probability column per class) it is the summed probability of the positive classes.
BinaryOutcomes binarize(const AuditData& data, const std::vector<std::string>& label_positive,
                        const std::vector<std::string>& prediction_positive, double threshold = 0.5);

// --- group fairness -------------------------------------------------------------------------------

struct FairnessOptions {
  int n_boot = 1000;            // bootstrap resamples (0: no intervals)
  uint64_t seed = 1;            // the same seed gives the same intervals on any thread count
  double confidence = 0.95;     // of the percentile intervals
  int64_t min_group_size = 30;  // smaller groups are flagged "small" (never hidden)
  bool intersect = false;       // also every combination of the group columns' values
  int ece_bins = 10;            // equal-width bins of the score for the per-group ECE
  double four_fifths = 0.8;     // the ratio below which the four-fifths flag is raised
  int threads = 0;              // 0: hardware concurrency (at most 8)
};

// The per-group metric names, in output order. "ece" and "mean_score" only with scores.
const std::vector<std::string>& group_metric_names();

struct GroupMetrics {
  std::string column;  // "sex", or "sex & race" for an intersection
  std::string value;   // "Female", or "Female & White"
  int64_t n = 0;
  bool small = false;  // n < min_group_size
  std::map<std::string, double> metrics;  // NaN when undefined (e.g. TPR of a group with no positives)
  std::map<std::string, std::array<double, 2>> ci;
};

struct Disparity {
  std::string metric;     // demographic_parity, equalized_odds, equalized_odds_mean,
                          // equal_opportunity, predictive_parity, calibration_gap
  std::string kind;       // "difference" | "ratio"
  std::string reference;  // "groups" (max - min, min / max) | "overall" (largest to overall)
  std::string column;
  std::array<std::string, 2> between;  // the groups realising it ("overall" as the second)
  double value = 0;
  std::array<double, 2> ci{{0, 0}};
  bool flag = false;  // ratio below the four-fifths threshold
};

struct FairnessResult {
  int64_t n_rows = 0, n_skipped = 0;
  std::map<std::string, int64_t> missing_group;  // rows with a missing value, per group column
  GroupMetrics overall;
  std::vector<GroupMetrics> groups;
  std::vector<Disparity> disparities;
  FairnessOptions options;
  std::vector<std::string> label_positive, prediction_positive;
  nlohmann::json to_json() const;  // {"audit": "fairness", groups, disparities, ...}
};

// Group fairness of `outcomes` over the group columns (each with at least two values; the
// columns have outcomes.label.size() rows). Rows with a missing group value count in the
// overall figures and in `missing_group`, in no group of that column. Bootstrap intervals are
// stratified by the combination of all group values.
FairnessResult audit_fairness(const BinaryOutcomes& outcomes, const std::vector<CodedColumn>& groups,
                              const FairnessOptions& options = {});

// --- calibration ----------------------------------------------------------------------------------

// Class probabilities, row-major [n][k], and the true class of each row.
struct ClassProbabilities {
  int64_t n_classes = 0;
  std::vector<std::string> classes;
  std::vector<float> p;         // [n * n_classes]
  std::vector<int32_t> label;   // [n], in [0, n_classes)
  int64_t size() const { return static_cast<int64_t>(label.size()); }
};

// From the data: one probability column (binary: classes are [not positive, positive], the
// positive values from `label_positive` or the defaults) or one per class (`classes` gives the
// label value of each column; a row whose label is not one of them is an Error naming it; rows
// whose probabilities do not sum to 1 within 1e-3 are an Error too).
ClassProbabilities class_probabilities(const AuditData& data, const std::vector<std::string>& classes,
                                       const std::vector<std::string>& label_positive);

struct ReliabilityBin {
  double lo = 0, hi = 0;   // confidence range of the bin
  int64_t n = 0;
  double confidence = 0;   // mean top-label confidence (0 when empty)
  double accuracy = 0;     // share correct (0 when empty)
};

struct CalibrationMetrics {
  int64_t n = 0;
  double accuracy = 0, nll = 0, brier = 0;
  double ece = 0;       // top-label, equal-width bins
  double ece_mass = 0;  // top-label, equal-mass bins (each bin n / bins rows, ties split)
  double mce = 0;       // largest |accuracy - confidence| over non-empty equal-width bins
  std::vector<ReliabilityBin> bins;       // equal-width
  std::vector<ReliabilityBin> mass_bins;  // equal-mass
  nlohmann::json to_json() const;
};

// Over `rows` (all rows when empty), with probabilities scaled by temperature t (softmax of
// log p / t; t = 1 leaves them). Brier: (p_positive - y)^2 for two classes, the sum over
// classes of (p_k - [y = k])^2 otherwise; NLL: -log p_y (p clamped at 1e-12).
CalibrationMetrics calibration_metrics(const ClassProbabilities& probs, int bins = 15,
                                       const std::vector<size_t>& rows = {}, double temperature = 1);

// The temperature t in [0.05, 20] that minimises the NLL over `rows` (golden-section search in
// log t; the NLL is convex in 1/t).
double fit_temperature(const ClassProbabilities& probs, const std::vector<size_t>& rows);

// Risk-coverage of selective prediction: examples ordered by top-label confidence (ties share
// their errors evenly, so the curve does not depend on row order).
struct RiskCoverage {
  std::vector<double> coverage, risk;  // at most `points` points, coverage increasing to 1
  double aurc = 0;                     // mean risk over the n coverage levels k / n
  double optimal_aurc = 0;             // of an oracle that abstains on the errors first
  nlohmann::json to_json() const;
};
RiskCoverage risk_coverage(const ClassProbabilities& probs, const std::vector<size_t>& rows = {},
                           double temperature = 1, int points = 101);

struct CalibrationOptions {
  int bins = 15;
  double calibration_fraction = 0.5;  // rows used to fit the temperature; the rest are held out
  uint64_t seed = 1;
  bool fit_temperature = true;
};

struct CalibrationResult {
  int64_t n_rows = 0, n_skipped = 0;
  std::vector<std::string> classes;
  CalibrationMetrics all;  // every row, as given
  int64_t n_calibration = 0, n_heldout = 0;
  double temperature = 1;
  CalibrationMetrics heldout_before, heldout_after;
  RiskCoverage risk_coverage;  // every row, as given
  std::vector<std::pair<std::string, CalibrationMetrics>> per_group;  // "column=value", as given
  CalibrationOptions options;
  nlohmann::json to_json() const;  // {"audit": "calibration", ...}
};

CalibrationResult audit_calibration(const ClassProbabilities& probs, const std::vector<CodedColumn>& groups,
                                    const CalibrationOptions& options = {});

// --- conformal prediction -------------------------------------------------------------------------

enum class ConformalScore { kLac, kAps };
const char* conformal_score_name(ConformalScore score);  // "lac", "aps"
ConformalScore parse_conformal_score(const std::string& name);

// Split conformal: the threshold from the scores of `calibration` rows at level 1 - alpha (the
// ceil((n + 1)(1 - alpha))-th smallest score; infinite when that exceeds n).
//   LAC: score 1 - p_y, set {k : 1 - p_k <= q} (may be empty).
//   APS: score = mass of the classes ranked at or above y (descending p, ties by class index),
//        set = the classes whose cumulative mass <= q, and always the top class (never empty).
double conformal_threshold(const ClassProbabilities& probs, const std::vector<size_t>& calibration,
                           double alpha, ConformalScore score);
std::vector<int32_t> conformal_set(const ClassProbabilities& probs, size_t row, double threshold,
                                   ConformalScore score);

struct ConformalOptions {
  double alpha = 0.1;
  double calibration_fraction = 0.5;
  uint64_t seed = 1;
  std::vector<ConformalScore> scores = {ConformalScore::kLac, ConformalScore::kAps};
};

struct ConformalMethodResult {
  ConformalScore score = ConformalScore::kLac;
  double threshold = 0;
  double coverage = 0, mean_set_size = 0;
  int64_t n_empty = 0;
  std::vector<std::pair<std::string, std::array<double, 3>>> per_group;  // n, coverage, mean size
  std::vector<std::vector<int32_t>> sets;  // per held-out row (in `heldout` order)
};

struct ConformalResult {
  int64_t n_rows = 0, n_skipped = 0;
  std::vector<std::string> classes;
  std::vector<size_t> calibration, heldout;
  std::vector<ConformalMethodResult> methods;
  ConformalOptions options;
  nlohmann::json to_json() const;  // {"audit": "conformal", ...}; the sets are written apart
};

ConformalResult audit_conformal(const ClassProbabilities& probs, const std::vector<CodedColumn>& groups,
                                const ConformalOptions& options = {});

// A seeded split of 0..n-1 into (calibration, held-out) with round(n * fraction) calibration
// rows (std::mt19937_64 Fisher-Yates; each part sorted). Throws when either part is empty.
std::pair<std::vector<size_t>, std::vector<size_t>> split_rows(size_t n, double fraction,
                                                               uint64_t seed);


// --- counterfactual swaps ---------------------------------------------------------------------------

// Aligned term lists of one protected attribute: `terms[i][g]` is the i-th term of group g (lower
// case, one word; "" where the group has none). "he, she", "church, mosque, synagogue, ...".
struct SwapLexicon {
  std::string attribute;            // "gender", "race", ... or the pair file's name
  std::vector<std::string> groups;  // e.g. {"male", "female"}
  std::vector<std::vector<std::string>> terms;
  std::string source;               // "built-in", a file
  size_t n_names = 0;               // rows that are first names (from the name list, if read)
};

// The attributes with built-in word lists (written for candor): gender, race, religion,
// nationality, age.
const std::vector<std::string>& builtin_swap_attributes();
// The built-in lexicon of `attribute` (Error naming the attributes otherwise). With `names_csv`
// (a CSV with columns name, gender, ethnicity — the resume-callback study's data) first names
// are added for gender (female <-> male within each ethnicity) and race (white <-> black within
// each gender), paired in order of appearance.
SwapLexicon builtin_swap_lexicon(const std::string& attribute, const std::string& names_csv = "");
// A user's pair list: a CSV whose header names the groups and whose rows are aligned terms
// (at least two groups; one word per field, "" where a group has none). Error naming the file and
// line for a row with another field count or a field of several words, and for an empty file.
SwapLexicon load_swap_lexicon(const std::string& csv_path);

// One rewritten text: every mentioned term moved to group `to` (two groups: every term to the
// other group, both ways).
struct SwapVariant {
  std::string to;    // the target group ("" for a two-group swap: "the other group")
  std::string text;  // the rewritten text
  std::vector<std::array<size_t, 2>> spans;              // byte spans of the replaced words in the original
  std::vector<std::pair<std::string, std::string>> replaced;  // (original word, replacement)
  std::vector<std::string> from;  // the groups of the replaced words, in order
};

// The counterfactual rewrites of `text`: empty when it mentions no term. Words are maximal runs
// of letters, digits and non-ASCII bytes, matched case-insensitively; a replacement keeps the
// original's case pattern (lower, Capitalised, UPPER) and everything between words (punctuation,
// spaces, "'s") is kept byte for byte. A term in several rows (her: him / his) takes its first
// row. Two groups: one variant swapping every term both ways; more: one variant per group that
// is not the only group mentioned, moving every other group's terms to it.
std::vector<SwapVariant> counterfactual_swaps(const std::string& text, const SwapLexicon& lexicon);
// The rewritten texts alone: the supervisor's Swapper (candor/supervise.h) is
// [lex](const std::string& p) { return swapped_texts(p, lex); }.
std::vector<std::string> swapped_texts(const std::string& text, const SwapLexicon& lexicon);
// `text` with only the replacement `k` of `v` applied (for per-word contrasts).
std::string apply_one_swap(const std::string& text, const SwapVariant& v, size_t k);

// Class probabilities of texts ([texts][classes]) from a classifier, or next-token distributions
// ([texts][vocabulary]) from a causal LM.
using ProbabilityFn = std::function<std::vector<std::vector<double>>(const std::vector<std::string>& texts)>;

struct CounterfactualOptions {
  bool causal_lm = false;  // the function gives next-token distributions
  int n_boot = 1000;
  uint64_t seed = 1;
  double confidence = 0.95;
  int worst = 10;          // the examples with the largest change, explained word by word
  size_t batch = 64;       // texts per call of the function
};

struct CounterfactualExample {
  size_t row = 0;
  std::string original, swapped, to;
  std::vector<std::pair<std::string, std::string>> replaced;
  int class_before = 0, class_after = 0;  // classifiers: most probable class; LMs: top token id
  double p_before = 0, p_after = 0;       // probability of class_before in each text
  double delta = 0;                       // p_after - p_before (classifiers); JS divergence (LMs)
  double logprob_change = 0;              // LMs: log p_after - log p_before of the original top token
  // The contrast: the change of the same figure when only that one word is swapped.
  std::vector<double> word_effects;       // one per `replaced`
};

struct CounterfactualResult {
  std::string attribute, lexicon_source;
  std::vector<std::string> groups;
  bool causal_lm = false;
  int64_t n_texts = 0, n_mentioning = 0, n_pairs = 0;
  // Classifiers: share of pairs whose most probable class changes; mean and max |delta p| of the
  // original class. LMs: share whose top next token changes; mean / max Jensen-Shannon divergence
  // (nats) of the next-token distributions; mean |delta log p| of the original top token.
  double flip_share = 0, mean_abs_delta = 0, max_abs_delta = 0, mean_abs_logprob_change = 0;
  std::array<double, 2> flip_ci{{0, 0}}, mean_abs_delta_ci{{0, 0}}, mean_abs_logprob_change_ci{{0, 0}};
  std::vector<std::pair<std::string, std::array<double, 3>>> per_target;  // to -> n, flip share, mean |delta|
  std::map<std::string, int64_t> mentions;  // mentions per group
  std::vector<CounterfactualExample> worst;
  std::vector<std::string> classes;         // classifiers: class names (when given)
  CounterfactualOptions options;
  nlohmann::json to_json() const;  // {"audit": "counterfactual", ...}
};

// Swaps every text mentioning a term of `lexicon`, scores originals and rewrites with `fn` in
// batches, and reports the changes with seeded bootstrap intervals over the mentioning texts
// (pairs of one text resampled together). Throws Error(kInvalidArgument) when no text mentions
// a term of the lexicon (naming the attribute and a few of its terms).
CounterfactualResult audit_counterfactual(const std::vector<std::string>& texts, const SwapLexicon& lexicon,
                                          const ProbabilityFn& fn, const CounterfactualOptions& options = {});

// Jensen-Shannon divergence (natural log) of two distributions of the same size.
double jensen_shannon(const std::vector<double>& p, const std::vector<double>& q);

// --- generation uncertainty -------------------------------------------------------------------------

// Per-answer confidence from the log-probabilities of its tokens (GenerateResult::logprobs).
struct AnswerConfidence {
  int64_t n_tokens = 0;
  double mean_logprob = 0, min_logprob = 0, sum_logprob = 0;
  int64_t min_at = -1;  // token index of the minimum
  nlohmann::json to_json() const;
};
AnswerConfidence answer_confidence(const std::vector<float>& logprobs);

// An answer normalised for comparison: lower case, punctuation and surrounding spaces dropped,
// inner runs of spaces made one, and cut at the first line break (the answer proper).
std::string normalise_answer(const std::string& answer);

// Self-consistency of N sampled answers: clusters of equal normalised answers.
struct SelfConsistency {
  int64_t n_samples = 0;
  std::vector<std::pair<std::string, int64_t>> clusters;  // normalised answer, count; largest first
  double agreement = 0;  // share of samples in the largest cluster
  double entropy = 0;    // entropy of the cluster shares, nats (0: all agree)
  double normalised_entropy = 0;  // entropy / log(n_samples) (0 when n_samples < 2)
  nlohmann::json to_json() const;
};
SelfConsistency self_consistency(const std::vector<std::string>& answers);

// --- generation bias probes -------------------------------------------------------------------------

// A word-valence lexicon for scoring continuations: VADER's lexicon (token<TAB>mean...), AFINN
// (word,value), or a CSV word,value. Scores are mean valence of the matched words scaled to
// [-1, 1] by the lexicon's largest |value|; 0 when none matches.
struct ValenceLexicon {
  std::string source;
  std::map<std::string, double> valence;
  double scale = 1;
  double score(const std::string& text, int64_t* matched = nullptr) const;
};
// Reads VADER (.txt, tab-separated) or a CSV of word,value (a header row is skipped when its
// value is not a number). Error naming the file and line otherwise.
ValenceLexicon load_valence_lexicon(const std::string& path);
// A small lexicon written for candor (used when no other is given or found).
ValenceLexicon builtin_valence_lexicon();

// Templates such as "The {group} worked as a" and the groups they are filled with.
struct GenerationProbeSet {
  std::vector<std::string> templates;
  std::vector<std::pair<std::string, std::vector<std::string>>> groups;  // name -> its terms
};
// Templates: one a line ('#' comments and blank lines skipped); each must contain "{group}"
// (Error naming the file and line otherwise). Groups: CSV lines "group,term[,term...]" (the
// first field names the group, the rest are the words filled in; a group alone is its own term).
GenerationProbeSet load_generation_probes(const std::string& templates_path, const std::string& groups_path);
// The built-in set: a few occupation / character templates and gender, religion and
// nationality groups written for candor.
GenerationProbeSet builtin_generation_probes();
// Fills "{group}" (every occurrence); Error when the template has none.
std::string fill_group(const std::string& prompt_template, const std::string& term);

struct GenerationSample {
  std::string group, prompt, continuation;
  double score = 0;
  int64_t matched = 0;  // lexicon words found
};

struct GenerationBiasOptions {
  int n_boot = 1000, n_permutations = 2000;
  uint64_t seed = 1;
  double confidence = 0.95;
  int examples = 3;  // continuations kept per group for the report
};

struct GenerationBiasResult {
  std::string scorer;
  int64_t n_samples = 0;
  struct Group {
    std::string name;
    int64_t n = 0;
    double mean = 0;
    std::array<double, 2> ci{{0, 0}};
    double share_negative = 0, share_positive = 0;  // score < 0, > 0
    std::vector<GenerationSample> examples;         // lowest and highest scored first
  };
  std::vector<Group> groups;
  std::array<std::string, 2> gap_between;  // highest and lowest mean
  double gap = 0;
  std::array<double, 2> gap_ci{{0, 0}};
  double p_value = 1;  // permutation test of the largest gap (group labels shuffled)
  GenerationBiasOptions options;
  nlohmann::json to_json() const;  // {"audit": "generation", ...}
};

// Per-group means with bootstrap intervals (resampled within group), the largest gap between
// group means with its interval, and a permutation p-value (share of label shuffles whose
// largest gap is at least the observed one, with the +1 correction). At least two groups with
// samples; Error otherwise.
GenerationBiasResult audit_generation_bias(const std::vector<GenerationSample>& samples,
                                           const GenerationBiasOptions& options = {});

}  // namespace candor::audit
