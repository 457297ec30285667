// The pieces every HTML page of candor shares: escaping, number formatting, the one stylesheet,
// the page frame and the diverging colour scale. Internal to candor_report: other folders hand
// their results (as JSON or as the public result types) to the render functions of
// include/candor/report.h instead of writing HTML themselves.
#pragma once

#include <string>

#include "candor/explain.h"

namespace candor::report {

// Escapes text for element content and quoted attribute values. With mark_newlines, a newline
// becomes a visible return arrow (for token heat maps, where a newline token would otherwise be
// invisible).
std::string html_escape(const std::string& s, bool mark_newlines = false);

// A number with `prec` significant digits ("%.*g"): the one number format of every report.
std::string fmt_num(double v, int prec = 4);

// The stylesheet shared by every page (explanations, evaluations, distillation reports).
const char* stylesheet();

// "<!DOCTYPE html>...<body><h1>title</h1>" with the shared stylesheet, and the closing tags.
std::string page_begin(const std::string& title);
std::string page_end();

// Diverging colour for signed scores: red for positive, blue for negative, white at zero;
// |v| / scale is clamped to [0, 1]. Returns "#rrggbb".
std::string diverging_colour(double v, double scale);

// Text with its edges made visible: each leading and trailing space as "␣" (U+2423), newlines
// as "\n" and tabs as "\t", so that " the" (a word) and "the" (a piece inside one) differ.
std::string visible_text(const std::string& text);
// The label of feature `f` for people: its tokens' text with visible_text's edges, or the
// feature's own label when it was given by the caller (not the tokens' text).
std::string feature_text(const Attribution& a, size_t f);

}  // namespace candor::report
