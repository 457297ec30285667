// Sanity checks: whether an attribution depends on the model at all -- model-parameter
// randomisation (on a copy of the model) and the random-logit test.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "candor/explain.h"
#include "candor/model.h"

namespace candor {

struct RandomisationStep {
  std::string randomised;   // what was randomised at this step ("final_norm", "layers.4", ...)
  double spearman = 0;      // rank correlation with the original explanation
  double spearman_abs = 0;  // same on |scores|
  double topk_intersection = 0;
};

struct SanityOptions {
  bool cascading = true;  // output layer first, then each layer down to the embeddings,
                          // accumulating; false: one layer at a time (independent)
  int64_t top_k = 5;
  uint64_t seed = 0;
};

// Model-parameter randomisation test (Adebayo et al. 2018). Parameters are re-drawn (matrices
// from N(0, std of the original), 1-D norm weights from N(mean, std)) in a copy of the model
// (Model::clone): `model` is never changed, so others may use it meanwhile. Models that cannot
// be copied throw Error(kUnsupported).
std::vector<RandomisationStep> randomisation_test(const Model& model, const ExplainRequest& request,
                                                  const Explainer& explainer,
                                                  const Attribution& attribution,
                                                  const SanityOptions& options = {});

struct RandomLogit {
  TokenId random_token = -1;
  double spearman = 0;
  double topk_intersection = 0;
};
// Explains a random other token (seeded) and compares with the original explanation.
RandomLogit random_logit_test(const Model& model, const ExplainRequest& request,
                              const Explainer& explainer, const Attribution& attribution,
                              const SanityOptions& options = {});

}  // namespace candor
