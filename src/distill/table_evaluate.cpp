// Grading the per-column explanations of a table model (table_explain.h): the faithfulness
// metrics of the text evaluator played over columns removed to their baselines, scored on the
// model's own predictions, and gathered into the same benchmark table
// (candor/evaluate/benchmark.h).
#include <algorithm>
#include <cmath>
#include <random>

#include "candor/error.h"
#include "candor/evaluate/adversarial.h"
#include "candor/evaluate/stats.h"
#include "candor/table_explain.h"

namespace candor::distill {

namespace {

const std::vector<std::string>& column_metric_names() {
  static const std::vector<std::string> names = {"comprehensiveness", "sufficiency", "deletion",
                                                 "insertion"};
  return names;
}

std::vector<std::string> parse_column_metrics(const std::vector<std::string>& given) {
  const auto& all = column_metric_names();
  std::vector<std::string> want;
  for (const std::string& g : given) {
    if (g == "faithfulness") {
      want = all;
    } else if (std::find(all.begin(), all.end(), g) != all.end()) {
      want.push_back(g);
    } else {
      const auto& text = benchmark_metric_names();
      const bool known = g == "sensitivity" || std::find(text.begin(), text.end(), g) != text.end();
      throw Error(ErrorCode::kInvalidArgument,
                  known ? "metric '" + g + "' grades token explanations of a language model, not " +
                              "the columns of a table model"
                        : "unknown metric '" + g + "'",
                  "the metrics of a table model are faithfulness (all four), comprehensiveness, "
                  "sufficiency, deletion, insertion");
    }
  }
  if (given.empty()) want = all;
  std::vector<std::string> out;  // table order, no repeats
  for (const auto& n : all)
    if (std::find(want.begin(), want.end(), n) != want.end()) out.push_back(n);
  return out;
}

// Every figure of one explanation, from the values of the masks it removes in score order.
Faithfulness grade(const TableExplainer& ex, const data::Table& table, size_t row,
                   const Attribution& a, const std::vector<double>& fractions) {
  const int64_t k = static_cast<int64_t>(a.scores.size());
  const std::vector<int64_t> order = rank_order(a.scores);
  auto without_top = [&](int64_t n) {
    std::vector<uint8_t> m(k, 1);
    for (int64_t i = 0; i < n; ++i) m[order[i]] = 0;
    return m;
  };
  auto only_top = [&](int64_t n) {
    std::vector<uint8_t> m(k, 0);
    for (int64_t i = 0; i < n; ++i) m[order[i]] = 1;
    return m;
  };
  std::vector<std::vector<uint8_t>> masks;
  Faithfulness f;
  for (double q : fractions) {
    const int64_t n = std::clamp<int64_t>(
        static_cast<int64_t>(std::ceil(q * static_cast<double>(k) - 1e-9)), 1, k);
    f.fractions.push_back(q);
    f.counts.push_back(n);
    masks.push_back(without_top(n));
    masks.push_back(only_top(n));
  }
  for (int64_t n = 0; n <= k; ++n) {
    masks.push_back(without_top(n));
    masks.push_back(only_top(n));
  }
  const size_t c = static_cast<size_t>(a.step_tokens.at(0));
  const std::vector<double> v = ex.coalition_values(table, row, masks, c, a.target_function);
  f.full_value = v[2 * fractions.size()];       // nothing removed
  f.empty_value = v[2 * fractions.size() + 1];  // nothing kept
  for (size_t i = 0; i < fractions.size(); ++i) {
    f.comprehensiveness.push_back(f.full_value - v[2 * i]);
    f.sufficiency.push_back(f.full_value - v[2 * i + 1]);
    f.comprehensiveness_aopc += f.comprehensiveness.back();
    f.sufficiency_aopc += f.sufficiency.back();
  }
  if (!fractions.empty()) {
    f.comprehensiveness_aopc /= static_cast<double>(fractions.size());
    f.sufficiency_aopc /= static_cast<double>(fractions.size());
  }
  const size_t c0 = 2 * fractions.size();
  for (int64_t n = 0; n <= k; ++n) {
    const double x = static_cast<double>(n) / static_cast<double>(k);
    f.deletion.fraction.push_back(x);
    f.deletion.value.push_back(v[c0 + 2 * n]);
    f.insertion.fraction.push_back(x);
    f.insertion.value.push_back(v[c0 + 2 * n + 1]);
  }
  for (Curve* cv : {&f.deletion, &f.insertion})
    for (size_t i = 1; i < cv->fraction.size(); ++i)
      cv->area += 0.5 * (cv->value[i] + cv->value[i - 1]) * (cv->fraction[i] - cv->fraction[i - 1]);
  f.masks_scored = static_cast<int64_t>(masks.size());
  return f;
}

}  // namespace

void check_table_evaluation(const TableExplainer& ex, const TableEvaluateOptions& options) {
  parse_column_metrics(options.metrics);
  for (double q : options.fractions)
    if (!(q > 0 && q <= 1))
      throw Error(ErrorCode::kInvalidArgument,
                  "fraction " + std::to_string(q) + " is not in (0, 1]",
                  "give fractions of the columns such as 0.1, 0.2, 0.5");
  if (options.bootstrap < 0)
    throw Error(ErrorCode::kInvalidArgument, "bootstrap resamples must not be negative",
                "give 0 (no intervals) or more, e.g. 1000");
  ex.check(options.explain);
}

TableEvaluation evaluate_table_explanations(const TableExplainer& ex, const data::Table& table,
                                            const std::vector<size_t>& rows,
                                            const TableEvaluateOptions& options,
                                            const ExplainContext& context) {
  TableEvaluation out;
  check_table_evaluation(ex, options);
  out.metrics = parse_column_metrics(options.metrics);
  const std::vector<RowExplanation> explained = ex.explain(table, rows, options.explain, context);

  // Table rows: the specs as given (the default method's name otherwise), then the decoys.
  std::vector<std::string> names = options.explain.methods;
  if (names.empty() && !explained.empty())
    for (const Attribution& a : explained[0].attributions) names.push_back(a.method);
  std::vector<std::string> decoys;
  if (options.decoys) decoys = {"decoy:random", "decoy:inverted"};
  out.methods = names;
  out.methods.insert(out.methods.end(), decoys.begin(), decoys.end());

  for (const RowExplanation& rx : explained) {
    std::vector<Attribution> atts = rx.attributions;
    if (options.decoys && !atts.empty()) {
      Attribution random = atts[0], inverted = atts[0];
      std::mt19937_64 rng(options.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(rx.line));
      std::uniform_real_distribution<double> u(-1.0, 1.0);
      for (double& s : random.scores) s = u(rng);
      for (double& s : inverted.scores) s = -s;
      random.method = "random";
      inverted.method = "inverted";
      atts.push_back(std::move(random));
      atts.push_back(std::move(inverted));
    }
    std::map<std::string, MethodRecord> recs;
    for (size_t m = 0; m < atts.size(); ++m)
      recs[out.methods[m]] =
          faithfulness_record(grade(ex, table, rx.row, atts[m], options.fractions), out.metrics);
    out.records.push_back(std::move(recs));
    out.lines.push_back(rx.line);
  }

  nlohmann::json summary =
      summarize_benchmark(out.records, out.methods, out.metrics, options.bootstrap, options.seed);
  if (options.decoys) {
    nlohmann::json ranking;
    for (const std::string& metric : out.metrics) {
      std::vector<std::map<std::string, double>> values;
      for (const auto& rec : out.records) {
        std::map<std::string, double> v;
        for (const auto& [name, mr] : rec) {
          auto f = mr.metrics.find(metric);
          if (f != mr.metrics.end()) v[name] = f->second;
        }
        values.push_back(v);
      }
      DecoyRanking dr = rank_against_decoys(values, names, decoys, metric_higher_is_better(metric));
      nlohmann::json mj;
      for (size_t m = 0; m < names.size(); ++m)
        for (size_t d = 0; d < decoys.size(); ++d)
          mj["win_rate"][names[m]][decoys[d]] = dr.win_rate[m][d];
      for (size_t d = 0; d < decoys.size(); ++d) mj["caught_rate"][decoys[d]] = dr.caught_rate[d];
      ranking[metric] = mj;
    }
    summary["decoy_ranking"] = ranking;
  }
  summary["table_model"] = true;
  summary["columns"] = ex.columns();
  summary["removal"] = "baseline";
  summary["fractions"] = options.fractions;
  summary["target_function"] = options.explain.target_function;
  out.summary = std::move(summary);
  return out;
}

}  // namespace candor::distill
