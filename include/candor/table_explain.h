// Explaining a model over table rows per input column: the MLP that `candor train` fits
// (MlpClassifier) and the glass-box students that `candor distill` saves (SavedStudent). One row's
// prediction is attributed to its columns; several rows give one explanation each. Every
// explanation is an Attribution of the same shape as the text explainers' (one feature per
// column, labelled "column=value"), so the JSON, console and HTML views are the text ones.
//
// Removing a column puts its baseline in its place, fixed at training time (Feature::baseline):
// the bin of the training mean for a numeric column, the most frequent training level for a
// categorical one, the empty text (no n-gram present) for a text column. A model saved before
// baselines were kept takes them from the explained table instead (the same rules over its rows),
// and each attribution says so in its warnings.
//
// Methods (specs "name[:key=value,...]", list_table_explainers()):
//   occlusion             f(x) - f(x with the column at its baseline)
//   exact_shapley         Shapley values of the game v(S) = f(columns in S kept, the rest at
//                         their baselines), by enumerating all 2^k coalitions (k <= max_columns)
//   shapley_sampling      the same values estimated from `samples` random permutations (seeded;
//                         each permutation's increments sum exactly to f(x) - f(baseline))
//   integrated_gradients  (MLP) the path integral from the baseline's one-hot input to the row's,
//                         summed over the bins (and n-grams) of each column
//   input_x_gradient      (MLP) the gradient at the row times (one-hot input - baseline's), summed
//                         per column: the first-order estimate of what integrated_gradients gives
// The explained value (the target) is a function of the class explained (the row's predicted
// class unless one is named): logodds (default; log p - log(1 - p), which does not saturate near
// p = 1), logprob, prob, or logit (MLP only: the raw output).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "candor/data.h"
#include "candor/distill.h"
#include "candor/evaluate/benchmark.h"
#include "candor/explain.h"
#include "candor/options.h"

namespace candor::distill {

struct TableExplainOptions {
  // Method specs; empty: {"exact_shapley"} up to 12 columns, {"shapley_sampling"} above.
  std::vector<std::string> methods;
  // The class explained: a class name or index ("1", "#1"); "": each row's predicted class.
  std::string target;
  std::string target_function = "logodds";  // logodds | logprob | prob | logit
};

struct TableExplainerInfo {
  std::string name;
  std::string description;
  OptionSpecs options;
  bool needs_gradients = false;  // only the MLP (a network candor differentiates)
};
// Every method, in the order listed above.
std::vector<TableExplainerInfo> list_table_explainers();

struct RowExplanation {
  size_t row = 0;                         // index of the row in the table
  int64_t line = 0;                       // its line in the file
  std::string predicted;                  // the predicted class
  std::vector<double> probabilities;      // per class
  std::vector<Attribution> attributions;  // one per method, in order
};

class TableExplainer {
 public:
  explicit TableExplainer(std::shared_ptr<const MlpClassifier> mlp);
  explicit TableExplainer(std::shared_ptr<const SavedStudent> student);

  // The input columns, in the model's order, and the classes.
  const std::vector<std::string>& columns() const { return columns_; }
  const std::vector<std::string>& classes() const { return classes_; }
  std::string describe() const;
  const Featurizer& featurizer() const { return *featurizer_; }

  // Checks the options (methods and their options, target, target function) before any work.
  // Throws Error(kInvalidArgument) naming what is wrong and what to give instead.
  void check(const TableExplainOptions& options) const;

  // Explains rows `rows` of `table` (which must hold the input columns, typed as the model reads
  // them). Throws Error(kInvalidArgument) for a row out of range or a bad option, Error(kNotFound)
  // for a missing column, Error(kCancelled) when context.progress returns false.
  std::vector<RowExplanation> explain(const data::Table& table, const std::vector<size_t>& rows,
                                      const TableExplainOptions& options,
                                      const ExplainContext& context = {}) const;

  // The explained value (target function of class `target_class`) of row `row` of `table` with
  // the columns whose keep-mask entry is 0 at their baselines, one value per mask (entries in
  // columns() order): the game the perturbation methods play and the evaluation grades on.
  std::vector<double> coalition_values(const data::Table& table, size_t row,
                                       const std::vector<std::vector<uint8_t>>& keep,
                                       size_t target_class,
                                       const std::string& target_function) const;

 private:
  // Per feature, the bin a removed column takes (and its description per column, and whether it
  // came from `table` because the model was saved without baselines).
  std::vector<uint16_t> baseline_bins(const data::Table& table, std::vector<std::string>* texts,
                                      bool* from_table) const;

  std::shared_ptr<const MlpClassifier> mlp_;
  std::shared_ptr<const SavedStudent> student_;
  const Featurizer* featurizer_ = nullptr;
  std::vector<std::string> columns_;
  std::vector<std::string> classes_;
};

// Grading the explanations of a table model (`candor evaluate` on a table model): each row is
// explained with each method, and each explanation is scored on the model's own predictions with
// the columns removed (set to their baselines) in the order of its scores, as the text evaluator
// does with tokens (candor/evaluate/faithfulness.h): comprehensiveness f(x) - f(x without the
// top n columns) and sufficiency f(x) - f(only the top n kept), n = clamp(ceil(q * k), 1, k) for
// each fraction q, averaged over the fractions (AOPC); the deletion and insertion curves (f as the
// top columns are removed / inserted, k = 0..columns) and their trapezoid areas.
struct TableEvaluateOptions {
  TableExplainOptions explain;  // methods, class, target function
  // comprehensiveness | sufficiency | deletion | insertion, or faithfulness (all four, the
  // default). The token-level metrics (infidelity, loo_kendall, sensitivity) are refused.
  std::vector<std::string> metrics;
  std::vector<double> fractions = {0.01, 0.05, 0.10, 0.20, 0.50};
  bool decoys = false;       // also grade decoy:random (seeded) and decoy:inverted (the first
                             // method's scores negated), with the win and caught rates
  int64_t bootstrap = 1000;  // resamples of the table's intervals
  uint64_t seed = 0;         // of the intervals and the random decoy
};

struct TableEvaluation {
  std::vector<std::string> methods;  // table rows: the method specs, then the decoys
  std::vector<std::string> metrics;  // table columns
  std::vector<std::map<std::string, MethodRecord>> records;  // per explained row: name -> record
  std::vector<int64_t> lines;                                // the data line of each record
  // summarize_benchmark's table (rendered by render_benchmark_markdown / _html), with
  // "decoy_ranking" when decoys were graded and "table_model": true.
  nlohmann::json summary;
};

// Checks the options (metrics, fractions, methods, class, target function) before any work.
// Throws Error(kInvalidArgument) naming what is wrong and what to give instead.
void check_table_evaluation(const TableExplainer& explainer, const TableEvaluateOptions& options);

// Explains rows `rows` of `table` and grades every explanation. Throws Error(kInvalidArgument)
// for a metric that does not apply to columns or a bad option (before any work), Error(kCancelled)
// when context.progress returns false.
TableEvaluation evaluate_table_explanations(const TableExplainer& explainer,
                                            const data::Table& table,
                                            const std::vector<size_t>& rows,
                                            const TableEvaluateOptions& options,
                                            const ExplainContext& context = {});

}  // namespace candor::distill
