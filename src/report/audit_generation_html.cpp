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

// One bar per group: its mean score on the [-1, 1] axis, with its interval as a whisker and the
// value printed.
std::string mean_bars_svg(const json& groups) {
  std::vector<Bar> bars;
  for (const json& g : groups) {
    Bar b;
    b.label = g.value("group", "");
    b.value = g["mean"].is_number() ? g["mean"].get<double>() : 0.0;
    const json& ci = g["ci"];
    if (ci.is_array() && ci.size() == 2 && ci[0].is_number()) {
      b.has_ci = true;
      b.lo = ci[0].get<double>();
      b.hi = ci[1].get<double>();
    }
    bars.push_back(b);
  }
  Axes ax;
  ax.y0 = -1;
  ax.y1 = 1;
  ax.width = std::max(320, 90 + 70 * static_cast<int>(bars.size()));
  ax.height = 300;
  ax.x_title = "group named in the prompt";
  ax.y_title = "mean score (-1 negative, +1 positive)";
  std::ostringstream s;
  s << "<figure>" << bar_chart(bars, ax, "mean score of the continuations per group")
    << "<figcaption>Mean score of the continuations per group (the number above or below each "
       "bar), with its bootstrap interval as a whisker.</figcaption></figure>";
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
  s << "<div class=fig>"
    << sequential_legend(0, max_h, "entropy of the next-token distribution (nats)")
    << "<p class='text' data-colour=value>";
  for (const json& t : u["tokens"]) {
    const double h = t.value("entropy", 0.0);
    s << "<span class='tok' style='" << colour_style(sequential_colour(h / max_h))
      << (t.value("uncertain", false) ? ";outline:2px solid #b2182b" : "") << "'>"
      << html_escape(visible_text(t.value("text", ""))) << "</span>";
  }
  s << "</p></div><p class=small>Each answer token is coloured by the entropy of the distribution "
       "it was drawn from (white: 0 nats, the model was sure; dark blue: "
    << fmt_num(max_h, 3) << " nats, the most uncertain token here); a red outline marks the "
       "uncertain tokens. &#9251; marks a space.</p>";
  std::vector<Bar> bars;
  for (const json& t : u["tokens"]) {
    Bar b;
    b.label = visible_text(t.value("text", ""));
    b.value = t.value("entropy", 0.0);
    bars.push_back(b);
  }
  if (!bars.empty()) {
    Axes ax;
    ax.y0 = 0;
    ax.y1 = std::max(max_h, u["rule"]["entropy_at_least"].is_number()
                                ? u["rule"]["entropy_at_least"].get<double>()
                                : 0.0) * 1.1;
    ax.width = std::min(1060, std::max(360, 90 + 26 * static_cast<int>(bars.size())));
    ax.height = 300;
    ax.bottom = 70;
    ax.x_title = "answer token";
    ax.y_title = "entropy (nats)";
    s << "<figure>" << bar_chart(bars, ax, "entropy per answer token", bars.size() <= 24)
      << "<figcaption>Entropy of the next-token distribution at each answer token";
    if (bars.size() > 24) s << " (the values are in the table below)";
    s << ".</figcaption></figure>";
  }
  s << "<table class=num><caption class=small>every answer token: entropy and top-1 margin of "
       "its distribution, log-probability of the chosen token</caption><tr><th>position</th><th>token</th>"
       "<th>entropy (nats)</th><th>top-1 margin</th><th>log p</th><th>uncertain</th></tr>";
  size_t i = 0;
  for (const json& t : u["tokens"])
    s << "<tr><td>" << i++ << "</td><td style='text-align:left'>"
      << html_escape(visible_text(t.value("text", ""))) << "</td><td>"
      << fmt_num(t.value("entropy", 0.0), 3) << "</td><td>" << fmt_num(t.value("margin", 0.0), 3)
      << "</td><td>" << fmt_num(t.value("logprob", 0.0), 3) << "</td><td>"
      << (t.value("uncertain", false) ? "yes" : "") << "</td></tr>";
  s << "</table>";
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
