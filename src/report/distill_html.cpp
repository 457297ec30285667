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
  if (!fidelity.contains(key)) return "&ndash;";  // absent: no true labels
  std::ostringstream ss;
  ss.setf(std::ios::fixed);
  ss.precision(1);
  ss << 100 * fidelity[key].get<double>() << "%";
  return ss.str();
}

// --- the students' global explanations --------------------------------------------------------

// "class 'yes'" when the report names the class, else "class #1".
std::string class_label(const json& m) {
  if (m.contains("class") && m["class"].is_string() && !m["class"].get<std::string>().empty())
    return "class '" + html_escape(m["class"].get<std::string>()) + "'";
  return "class #" + std::to_string(m.value("class_index", int64_t(0)));
}

// The cross-validation that chose the student's strength, in a sentence.
std::string cv_html(const json& student) {
  if (!student.contains("cv") || !student["cv"].is_object()) return "";
  const json& cv = student["cv"];
  std::ostringstream h;
  h << "<p>" << html_escape(cv.value("parameter", "")) << " = "
    << fmt_num(cv["chosen"].get<double>(), 3) << ", chosen by " << cv.value("folds", 0)
    << "-fold cross-validation on the training rows (least held-out log-loss against the "
       "teacher) from ";
  const json& grid = cv["grid"];
  for (size_t i = 0; i < grid.size(); ++i)
    h << (i ? ", " : "") << fmt_num(grid[i].get<double>(), 3);
  h << ".</p>\n";
  return h.str();
}

std::string linear_html(const json& student, const json& features) {
  auto is_ngram = [&](const std::string& name) {
    for (const json& f : features)
      if (f.value("name", "") == name) return f.value("kind", "") == "ngram";
    return false;
  };
  std::ostringstream h;
  h << cv_html(student);
  for (const json& m : student["models"]) {
    const json& t = m["terms"];
    h << "<h3>Logit of " << class_label(m) << ": intercept "
      << fmt_num(m["intercept"].get<double>()) << ", " << t.size()
      << " non-zero weights</h3>\n<table><tr><th>feature</th><th>value</th>"
      << "<th>weight</th><th>per unit</th><th></th></tr>\n";
    const double mx = t.empty() ? 1 : std::fabs(t[0]["weight"].get<double>());
    for (size_t i = 0; i < t.size() && i < 40; ++i) {
      const double w = t[i]["weight"].get<double>();
      const std::string feature = t[i]["feature"].get<std::string>();
      const int width = static_cast<int>(120 * std::fabs(w) / mx);
      h << "<tr><td>" << html_escape(feature) << "</td><td>"
        << html_escape(is_ngram(feature) ? "" : t[i]["bin"].get<std::string>()) << "</td><td>"
        << fmt_num(w) << "</td><td>"
        << (t[i].contains("weight_per_unit") ? fmt_num(t[i]["weight_per_unit"].get<double>())
                                             : std::string())
        << "</td><td><svg width='120' height='10'><rect width='" << width
        << "' height='10' fill='" << (w > 0 ? "#2a7" : "#c33") << "'/></svg></td></tr>\n";
    }
    h << "</table>\n";
  }
  return h.str();
}

std::string tree_html(const json& student) {
  std::ostringstream h;
  h << cv_html(student);
  h << "<h3>Rules (one per leaf)</h3>\n<table><tr><th>if</th><th>then</th><th>p(class)</th>"
       "<th>training rows</th></tr>\n";
  for (const json& r : student["rules"]) {
    std::string cond;
    for (const json& c : r["conditions"])
      cond += (cond.empty() ? "" : " and ") + c.get<std::string>();
    std::string val;
    for (const json& v : r["probabilities"])
      val += (val.empty() ? "" : ", ") + fmt_num(v.get<double>(), 3);
    h << "<tr><td>" << html_escape(cond.empty() ? "always" : cond) << "</td><td>"
      << class_label(r) << "</td><td>" << val
      << "</td><td>" << r["rows"].get<uint64_t>() << "</td></tr>\n";
  }
  h << "</table>\n";
  return h.str();
}

// A bar plot of one shape function: one bar per bin, positive up in green.
std::string shape_svg(const std::vector<std::string>& bins, const std::vector<double>& v,
                      const std::vector<double>& lower = {},
                      const std::vector<double>& upper = {}) {
  const int W = 320, H = 160, pad = 20;
  double mx = 1e-9;
  for (double x : v) mx = std::max(mx, std::fabs(x));
  const bool band = lower.size() == v.size() && upper.size() == v.size();
  if (band)
    for (size_t b = 0; b < v.size(); ++b)
      mx = std::max({mx, std::fabs(lower[b]), std::fabs(upper[b])});
  const int nb = static_cast<int>(v.size());
  const double bw = double(W - 2 * pad) / nb;
  const double mid = H / 2.0;
  std::ostringstream s;
  s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H + 30
    << "' viewBox='0 0 " << W << " " << H + 30 << "'>";
  s << "<line x1='" << pad << "' y1='" << mid << "' x2='" << W - pad << "' y2='" << mid
    << "' stroke='#888'/>";
  for (int b = 0; b < nb; ++b) {
    double hgt = (H / 2.0 - pad) * v[b] / mx;
    double y = hgt >= 0 ? mid - hgt : mid;
    s << "<rect x='" << fmt_num(pad + b * bw + 0.5) << "' y='" << fmt_num(y) << "' width='"
      << fmt_num(std::max(1.0, bw - 1)) << "' height='" << fmt_num(std::fabs(hgt) + 0.5)
      << "' fill='" << (v[b] >= 0 ? "#2a7" : "#c33") << "'><title>" << html_escape(bins[b]) << ": "
      << fmt_num(v[b]) << "</title></rect>";
    if (band) {  // the confidence band as an error bar
      const double x = pad + (b + 0.5) * bw;
      s << "<line x1='" << fmt_num(x) << "' x2='" << fmt_num(x) << "' y1='"
        << fmt_num(mid - (H / 2.0 - pad) * upper[b] / mx) << "' y2='"
        << fmt_num(mid - (H / 2.0 - pad) * lower[b] / mx) << "' stroke='#333'/>";
    }
  }
  s << "<text x='" << pad << "' y='12' font-size='10'>+" << fmt_num(mx, 3) << "</text>";
  s << "<text x='" << pad << "' y='" << H - 4 << "' font-size='10'>-" << fmt_num(mx, 3)
    << "</text>";
  s << "<text x='" << pad << "' y='" << H + 14 << "' font-size='9'>" << html_escape(bins.front())
    << "</text>";
  s << "<text x='" << W - pad << "' y='" << H + 26 << "' font-size='9' text-anchor='end'>"
    << html_escape(bins.back()) << "</text></svg>";
  return s.str();
}

// A pair's table as a grid of cells: green positive, red negative.
std::string pair_svg(int n1, int n2, const std::vector<double>& table) {
  const int cell = 18;
  double mx = 1e-9;
  for (double x : table) mx = std::max(mx, std::fabs(x));
  std::ostringstream s;
  s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << n2 * cell << "' height='" << n1 * cell
    << "'>";
  for (int a = 0; a < n1; ++a)
    for (int b = 0; b < n2; ++b) {
      double v = table[a * n2 + b] / mx;
      int shade = static_cast<int>(255 * (1 - std::fabs(v)));
      std::string col =
          v >= 0 ? "rgb(" + std::to_string(shade) + ",255," + std::to_string(shade) + ")"
                 : "rgb(255," + std::to_string(shade) + "," + std::to_string(shade) + ")";
      s << "<rect x='" << b * cell << "' y='" << a * cell << "' width='" << cell << "' height='"
        << cell << "' fill='" << col << "'><title>" << fmt_num(table[a * n2 + b])
        << "</title></rect>";
    }
  s << "</svg>";
  return s.str();
}

std::string gam_html(const json& student) {
  std::ostringstream h;
  h << cv_html(student);
  for (const json& m : student["models"]) {
    h << "<h3>Shape functions (contribution to the logit of " << class_label(m) << "; intercept "
      << fmt_num(m["intercept"].get<double>())
      << ")</h3>\n<div class='shapes'>\n";
    int shown = 0;
    for (const json& sh : m["shapes"]) {  // most important first
      if (shown++ >= 30) break;
      h << "<figure>"
        << shape_svg(sh["bins"].get<std::vector<std::string>>(),
                     sh["values"].get<std::vector<double>>(),
                     sh.value("lower", std::vector<double>()),
                     sh.value("upper", std::vector<double>()))
        << "<figcaption>" << html_escape(sh["feature"].get<std::string>()) << " (importance "
        << fmt_num(sh["importance"].get<double>(), 3) << ")</figcaption></figure>\n";
    }
    h << "</div>\n";
    for (const json& pr : m["interactions"])
      h << "<figure>"
        << pair_svg(pr["shape"][0].get<int>(), pr["shape"][1].get<int>(),
                    pr["values"].get<std::vector<double>>())
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

std::string student_html(const json& student, const json& features) {
  if (!student.is_object()) return "";
  const std::string kind = student.value("kind", "");
  if (kind == "linear") return linear_html(student, features);
  if (kind == "tree") return tree_html(student);
  if (kind == "gam") return gam_html(student);
  if (kind == "transformer") return transformer_html(student);
  return "";
}

}  // namespace

std::string render_distill_html(const nlohmann::json& report, const std::string& title) {
  std::ostringstream h;
  h << report::page_begin(title) << "\n";
  const json& student = report["student"];
  const std::vector<std::string> classes = report["classes"].get<std::vector<std::string>>();
  h << "<p>Classes: ";
  for (size_t k = 0; k < classes.size(); ++k)
    h << (k ? ", " : "") << "#" << k << " " << html_escape(classes[k]);
  h << ". Student: "
    << (student.is_object() ? html_escape(student.value("kind", "")) : std::string("-"))
    << ", fitted in " << fmt_num(report["fit_seconds"].get<double>(), 6) << " s.</p>\n";
  h << "<h2>Fidelity</h2>\n<table><tr><th></th><th>rows</th><th>agreement with teacher</th>"
       "<th>mean KL(teacher||student)</th><th>teacher accuracy</th><th>student "
       "accuracy</th></tr>\n";
  const json& fidelity = report["fidelity"];
  for (auto [name, key] :
       {std::pair<const char*, const char*>{"held-out", "test"}, {"training", "train"}}) {
    const json& f = fidelity[key];
    h << "<tr><td>" << name << "</td><td>" << f["rows"].get<uint64_t>() << "</td><td>"
      << pct(f, "agreement") << "</td><td>" << fmt_num(f["kl"].get<double>(), 6) << "</td><td>"
      << pct(f, "teacher_accuracy") << "</td><td>" << pct(f, "student_accuracy") << "</td></tr>\n";
  }
  h << "</table>\n";
  const json& test = fidelity["test"];
  if (!test["slices"].empty()) {
    const double overall = test["agreement"].get<double>();
    h << "<h3>Held-out agreement per slice</h3>\n<table><tr><th>column</th><th>value</th>"
         "<th>rows</th><th>agreement</th></tr>\n";
    for (const json& s : test["slices"])
      h << "<tr><td>" << html_escape(s["column"].get<std::string>()) << "</td><td>"
        << html_escape(s["value"].get<std::string>()) << "</td><td>" << s["rows"].get<uint64_t>()
        << "</td><td" << (s["agreement"].get<double>() < overall - 0.05 ? " class='warn'" : "")
        << ">" << pct(s, "agreement") << "</td></tr>\n";
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
  h << "<h2>The student's global explanation</h2>\n" << student_html(student, report["features"]);
  h << report::page_end();
  return h.str();
}

}  // namespace candor
