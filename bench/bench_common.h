// Pieces shared by the benchmarks: where ../shared is, and the GPT-2-small-sized random Llama.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>

#include "candor/model.h"

namespace candor::bench {

// $CANDOR_SHARED, or ../shared beside the source tree.
inline std::string shared_dir() {
  if (const char* env = std::getenv("CANDOR_SHARED")) return env;
  return std::string(CANDOR_SOURCE_DIR) + "/../shared";
}

// GPT-2-small shape (dim 768, 12 layers, 12 heads, hidden 2048) in the Llama architecture.
inline ModelConfig llama768_config(int64_t vocab_size = 32000) {
  ModelConfig c;
  c.architecture = "llama";
  c.source_format = "random";
  c.dim = 768;
  c.hidden_dim = 2048;
  c.n_layers = 12;
  c.n_heads = 12;
  c.n_kv_heads = 12;
  c.vocab_size = vocab_size;
  c.max_seq_len = 1024;
  return c;
}

}  // namespace candor::bench
