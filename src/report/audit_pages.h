// The audit pages added after the first three (counterfactual swaps, generation probes),
// rendered from their audit.json. Internal to candor_report; render_audit_html and
// render_audit_markdown dispatch to them.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace candor::report {

// A figure of the audit JSON for a page: the number (fmt_num, `prec` digits), the string, or
// "&ndash;" for null; an interval [lo, hi] as "[lo, hi]", or "" when absent.
std::string audit_num(const nlohmann::json& v, int prec = 3);
std::string audit_ci(const nlohmann::json& ci);

// HTML body (no page frame) and Markdown of {"audit": "counterfactual", ...}.
std::string counterfactual_html(const nlohmann::json& audit);
std::string counterfactual_markdown(const nlohmann::json& audit);

}  // namespace candor::report

namespace candor::report {

// HTML body and Markdown of {"audit": "generation", ...}: per-group means with interval
// whiskers, the largest gap and its p-value, example continuations.
std::string generation_html(const nlohmann::json& audit);
std::string generation_markdown(const nlohmann::json& audit);

}  // namespace candor::report

namespace candor::report {

// HTML body of `candor generate --html`: the generate JSON with its "uncertainty" block; each
// answer token coloured by its entropy, the uncertain ones outlined, the self-consistency table.
std::string uncertainty_html(const nlohmann::json& generate_json);

}  // namespace candor::report
