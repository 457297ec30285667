// Escaping text for HTML reports (element text and quoted attribute values). Internal header.
#pragma once

#include <string>

namespace candor {

// With mark_newlines, a newline becomes a visible return arrow (for token heat maps, where a
// newline token would otherwise be invisible).
inline std::string html_escape(const std::string& s, bool mark_newlines = false) {
  std::string o;
  o.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        o += "&amp;";
        break;
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '"':
        o += "&quot;";
        break;
      case '\'':
        o += "&#39;";
        break;
      case '\n':
        if (mark_newlines) {
          o += "&#x21B5;";
          break;
        }
        o += c;
        break;
      default:
        o += c;
    }
  }
  return o;
}

}  // namespace candor
