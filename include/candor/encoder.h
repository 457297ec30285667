// Bidirectional transformer encoders with a sequence-classification head: BERT, RoBERTa and
// DistilBERT (post-LayerNorm blocks, learned absolute positions, GELU). forward() gives the
// class logits of each sequence, repeated at every position. Public so that a trainer can build
// one from weights it learnt (the transformer text classifier).
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "candor/model.h"

namespace candor {

struct EncoderLayerWeights {
  at::Tensor wqkv, bqkv;                 // [3 * dim, dim], [3 * dim]: q, k, v rows stacked
  at::Tensor wo, bo;                     // [dim, dim], [dim]
  at::Tensor attn_norm, attn_norm_bias;  // LayerNorm after attention + residual
  at::Tensor w1, b1;                     // [hidden, dim], [hidden]
  at::Tensor w2, b2;                     // [dim, hidden], [dim]
  at::Tensor ffn_norm, ffn_norm_bias;    // LayerNorm after the feed-forward + residual
};

struct EncoderWeights {
  at::Tensor tok_embeddings;   // [vocab, dim]
  at::Tensor pos_embeddings;   // [max_positions, dim]
  at::Tensor type_embeddings;  // [type_vocab, dim] (row 0 is added); undefined for DistilBERT
  at::Tensor emb_norm, emb_norm_bias;
  std::vector<EncoderLayerWeights> layers;
  // Head on the first token's state h: BERT: logits = Wc tanh(Wp h + bp) + bc (pooler, then
  // classifier); RoBERTa: the same with its classifier.dense / out_proj; DistilBERT:
  // logits = Wc relu(Wp h + bp) + bc.
  at::Tensor pool_w, pool_b;  // [dim, dim], [dim]
  at::Tensor cls_w, cls_b;    // [n_labels, dim], [n_labels]
};

// Encoder-specific settings beyond ModelConfig.
struct EncoderSettings {
  int64_t position_offset = 0;  // RoBERTa: positions start at padding_idx + 1
  bool relu_head = false;       // DistilBERT's pre-classifier uses ReLU instead of tanh
};

class EncoderClassifier : public Model {
 public:
  EncoderClassifier(ModelConfig config, EncoderSettings settings, EncoderWeights weights,
                    std::shared_ptr<Tokenizer> tokenizer);

  const ModelConfig& config() const override { return config_; }
  const Tokenizer& tokenizer() const override { return require_tokenizer(tokenizer_); }
  at::Tensor forward(const ForwardArgs& args) const override;
  at::Tensor embed(const at::Tensor& tokens) const override;
  at::Tensor embedding_matrix() const override { return weights_.tok_embeddings; }
  // Classifiers have no unembedding: throws Error(kUnsupported).
  at::Tensor unembed(const at::Tensor& hidden, bool apply_norm) const override;
  KVCache new_cache(int64_t batch, int64_t capacity) const override;
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() const override;
  std::unique_ptr<Model> clone() const override;

  const EncoderWeights& weights() const { return weights_; }
  const EncoderSettings& settings() const { return settings_; }
  // Converts every weight to `type` and computes in it (LayerNorm and softmax upcast to float);
  // inputs and outputs stay float32. See LlamaModel::set_compute_dtype.
  void set_compute_dtype(at::ScalarType type);

 private:
  // LayerNorm in float, rounded back to the compute dtype.
  at::Tensor layer_norm(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) const;

  ModelConfig config_;
  EncoderSettings settings_;
  EncoderWeights weights_;
  std::shared_ptr<Tokenizer> tokenizer_;
  at::ScalarType dtype_ = at::kFloat;  // compute dtype (ModelConfig::compute_dtype)
};

}  // namespace candor
