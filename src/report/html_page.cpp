// The shared pieces of candor's HTML pages (see html_page.h).
#include "report/html_page.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

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

const char* stylesheet() {
  return R"CSS(
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}td,th{border:1px solid #ddd;padding:3px 8px}th{background:#fafafa}
table.num td,table.num th{text-align:right}
.meta{color:#555;font-size:.9em}.meta td{padding:0 1em 0 0;border:none}
.text{line-height:2.1em;font-size:1.05em}
.tok{padding:2px 1px;border-radius:3px;white-space:pre-wrap;cursor:default}
.tok.gen{outline:1px dashed #999}
.tok.off{color:#999}
table.grid{border-collapse:collapse;font-size:.8em;margin:0}
table.grid td,table.grid th{border:1px solid #eee;padding:2px 4px;text-align:center;white-space:pre}
table.grid th{background:#fafafa;font-weight:600}
.legend{display:inline-block;width:220px;height:12px;background:linear-gradient(90deg,#286eff,#fff,#ff3c32);vertical-align:middle;margin:0 .5em}
.small{font-size:.8em;color:#666}
.methods{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:1em}
.card{border:1px solid #e3e3e3;border-radius:6px;padding:.6em 1em}
.curves{display:flex;flex-wrap:wrap;gap:2em}
figure{display:inline-block;margin:6px}figcaption{font-size:12px}
.warn{color:#a40}
)CSS";
}

std::string page_begin(const std::string& title) {
  return "<!DOCTYPE html><html lang=en><head><meta charset='utf-8'><title>" + html_escape(title) +
         "</title><style>" + stylesheet() + "</style></head><body><h1>" + html_escape(title) +
         "</h1>";
}

std::string page_end() { return "</body></html>\n"; }

std::string diverging_colour(double v, double scale) {
  double t = scale > 0 ? std::min(1.0, std::fabs(v) / scale) : 0.0;
  int r, g, b;
  if (v >= 0) {
    r = 255;
    g = static_cast<int>(255 - t * (255 - 60));
    b = static_cast<int>(255 - t * (255 - 50));
  } else {
    r = static_cast<int>(255 - t * (255 - 40));
    g = static_cast<int>(255 - t * (255 - 110));
    b = 255;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "#%02x%02x%02x", r, g, b);
  return buf;
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

}  // namespace candor::report
