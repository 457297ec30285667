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
    s << "<h2>By target group</h2>";
    std::vector<Bar> flips, deltas;
    double top_flip = 0, top_delta = 0;
    for (const json& t : a["per_target"]) {
      Bar f, d;
      f.label = d.label = t.value("to", "");
      f.value = t["flip_share"].is_number() ? t["flip_share"].get<double>() : 0.0;
      d.value = t["mean_abs_delta"].is_number() ? t["mean_abs_delta"].get<double>() : 0.0;
      top_flip = std::max(top_flip, f.value);
      top_delta = std::max(top_delta, d.value);
      flips.push_back(f);
      deltas.push_back(d);
    }
    Axes ax;
    ax.width = std::max(300, 100 + 70 * static_cast<int>(flips.size()));
    ax.height = 280;
    ax.x_title = "swapped to (target group)";
    ax.y0 = 0;
    ax.y1 = std::min(1.0, std::max(0.05, top_flip * 1.25));
    ax.y_title = lm ? "share whose top token changes" : "share whose class changes";
    s << "<div class='curves'><figure>" << bar_chart(flips, ax, "flip share per target group")
      << "<figcaption>Share of swaps that change the " << (lm ? "top next token" : "predicted class")
      << " (0 to 1), per group swapped to.</figcaption></figure>";
    ax.y1 = std::max(1e-6, top_delta * 1.25);
    ax.y_title = lm ? "mean JS divergence (nats)" : "mean |change of p| (0 to 1)";
    s << "<figure>" << bar_chart(deltas, ax, "mean change per target group", true, 4)
      << "<figcaption>Mean " << delta << ", per group swapped to.</figcaption></figure></div>";
    s << "<table class=num><tr><th>swapped to</th><th>n</th><th>flip share</th><th>mean |&Delta;|</th></tr>";
    for (const json& t : a["per_target"])
      s << "<tr><td>" << html_escape(t.value("to", "")) << "</td><td>" << t.value("n", 0) << "</td><td>"
        << cf_num(t["flip_share"]) << "</td><td>" << cf_num(t["mean_abs_delta"], 4) << "</td></tr>";
    s << "</table>";
  }
  s << "<h2>The largest changes</h2><p>Each swapped word is coloured by the change it makes alone (the contrast "
       "between the original and the text with only that word swapped): orange to red raises, blue lowers "
    << (lm ? "the divergence" : "the original class's probability") << "; the list under each text gives the numbers.</p>";
  for (const json& w : a["worst"]) {
    double scale = 1e-9;
    for (const json& x : w["words"]) scale = std::max(scale, std::fabs(x.value("effect", 0.0)));
    s << "<div class='example'><p><b>record " << w.value("record", 0) << "</b>";
    if (w.contains("label_before"))
      s << ": " << html_escape(w["label_before"].get<std::string>()) << " &rarr; "
        << html_escape(w["label_after"].get<std::string>());
    s << ", p " << cf_num(w["p_before"]) << " &rarr; " << cf_num(w["p_after"]) << " (&Delta; " << cf_num(w["delta"], 4)
      << ")</p><p>" << html_escape(w.value("original", "")) << "</p><div class=fig>"
      << diverging_legend(scale, "change made by the word alone") << "<p data-colour=value>";
    // The swapped text, with the replaced words marked.
    const std::string swapped = w.value("swapped", "");
    size_t at = 0;
    for (const json& x : w["words"]) {
      const std::string to = x.value("to", "");
      const size_t p = swapped.find(to, at);
      if (p == std::string::npos) continue;
      s << html_escape(swapped.substr(at, p - at)) << "<mark style='"
        << colour_style(diverging_colour(x.value("effect", 0.0), scale)) << "'>" << html_escape(to) << "</mark>";
      at = p + to.size();
    }
    s << html_escape(swapped.substr(at)) << "</p></div><ul class=small>";
    for (const json& x : w["words"])
      s << "<li>" << html_escape(x.value("from", "")) << " &rarr; " << html_escape(x.value("to", "")) << ": "
        << fmt_signed(x.value("effect", 0.0), 4) << "</li>";
    s << "</ul>";
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
