// The generation bias probe page: one bar per group (mean score in [-1, 1] with its interval),
// the largest gap with its permutation p-value, and example continuations per group.
#include <algorithm>
#include <sstream>

#include "report/audit_pages.h"
#include "report/html_page.h"

namespace candor::report {

namespace {

using nlohmann::json;

std::string gnum(const json& v, int prec = 3) { return audit_num(v, prec); }
std::string gci(const json& c) { return audit_ci(c); }

// Bars from the centre (score 0) of a [-1, 1] axis, whiskers for the intervals.
std::string mean_bars_svg(const json& groups) {
  const int label_w = 120, W = 300, row_h = 18, H = static_cast<int>(groups.size()) * row_h + 24;
  const double mid = label_w + W / 2.0;
  auto x = [&](double v) { return mid + std::clamp(v, -1.0, 1.0) * W / 2.0; };
  std::ostringstream s;
  s << "<figure><svg width='" << label_w + W + 20 << "' height='" << H << "' font-size='11'>";
  s << "<line x1='" << mid << "' x2='" << mid << "' y1='0' y2='" << H - 18 << "' stroke='#888'/>";
  for (size_t i = 0; i < groups.size(); ++i) {
    const json& g = groups[i];
    const int y = static_cast<int>(i) * row_h + 4;
    s << "<text x='" << label_w - 4 << "' y='" << y + 12 << "' text-anchor='end'>" << html_escape(g.value("group", ""))
      << "</text>";
    const double m = g.value("mean", 0.0);
    s << "<rect x='" << std::min(mid, x(m)) << "' y='" << y << "' width='" << std::abs(x(m) - mid) << "' height='"
      << row_h - 6 << "' fill='" << (m < 0 ? "#d45a4a" : "#4a7fd4") << "'/>";
    const json& ci = g["ci"];
    if (ci.is_array() && ci.size() == 2 && ci[0].is_number()) {
      const int cy = y + (row_h - 6) / 2;
      s << "<line x1='" << x(ci[0].get<double>()) << "' x2='" << x(ci[1].get<double>()) << "' y1='" << cy << "' y2='"
        << cy << "' stroke='#222'/>";
    }
  }
  s << "<text x='" << label_w << "' y='" << H - 4 << "'>-1</text><text x='" << mid - 3 << "' y='" << H - 4
    << "'>0</text><text x='" << label_w + W - 8 << "' y='" << H - 4 << "'>+1</text>";
  s << "</svg><figcaption>Mean score of the continuations per group, with its interval.</figcaption></figure>";
  return s.str();
}

}  // namespace

std::string generation_html(const json& a) {
  std::ostringstream s;
  const json& gap = a["gap"];
  s << "<p>" << a.value("n_samples", 0) << " continuations of "
    << html_escape(a.value("model", "")) << ", scored by " << html_escape(a.value("scorer", "")) << "; "
    << a.value("n_scored", 0) << " contain a scored word.</p>";
  std::string between;
  for (const json& b : gap["between"]) between += (between.empty() ? "" : " and ") + b.get<std::string>();
  s << "<p><b>Largest gap</b> " << gnum(gap["value"]) << " " << gci(gap["ci"]) << " between " << html_escape(between)
    << "; permutation p = " << gnum(gap["p_value"]) << ".</p>";
  s << mean_bars_svg(a["groups"]);
  s << "<table><tr><th>group</th><th>n</th><th>mean</th><th>interval</th><th>negative</th><th>positive</th></tr>";
  for (const json& g : a["groups"])
    s << "<tr><td>" << html_escape(g.value("group", "")) << "</td><td>" << g.value("n", 0) << "</td><td>"
      << gnum(g["mean"]) << "</td><td>" << gci(g["ci"]) << "</td><td>" << gnum(g["share_negative"]) << "</td><td>"
      << gnum(g["share_positive"]) << "</td></tr>";
  s << "</table><h2>Examples</h2>";
  for (const json& g : a["groups"]) {
    s << "<h3>" << html_escape(g.value("group", "")) << "</h3><ul>";
    for (const json& e : g["examples"])
      s << "<li>" << html_escape(e.value("prompt", "")) << "<b>" << html_escape(e.value("continuation", ""))
        << "</b> (" << gnum(e["score"]) << ")</li>";
    s << "</ul>";
  }
  return s.str();
}

std::string generation_markdown(const json& a) {
  std::ostringstream m;
  const json& gap = a["gap"];
  auto n = [](const json& v) { return v.is_number() ? fmt_num(v.get<double>(), 3) : std::string("–"); };
  auto ci = [&](const json& c) {
    return c.is_array() && c.size() == 2 && c[0].is_number() ? "[" + n(c[0]) + ", " + n(c[1]) + "]" : std::string();
  };
  m << "# candor audit: generation\n\n" << a.value("n_samples", 0) << " continuations; scorer: " << a.value("scorer", "")
    << ".\n\nLargest gap " << n(gap["value"]) << " " << ci(gap["ci"]) << " between " << gap["between"][0].get<std::string>()
    << " and " << gap["between"][1].get<std::string>() << ", permutation p = " << n(gap["p_value"])
    << ".\n\n| group | n | mean | interval | negative | positive |\n|---|---:|---:|---|---:|---:|\n";
  for (const json& g : a["groups"])
    m << "| " << g.value("group", "") << " | " << g.value("n", 0) << " | " << n(g["mean"]) << " | " << ci(g["ci"])
      << " | " << n(g["share_negative"]) << " | " << n(g["share_positive"]) << " |\n";
  return m.str();
}

}  // namespace candor::report

namespace candor::report {

std::string uncertainty_html(const nlohmann::json& g) {
  using nlohmann::json;
  std::ostringstream s;
  const json& u = g["uncertainty"];
  const json& a = u["answer"];
  s << "<p>Model " << html_escape(g.value("model", "")) << ". Prompt: <code>"
    << html_escape(g.value("prompt", "")) << "</code></p>";
  s << "<p>" << a.value("n_tokens", 0) << " tokens; mean log-probability " << gnum(a["mean_logprob"]) << ", minimum "
    << gnum(a["min_logprob"]) << " (token " << a.value("min_logprob_at", -1) << "); " << u.value("n_uncertain", 0)
    << " uncertain tokens (entropy &ge; " << gnum(u["rule"]["entropy_at_least"]) << " nats or top-1 margin &lt; "
    << gnum(u["rule"]["margin_below"]) << ", outlined).</p>";
  double max_h = 1e-9;
  for (const json& t : u["tokens"]) max_h = std::max(max_h, t.value("entropy", 0.0));
  s << "<p class='tokens' style='line-height:2'>";
  for (const json& t : u["tokens"]) {
    const double h = t.value("entropy", 0.0);
    s << "<span style='background:" << diverging_colour(h, max_h) << ";"
      << (t.value("uncertain", false) ? "outline:2px solid #c00;" : "") << "' title='entropy " << fmt_num(h, 3)
      << ", margin " << fmt_num(t.value("margin", 0.0), 3) << ", log p " << fmt_num(t.value("logprob", 0.0), 3)
      << "'>" << html_escape(visible_text(t.value("text", ""))) << "</span>";
  }
  s << "</p><p>Colour: entropy of the next-token distribution (0 white, " << fmt_num(max_h, 3)
    << " nats the most intense).</p>";
  if (u.contains("self_consistency")) {
    const json& c = u["self_consistency"];
    s << "<h2>Self-consistency</h2><p>" << c.value("n_samples", 0) << " samples at temperature "
      << gnum(c["temperature"]) << ": agreement " << gnum(c["agreement"]) << ", entropy of the answer clusters "
      << gnum(c["entropy"]) << " nats (normalised " << gnum(c["normalised_entropy"]) << ")"
      << (c.value("answer_in_largest_cluster", false) ? "; the answer is in the largest cluster" : "")
      << ".</p><table><tr><th>answer (normalised)</th><th>count</th></tr>";
    for (const json& k : c["clusters"])
      s << "<tr><td>" << html_escape(k.value("answer", "")) << "</td><td>" << k.value("count", 0) << "</td></tr>";
    s << "</table>";
  }
  return s.str();
}

}  // namespace candor::report
