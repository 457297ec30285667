// The pages of `candor evaluate`: the benchmark summary (summarize_benchmark's JSON, with its
// attack block) as a Markdown table and as a self-contained HTML page with the deletion and
// insertion curves as inline SVG.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "candor/evaluate.h"
#include "candor/report.h"
#include "report/html_page.h"

namespace candor {
namespace {

using report::html_escape;

std::string fmt(double v, int prec = 4) { return report::fmt_num(v, prec); }

// "substitution (n_candidates=8, n_rounds=2, ...)" from attack_options_to_json.
std::string attack_options_line(const nlohmann::json& o) {
  std::string out = o.value("attack", "") + " (";
  bool first = true;
  for (const auto& [k, v] : o.items()) {
    if (k == "attack") continue;
    out += (first ? "" : ", ") + k + "=" + (v.is_number_float() ? fmt(v.get<double>()) : v.dump());
    first = false;
  }
  return out + ")";
}

}  // namespace

std::string render_benchmark_markdown(const nlohmann::json& s) {
  std::ostringstream o;
  o << "| method |";
  for (const auto& m : s["metrics"]) {
    std::string name = m.get<std::string>();
    o << " " << name << (metric_higher_is_better(name) ? " ↑" : " ↓") << " |";
  }
  o << "\n|---|";
  for (size_t i = 0; i < s["metrics"].size(); ++i) o << "---|";
  o << "\n";
  for (const auto& method : s["methods"]) {
    o << "| " << method.get<std::string>() << " |";
    for (const auto& m : s["metrics"]) {
      const auto& cell = s["table"][method.get<std::string>()][m.get<std::string>()];
      if (!cell.contains("mean")) {
        o << " – |";
        continue;
      }
      o << " " << fmt(cell["mean"].get<double>());
      if (cell.contains("ci_low"))
        o << " [" << fmt(cell["ci_low"].get<double>()) << ", " << fmt(cell["ci_high"].get<double>())
          << "]";
      o << " |";
    }
    o << "\n";
  }
  o << "\n"
    << s["n_examples"].get<int64_t>() << " examples; mean [" << s["interval"].get<std::string>()
    << " interval, " << s["bootstrap"].get<int64_t>()
    << " resamples]; ↑ higher is better, ↓ lower.\n";
  if (s.contains("decoy_ranking") && s["decoy_ranking"].is_object()) {
    for (const auto& [metric, r] : s["decoy_ranking"].items()) {
      if (!r.contains("win_rate") || !r.contains("caught_rate")) continue;
      o << "\n## Decoys: " << metric
        << "\n\nShare of examples where the method beats the decoy (win rate); caught: every "
           "method beats it.\n\n| method |";
      for (const auto& [d, v] : r["caught_rate"].items()) o << " " << d << " |";
      o << "\n|---|";
      for (size_t i = 0; i < r["caught_rate"].size(); ++i) o << "---|";
      o << "\n";
      for (const auto& [m, row] : r["win_rate"].items()) {
        o << "| " << m << " |";
        for (const auto& [d, v] : r["caught_rate"].items())
          o << " " << (row.contains(d) ? fmt(row[d].get<double>(), 3) : "–") << " |";
        o << "\n";
      }
      o << "| caught |";
      for (const auto& [d, v] : r["caught_rate"].items()) o << " " << fmt(v.get<double>(), 3) << " |";
      o << "\n";
    }
  }
  if (s.contains("attacks")) {
    const auto& at = s["attacks"];
    o << "\n## Attack: " << attack_options_line(at["options"]) << "\n\n"
      << "An attack succeeds when it brings the top-k intersection of the explanation below "
         "success_below while the model's top next token stays and its probability moves by at "
         "most max_prob_change.\n\n"
      << "| method | success rate | mean top-k intersection | mean |Δp(top)| | candidates "
         "kept/tried |\n|---|---|---|---|---|\n";
    for (const auto& [m, v] : at["methods"].items()) {
      o << "| " << m << " | " << fmt(v["success_rate"].get<double>(), 3) << " ("
        << v["successes"].get<int64_t>() << "/" << v["n"].get<int64_t>() << ") | "
        << fmt(v["mean_topk_intersection"].get<double>(), 3) << " | "
        << fmt(v["mean_prob_change"].get<double>(), 3) << " | "
        << v["candidates_valid"].get<int64_t>() << "/" << v["candidates_tried"].get<int64_t>()
        << " |\n";
    }
    o << "\nChanges found (data line: top-k intersection reached, changes):\n\n";
    for (const auto& [m, v] : at["methods"].items()) {
      o << "- **" << m << "**\n";
      for (const auto& e : v["examples"]) {
        o << "  - line " << e["line"].get<int64_t>() << ": "
          << fmt(e["topk_intersection"].get<double>(), 3)
          << (e["success"].get<bool>() ? " (success)" : "") << "; ";
        if (e["changes"].empty()) o << "no change kept the output and moved the explanation";
        for (size_t c = 0; c < e["changes"].size(); ++c)
          o << (c ? "; " : "") << e["changes"][c].get<std::string>();
        o << "\n";
      }
    }
  }
  return o.str();
}

namespace {

// What a metric means, in a sentence, and which direction is better (and why).
std::string metric_meaning(const std::string& m) {
  if (m == "comprehensiveness")
    return "How much the target drops when the features the method ranks highest are removed "
           "(mean over the top 1, 5, 10, 20 and 50%). Higher is better: removing what the "
           "explanation calls important should hurt the model's answer.";
  if (m == "sufficiency")
    return "How much the target drops when only the top-ranked features are kept. Lower is "
           "better: the features the explanation names should be enough on their own.";
  if (m == "deletion")
    return "Area under the deletion curve: the target as features are removed, most important "
           "first. Lower is better: a faithful ranking makes the target fall fast.";
  if (m == "insertion")
    return "Area under the insertion curve: the target as features are put back into an empty "
           "input, most important first. Higher is better: a faithful ranking restores it fast.";
  if (m == "infidelity")
    return "Mean squared gap between the sum of the scores of randomly removed features and the "
           "actual drop of the target. Lower is better. It is not normalised: it is in squared "
           "units of the target and grows with the square of the target's size, so values such as "
           "7.5e+04 appear for logits or summed log-probabilities of long spans, or for methods "
           "whose scores are on another scale; compare methods within one run, not across models.";
  if (m == "loo_kendall")
    return "Kendall rank correlation between the scores and the drop of the target when each "
           "feature alone is left out (from -1 to 1). Higher is better.";
  if (m == "avg_sensitivity")
    return "Mean relative change of the explanation under small input noise. Lower is better: a "
           "stable explanation does not change when the input barely does.";
  if (m == "max_sensitivity")
    return "Largest relative change of the explanation under small input noise. Lower is better.";
  if (m == "attack_success")
    return "Share of examples where the attack changed the explanation's top features while the "
           "model's answer stayed. Lower is better (a harder to manipulate method).";
  if (m == "attack_topk")
    return "Top-k overlap between the original and the attacked explanation. Higher is better.";
  return metric_higher_is_better(m) ? "Higher is better." : "Lower is better.";
}

// One line chart of the mean curves (deletion or insertion), series told apart by colour, dash
// and marker, with its legend.
void curve_chart(std::ostringstream& o, const nlohmann::json& curves, const char* which) {
  double lo = 1e300, hi = -1e300;
  for (const auto& [m, c] : curves.items())
    if (c.contains(which))
      for (const auto& v : c[which]) {
        lo = std::min(lo, v.get<double>());
        hi = std::max(hi, v.get<double>());
      }
  if (lo > hi) return;
  if (hi - lo < 1e-12) hi = lo + 1;
  const double pad = 0.05 * (hi - lo);
  report::Axes ax;
  ax.width = 520;
  ax.height = 360;
  ax.left = 70;
  ax.x0 = 0;
  ax.x1 = 1;
  ax.y0 = lo - pad;
  ax.y1 = hi + pad;
  const bool del = std::string(which) == "deletion";
  ax.x_title = del ? "fraction of features removed (most important first)"
                   : "fraction of features inserted (most important first)";
  ax.y_title = "mean target value f";
  o << "<figure>" << ax.open(std::string(which) + " curves");
  size_t ci = 0;
  std::vector<std::pair<size_t, std::string>> shown;
  for (const auto& [m, c] : curves.items()) {
    const size_t i = ci++;
    if (!c.contains(which)) continue;
    const auto& v = c[which];
    if (v.empty()) continue;
    shown.push_back({i, m});
    const bool decoy = m.rfind("decoy:", 0) == 0;  // fakes drawn thinner than the methods
    o << "<g><title>" << html_escape(m) << "</title><polyline fill='none' stroke='"
      << report::series_colour(i) << "' stroke-width='" << (decoy ? "1.5" : "2.5") << "'";
    if (*report::series_dash(i)) o << " stroke-dasharray='" << report::series_dash(i) << "'";
    o << " points='";
    auto xat = [&](size_t k) {
      return v.size() > 1 ? static_cast<double>(k) / static_cast<double>(v.size() - 1) : 0.0;
    };
    for (size_t k = 0; k < v.size(); ++k)
      o << fmt(ax.px(xat(k))) << "," << fmt(ax.py(v[k].get<double>())) << " ";
    o << "'/>";
    // markers every fifth point, shifted per series so that they do not hide each other
    for (size_t k = i % 5; k < v.size(); k += 5)
      o << report::series_marker(i, ax.px(xat(k)), ax.py(v[k].get<double>()));
    o << "</g>";
  }
  o << "</svg>";
  // The legend: a line sample with its dash and marker per series.
  const int rows = static_cast<int>(shown.size());
  o << "<svg class='series-legend' width='520' height='" << 18 * rows + 6
    << "' role='img' aria-label='legend' font-size='12'>";
  for (int r = 0; r < rows; ++r) {
    const size_t i = shown[r].first;
    const int y = 12 + 18 * r;
    o << "<line x1='70' x2='110' y1='" << y << "' y2='" << y << "' stroke='"
      << report::series_colour(i) << "' stroke-width='2'";
    if (*report::series_dash(i)) o << " stroke-dasharray='" << report::series_dash(i) << "'";
    o << "/>" << report::series_marker(i, 90, y) << "<text x='118' y='" << y + 4 << "'>"
      << html_escape(shown[r].second) << "</text>";
  }
  o << "</svg><figcaption>" << (del ? "Deletion: lower curves are better." : "Insertion: higher curves are better.")
    << "</figcaption></figure>";
}

// The headline of the page: which method did best on the first metrics, and how the decoys
// fared.
std::string benchmark_summary(const nlohmann::json& s) {
  std::ostringstream o;
  size_t n_decoys = 0;
  for (const auto& m : s["methods"]) n_decoys += m.get<std::string>().rfind("decoy:", 0) == 0;
  o << "Grades " << s["methods"].size() - n_decoys << " explanation methods";
  if (n_decoys) o << " (and " << n_decoys << " decoys, fake explanations to check the metrics)";
  if (s.contains("model")) o << " of the model <b>" << html_escape(s["model"].get<std::string>()) << "</b>";
  if (s.contains("data")) o << " on " << html_escape(s["data"].get<std::string>());
  o << " (" << s["n_examples"].get<int64_t>() << " examples).";
  std::vector<std::string> decoys;
  if (s.contains("decoy_ranking") && s["decoy_ranking"].is_object())
    for (const auto& [metric, r] : s["decoy_ranking"].items())
      if (r.contains("caught_rate"))
        for (const auto& [d, v] : r["caught_rate"].items())
          if (std::find(decoys.begin(), decoys.end(), d) == decoys.end()) decoys.push_back(d);
  int said = 0;
  for (const auto& mj : s["metrics"]) {
    const std::string metric = mj.get<std::string>();
    if (said >= 2) break;
    const bool higher = metric_higher_is_better(metric);
    std::string best;
    double best_v = 0;
    for (const auto& method : s["methods"]) {
      const std::string name = method.get<std::string>();
      if (std::find(decoys.begin(), decoys.end(), name) != decoys.end()) continue;
      const auto& cell = s["table"][name][metric];
      if (!cell.contains("mean")) continue;
      const double v = cell["mean"].get<double>();
      if (best.empty() || (higher ? v > best_v : v < best_v)) {
        best = name;
        best_v = v;
      }
    }
    if (best.empty()) continue;
    o << " Best by " << html_escape(metric) << " (" << (higher ? "higher" : "lower")
      << " is better): <b>" << html_escape(best) << "</b> (" << fmt(best_v, 3) << ").";
    ++said;
  }
  if (s.contains("decoy_ranking") && s["decoy_ranking"].is_object()) {
    for (const auto& [metric, r] : s["decoy_ranking"].items()) {
      if (!r.contains("caught_rate")) continue;
      // The random decoy when there is one: the plainest fake.
      std::string d = r["caught_rate"].contains("decoy:random") ? "decoy:random" : r["caught_rate"].begin().key();
      o << " By " << html_escape(metric) << ", every method beat the " << html_escape(d) << " decoy in "
        << report::fmt_pct(r["caught_rate"][d].get<double>()) << " of the examples.";
      break;
    }
  }
  return report::summary_block(o.str());
}

}  // namespace

std::string render_benchmark_html(const nlohmann::json& s) {
  std::ostringstream o;
  o << report::page_begin("candor evaluate");
  o << benchmark_summary(s);
  o << "<p class=small>";
  if (s.contains("model")) o << "model " << html_escape(s["model"].get<std::string>()) << " · ";
  if (s.contains("data")) o << "data " << html_escape(s["data"].get<std::string>()) << " · ";
  if (s.contains("removal")) o << "removal " << html_escape(s["removal"].get<std::string>()) << " · ";
  o << s["n_examples"].get<int64_t>() << " examples</p>";
  o << "<h2>Methods and metrics</h2>";
  o << "<table class=num><tr><th>method</th>";
  for (const auto& m : s["metrics"]) {
    std::string name = m.get<std::string>();
    o << "<th>" << html_escape(name) << (metric_higher_is_better(name) ? " ↑" : " ↓") << "</th>";
  }
  o << "</tr>";
  for (const auto& method : s["methods"]) {
    o << "<tr><th>" << html_escape(method.get<std::string>()) << "</th>";
    for (const auto& m : s["metrics"]) {
      const auto& cell = s["table"][method.get<std::string>()][m.get<std::string>()];
      o << "<td>";
      if (cell.contains("mean")) {
        o << fmt(cell["mean"].get<double>());
        if (cell.contains("ci_low"))
          o << "<br><span class=small>[" << fmt(cell["ci_low"].get<double>(), 3) << ", "
            << fmt(cell["ci_high"].get<double>(), 3) << "]</span>";
      }
      o << "</td>";
    }
    o << "</tr>";
  }
  o << "</table><p class=small>mean and " << html_escape(s["interval"].get<std::string>())
    << " interval; ↑ higher is better, ↓ lower is better</p>";
  o << "<h3>What the metrics mean</h3><dl class=metrics>";
  for (const auto& m : s["metrics"])
    o << "<dt>" << html_escape(m.get<std::string>()) << (metric_higher_is_better(m.get<std::string>()) ? " ↑" : " ↓")
      << "</dt><dd>" << html_escape(metric_meaning(m.get<std::string>())) << "</dd>";
  o << "</dl><p class=small>f is the explained target function (by default the log-probability "
       "of the explained token, summed over the steps of a span). See docs/evaluation.md.</p>";
  // Mean deletion and insertion curves, one line per method.
  const auto& curves = s["curves"];
  if (curves.is_object() && !curves.empty()) {
    o << "<h2>Deletion and insertion curves</h2><p class=small>the mean target value f against "
         "the fraction of features removed (deletion) or inserted (insertion), most important "
         "first by each method; the methods differ by colour, dash pattern and marker</p>"
         "<div class=curves>";
    for (const char* which : {"deletion", "insertion"}) curve_chart(o, curves, which);
    o << "</div>";
  }
  if (s.contains("decoy_ranking") && s["decoy_ranking"].is_object() && !s["decoy_ranking"].empty()) {
    o << "<h2>Decoys: win and catch rates</h2><p>A decoy is a fake explanation (random scores, "
         "the real ones inverted, scores by position, ...). A metric that cannot tell the real "
         "methods from the decoys cannot be trusted to grade them. <b>Win rate</b>: the share of "
         "examples where the method scores better than the decoy on the metric (higher is "
         "better). <b>Caught</b>: the share where every method beats the decoy.</p>";
    for (const auto& [metric, r] : s["decoy_ranking"].items()) {
      if (!r.contains("win_rate") || !r.contains("caught_rate")) continue;
      o << "<h3>Decoys: " << html_escape(metric)
        << "</h3><table class=num><tr><th>method \\ decoy</th>";
      for (const auto& [d, v] : r["caught_rate"].items()) o << "<th>" << html_escape(d) << "</th>";
      o << "</tr>";
      for (const auto& [m, row] : r["win_rate"].items()) {
        o << "<tr><th>" << html_escape(m) << "</th>";
        for (const auto& [d, v] : r["caught_rate"].items())
          o << "<td>" << (row.contains(d) ? fmt(row[d].get<double>(), 3) : "") << "</td>";
        o << "</tr>";
      }
      o << "<tr><th>caught</th>";
      for (const auto& [d, v] : r["caught_rate"].items())
        o << "<td>" << fmt(v.get<double>(), 3) << "</td>";
      o << "</tr></table>";
    }
  }
  if (s.contains("attacks")) {
    const auto& at = s["attacks"];
    o << "<h2>Attack: " << html_escape(attack_options_line(at["options"]))
      << "</h2><p class=small>success: the top-k intersection of the explanation falls below "
         "success_below while the model's top next token stays and its probability moves by at "
         "most max_prob_change</p><table class=num><tr><th>method</th><th>success "
         "rate</th><th>mean top-k "
         "intersection</th><th>mean |Δp(top)|</th><th>candidates kept/tried</th></tr>";
    for (const auto& [m, v] : at["methods"].items()) {
      o << "<tr><th>" << html_escape(m) << "</th><td>" << fmt(v["success_rate"].get<double>(), 3)
        << " (" << v["successes"].get<int64_t>() << "/" << v["n"].get<int64_t>() << ")</td><td>"
        << fmt(v["mean_topk_intersection"].get<double>(), 3) << "</td><td>"
        << fmt(v["mean_prob_change"].get<double>(), 3) << "</td><td>"
        << v["candidates_valid"].get<int64_t>() << "/" << v["candidates_tried"].get<int64_t>()
        << "</td></tr>";
    }
    o << "</table><h3>Changes found</h3><table class=num><tr><th>method</th><th>line</th><th>top-k "
         "intersection</th><th>|Δp(top)|</th><th>changes</th></tr>";
    for (const auto& [m, v] : at["methods"].items()) {
      for (const auto& e : v["examples"]) {
        o << "<tr><td>" << html_escape(m) << "</td><td>" << e["line"].get<int64_t>() << "</td><td>"
          << fmt(e["topk_intersection"].get<double>(), 3)
          << (e["success"].get<bool>() ? " &#10003;" : "") << "</td><td>"
          << fmt(e["prob_change"].get<double>(), 3) << "</td><td style='text-align:left'>";
        for (size_t c = 0; c < e["changes"].size(); ++c)
          o << (c ? "<br>" : "") << html_escape(e["changes"][c].get<std::string>());
        o << "</td></tr>";
      }
    }
    o << "</table>";
  }
  if (s.contains("skipped") && !s["skipped"].empty()) {
    o << "<h2>Skipped rows</h2><ul>";
    for (const auto& k : s["skipped"])
      o << "<li>line " << k.value("line", 0) << ": " << html_escape(k.value("reason", ""))
        << "</li>";
    o << "</ul>";
  }
  o << "<p class=small>made by candor evaluate</p>" << report::page_end();
  return o.str();
}

}  // namespace candor
