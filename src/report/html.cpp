// The self-contained HTML report of one or more attributions of the same request.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "candor/report.h"
#include "report/html_page.h"

namespace candor {
namespace {

std::string esc(const std::string& s) { return report::html_escape(s, true); }
std::string fmt(double v, int prec = 4) { return report::fmt_num(v, prec); }
std::string colour(double v, double scale) { return report::diverging_colour(v, scale); }

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}



// The text of the sequence with each token coloured by the score of its feature.
void heat_text(std::ostringstream& o, const Attribution& a,
               const std::vector<double>& feature_scores, int64_t upto_position) {
  double scale = max_abs(feature_scores);
  std::vector<int64_t> feature_of(a.tokens.size(), -1);
  for (size_t f = 0; f < a.features.size(); ++f)
    for (int64_t t = a.features[f].begin; t < a.features[f].end; ++t)
      feature_of[t] = static_cast<int64_t>(f);
  o << "<div class=text>";
  for (size_t t = 0; t < a.tokens.size(); ++t) {
    if (static_cast<int64_t>(t) > upto_position) break;
    int64_t f = feature_of[t];
    bool gen = static_cast<int64_t>(t) >= a.n_input_tokens;
    std::string cls = std::string("tok") + (gen ? " gen" : "") + (f < 0 ? " off" : "");
    if (f < 0) {
      o << "<span class='" << cls << "' title='not a feature'>" << esc(a.token_texts[t])
        << "</span>";
      continue;
    }
    double v = feature_scores[f];
    o << "<span class='" << cls << "' style='background:" << colour(v, scale) << "' title='"
      << esc(report::feature_text(a, static_cast<size_t>(f))) << ": " << fmt(v) << "'>"
      << esc(a.token_texts[t]) << "</span>";
  }
  o << "</div>";
}

void attribution_card(std::ostringstream& o, const Attribution& a) {
  o << "<div class=card><h3>" << esc(a.method) << "</h3><div class=small>";
  for (const auto& [k, v] : a.options) o << esc(k) << "=" << esc(v) << " ";
  o << "</div>";
  if (a.scores.empty()) {
    o << "<p class=small>a view of the model's internals (no per-feature scores)</p></div>";
    return;
  }
  std::vector<double> tot = a.total();
  if (a.n_steps() == 1) {
    heat_text(o, a, tot, static_cast<int64_t>(a.tokens.size()) - 1);
    o << "<p class=small>explains <b>" << esc(report::visible_text(a.step_texts[0])) << "</b> (" << esc(a.target_function)
      << "): f(x) = " << fmt(a.target_values[0]) << ", f(baseline) = " << fmt(a.baseline_values[0]);
  } else {
    o << "<p class=small>sum over the " << a.n_steps() << " generated steps:</p>";
    heat_text(o, a, tot, static_cast<int64_t>(a.tokens.size()) - 1);
    o << "<p class=small>cost";
  }
  for (const auto& w : a.warnings) o << "<p class=warn>warning: " << esc(w) << "</p>";
  double delta = 0;
  for (double d : a.convergence_delta) delta = std::max(delta, std::fabs(d));
  if (!a.convergence_delta.empty()) o << ", max |convergence delta| = " << fmt(delta, 3);
  o << "; " << fmt(a.elapsed_ms, 3) << " ms, " << fmt(a.forward_passes, 3)
    << " forward-pass equivalents</p>";
  if (a.n_steps() > 1) {
    // Generated step x feature matrix.
    double scale = max_abs(a.scores);
    o << "<div style='overflow-x:auto'><table class=grid><tr><th>step</th>";
    for (size_t f = 0; f < a.features.size(); ++f)
      o << "<th>" << esc(report::feature_text(a, f)) << "</th>";
    o << "</tr>";
    for (int64_t s = 0; s < a.n_steps(); ++s) {
      o << "<tr><th>" << esc(a.step_texts[s]) << "</th>";
      for (int64_t f = 0; f < a.n_features(); ++f) {
        bool vis = a.features[f].begin <= a.step_positions[s];
        double v = a.score(s, f);
        if (!vis) {
          o << "<td style='background:#f4f4f4'></td>";
        } else {
          o << "<td style='background:" << colour(v, scale) << "' title='" << fmt(v) << "'></td>";
        }
      }
      o << "</tr>";
    }
    o << "</table></div>";
  }
  o << "</div>";
}

void side_by_side(std::ostringstream& o, const std::vector<Attribution>& as) {
  std::vector<const Attribution*> scored;
  for (const auto& a : as)
    if (!a.scores.empty()) scored.push_back(&a);
  if (scored.size() < 2) return;
  o << "<h2>Methods side by side</h2><p class=small>each column scaled to its own largest |score|;"
       " hover for values</p><table class=grid><tr><th>feature</th>";
  for (const auto* a : scored) o << "<th>" << esc(a->method) << "</th>";
  o << "</tr>";
  std::vector<std::vector<double>> totals;
  std::vector<double> scales;
  for (const auto* a : scored) {
    totals.push_back(a->total());
    scales.push_back(max_abs(totals.back()));
  }
  for (int64_t f = 0; f < scored[0]->n_features(); ++f) {
    o << "<tr><th>" << esc(report::feature_text(*scored[0], static_cast<size_t>(f))) << "</th>";
    for (size_t m = 0; m < scored.size(); ++m) {
      double v = f < static_cast<int64_t>(totals[m].size()) ? totals[m][f] : 0;
      o << "<td style='background:" << colour(v, scales[m]) << "'>" << fmt(v, 3) << "</td>";
    }
    o << "</tr>";
  }
  o << "</table>";
}

void lens_grid(std::ostringstream& o, const Attribution& a) {
  if (!a.extra.is_object() || !a.extra.contains("logit_lens")) return;
  const auto& lens = a.extra["logit_lens"];
  o << "<h2>Logit lens</h2><p class=small>per layer (rows) and explained step (columns): the top"
       " token and the target's probability; darker = more probable</p><div "
       "style='overflow-x:auto'>"
    << "<table class=grid>";
  // Accepts {"layers": [...]} with per-layer "steps": [{"target_prob", "target_rank", "top":
  // [{"text","prob"}]}]
  const auto& layers = lens.contains("layers") ? lens["layers"] : lens;
  if (!layers.is_array()) {
    o << "</table></div>";
    return;
  }
  for (size_t l = 0; l < layers.size(); ++l) {
    const auto& layer = layers[l];
    o << "<tr><th>" << esc(layer.value("name", std::to_string(l))) << "</th>";
    const auto& steps = layer.contains("steps") ? layer["steps"] : nlohmann::json::array();
    for (const auto& st : steps) {
      double p = st.value("target_prob", 0.0);
      std::string top;
      if (st.contains("top") && st["top"].is_array() && !st["top"].empty())
        top = st["top"][0].value("text", "");
      std::ostringstream tip;
      tip << "target p=" << fmt(p, 3) << " rank=" << st.value("target_rank", -1);
      if (st.contains("top"))
        for (const auto& t : st["top"])
          tip << "\n" << t.value("text", "") << " " << fmt(t.value("prob", 0.0), 3);
      int shade = static_cast<int>(255 - 200 * std::min(1.0, std::max(0.0, p)));
      o << "<td style='background:rgb(" << shade << "," << shade << ",255)"
        << (shade < 140 ? ";color:#fff" : "") << "' title='" << esc(tip.str()) << "'>" << esc(top)
        << "<br><span class=small>" << fmt(p, 2) << "</span></td>";
    }
    o << "</tr>";
  }
  o << "</table></div>";
}

void attention_maps(std::ostringstream& o, const Attribution& a) {
  if (!a.extra.is_object() || !a.extra.contains("attention")) return;
  const auto& att = a.extra["attention"];
  if (!att.is_array() || att.empty()) return;
  o << "<h2>Attention maps</h2><p class=small>head-averaged attention per layer, query (rows) to "
       "key"
       " (columns)</p><div class=methods>";
  const int64_t n = static_cast<int64_t>(a.tokens.size());
  for (size_t l = 0; l < att.size(); ++l) {
    const auto& m = att[l];
    if (!m.is_array()) continue;
    const int64_t q = static_cast<int64_t>(m.size());
    const double cell = std::max(4.0, std::min(18.0, 420.0 / std::max<int64_t>(1, q)));
    o << "<div class=card><b>layer " << l << "</b><br><svg width='" << cell * q + 2 << "' height='"
      << cell * q + 2 << "'>";
    for (int64_t i = 0; i < q; ++i) {
      for (int64_t j = 0; j < static_cast<int64_t>(m[i].size()); ++j) {
        double v = m[i][j].get<double>();
        if (v <= 0) continue;
        int shade = static_cast<int>(255 - 230 * std::min(1.0, v));
        o << "<rect x='" << j * cell << "' y='" << i * cell << "' width='" << cell << "' height='"
          << cell << "' fill='rgb(" << shade << "," << shade << ",255)'><title>"
          << esc(i < n ? a.token_texts[i] : "") << " -> " << esc(j < n ? a.token_texts[j] : "")
          << ": " << fmt(v, 3) << "</title></rect>";
      }
    }
    o << "</svg></div>";
  }
  o << "</div>";
}

// The quality block of `candor explain --evaluate` (extra["quality"]), one row per method.
void quality_table(std::ostringstream& o, const std::vector<Attribution>& as) {
  bool any = false;
  for (const auto& a : as) any = any || (a.extra.is_object() && a.extra.contains("quality"));
  if (!any) return;
  o << "<h2>Quality</h2><p class=small>comprehensiveness: drop of the target when the top "
       "features are removed (higher: more faithful); sufficiency: drop when only they are kept "
       "(lower: better); AOPC = mean over the top fractions. Sensitivity: relative change of the "
       "scores under small input noise (lower: more stable). Agreement: Spearman correlation "
       "with the other methods. See docs/evaluation.md.</p><table class=grid><tr><th>method</th>"
       "<th>comprehensiveness AOPC</th><th>sufficiency AOPC</th><th>max sensitivity</th>"
       "<th>avg sensitivity</th><th>agreement</th><th>cost (FPE)</th></tr>";
  for (const auto& a : as) {
    if (!a.extra.is_object() || !a.extra.contains("quality")) continue;
    const auto& q = a.extra["quality"];
    o << "<tr><th>" << esc(a.method) << "</th><td>"
      << fmt(q.value("comprehensiveness_aopc", 0.0), 3) << "</td><td>"
      << fmt(q.value("sufficiency_aopc", 0.0), 3) << "</td>";
    if (q.contains("sensitivity")) {
      o << "<td>" << fmt(q["sensitivity"].value("max_sensitivity", 0.0), 3) << "</td><td>"
        << fmt(q["sensitivity"].value("avg_sensitivity", 0.0), 3) << "</td>";
    } else {
      o << "<td></td><td></td>";
    }
    o << "<td style='text-align:left'>";
    if (q.contains("agreement_spearman"))
      for (const auto& [m, v] : q["agreement_spearman"].items())
        o << esc(m) << " " << fmt(v.get<double>(), 2) << "<br>";
    o << "</td><td>" << fmt(q.value("forward_passes", 0.0), 3) << "</td></tr>";
  }
  o << "</table>";
}

}  // namespace

std::string render_html(const std::vector<Attribution>& as, const ReportContext& c) {
  std::ostringstream o;
  o << report::page_begin(c.title);
  o << "<table class=meta>";
  if (!c.model.empty()) o << "<tr><td>model</td><td>" << esc(c.model) << "</td></tr>";
  o << "<tr><td>prompt</td><td>" << esc(c.prompt) << "</td></tr>";
  if (!c.generated_text.empty())
    o << "<tr><td>generated</td><td>" << esc(c.generated_text) << "</td></tr>";
  if (!c.target_description.empty())
    o << "<tr><td>target</td><td>" << esc(c.target_description) << "</td></tr>";
  // Warnings the reader must see before the scores (a saturated target), each once.
  std::vector<std::string> warnings;
  for (const auto& a : as)
    for (const auto& w : a.warnings)
      if (std::find(warnings.begin(), warnings.end(), w) == warnings.end()) warnings.push_back(w);
  o << "</table>";
  for (const auto& w : warnings) o << "<p class=warn>warning: " << esc(w) << "</p>";
  o << "<p class=small>negative<span class=legend></span>positive contribution to the "
       "target"
       " (each method scaled to its largest |score|; hover a token for its value)</p>";
  o << "<h2>Attributions</h2><div class=methods>";
  for (const auto& a : as) attribution_card(o, a);
  o << "</div>";
  side_by_side(o, as);
  quality_table(o, as);
  for (const auto& a : as) lens_grid(o, a);
  for (const auto& a : as) attention_maps(o, a);
  o << "<p class=small>made by candor</p>" << report::page_end();
  return o.str();
}

}  // namespace candor
