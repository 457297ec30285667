// Shared pieces of the evaluator: the prepared problem of an attribution, a batched scorer of
// keep-masks for both removal modes, and small helpers. Internal header.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "candor/evaluate.h"
#include "explain/common.h"

namespace candor::evaluate {

// The request an attribution answers, with its target tokens and features fixed from the
// attribution (so that perturbed inputs keep the same target and feature layout).
ExplainRequest pinned_request(const ExplainRequest& request, const Attribution& a);

// Checks that `a` has scores and matches the prepared problem (tokens, features).
void check_matches(const explain::Problem& p, const Attribution& a);

// Scores keep-masks [F] (1 keep, 0 remove): f = sum over steps of the target values. Identical
// masks are run once; baseline removal goes through explain::MaskScorer, deletion through
// shortened sequences left-padded after a shared KV-cache prefix.
class MaskBank {
 public:
  MaskBank(const explain::Problem& p, Removal removal, int64_t batch_size);
  // Registers a mask, returns its index (same index for an identical mask).
  int64_t add(const std::vector<uint8_t>& keep);
  // Runs every mask registered and not yet scored.
  void run();
  double value(int64_t index) const { return values_.at(index); }
  double full_value() const { return full_value_; }
  // Positions run / T.
  double forward_passes() const;
  int64_t n_masks() const { return static_cast<int64_t>(masks_.size()); }

 private:
  at::Tensor score_delete(const at::Tensor& keep);  // [N, F] -> [N]
  const explain::Problem& p_;
  Removal removal_;
  int64_t batch_size_;
  std::unique_ptr<explain::MaskScorer> scorer_;  // baseline removal
  KVCache base_cache_;                           // deletion
  at::Tensor full_steps_;                        // [S] f per step of the input
  double full_value_ = 0;
  int64_t positions_ = 0;
  std::map<std::vector<uint8_t>, int64_t> index_;
  std::vector<std::vector<uint8_t>> masks_;
  std::vector<double> values_;
};

// L2 norm and relative distance.
double l2(const std::vector<double>& v);

// Token positions of the input (not a generated span) inside features.
std::vector<int64_t> substitutable_positions(const Attribution& a);
// Standard deviation of the embedding matrix (the unit of embedding-noise radii).
double embedding_std(const Model& model);
// Uniform noise in [-r, r] at the substitutable positions, zero elsewhere: [T, dim].
at::Tensor feature_noise(const Attribution& a, int64_t dim, double r, std::mt19937_64& rng);

// A 64-bit seeded generator shared by the randomised pieces.
using Rng = std::mt19937_64;

// A uniformly drawn token other than `token` and the special tokens (seeded): the other target
// of the random-logit test and of the other_target decoy.
TokenId random_other_token(const Model& model, TokenId token, uint64_t seed);

}  // namespace candor::evaluate
