// Seeded weight initialisation shared by the models candor trains.
#include "train/init.h"

#include <ATen/ATen.h>

#include <cmath>

namespace candor::train {

// Seeded normal initialisation (std::mt19937_64 + Box-Muller: the same on every platform).
at::Tensor init_normal(std::mt19937_64& rng, std::vector<int64_t> shape, double std) {
  at::Tensor t = at::empty(shape, at::kFloat);
  float* d = t.data_ptr<float>();
  const int64_t n = t.numel();
  for (int64_t i = 0; i < n; i += 2) {
    double u1 = (double(rng() >> 11) + 1.0) / 9007199254740993.0;
    double u2 = double(rng() >> 11) / 9007199254740992.0;
    double r = std::sqrt(-2.0 * std::log(u1));
    d[i] = static_cast<float>(std * r * std::cos(2 * M_PI * u2));
    if (i + 1 < n) d[i + 1] = static_cast<float>(std * r * std::sin(2 * M_PI * u2));
  }
  return t;
}

}  // namespace candor::train
