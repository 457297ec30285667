// The Llama-architecture decoder (RMSNorm, rotary embeddings, grouped-query attention, SwiGLU),
// shared by every format that stores a Llama-family model. Internal header.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "candor/model.h"

namespace candor {

// Weights of one decoder layer, fused for few large matrix products.
struct LlamaLayerWeights {
  at::Tensor attn_norm;  // [dim]
  at::Tensor wqkv;       // [(n_heads + 2 * n_kv_heads) * head_dim, dim]: q, k, v rows stacked
  at::Tensor wo;         // [dim, n_heads * head_dim]
  at::Tensor ffn_norm;   // [dim]
  at::Tensor w13;        // [2 * hidden_dim, dim]: gate (w1) rows, then up (w3) rows
  at::Tensor w2;         // [dim, hidden_dim]
};

struct LlamaWeights {
  at::Tensor tok_embeddings;  // [vocab, dim]
  std::vector<LlamaLayerWeights> layers;
  at::Tensor final_norm;  // [dim]
  at::Tensor output;      // [vocab, dim]; same storage as tok_embeddings when tied
};

class LlamaModel : public Model {
 public:
  LlamaModel(ModelConfig config, LlamaWeights weights, std::shared_ptr<Tokenizer> tokenizer);

  const ModelConfig& config() const override { return config_; }
  const Tokenizer& tokenizer() const override;
  int64_t n_params() const override;
  at::Tensor forward(const ForwardArgs& args) const override;
  at::Tensor embed(const at::Tensor& tokens) const override;
  at::Tensor embedding_matrix() const override { return weights_.tok_embeddings; }
  at::Tensor unembed(const at::Tensor& hidden, bool apply_norm) const override;
  KVCache new_cache(int64_t batch, int64_t capacity) const override;
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() const override;

  const LlamaWeights& weights() const { return weights_; }

 private:
  at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight) const;

  ModelConfig config_;
  LlamaWeights weights_;
  std::shared_ptr<Tokenizer> tokenizer_;
  at::Tensor rope_;  // [max_seq_len, head_dim / 2] complex64: e^{i * pos * theta^(-2j/hd)}
};

// Checks the hyper-parameters; throws Error(kInvalidArgument) naming `source` and the field.
void validate_llama_config(const ModelConfig& config, const std::string& source);

// Reads a llama2.c checkpoint (legacy header). Throws Error naming `path`.
std::pair<ModelConfig, LlamaWeights> read_llama2c_checkpoint(const std::string& path);

// True when the file starts with a plausible llama2.c header (used to tell checkpoints from
// tokenizers in a folder).
bool looks_like_llama2c_checkpoint(const std::string& path);

}  // namespace candor
