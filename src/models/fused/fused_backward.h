// The hand-written backward of the fused Llama-family forward: from the gradient of the logits
// asked for to the gradient of the input embeddings, over the same kernels (BLAS sgemm for the
// products; candor's own loops for the norms, rotary embeddings, attention softmax and the
// feed-forward activation). The forward keeps, in a Tape, the residual stream entering each
// block, the rotated queries and keys, the values and the feed-forward's pre-activations; the
// attention probabilities are recomputed tile by tile in the backward (as the forward computes
// them), so the tape grows with the sequence, not with its square. Internal header.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "candor/model.h"
#include "models/llama.h"

namespace candor::fused {

// What one forward pass keeps for its backward (filled by llama_forward when given a tape).
struct Tape {
  // What is kept, per layer.
  enum Kind { kAttnInput, kFfnInput, kQ, kK, kV, kPreActivation, kKinds };

  int64_t B = 0, T = 0;
  std::vector<int64_t> rows;         // the positions whose logits the forward returned
  std::vector<uint8_t> key_real;     // [B, T]: 1 for a real token, 0 for padding
  std::vector<int64_t> key_pos;      // [B, T]: rotary position of each token (for windows)
  std::vector<uint8_t> any_padding;  // [B]
  at::Tensor rope;                   // [max_seq_len, head_dim / 2, 2] (cos, sin), or undefined

  // Sizes the buffers for a pass of B rows of T tokens (called by llama_forward).
  void begin(const ModelConfig& c, int64_t batch, int64_t tokens);
  // Where the kept buffer `kind` of layer `l` lies (see sizes in fused_backward.cpp); the final
  // residual stream (entering the final norm) is final().
  float* at(Kind kind, int64_t l);
  const float* at(Kind kind, int64_t l) const { return const_cast<Tape*>(this)->at(kind, l); }
  float* final() { return data_.get() + n_layers_ * per_layer_; }
  const float* final() const { return data_.get() + n_layers_ * per_layer_; }
  // Copies `n` floats from `src` into the kept buffer.
  void keep(Kind kind, int64_t l, const float* src, int64_t n);
  bool ready() const { return data_ != nullptr; }

 private:
  int64_t n_layers_ = 0, per_layer_ = 0;
  int64_t offset_[kKinds] = {};
  std::unique_ptr<float[]> data_;
};

// The gradient of sum(dlogits * logits) with respect to the forward's input embeddings x:
// dlogits [B, rows.size(), vocab] float -> [B, T, dim] float. The tape is not changed, so one
// forward serves several backwards (one per explained step).
at::Tensor llama_backward(const ModelConfig& c, const LlamaWeights& w, const Tape& tape,
                          const at::Tensor& dlogits);

}  // namespace candor::fused
