// What the fused-path tests of tests/models/ share: the Llama-family fixtures, their paths, the
// relative difference the tolerances are stated in, and a fixed pseudo-random token sequence.
#pragma once

#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace candor::testing {

// Every fixture of the Llama family (Llama, Mistral, Qwen2, GPT-2; sharded, f16 and bf16 copies).
inline const std::vector<std::string> kLlamaFamilyFixtures = {
    "llama",          "llama3_scaled", "llama_sharded", "llama_f16", "llama_bf16", "mistral_linear",
    "mistral_window", "qwen2",         "qwen2_window",  "gpt2",      "gpt2_f16"};

// The path of tests/fixtures/models/<name>.
inline std::string fixture(const std::string& name) {
  return std::string(CANDOR_SOURCE_DIR) + "/tests/fixtures/models/" + name;
}

// max |a - b| / max |b| (a failure and 1e9 when the shapes differ).
inline double rel_diff(const at::Tensor& a, const at::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  if (a.sizes() != b.sizes()) return 1e9;
  const double scale = std::max(b.abs().max().item<double>(), 1e-30);
  return (a - b).abs().max().item<double>() / scale;
}

// Token ids in [3, vocab), BOS (1) first: a fixed pseudo-random sequence.
inline std::vector<int64_t> sequence(int64_t n, int64_t vocab, int64_t seed) {
  std::vector<int64_t> v;
  uint64_t s = static_cast<uint64_t>(seed) * 2654435761u + 12345u;
  for (int64_t i = 0; i < n; ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    v.push_back(3 + static_cast<int64_t>((s >> 33) % static_cast<uint64_t>(vocab - 3)));
  }
  v[0] = 1;
  return v;
}

}  // namespace candor::testing
