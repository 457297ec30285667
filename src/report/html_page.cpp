// The shared pieces of candor's HTML pages (see html_page.h).
#include "report/html_page.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace candor::report {

std::string html_escape(const std::string& s, bool mark_newlines) {
  std::string o;
  o.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&#39;"; break;
      case '\n':
        if (mark_newlines) {
          o += "&#x21B5;";
          break;
        }
        o += c;
        break;
      default: o += c;
    }
  }
  return o;
}

std::string fmt_num(double v, int prec) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*g", prec, v);
  return buf;
}

std::string fmt_pct(double share) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.1f%%", 100 * share);
  return buf;
}

std::string fmt_signed(double v, int prec) {
  if (v < 0) return "\xE2\x88\x92" + fmt_num(-v, prec);  // U+2212 MINUS SIGN
  return "+" + fmt_num(v, prec);
}

const char* stylesheet() {
  return R"CSS(
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1100px;color:#1a1a1a;background:#fff;padding:0 1em;line-height:1.4}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}h3{font-size:1.05em}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}td,th{border:1px solid #d5d5d5;padding:3px 8px}th{background:#f2f2f2}
table.num td,table.num th{text-align:right}
.meta{color:#444;font-size:.9em}.meta td{padding:0 1em 0 0;border:none}
.summary{background:#eef3f9;border-left:4px solid #2166ac;padding:.6em 1em;margin:1em 0 1.5em;font-size:1.02em}
.summary p{margin:.3em 0}
.text{line-height:2.1em;font-size:1.05em}
.tok{padding:2px 1px;border-radius:3px;white-space:pre-wrap;cursor:default}
.tok.gen{outline:1px dashed #666}
.tok.off{color:#595959}
table.grid{border-collapse:collapse;font-size:.8em;margin:0}
table.grid td,table.grid th{border:1px solid #e3e3e3;padding:2px 4px;text-align:center;white-space:pre}
table.grid th{background:#f2f2f2;font-weight:600}
table.grid th.rot{height:7em;vertical-align:bottom;padding:2px 1px}
table.grid th.rot span{writing-mode:vertical-rl;transform:rotate(180deg);white-space:pre}
svg{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;overflow:visible}
svg.legend,svg.series-legend{display:block;margin:.3em 0}
svg text{fill:#1a1a1a}
.fig{margin:.5em 0}
.scroll{overflow-x:auto;max-width:100%}
.small{font-size:.85em;color:#4d4d4d}
.methods{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:1em}
.card{border:1px solid #d9d9d9;border-radius:6px;padding:.6em 1em;min-width:0}
.curves{display:flex;flex-wrap:wrap;gap:1.5em}
.shapes{display:flex;flex-wrap:wrap;gap:.5em 1em;align-items:flex-start}.shapes figure{margin:0}
figure{display:inline-block;margin:6px;vertical-align:top}figcaption{font-size:.85em;max-width:560px}
.bar{display:inline-block;height:.8em;vertical-align:middle}
dl.metrics dt{font-weight:600;margin-top:.5em}dl.metrics dd{margin-left:1.5em}
details{margin:.3em 0}summary{cursor:pointer;color:#1f4e8c}
.warn{color:#9a3b00}
)CSS";
}

std::string page_begin(const std::string& title) {
  return "<!DOCTYPE html><html lang=en><head><meta charset='utf-8'><meta name=viewport "
         "content='width=device-width'><title>" +
         html_escape(title) + "</title><style>" + stylesheet() + "</style></head><body><h1>" +
         html_escape(title) + "</h1>";
}

std::string page_end() { return "</body></html>\n"; }

std::string summary_block(const std::string& sentences_html) {
  return "<section class=summary aria-label=summary><p><b>Summary.</b> " + sentences_html +
         "</p></section>";
}

namespace {

struct Rgb {
  double r, g, b;
};

Rgb parse_hex(const std::string& hex) {
  unsigned r = 0, g = 0, b = 0;
  if (hex.size() == 7 && hex[0] == '#') std::sscanf(hex.c_str() + 1, "%2x%2x%2x", &r, &g, &b);
  return {double(r), double(g), double(b)};
}

std::string to_hex(const Rgb& c) {
  auto cl = [](double v) { return static_cast<int>(std::lround(std::clamp(v, 0.0, 255.0))); };
  char buf[16];
  std::snprintf(buf, sizeof(buf), "#%02x%02x%02x", cl(c.r), cl(c.g), cl(c.b));
  return buf;
}

// Piecewise-linear interpolation through `stops` (evenly spaced over [0, 1]).
std::string interpolate(const std::vector<const char*>& stops, double t) {
  t = std::clamp(t, 0.0, 1.0);
  const double pos = t * static_cast<double>(stops.size() - 1);
  const size_t i = std::min(stops.size() - 2, static_cast<size_t>(pos));
  const double u = pos - static_cast<double>(i);
  const Rgb a = parse_hex(stops[i]), b = parse_hex(stops[i + 1]);
  return to_hex({a.r + u * (b.r - a.r), a.g + u * (b.g - a.g), a.b + u * (b.b - a.b)});
}

}  // namespace

std::string diverging_colour(double v, double scale) {
  // ColorBrewer RdBu ends (blue #2166ac, red #b2182b) through light blue, white and orange:
  // safe for the common colour-vision deficiencies.
  static const std::vector<const char*> stops = {"#2166ac", "#92c5de", "#ffffff", "#f4a582",
                                                 "#b2182b"};
  if (!(scale > 0) || !std::isfinite(v)) return "#ffffff";
  const double t = std::clamp(v / scale, -1.0, 1.0);
  return interpolate(stops, 0.5 + 0.5 * t);
}

std::string sequential_colour(double t) {
  static const std::vector<const char*> stops = {"#ffffff", "#c6dbef", "#6baed6", "#2171b5",
                                                 "#08306b"};  // ColorBrewer Blues
  if (!std::isfinite(t)) t = 0;
  return interpolate(stops, t);
}

double relative_luminance(const std::string& hex) {
  const Rgb c = parse_hex(hex);
  auto lin = [](double v) {
    v /= 255.0;
    return v <= 0.04045 ? v / 12.92 : std::pow((v + 0.055) / 1.055, 2.4);
  };
  return 0.2126 * lin(c.r) + 0.7152 * lin(c.g) + 0.0722 * lin(c.b);
}

double contrast_ratio(const std::string& a, const std::string& b) {
  double la = relative_luminance(a), lb = relative_luminance(b);
  if (la < lb) std::swap(la, lb);
  return (la + 0.05) / (lb + 0.05);
}

std::string text_colour_on(const std::string& background) {
  // Black, not a dark grey: black or white reaches 4.58:1 on every background (WCAG AA).
  return contrast_ratio(background, "#000000") >= contrast_ratio(background, "#ffffff")
             ? "#000000"
             : "#ffffff";
}

std::string colour_style(const std::string& background) {
  return "background:" + background + ";color:" + text_colour_on(background);
}

namespace {

// A legend bar of `n` small rectangles coloured by `colour_at(u)`, u in [0, 1], with ticks.
template <typename F>
std::string legend_svg(const std::string& title, F colour_at,
                       const std::vector<std::pair<double, std::string>>& ticks) {
  const int W = 300, bar_x = 10, bar_w = 280, bar_y = 18, bar_h = 12, n = 56;
  std::ostringstream s;
  s << "<svg class='legend' width='" << W << "' height='50' viewBox='0 0 " << W
    << " 50' role='img' aria-label='colour scale: " << html_escape(title) << "'>"
    << "<text class='legend-title' x='" << bar_x << "' y='12' font-size='11'>" << html_escape(title)
    << "</text>";
  for (int i = 0; i < n; ++i) {
    const double u = (i + 0.5) / n;
    s << "<rect x='" << fmt_num(bar_x + i * double(bar_w) / n) << "' y='" << bar_y << "' width='"
      << fmt_num(double(bar_w) / n + 0.4) << "' height='" << bar_h << "' fill='" << colour_at(u)
      << "'/>";
  }
  s << "<rect x='" << bar_x << "' y='" << bar_y << "' width='" << bar_w << "' height='" << bar_h
    << "' fill='none' stroke='#767676'/>";
  // Long numbers ("-9.51e-05") would run into each other: then only the ends and the middle.
  size_t longest = 0;
  for (const auto& t : ticks) longest = std::max(longest, t.second.size());
  const bool sparse = longest > 7 && ticks.size() > 3;
  for (size_t k = 0; k < ticks.size(); ++k) {
    const auto& [u, label] = ticks[k];
    if (sparse && k != 0 && k + 1 != ticks.size() && std::fabs(u - 0.5) > 1e-9) continue;
    const double x = bar_x + u * bar_w;
    const char* anchor = u <= 0.01 ? "start" : u >= 0.99 ? "end" : "middle";
    s << "<line x1='" << fmt_num(x) << "' x2='" << fmt_num(x) << "' y1='" << bar_y + bar_h
      << "' y2='" << bar_y + bar_h + 4 << "' stroke='#1a1a1a'/><text class='tick' x='"
      << fmt_num(x) << "' y='" << bar_y + bar_h + 15 << "' font-size='10' text-anchor='" << anchor
      << "'>" << html_escape(label) << "</text>";
  }
  s << "</svg>";
  return s.str();
}

}  // namespace

std::string diverging_legend(double scale, const std::string& title) {
  if (!(scale > 0)) scale = 1;
  std::vector<std::pair<double, std::string>> ticks;
  for (double u : {0.0, 0.25, 0.5, 0.75, 1.0}) {
    const double v = (2 * u - 1) * scale;
    ticks.push_back({u, std::fabs(v) < 1e-300 ? "0" : fmt_signed(v, 3)});
  }
  return legend_svg(
      title, [&](double u) { return diverging_colour((2 * u - 1) * scale, scale); }, ticks);
}

std::string sequential_legend(double lo, double hi, const std::string& title) {
  if (!(hi > lo)) hi = lo + 1;
  std::vector<std::pair<double, std::string>> ticks;
  for (double u : {0.0, 0.25, 0.5, 0.75, 1.0}) ticks.push_back({u, fmt_num(lo + u * (hi - lo), 3)});
  return legend_svg(title, [](double u) { return sequential_colour(u); }, ticks);
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) return {};
  if (hi < lo) std::swap(lo, hi);
  if (hi - lo < 1e-300) return {lo};
  const double raw = (hi - lo) / std::max(1, target);
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  double step = p;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * p >= raw) {
      step = m * p;
      break;
    }
  std::vector<double> t;
  for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step)
    t.push_back(std::fabs(v) < step * 1e-9 ? 0.0 : v);
  return t;
}

double Axes::px(double x) const {
  const double span = x1 - x0 != 0 ? x1 - x0 : 1;
  return left + (x - x0) / span * (width - left - right);
}

double Axes::py(double y) const {
  const double span = y1 - y0 != 0 ? y1 - y0 : 1;
  return top + (y1 - y) / span * (height - top - bottom);
}

std::string Axes::open(const std::string& aria_label) const {
  std::ostringstream s;
  const double bx = px(x0), ex = px(x1), by = py(y0), ey = py(y1);
  s << "<svg class='chart' width='" << width << "' height='" << height << "' viewBox='0 0 "
    << width << " " << height << "' role='img' aria-label='" << html_escape(aria_label)
    << "' font-size='11'><rect x='0' y='0' width='" << width << "' height='" << height
    << "' fill='#fff'/>";
  // y ticks, grid lines and numbers
  for (double v : nice_ticks(std::min(y0, y1), std::max(y0, y1), 5)) {
    const double y = py(v);
    s << "<line x1='" << fmt_num(bx) << "' x2='" << fmt_num(ex) << "' y1='" << fmt_num(y)
      << "' y2='" << fmt_num(y) << "' stroke='#ececec'/><line x1='" << fmt_num(bx - 4) << "' x2='"
      << fmt_num(bx) << "' y1='" << fmt_num(y) << "' y2='" << fmt_num(y)
      << "' stroke='#1a1a1a'/><text class='tick' x='" << fmt_num(bx - 6) << "' y='"
      << fmt_num(y + 4) << "' text-anchor='end'>" << fmt_num(v, 3) << "</text>";
  }
  if (x_labels.empty()) {
    for (double v : nice_ticks(std::min(x0, x1), std::max(x0, x1), 5)) {
      const double x = px(v);
      s << "<line x1='" << fmt_num(x) << "' x2='" << fmt_num(x) << "' y1='" << fmt_num(by)
        << "' y2='" << fmt_num(by + 4) << "' stroke='#1a1a1a'/><text class='tick' x='"
        << fmt_num(x) << "' y='" << fmt_num(by + 16) << "' text-anchor='middle'>" << fmt_num(v, 3)
        << "</text>";
    }
  } else {
    const size_t n = x_labels.size();
    const double band = (ex - bx) / static_cast<double>(n);
    size_t longest = 1;
    for (const auto& l : x_labels) longest = std::max(longest, std::min<size_t>(18, l.size()));
    const bool rotate = n > 1 && static_cast<double>(longest) * 6.0 > band;
    const size_t every = std::max<size_t>(1, static_cast<size_t>(std::ceil(14.0 / band)));
    for (size_t i = 0; i < n; i += every) {
      const double x = bx + (static_cast<double>(i) + 0.5) * band;
      s << "<line x1='" << fmt_num(x) << "' x2='" << fmt_num(x) << "' y1='" << fmt_num(by)
        << "' y2='" << fmt_num(by + 4) << "' stroke='#1a1a1a'/><text class='tick' x='"
        << fmt_num(x) << "' y='" << fmt_num(by + 14) << "'";
      if (rotate)
        s << " text-anchor='end' transform='rotate(-35 " << fmt_num(x) << " " << fmt_num(by + 14)
          << ")'";
      else
        s << " text-anchor='middle'";
      s << " font-size='10'>" << html_escape(shorten(x_labels[i], 18)) << "</text>";
    }
  }
  s << "<line x1='" << fmt_num(bx) << "' x2='" << fmt_num(ex) << "' y1='" << fmt_num(by)
    << "' y2='" << fmt_num(by) << "' stroke='#1a1a1a'/><line x1='" << fmt_num(bx) << "' x2='"
    << fmt_num(bx) << "' y1='" << fmt_num(by) << "' y2='" << fmt_num(ey)
    << "' stroke='#1a1a1a'/>";
  s << "<text class='axis-title' x='" << fmt_num((bx + ex) / 2) << "' y='" << height - 6
    << "' text-anchor='middle' font-size='12'>" << html_escape(x_title) << "</text>";
  const double cy = (by + ey) / 2;
  s << "<text class='axis-title' x='14' y='" << fmt_num(cy) << "' transform='rotate(-90 14 "
    << fmt_num(cy) << ")' text-anchor='middle' font-size='12'>" << html_escape(y_title)
    << "</text>";
  return s.str();
}

std::string bar_chart(const std::vector<Bar>& bars, Axes ax, const std::string& aria_label,
                      bool print_values, int prec) {
  ax.x_labels.clear();
  for (const Bar& b : bars) ax.x_labels.push_back(b.label);
  if (ax.x_labels.empty()) ax.x_labels.push_back("");
  ax.x0 = 0;
  ax.x1 = static_cast<double>(std::max<size_t>(1, bars.size()));
  std::ostringstream s;
  s << ax.open(aria_label);
  const double lo = std::min(ax.y0, ax.y1), hi = std::max(ax.y0, ax.y1);
  const double base = std::clamp(0.0, lo, hi);
  const double band = (ax.px(ax.x1) - ax.px(ax.x0)) / ax.x1;
  const double w = std::max(1.0, band * 0.6);
  for (size_t i = 0; i < bars.size(); ++i) {
    const Bar& b = bars[i];
    const double cx = ax.px(static_cast<double>(i) + 0.5);
    const double v = std::clamp(b.value, lo, hi);
    const double y_base = ax.py(base), y_v = ax.py(v);
    if (std::isfinite(b.value))
      s << "<rect x='" << fmt_num(cx - w / 2) << "' y='" << fmt_num(std::min(y_base, y_v))
        << "' width='" << fmt_num(w) << "' height='" << fmt_num(std::fabs(y_v - y_base))
        << "' fill='#0072b2'/>";
    double end = y_v;  // where the value label goes: beyond the bar or its whisker
    if (b.has_ci && std::isfinite(b.lo) && std::isfinite(b.hi)) {
      const double y_lo = ax.py(std::clamp(b.lo, lo, hi)), y_hi = ax.py(std::clamp(b.hi, lo, hi));
      const double cap = std::min(6.0, w / 2);
      s << "<line x1='" << fmt_num(cx) << "' x2='" << fmt_num(cx) << "' y1='" << fmt_num(y_lo)
        << "' y2='" << fmt_num(y_hi) << "' stroke='#1a1a1a' stroke-width='1.5'/>";
      for (double y : {y_lo, y_hi})
        s << "<line x1='" << fmt_num(cx - cap) << "' x2='" << fmt_num(cx + cap) << "' y1='"
          << fmt_num(y) << "' y2='" << fmt_num(y) << "' stroke='#1a1a1a' stroke-width='1.5'/>";
      end = b.value >= base ? std::min(y_v, y_hi) : std::max(y_v, y_lo);
    }
    if (print_values && std::isfinite(b.value)) {
      const bool up = b.value >= base;
      s << "<text class='value' x='" << fmt_num(cx) << "' y='" << fmt_num(up ? end - 4 : end + 12)
        << "' text-anchor='middle' font-size='10'>" << fmt_num(b.value, prec) << "</text>";
    }
  }
  if (lo < 0 && hi > 0)
    s << "<line x1='" << fmt_num(ax.px(ax.x0)) << "' x2='" << fmt_num(ax.px(ax.x1)) << "' y1='"
      << fmt_num(ax.py(0)) << "' y2='" << fmt_num(ax.py(0)) << "' stroke='#1a1a1a'/>";
  s << "</svg>";
  return s.str();
}

const char* series_colour(size_t i) {
  // Okabe–Ito: distinguishable with the common colour-vision deficiencies, each with at least
  // 3:1 contrast on white for lines.
  static const char* c[] = {"#0072b2", "#d55e00", "#009e73", "#cc79a7",
                            "#000000", "#e69f00", "#56b4e9", "#7f7f00"};
  return c[i % 8];
}

const char* series_dash(size_t i) {
  static const char* d[] = {"", "8 4", "2 3", "10 3 2 3", "4 4", "12 4 2 4 2 4", "1 5", "6 2"};
  return d[i % 8];
}

std::string series_marker(size_t i, double x, double y) {
  const std::string col = series_colour(i);
  const std::string X = fmt_num(x), Y = fmt_num(y);
  std::ostringstream s;
  switch (i % 6) {
    case 0: s << "<circle cx='" << X << "' cy='" << Y << "' r='3.5' fill='" << col << "'/>"; break;
    case 1:
      s << "<rect x='" << fmt_num(x - 3.5) << "' y='" << fmt_num(y - 3.5)
        << "' width='7' height='7' fill='" << col << "'/>";
      break;
    case 2:
      s << "<path d='M" << X << " " << fmt_num(y - 4.5) << " L" << fmt_num(x + 4.5) << " "
        << fmt_num(y + 3.5) << " L" << fmt_num(x - 4.5) << " " << fmt_num(y + 3.5) << " Z' fill='"
        << col << "'/>";
      break;
    case 3:
      s << "<path d='M" << X << " " << fmt_num(y - 4.5) << " L" << fmt_num(x + 4.5) << " " << Y
        << " L" << X << " " << fmt_num(y + 4.5) << " L" << fmt_num(x - 4.5) << " " << Y
        << " Z' fill='" << col << "'/>";
      break;
    case 4:
      s << "<path d='M" << fmt_num(x - 4) << " " << fmt_num(y - 4) << " L" << fmt_num(x + 4) << " "
        << fmt_num(y + 4) << " M" << fmt_num(x + 4) << " " << fmt_num(y - 4) << " L"
        << fmt_num(x - 4) << " " << fmt_num(y + 4) << "' stroke='" << col
        << "' stroke-width='2'/>";
      break;
    default:
      s << "<circle cx='" << X << "' cy='" << Y << "' r='3.5' fill='#fff' stroke='" << col
        << "' stroke-width='2'/>";
  }
  return s.str();
}

std::string visible_text(const std::string& text) {
  static const std::string kSpace = "\xE2\x90\xA3";  // U+2423 OPEN BOX
  size_t b = 0, e = text.size();
  while (b < e && text[b] == ' ') ++b;
  while (e > b && text[e - 1] == ' ') --e;
  std::string out;
  for (size_t i = 0; i < b; ++i) out += kSpace;
  for (size_t i = b; i < e; ++i) {
    if (text[i] == '\n')
      out += "\\n";
    else if (text[i] == '\t')
      out += "\\t";
    else
      out += text[i];
  }
  for (size_t i = e; i < text.size() && e > b; ++i) out += kSpace;
  return out;
}

std::string feature_text(const Attribution& a, size_t f) {
  const Feature& ft = a.features[f];
  std::string text;
  for (int64_t t = ft.begin; t < ft.end && t < static_cast<int64_t>(a.token_texts.size()); ++t)
    text += a.token_texts[t];
  // make_features labels a span with its text, edges trimmed and newlines as "\n"; another
  // label was given by the caller and is kept.
  std::string trimmed;
  const size_t b = text.find_first_not_of(" \t"), e = text.find_last_not_of(" \t");
  if (b != std::string::npos)
    for (char c : text.substr(b, e - b + 1)) trimmed += c == '\n' ? std::string("\\n") : std::string(1, c);
  if (!ft.label.empty() && ft.label != trimmed && !(trimmed.empty() && ft.label == "\xE2\x90\xA3")) return ft.label;
  return visible_text(text);
}

std::string shorten(const std::string& s, size_t max_chars) {
  size_t chars = 0, i = 0;
  while (i < s.size()) {
    if (chars == max_chars) return s.substr(0, i) + "\xE2\x80\xA6";
    const unsigned char c = static_cast<unsigned char>(s[i]);
    i += c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    ++chars;
  }
  return s;
}

}  // namespace candor::report
