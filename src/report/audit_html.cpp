// The audit pages (report.html and audit.md of `candor audit ...`), rendered from audit.json:
// fairness (per-group bars with interval whiskers, the gaps, the flags), calibration (reliability
// diagram, temperature scaling, risk-coverage curve, per group) and conformal sets.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "candor/report.h"
#include "report/audit_pages.h"
#include "report/html_page.h"

namespace candor {

namespace report {

std::string audit_num(const nlohmann::json& v, int prec) {
  if (v.is_number()) return fmt_num(v.get<double>(), prec);
  if (v.is_string()) return v.get<std::string>();
  return "&ndash;";
}

std::string audit_ci(const nlohmann::json& ci) {
  if (!ci.is_array() || ci.size() != 2 || !ci[0].is_number()) return "";
  return "[" + fmt_num(ci[0].get<double>(), 3) + ", " + fmt_num(ci[1].get<double>(), 3) + "]";
}

}  // namespace report

namespace {

using nlohmann::json;
using report::fmt_num;
using report::html_escape;

using report::audit_ci;
using report::audit_num;

const char* const kBarMetrics[] = {"selection_rate", "tpr", "fpr", "precision", "accuracy", "ece"};

// Horizontal bars in [0, 1], one per group, with the interval as a whisker.
std::string group_bars_svg(const json& groups, const std::string& column, const std::string& metric) {
  std::vector<const json*> rows;
  for (const json& g : groups)
    if (g["column"] == column && g["metrics"].contains(metric)) rows.push_back(&g);
  if (rows.empty()) return "";
  const int label_w = 150, W = 260, row_h = 18, H = static_cast<int>(rows.size()) * row_h + 44;
  std::ostringstream s;
  s << "<figure><svg class='chart' width='" << label_w + W + 70 << "' height='" << H
    << "' role='img' aria-label='" << html_escape(metric) << " per group' font-size='11'>";
  for (size_t i = 0; i < rows.size(); ++i) {
    const json& g = *rows[i];
    const int y = static_cast<int>(i) * row_h + 4;
    std::string name = g["value"].get<std::string>();
    if (name.size() > 24) name = name.substr(0, 23) + "…";
    s << "<text x='" << label_w - 4 << "' y='" << y + 12 << "' text-anchor='end'>" << html_escape(name)
      << (g.value("small", false) ? " *" : "") << "</text>";
    const json& v = g["metrics"][metric];
    if (!v.is_number()) continue;
    const double x = std::clamp(v.get<double>(), 0.0, 1.0);
    s << "<rect x='" << label_w << "' y='" << y << "' width='" << x * W << "' height='" << row_h - 6
      << "' fill='" << (g.value("small", false) ? "#bbb" : "#4a7fd4") << "'/>";
    const json& ci = g["ci"].value(metric, json());
    if (ci.is_array() && ci.size() == 2 && ci[0].is_number()) {
      const double lo = std::clamp(ci[0].get<double>(), 0.0, 1.0) * W + label_w,
                   hi = std::clamp(ci[1].get<double>(), 0.0, 1.0) * W + label_w;
      const int cy = y + (row_h - 6) / 2;
      s << "<line x1='" << lo << "' x2='" << hi << "' y1='" << cy << "' y2='" << cy
        << "' stroke='#222'/><line x1='" << lo << "' x2='" << lo << "' y1='" << cy - 4 << "' y2='" << cy + 4
        << "' stroke='#222'/><line x1='" << hi << "' x2='" << hi << "' y1='" << cy - 4 << "' y2='" << cy + 4
        << "' stroke='#222'/>";
    }
    s << "<text x='" << label_w + W + 6 << "' y='" << y + 12 << "'>" << fmt_num(v.get<double>(), 3) << "</text>";
  }
  const int ay = static_cast<int>(rows.size()) * row_h + 8;
  s << "<line x1='" << label_w << "' x2='" << label_w + W << "' y1='" << ay << "' y2='" << ay
    << "' stroke='#1a1a1a'/>";
  for (int t = 0; t <= 4; ++t)
    s << "<line x1='" << label_w + t * W / 4 << "' x2='" << label_w + t * W / 4 << "' y1='" << ay << "' y2='"
      << ay + 4 << "' stroke='#1a1a1a'/><text class='tick' x='" << label_w + t * W / 4 << "' y='" << ay + 15
      << "' text-anchor='middle'>" << fmt_num(t / 4.0) << "</text>";
  s << "<text class='axis-title' x='" << label_w + W / 2 << "' y='" << ay + 32 << "' text-anchor='middle'>"
    << html_escape(metric) << " (0 to 1)</text><text class='axis-title' x='" << label_w - 4 << "' y='" << ay + 32
    << "' text-anchor='end'>group of " << html_escape(column) << "</text></svg><figcaption>"
    << html_escape(metric) << "</figcaption></figure>";
  return s.str();
}

std::vector<std::string> group_columns(const json& a) {
  std::vector<std::string> cols;
  for (const json& g : a["groups"]) {
    const std::string c = g["column"].get<std::string>();
    if (std::find(cols.begin(), cols.end(), c) == cols.end()) cols.push_back(c);
  }
  return cols;
}

std::string fairness_html(const json& a) {
  std::ostringstream h;
  h << "<table class='meta'><tr><td>rows</td><td>" << a["n_rows"] << "</td></tr><tr><td>bad records skipped</td><td>"
    << a["n_skipped"] << "</td></tr><tr><td>bootstrap</td><td>" << a["options"]["n_boot"] << " resamples, seed "
    << a["options"]["seed"] << ", " << fmt_num(100 * a["options"]["confidence"].get<double>()) << "% intervals"
    << "</td></tr></table>\n";
  if (!a["flags"].empty()) {
    h << "<h2>Flags</h2><ul>";
    for (const json& f : a["flags"]) {
      std::string where = f.value("column", "");
      if (f.contains("value")) where += " = " + f["value"].get<std::string>();
      h << "<li class='warn'>" << html_escape(f["kind"].get<std::string>()) << " (" << html_escape(where)
        << "): " << html_escape(f["message"].get<std::string>()) << "</li>";
    }
    h << "</ul>\n";
  }
  const std::vector<std::string> cols = group_columns(a);
  for (const std::string& c : cols) {
    h << "<h2>Groups of " << html_escape(c) << "</h2>\n<div class='curves'>";
    for (const char* m : kBarMetrics) h << group_bars_svg(a["groups"], c, m);
    h << "</div><p class='small'>Whiskers: bootstrap intervals; * and grey: fewer rows than "
      << a["options"]["min_group_size"] << ".</p>\n<table class='num'><tr><th>group</th><th>n</th>";
    const json& first = a["overall"]["metrics"];
    for (auto it = first.begin(); it != first.end(); ++it) h << "<th>" << html_escape(it.key()) << "</th>";
    h << "</tr>\n";
    auto row = [&](const json& g) {
      h << "<tr><td>" << html_escape(g["value"].get<std::string>()) << (g.value("small", false) ? " *" : "")
        << "</td><td>" << g["n"] << "</td>";
      for (auto it = first.begin(); it != first.end(); ++it) {
        const json& v = g["metrics"].value(it.key(), json());
        const std::string ci = audit_ci(g["ci"].value(it.key(), json()));
        h << "<td>" << audit_num(v) << (ci.empty() ? "" : "<br><span class=small>" + ci + "</span>") << "</td>";
      }
      h << "</tr>\n";
    };
    for (const json& g : a["groups"])
      if (g["column"] == c) row(g);
    row(a["overall"]);
    h << "</table>\n";
  }
  h << "<h2>Gaps</h2>\n<table><tr><th>column</th><th>metric</th><th>kind</th><th>reference</th><th>between</th>"
       "<th>value</th><th>interval</th><th>flag</th></tr>\n";
  for (const json& d : a["disparities"]) {
    std::string between;
    for (const json& b : d["between"]) between += (between.empty() ? "" : " vs ") + b.get<std::string>();
    h << "<tr><td>" << html_escape(d["column"].get<std::string>()) << "</td><td>"
      << html_escape(d["metric"].get<std::string>()) << "</td><td>" << d["kind"].get<std::string>() << "</td><td>"
      << d["reference"].get<std::string>() << "</td><td>" << html_escape(between) << "</td><td>"
      << audit_num(d["value"]) << "</td><td>" << audit_ci(d["ci"]) << "</td><td class='warn'>"
      << (d["flag"].get<bool>() ? "below four-fifths" : "") << "</td></tr>\n";
  }
  h << "</table>\n";
  return h.str();
}

// A reliability diagram: accuracy per confidence bin against the diagonal, bar width = bin.
std::string reliability_svg(const json& bins, const std::string& caption) {
  const int S = 260, pad = 30;
  std::ostringstream s;
  s << "<figure><svg class='chart' width='" << S + 2 * pad << "' height='" << S + 2 * pad
    << "' role='img' aria-label='reliability diagram' font-size='10'>"
    << "<rect x='" << pad << "' y='" << pad << "' width='" << S << "' height='" << S
    << "' fill='none' stroke='#999'/><line x1='" << pad << "' y1='" << pad + S << "' x2='" << pad + S << "' y2='"
    << pad << "' stroke='#aaa' stroke-dasharray='4'/>";
  for (const json& b : bins) {
    if (b["n"].get<int64_t>() == 0) continue;
    const double lo = b["lo"].get<double>(), hi = b["hi"].get<double>(), acc = b["accuracy"].get<double>(),
                 conf = b["confidence"].get<double>();
    s << "<rect x='" << pad + lo * S << "' y='" << pad + (1 - acc) * S << "' width='" << (hi - lo) * S
      << "' height='" << acc * S << "' fill='#4a7fd4' fill-opacity='.7' stroke='#fff'/>"
      << "<circle cx='" << pad + conf * S << "' cy='" << pad + (1 - conf) * S << "' r='2.5' fill='#d55e00'/>";
  }
  for (int t = 0; t <= 2; ++t)
    s << "<text class='tick' x='" << pad + t * S / 2 << "' y='" << pad + S + 11 << "' text-anchor='middle'>"
      << fmt_num(t / 2.0) << "</text><text class='tick' x='" << pad - 3 << "' y='" << pad + S - t * S / 2 + 3
      << "' text-anchor='end'>" << fmt_num(t / 2.0) << "</text>";
  s << "<text class='axis-title' x='" << pad + S / 2 << "' y='" << pad + S + 24
    << "' text-anchor='middle'>confidence (predicted probability)</text>"
    << "<text class='axis-title' x='8' y='" << pad + S / 2 << "' transform='rotate(-90 8 " << pad + S / 2
    << ")' text-anchor='middle'>accuracy (share correct)</text></svg><figcaption>" << html_escape(caption)
    << "<br><span class='small'>bars: accuracy per bin; dots: mean confidence; dashed: perfect calibration</span>"
    << "<details><summary>values per bin</summary><table class=num><tr><th>bin</th><th>rows</th>"
       "<th>confidence</th><th>accuracy</th></tr>";
  for (const json& b : bins) {
    if (b["n"].get<int64_t>() == 0) continue;
    s << "<tr><td>" << fmt_num(b["lo"].get<double>(), 3) << "&ndash;" << fmt_num(b["hi"].get<double>(), 3)
      << "</td><td>" << b["n"] << "</td><td>" << fmt_num(b["confidence"].get<double>(), 3) << "</td><td>"
      << fmt_num(b["accuracy"].get<double>(), 3) << "</td></tr>";
  }
  s << "</table></details></figcaption></figure>";
  return s.str();
}

std::string curve_svg(const json& xs, const json& ys, const std::string& caption) {
  const int S = 260, pad = 30;
  double ymax = 1e-9;
  for (const json& y : ys) ymax = std::max(ymax, y.get<double>());
  std::ostringstream s;
  s << "<figure><svg class='chart' width='" << S + 2 * pad << "' height='" << S + 2 * pad
    << "' role='img' aria-label='risk-coverage curve' font-size='10'><rect x='" << pad
    << "' y='" << pad << "' width='" << S << "' height='" << S << "' fill='none' stroke='#999'/><polyline fill='none' "
    << "stroke='#4a7fd4' stroke-width='2' points='";
  for (size_t i = 0; i < xs.size(); ++i)
    s << pad + xs[i].get<double>() * S << "," << pad + (1 - ys[i].get<double>() / ymax) * S << " ";
  s << "'/>";
  for (int t = 0; t <= 2; ++t)
    s << "<text class='tick' x='" << pad + t * S / 2 << "' y='" << pad + S + 11 << "' text-anchor='middle'>"
      << fmt_num(t / 2.0) << "</text><text class='tick' x='" << pad - 3 << "' y='" << pad + S - t * S / 2 + 3
      << "' text-anchor='end'>" << fmt_num(ymax * t / 2.0, 2) << "</text>";
  s << "<text class='axis-title' x='" << pad + S / 2 << "' y='" << pad + S + 24
    << "' text-anchor='middle'>coverage (share of rows answered)</text><text class='axis-title' x='8' y='"
    << pad + S / 2 << "' transform='rotate(-90 8 " << pad + S / 2
    << ")' text-anchor='middle'>risk (error rate)</text></svg><figcaption>"
    << html_escape(caption) << "</figcaption></figure>";
  return s.str();
}

const char* const kCalMetrics[] = {"n", "accuracy", "nll", "brier", "ece", "ece_mass", "mce"};

std::string calibration_table(const std::vector<std::pair<std::string, const json*>>& rows) {
  std::ostringstream h;
  h << "<table class='num'><tr><th></th>";
  for (const char* m : kCalMetrics) h << "<th>" << m << "</th>";
  h << "</tr>\n";
  for (const auto& [name, m] : rows) {
    h << "<tr><td>" << html_escape(name) << "</td>";
    for (const char* k : kCalMetrics) h << "<td>" << audit_num((*m)[k], 4) << "</td>";
    h << "</tr>\n";
  }
  h << "</table>\n";
  return h.str();
}

std::string calibration_html(const json& a) {
  std::ostringstream h;
  h << "<table class='meta'><tr><td>rows</td><td>" << a["n_rows"] << "</td></tr><tr><td>bad records skipped</td><td>"
    << a["n_skipped"] << "</td></tr></table>\n<h2>Calibration</h2>\n";
  std::vector<std::pair<std::string, const json*>> rows = {{"all rows", &a["all"]}};
  if (a.contains("temperature_scaling")) {
    const json& t = a["temperature_scaling"];
    rows.push_back({"held-out, as given", &t["heldout_before"]});
    rows.push_back({"held-out, T = " + fmt_num(t["temperature"].get<double>(), 4), &t["heldout_after"]});
  }
  h << calibration_table(rows) << "<div class='curves'>" << reliability_svg(a["all"]["bins"], "reliability, equal-width bins")
    << reliability_svg(a["all"]["mass_bins"], "reliability, equal-mass bins");
  if (a.contains("temperature_scaling"))
    h << reliability_svg(a["temperature_scaling"]["heldout_after"]["bins"], "held-out after temperature scaling");
  const json& sel = a["selective"];
  h << curve_svg(sel["coverage"], sel["risk"], "risk-coverage (AURC " + audit_num(sel["aurc"], 4) + ")") << "</div>\n";
  h << "<p>AURC " << audit_num(sel["aurc"], 4) << ", optimal " << audit_num(sel["optimal_aurc"], 4) << ", excess "
    << audit_num(sel["excess_aurc"], 4) << ".</p>\n";
  if (!a["per_group"].empty()) {
    std::vector<std::pair<std::string, const json*>> g;
    for (const json& x : a["per_group"]) g.push_back({x["group"].get<std::string>(), &x});
    h << "<h2>Per group</h2>\n" << calibration_table(g);
  }
  return h.str();
}

std::string conformal_html(const json& a) {
  std::ostringstream h;
  h << "<p>Split conformal at 1 &minus; &alpha; = " << audit_num(a["target_coverage"]) << ": " << a["n_calibration"]
    << " calibration rows, " << a["n_heldout"] << " held out; " << a["n_skipped"] << " bad records skipped.</p>\n"
    << "<table class='num'><tr><th>score</th><th>threshold</th><th>coverage</th><th>mean set size</th>"
       "<th>empty sets</th></tr>\n";
  for (const json& m : a["methods"])
    h << "<tr><td>" << m["score"].get<std::string>() << "</td><td>" << audit_num(m["threshold"], 4) << "</td><td>"
      << audit_num(m["coverage"], 4) << "</td><td>" << audit_num(m["mean_set_size"], 4) << "</td><td>"
      << m["n_empty"] << "</td></tr>\n";
  h << "</table>\n";
  for (const json& m : a["methods"]) {
    if (m["per_group"].empty()) continue;
    h << "<h2>Coverage per group (" << m["score"].get<std::string>() << ")</h2>\n<table class='num'><tr><th>group</th>"
      << "<th>n</th><th>coverage</th><th>mean set size</th></tr>\n";
    for (const json& g : m["per_group"]) {
      const bool low = g["coverage"].get<double>() < a["target_coverage"].get<double>();
      h << "<tr><td>" << html_escape(g["group"].get<std::string>()) << "</td><td>" << g["n"] << "</td><td"
        << (low ? " class='warn'" : "") << ">" << audit_num(g["coverage"], 4) << "</td><td>"
        << audit_num(g["mean_set_size"], 4) << "</td></tr>\n";
    }
    h << "</table>\n";
  }
  return h.str();
}

// The person's summary at the top of an audit page: what was audited and the headline figure.
std::string audit_summary(const json& a) {
  const std::string kind = a.value("audit", "");
  std::ostringstream o;
  if (kind == "fairness") {
    o << "Checks whether the model treats the groups of ";
    const std::vector<std::string> cols = group_columns(a);
    for (size_t i = 0; i < cols.size(); ++i) o << (i ? ", " : "") << html_escape(cols[i]);
    o << " alike, over " << a.value("n_rows", 0) << " rows.";
    const json* worst = nullptr;
    for (const json& d : a["disparities"])
      if (d.value("reference", "") == "groups" && d.value("kind", "") == "difference" && d["value"].is_number() &&
          (!worst || d["value"].get<double>() > (*worst)["value"].get<double>()))
        worst = &d;
    if (worst) {
      std::string between;
      for (const json& b : (*worst)["between"]) between += (between.empty() ? "" : " and ") + b.get<std::string>();
      o << " The largest gap between groups: <b>" << html_escape((*worst)["metric"].get<std::string>()) << " "
        << audit_num((*worst)["value"]) << "</b> " << audit_ci((*worst)["ci"]) << " between "
        << html_escape(between) << " (" << html_escape((*worst)["column"].get<std::string>())
        << "; 0 means equal, smaller is fairer).";
    }
    const size_t flags = a.contains("flags") ? a["flags"].size() : 0;
    o << " " << flags << (flags == 1 ? " flag" : " flags") << " raised" << (flags ? " (listed below)." : ".");
  } else if (kind == "calibration") {
    const json& all = a["all"];
    o << "Checks whether the model's confidence matches how often it is right, over " << a.value("n_rows", 0)
      << " rows: accuracy <b>" << audit_num(all["accuracy"]) << "</b>, expected calibration error <b>"
      << audit_num(all["ece"]) << "</b> (the mean gap between confidence and accuracy; 0 is perfect, lower is "
      << "better).";
    if (a.contains("temperature_scaling")) {
      const json& t = a["temperature_scaling"];
      o << " Temperature scaling (T = " << audit_num(t["temperature"]) << ") moves the held-out error from "
        << audit_num(t["heldout_before"]["ece"]) << " to " << audit_num(t["heldout_after"]["ece"]) << ".";
    }
  } else if (kind == "conformal") {
    o << "Builds prediction sets that should hold the true class for " << audit_num(a["target_coverage"])
      << " of rows (" << a.value("n_calibration", 0) << " calibration rows, " << a.value("n_heldout", 0)
      << " held out).";
    for (const json& m : a["methods"])
      o << " " << html_escape(m["score"].get<std::string>()) << ": coverage <b>" << audit_num(m["coverage"])
        << "</b>, mean set size " << audit_num(m["mean_set_size"]) << ".";
  } else if (kind == "counterfactual") {
    const bool lm = a.value("model_kind", "") == "causal_lm";
    o << "Checks whether swapping " << html_escape(a.value("attribute", "group")) << " terms changes the "
      << (lm ? "model's next token" : "model's answer") << ": " << a.value("n_pairs", 0) << " swapped texts from "
      << a.value("n_mentioning", 0) << " of " << a.value("n_texts", 0) << " texts. The "
      << (lm ? "top next token" : "predicted class") << " changes for <b>" << audit_num(a["flip_share"])
      << "</b> " << audit_ci(a["flip_share_ci"]) << " of the swaps; the mean "
      << (lm ? "Jensen&ndash;Shannon divergence" : "|change of p|") << " is <b>" << audit_num(a["mean_abs_delta"], 4)
      << "</b> (0 means the swap changes nothing; lower is fairer).";
  } else if (kind == "generation") {
    const json& gap = a["gap"];
    std::string between;
    for (const json& b : gap["between"]) between += (between.empty() ? "" : " and ") + b.get<std::string>();
    o << "Checks whether the model's continuations of the same prompts read more negatively for some groups: "
      << a.value("n_samples", 0) << " continuations scored from -1 (negative) to +1 (positive). The largest gap "
      << "between group means is <b>" << audit_num(gap["value"]) << "</b> " << audit_ci(gap["ci"]) << " between "
      << html_escape(between) << " (permutation p = " << audit_num(gap["p_value"])
      << "; 0 means no gap, a small p that it is unlikely by chance).";
  } else if (kind == "uncertainty") {
    const json& u = a["uncertainty"];
    const json& ans = u["answer"];
    o << "Shows how sure the model " << html_escape(a.value("model", "")) << " was of each token of its answer: "
      << ans.value("n_tokens", 0) << " tokens, mean log-probability <b>" << audit_num(ans["mean_logprob"])
      << "</b> (0 is certain, lower is less sure), <b>" << u.value("n_uncertain", 0) << "</b> uncertain tokens";
    if (u.contains("self_consistency"))
      o << "; " << u["self_consistency"].value("n_samples", 0) << " resampled answers agree with it at <b>"
        << audit_num(u["self_consistency"]["agreement"]) << "</b> (1 is full agreement)";
    o << ".";
  } else {
    return "";
  }
  return report::summary_block(o.str());
}

}  // namespace

std::string render_audit_html(const nlohmann::json& audit, const std::string& title) {
  std::string body;
  const std::string kind = audit.value("audit", "");
  if (kind == "fairness") body = fairness_html(audit);
  else if (kind == "calibration") body = calibration_html(audit);
  else if (kind == "conformal") body = conformal_html(audit);
  else if (kind == "counterfactual") body = report::counterfactual_html(audit);
  else if (kind == "generation") body = report::generation_html(audit);
  else if (kind == "uncertainty") body = report::uncertainty_html(audit);
  else body = "<p>unknown audit</p>";
  return report::page_begin(title) + audit_summary(audit) + body + report::page_end();
}

std::string render_audit_markdown(const nlohmann::json& a) {
  std::ostringstream m;
  auto num = [](const json& v, int prec = 4) {
    if (v.is_number()) return fmt_num(v.get<double>(), prec);
    if (v.is_string()) return v.get<std::string>();
    return std::string("–");
  };
  auto ci = [&](const json& c) {
    if (!c.is_array() || c.size() != 2 || !c[0].is_number()) return std::string();
    return " [" + fmt_num(c[0].get<double>(), 3) + ", " + fmt_num(c[1].get<double>(), 3) + "]";
  };
  const std::string kind = a.value("audit", "");
  if (kind == "counterfactual") return report::counterfactual_markdown(a);
  if (kind == "generation") return report::generation_markdown(a);
  m << "# candor audit: " << kind << "\n\n" << a.value("n_rows", 0) << " rows, " << a.value("n_skipped", 0)
    << " bad records skipped.\n\n";
  if (kind == "fairness") {
    for (const json& f : a["flags"]) m << "- **" << f["kind"].get<std::string>() << "**: " << f["message"].get<std::string>()
                                       << " (" << f.value("column", "") << (f.contains("value") ? " = " + f["value"].get<std::string>() : "") << ")\n";
    m << "\n## Groups\n\n| column | group | n |";
    const json& first = a["overall"]["metrics"];
    for (auto it = first.begin(); it != first.end(); ++it) m << " " << it.key() << " |";
    m << "\n|---|---|---:|";
    for (auto it = first.begin(); it != first.end(); ++it) m << "---:|";
    m << "\n";
    auto row = [&](const json& g) {
      m << "| " << g["column"].get<std::string>() << " | " << g["value"].get<std::string>()
        << (g.value("small", false) ? " (small)" : "") << " | " << g["n"] << " |";
      for (auto it = first.begin(); it != first.end(); ++it)
        m << " " << num(g["metrics"].value(it.key(), json()), 3) << ci(g["ci"].value(it.key(), json())) << " |";
      m << "\n";
    };
    for (const json& g : a["groups"]) row(g);
    row(a["overall"]);
    m << "\n## Gaps\n\n| column | metric | kind | reference | between | value | interval | flag |\n"
         "|---|---|---|---|---|---:|---|---|\n";
    for (const json& d : a["disparities"]) {
      std::string between;
      for (const json& b : d["between"]) between += (between.empty() ? "" : " vs ") + b.get<std::string>();
      m << "| " << d["column"].get<std::string>() << " | " << d["metric"].get<std::string>() << " | "
        << d["kind"].get<std::string>() << " | " << d["reference"].get<std::string>() << " | " << between << " | "
        << num(d["value"]) << " |" << ci(d["ci"]) << " | " << (d["flag"].get<bool>() ? "below four-fifths" : "")
        << " |\n";
    }
  } else if (kind == "calibration") {
    m << "| | n | accuracy | nll | brier | ece | ece_mass | mce |\n|---|---:|---:|---:|---:|---:|---:|---:|\n";
    auto row = [&](const std::string& name, const json& x) {
      m << "| " << name << " |";
      for (const char* k : kCalMetrics) m << " " << num(x[k]) << " |";
      m << "\n";
    };
    row("all rows", a["all"]);
    if (a.contains("temperature_scaling")) {
      const json& t = a["temperature_scaling"];
      row("held-out, as given", t["heldout_before"]);
      row("held-out, T = " + num(t["temperature"]), t["heldout_after"]);
    }
    for (const json& g : a["per_group"]) row(g["group"].get<std::string>(), g);
    m << "\nSelective prediction: AURC " << num(a["selective"]["aurc"]) << " (optimal "
      << num(a["selective"]["optimal_aurc"]) << ").\n";
  } else if (kind == "conformal") {
    m << "Target coverage " << num(a["target_coverage"]) << "; " << a["n_calibration"] << " calibration rows, "
      << a["n_heldout"] << " held out.\n\n| score | threshold | coverage | mean set size | empty |\n|---|---:|---:|---:|---:|\n";
    for (const json& x : a["methods"])
      m << "| " << x["score"].get<std::string>() << " | " << num(x["threshold"]) << " | " << num(x["coverage"]) << " | "
        << num(x["mean_set_size"]) << " | " << x["n_empty"] << " |\n";
    for (const json& x : a["methods"])
      for (const json& g : x["per_group"])
        m << "\n- " << x["score"].get<std::string>() << ", " << g["group"].get<std::string>() << ": n " << g["n"]
          << ", coverage " << num(g["coverage"]) << ", mean set size " << num(g["mean_set_size"]);
    m << "\n";
  }
  return m.str();
}

}  // namespace candor
