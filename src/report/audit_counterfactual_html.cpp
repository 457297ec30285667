// The counterfactual-swap page: the headline figures with intervals, per target group, and the
// worst pairs with their words coloured by how much each swap alone moves the answer.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "report/audit_pages.h"
#include "report/html_page.h"

namespace candor::report {

namespace {

using nlohmann::json;

std::string cf_num(const json& v, int prec = 3) { return audit_num(v, prec); }
std::string cf_interval(const json& ci) { return audit_ci(ci); }

}  // namespace

std::string counterfactual_html(const json& a) {
  std::ostringstream s;
  const bool lm = a.value("model_kind", "") == "causal_lm";
  const std::string delta = lm ? "Jensen&ndash;Shannon divergence of the next token" : "|&Delta; p| of the original class";
  std::string groups;
  for (const json& g : a["groups"]) groups += (groups.empty() ? "" : ", ") + g.get<std::string>();
  s << "<p>Groups " << html_escape(groups) << " (word list: " << html_escape(a.value("lexicon", "")) << "). "
    << a.value("n_mentioning", 0) << " of " << a.value("n_texts", 0) << " texts mention a term; "
    << a.value("n_pairs", 0) << " swapped texts scored by " << html_escape(a["model"].value("path", "")) << ".</p>";
  s << "<table><tr><th>figure</th><th>value</th><th>interval</th></tr>";
  s << "<tr><td>share of swaps whose " << (lm ? "top next token" : "predicted class") << " changes</td><td>"
    << cf_num(a["flip_share"]) << "</td><td>" << cf_interval(a["flip_share_ci"]) << "</td></tr>";
  s << "<tr><td>mean " << delta << "</td><td>" << cf_num(a["mean_abs_delta"], 4) << "</td><td>"
    << cf_interval(a["mean_abs_delta_ci"]) << "</td></tr>";
  s << "<tr><td>largest " << delta << "</td><td>" << cf_num(a["max_abs_delta"], 4) << "</td><td></td></tr>";
  if (lm)
    s << "<tr><td>mean |&Delta; log p| of the original top token</td><td>" << cf_num(a["mean_abs_logprob_change"], 4)
      << "</td><td>" << cf_interval(a["mean_abs_logprob_change_ci"]) << "</td></tr>";
  s << "</table>";
  if (a.contains("per_target") && !a["per_target"].empty()) {
    s << "<h2>By target group</h2><table><tr><th>swapped to</th><th>n</th><th>flip share</th><th>mean |&Delta;|</th></tr>";
    for (const json& t : a["per_target"])
      s << "<tr><td>" << html_escape(t.value("to", "")) << "</td><td>" << t.value("n", 0) << "</td><td>"
        << cf_num(t["flip_share"]) << "</td><td>" << cf_num(t["mean_abs_delta"], 4) << "</td></tr>";
    s << "</table>";
  }
  s << "<h2>The largest changes</h2><p>Each swapped word is coloured by the change it makes alone (the contrast "
       "between the original and the text with only that word swapped): red raises, blue lowers "
    << (lm ? "the divergence" : "the original class's probability") << ".</p>";
  for (const json& w : a["worst"]) {
    double scale = 1e-9;
    for (const json& x : w["words"]) scale = std::max(scale, std::fabs(x.value("effect", 0.0)));
    s << "<div class='example'><p><b>record " << w.value("record", 0) << "</b>";
    if (w.contains("label_before"))
      s << ": " << html_escape(w["label_before"].get<std::string>()) << " &rarr; "
        << html_escape(w["label_after"].get<std::string>());
    s << ", p " << cf_num(w["p_before"]) << " &rarr; " << cf_num(w["p_after"]) << " (&Delta; " << cf_num(w["delta"], 4)
      << ")</p><p>" << html_escape(w.value("original", "")) << "</p><p>";
    // The swapped text, with the replaced words marked.
    const std::string swapped = w.value("swapped", "");
    size_t at = 0;
    for (const json& x : w["words"]) {
      const std::string to = x.value("to", "");
      const size_t p = swapped.find(to, at);
      if (p == std::string::npos) continue;
      s << html_escape(swapped.substr(at, p - at)) << "<mark style='background:"
        << diverging_colour(x.value("effect", 0.0), scale) << "' title='" << html_escape(x.value("from", "")) << " → "
        << html_escape(to) << ": " << fmt_num(x.value("effect", 0.0), 4) << "'>" << html_escape(to) << "</mark>";
      at = p + to.size();
    }
    s << html_escape(swapped.substr(at)) << "</p>";
    if (w.contains("exact_contrast")) {
      const json& x = w["exact_contrast"];
      s << "<p>Exact attribution of " << html_escape(x.value("explained", "")) << " (the six largest features and, in bold, every one holding a swapped word): " << cf_num(x["before"]) << " &rarr; "
        << cf_num(x["after"]) << ".</p><table><tr><th>original: feature</th><th>share</th><th>swapped: feature</th><th>share</th></tr>";
      const json& fb = x["features_before"];
      const json& fa = x["features_after"];
      for (size_t k = 0; k < std::max(fb.size(), fa.size()); ++k) {
        s << "<tr>";
        for (const json* f : {&fb, &fa}) {
          if (k < f->size())
            s << "<td>" << ((*f)[k].value("swapped", false) ? "<b>" : "") << html_escape((*f)[k].value("text", ""))
              << ((*f)[k].value("swapped", false) ? "</b>" : "") << "</td><td>" << cf_num((*f)[k]["value"]) << "</td>";
          else
            s << "<td></td><td></td>";
        }
        s << "</tr>";
      }
      s << "</table>";
    }
    s << "</div>";
  }
  return s.str();
}

std::string counterfactual_markdown(const json& a) {
  std::ostringstream m;
  const bool lm = a.value("model_kind", "") == "causal_lm";
  m << "# candor audit: counterfactual (" << a.value("attribute", "") << ")\n\n"
    << a.value("n_mentioning", 0) << " of " << a.value("n_texts", 0) << " texts mention a term; "
    << a.value("n_pairs", 0) << " swaps.\n\n| figure | value | interval |\n|---|---:|---|\n";
  auto plain = [](const json& v, int prec) { return v.is_number() ? fmt_num(v.get<double>(), prec) : std::string("–"); };
  auto ci = [](const json& c) {
    return c.is_array() && c.size() == 2 && c[0].is_number()
               ? "[" + fmt_num(c[0].get<double>(), 3) + ", " + fmt_num(c[1].get<double>(), 3) + "]"
               : std::string();
  };
  m << "| flip share | " << plain(a["flip_share"], 3) << " | " << ci(a["flip_share_ci"]) << " |\n";
  m << "| mean " << (lm ? "JS divergence" : "abs delta p") << " | " << plain(a["mean_abs_delta"], 4) << " | "
    << ci(a["mean_abs_delta_ci"]) << " |\n";
  m << "| max | " << plain(a["max_abs_delta"], 4) << " | |\n";
  if (lm)
    m << "| mean abs delta log p | " << plain(a["mean_abs_logprob_change"], 4) << " | "
      << ci(a["mean_abs_logprob_change_ci"]) << " |\n";
  m << "\n## Largest changes\n\n";
  for (const json& w : a["worst"]) {
    m << "- record " << w.value("record", 0) << " (delta " << plain(w["delta"], 4) << "): \"" << w.value("original", "")
      << "\" -> \"" << w.value("swapped", "") << "\"";
    for (const json& x : w["words"])
      m << "; " << x.value("from", "") << "->" << x.value("to", "") << " " << plain(x["effect"], 4);
    m << "\n";
  }
  return m.str();
}

}  // namespace candor::report
