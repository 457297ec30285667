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

 private:
  std::shared_ptr<const MlpClassifier> mlp_;
  std::shared_ptr<const SavedStudent> student_;
  const Featurizer* featurizer_ = nullptr;
  std::vector<std::string> columns_;
  std::vector<std::string> classes_;
};

}  // namespace candor::distill
