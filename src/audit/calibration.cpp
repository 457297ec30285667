// Calibration: accuracy, NLL, Brier, ECE (equal-width and equal-mass), MCE, reliability bins,
// temperature scaling, and the risk-coverage curve of selective prediction.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "candor/audit.h"
#include "candor/error.h"

namespace candor::audit {

namespace {

constexpr double kFloor = 1e-12;

std::vector<size_t> all_rows(const ClassProbabilities& probs, const std::vector<size_t>& rows) {
  if (!rows.empty()) return rows;
  std::vector<size_t> r(static_cast<size_t>(probs.size()));
  std::iota(r.begin(), r.end(), 0);
  return r;
}

// The row's probabilities at temperature t into q; returns the top class.
int32_t scaled(const ClassProbabilities& probs, size_t row, double t, std::vector<double>* q) {
  const int64_t K = probs.n_classes;
  q->resize(K);
  const float* p = &probs.p[row * K];
  if (t == 1) {
    for (int64_t k = 0; k < K; ++k) (*q)[k] = p[k];
  } else {
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t k = 0; k < K; ++k) {
      (*q)[k] = std::log(std::max<double>(p[k], kFloor)) / t;
      mx = std::max(mx, (*q)[k]);
    }
    double z = 0;
    for (int64_t k = 0; k < K; ++k) z += ((*q)[k] = std::exp((*q)[k] - mx));
    for (int64_t k = 0; k < K; ++k) (*q)[k] /= z;
  }
  int32_t top = 0;
  for (int64_t k = 1; k < K; ++k)
    if ((*q)[k] > (*q)[top]) top = static_cast<int32_t>(k);
  return top;
}

double nll_at(const ClassProbabilities& probs, const std::vector<size_t>& rows, double t) {
  std::vector<double> q;
  double s = 0;
  for (size_t r : rows) {
    scaled(probs, r, t, &q);
    s -= std::log(std::max(q[probs.label[r]], kFloor));
  }
  return s / static_cast<double>(rows.size());
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

nlohmann::json bins_json(const std::vector<ReliabilityBin>& bins) {
  nlohmann::json a = nlohmann::json::array();
  for (const ReliabilityBin& b : bins)
    a.push_back({{"lo", b.lo}, {"hi", b.hi}, {"n", b.n}, {"confidence", b.confidence}, {"accuracy", b.accuracy}});
  return a;
}

}  // namespace

ClassProbabilities class_probabilities(const AuditData& data, const std::vector<std::string>& classes,
                                       const std::vector<std::string>& label_positive) {
  ClassProbabilities out;
  const size_t n = data.label.size();
  if (data.probability.empty())
    throw Error(ErrorCode::kInvalidArgument, "no probability column given",
                "pass --probability COL (the positive class's) or one column per class with --classes");
  if (data.probability.size() == 1) {
    const std::vector<std::string> pos = positive_values(data.label, label_positive, "--label-positive");
    std::vector<std::string> neg;
    for (const std::string& v : data.label.values)
      if (std::find(pos.begin(), pos.end(), v) == pos.end()) neg.push_back(v);
    out.n_classes = 2;
    out.classes = {neg.size() == 1 ? neg[0] : "not " + join(pos, "|"), join(pos, "|")};
    out.p.resize(2 * n);
    out.label.resize(n);
    std::vector<uint8_t> is_pos(data.label.values.size());
    for (size_t i = 0; i < is_pos.size(); ++i)
      is_pos[i] = std::find(pos.begin(), pos.end(), data.label.values[i]) != pos.end();
    for (size_t r = 0; r < n; ++r) {
      const float s = data.probability[0][r];
      out.p[2 * r] = 1.0f - s;
      out.p[2 * r + 1] = s;
      out.label[r] = is_pos[data.label.codes[r]];
    }
    return out;
  }
  const size_t K = data.probability.size();
  if (classes.size() != K)
    throw Error(ErrorCode::kInvalidArgument,
                std::to_string(K) + " probability columns but " + std::to_string(classes.size()) +
                    " class names: name the label value of each probability column",
                "pass --classes V1,V2,... in the order of the --probability columns");
  out.n_classes = static_cast<int64_t>(K);
  out.classes = classes;
  std::vector<int32_t> class_of(data.label.values.size(), -1);
  for (size_t v = 0; v < data.label.values.size(); ++v)
    for (size_t k = 0; k < K; ++k)
      if (classes[k] == data.label.values[v]) class_of[v] = static_cast<int32_t>(k);
  out.p.resize(K * n);
  out.label.resize(n);
  for (size_t r = 0; r < n; ++r) {
    const int32_t c = class_of[data.label.codes[r]];
    if (c < 0)
      throw Error(ErrorCode::kInvalidArgument,
                  data.source + ": record " + std::to_string(r + 1) + " has label '" +
                      data.label.values[data.label.codes[r]] + "', which is none of the classes (" +
                      join(classes, ", ") + ")",
                  "list every label value in --classes, with its probability column");
    out.label[r] = c;
    double sum = 0;
    for (size_t k = 0; k < K; ++k) sum += (out.p[r * K + k] = data.probability[k][r]);
    if (std::fabs(sum - 1) > 1e-3)
      throw Error(ErrorCode::kInvalidArgument,
                  data.source + ": the probabilities of record " + std::to_string(r + 1) + " sum to " +
                      std::to_string(sum) + ", not 1",
                  "give one probability column per class, each row summing to 1");
  }
  return out;
}

CalibrationMetrics calibration_metrics(const ClassProbabilities& probs, int bins,
                                       const std::vector<size_t>& rows_in, double temperature) {
  if (bins < 1) throw Error(ErrorCode::kInvalidArgument, "--bins must be at least 1");
  if (!(temperature > 0)) throw Error(ErrorCode::kInvalidArgument, "the temperature must be positive");
  const std::vector<size_t> rows = all_rows(probs, rows_in);
  CalibrationMetrics m;
  m.n = static_cast<int64_t>(rows.size());
  if (rows.empty()) return m;
  const int64_t K = probs.n_classes;
  std::vector<double> q, conf(rows.size());
  std::vector<uint8_t> correct(rows.size());
  double acc = 0, nll = 0, brier = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const size_t r = rows[i];
    const int32_t top = scaled(probs, r, temperature, &q);
    const int32_t y = probs.label[r];
    conf[i] = q[top];
    correct[i] = top == y;
    acc += correct[i];
    nll -= std::log(std::max(q[y], kFloor));
    if (K == 2) {
      brier += (q[1] - (y == 1)) * (q[1] - (y == 1));
    } else {
      for (int64_t k = 0; k < K; ++k) brier += (q[k] - (k == y)) * (q[k] - (k == y));
    }
  }
  const double n = static_cast<double>(rows.size());
  m.accuracy = acc / n;
  m.nll = nll / n;
  m.brier = brier / n;
  // Equal-width bins: [k / B, (k + 1) / B), the last closed.
  m.bins.resize(bins);
  for (int b = 0; b < bins; ++b) {
    m.bins[b].lo = static_cast<double>(b) / bins;
    m.bins[b].hi = static_cast<double>(b + 1) / bins;
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    const int b = std::min(bins - 1, static_cast<int>(conf[i] * bins));
    ReliabilityBin& rb = m.bins[b];
    ++rb.n;
    rb.confidence += conf[i];
    rb.accuracy += correct[i];
  }
  for (ReliabilityBin& rb : m.bins) {
    if (rb.n == 0) continue;
    rb.confidence /= static_cast<double>(rb.n);
    rb.accuracy /= static_cast<double>(rb.n);
    const double gap = std::fabs(rb.accuracy - rb.confidence);
    m.ece += static_cast<double>(rb.n) / n * gap;
    m.mce = std::max(m.mce, gap);
  }
  // Equal-mass bins over the rows sorted by confidence.
  std::vector<size_t> order(rows.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return conf[a] < conf[b]; });
  const size_t N = rows.size();
  for (int b = 0; b < bins; ++b) {
    const size_t s = N * static_cast<size_t>(b) / bins, e = N * static_cast<size_t>(b + 1) / bins;
    if (s == e) continue;
    ReliabilityBin rb;
    rb.lo = conf[order[s]];
    rb.hi = conf[order[e - 1]];
    rb.n = static_cast<int64_t>(e - s);
    for (size_t i = s; i < e; ++i) {
      rb.confidence += conf[order[i]];
      rb.accuracy += correct[order[i]];
    }
    rb.confidence /= static_cast<double>(rb.n);
    rb.accuracy /= static_cast<double>(rb.n);
    m.ece_mass += static_cast<double>(rb.n) / n * std::fabs(rb.accuracy - rb.confidence);
    m.mass_bins.push_back(rb);
  }
  return m;
}

double fit_temperature(const ClassProbabilities& probs, const std::vector<size_t>& rows_in) {
  const std::vector<size_t> rows = all_rows(probs, rows_in);
  if (rows.empty()) throw Error(ErrorCode::kInvalidArgument, "no rows to fit a temperature on");
  double a = std::log(0.05), b = std::log(20.0);
  const double g = (std::sqrt(5.0) - 1) / 2;
  double c = b - g * (b - a), d = a + g * (b - a);
  double fc = nll_at(probs, rows, std::exp(c)), fd = nll_at(probs, rows, std::exp(d));
  for (int it = 0; it < 60 && b - a > 1e-6; ++it) {
    if (fc < fd) {
      b = d;
      d = c;
      fd = fc;
      c = b - g * (b - a);
      fc = nll_at(probs, rows, std::exp(c));
    } else {
      a = c;
      c = d;
      fc = fd;
      d = a + g * (b - a);
      fd = nll_at(probs, rows, std::exp(d));
    }
  }
  return std::exp(0.5 * (a + b));
}

RiskCoverage risk_coverage(const ClassProbabilities& probs, const std::vector<size_t>& rows_in,
                           double temperature, int points) {
  const std::vector<size_t> rows = all_rows(probs, rows_in);
  RiskCoverage rc;
  const size_t n = rows.size();
  if (n == 0) return rc;
  std::vector<double> q, conf(n);
  std::vector<uint8_t> wrong(n);
  size_t errors = 0;
  for (size_t i = 0; i < n; ++i) {
    const int32_t top = scaled(probs, rows[i], temperature, &q);
    conf[i] = q[top];
    wrong[i] = top != probs.label[rows[i]];
    errors += wrong[i];
  }
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return conf[a] > conf[b]; });
  // cum[k]: expected errors among the k most confident (ties share their errors evenly).
  std::vector<double> cum(n + 1, 0);
  size_t s = 0;
  double before = 0;
  while (s < n) {
    size_t t = s;
    double e = 0;
    while (t < n && conf[order[t]] == conf[order[s]]) e += wrong[order[t++]];
    const double m = static_cast<double>(t - s);
    for (size_t k = s + 1; k <= t; ++k) cum[k] = before + static_cast<double>(k - s) * e / m;
    before += e;
    s = t;
  }
  double area = 0, optimal = 0;
  const size_t correct = n - errors;
  for (size_t k = 1; k <= n; ++k) {
    area += cum[k] / static_cast<double>(k);
    if (k > correct) optimal += static_cast<double>(k - correct) / static_cast<double>(k);
  }
  rc.aurc = area / static_cast<double>(n);
  rc.optimal_aurc = optimal / static_cast<double>(n);
  points = std::max(points, 2);
  size_t last = 0;
  for (int i = 0; i < points; ++i) {
    size_t k = static_cast<size_t>(std::llround(static_cast<double>(i) * n / (points - 1)));
    k = std::max<size_t>(1, std::min(n, k));
    if (k == last) continue;
    last = k;
    rc.coverage.push_back(static_cast<double>(k) / n);
    rc.risk.push_back(cum[k] / static_cast<double>(k));
  }
  return rc;
}

std::pair<std::vector<size_t>, std::vector<size_t>> split_rows(size_t n, double fraction, uint64_t seed) {
  if (!(fraction > 0 && fraction < 1))
    throw Error(ErrorCode::kInvalidArgument, "the calibration fraction must be in (0, 1)",
                "pass --calibration-fraction F with 0 < F < 1");
  std::vector<size_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::mt19937_64 gen(seed);
  for (size_t i = n; i > 1; --i) {
    std::uniform_int_distribution<size_t> d(0, i - 1);
    std::swap(idx[i - 1], idx[d(gen)]);
  }
  const size_t k = static_cast<size_t>(std::llround(static_cast<double>(n) * fraction));
  if (k == 0 || k >= n)
    throw Error(ErrorCode::kInvalidArgument,
                std::to_string(n) + " rows are too few to split into a calibration and a held-out part",
                "give more rows or another --calibration-fraction");
  std::vector<size_t> a(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(k)),
      b(idx.begin() + static_cast<std::ptrdiff_t>(k), idx.end());
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  return {a, b};
}

CalibrationResult audit_calibration(const ClassProbabilities& probs, const std::vector<CodedColumn>& groups,
                                    const CalibrationOptions& options) {
  if (probs.size() == 0) throw Error(ErrorCode::kInvalidArgument, "no rows to audit");
  CalibrationResult res;
  res.options = options;
  res.n_rows = probs.size();
  res.classes = probs.classes;
  res.all = calibration_metrics(probs, options.bins);
  res.risk_coverage = risk_coverage(probs);
  if (options.fit_temperature) {
    auto [cal, held] = split_rows(static_cast<size_t>(probs.size()), options.calibration_fraction, options.seed);
    res.n_calibration = static_cast<int64_t>(cal.size());
    res.n_heldout = static_cast<int64_t>(held.size());
    res.temperature = fit_temperature(probs, cal);
    res.heldout_before = calibration_metrics(probs, options.bins, held, 1);
    res.heldout_after = calibration_metrics(probs, options.bins, held, res.temperature);
  }
  for (const CodedColumn& g : groups) {
    std::vector<std::vector<size_t>> rows(g.values.size());
    for (size_t r = 0; r < g.codes.size(); ++r)
      if (g.codes[r] >= 0) rows[g.codes[r]].push_back(r);
    for (size_t v = 0; v < g.values.size(); ++v)
      if (!rows[v].empty())
        res.per_group.push_back({g.column + "=" + g.values[v], calibration_metrics(probs, options.bins, rows[v])});
  }
  return res;
}

nlohmann::json CalibrationMetrics::to_json() const {
  return {{"n", n},         {"accuracy", accuracy}, {"nll", nll},           {"brier", brier},
          {"ece", ece},     {"ece_mass", ece_mass}, {"mce", mce},           {"bins", bins_json(bins)},
          {"mass_bins", bins_json(mass_bins)}};
}

nlohmann::json RiskCoverage::to_json() const {
  return {{"coverage", coverage}, {"risk", risk}, {"aurc", aurc}, {"optimal_aurc", optimal_aurc},
          {"excess_aurc", aurc - optimal_aurc}};
}

nlohmann::json CalibrationResult::to_json() const {
  nlohmann::json j;
  j["audit"] = "calibration";
  j["n_rows"] = n_rows;
  j["n_skipped"] = n_skipped;
  j["classes"] = classes;
  j["options"] = {{"bins", options.bins},
                  {"calibration_fraction", options.calibration_fraction},
                  {"seed", options.seed}};
  j["all"] = all.to_json();
  if (options.fit_temperature) {
    j["temperature_scaling"] = {{"temperature", temperature},
                                {"n_calibration", n_calibration},
                                {"n_heldout", n_heldout},
                                {"heldout_before", heldout_before.to_json()},
                                {"heldout_after", heldout_after.to_json()}};
  }
  j["selective"] = risk_coverage.to_json();
  j["per_group"] = nlohmann::json::array();
  for (const auto& [name, m] : per_group) {
    nlohmann::json g = m.to_json();
    g.erase("bins");
    g.erase("mass_bins");
    g["group"] = name;
    j["per_group"].push_back(g);
  }
  return j;
}

}  // namespace candor::audit
