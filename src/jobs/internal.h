// Pieces the jobs share that are not part of their public interface.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "candor/explain.h"

namespace candor::jobs {

// An explainer per method spec, in order; RequestError ("--method ...") for a bad spec.
std::vector<std::unique_ptr<Explainer>> make_explainers(const std::vector<std::string>& specs);

}  // namespace candor::jobs
