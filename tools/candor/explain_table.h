// `candor explain` on a model over table rows (explain_table.cpp).
#pragma once

#include <string>
#include <vector>

#include "cli.h"

namespace candor::cli {

struct TableExplainArgs {
  std::string model, data, prompt, target, contrast, target_function, tokenizer;
  std::string granularity = "token", baseline = "unk", on_error = "fail";
  std::string json_path, html_path, csv_path;
  std::vector<std::string> methods, rows;
  int64_t generate = 0;
  bool chat = false, evaluate = false, consensus = false, temperature_scaling = false,
       no_progress = false;
};

// Whether `model` is the MLP of candor train or a glass-box student of candor distill.
bool is_table_model(const std::string& model);
// Explains rows of --data per input column; refuses the options of text models.
int run_explain_table(const TableExplainArgs& args);

struct TableEvaluateArgs {
  std::string model, data, out, on_error = "fail";
  std::vector<std::string> methods, metrics;
  std::vector<std::string> text_only;  // text-model options given (refused, named)
  int64_t limit = -1, bootstrap = 1000;
  uint64_t seed = 0;
  int threads = 0;
  bool decoys = false, no_progress = false;
};
// `candor evaluate` on a table model (evaluate_table.cpp); refuses the options of text models.
int run_evaluate_table(const TableEvaluateArgs& args);

}  // namespace candor::cli
