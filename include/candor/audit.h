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
// probability column when there is one.
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

}  // namespace candor::audit
