// The quality block of `candor explain --evaluate`: comprehensiveness, sufficiency, sensitivity
// and agreement with the other methods, attached to each attribution.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "candor/evaluate/faithfulness.h"
#include "candor/evaluate/robustness.h"
#include "candor/explain.h"
#include "candor/model.h"

namespace candor {

struct QualityOptions {
  FaithfulnessOptions faithfulness;  // curves, infidelity and LOO off by default here
  RobustnessOptions robustness;      // n_samples 4
  QualityOptions() {
    faithfulness.curves = false;
    faithfulness.infidelity = false;
    faithfulness.loo = false;
    robustness.n_samples = 4;
  }
};

// Comprehensiveness, sufficiency (per fraction and AOPC), sensitivity, and the Spearman
// agreement of each attribution with the others; stored as JSON in extra["quality"] of each.
void attach_quality(const Model& model, const ExplainRequest& request,
                    const std::vector<const Explainer*>& explainers,
                    std::vector<Attribution>& attributions, const QualityOptions& options = {});

}  // namespace candor
