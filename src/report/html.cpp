// The self-contained HTML report of one or more attributions of the same request.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <sstream>
#include <tuple>

#include "candor/report.h"
#include "report/html_page.h"

namespace candor {
namespace {

using report::colour_style;
using report::diverging_colour;
using report::feature_text;
using report::visible_text;

std::string esc(const std::string& s) { return report::html_escape(s, true); }
std::string fmt(double v, int prec = 4) { return report::fmt_num(v, prec); }

// Matrices with more cells than this show the strongest kMaxRows steps and kMaxCols features
// (with their values); the rest is in the CSV beside the page and in the JSON output.
constexpr int64_t kMaxPrintedCells = 600;
constexpr int64_t kMaxRows = 16, kMaxCols = 24;
// Attention maps with more query tokens than this print no values in their cells; the strongest
// kTopLinks weights of each layer are listed under the map instead.
constexpr int64_t kMaxPrintedQueries = 14;
constexpr size_t kTopLinks = 12;

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

// Features ordered by |score|, largest first (ties: earlier first).
std::vector<size_t> by_magnitude(const std::vector<double>& v) {
  std::vector<size_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(),
                   [&](size_t a, size_t b) { return std::fabs(v[a]) > std::fabs(v[b]); });
  return idx;
}

std::string score_title(const Attribution& a) {
  return "contribution to " + (a.target_function.empty() ? std::string("the target")
                                                          : a.target_function);
}

// The text of the sequence with each token coloured by the score of its feature.
void heat_text(std::ostringstream& o, const Attribution& a,
               const std::vector<double>& feature_scores, int64_t upto_position) {
  double scale = max_abs(feature_scores);
  std::vector<int64_t> feature_of(a.tokens.size(), -1);
  for (size_t f = 0; f < a.features.size(); ++f)
    for (int64_t t = a.features[f].begin; t < a.features[f].end; ++t)
      feature_of[t] = static_cast<int64_t>(f);
  o << "<div class=fig>" << report::diverging_legend(scale, score_title(a))
    << "<div class=text data-colour=value>";
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
    o << "<span class='" << cls << "' style='" << colour_style(diverging_colour(v, scale))
      << "' title='" << esc(feature_text(a, static_cast<size_t>(f))) << ": " << fmt(v, 3) << "'>"
      << esc(a.token_texts[t]) << "</span>";
  }
  o << "</div></div>";
}

// The strongest features with their values (what the colours say, in numbers).
void top_table(std::ostringstream& o, const Attribution& a, const std::vector<double>& tot,
               size_t top = 8) {
  const std::vector<size_t> order = by_magnitude(tot);
  const size_t n = std::min(top, order.size());
  o << "<table class=num><caption class=small>the " << n << " strongest of " << order.size()
    << " features</caption><tr><th>feature</th><th>score</th></tr>";
  for (size_t i = 0; i < n; ++i)
    o << "<tr><th style='text-align:left'>" << esc(feature_text(a, order[i])) << "</th><td>"
      << fmt(tot[order[i]], 3) << "</td></tr>";
  o << "</table>";
  if (order.size() > n) {
    o << "<details><summary>all " << order.size() << " feature scores, in text order</summary>"
      << "<table class=num><tr><th>feature</th><th>score</th></tr>";
    for (size_t f = 0; f < tot.size(); ++f)
      o << "<tr><th style='text-align:left'>" << esc(feature_text(a, f)) << "</th><td>"
        << fmt(tot[f], 3) << "</td></tr>";
    o << "</table></details>";
  }
}

// The rows (steps) and columns (features) of `a`'s step x feature matrix a page prints: all of
// them when the matrix is small, else the kMaxRows steps and kMaxCols features with the largest
// sums of |score|, in their order.
std::pair<std::vector<int64_t>, std::vector<int64_t>> shown_cells(const Attribution& a) {
  const int64_t S = a.n_steps(), F = a.n_features();
  std::vector<double> row(S, 0.0), col(F, 0.0);
  for (int64_t s = 0; s < S; ++s)
    for (int64_t f = 0; f < F; ++f) {
      const double v = std::fabs(a.score(s, f));
      row[s] += v;
      col[f] += v;
    }
  auto pick = [](const std::vector<double>& mass, int64_t keep) {
    std::vector<int64_t> idx(mass.size());
    std::iota(idx.begin(), idx.end(), 0);
    if (static_cast<int64_t>(idx.size()) > keep) {
      std::stable_sort(idx.begin(), idx.end(),
                       [&](int64_t x, int64_t y) { return mass[x] > mass[y]; });
      idx.resize(keep);
      std::sort(idx.begin(), idx.end());
    }
    return idx;
  };
  if (S * F <= kMaxPrintedCells) return {pick(row, S), pick(col, F)};
  return {pick(row, kMaxRows), pick(col, kMaxCols)};
}

// Generated step x feature matrix, every printed cell with its value.
void step_matrix(std::ostringstream& o, const Attribution& a, const std::string& csv) {
  const double scale = max_abs(a.scores);
  const auto [rows, cols] = shown_cells(a);
  const int64_t S = a.n_steps(), F = a.n_features();
  const bool whole = static_cast<int64_t>(rows.size()) == S && static_cast<int64_t>(cols.size()) == F;
  o << "<div class=fig><p class=small>per generated step (rows) and input feature (columns)";
  if (!whole)
    o << ": the " << rows.size() << " steps and " << cols.size()
      << " features with the largest sums of |score| (in text order) of " << S << " &times; " << F
      << "; the other " << S - static_cast<int64_t>(rows.size()) << " steps and "
      << F - static_cast<int64_t>(cols.size()) << " features are left out here. "
      << "The whole matrix is in "
      << (csv.empty() ? std::string("the JSON output (--json)")
                      : "<b>" + esc(csv) + "</b> beside this page and in the JSON output (--json)")
      << ", scores[step][feature]";
  else if (F > 12)
    o << "; scroll sideways to see all " << F << " features";
  o << "</p>" << report::diverging_legend(scale, score_title(a))
    << "<div class=scroll><table class=grid data-colour=value><tr><th>step \\ "
       "feature</th>";
  for (int64_t f : cols)
    o << "<th class=rot><span>" << esc(report::shorten(feature_text(a, static_cast<size_t>(f)), 16))
      << "</span></th>";
  o << "</tr>";
  for (int64_t s : rows) {
    o << "<tr><th>" << esc(visible_text(a.step_texts[s])) << "</th>";
    for (int64_t f : cols) {
      if (a.features[f].begin > a.step_positions[s]) {
        o << "<td style='background:#f4f4f4'></td>";
      } else {
        const double v = a.score(s, f);
        o << "<td style='" << colour_style(diverging_colour(v, scale)) << "'>" << fmt(v, 2)
          << "</td>";
      }
    }
    o << "</tr>";
  }
  o << "</table></div><p class=small>grey: the feature comes after the step and cannot "
       "affect it</p></div>";
}

void attribution_card(std::ostringstream& o, const Attribution& a, const std::string& csv) {
  o << "<div class=card><h3>" << esc(a.method) << "</h3><div class=small>";
  for (const auto& [k, v] : a.options) o << esc(k) << "=" << esc(v) << " ";
  o << "</div>";
  if (a.scores.empty()) {
    o << "<p class=small>a view of the model's internals (no per-feature scores; see its "
         "section below)</p></div>";
    return;
  }
  std::vector<double> tot = a.total();
  if (a.n_steps() == 1) {
    heat_text(o, a, tot, static_cast<int64_t>(a.tokens.size()) - 1);
    o << "<p class=small>explains <b>" << esc(visible_text(a.step_texts[0])) << "</b> ("
      << esc(a.target_function) << "): f(x) = " << fmt(a.target_values[0])
      << ", f(baseline) = " << fmt(a.baseline_values[0]);
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
  top_table(o, a, tot);
  if (a.n_steps() > 1) step_matrix(o, a, csv);
  o << "</div>";
}

void side_by_side(std::ostringstream& o, const std::vector<Attribution>& as) {
  std::vector<const Attribution*> scored;
  for (const auto& a : as)
    if (!a.scores.empty()) scored.push_back(&a);
  if (scored.size() < 2) return;
  o << "<h2>Methods side by side</h2><div class=fig><p class=small>the total score of each "
       "feature by each method; the colour of a cell is its score divided by the largest |score| "
       "of its method (column), so columns of different units compare</p>"
    << report::diverging_legend(1, "score / largest |score| of the method")
    << "<div class=scroll><table class=grid data-colour=value><tr><th>feature</th>";
  for (const auto* a : scored) o << "<th>" << esc(a->method) << "</th>";
  o << "</tr>";
  std::vector<std::vector<double>> totals;
  std::vector<double> scales;
  for (const auto* a : scored) {
    totals.push_back(a->total());
    scales.push_back(max_abs(totals.back()));
  }
  for (int64_t f = 0; f < scored[0]->n_features(); ++f) {
    o << "<tr><th>" << esc(feature_text(*scored[0], static_cast<size_t>(f))) << "</th>";
    for (size_t m = 0; m < scored.size(); ++m) {
      double v = f < static_cast<int64_t>(totals[m].size()) ? totals[m][f] : 0;
      o << "<td style='" << colour_style(diverging_colour(v, scales[m])) << "'>" << fmt(v, 3)
        << "</td>";
    }
    o << "</tr>";
  }
  o << "</table></div></div>";
}

void lens_grid(std::ostringstream& o, const Attribution& a) {
  if (!a.extra.is_object() || !a.extra.contains("logit_lens")) return;
  const auto& lens = a.extra["logit_lens"];
  // Accepts {"layers": [...]} with per-layer "steps": [{"target_prob", "target_rank", "top":
  // [{"text","prob"}]}]
  const auto& layers = lens.contains("layers") ? lens["layers"] : lens;
  if (!layers.is_array()) return;
  o << "<h2>Logit lens</h2><div class=fig><p class=small>what each layer (rows, input "
       "embeddings first) would predict at each explained step (columns, headed by the token "
       "explained there): its most probable next token, then the probability p of the explained "
       "token and its rank among all tokens (rank 0: the layer's top choice). The colour is p. "
       "&#9251; marks a space.</p>"
    << report::sequential_legend(0, 1, "probability of the explained token")
    << "<div class=scroll><table class=grid data-colour=value><tr><th>layer \\ step</th>";
  for (int64_t s = 0; s < a.n_steps(); ++s)
    o << "<th>" << esc(report::shorten(visible_text(a.step_texts[s]), 14)) << "</th>";
  o << "</tr>";
  for (size_t l = 0; l < layers.size(); ++l) {
    const auto& layer = layers[l];
    o << "<tr><th>" << esc(layer.value("name", std::to_string(l))) << "</th>";
    const auto& steps = layer.contains("steps") ? layer["steps"] : nlohmann::json::array();
    for (const auto& st : steps) {
      double p = st.value("target_prob", 0.0);
      std::string top;
      if (st.contains("top") && st["top"].is_array() && !st["top"].empty())
        top = st["top"][0].value("text", "");
      // The tooltip names the layer's next most probable tokens; the numbers are in the cell.
      std::ostringstream tip;
      tip << "most probable:";
      if (st.contains("top"))
        for (const auto& t : st["top"]) tip << " " << visible_text(t.value("text", ""));
      o << "<td style='" << colour_style(report::sequential_colour(p)) << "' title='"
        << esc(tip.str()) << "'>" << esc(report::shorten(visible_text(top), 12))
        << "<br>p=" << fmt(p, 2) << " rank " << st.value("target_rank", -1) << "</td>";
    }
    o << "</tr>";
  }
  o << "</table></div>";
  if (a.n_steps() > 8) o << "<p class=small>scroll sideways to see all " << a.n_steps() << " steps</p>";
  o << "</div>";
}

// One layer's head-averaged attention as a heat map with token labels on both axes.
void attention_map(std::ostringstream& o, const Attribution& a, const nlohmann::json& m,
                   size_t layer) {
  const int64_t n = static_cast<int64_t>(a.tokens.size());
  const int64_t q = static_cast<int64_t>(m.size());
  const double cell = std::max(1.5, std::min(24.0, 520.0 / std::max<int64_t>(1, q)));
  const int64_t every = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(11.0 / cell)));
  const bool print = q <= kMaxPrintedQueries && cell >= 24;
  const double L = 96, T = 96, W = L + cell * q + 10, H = T + cell * q + 10;
  auto label = [&](int64_t i) {
    return esc(report::shorten(visible_text(i < n ? a.token_texts[i] : ""), 10));
  };
  o << "<figure><svg class='chart' data-colour=value width='" << W << "' height='" << H
    << "' viewBox='0 0 " << W << " " << H << "' role='img' aria-label='attention of layer "
    << layer << "' font-size='10'><rect width='" << W << "' height='" << H << "' fill='#fff'/>";
  for (int64_t i = 0; i < q; ++i) {
    for (int64_t j = 0; j < static_cast<int64_t>(m[i].size()); ++j) {
      double v = m[i][j].get<double>();
      if (v <= 0) continue;
      const std::string bg = report::sequential_colour(v);
      // The tooltip names the cell; its value is printed in it or listed under the map.
      o << "<rect x='" << fmt(L + j * cell) << "' y='" << fmt(T + i * cell) << "' width='"
        << fmt(cell) << "' height='" << fmt(cell) << "' fill='" << bg << "'><title>" << label(i)
        << " &#8594; " << label(j) << "</title></rect>";
      if (print)
        o << "<text x='" << fmt(L + (j + 0.5) * cell) << "' y='" << fmt(T + (i + 0.5) * cell + 3)
          << "' text-anchor='middle' font-size='8' data-bg='" << bg << "' style='fill:"
          << report::text_colour_on(bg) << "'>" << std::lround(v * 100) << "</text>";
    }
  }
  o << "<rect x='" << L << "' y='" << T << "' width='" << fmt(cell * q) << "' height='"
    << fmt(cell * q) << "' fill='none' stroke='#767676'/>";
  for (int64_t i = 0; i < q; i += every) {
    const double c = (i + 0.5) * cell;
    o << "<text class='tick' x='" << L - 4 << "' y='" << fmt(T + c + 3.5)
      << "' text-anchor='end'>" << label(i) << "</text>";
    o << "<text class='tick' x='" << fmt(L + c + 3.5) << "' y='" << T - 4
      << "' text-anchor='start' transform='rotate(-90 " << fmt(L + c + 3.5) << " " << T - 4
      << ")'>" << label(i) << "</text>";
  }
  o << "<text class='axis-title' x='" << fmt(L + cell * q / 2) << "' y='12' text-anchor='middle' "
       "font-size='11'>key token (attended to)</text><text class='axis-title' x='12' y='"
    << fmt(T + cell * q / 2) << "' transform='rotate(-90 12 " << fmt(T + cell * q / 2)
    << ")' text-anchor='middle' font-size='11'>query token (attending)</text></svg>"
    << "<figcaption>layer " << layer;
  if (every > 1) o << ": one token in " << every << " labelled";
  if (print) {
    o << "; cell values in percent";
  } else {
    // The strongest weights, printed: what the colours say, in numbers.
    std::vector<std::tuple<double, int64_t, int64_t>> links;
    for (int64_t i = 0; i < q; ++i)
      for (int64_t j = 0; j < static_cast<int64_t>(m[i].size()); ++j)
        links.emplace_back(m[i][j].get<double>(), i, j);
    const size_t k = std::min(kTopLinks, links.size());
    std::partial_sort(links.begin(), links.begin() + k, links.end(), [](const auto& x, const auto& y) {
      return std::get<0>(x) > std::get<0>(y);
    });
    o << "<table class=num><caption class=small>the " << k << " largest of " << links.size()
      << " weights (" << links.size() - k
      << " more in the JSON output)</caption><tr><th>query</th><th>key</th><th>weight</th></tr>";
    for (size_t l = 0; l < k; ++l) {
      const auto& [v, i, j] = links[l];
      o << "<tr><td style='text-align:left'>" << esc(visible_text(i < n ? a.token_texts[i] : ""))
        << " (position " << i << ")</td><td style='text-align:left'>"
        << esc(visible_text(j < n ? a.token_texts[j] : "")) << " (position " << j << ")</td><td>"
        << fmt(v, 3) << "</td></tr>";
    }
    o << "</table>";
  }
  o << "</figcaption></figure>";
}

void attention_maps(std::ostringstream& o, const Attribution& a) {
  if (!a.extra.is_object() || !a.extra.contains("attention")) return;
  const auto& att = a.extra["attention"];
  if (!att.is_array() || att.empty()) return;
  o << "<h2>Attention maps</h2><div class=fig><p class=small>head-averaged attention per "
       "layer: how much each query token (row) draws from each earlier key token (column); "
       "&#9251; marks a space; small maps print their values (in percent), large ones list "
       "their largest weights under the map; all values are in the JSON output (--json), "
       "extra.attention[layer][query][key]</p>"
    << report::sequential_legend(0, 1, "attention weight (mean over heads)") << "<div class=shapes>";
  for (size_t l = 0; l < att.size(); ++l)
    if (att[l].is_array()) attention_map(o, a, att[l], l);
  o << "</div></div>";
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

// "“ the” (+0.31), “girl” (−0.2) and “Lily” (+0.1)": the k strongest features of `a`.
std::string top_features_sentence(const Attribution& a, size_t k) {
  const std::vector<double> tot = a.total();
  const std::vector<size_t> order = by_magnitude(tot);
  std::string out;
  const size_t n = std::min(k, order.size());
  for (size_t i = 0; i < n; ++i) {
    if (i) out += i + 1 == n ? " and " : ", ";
    out += "&#8220;" + esc(feature_text(a, order[i])) + "&#8221; (" +
           report::fmt_signed(tot[order[i]], 2) + ")";
  }
  return out;
}

// The person's summary: what was explained, on which model, and the strongest features.
std::string summary(const std::vector<Attribution>& as, const ReportContext& c) {
  std::ostringstream s;
  s << "This page explains ";
  // The explained token, unless the description already names it (a classifier's class).
  const auto named = [&](const std::string& t) {
    const size_t b = t.find_first_not_of(' ');
    return b != std::string::npos && c.target_description.find(t.substr(b)) != std::string::npos;
  };
  if (!c.target_description.empty()) {
    s << "<b>" << esc(c.target_description) << "</b>";
    if (!as.empty() && as[0].step_texts.size() == 1 && !named(as[0].step_texts[0]))
      s << " (the token &#8220;" << esc(visible_text(as[0].step_texts[0])) << "&#8221;)";
  } else if (!as.empty() && !as[0].step_texts.empty()) {
    s << "the model's " << esc(as[0].target_function) << " of <b>"
      << esc(visible_text(as[0].step_texts[0])) << "</b>";
  } else {
    s << "the model's output";
  }
  if (!c.model.empty()) s << " by the model <b>" << esc(c.model) << "</b>";
  if (!c.prompt.empty()) s << " for the input &#8220;" << esc(report::shorten(c.prompt, 120)) << "&#8221;";
  std::vector<const Attribution*> scored;
  std::vector<std::string> views;
  for (const auto& a : as) {
    if (a.scores.empty())
      views.push_back(a.method);
    else
      scored.push_back(&a);
  }
  s << ", with " << as.size() << (as.size() == 1 ? " method" : " methods") << ".";
  if (!scored.empty()) {
    s << " By " << esc(scored[0]->method) << ", the features that weigh most are "
      << top_features_sentence(*scored[0], 3)
      << " (positive: towards the target, negative: away from it).";
  }
  if (scored.size() >= 2) {
    // How many of the first method's top 3 features the others also rank in their top 3.
    auto top3 = [](const Attribution& a) {
      std::vector<size_t> o = by_magnitude(a.total());
      o.resize(std::min<size_t>(3, o.size()));
      return o;
    };
    const std::vector<size_t> ref = top3(*scored[0]);
    s << " Agreement on those three:";
    for (size_t m = 1; m < scored.size(); ++m) {
      const std::vector<size_t> t = top3(*scored[m]);
      size_t shared = 0;
      for (size_t f : ref) shared += std::count(t.begin(), t.end(), f);
      s << (m > 1 ? "," : "") << " " << esc(scored[m]->method) << " shares " << shared << " of "
        << ref.size();
    }
    s << ".";
  }
  if (!views.empty()) {
    s << " Views of the model's internals: ";
    for (size_t i = 0; i < views.size(); ++i) s << (i ? ", " : "") << esc(views[i]);
    s << ".";
  }
  return report::summary_block(s.str());
}

}  // namespace

bool step_matrix_too_large(const std::vector<Attribution>& as) {
  for (const auto& a : as)
    if (a.n_steps() > 1 && a.n_steps() * a.n_features() > kMaxPrintedCells) return true;
  return false;
}

std::string step_matrix_csv(const std::vector<Attribution>& as) {
  auto field = [](const std::string& s) {
    std::string q = "\"";
    for (char ch : s) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
    return q + "\"";
  };
  std::ostringstream o;
  bool any = false;
  o << "method,step,step_token,feature,feature_text,score\n";
  for (const auto& a : as) {
    if (a.n_steps() < 2 || a.scores.empty()) continue;
    any = true;
    const std::string method = field(a.method);
    std::vector<std::string> features;
    for (int64_t f = 0; f < a.n_features(); ++f)
      features.push_back(field(feature_text(a, static_cast<size_t>(f))));
    for (int64_t s = 0; s < a.n_steps(); ++s) {
      const std::string row = method + "," + std::to_string(s) + "," + field(a.step_texts[s]) + ",";
      for (int64_t f = 0; f < a.n_features(); ++f) {
        if (a.features[f].begin > a.step_positions[s]) continue;
        o << row << f << "," << features[f] << "," << report::fmt_num(a.score(s, f), 7) << "\n";
      }
    }
  }
  return any ? o.str() : std::string();
}

std::string render_html(const std::vector<Attribution>& as, const ReportContext& c) {
  std::ostringstream o;
  o << report::page_begin(c.title);
  o << summary(as, c);
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
  o << "<p class=small>Each token is coloured by its feature's score: orange to red pushes "
       "the target up, blue pushes it down, white is neutral; each method has its own scale "
       "(its legend gives the numbers). A dashed outline marks generated tokens; grey text is "
       "not a feature.</p>";
  o << "<h2>Attributions</h2><div class=methods>";
  for (const auto& a : as) attribution_card(o, a, c.scores_csv);
  o << "</div>";
  side_by_side(o, as);
  quality_table(o, as);
  for (const auto& a : as) lens_grid(o, a);
  for (const auto& a : as) attention_maps(o, a);
  o << "<p class=small>made by candor</p>" << report::page_end();
  return o.str();
}

}  // namespace candor
