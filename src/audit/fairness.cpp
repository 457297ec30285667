// Group fairness: per-group confusion metrics, between-group and to-overall disparities, and
// seeded bootstrap intervals stratified by the combination of all group values.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <thread>
#include <unordered_map>

#include "audit/stats.h"
#include "candor/audit.h"
#include "candor/error.h"

namespace candor::audit {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

enum Metric {
  kBaseRate, kSelectionRate, kTpr, kFpr, kFnr, kTnr, kPrecision, kNpv, kAccuracy, kMeanScore, kEce,
  kNumMetrics
};
const char* const kMetricNames[kNumMetrics] = {"base_rate", "selection_rate", "tpr", "fpr", "fnr", "tnr",
                                               "precision", "npv", "accuracy", "mean_score", "ece"};

double ratio(double a, double b) { return b > 0 ? a / b : kNaN; }

// Sufficient statistics of a set of rows: the confusion cells (index label * 2 + prediction),
// the score sum and per score bin (count, score sum, positives).
struct StatLayout {
  int bins = 0;
  bool scores = false;
  size_t width() const { return 5 + 3 * static_cast<size_t>(bins); }
};

using MetricRow = std::array<double, kNumMetrics>;

MetricRow metrics_of(const double* s, const StatLayout& L, double* n_out) {
  const double tn = s[0], fp = s[1], fn = s[2], tp = s[3];
  const double n = tn + fp + fn + tp;
  *n_out = n;
  MetricRow m;
  m[kBaseRate] = ratio(tp + fn, n);
  m[kSelectionRate] = ratio(tp + fp, n);
  m[kTpr] = ratio(tp, tp + fn);
  m[kFpr] = ratio(fp, fp + tn);
  m[kFnr] = ratio(fn, tp + fn);
  m[kTnr] = ratio(tn, fp + tn);
  m[kPrecision] = ratio(tp, tp + fp);
  m[kNpv] = ratio(tn, tn + fn);
  m[kAccuracy] = ratio(tp + tn, n);
  if (L.scores && n > 0) {
    m[kMeanScore] = s[4] / n;
    double e = 0;
    for (int b = 0; b < L.bins; ++b) e += std::fabs(s[5 + 3 * b + 2] - s[5 + 3 * b + 1]);
    m[kEce] = e / n;
  } else {
    m[kMeanScore] = m[kEce] = kNaN;
  }
  return m;
}

// One grouping: a group column, or the intersection of all of them.
struct Grouping {
  std::string column;
  std::vector<std::string> names;       // of the units
  std::vector<std::vector<std::pair<std::string, std::string>>> parts;  // intersections: column=value
  std::vector<int32_t> unit_of_stratum;  // -1: the stratum is in no unit (missing value)
};

struct DisparitySpec {
  std::string metric, kind, reference;
};

std::vector<DisparitySpec> disparity_specs(bool scores) {
  std::vector<DisparitySpec> v;
  for (const char* ref : {"groups", "overall"}) {
    v.push_back({"demographic_parity", "difference", ref});
    v.push_back({"demographic_parity", "ratio", ref});
    v.push_back({"equalized_odds", "difference", ref});
    v.push_back({"equalized_odds_mean", "difference", ref});
    v.push_back({"equal_opportunity", "difference", ref});
    v.push_back({"predictive_parity", "difference", ref});
    if (scores) v.push_back({"calibration_gap", "difference", ref});
  }
  return v;
}

// The value of a disparity and the units realising it (-1: "overall").
struct DisparityValue {
  double value = kNaN;
  int a = -1, b = -1;
};

// Largest gap of metric m between units (max - min) or to the overall value.
DisparityValue gap(const std::vector<MetricRow>& units, const std::vector<double>& n, const MetricRow& overall,
                   int m, bool to_overall) {
  DisparityValue d;
  if (to_overall) {
    double best = -1;
    for (size_t u = 0; u < units.size(); ++u) {
      if (n[u] <= 0 || std::isnan(units[u][m]) || std::isnan(overall[m])) continue;
      const double g = std::fabs(units[u][m] - overall[m]);
      if (g > best) {
        best = g;
        d.a = static_cast<int>(u);
      }
    }
    if (best >= 0) d.value = best;
    return d;
  }
  int lo = -1, hi = -1;
  for (size_t u = 0; u < units.size(); ++u) {
    if (n[u] <= 0 || std::isnan(units[u][m])) continue;
    if (hi < 0 || units[u][m] > units[hi][m]) hi = static_cast<int>(u);
    if (lo < 0 || units[u][m] < units[lo][m]) lo = static_cast<int>(u);
  }
  if (lo >= 0 && lo != hi) {
    d.value = units[hi][m] - units[lo][m];
    d.a = hi;
    d.b = lo;
  } else if (lo >= 0) {
    d.value = 0;
    d.a = d.b = lo;
  }
  return d;
}

DisparityValue disparity(const DisparitySpec& s, const std::vector<MetricRow>& units,
                         const std::vector<double>& n, const MetricRow& overall) {
  const bool to_overall = s.reference == "overall";
  if (s.metric == "demographic_parity" && s.kind == "ratio") {
    DisparityValue d;
    if (to_overall) {
      double best = std::numeric_limits<double>::infinity();
      const double o = overall[kSelectionRate];
      for (size_t u = 0; u < units.size(); ++u) {
        const double v = units[u][kSelectionRate];
        if (n[u] <= 0 || std::isnan(v) || std::isnan(o)) continue;
        const double r = (v == o) ? 1.0 : std::min(ratio(v, o), ratio(o, v));
        if (!std::isnan(r) && r < best) {
          best = r;
          d.a = static_cast<int>(u);
        } else if (std::isnan(r) && d.a < 0) {
          d.a = static_cast<int>(u);
          best = 0;
        }
      }
      if (d.a >= 0) d.value = best;
      return d;
    }
    d = gap(units, n, overall, kSelectionRate, false);
    if (d.a >= 0) {
      const double hi = units[d.a][kSelectionRate], lo = units[d.b][kSelectionRate];
      d.value = hi > 0 ? lo / hi : (hi == lo ? 1.0 : kNaN);
      std::swap(d.a, d.b);  // named as [lowest, highest]
    }
    return d;
  }
  if (s.metric == "demographic_parity") return gap(units, n, overall, kSelectionRate, to_overall);
  if (s.metric == "equal_opportunity") return gap(units, n, overall, kTpr, to_overall);
  if (s.metric == "predictive_parity") return gap(units, n, overall, kPrecision, to_overall);
  if (s.metric == "calibration_gap") return gap(units, n, overall, kEce, to_overall);
  const DisparityValue t = gap(units, n, overall, kTpr, to_overall);
  const DisparityValue f = gap(units, n, overall, kFpr, to_overall);
  if (std::isnan(t.value)) return f;
  if (std::isnan(f.value)) return t;
  DisparityValue d = t.value >= f.value ? t : f;
  if (s.metric == "equalized_odds_mean") d.value = 0.5 * (t.value + f.value);
  return d;
}

// Figures of one evaluation (the point estimate or one resample), flattened: the overall metrics,
// then each unit's of each grouping, then each disparity.
struct Evaluation {
  MetricRow overall;
  double overall_n = 0;
  std::vector<std::vector<MetricRow>> units;
  std::vector<std::vector<double>> n;
  std::vector<std::vector<DisparityValue>> disparities;
};

Evaluation evaluate(const std::vector<double>& strata_stats, size_t n_strata, const StatLayout& L,
                    const std::vector<Grouping>& groupings, const std::vector<DisparitySpec>& specs) {
  const size_t W = L.width();
  Evaluation e;
  std::vector<double> total(W, 0), agg;
  for (size_t s = 0; s < n_strata; ++s)
    for (size_t k = 0; k < W; ++k) total[k] += strata_stats[s * W + k];
  e.overall = metrics_of(total.data(), L, &e.overall_n);
  for (const Grouping& g : groupings) {
    const size_t U = g.names.size();
    agg.assign(U * W, 0);
    for (size_t s = 0; s < n_strata; ++s) {
      const int32_t u = g.unit_of_stratum[s];
      if (u < 0) continue;
      for (size_t k = 0; k < W; ++k) agg[u * W + k] += strata_stats[s * W + k];
    }
    std::vector<MetricRow> rows(U);
    std::vector<double> n(U);
    for (size_t u = 0; u < U; ++u) rows[u] = metrics_of(&agg[u * W], L, &n[u]);
    std::vector<DisparityValue> d;
    for (const DisparitySpec& s : specs) d.push_back(disparity(s, rows, n, e.overall));
    e.units.push_back(std::move(rows));
    e.n.push_back(std::move(n));
    e.disparities.push_back(std::move(d));
  }
  return e;
}

std::vector<double> flatten(const Evaluation& e) {
  std::vector<double> v(e.overall.begin(), e.overall.end());
  for (const auto& rows : e.units)
    for (const MetricRow& r : rows) v.insert(v.end(), r.begin(), r.end());
  for (const auto& ds : e.disparities)
    for (const DisparityValue& d : ds) v.push_back(d.value);
  return v;
}

}  // namespace

const std::vector<std::string>& group_metric_names() {
  static const std::vector<std::string> names(kMetricNames, kMetricNames + kNumMetrics);
  return names;
}

FairnessResult audit_fairness(const BinaryOutcomes& outcomes, const std::vector<CodedColumn>& groups,
                              const FairnessOptions& options) {
  const size_t n = outcomes.label.size();
  if (n == 0) throw Error(ErrorCode::kInvalidArgument, "no rows to audit", "give data with rows");
  if (outcomes.prediction.size() != n || (!outcomes.score.empty() && outcomes.score.size() != n))
    throw Error(ErrorCode::kInvalidArgument, "labels, predictions and scores differ in length");
  if (groups.empty())
    throw Error(ErrorCode::kInvalidArgument, "no group column given", "pass --group COL[,COL...]");
  if (options.n_boot < 0 || options.ece_bins < 1 || !(options.confidence > 0 && options.confidence < 1))
    throw Error(ErrorCode::kInvalidArgument,
                "bad fairness options: --n-boot must be >= 0, the bins >= 1, the confidence in (0, 1)");
  for (const CodedColumn& g : groups) {
    if (g.size() != n)
      throw Error(ErrorCode::kInvalidArgument, "group column '" + g.column + "' differs in length");
    std::vector<uint8_t> present(g.values.size(), 0);
    size_t distinct = 0;
    for (int32_t c : g.codes)
      if (c >= 0 && !present[c]) {
        present[c] = 1;
        ++distinct;
      }
    if (distinct < 2)
      throw Error(ErrorCode::kInvalidArgument,
                  "group column '" + g.column + "' has " +
                      (distinct == 0 ? std::string("no values (every row is missing)")
                                     : "one value ('" + g.values[std::find(present.begin(), present.end(), 1) -
                                                                  present.begin()] +
                                           "')") +
                      ": a fairness audit compares two groups or more",
                  "name a column whose rows fall into at least two groups");
  }
  StatLayout L;
  L.scores = !outcomes.score.empty();
  L.bins = L.scores ? options.ece_bins : 0;
  const size_t W = L.width();

  // Strata: the combinations of all group codes (missing included) that occur.
  std::unordered_map<std::string, int32_t> stratum_index;
  std::vector<std::vector<int32_t>> stratum_codes;
  std::vector<int32_t> stratum(n);
  std::string key;
  for (size_t r = 0; r < n; ++r) {
    key.clear();
    for (const CodedColumn& g : groups) key.append(reinterpret_cast<const char*>(&g.codes[r]), sizeof(int32_t));
    auto it = stratum_index.find(key);
    if (it == stratum_index.end()) {
      it = stratum_index.emplace(key, static_cast<int32_t>(stratum_codes.size())).first;
      std::vector<int32_t> codes;
      for (const CodedColumn& g : groups) codes.push_back(g.codes[r]);
      stratum_codes.push_back(std::move(codes));
    }
    stratum[r] = it->second;
  }
  const size_t S = stratum_codes.size();

  // Groupings: each column, then the intersection.
  std::vector<Grouping> groupings;
  for (size_t c = 0; c < groups.size(); ++c) {
    Grouping g;
    g.column = groups[c].column;
    std::vector<int32_t> unit_of_code(groups[c].values.size(), -1);
    std::vector<uint8_t> present(groups[c].values.size(), 0);
    for (int32_t code : groups[c].codes)
      if (code >= 0) present[code] = 1;
    for (size_t v = 0; v < groups[c].values.size(); ++v) {
      if (!present[v]) continue;
      unit_of_code[v] = static_cast<int32_t>(g.names.size());
      g.names.push_back(groups[c].values[v]);
      g.parts.push_back({{g.column, groups[c].values[v]}});
    }
    for (size_t s = 0; s < S; ++s) {
      const int32_t code = stratum_codes[s][c];
      g.unit_of_stratum.push_back(code < 0 ? -1 : unit_of_code[code]);
    }
    groupings.push_back(std::move(g));
  }
  if (options.intersect && groups.size() > 1) {
    Grouping g;
    for (const CodedColumn& c : groups) g.column += (g.column.empty() ? "" : " & ") + c.column;
    std::vector<size_t> order(S);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return stratum_codes[a] < stratum_codes[b]; });
    g.unit_of_stratum.assign(S, -1);
    for (size_t s : order) {
      bool missing = false;
      for (int32_t code : stratum_codes[s]) missing = missing || code < 0;
      if (missing) continue;
      std::string name;
      std::vector<std::pair<std::string, std::string>> parts;
      for (size_t c = 0; c < groups.size(); ++c) {
        const std::string& v = groups[c].values[stratum_codes[s][c]];
        name += (name.empty() ? "" : " & ") + v;
        parts.push_back({groups[c].column, v});
      }
      g.unit_of_stratum[s] = static_cast<int32_t>(g.names.size());
      g.names.push_back(name);
      g.parts.push_back(std::move(parts));
    }
    groupings.push_back(std::move(g));
  }
  const std::vector<DisparitySpec> specs = disparity_specs(L.scores);

  // Rows in stratum order, packed: cell (label * 2 + prediction), score bin, score.
  std::vector<size_t> start(S + 1, 0);
  for (size_t r = 0; r < n; ++r) ++start[stratum[r] + 1];
  for (size_t s = 0; s < S; ++s) start[s + 1] += start[s];
  std::vector<uint8_t> cell(n), bin(n, 0);
  std::vector<float> score(L.scores ? n : 0);
  {
    std::vector<size_t> pos(start.begin(), start.end() - 1);
    for (size_t r = 0; r < n; ++r) {
      const size_t j = pos[stratum[r]]++;
      cell[j] = static_cast<uint8_t>(outcomes.label[r] * 2 + (outcomes.prediction[r] ? 1 : 0));
      if (L.scores) {
        const float p = outcomes.score[r];
        score[j] = p;
        bin[j] = static_cast<uint8_t>(std::min<int>(L.bins - 1, static_cast<int>(p * L.bins)));
      }
    }
  }
  if (L.bins > 255) throw Error(ErrorCode::kInvalidArgument, "at most 255 ECE bins");

  auto accumulate = [&](size_t j, double* s) {
    const uint8_t c = cell[j];
    s[c] += 1;
    if (L.scores) {
      const double p = score[j];
      s[4] += p;
      double* b = s + 5 + 3 * bin[j];
      b[0] += 1;
      b[1] += p;
      b[2] += c >> 1;
    }
  };
  std::vector<double> point_stats(S * W, 0);
  for (size_t s = 0; s < S; ++s)
    for (size_t j = start[s]; j < start[s + 1]; ++j) accumulate(j, &point_stats[s * W]);
  const Evaluation point = evaluate(point_stats, S, L, groupings, specs);
  const std::vector<double> point_flat = flatten(point);
  const size_t V = point_flat.size();

  // Bootstrap: resample b draws each stratum's rows with replacement from its own generator.
  const int B = options.n_boot;
  std::vector<double> boot(static_cast<size_t>(B) * V, kNaN);
  if (B > 0) {
    int threads = options.threads > 0 ? options.threads
                                      : std::min(8, static_cast<int>(std::thread::hardware_concurrency()));
    threads = std::max(1, std::min(threads, B));
    auto work = [&](int t) {
      std::vector<double> st(S * W);
      for (int b = t; b < B; b += threads) {
        std::fill(st.begin(), st.end(), 0.0);
        Rng rng(options.seed, static_cast<uint64_t>(b));
        for (size_t s = 0; s < S; ++s) {
          const uint64_t m = start[s + 1] - start[s];
          double* out = &st[s * W];
          for (uint64_t i = 0; i < m; ++i) accumulate(start[s] + rng.below(m), out);
        }
        const std::vector<double> f = flatten(evaluate(st, S, L, groupings, specs));
        std::copy(f.begin(), f.end(), boot.begin() + static_cast<size_t>(b) * V);
      }
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(work, t);
    work(0);
    for (std::thread& th : pool) th.join();
  }
  const double lo_q = (1 - options.confidence) / 2, hi_q = 1 - lo_q;
  std::vector<double> column(B);
  auto interval = [&](size_t v) -> std::array<double, 2> {
    if (B == 0) return {kNaN, kNaN};
    column.clear();
    for (int b = 0; b < B; ++b) {
      const double x = boot[static_cast<size_t>(b) * V + v];
      if (!std::isnan(x)) column.push_back(x);
    }
    if (column.empty()) return {kNaN, kNaN};
    return {quantile(column, lo_q), quantile(column, hi_q)};
  };

  FairnessResult res;
  res.options = options;
  res.n_rows = static_cast<int64_t>(n);
  res.label_positive = outcomes.label_positive;
  res.prediction_positive = outcomes.prediction_positive;
  for (const CodedColumn& g : groups) res.missing_group[g.column] = g.n_missing();
  size_t v = 0;
  auto fill = [&](GroupMetrics* gm, const MetricRow& row) {
    for (int m = 0; m < kNumMetrics; ++m, ++v) {
      if (!L.scores && (m == kMeanScore || m == kEce)) continue;
      gm->metrics[kMetricNames[m]] = row[m];
      gm->ci[kMetricNames[m]] = interval(v);
    }
  };
  res.overall.column = "overall";
  res.overall.value = "overall";
  res.overall.n = static_cast<int64_t>(n);
  fill(&res.overall, point.overall);
  for (size_t gi = 0; gi < groupings.size(); ++gi) {
    for (size_t u = 0; u < groupings[gi].names.size(); ++u) {
      GroupMetrics gm;
      gm.column = groupings[gi].column;
      gm.value = groupings[gi].names[u];
      gm.n = static_cast<int64_t>(point.n[gi][u]);
      gm.small = gm.n < options.min_group_size;
      fill(&gm, point.units[gi][u]);
      res.groups.push_back(std::move(gm));
    }
  }
  for (size_t gi = 0; gi < groupings.size(); ++gi) {
    for (size_t k = 0; k < specs.size(); ++k, ++v) {
      const DisparityValue& d = point.disparities[gi][k];
      Disparity out;
      out.metric = specs[k].metric;
      out.kind = specs[k].kind;
      out.reference = specs[k].reference;
      out.column = groupings[gi].column;
      auto name = [&](int u) { return u < 0 ? std::string("overall") : groupings[gi].names[u]; };
      const bool to_overall = out.reference == "overall";
      out.between = {d.a < 0 ? std::string() : name(d.a),
                     d.b < 0 && !to_overall ? std::string() : name(d.b)};
      out.value = d.value;
      out.ci = interval(v);
      out.flag = out.kind == "ratio" && !std::isnan(d.value) && d.value < options.four_fifths;
      res.disparities.push_back(std::move(out));
    }
  }
  return res;
}

namespace {

nlohmann::json num(double x) { return std::isnan(x) ? nlohmann::json(nullptr) : nlohmann::json(x); }

nlohmann::json group_json(const GroupMetrics& g) {
  nlohmann::json j{{"column", g.column}, {"value", g.value}, {"n", g.n}, {"small", g.small}};
  nlohmann::json m = nlohmann::json::object(), c = nlohmann::json::object();
  for (const std::string& name : group_metric_names()) {
    auto it = g.metrics.find(name);
    if (it == g.metrics.end()) continue;
    m[name] = num(it->second);
    const auto& ci = g.ci.at(name);
    c[name] = nlohmann::json::array({num(ci[0]), num(ci[1])});
  }
  j["metrics"] = m;
  j["ci"] = c;
  return j;
}

}  // namespace

nlohmann::json FairnessResult::to_json() const {
  nlohmann::json j;
  j["audit"] = "fairness";
  j["n_rows"] = n_rows;
  j["n_skipped"] = n_skipped;
  j["label_positive"] = label_positive;
  j["prediction_positive"] = prediction_positive;
  j["options"] = {{"n_boot", options.n_boot},         {"seed", options.seed},
                  {"confidence", options.confidence}, {"min_group_size", options.min_group_size},
                  {"intersect", options.intersect},   {"ece_bins", options.ece_bins},
                  {"four_fifths", options.four_fifths}};
  j["missing_group"] = missing_group;
  j["overall"] = group_json(overall);
  j["groups"] = nlohmann::json::array();
  for (const GroupMetrics& g : groups) j["groups"].push_back(group_json(g));
  j["disparities"] = nlohmann::json::array();
  nlohmann::json flags = nlohmann::json::array();
  for (const Disparity& d : disparities) {
    nlohmann::json between = nlohmann::json::array();
    for (const std::string& b : d.between)
      if (!b.empty()) between.push_back(b);
    j["disparities"].push_back({{"metric", d.metric},
                                {"kind", d.kind},
                                {"reference", d.reference},
                                {"column", d.column},
                                {"between", between},
                                {"value", num(d.value)},
                                {"ci", nlohmann::json::array({num(d.ci[0]), num(d.ci[1])})},
                                {"flag", d.flag}});
    if (d.flag)
      flags.push_back({{"kind", "four_fifths"},
                       {"column", d.column},
                       {"reference", d.reference},
                       {"between", between},
                       {"ratio", num(d.value)},
                       {"message", "selection-rate ratio " + std::to_string(d.value) + " is below " +
                                       std::to_string(options.four_fifths) + " (the four-fifths rule)"}});
  }
  for (const GroupMetrics& g : groups)
    if (g.small)
      flags.push_back({{"kind", "small_group"},
                       {"column", g.column},
                       {"value", g.value},
                       {"n", g.n},
                       {"message", "group has " + std::to_string(g.n) + " rows, fewer than " +
                                       std::to_string(options.min_group_size) + ": its figures are unreliable"}});
  for (const auto& [col, m] : missing_group)
    if (m > 0)
      flags.push_back({{"kind", "missing_group"},
                       {"column", col},
                       {"n", m},
                       {"message", std::to_string(m) + " rows have no value in '" + col +
                                       "': counted in the overall figures, in no group"}});
  j["flags"] = flags;
  return j;
}

}  // namespace candor::audit
