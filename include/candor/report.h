// Human-readable views: of attributions, a console view and a self-contained HTML report (no
// network needed to open it): heat maps, step x feature matrices, methods side by side, the
// logit-lens grid and attention maps; of evaluations, the benchmark table as Markdown and HTML,
// and of distillations, the report page, both rendered from their JSON.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "candor/explain.h"

namespace candor {

struct ReportContext {
  std::string title = "candor explanation";
  std::string model;               // model path or name
  std::string prompt;              // the input text
  std::string generated_text;      // the explained continuation, "" when none
  std::string target_description;  // e.g. "log p(' girl')" or "span of 12 generated tokens"
  // File name (beside the page) of step_matrix_csv's output, named by the page when a step x
  // feature matrix is too large to print whole; "" when none is written.
  std::string scores_csv;
};

// A self-contained HTML page for several attributions of the same request.
std::string render_html(const std::vector<Attribution>& attributions, const ReportContext& context);

// Every method's step x feature scores as CSV (method, step, step token, feature, feature text,
// score; one row per cell a step can see), for the matrices a page shows only in part; "" when
// no attribution has more than one step.
std::string step_matrix_csv(const std::vector<Attribution>& attributions);
// Whether render_html would leave cells of a step x feature matrix out (so that the full matrix
// belongs in step_matrix_csv's file).
bool step_matrix_too_large(const std::vector<Attribution>& attributions);

// A console view: the text coloured by score (ANSI colours when `color`), then the strongest
// features with their scores.
std::string render_console(const Attribution& attribution, bool color, int top = 8);

// The distillation report page (report.html of `candor distill`), rendered from its report.json
// (distill::DistillResult::to_json): classes, fidelity held-out and in training (per slice),
// records skipped while reading, and the student's global explanation (linear weights, tree
// rules, GAM shape functions and interactions as SVG, the transformer's settings).
std::string render_distill_html(const nlohmann::json& report, const std::string& title);

// The summary of `candor evaluate` (summarize_benchmark, with summarize_attacks' block under
// "attacks") as a Markdown table and as a self-contained HTML page (curves as inline SVG); an
// "attacks" block adds its table and the changes found per example.
std::string render_benchmark_markdown(const nlohmann::json& summary);
std::string render_benchmark_html(const nlohmann::json& summary);

}  // namespace candor

namespace candor {

// The page and the Markdown summary of `candor audit ...` (report.html, audit.md), rendered
// from audit.json (audit::FairnessResult / CalibrationResult / ConformalResult::to_json): per-group
// bars with interval whiskers, gaps and flags; reliability diagrams and the risk-coverage curve;
// conformal coverage per group.
std::string render_audit_html(const nlohmann::json& audit, const std::string& title);
std::string render_audit_markdown(const nlohmann::json& audit);

}  // namespace candor
