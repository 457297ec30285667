// The benchmark table of `candor evaluate`: per-example method records, the methods x metrics
// table with bootstrap intervals, and the attack block. Rendering: candor/report.h.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "candor/evaluate/adversarial.h"
#include "candor/evaluate/faithfulness.h"
#include "candor/explain.h"
#include "candor/model.h"

namespace candor {

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
// removal sets give equal values (see evaluate_faithfulness in faithfulness.h).
std::vector<MethodRecord> benchmark_faithfulness_records(
    const Model& model, const ExplainRequest& request, const std::vector<Attribution>& attributions,
    const std::vector<std::string>& metrics, const FaithfulnessOptions& faithfulness);
// The record of already computed faithfulness figures (the metrics among `metrics` that `f`
// holds; curves resampled to the grid): for models graded outside evaluate_faithfulness, such as
// the per-column explanations of a table model.
MethodRecord faithfulness_record(const Faithfulness& f, const std::vector<std::string>& metrics);
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

}  // namespace candor
