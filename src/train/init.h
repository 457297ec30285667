// Seeded weight initialisation shared by the trained models (internal header).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <random>
#include <vector>

namespace candor::train {

// Normal(0, std^2) values of the given shape from `rng` (std::mt19937_64 + Box-Muller, so the
// same seed gives the same weights on every platform): float tensor.
at::Tensor init_normal(std::mt19937_64& rng, std::vector<int64_t> shape, double std);

}  // namespace candor::train
