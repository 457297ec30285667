// The hand-written backward of the fused Llama-family forward: from the gradient of the logits
// asked for to the gradient of the input embeddings, over the same kernels (BLAS sgemm for the
// products; candor's own loops for the norms, rotary embeddings, attention softmax and the
// feed-forward activation). The forward keeps, in a Tape, the residual stream entering each
// block, the rotated queries and keys, the values and the feed-forward's pre-activations; the
// attention probabilities are recomputed tile by tile in the backward (as the forward computes
// them), so the tape grows with the sequence, not with its square. Internal header.
#pragma once

#include <ATen/ATen.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "candor/model.h"
#include "models/llama.h"

namespace candor::fused {

// Page-aligned memory for the large buffers of gradient passes (the tape, the backward's
// arena) that, when let go, is kept for the next pass instead of going back to the system: a
// tape of an integrated-gradients chunk is hundreds of megabytes, and fresh pages cost the
// kernel's zeroing and a fault each (13% of llama768's integrated gradients before this). At
// most kKeptRegions regions are kept, process-wide; while kept their pages are marked
// MADV_FREE, so the system takes them back under memory pressure (they read as zeros then).
// release_kept_regions() gives them all back now. Move-only.
class KeptRegion {
 public:
  static constexpr int kKeptRegions = 2;
  KeptRegion() = default;
  // A region of at least `bytes` bytes: a kept one large enough, or a new one.
  explicit KeptRegion(size_t bytes);
  ~KeptRegion();
  KeptRegion(KeptRegion&& o) noexcept;
  KeptRegion& operator=(KeptRegion&& o) noexcept;
  KeptRegion(const KeptRegion&) = delete;
  KeptRegion& operator=(const KeptRegion&) = delete;
  float* floats() const { return static_cast<float*>(p_); }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};
// Unmaps every kept region (the memory goes back to the system at once).
void release_kept_regions();
// Bytes of the regions kept now (for tests).
size_t kept_region_bytes();

// What one forward pass keeps for its backward (filled by llama_forward when given a tape).
// Two layouts: the full tape keeps, per layer, the block inputs, rotated q/k, v and the
// feed-forward's pre-activations; the lean tape (chosen when the full one would exceed the
// tape budget, see set_tape_budget) keeps the two block inputs only, and the backward
// recomputes q/k/v and the pre-activations from them (a norm and two products per layer, about
// 2/3 of a forward's products) — for the Llama family at hidden = 8/3 dim, about 5x less tape.
struct Tape {
  // What is kept, per layer.
  enum Kind { kAttnInput, kFfnInput, kQ, kK, kV, kPreActivation, kKinds };

  int64_t B = 0, T = 0;
  int64_t first = 0;                 // the layer the pass entered at (ForwardArgs::start_layer)
  std::vector<int64_t> rows;         // the positions whose logits the forward returned
  std::vector<uint8_t> key_real;     // [B, T]: 1 for a real token, 0 for padding
  std::vector<int64_t> key_pos;      // [B, T]: rotary position of each token (for windows)
  std::vector<uint8_t> any_padding;  // [B]
  at::Tensor rope;                   // [max_seq_len, head_dim / 2, 2] (cos, sin), or undefined

  // Sizes the buffers for a pass of B rows of T tokens entering at layer `first_layer` (called
  // by llama_forward); the layout is lean when the full one would exceed tape_budget().
  void begin(const ModelConfig& c, int64_t batch, int64_t tokens, int64_t first_layer = 0);
  // Where the kept buffer `kind` of layer `l` lies (see sizes in fused_backward.cpp); the final
  // residual stream (entering the final norm) is final(). Null for a kind the tape does not keep.
  float* at(Kind kind, int64_t l);
  const float* at(Kind kind, int64_t l) const { return const_cast<Tape*>(this)->at(kind, l); }
  float* final() { return data_ + (n_layers_ - first) * per_layer_; }
  const float* final() const { return data_ + (n_layers_ - first) * per_layer_; }
  // Copies `n` floats from `src` into the kept buffer (nothing for a kind not kept).
  void keep(Kind kind, int64_t l, const float* src, int64_t n);
  bool ready() const { return data_ != nullptr; }
  // True when q/k/v and the pre-activations are recomputed in the backward.
  bool lean() const { return lean_; }
  // Bytes the tape holds.
  int64_t bytes() const { return bytes_; }
  // Bytes the full (non-lean) and the lean tape of such a pass would hold.
  static int64_t full_bytes(const ModelConfig& c, int64_t batch, int64_t tokens, int64_t first = 0);
  static int64_t lean_bytes(const ModelConfig& c, int64_t batch, int64_t tokens, int64_t first = 0);

 private:
  int64_t n_layers_ = 0, per_layer_ = 0, bytes_ = 0;
  bool lean_ = false;
  int64_t offset_[kKinds] = {};
  int64_t size_[kKinds] = {};
  KeptRegion storage_;
  float* data_ = nullptr;
};

// The largest full tape (bytes) a pass keeps; beyond it the tape is lean. Default 1 GiB (on a
// 768-wide, 12-layer Llama, integrated gradients' default chunk of 16 x 128 tokens, 0.78 GB,
// stays full; a chunk of 50 x 128 tokens, 2.46 GB full, becomes 0.49 GB lean). 0: always lean.
// Process-wide.
void set_tape_budget(int64_t bytes);
int64_t tape_budget();

// The gradient of sum(dlogits * logits) with respect to the forward's input x (the input
// embeddings, or the residual stream entering layer tape.first):
// dlogits [B, rows.size(), vocab] float -> [B, T, dim] float. The tape is not changed, so one
// forward serves several backwards (one per explained step).
at::Tensor llama_backward(const ModelConfig& c, const LlamaWeights& w, const Tape& tape,
                          const at::Tensor& dlogits);

}  // namespace candor::fused
