// The pieces every HTML page of candor shares: escaping, number formatting, the one stylesheet,
// the page frame, the colour scales (diverging for signed scores, sequential for probabilities)
// with their legends, text colours that keep WCAG AA contrast on any cell colour, chart axes with
// ticks and titles, the series styles of line charts and the person's summary at the top of a
// page. Internal to candor_report: other folders hand their results (as JSON or as the public
// result types) to the render functions of include/candor/report.h instead of writing HTML.
//
// DOM conventions the browser tests (tests/report_browser) check on every page:
// - a chart is <svg class='chart'> with its axis titles as <text class='axis-title'>;
// - whatever encodes a value by colour (a chart, a heat table, a heat text) carries
//   data-colour='value' and sits in an element of class 'fig' holding a colour legend
//   (<svg class='legend'>, ticks as <text class='tick'> numbers);
// - text drawn over a coloured SVG shape names that colour in data-bg='#rrggbb'.
#pragma once

#include <string>
#include <vector>

#include "candor/explain.h"

namespace candor::report {

// Escapes text for element content and quoted attribute values. With mark_newlines, a newline
// becomes a visible return arrow (for token heat maps, where a newline token would otherwise be
// invisible).
std::string html_escape(const std::string& s, bool mark_newlines = false);

// A number with `prec` significant digits ("%.*g"): the one number format of every report.
std::string fmt_num(double v, int prec = 4);
// A share in [0, 1] as a percentage with one decimal ("87.5%").
std::string fmt_pct(double share);
// A signed number ("+0.31", "−0.2" with a minus sign) for scores in sentences.
std::string fmt_signed(double v, int prec = 3);

// The stylesheet shared by every page (explanations, evaluations, distillations, audits).
const char* stylesheet();

// "<!DOCTYPE html>...<body><h1>title</h1>" with the shared stylesheet, and the closing tags.
std::string page_begin(const std::string& title);
std::string page_end();

// The person's summary right under the title: one or two plain sentences (HTML, already
// escaped by the caller) saying what was explained or distilled, on which data and model, and
// the headline figures.
std::string summary_block(const std::string& sentences_html);

// Diverging colour for signed scores, colour-blind safe (blue for negative, white at zero,
// orange then red for positive; no red/green pair); |v| / scale is clamped to [0, 1].
// Returns "#rrggbb".
std::string diverging_colour(double v, double scale);
// Sequential colour for a value in [0, 1] (probabilities, attention weights): white to dark
// blue. Returns "#rrggbb".
std::string sequential_colour(double t);
// WCAG 2 relative luminance of "#rrggbb" and the contrast ratio of two such colours (1 to 21).
double relative_luminance(const std::string& hex);
double contrast_ratio(const std::string& a, const std::string& b);
// The text colour ("#000000" or "#ffffff") that contrasts more with `background`.
std::string text_colour_on(const std::string& background);
// "background:B;color:C" with C = text_colour_on(B), for a cell or a token.
std::string colour_style(const std::string& background);

// Colour legends with tick values: a diverging bar from -scale through 0 to +scale, and a
// sequential bar from lo to hi, each with a title (what the colour means, with its unit).
std::string diverging_legend(double scale, const std::string& title);
std::string sequential_legend(double lo, double hi, const std::string& title);

// About `target` round tick values covering [lo, hi] (steps of 1, 2 or 5 times a power of ten).
std::vector<double> nice_ticks(double lo, double hi, int target = 5);

// The frame of an SVG chart: the data ranges, the plot area inside the margins, and axes with
// ticks (numbers) and titles. x_labels, when given, replace the numeric x ticks by categories
// (one per band, drawn at every `label_every`-th band, rotated when long).
struct Axes {
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  int width = 520, height = 320;
  int left = 64, right = 16, top = 14, bottom = 52;
  std::string x_title, y_title;
  std::vector<std::string> x_labels;
  double px(double x) const;  // data x -> pixel
  double py(double y) const;  // data y -> pixel
  // "<svg class='chart' ...>" with the axes drawn (the caller closes it with "</svg>").
  std::string open(const std::string& aria_label) const;
};

// One bar of bar_chart: a category, its value and, when has_ci, an interval drawn as a whisker.
struct Bar {
  std::string label;
  double value = 0;
  bool has_ci = false;
  double lo = 0, hi = 0;
};
// Vertical bars on the frame `axes` (its y range, titles and size; its x_labels are set from the
// bars), each from 0 (or the nearer end of the y range) to its value, in one colour. With
// print_values, each value is printed (fmt_num, `prec` digits) beyond the end of its bar, so
// that no value is readable only on hover.
std::string bar_chart(const std::vector<Bar>& bars, Axes axes, const std::string& aria_label,
                      bool print_values = true, int prec = 3);

// Line styles that differ without colour: Okabe–Ito colours, dash patterns and markers.
const char* series_colour(size_t i);
const char* series_dash(size_t i);  // "" for solid
// A marker (circle, square, triangle, diamond, cross, ...) of series i centred at (x, y).
std::string series_marker(size_t i, double x, double y);

// Text with its edges made visible: each leading and trailing space as "␣" (U+2423), newlines
// as "\n" and tabs as "\t", so that " the" (a word) and "the" (a piece inside one) differ.
std::string visible_text(const std::string& text);
// The label of feature `f` for people: its tokens' text with visible_text's edges, or the
// feature's own label when it was given by the caller (not the tokens' text).
std::string feature_text(const Attribution& a, size_t f);
// At most `max_chars` UTF-8 characters of `s`, with "…" when cut.
std::string shorten(const std::string& s, size_t max_chars);

}  // namespace candor::report
