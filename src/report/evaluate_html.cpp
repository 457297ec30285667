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

std::string render_benchmark_html(const nlohmann::json& s) {
  std::ostringstream o;
  o << report::page_begin("candor evaluate");
  if (s.contains("model"))
    o << "<p class=small>model " << html_escape(s["model"].get<std::string>());
  if (s.contains("data")) o << " · data " << html_escape(s["data"].get<std::string>());
  o << " · " << s["n_examples"].get<int64_t>() << " examples</p>";
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
  // Mean deletion and insertion curves, one line per method.
  static const char* colours[] = {"#d62728", "#1f77b4", "#2ca02c", "#ff7f0e",
                                  "#9467bd", "#8c564b", "#e377c2", "#17becf"};
  const auto& curves = s["curves"];
  if (curves.is_object() && !curves.empty()) {
    o << "<h2>Deletion and insertion curves</h2><p class=small>mean target value against the "
         "fraction of features removed (deletion: lower is better) or inserted (insertion: higher "
         "is better), most important first</p><div class=curves>";
    for (const char* which : {"deletion", "insertion"}) {
      double lo = 1e300, hi = -1e300;
      for (const auto& [m, c] : curves.items())
        if (c.contains(which))
          for (const auto& v : c[which]) {
            lo = std::min(lo, v.get<double>());
            hi = std::max(hi, v.get<double>());
          }
      if (lo > hi) continue;
      if (hi - lo < 1e-12) hi = lo + 1;
      const double W = 420, H = 260, L = 50, B = 30;
      auto X = [&](double x) { return L + x * (W - L - 10); };
      auto Y = [&](double y) { return 10 + (hi - y) / (hi - lo) * (H - B - 10); };
      o << "<div><b>" << which << "</b><br><svg width='" << W << "' height='" << H
        << "' style='background:#fff;border:1px solid #eee'>";
      o << "<line x1='" << X(0) << "' y1='" << Y(lo) << "' x2='" << X(1) << "' y2='" << Y(lo)
        << "' stroke='#999'/><line x1='" << X(0) << "' y1='" << Y(lo) << "' x2='" << X(0)
        << "' y2='" << Y(hi) << "' stroke='#999'/>";
      o << "<text x='" << X(0) << "' y='" << H - 8 << "' font-size='11'>0</text><text x='"
        << X(1) - 8 << "' y='" << H - 8 << "' font-size='11'>1</text><text x='2' y='" << Y(hi) + 4
        << "' font-size='11'>" << fmt(hi, 3) << "</text><text x='2' y='" << Y(lo)
        << "' font-size='11'>" << fmt(lo, 3) << "</text>";
      size_t ci = 0;
      for (const auto& [m, c] : curves.items()) {
        const char* col = colours[ci++ % 8];
        if (!c.contains(which)) continue;
        const auto& v = c[which];
        o << "<polyline fill='none' stroke='" << col << "' stroke-width='2' points='";
        for (size_t i = 0; i < v.size(); ++i)
          o << X(static_cast<double>(i) / static_cast<double>(v.size() - 1)) << ","
            << Y(v[i].get<double>()) << " ";
        o << "'><title>" << html_escape(m) << "</title></polyline>";
      }
      o << "</svg></div>";
    }
    o << "</div><p>";
    size_t ci = 0;
    for (const auto& [m, c] : curves.items())
      o << "<span style='color:" << colours[ci++ % 8] << "'>&#9632;</span> " << html_escape(m)
        << " &nbsp;";
    o << "</p>";
  }
  if (s.contains("decoy_ranking") && s["decoy_ranking"].is_object()) {
    for (const auto& [metric, r] : s["decoy_ranking"].items()) {
      if (!r.contains("win_rate") || !r.contains("caught_rate")) continue;
      o << "<h2>Decoys: " << html_escape(metric)
        << "</h2><p class=small>share of examples where the method beats the decoy (win rate); "
           "caught: every method beats it</p><table class=num><tr><th>method</th>";
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
