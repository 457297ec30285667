// The quality block of `candor explain --evaluate`: comprehensiveness, sufficiency,
// sensitivity and agreement with the other methods, attached to each attribution.
#include "evaluate/internal.h"

namespace candor {

void attach_quality(const Model& model, const ExplainRequest& request,
                    const std::vector<const Explainer*>& explainers,
                    std::vector<Attribution>& attributions, const QualityOptions& options) {
  for (size_t i = 0; i < attributions.size(); ++i) {
    Attribution& a = attributions[i];
    if (a.scores.empty()) continue;
    nlohmann::ordered_json q;
    Faithfulness f = evaluate_faithfulness(model, request, a, options.faithfulness);
    q["removal"] = removal_name(options.faithfulness.removal);
    q["fractions"] = f.fractions;
    q["comprehensiveness"] = f.comprehensiveness;
    q["sufficiency"] = f.sufficiency;
    q["comprehensiveness_aopc"] = f.comprehensiveness_aopc;
    q["sufficiency_aopc"] = f.sufficiency_aopc;
    double fpe = f.forward_passes;
    if (i < explainers.size() && explainers[i] && options.robustness.n_samples > 0) {
      Robustness r = evaluate_robustness(model, request, *explainers[i], a, options.robustness);
      q["sensitivity"] = robustness_to_json(r);
      fpe += r.forward_passes;
    }
    nlohmann::ordered_json agree = nlohmann::ordered_json::object();
    for (size_t j = 0; j < attributions.size(); ++j) {
      if (j == i || attributions[j].scores.empty() ||
          attributions[j].scores.size() != a.scores.size())
        continue;
      agree[attributions[j].method] = spearman(a.total(), attributions[j].total());
    }
    q["agreement_spearman"] = agree;
    q["forward_passes"] = fpe;
    if (!a.extra.is_object()) a.extra = nlohmann::json::object();
    a.extra["quality"] = nlohmann::json(q);
  }
}

}  // namespace candor
