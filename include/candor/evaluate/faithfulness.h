// Faithfulness: how true an attribution is to the model -- comprehensiveness, sufficiency,
// deletion/insertion curves, infidelity and leave-one-out agreement. Masked inputs are scored in
// batches that reuse the KV cache of the unchanged prefix; identical masks are scored once.
// Every metric explains the scalar f = the sum over the attribution's steps of the target
// function (log p of the explained token by default), and reads an attribution's per-feature
// scores summed over steps (Attribution::total()).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "candor/explain.h"
#include "candor/model.h"

namespace candor {

// How a feature is removed from the input.
enum class Removal {
  kBaseline,  // its tokens' embeddings are replaced by the request's baseline (Default)
  kDelete,    // its tokens are deleted: the sequence gets shorter
};
Removal parse_removal(const std::string& name);  // "baseline" | "delete"
const char* removal_name(Removal r);

struct FaithfulnessOptions {
  Removal removal = Removal::kBaseline;
  // Top fractions of the features for comprehensiveness/sufficiency and their AOPC. A fraction q
  // removes (keeps) the n = clamp(ceil(q * F), 1, F) highest-scoring features.
  std::vector<double> fractions = {0.01, 0.05, 0.10, 0.20, 0.50};
  // Points of the deletion/insertion curves: k = round(i * F / (curve_points - 1)) features
  // removed (inserted), i = 0..curve_points-1; 0 or >= F + 1: every k = 0..F.
  int64_t curve_points = 0;
  int64_t infidelity_samples = 32;  // random removal masks (each feature removed with p = 0.5)
  uint64_t seed = 0;
  int64_t batch_size = 32;  // masked inputs per forward
  // Which metrics to compute (all by default).
  bool comprehensiveness = true;  // and sufficiency
  bool curves = true;             // deletion and insertion
  bool infidelity = true;
  bool loo = true;  // Kendall tau with leave-one-out
};

struct Curve {
  std::vector<double> fraction;  // features removed (deletion) or inserted (insertion) / F
  std::vector<double> value;     // f at that point
  double area = 0;               // trapezoid area of value over fraction in [0, 1]
};

struct Faithfulness {
  double full_value = 0;   // f(x)
  double empty_value = 0;  // f with every feature removed
  std::vector<double> fractions;
  std::vector<int64_t> counts;            // features removed/kept per fraction
  std::vector<double> comprehensiveness;  // f(x) - f(x without the top n)   (higher: better)
  std::vector<double> sufficiency;        // f(x) - f(only the top n kept)   (lower: better)
  double comprehensiveness_aopc = 0;      // mean over the fractions
  double sufficiency_aopc = 0;            // mean over the fractions
  Curve deletion;                         // most important first; lower area: better
  Curve insertion;                        // most important first; higher area: better
  double infidelity = 0;                  // mean (sum of removed scores - (f(x) - f(x')))^2
  std::vector<double> loo;                // f(x) - f(x without feature i)
  double loo_kendall = 0;                 // Kendall tau-b of the scores with `loo`
  double forward_passes = 0;              // cost in forward-pass equivalents
  int64_t masks_scored = 0;               // distinct masked inputs run
};

// Faithfulness of `attribution` (made for `request` on `model`). The target tokens are taken
// from the attribution. Throws Error(kInvalidArgument) when the attribution has no scores or
// does not match the request.
Faithfulness evaluate_faithfulness(const Model& model, const ExplainRequest& request,
                                   const Attribution& attribution,
                                   const FaithfulnessOptions& options = {});
// The same for several attributions of one request and target (e.g. real methods and decoys),
// scored from one shared bank of masks: a mask that two attributions share (the same top
// features removed) is run once and gives both exactly the same value, so equal removal sets
// compare as exact ties rather than by float noise of different batch layouts (~1e-5 on
// stories260K). forward_passes and masks_scored are those of the whole shared bank. Throws
// Error(kInvalidArgument) when the attributions explain different tokens.
std::vector<Faithfulness> evaluate_faithfulness(const Model& model, const ExplainRequest& request,
                                                const std::vector<Attribution>& attributions,
                                                const FaithfulnessOptions& options = {});
nlohmann::json faithfulness_to_json(const Faithfulness& f);

// Scores many keep-masks [N][F] (1 keep, 0 remove) of a request: f per mask. Batched, with
// prefix reuse; for tests and custom metrics.
std::vector<double> score_masks(const Model& model, const ExplainRequest& request,
                                const Attribution& attribution,
                                const std::vector<std::vector<uint8_t>>& keep, Removal removal,
                                int64_t batch_size = 32, double* forward_passes = nullptr);

}  // namespace candor
