// A consensus of several attributions of one request, each weighted by its mean agreement
// (Spearman) with the others.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "candor/error.h"
#include "evaluate/internal.h"

namespace candor {

Attribution consensus(const std::vector<Attribution>& attributions) {
  std::vector<const Attribution*> in;
  for (const auto& a : attributions)
    if (!a.scores.empty()) in.push_back(&a);
  if (in.empty())
    throw Error(ErrorCode::kInvalidArgument, "a consensus needs attributions with scores");
  for (const auto* a : in) {
    if (a->scores.size() != in[0]->scores.size() || a->tokens != in[0]->tokens) {
      throw Error(ErrorCode::kInvalidArgument,
                  "a consensus needs attributions of the same request ('" + a->method +
                      "' differs from '" + in[0]->method + "')");
    }
  }
  const size_t M = in.size();
  std::vector<std::vector<double>> totals;
  for (const auto* a : in) totals.push_back(a->total());
  std::vector<double> w(M, 0.0);
  for (size_t i = 0; i < M; ++i) {
    double s = 0;
    for (size_t j = 0; j < M; ++j)
      if (j != i) s += spearman(totals[i], totals[j]);
    w[i] = M > 1 ? std::max(0.0, s / static_cast<double>(M - 1)) : 1.0;
  }
  double wsum = 0;
  for (double x : w) wsum += x;
  if (!(wsum > 0)) {
    std::fill(w.begin(), w.end(), 1.0);
    wsum = static_cast<double>(M);
  }
  Attribution c = *in[0];
  c.method = "consensus";
  c.options.clear();
  c.extra = nlohmann::json();
  c.convergence_delta.clear();
  c.forward_passes = 0;
  c.elapsed_ms = 0;
  std::fill(c.scores.begin(), c.scores.end(), 0.0);
  nlohmann::json weights = nlohmann::json::object();
  for (size_t i = 0; i < M; ++i) {
    double mx = 0;
    for (double x : in[i]->scores) mx = std::max(mx, std::fabs(x));
    const double scale = mx > 0 ? w[i] / wsum / mx : 0.0;
    for (size_t j = 0; j < c.scores.size(); ++j) c.scores[j] += scale * in[i]->scores[j];
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.4f", w[i] / wsum);
    c.options[in[i]->method] = buf;
    weights[in[i]->method] = w[i] / wsum;
    c.forward_passes += in[i]->forward_passes;
  }
  c.extra["consensus_weights"] = weights;
  return c;
}

}  // namespace candor
