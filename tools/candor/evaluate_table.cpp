// `candor evaluate` on a model over table rows (the MLP of `candor train`, a glass-box student of
// `candor distill`): each row explained per input column with each method and graded with the
// column faithfulness metrics (candor/table_explain.h, evaluate_table_explanations); writes the
// same table.md, table.json and report.html as the text path.
#include <unistd.h>

#include <iostream>

#include "candor/files.h"
#include "candor/report.h"
#include "candor/runtime.h"
#include "candor/table_explain.h"
#include "explain_table.h"

namespace candor::cli {

int run_evaluate_table(const TableEvaluateArgs& a) {
  const std::string what = "'" + a.model + "' is a model over table rows";
  for (const std::string& name : a.text_only)
    throw usage_error(name + ": " + what +
                          " (graded per column; a removed column takes its training mean or most "
                          "frequent level, and the curves have a point per column count)",
                      "leave " + name +
                          " out; see docs/distillation.md, \"Explaining a table "
                          "model\"");
  std::unique_ptr<distill::TableExplainer> ex;
  if (distill::SavedStudent::is_saved(a.model))
    ex = std::make_unique<distill::TableExplainer>(
        std::shared_ptr<const distill::SavedStudent>(distill::SavedStudent::load(a.model)));
  else
    ex = std::make_unique<distill::TableExplainer>(
        std::shared_ptr<const distill::MlpClassifier>(distill::MlpClassifier::load(a.model)));
  distill::TableEvaluateOptions eo;
  eo.explain.methods = a.methods;
  eo.metrics = a.metrics;
  eo.decoys = a.decoys;
  eo.bootstrap = a.bootstrap;
  eo.seed = a.seed;
  if (a.limit == 0 || a.limit < -1)
    throw usage_error("--limit " + std::to_string(a.limit) + " is not a number of rows",
                      "give 1 or more");
  // Options checked before the work: evaluate no rows at all.
  try {
    distill::check_table_evaluation(*ex, eo);
  } catch (const Error& e) {
    throw usage_error(e.what(), e.hint());
  }
  prepare_output_dir(a.out, "--out");

  data::ReadOptions ro;
  try {
    ro.on_error = data::parse_error_policy(a.on_error);
  } catch (const Error& e) {
    throw usage_error(std::string("--on-error: ") + e.what(), "use fail or skip");
  }
  for (const distill::Feature& f : ex->featurizer().features())
    ro.types[f.column] = f.kind == distill::Feature::kNumeric       ? data::ColumnType::kNumeric
                         : f.kind == distill::Feature::kCategorical ? data::ColumnType::kCategorical
                                                                    : data::ColumnType::kText;
  for (const std::string& c : ex->columns()) ro.required.push_back(c);
  const data::Table table = data::read_table(a.data, ro);
  std::vector<size_t> rows;
  for (size_t r = 0; r < table.n_rows() && (a.limit < 0 || r < static_cast<size_t>(a.limit)); ++r)
    rows.push_back(r);
  if (rows.empty())
    throw usage_error(a.data + " has no data rows to evaluate", "give a file with rows");

  ThreadScope threads(a.threads);
  const bool tty = ::isatty(STDERR_FILENO);
  int last = -1;
  ExplainContext ctx;
  ctx.progress = [&](double f) {
    const int pct = static_cast<int>(f * 100);
    if (!a.no_progress && pct != last && (tty || pct == 100)) {
      last = pct;
      std::cerr << "\rexplaining " << rows.size() << " rows [" << std::string(pct / 5, '#')
                << std::string(20 - pct / 5, '.') << "] " << pct << "%" << (pct == 100 ? "\n" : "")
                << std::flush;
    }
    return !interrupt_token().cancelled();
  };
  distill::TableEvaluation ev;
  {
    InterruptScope interrupt;
    try {
      ev = distill::evaluate_table_explanations(*ex, table, rows, eo, ctx);
    } catch (const Error& e) {
      if (e.code() == ErrorCode::kCancelled) return report_interrupted(e, "rerun it");
      throw;
    }
  }
  nlohmann::json& s = ev.summary;
  s["model"] = a.model;
  s["data"] = a.data;
  s["skipped"] = nlohmann::json::array();
  s["complete"] = true;
  write_file_atomic(a.out + "/table.json",
                    s.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  write_file_atomic(a.out + "/table.md", render_benchmark_markdown(s));
  write_file_atomic(a.out + "/report.html", render_benchmark_html(s));
  std::cout << render_benchmark_markdown(s);
  std::cerr << "wrote " << a.out << "/table.md, table.json, report.html\n";
  return 0;
}

}  // namespace candor::cli
