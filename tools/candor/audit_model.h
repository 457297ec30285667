// The model under audit (`candor audit ... --model M`): any classifier candor runs, wrapped as a
// distill::Teacher and handed to candor_audit as a RowScorer, so the audit library itself never
// runs a model.
#pragma once

#include <CLI/CLI.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "candor/audit.h"
#include "candor/classifier.h"
#include "candor/distill.h"
#include "candor/model.h"

namespace candor::cli {

struct AuditModelArgs {
  std::string model, tokenizer, text_column = "text", prompt, verbalisers = " yes, no";
  std::vector<std::string> model_classes;
  std::vector<std::string> label_map;  // "VALUE=CLASS" entries
  bool normalise = false;
  int threads = 0;
};

// Adds --model, --tokenizer, --text-column, --prompt, --verbalisers, --model-classes, --normalise
// and --label-map to an audit subcommand.
void add_audit_model_options(CLI::App& app, AuditModelArgs* a);

struct AuditModel {
  std::string path, kind;  // kind: "fasttext", "text-classifier", "mlp", "lm-verbaliser"
  std::unique_ptr<distill::Teacher> teacher;
  std::shared_ptr<const TextClassifier> classifier;  // text classifiers (not the MLP, not the LM)
  std::shared_ptr<const Model> model;                // the loaded model (classifier or causal LM)
  std::vector<std::string> columns;                  // the data columns it reads
  bool normalise = false;
};

// Loads the model: a fastText .ftz/.bin, a sequence-classifier folder (BERT family, the built-in
// models/builtin/sentiment, a transformer student), an MLP `candor train` saved, or a causal LM
// read as a classifier through --prompt and --verbalisers. Usage errors name what is missing.
AuditModel load_audit_model(const AuditModelArgs& a);
// The model as the audit library's row scorer.
audit::RowScorer audit_row_scorer(const AuditModel& m);
// --label-map entries as a map, checked: every target must be one of `classes`.
std::map<std::string, std::string> parse_label_map(const std::vector<std::string>& entries,
                                                   const std::vector<std::string>& classes);
// Relabels `label` with the map and checks that its values are the model's classes; otherwise a
// usage error listing both and suggesting --label-map.
void match_labels_to_classes(audit::CodedColumn* label, const std::map<std::string, std::string>& map,
                             const std::vector<std::string>& classes);

}  // namespace candor::cli

namespace candor::cli {

// `candor audit counterfactual`: protected-attribute swaps over a text column, scored by --model.
struct CounterfactualArgs {
  std::string data, attribute, names, out, on_error = "fail";
  AuditModelArgs model;
  int n_boot = 1000, worst = 10;
  uint64_t seed = 1;
  double confidence = 0.95;
  int64_t limit = 0;  // 0: every row
};
void add_counterfactual_options(CLI::App& app, CounterfactualArgs* a);
int run_counterfactual(const CounterfactualArgs& a);

}  // namespace candor::cli

namespace candor::cli {

// `candor audit generation`: templates filled per group, N seeded samples each, every
// continuation scored with a valence lexicon or a classifier.
struct GenerationProbeArgs {
  std::string model, tokenizer, templates, groups, lexicon, scorer, scorer_positive, out;
  int samples = 20, n_boot = 1000, n_permutations = 2000, examples = 3;
  int64_t max_new_tokens = 16;
  float temperature = 0.8f, top_p = 0.95f;
  uint64_t seed = 1;
  int threads = 0;
};
void add_generation_probe_options(CLI::App& app, GenerationProbeArgs* a);
int run_generation_probes(const GenerationProbeArgs& a);

}  // namespace candor::cli
