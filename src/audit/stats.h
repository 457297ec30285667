// Small numerical pieces shared by the audits: a seeded generator for resampling and
// percentile quantiles. Internal to candor_audit.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace candor::audit {

// xoshiro256** seeded through splitmix64 from (seed, stream): resample `stream` of a bootstrap
// gets the same draws whichever thread runs it.
class Rng {
 public:
  Rng(uint64_t seed, uint64_t stream) {
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + stream * 0xD1B54A32D192ED03ull + 0x2545F4914F6CDD1Dull;
    for (uint64_t& w : s_) w = splitmix(&x);
  }
  uint64_t next() {
    const uint64_t r = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return r;
  }
  // Uniform in [0, m), m > 0, without bias (multiply-shift with rejection).
  uint64_t below(uint64_t m) {
    unsigned __int128 p = static_cast<unsigned __int128>(next()) * m;
    uint64_t low = static_cast<uint64_t>(p);
    if (low < m) {
      const uint64_t threshold = (0 - m) % m;
      while (low < threshold) {
        p = static_cast<unsigned __int128>(next()) * m;
        low = static_cast<uint64_t>(p);
      }
    }
    return static_cast<uint64_t>(p >> 64);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static uint64_t splitmix(uint64_t* x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t s_[4];
};

// The q-quantile of `v` with linear interpolation between order statistics (numpy's default);
// reorders `v`. `v` must not be empty.
inline double quantile(std::vector<double>& v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t i = static_cast<size_t>(pos);
  const double f = pos - static_cast<double>(i);
  if (i + 1 >= v.size()) return v.back();
  return v[i] + f * (v[i + 1] - v[i]);
}

}  // namespace candor::audit
