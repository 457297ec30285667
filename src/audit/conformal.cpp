// Split conformal prediction sets (LAC and APS scores) with coverage overall and per group.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "candor/audit.h"
#include "candor/error.h"

namespace candor::audit {

namespace {

// Classes of `row` by decreasing probability (ties by class index).
void conformal_order(const ClassProbabilities& probs, size_t row, std::vector<int32_t>* order) {
  const int64_t K = probs.n_classes;
  order->resize(K);
  std::iota(order->begin(), order->end(), 0);
  const float* p = &probs.p[row * K];
  std::stable_sort(order->begin(), order->end(), [p](int32_t a, int32_t b) { return p[a] > p[b]; });
}

double conformal_score_of(const ClassProbabilities& probs, size_t row, int32_t y, ConformalScore score,
                          std::vector<int32_t>* order) {
  const float* p = &probs.p[row * probs.n_classes];
  if (score == ConformalScore::kLac) return 1.0 - static_cast<double>(p[y]);
  conformal_order(probs, row, order);
  double cum = 0;
  for (int32_t k : *order) {
    cum += p[k];
    if (k == y) break;
  }
  return cum;
}

nlohmann::json conformal_num(double x) {
  return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json("inf");
}

}  // namespace

const char* conformal_score_name(ConformalScore score) { return score == ConformalScore::kLac ? "lac" : "aps"; }

ConformalScore parse_conformal_score(const std::string& name) {
  if (name == "lac") return ConformalScore::kLac;
  if (name == "aps") return ConformalScore::kAps;
  throw Error(ErrorCode::kInvalidArgument, "unknown conformal score '" + name + "'", "use lac or aps");
}

double conformal_threshold(const ClassProbabilities& probs, const std::vector<size_t>& calibration, double alpha,
                           ConformalScore score) {
  if (!(alpha > 0 && alpha < 1))
    throw Error(ErrorCode::kInvalidArgument, "alpha must be in (0, 1)", "pass --alpha A, e.g. 0.1");
  if (calibration.empty()) throw Error(ErrorCode::kInvalidArgument, "no calibration rows");
  std::vector<double> s;
  s.reserve(calibration.size());
  std::vector<int32_t> order;
  for (size_t r : calibration) s.push_back(conformal_score_of(probs, r, probs.label[r], score, &order));
  std::sort(s.begin(), s.end());
  const double n = static_cast<double>(s.size());
  const auto k = static_cast<size_t>(std::ceil((n + 1) * (1 - alpha) - 1e-9));
  if (k > s.size()) return std::numeric_limits<double>::infinity();
  return s[std::max<size_t>(k, 1) - 1];
}

std::vector<int32_t> conformal_set(const ClassProbabilities& probs, size_t row, double threshold,
                                   ConformalScore score) {
  std::vector<int32_t> set;
  const float* p = &probs.p[row * probs.n_classes];
  if (score == ConformalScore::kLac) {
    for (int32_t k = 0; k < probs.n_classes; ++k)
      if (1.0 - static_cast<double>(p[k]) <= threshold) set.push_back(k);
    return set;
  }
  std::vector<int32_t> order;
  conformal_order(probs, row, &order);
  double cum = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    cum += p[order[i]];
    if (cum <= threshold || i == 0) set.push_back(order[i]);
    else break;
  }
  std::sort(set.begin(), set.end());
  return set;
}

ConformalResult audit_conformal(const ClassProbabilities& probs, const std::vector<CodedColumn>& groups,
                                const ConformalOptions& options) {
  if (probs.size() == 0) throw Error(ErrorCode::kInvalidArgument, "no rows to audit");
  ConformalResult res;
  res.options = options;
  res.n_rows = probs.size();
  res.classes = probs.classes;
  std::tie(res.calibration, res.heldout) =
      split_rows(static_cast<size_t>(probs.size()), options.calibration_fraction, options.seed);
  for (ConformalScore score : options.scores) {
    ConformalMethodResult m;
    m.score = score;
    m.threshold = conformal_threshold(probs, res.calibration, options.alpha, score);
    double covered = 0, size = 0;
    std::vector<uint8_t> cov;
    for (size_t r : res.heldout) {
      std::vector<int32_t> set = conformal_set(probs, r, m.threshold, score);
      const bool in = std::binary_search(set.begin(), set.end(), probs.label[r]);
      covered += in;
      cov.push_back(in);
      size += static_cast<double>(set.size());
      m.n_empty += set.empty();
      m.sets.push_back(std::move(set));
    }
    const double n = static_cast<double>(res.heldout.size());
    m.coverage = covered / n;
    m.mean_set_size = size / n;
    for (const CodedColumn& g : groups) {
      std::vector<std::array<double, 3>> acc(g.values.size(), {0, 0, 0});
      for (size_t i = 0; i < res.heldout.size(); ++i) {
        const int32_t c = g.codes[res.heldout[i]];
        if (c < 0) continue;
        acc[c][0] += 1;
        acc[c][1] += cov[i];
        acc[c][2] += static_cast<double>(m.sets[i].size());
      }
      for (size_t v = 0; v < g.values.size(); ++v)
        if (acc[v][0] > 0)
          m.per_group.push_back({g.column + "=" + g.values[v], {acc[v][0], acc[v][1] / acc[v][0], acc[v][2] / acc[v][0]}});
    }
    res.methods.push_back(std::move(m));
  }
  return res;
}

nlohmann::json ConformalResult::to_json() const {
  nlohmann::json j;
  j["audit"] = "conformal";
  j["n_rows"] = n_rows;
  j["n_skipped"] = n_skipped;
  j["classes"] = classes;
  j["alpha"] = options.alpha;
  j["target_coverage"] = 1 - options.alpha;
  j["options"] = {{"calibration_fraction", options.calibration_fraction}, {"seed", options.seed}};
  j["n_calibration"] = calibration.size();
  j["n_heldout"] = heldout.size();
  j["methods"] = nlohmann::json::array();
  for (const ConformalMethodResult& m : methods) {
    nlohmann::json g = nlohmann::json::array();
    for (const auto& [name, a] : m.per_group)
      g.push_back({{"group", name}, {"n", static_cast<int64_t>(a[0])}, {"coverage", a[1]}, {"mean_set_size", a[2]}});
    j["methods"].push_back({{"score", conformal_score_name(m.score)},
                            {"threshold", conformal_num(m.threshold)},
                            {"coverage", m.coverage},
                            {"mean_set_size", m.mean_set_size},
                            {"n_empty", m.n_empty},
                            {"per_group", g}});
  }
  return j;
}

}  // namespace candor::audit
