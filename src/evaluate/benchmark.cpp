// The benchmark table of `candor evaluate`: per-example records and means with bootstrap
// intervals (rendered by src/report/evaluate_html.cpp).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <sstream>

#include "candor/error.h"
#include "evaluate/internal.h"

namespace candor {
namespace {

constexpr int kCurveGrid = 21;  // fractions 0, 0.05, ..., 1

// Linear interpolation of a curve onto the fixed grid.
std::vector<double> resample(const Curve& c) {
  std::vector<double> out;
  if (c.fraction.empty()) return out;
  for (int i = 0; i < kCurveGrid; ++i) {
    const double x = static_cast<double>(i) / (kCurveGrid - 1);
    size_t j = 1;
    while (j < c.fraction.size() && c.fraction[j] < x) ++j;
    if (j >= c.fraction.size()) {
      out.push_back(c.value.back());
      continue;
    }
    const double x0 = c.fraction[j - 1], x1 = c.fraction[j];
    const double t = x1 > x0 ? (x - x0) / (x1 - x0) : 1.0;
    out.push_back(c.value[j - 1] + std::clamp(t, 0.0, 1.0) * (c.value[j] - c.value[j - 1]));
  }
  return out;
}

}  // namespace

const std::vector<std::string>& benchmark_metric_names() {
  static const std::vector<std::string> names = {
      "comprehensiveness", "sufficiency", "deletion",        "insertion",
      "infidelity",        "loo_kendall", "avg_sensitivity", "max_sensitivity"};
  return names;
}

std::vector<std::string> parse_benchmark_metrics(const std::vector<std::string>& given) {
  const auto& all = benchmark_metric_names();
  std::vector<std::string> want;
  for (const auto& g : given) {
    if (g == "faithfulness") {
      want.insert(want.end(), all.begin(), all.begin() + 6);
    } else if (g == "sensitivity") {
      want.push_back("avg_sensitivity");
      want.push_back("max_sensitivity");
    } else if (std::find(all.begin(), all.end(), g) != all.end()) {
      want.push_back(g);
    } else {
      std::string list = "faithfulness, sensitivity";
      for (const auto& n : all) list += ", " + n;
      throw Error(ErrorCode::kInvalidArgument, "unknown metric '" + g + "'",
                  "metrics are: " + list);
    }
  }
  if (given.empty()) want.assign(all.begin(), all.begin() + 6);
  std::vector<std::string> out;  // table order, no repeats
  for (const auto& n : all)
    if (std::find(want.begin(), want.end(), n) != want.end()) out.push_back(n);
  return out;
}

bool metric_higher_is_better(const std::string& m) {
  return m == "comprehensiveness" || m == "insertion" || m == "loo_kendall" || m == "attack_topk";
}

namespace {

// The faithfulness options that compute exactly the metrics asked for.
FaithfulnessOptions options_for(const std::vector<std::string>& metrics,
                                const FaithfulnessOptions& faithfulness) {
  auto has = [&](const char* m) {
    return std::find(metrics.begin(), metrics.end(), m) != metrics.end();
  };
  FaithfulnessOptions fo = faithfulness;
  fo.comprehensiveness = has("comprehensiveness") || has("sufficiency");
  fo.curves = has("deletion") || has("insertion");
  fo.infidelity = has("infidelity");
  fo.loo = has("loo_kendall");
  return fo;
}

bool any_faithfulness(const FaithfulnessOptions& fo) {
  return fo.comprehensiveness || fo.curves || fo.infidelity || fo.loo;
}

void fill_faithfulness(MethodRecord& r, const Faithfulness& f,
                       const std::vector<std::string>& metrics) {
  auto has = [&](const char* m) {
    return std::find(metrics.begin(), metrics.end(), m) != metrics.end();
  };
  if (has("comprehensiveness")) r.metrics["comprehensiveness"] = f.comprehensiveness_aopc;
  if (has("sufficiency")) r.metrics["sufficiency"] = f.sufficiency_aopc;
  if (has("deletion")) {
    r.metrics["deletion"] = f.deletion.area;
    r.deletion_curve = resample(f.deletion);
  }
  if (has("insertion")) {
    r.metrics["insertion"] = f.insertion.area;
    r.insertion_curve = resample(f.insertion);
  }
  if (has("infidelity")) r.metrics["infidelity"] = f.infidelity;
  if (has("loo_kendall")) r.metrics["loo_kendall"] = f.loo_kendall;
}

}  // namespace

MethodRecord faithfulness_record(const Faithfulness& f, const std::vector<std::string>& metrics) {
  MethodRecord r;
  fill_faithfulness(r, f, metrics);
  return r;
}

MethodRecord benchmark_record(const Model& model, const ExplainRequest& request,
                              const Explainer& explainer, const Attribution& attribution,
                              const std::vector<std::string>& metrics,
                              const FaithfulnessOptions& faithfulness,
                              const RobustnessOptions& robustness) {
  auto has = [&](const char* m) {
    return std::find(metrics.begin(), metrics.end(), m) != metrics.end();
  };
  MethodRecord r;
  const FaithfulnessOptions fo = options_for(metrics, faithfulness);
  if (any_faithfulness(fo))
    fill_faithfulness(r, evaluate_faithfulness(model, request, attribution, fo), metrics);
  if (has("avg_sensitivity") || has("max_sensitivity")) {
    Robustness rb = evaluate_robustness(model, request, explainer, attribution, robustness);
    if (has("avg_sensitivity")) r.metrics["avg_sensitivity"] = rb.avg_sensitivity;
    if (has("max_sensitivity")) r.metrics["max_sensitivity"] = rb.max_sensitivity;
  }
  return r;
}

std::vector<MethodRecord> benchmark_faithfulness_records(
    const Model& model, const ExplainRequest& request, const std::vector<Attribution>& attributions,
    const std::vector<std::string>& metrics, const FaithfulnessOptions& faithfulness) {
  std::vector<MethodRecord> out(attributions.size());
  const FaithfulnessOptions fo = options_for(metrics, faithfulness);
  if (!any_faithfulness(fo)) return out;
  std::vector<Faithfulness> f = evaluate_faithfulness(model, request, attributions, fo);
  for (size_t i = 0; i < attributions.size(); ++i) fill_faithfulness(out[i], f[i], metrics);
  return out;
}

nlohmann::json method_record_to_json(const MethodRecord& r) {
  nlohmann::json j;
  j["metrics"] = r.metrics;
  if (!r.deletion_curve.empty()) j["deletion_curve"] = r.deletion_curve;
  if (!r.insertion_curve.empty()) j["insertion_curve"] = r.insertion_curve;
  if (!r.attack.is_null()) j["attack"] = r.attack;
  return j;
}

MethodRecord method_record_from_json(const nlohmann::json& j) {
  MethodRecord r;
  r.metrics = j.at("metrics").get<std::map<std::string, double>>();
  if (j.contains("deletion_curve"))
    r.deletion_curve = j["deletion_curve"].get<std::vector<double>>();
  if (j.contains("insertion_curve"))
    r.insertion_curve = j["insertion_curve"].get<std::vector<double>>();
  if (j.contains("attack")) r.attack = j["attack"];
  return r;
}

nlohmann::json summarize_attacks(const std::vector<std::map<std::string, MethodRecord>>& records,
                                 const std::vector<std::string>& methods,
                                 const std::vector<int64_t>& lines, const AttackOptions& options) {
  nlohmann::ordered_json s;
  s["options"] = attack_options_to_json(options);
  nlohmann::ordered_json per;
  for (const auto& method : methods) {
    int64_t n = 0, wins = 0, tried = 0, valid = 0;
    double topk = 0, dp = 0;
    nlohmann::json examples = nlohmann::json::array();
    for (size_t i = 0; i < records.size(); ++i) {
      auto it = records[i].find(method);
      if (it == records[i].end() || !it->second.attack.is_object()) continue;
      const nlohmann::json& a = it->second.attack;
      ++n;
      wins += a.value("success", false) ? 1 : 0;
      topk += a.value("topk_intersection", 1.0);
      dp += a.value("prob_change", 0.0);
      tried += a.value("candidates_tried", int64_t{0});
      valid += a.value("candidates_valid", int64_t{0});
      nlohmann::ordered_json e;
      e["line"] = i < lines.size() ? lines[i] : static_cast<int64_t>(i);
      e["success"] = a.value("success", false);
      e["topk_intersection"] = a.value("topk_intersection", 1.0);
      e["prob_change"] = a.value("prob_change", 0.0);
      e["top_piece"] = a.value("top_piece", "");
      e["changes"] = a.value("changes", nlohmann::json::array());
      if (a.contains("substitutions")) e["substitutions"] = a["substitutions"];
      if (a.value("noise_linf", 0.0) > 0) e["noise_linf"] = a["noise_linf"];
      examples.push_back(nlohmann::json(e));
    }
    if (n == 0) continue;
    nlohmann::ordered_json m;
    m["n"] = n;
    m["successes"] = wins;
    m["success_rate"] = static_cast<double>(wins) / static_cast<double>(n);
    m["mean_topk_intersection"] = topk / static_cast<double>(n);
    m["mean_prob_change"] = dp / static_cast<double>(n);
    m["candidates_tried"] = tried;
    m["candidates_valid"] = valid;
    m["examples"] = examples;
    per[method] = m;
  }
  s["methods"] = per;
  return nlohmann::json(s);
}

nlohmann::json summarize_benchmark(const std::vector<std::map<std::string, MethodRecord>>& records,
                                   const std::vector<std::string>& methods,
                                   const std::vector<std::string>& metrics, int64_t n_bootstrap,
                                   uint64_t seed) {
  nlohmann::ordered_json s;
  s["n_examples"] = records.size();
  s["methods"] = methods;
  s["metrics"] = metrics;
  s["bootstrap"] = n_bootstrap;
  s["interval"] = "percentile bootstrap 95%";
  nlohmann::ordered_json higher;
  for (const auto& m : metrics) higher[m] = metric_higher_is_better(m);
  s["higher_is_better"] = higher;
  nlohmann::ordered_json table, curves;
  for (const auto& method : methods) {
    nlohmann::ordered_json row;
    for (const auto& metric : metrics) {
      std::vector<double> v;
      for (const auto& ex : records) {
        auto it = ex.find(method);
        if (it == ex.end()) continue;
        auto mt = it->second.metrics.find(metric);
        if (mt != it->second.metrics.end() && std::isfinite(mt->second)) v.push_back(mt->second);
      }
      nlohmann::ordered_json cell;
      cell["n"] = v.size();
      if (v.empty()) {
        row[metric] = cell;
        continue;
      }
      double mean = 0;
      for (double x : v) mean += x;
      mean /= static_cast<double>(v.size());
      cell["mean"] = mean;
      // Percentile bootstrap of the mean; one seeded stream per cell so that cells do not
      // depend on each other.
      const uint64_t h = std::hash<std::string>{}(method + "|" + metric);
      std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
                        static_cast<uint32_t>(h), static_cast<uint32_t>(h >> 32)};
      std::mt19937_64 rng(seq);
      std::uniform_int_distribution<size_t> pick(0, v.size() - 1);
      std::vector<double> means;
      for (int64_t b = 0; b < n_bootstrap; ++b) {
        double m = 0;
        for (size_t i = 0; i < v.size(); ++i) m += v[pick(rng)];
        means.push_back(m / static_cast<double>(v.size()));
      }
      if (!means.empty()) {
        std::sort(means.begin(), means.end());
        auto q = [&](double p) {
          size_t i = static_cast<size_t>(std::floor(p * static_cast<double>(means.size() - 1)));
          return means[i];
        };
        cell["ci_low"] = q(0.025);
        cell["ci_high"] = q(0.975);
      }
      row[metric] = cell;
    }
    table[method] = row;
    nlohmann::ordered_json c;
    for (const char* which : {"deletion", "insertion"}) {
      std::vector<double> mean(kCurveGrid, 0.0);
      int64_t n = 0;
      for (const auto& ex : records) {
        auto it = ex.find(method);
        if (it == ex.end()) continue;
        const auto& cv = std::string(which) == "deletion" ? it->second.deletion_curve
                                                          : it->second.insertion_curve;
        if (static_cast<int>(cv.size()) != kCurveGrid) continue;
        for (int i = 0; i < kCurveGrid; ++i) mean[i] += cv[i];
        ++n;
      }
      if (n == 0) continue;
      for (auto& x : mean) x /= static_cast<double>(n);
      c[which] = mean;
    }
    if (!c.empty()) curves[method] = c;
  }
  s["table"] = table;
  s["curves"] = curves;
  return nlohmann::json(s);
}

}  // namespace candor
