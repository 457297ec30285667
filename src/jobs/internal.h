// Pieces the jobs share that are not part of their public interface.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "candor/explain.h"
#include "candor/jobs_explain.h"

namespace candor::jobs {

// An explainer per method spec, in order; RequestError ("--method ...") for a bad spec.
std::vector<std::unique_ptr<Explainer>> make_explainers(const std::vector<std::string>& specs);

// The explain job for a fastText classifier file (fasttext_explain.cpp): its exact
// decomposition as one attribution (method "fasttext_exact"); RequestError for the options that
// need a network candor runs.
ExplainResult explain_fasttext(const ExplainOptions& options, const ExplainEvents& events);

}  // namespace candor::jobs
