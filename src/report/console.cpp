// The console view of an attribution: coloured text and the strongest features.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <sstream>

#include "candor/report.h"
#include "report/html_page.h"

namespace candor {

std::string render_console(const Attribution& a, bool color, int top) {
  std::ostringstream o;
  o << "== " << a.method;
  for (const auto& [k, v] : a.options) o << " " << k << "=" << v;
  o << "\n";
  if (a.scores.empty()) {
    o << "(a view of the model's internals; see the JSON or HTML report)\n";
    return o.str();
  }
  std::vector<double> tot = a.total();
  double scale = 0;
  for (double v : tot) scale = std::max(scale, std::fabs(v));
  std::vector<int64_t> feature_of(a.tokens.size(), -1);
  for (size_t f = 0; f < a.features.size(); ++f)
    for (int64_t t = a.features[f].begin; t < a.features[f].end; ++t)
      feature_of[t] = static_cast<int64_t>(f);
  // ANSI 256-colour ramps: blues for negative, reds for positive.
  static const int kRed[] = {224, 217, 210, 203, 196};
  static const int kBlue[] = {195, 153, 117, 75, 33};
  for (size_t t = 0; t < a.tokens.size(); ++t) {
    std::string text = a.token_texts[t];
    std::replace(text.begin(), text.end(), '\n', ' ');
    int64_t f = feature_of[t];
    if (!color || f < 0 || scale == 0) {
      o << text;
      continue;
    }
    double r = tot[f] / scale;
    int level = std::min(4, static_cast<int>(std::fabs(r) * 5));
    int code = r >= 0 ? kRed[level] : kBlue[level];
    o << "\x1b[48;5;" << code << "m\x1b[30m" << text << "\x1b[0m";
  }
  o << "\n";
  if (a.n_steps() == 1) {
    char buf[160];
    std::snprintf(buf, sizeof(buf), "target %s(%s) = %.4g, baseline %.4g\n",
                  a.target_function.c_str(), report::visible_text(a.step_texts[0]).c_str(),
                  a.target_values[0], a.baseline_values[0]);
    o << buf;
  } else {
    o << "span of " << a.n_steps() << " steps (scores summed over steps)\n";
  }
  for (const auto& w : a.warnings) o << "warning: " << w << "\n";
  std::vector<size_t> idx(tot.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(),
            [&](size_t x, size_t y) { return std::fabs(tot[x]) > std::fabs(tot[y]); });
  const int shown = std::min(std::max(top, 0), static_cast<int>(idx.size()));
  for (int i = 0; i < shown; ++i) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "  %+10.4f  ", tot[idx[i]]);
    o << buf << report::feature_text(a, idx[i]) << "\n";
  }
  if (shown < static_cast<int>(idx.size()))
    o << "  ... and " << idx.size() - shown << " more feature"
      << (idx.size() - shown == 1 ? "" : "s") << " (all of them in --json and --html)\n";
  if (!a.convergence_delta.empty()) {
    // Path methods: how far the scores of the worst step are from adding up to the target's
    // change, absolute and relative to that change.
    size_t worst = 0;
    for (size_t s = 1; s < a.convergence_delta.size(); ++s)
      if (std::fabs(a.convergence_delta[s]) > std::fabs(a.convergence_delta[worst])) worst = s;
    const double gap = std::fabs(a.target_values[worst] - a.baseline_values[worst]);
    char line[200];
    std::snprintf(line, sizeof(line),
                  "  completeness: |sum of scores - (f(x) - f(baseline))| = %.3g (%.2g of "
                  "|f(x) - f(baseline)|)%s\n",
                  std::fabs(a.convergence_delta[worst]),
                  gap > 0 ? std::fabs(a.convergence_delta[worst]) / gap : 0.0,
                  a.convergence_delta.size() > 1 ? ", worst step" : "");
    o << line;
  }
  char buf[160];
  std::snprintf(buf, sizeof(buf), "  (%.1f ms, %.1f forward-pass equivalents)\n", a.elapsed_ms,
                a.forward_passes);
  o << buf;
  if (a.extra.is_object() && a.extra.contains("quality")) {
    // The quality block of --evaluate (docs/evaluation.md), the figures the HTML table shows.
    const auto& q = a.extra["quality"];
    auto num = [](const nlohmann::json& j, const char* key) {
      return j.contains(key) && j[key].is_number() ? j[key].get<double>() : std::nan("");
    };
    char line[240];
    std::snprintf(line, sizeof(line),
                  "  quality: comprehensiveness AOPC %.4g (higher is better), sufficiency AOPC "
                  "%.4g (lower is better)",
                  num(q, "comprehensiveness_aopc"), num(q, "sufficiency_aopc"));
    o << line;
    if (q.contains("removal") && q["removal"].is_string())
      o << ", removal " << q["removal"].get<std::string>();
    o << "\n";
    if (q.contains("sensitivity") && q["sensitivity"].is_object()) {
      std::snprintf(line, sizeof(line),
                    "  sensitivity: max %.4g, avg %.4g (lower is more stable)\n",
                    num(q["sensitivity"], "max_sensitivity"),
                    num(q["sensitivity"], "avg_sensitivity"));
      o << line;
    }
    if (q.contains("agreement_spearman") && q["agreement_spearman"].is_object() &&
        !q["agreement_spearman"].empty()) {
      o << "  agreement (Spearman):";
      bool first = true;
      for (const auto& [m, v] : q["agreement_spearman"].items()) {
        std::snprintf(line, sizeof(line), "%s %s %.3f", first ? "" : ",", m.c_str(),
                      v.is_number() ? v.get<double>() : std::nan(""));
        o << line;
        first = false;
      }
      o << "\n";
    }
  }
  return o.str();
}

}  // namespace candor
