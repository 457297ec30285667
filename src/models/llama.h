// The decoder-only transformer: the Llama architecture (RMSNorm, rotary embeddings, grouped-query
// attention, SwiGLU) and its variants selected by ModelConfig (q/k/v biases for Qwen2; LayerNorm,
// learned positions, GELU and biases everywhere for GPT-2), shared by every format that stores
// such a model. Rotary weights are kept in the interleaved (llama2.c) pair layout; loaders of
// rotate-half (Hugging Face) checkpoints permute q/k rows with rotate_half_to_interleaved.
// Internal header.
#pragma once

#include <ATen/ATen.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "candor/model.h"
#include "models/fused/qgemm.h"

namespace candor {

// Weights of one decoder layer, fused for few large matrix products.
// Biases are undefined tensors where the architecture has none.
struct LlamaLayerWeights {
  at::Tensor attn_norm;  // [dim]
  at::Tensor wqkv;       // [(n_heads + 2 * n_kv_heads) * head_dim, dim]: q, k, v rows stacked
  at::Tensor wo;         // [dim, n_heads * head_dim]
  at::Tensor ffn_norm;   // [dim]
  at::Tensor w13;        // gated: [2 * hidden_dim, dim]: gate (w1) rows, then up (w3) rows;
                         // plain MLP: [hidden_dim, dim]
  at::Tensor w2;         // [dim, hidden_dim]
  at::Tensor attn_norm_bias, bqkv, bo, ffn_norm_bias, b13, b2;  // LayerNorm / linear biases
};

// The matrices of a GGUF model kept in their quantized blocks (empty: that one is a tensor).
struct QuantLayerWeights {
  fused::QuantMatrix wqkv, wo, w13, w2;
};
struct QuantWeights {
  fused::QuantMatrix tok_embeddings, output;  // the same blocks when tied
  std::vector<QuantLayerWeights> layers;
  bool any() const;
  size_t bytes() const;
  std::string type_summary() const;  // e.g. "q4_k+q6_k"
};

struct LlamaWeights {
  // Set when some matrices stay quantized (GGUF): those tensors below are then undefined until
  // LlamaModel dequantises them for the libtorch path (LlamaModel::dense_weights()).
  std::shared_ptr<const QuantWeights> quant;
  at::Tensor tok_embeddings;  // [vocab, dim]
  at::Tensor pos_embeddings;  // [max_seq_len, dim] (learned positions only)
  std::vector<LlamaLayerWeights> layers;
  at::Tensor final_norm;       // [dim]
  at::Tensor final_norm_bias;  // [dim] (LayerNorm only)
  at::Tensor output;           // [vocab, dim]; same storage as tok_embeddings when tied
};

// Reorders the rows of a q or k projection (or its bias) from the rotate-half layout, where a
// head's rotary pairs are (j, j + head_dim/2), to the interleaved layout (2j, 2j + 1): [n_heads *
// head_dim, ...] -> same shape. The inverse is interleaved_to_rotate_half.
at::Tensor rotate_half_to_interleaved(const at::Tensor& w, int64_t n_heads);
at::Tensor interleaved_to_rotate_half(const at::Tensor& w, int64_t n_heads);

namespace fused {
struct Tape;
}  // namespace fused

class LlamaModel : public Model {
 public:
  LlamaModel(ModelConfig config, LlamaWeights weights, std::shared_ptr<Tokenizer> tokenizer);

  const ModelConfig& config() const override { return config_; }
  const Tokenizer& tokenizer() const override { return require_tokenizer(tokenizer_); }
  at::Tensor forward(const ForwardArgs& args) const override;
  at::Tensor embed(const at::Tensor& tokens) const override;
  at::Tensor embedding_matrix() const override { return dense_weights().tok_embeddings; }
  at::Tensor unembed(const at::Tensor& hidden, bool apply_norm) const override;
  KVCache new_cache(int64_t batch, int64_t capacity) const override;
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() const override;
  // Without dequantising kept matrices.
  int64_t n_params() const override;
  std::unique_ptr<Model> clone() const override;
  std::string forward_path() const override;
  std::unique_ptr<GradientTape> forward_with_tape(const ForwardArgs& args,
                                                  at::Tensor* logits) const override;
  std::string gradient_path() const override;

  // Every weight as a tensor (quantized ones dequantised on first use, once). The fused path
  // goes on reading the quantized blocks: change weights in a clone(), which keeps none.
  const LlamaWeights& weights() const { return dense_weights(); }
  // The weights as stored: quantized matrices only in `quant` (their tensors undefined unless
  // weights() has run); nothing is dequantised (candor::visit_stored_weights).
  const LlamaWeights& stored_weights() const { return weights_; }
  // Converts every weight to `type` (kFloat or kBFloat16) and computes in it from then on: the
  // residual stream, projections, attention scores and KV cache in `type`; norms, rotary
  // embeddings and softmax upcast to float and rounded back. Inputs (embeddings) and outputs
  // (logits, embed(), unembed(), captured activations) stay float32. Tied output and embedding
  // matrices stay one tensor.
  void set_compute_dtype(at::ScalarType type);
  at::ScalarType compute_dtype() const { return dtype_; }

 private:
  at::Tensor norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) const;
  // weights_ with every quantized matrix dequantised into its tensor (done once, thread-safe;
  // the quantized blocks stay for the fused path).
  const LlamaWeights& dense_weights() const;

  // Whether dense_weights() has run (copyable, unlike a std::once_flag).
  struct DenseFlag {
    std::shared_ptr<std::mutex> mutex = std::make_shared<std::mutex>();
    std::atomic<bool> done{false};
    DenseFlag() = default;
    DenseFlag(const DenseFlag& o) : done(o.done.load()) {}
    DenseFlag& operator=(const DenseFlag& o) {
      done = o.done.load();
      return *this;
    }
  };
  // forward(); with a tape, the fused path keeping what its backward needs.
  at::Tensor run(const ForwardArgs& args, fused::Tape* tape) const;

  ModelConfig config_;
  mutable LlamaWeights weights_;  // mutable: dense_weights() fills quantized matrices' tensors
  mutable DenseFlag dense_;
  std::shared_ptr<Tokenizer> tokenizer_;
  at::Tensor rope_;  // [max_seq_len, head_dim / 2] complex64: e^{i * pos * theta^(-2j/hd)}
  at::ScalarType dtype_ = at::kFloat;  // compute dtype (ModelConfig::compute_dtype)
  std::string fused_unsupported_;      // "" when the fused no-grad path can run, else why not
};

// Checks the hyper-parameters; throws Error(kInvalidArgument) naming `source` and the field.
void validate_llama_config(const ModelConfig& config, const std::string& source);

// Reads a llama2.c checkpoint (legacy header). Throws Error naming `path`.
std::pair<ModelConfig, LlamaWeights> read_llama2c_checkpoint(const std::string& path);

// True when the file starts with a plausible llama2.c header (used to tell checkpoints from
// tokenizers in a folder).
bool looks_like_llama2c_checkpoint(const std::string& path);

}  // namespace candor
