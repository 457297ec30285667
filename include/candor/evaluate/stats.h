// Rank statistics over per-feature scores (Kendall's tau-b, Spearman, top-k intersection),
// shared by the faithfulness, robustness, sanity and adversarial checks.
#pragma once

#include <cstdint>
#include <vector>

namespace candor {

double kendall_tau(const std::vector<double>& a, const std::vector<double>& b);  // tau-b
double spearman(const std::vector<double>& a, const std::vector<double>& b);     // average ranks
// |top-k(a) ∩ top-k(b)| / k, top by value, ties broken by position.
double topk_intersection(const std::vector<double>& a, const std::vector<double>& b, int64_t k);
// Feature indices by score, highest first (ties: earlier feature first).
std::vector<int64_t> rank_order(const std::vector<double>& scores);

}  // namespace candor
