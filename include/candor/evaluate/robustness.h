// Robustness: how stable an attribution is under small input changes (embedding noise, token
// substitutions): sensitivity and rank agreement.
// Every metric explains the scalar f = the sum over the attribution's steps of the target
// function (log p of the explained token by default), and reads an attribution's per-feature
// scores summed over steps (Attribution::total()).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "candor/evaluate/stats.h"
#include "candor/explain.h"
#include "candor/model.h"

namespace candor {

enum class PerturbationSpace {
  kEmbedding,  // uniform noise in the L-inf ball of `radius` x (std of the embedding matrix)
  kToken,      // `n_substitutions` feature tokens replaced by one of their `neighbours` nearest
               // tokens (cosine) in the embedding matrix
};

struct RobustnessOptions {
  PerturbationSpace space = PerturbationSpace::kEmbedding;
  int64_t n_samples = 8;
  double radius = 0.05;
  int64_t n_substitutions = 1;
  int64_t neighbours = 5;
  int64_t top_k = 5;  // for the top-k intersection (clamped to F)
  uint64_t seed = 0;
};

struct Robustness {
  std::string space;                       // "embedding" | "token"
  double max_sensitivity = 0;              // max over samples of |phi(x') - phi(x)|_2 / |phi(x)|_2
  double avg_sensitivity = 0;              // mean of the same
  double mean_topk_intersection = 0;       // mean over samples
  double mean_spearman = 0;                // mean rank correlation phi(x) vs phi(x')
  std::vector<double> sensitivities;       // per sample
  std::vector<std::string> perturbations;  // what each sample changed
  double forward_passes = 0;               // the explainer's cost over all samples
};

Robustness evaluate_robustness(const Model& model, const ExplainRequest& request,
                               const Explainer& explainer, const Attribution& attribution,
                               const RobustnessOptions& options = {});
nlohmann::json robustness_to_json(const Robustness& r);

// The `k` nearest tokens to `token` by cosine similarity of embedding rows (itself excluded,
// special tokens BOS/EOS/UNK/PAD excluded), nearest first.
std::vector<TokenId> nearest_tokens(const Model& model, TokenId token, int64_t k);

// A model that reads `noise` [T, D] added to the embeddings of every length-T token sequence it
// embeds (and to nothing else): the embedding-space perturbation every explainer sees.
std::unique_ptr<Model> with_embedding_noise(const Model& model, at::Tensor noise);

}  // namespace candor
