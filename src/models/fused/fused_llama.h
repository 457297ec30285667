// The fused no-grad forward of the Llama family (Llama, Mistral, Qwen2, and GPT-2's blocks):
// candor's own kernels over one arena of contiguous float buffers, with the large products
// through BLAS sgemm. The norm is applied while writing the projection's input, rotary
// embeddings in place while q and k are laid out by head, grouped-query attention reads each
// key head once for its group of query heads, the feed-forward activation (SwiGLU: in place
// over the gate half), residual additions through sgemm's beta, and the output projection only
// for the positions whose logits are asked for. LlamaModel::forward runs it when no gradient is
// needed and the weights are float32; the libtorch path is the reference it is tested against.
// Internal header.
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "candor/model.h"
#include "models/llama.h"

namespace candor::fused {

// "" when the fused path can run a model of this configuration whose weights are `w` computed
// in `dtype`; else why not (shown by `candor info`).
std::string llama_unsupported(const ModelConfig& c, const LlamaWeights& w, at::ScalarType dtype);

// One forward pass, the inputs prepared as LlamaModel::forward prepares them:
//   x          [B, T, dim] float: input embeddings (learned positions already added); not changed
//   mask       [B, T] bool, or undefined (all real)
//   positions  [B, T] int64: rotary positions (clamped to the context)
//   rope       [max_seq_len, head_dim / 2, 2] float (cos, sin), or undefined (no rotary)
//   cache      null, or a cache already reserved for T more positions (past = its length);
//              the keys and values of the new positions are written into it (its mask, next
//              positions and length are left to the caller)
//   rows       the positions whose logits are returned
//   tape       null, or where the pass keeps what llama_backward needs (no cache then)
//   first      the layer x enters at (x: the residual stream after layer first - 1)
// Returns logits [B, rows.size(), vocab] float.
struct Tape;
at::Tensor llama_forward(const ModelConfig& c, const LlamaWeights& w, const at::Tensor& x,
                         const at::Tensor& mask, const at::Tensor& positions,
                         const at::Tensor& rope, KVCache* cache, const std::vector<int64_t>& rows,
                         Tape* tape = nullptr, int64_t first = 0);

// The forward's row kernels, shared with the backward's recomputation (lean tape):
// out[n, :] = norm(x[n, :]) * weight (+ bias) for `rows` rows of width c.dim (strides ldx, ldo
// in floats), and one head's rotary embedding, dst[0, hd) = src rotated by the (cos, sin) pairs
// of `table` (interleaved pairs 2j, 2j + 1, the complex product (a + ib)(cos + i sin)), a copy
// without a table.
void norm_rows(const ModelConfig& c, const float* x, int64_t ldx, int64_t rows, const float* weight,
               const float* bias, float* out, int64_t ldo);
void rotate_into(const float* src, float* dst, const float* table, int64_t hd);

// True when `cache` has the layout the fused path writes into (float, contiguous, [B, KV,
// capacity, head_dim] per layer).
bool cache_usable(const ModelConfig& c, KVCache& cache);

}  // namespace candor::fused
