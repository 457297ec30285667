// The audit pages added after the first three (counterfactual swaps, generation probes),
// rendered from their audit.json. Internal to candor_report; render_audit_html and
// render_audit_markdown dispatch to them.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace candor::report {

// HTML body (no page frame) and Markdown of {"audit": "counterfactual", ...}.
std::string counterfactual_html(const nlohmann::json& audit);
std::string counterfactual_markdown(const nlohmann::json& audit);

}  // namespace candor::report
