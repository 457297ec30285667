// The distillation report page, rendered from report.json (DistillResult::to_json): classes,
// fidelity (held-out and training, per slice), skipped records and the student's global
// explanation (linear weights, tree rules, GAM shape functions, the transformer's settings).
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "candor/report.h"
#include "report/html_page.h"

namespace candor {

namespace {

using nlohmann::json;
using report::fmt_num;
using report::html_escape;

std::string pct(const json& fidelity, const char* key) {
  if (!fidelity.contains(key) || !fidelity[key].is_number()) return "&ndash;";  // no true labels
  return report::fmt_pct(fidelity[key].get<double>());
}

std::string in_quotes(const std::string& s) { return "&#8216;" + html_escape(s) + "&#8217;"; }

// What a model of the student scores, in words: "log-odds of ‘yes’ against ‘no’" for two
// classes, "logit of class ‘x’" for more.
std::string target_name(const json& m, const std::vector<std::string>& classes) {
  const int64_t k = m.value("class_index", int64_t(0));
  std::string name =
      k >= 0 && k < static_cast<int64_t>(classes.size()) ? classes[k] : "#" + std::to_string(k);
  if (m.contains("class") && m["class"].is_string() && !m["class"].get<std::string>().empty())
    name = m["class"].get<std::string>();
  if (classes.size() == 2 && k == 1) return "log-odds of " + in_quotes(name) + " against " + in_quotes(classes[0]);
  return "logit of class " + in_quotes(name);
}

std::string plain(const std::string& key) {
  std::string o = key;
  std::replace(o.begin(), o.end(), '_', ' ');
  return o;
}

// A JSON value in a table cell: numbers in the report's format, short arrays inline.
std::string cell_value(const json& v) {
  if (v.is_number_float()) return fmt_num(v.get<double>());
  if (v.is_number() || v.is_boolean()) return v.dump();
  if (v.is_string()) return html_escape(v.get<std::string>());
  if (v.is_array()) {
    std::string o;
    for (size_t i = 0; i < v.size() && i < 24; ++i) o += (i ? ", " : "") + cell_value(v[i]);
    if (v.size() > 24) o += ", &hellip; (" + std::to_string(v.size()) + " in report.json)";
    return "[" + o + "]";
  }
  if (v.is_object()) {
    std::string o;
    for (auto it = v.begin(); it != v.end(); ++it)
      o += (o.empty() ? "" : "; ") + html_escape(plain(it.key())) + " " + cell_value(it.value());
    return o;
  }
  return "&ndash;";
}

// The student's settings and fitted choices (penalties, rounds, the cross-validation grid),
// whatever they are: every top-level field but its tables.
std::string settings_html(const json& student) {
  static const char* const skip[] = {"kind", "models", "rules", "epoch_losses", "cv", "band",
                                     "splits", "interactions_cv"};
  std::ostringstream h;
  h << "<table class=meta><caption class=small style='text-align:left'>settings</caption>";
  for (auto it = student.begin(); it != student.end(); ++it) {
    if (std::find(std::begin(skip), std::end(skip), it.key()) != std::end(skip)) continue;
    h << "<tr><td>" << html_escape(plain(it.key())) << "</td><td>" << cell_value(it.value())
      << "</td></tr>";
  }
  h << "</table>\n";
  // The cross-validations that chose the student's strength (and, for a GAM, its number of
  // pairwise interactions): the grid and each value's figures.
  for (const char* key : {"cv", "interactions_cv"}) {
    if (!student.contains(key) || !student[key].is_object() || !student[key].contains("grid")) continue;
    const json& cv = student[key];
    const json& grid = cv["grid"];
    h << "<p>" << html_escape(plain(cv.value("parameter", std::string("strength")))) << " = <b>"
      << cell_value(cv.value("chosen", json())) << "</b>, chosen by " << cv.value("folds", 0)
      << "-fold cross-validation on the training rows only (the least held-out log-loss against "
         "the teacher).</p><table class=num><tr><th>"
      << html_escape(plain(cv.value("parameter", std::string("value")))) << "</th>";
    for (const char* k : {"log_loss", "agreement"})
      if (cv.contains(k) && cv[k].is_array() && cv[k].size() == grid.size())
        h << "<th>held-out " << plain(k) << "</th>";
    h << "</tr>";
    for (size_t i = 0; i < grid.size(); ++i) {
      const bool chosen = cv.contains("chosen") && grid[i] == cv["chosen"];
      h << "<tr><td>" << cell_value(grid[i]) << (chosen ? " &#10003;" : "") << "</td>";
      for (const char* k : {"log_loss", "agreement"})
        if (cv.contains(k) && cv[k].is_array() && cv[k].size() == grid.size())
          h << "<td>"
            << (std::string(k) == "agreement" && cv[k][i].is_number()
                    ? report::fmt_pct(cv[k][i].get<double>())
                    : cell_value(cv[k][i]))
            << "</td>";
      h << "</tr>";
    }
    h << "</table>\n";
  }
  return h.str();
}

// --- the students' global explanations --------------------------------------------------------

std::string linear_html(const json& student, const json& features,
                        const std::vector<std::string>& classes) {
  auto is_ngram = [&](const std::string& name) {
    for (const json& f : features)
      if (f.value("name", "") == name) return f.value("kind", "") == "ngram";
    return false;
  };
  std::ostringstream h;
  h << settings_html(student);
  for (const json& m : student["models"]) {
    const json& t = m["terms"];
    // Fields a term carries beyond feature, bin and weight (e.g. coefficients in the original
    // units) become columns of their own.
    std::vector<std::string> extra;
    for (const json& term : t)
      for (auto it = term.begin(); it != term.end(); ++it)
        if (it.key() != "feature" && it.key() != "bin" && it.key() != "weight" &&
            std::find(extra.begin(), extra.end(), it.key()) == extra.end())
          extra.push_back(it.key());
    // The per-unit coefficient right after the weight, the kind of term last.
    static const char* const first[] = {"weight_per_unit", "mean", "sd"};
    auto rank = [](const std::string& k) {
      for (size_t i = 0; i < 3; ++i)
        if (k == first[i]) return static_cast<int>(i);
      return k == "kind" ? 99 : 50;
    };
    std::stable_sort(extra.begin(), extra.end(),
                     [&](const std::string& a, const std::string& b) { return rank(a) < rank(b); });
    h << "<h3>Weights on the " << target_name(m, classes) << ": intercept "
      << fmt_num(m["intercept"].get<double>());
    if (m.contains("intercept_original_units") && m["intercept_original_units"].is_number())
      h << " (" << fmt_num(m["intercept_original_units"].get<double>()) << " in the original units)";
    h << ", " << t.size()
      << " non-zero weights</h3>\n<p class=small>a positive weight (orange bar, to the right) "
         "moves the prediction towards the class, a negative one (blue bar, to the left) away "
         "from it; the largest first</p><table><tr><th>feature</th><th>value</th>"
      << "<th>weight</th>";
    for (const std::string& e : extra) h << "<th>" << html_escape(plain(e)) << "</th>";
    h << "<th>&#8722; &nbsp; weight &nbsp; +</th></tr>\n";
    double mx = 1e-300;
    for (const json& term : t) mx = std::max(mx, std::fabs(term["weight"].get<double>()));
    const size_t shown = std::min<size_t>(t.size(), 40);
    for (size_t i = 0; i < shown; ++i) {
      const double w = t[i]["weight"].get<double>();
      const std::string feature = t[i]["feature"].get<std::string>();
      const int width = static_cast<int>(std::lround(80 * std::fabs(w) / mx));
      h << "<tr><td>" << html_escape(feature) << "</td><td>"
        << (is_ngram(feature) || !t[i].contains("bin") ? "" : cell_value(t[i]["bin"]))
        << "</td><td style='text-align:right'>" << fmt_num(w) << "</td>";
      for (const std::string& e : extra)
        h << "<td style='text-align:right'>" << (t[i].contains(e) ? cell_value(t[i][e]) : "")
          << "</td>";
      h << "<td style='white-space:nowrap'><span style='display:inline-block;width:80px;"
           "text-align:right'>"
        << (w < 0 ? "<span class=bar style='width:" + std::to_string(width) +
                        "px;background:#0072b2'></span>"
                  : "")
        << "</span><span style='display:inline-block;width:1px;height:1em;background:#1a1a1a;"
           "vertical-align:middle'></span><span style='display:inline-block;width:80px'>"
        << (w > 0 ? "<span class=bar style='width:" + std::to_string(width) +
                        "px;background:#d55e00'></span>"
                  : "")
        << "</span></td></tr>\n";
    }
    h << "</table>\n";
    if (t.size() > shown)
      h << "<p class=small>" << t.size() - shown
        << " smaller weights are left out here; all are in report.json</p>\n";
  }
  return h.str();
}

std::string tree_html(const json& student, const std::vector<std::string>& classes) {
  std::ostringstream h;
  h << settings_html(student);
  h << "<h3>Rules (one per leaf)</h3>\n<p class=small>each row is one path from the root to a "
       "leaf: the conditions, the class the tree predicts there and its probabilities</p>"
       "<table><tr><th>if</th><th>then</th>";
  for (const std::string& c : classes) h << "<th>p(" << html_escape(c) << ")</th>";
  h << "<th>training rows</th></tr>\n";
  for (const json& r : student["rules"]) {
    std::string cond;
    for (const json& c : r["conditions"])
      cond += (cond.empty() ? "" : " and ") + c.get<std::string>();
    std::vector<double> p;
    for (const json& v : r["probabilities"]) p.push_back(v.get<double>());
    size_t best = 0;
    for (size_t k = 1; k < p.size(); ++k)
      if (p[k] > p[best]) best = k;
    if (r.contains("class_index") && r["class_index"].is_number_integer())
      best = r["class_index"].get<size_t>();
    const std::string then =
        r.contains("class") && r["class"].is_string()
            ? r["class"].get<std::string>()
            : best < classes.size() ? classes[best] : "#" + std::to_string(best);
    h << "<tr><td>" << html_escape(cond.empty() ? "always" : cond) << "</td><td><b>class '"
      << html_escape(then) << "'</b></td>";
    for (size_t k = 0; k < classes.size(); ++k)
      h << "<td style='text-align:right'>" << (k < p.size() ? fmt_num(p[k], 3) : "") << "</td>";
    h << "<td style='text-align:right'>" << r["rows"].get<uint64_t>() << "</td></tr>\n";
  }
  h << "</table>\n";
  return h.str();
}

// Numbers of a shape's field (values, or a band's lower/upper ends) when present and as long as
// the bins.
std::vector<double> numbers(const json& sh, const char* key, size_t n) {
  if (!sh.contains(key) || !sh[key].is_array() || sh[key].size() != n) return {};
  std::vector<double> v;
  for (const json& x : sh[key]) v.push_back(x.is_number() ? x.get<double>() : 0.0);
  return v;
}

// One shape function as a bar chart: one bar per bin (labelled in the feature's units), its
// contribution on the y axis, with the band's whiskers when the JSON has one.
std::string shape_svg(const std::string& feature, const std::vector<std::string>& bins,
                      const std::vector<double>& v, const std::vector<double>& lower,
                      const std::vector<double>& upper, const std::string& y_title) {
  double lo = 0, hi = 0;
  for (double x : v) lo = std::min(lo, x), hi = std::max(hi, x);
  for (double x : lower) lo = std::min(lo, x);
  for (double x : upper) hi = std::max(hi, x);
  if (hi - lo < 1e-12) hi = lo + 1;
  const double pad = 0.08 * (hi - lo);
  report::Axes ax;
  // Narrower for few bins (a present/absent n-gram); room below for rotated labels only when
  // the labels do not fit their bands (the same rule as Axes::open).
  ax.width = static_cast<int>(std::clamp(150.0 + 14.0 * static_cast<double>(v.size()), 240.0, 360.0));
  ax.left = 56;
  size_t longest = 1;
  for (const auto& l : bins) longest = std::max(longest, std::min<size_t>(18, l.size()));
  const double band_px = double(ax.width - ax.left - ax.right) / std::max<size_t>(1, v.size());
  const bool rotated = v.size() > 1 && static_cast<double>(longest) * 6.0 > band_px;
  ax.bottom = rotated ? 34 + static_cast<int>(4.2 * static_cast<double>(longest)) : 44;
  ax.height = 170 + ax.bottom;
  ax.x0 = 0;
  ax.x1 = static_cast<double>(v.size());
  ax.y0 = lo - pad;
  ax.y1 = hi + pad;
  ax.x_title = feature;
  ax.y_title = y_title;
  ax.x_labels = bins;
  std::ostringstream s;
  s << ax.open("shape function of " + feature);
  const double band = ax.px(1) - ax.px(0);
  const double zero = ax.py(0);
  s << "<line x1='" << fmt_num(ax.px(0)) << "' x2='" << fmt_num(ax.px(ax.x1)) << "' y1='"
    << fmt_num(zero) << "' y2='" << fmt_num(zero) << "' stroke='#767676'/>";
  for (size_t b = 0; b < v.size(); ++b) {
    const double y = ax.py(v[b]);
    s << "<rect x='" << fmt_num(ax.px(double(b)) + 0.1 * band) << "' y='"
      << fmt_num(std::min(y, zero)) << "' width='" << fmt_num(std::max(0.5, 0.8 * band))
      << "' height='" << fmt_num(std::max(0.5, std::fabs(zero - y))) << "' fill='"
      << (v[b] >= 0 ? "#d55e00" : "#0072b2") << "'><title>" << html_escape(bins[b]) << ": "
      << fmt_num(v[b], 3) << "</title></rect>";
    if (!lower.empty() && !upper.empty()) {
      const double cx = ax.px(b + 0.5);
      s << "<line x1='" << fmt_num(cx) << "' x2='" << fmt_num(cx) << "' y1='"
        << fmt_num(ax.py(lower[b])) << "' y2='" << fmt_num(ax.py(upper[b]))
        << "' stroke='#1a1a1a'/>";
    }
  }
  s << "</svg>";
  return s.str();
}

// The lower and upper ends of a numeric bin label ("<= 3", "(3, 5]", "> 5"); "" for an open end,
// false when the label is not numeric (a category, "missing").
bool bin_ends(const std::string& l, std::string* lo, std::string* hi) {
  if (l.rfind("<= ", 0) == 0) {
    *lo = "";
    *hi = l.substr(3);
    return true;
  }
  if (l.rfind("> ", 0) == 0) {
    *lo = l.substr(2);
    *hi = "";
    return true;
  }
  const size_t comma = l.find(", ");
  if (l.size() > 3 && l.front() == '(' && l.back() == ']' && comma != std::string::npos) {
    *lo = l.substr(1, comma - 1);
    *hi = l.substr(comma + 2, l.size() - comma - 3);
    return true;
  }
  return false;
}

// The label of cell i of a pair table whose cells merge `div` bins of a feature: the merged
// numeric range ("(36, 42]", "<= 34", "> 73 or missing"), or "first … last".
std::string merged_label(const std::vector<std::string>& bins, int div, int i) {
  if (bins.empty()) return std::to_string(i);
  const size_t a = std::min(bins.size() - 1, static_cast<size_t>(i) * std::max(1, div));
  const size_t b = std::min(bins.size() - 1, a + std::max(1, div) - 1);
  if (a == b) return bins[a];
  size_t last = b;
  std::string suffix;
  if (bins[last].rfind("missing", 0) == 0 && last > a) {
    suffix = " or " + bins[last];
    --last;
  }
  std::string lo, hi, lo2, hi2;
  if (bin_ends(bins[a], &lo, &hi) && bin_ends(bins[last], &lo2, &hi2)) {
    std::string range = lo.empty() && hi2.empty() ? "any"
                        : lo.empty()              ? "<= " + hi2
                        : hi2.empty()             ? "> " + lo
                                                  : "(" + lo + ", " + hi2 + "]";
    return range + suffix;
  }
  return bins[a] + " … " + bins[b];
}

// A pair's table as a heat map (diverging colours, values printed when the table is small),
// with both features' bins on the axes.
std::string pair_svg(const json& pr, const json& shapes, const std::string& title) {
  const int n1 = pr["shape"][0].get<int>(), n2 = pr["shape"][1].get<int>();
  const std::vector<double> table = pr["values"].get<std::vector<double>>();
  const std::string f1 = pr["features"][0].get<std::string>(),
                    f2 = pr["features"][1].get<std::string>();
  std::vector<std::string> b1, b2;
  for (const json& sh : shapes) {
    if (sh.value("feature", "") == f1) b1 = sh["bins"].get<std::vector<std::string>>();
    if (sh.value("feature", "") == f2) b2 = sh["bins"].get<std::vector<std::string>>();
  }
  int div1 = 1, div2 = 1;
  if (pr.contains("bins_per_cell")) {
    div1 = pr["bins_per_cell"][0].get<int>();
    div2 = pr["bins_per_cell"][1].get<int>();
  }
  const int cell = std::max(10, std::min(34, 340 / std::max(1, std::max(n1, n2))));
  const bool print = cell >= 30;
  double mx = 1e-12;
  for (double x : table) mx = std::max(mx, std::fabs(x));
  const int L = 130, T = 16, B = 100;
  const int W = L + n2 * cell + 10, H = T + n1 * cell + B;
  std::ostringstream s;
  s << "<svg class='chart' data-colour=value width='" << W << "' height='" << H
    << "' viewBox='0 0 " << W << " " << H << "' role='img' aria-label='interaction of "
    << html_escape(f1) << " and " << html_escape(f2) << "' font-size='10'><rect width='" << W
    << "' height='" << H << "' fill='#fff'/>";
  for (int a = 0; a < n1; ++a)
    for (int b = 0; b < n2; ++b) {
      const double v = table[a * n2 + b];
      const std::string bg = report::diverging_colour(v, mx);
      s << "<rect x='" << L + b * cell << "' y='" << T + a * cell << "' width='" << cell
        << "' height='" << cell << "' fill='" << bg << "' stroke='#fff'><title>"
        << html_escape(merged_label(b1, div1, a)) << ", " << html_escape(merged_label(b2, div2, b))
        << ": " << fmt_num(v, 3) << "</title></rect>";
      if (print)
        s << "<text x='" << L + b * cell + cell / 2 << "' y='" << T + a * cell + cell / 2 + 3
          << "' text-anchor='middle' font-size='9' data-bg='" << bg << "' style='fill:"
          << report::text_colour_on(bg) << "'>" << fmt_num(v, 2) << "</text>";
    }
  for (int a = 0; a < n1; ++a)
    s << "<text class='tick' x='" << L - 4 << "' y='" << T + a * cell + cell / 2 + 3
      << "' text-anchor='end'>" << html_escape(report::shorten(merged_label(b1, div1, a), 20))
      << "</text>";
  for (int b = 0; b < n2; ++b) {
    const int x = L + b * cell + cell / 2, y = T + n1 * cell + 8;
    s << "<text class='tick' x='" << x << "' y='" << y << "' text-anchor='end' transform='rotate(-45 "
      << x << " " << y << ")'>" << html_escape(report::shorten(merged_label(b2, div2, b), 16))
      << "</text>";
  }
  s << "<text class='axis-title' x='" << L + n2 * cell / 2 << "' y='" << H - 4
    << "' text-anchor='middle' font-size='11'>" << html_escape(f2)
    << "</text><text class='axis-title' x='10' y='" << T + n1 * cell / 2 << "' transform='rotate(-90 10 "
    << T + n1 * cell / 2 << ")' text-anchor='middle' font-size='11'>" << html_escape(f1)
    << "</text></svg>";
  // Every cell's value, printed (the tooltips only repeat them).
  std::ostringstream t;
  t << "<details><summary>values per cell</summary><table class=num><tr><th>"
    << html_escape(f1) << " \\ " << html_escape(f2) << "</th>";
  for (int b = 0; b < n2; ++b) t << "<th>" << html_escape(merged_label(b2, div2, b)) << "</th>";
  t << "</tr>";
  for (int a = 0; a < n1; ++a) {
    t << "<tr><th>" << html_escape(merged_label(b1, div1, a)) << "</th>";
    for (int b = 0; b < n2; ++b) t << "<td>" << fmt_num(table[a * n2 + b], 3) << "</td>";
    t << "</tr>";
  }
  t << "</table></details>";
  return "<div class=fig>" + report::diverging_legend(mx, title) + s.str() + t.str() + "</div>";
}

std::string gam_html(const json& student, const std::vector<std::string>& classes) {
  std::ostringstream h;
  h << settings_html(student);
  for (const json& m : student["models"]) {
    const std::string target = target_name(m, classes);
    h << "<h3>Shape functions: contribution to the " << target << " (intercept "
      << fmt_num(m["intercept"].get<double>()) << ")</h3>\n<p class=small>one chart per "
      << "feature, most important first: the bars are what each value range of the feature adds "
         "to the "
      << target << " (orange: towards, blue: away)";
    bool banded = false;
    for (const json& sh : m["shapes"]) banded = banded || sh.contains("lower");
    if (banded)
      h << "; whiskers: "
        << html_escape(student.contains("band") && student["band"].is_string()
                           ? student["band"].get<std::string>()
                           : std::string("the band in report.json (lower, upper)"));
    h << "; the values are under each chart</p><div class='shapes'>\n";
    int shown = 0;
    for (const json& sh : m["shapes"]) {  // most important first
      if (shown++ >= 30) break;
      const std::vector<std::string> bins = sh["bins"].get<std::vector<std::string>>();
      const std::vector<double> v = sh["values"].get<std::vector<double>>();
      const std::vector<double> lower = numbers(sh, "lower", v.size()),
                                upper = numbers(sh, "upper", v.size());
      const std::string feature = sh["feature"].get<std::string>();
      h << "<figure>"
        << shape_svg(feature, bins, v, lower, upper,
                     classes.size() == 2 ? "contribution (log-odds)" : "contribution (logit)")
        << "<figcaption>" << html_escape(feature) << " (importance "
        << fmt_num(sh["importance"].get<double>(), 3);
      if (sh.contains("monotone") && sh["monotone"].is_string())
        h << "; constrained " << (sh["monotone"] == "+" ? "increasing" : "decreasing");
      const std::vector<double> rows = numbers(sh, "rows", v.size());
      h << ")<details><summary>values per bin</summary><table class=num><tr><th>"
        << html_escape(feature) << "</th><th>contribution</th>"
        << (lower.empty() ? "" : "<th>lower</th><th>upper</th>")
        << (rows.empty() ? "" : "<th>training rows</th>") << "</tr>";
      for (size_t b = 0; b < v.size(); ++b) {
        h << "<tr><td>" << html_escape(bins[b]) << "</td><td>" << fmt_num(v[b], 3) << "</td>";
        if (!lower.empty()) h << "<td>" << fmt_num(lower[b], 3) << "</td><td>" << fmt_num(upper[b], 3) << "</td>";
        if (!rows.empty()) h << "<td>" << fmt_num(rows[b], 6) << "</td>";
        h << "</tr>";
      }
      h << "</table></details></figcaption></figure>\n";
    }
    h << "</div>\n";
    if (m["shapes"].size() > 30)
      h << "<p class=small>" << m["shapes"].size() - 30
        << " less important shape functions are left out here; all are in report.json</p>\n";
    if (m.contains("interactions") && !m["interactions"].empty())
      h << "<h3>Interactions</h3><p class=small>what each pair of features adds together, "
           "beyond their own shapes</p>";
    for (const json& pr : m["interactions"])
      h << "<figure>" << pair_svg(pr, m["shapes"], "contribution (logit)")
        << "<figcaption>" << html_escape(pr["features"][0].get<std::string>()) << " &times; "
        << html_escape(pr["features"][1].get<std::string>()) << " (importance "
        << fmt_num(pr["importance"].get<double>(), 3) << ")</figcaption></figure>\n";
  }
  return h.str();
}

std::string transformer_html(const json& student) {
  std::ostringstream h;
  h << "<p>A transformer encoder (BERT layout) is not glass-box: explain it token by token with "
       "<code>candor explain --model DIR/model</code> (it is saved there as a Hugging Face "
       "folder) and check the explanation against the teacher's.</p>\n<table>\n";
  for (auto it = student.begin(); it != student.end(); ++it)
    h << "<tr><td>" << html_escape(it.key()) << "</td><td>"
      << html_escape(it.value().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
      << "</td></tr>\n";
  h << "</table>\n";
  return h.str();
}

std::string student_html(const json& student, const json& features,
                         const std::vector<std::string>& classes) {
  if (!student.is_object()) return "";
  const std::string kind = student.value("kind", "");
  if (kind == "linear") return linear_html(student, features, classes);
  if (kind == "tree") return tree_html(student, classes);
  if (kind == "gam") return gam_html(student, classes);
  if (kind == "transformer") return transformer_html(student);
  return "";
}

// The features that weigh most in the student, in order (at most k).
std::vector<std::string> strongest(const json& student, size_t k) {
  std::vector<std::string> out;
  auto add = [&](const std::string& f) {
    if (out.size() < k && std::find(out.begin(), out.end(), f) == out.end()) out.push_back(f);
  };
  const std::string kind = student.value("kind", "");
  if (!student.contains("models") || !student["models"].is_array() || student["models"].empty())
    return out;
  const json& m = student["models"][0];
  if (kind == "linear" && m.contains("terms")) {
    std::vector<std::pair<double, std::string>> w;
    for (const json& t : m["terms"])
      w.push_back({-std::fabs(t["weight"].get<double>()), t["feature"].get<std::string>()});
    std::stable_sort(w.begin(), w.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [neg, f] : w) add(f);
  } else if (kind == "gam" && m.contains("shapes")) {
    for (const json& sh : m["shapes"]) add(sh["feature"].get<std::string>());
  }
  return out;
}

// The person's summary: what was distilled, on how many rows, how well it copies the teacher
// on rows it never saw, and the features that weigh most.
std::string distill_summary(const json& report, const std::vector<std::string>& classes) {
  const json& student = report["student"];
  const std::string kind = student.is_object() ? student.value("kind", "") : "";
  const json& test = report["fidelity"]["test"];
  const json& train = report["fidelity"]["train"];
  std::vector<std::string> columns;
  if (report.contains("features") && report["features"].is_array())
    for (const json& f : report["features"]) {
      const std::string c = f.value("column", f.value("name", ""));
      if (!c.empty() && std::find(columns.begin(), columns.end(), c) == columns.end())
        columns.push_back(c);
    }
  std::ostringstream o;
  o << "A <b>" << html_escape(kind.empty() ? "-" : kind) << "</b> student";
  if (kind == "linear" || kind == "gam" || kind == "tree")
    o << " (a glass-box model a person can read in full)";
  o << " was fitted on " << train.value("rows", uint64_t(0))
    << " training rows to give the teacher's answer among ";
  for (size_t k = 0; k < classes.size(); ++k)
    o << (k ? (k + 1 == classes.size() ? " and " : ", ") : "") << in_quotes(classes[k]);
  o << ", reading " << columns.size() << (columns.size() == 1 ? " input column" : " input columns");
  if (!columns.empty() && columns.size() <= 8) {
    o << " (";
    for (size_t i = 0; i < columns.size(); ++i) o << (i ? ", " : "") << html_escape(columns[i]);
    o << ")";
  }
  o << ". On " << test.value("rows", uint64_t(0))
    << " held-out rows it agrees with the teacher <b>" << pct(test, "agreement") << "</b> of the time ("
    << pct(train, "agreement") << " on its training rows)";
  if (test.contains("agreement") && train.contains("agreement") &&
      train["agreement"].get<double>() - test["agreement"].get<double>() > 0.05)
    o << "; the gap means it fits its training rows better than new ones";
  o << ".";
  const std::vector<std::string> top = strongest(student, 3);
  if (!top.empty()) {
    o << " The features that weigh most: ";
    for (size_t i = 0; i < top.size(); ++i) o << (i ? ", " : "") << html_escape(top[i]);
    o << ".";
  } else if (kind == "tree" && student.contains("rules") && !student["rules"].empty() &&
             !student["rules"][0]["conditions"].empty()) {
    o << " Its first split: " << html_escape(student["rules"][0]["conditions"][0].get<std::string>())
      << ".";
  }
  return report::summary_block(o.str());
}

}  // namespace

std::string render_distill_html(const nlohmann::json& report, const std::string& title) {
  std::ostringstream h;
  h << report::page_begin(title) << "\n";
  const json& student = report["student"];
  const std::vector<std::string> classes = report["classes"].get<std::vector<std::string>>();
  h << distill_summary(report, classes);
  h << "<p>Classes: ";
  for (size_t k = 0; k < classes.size(); ++k) h << (k ? ", " : "") << html_escape(classes[k]);
  h << ". Student: "
    << (student.is_object() ? html_escape(student.value("kind", "")) : std::string("-"))
    << ", fitted in " << fmt_num(report["fit_seconds"].get<double>(), 3) << " s.</p>\n";
  h << "<h2>Fidelity</h2>\n<p class=small>agreement: the share of rows where the student "
       "predicts the teacher's class (higher is better); KL: how far its probabilities are from "
       "the teacher's (lower is better); accuracy: against the true labels, when given</p>"
       "<table class=num><tr><th></th><th>rows</th><th>agreement with teacher</th>"
       "<th>mean KL(teacher||student)</th><th>teacher accuracy</th><th>student "
       "accuracy</th></tr>\n";
  const json& fidelity = report["fidelity"];
  for (auto [name, key] :
       {std::pair<const char*, const char*>{"held-out", "test"}, {"training", "train"}}) {
    const json& f = fidelity[key];
    h << "<tr><th>" << name << "</th><td>" << f["rows"].get<uint64_t>() << "</td><td>"
      << pct(f, "agreement") << "</td><td>" << fmt_num(f["kl"].get<double>(), 4) << "</td><td>"
      << pct(f, "teacher_accuracy") << "</td><td>" << pct(f, "student_accuracy") << "</td></tr>\n";
  }
  h << "</table>\n";
  const json& test = fidelity["test"];
  if (!test["slices"].empty()) {
    const double overall = test["agreement"].get<double>();
    h << "<h3>Held-out agreement per slice</h3>\n<p class=small>slices more than 5 points below "
         "the overall agreement are marked &#9888;</p><table><tr><th>column</th><th>value</th>"
         "<th>rows</th><th>agreement</th></tr>\n";
    for (const json& s : test["slices"]) {
      const bool low = s["agreement"].get<double>() < overall - 0.05;
      h << "<tr><td>" << html_escape(s["column"].get<std::string>()) << "</td><td>"
        << html_escape(s["value"].get<std::string>()) << "</td><td>" << s["rows"].get<uint64_t>()
        << "</td><td" << (low ? " class='warn'" : "") << ">" << pct(s, "agreement")
        << (low ? " &#9888;" : "") << "</td></tr>\n";
    }
    h << "</table>\n";
  }
  const json& skipped = report["skipped_records"];
  if (!skipped.empty()) {
    h << "<h3 class='warn'>" << skipped.size() << " records skipped while reading</h3><ul>\n";
    for (size_t i = 0; i < skipped.size() && i < 50; ++i)
      h << "<li>line " << skipped[i]["line"].get<uint64_t>() << ": "
        << html_escape(skipped[i]["reason"].get<std::string>()) << "</li>\n";
    h << "</ul>\n";
  }
  h << "<h2>The student's global explanation</h2>\n"
    << student_html(student, report["features"], classes);
  h << report::page_end();
  return h.str();
}

}  // namespace candor
