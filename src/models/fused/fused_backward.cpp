// The hand-written backward of the fused Llama-family forward; see fused_backward.h.
#include "models/fused/fused_backward.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <mutex>
#include <utility>

#include <sys/mman.h>
#include <unistd.h>

#include "candor/error.h"
#include "models/fused/fused_llama.h"
#include "models/fused/gemm.h"
#include "models/fused/pool.h"
#include "models/fused/qgemm.h"
#include "models/fused/vec.h"

namespace candor::fused {
namespace {

// Queries per attention tile, as in the forward.
constexpr int64_t kBackwardTile = 32;

const float* weight_ptr(const at::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }

// dx[n, :] += d norm(x[n, :]) / dx applied to dy[n, :] (the norm's weight folded in), for
// `rows` rows of width D. RMSNorm y = x r w with r = (mean x^2 + eps)^-1/2:
//   dx = r g - x r^3 (g . x) / D, g = dy * w.
// LayerNorm y = (x - m) r w + b: dx = r (g - mean g - xhat mean(g * xhat)), xhat = (x - m) r.
void norm_backward_rows(const ModelConfig& c, const float* x, int64_t ldx, const float* dy,
                        int64_t lddy, int64_t rows, const float* weight, float* dx, int64_t lddx) {
  const int64_t D = c.dim;
  if (split_rows(rows, 6 * D, [&](int64_t r0, int64_t r1) {
        norm_backward_rows(c, x + r0 * ldx, ldx, dy + r0 * lddy, lddy, r1 - r0, weight,
                           dx + r0 * lddx, lddx);
      }))
    return;
  const double eps = c.norm_eps;
  for (int64_t n = 0; n < rows; ++n) {
    const float* xr = x + n * ldx;
    const float* dyr = dy + n * lddy;
    float* o = dx + n * lddx;
    if (c.norm == NormKind::kRMSNorm) {
      const vec::Kernels& k = vec::kernels();
      const double ss = k.sum_squares(xr, D), gx = k.rms_grad_dot(dyr, weight, xr, D);
      const double r = 1.0 / std::sqrt(ss / static_cast<double>(D) + eps);
      const float a = static_cast<float>(r);
      const float b = static_cast<float>(r * r * r * gx / static_cast<double>(D));
      k.rms_grad_apply(D, a, dyr, weight, b, xr, o);
    } else {
      vec::kernels().layer_norm_backward(D, xr, dyr, weight, eps, o);
    }
  }
}

// The feed-forward activation's backward: da [rows, F] (gradient of the activation's output)
// and f [rows, ld] (its pre-activation input, kept by the forward) -> df [rows, ld] (for
// SwiGLU both halves, gate then up; else the F columns).
void activation_backward_rows(Activation a, const float* da, int64_t ldda, const float* f,
                              float* df, int64_t rows, int64_t F, int64_t ld) {
  if (split_rows(rows, 8 * F, [&](int64_t r0, int64_t r1) {
        activation_backward_rows(a, da + r0 * ldda, ldda, f + r0 * ld, df + r0 * ld, r1 - r0, F,
                                 ld);
      }))
    return;
  for (int64_t n = 0; n < rows; ++n) {
    const float* dar = da + n * ldda;
    const float* fr = f + n * ld;
    float* o = df + n * ld;
    switch (a) {
      case Activation::kSwiGLU:
        // y = silu(g) u: dg = dy u s (1 + g (1 - s)), du = dy silu(g), s = sigmoid(g).
        vec::kernels().swiglu_backward(F, dar, fr, fr + F, o, o + F);
        break;
      case Activation::kGeluTanh:
        vec::kernels().gelu_tanh_backward(F, dar, fr, o);
        break;
      case Activation::kGelu:
        vec::kernels().gelu_erf_backward(F, dar, fr, o);
        break;
      case Activation::kRelu:
        for (int64_t i = 0; i < F; ++i) o[i] = fr[i] > 0 ? dar[i] : 0.0f;
        break;
    }
  }
}

// The rotation's backward: dsrc[0, hd) = dy rotated back (the conjugate pairs); a copy
// without a table.
inline void unrotate_into(const float* dy, float* dsrc, const float* table, int64_t hd) {
  if (!table) {
    std::copy(dy, dy + hd, dsrc);
    return;
  }
  vec::kernels().unrotate(dy, dsrc, table, hd);
}

// The output projection's backward, dh[r, :] = g[r, :] · W for the [V, D] output matrix (float
// `w`, or quantized `q`). When every row of g has few nonzero logits (one target logit, as
// saliency and integrated gradients ask), the rows of W they name are summed instead: the
// product would read the whole matrix (98 MB on a 32000 x 768 vocabulary) for one row of it.
void output_backward(int64_t R, int64_t V, int64_t D, const float* g, const float* w,
                     const QuantMatrix* q, float* dh) {
  constexpr int64_t kFewLogits = 16;
  std::vector<int64_t> nz;  // (row, logit) pairs
  bool sparse = true;
  for (int64_t r = 0; r < R && sparse; ++r) {
    int64_t count = 0;
    const float* gr = g + r * V;
    for (int64_t j = 0; j < V; ++j) {
      if (gr[j] == 0.0f) continue;
      if (++count > kFewLogits) {
        sparse = false;
        break;
      }
      nz.push_back(r);
      nz.push_back(j);
    }
  }
  if (!sparse) {
    linear_nn(R, V, D, g, V, w, q, 0.0f, dh, D);
    return;
  }
  std::fill(dh, dh + R * D, 0.0f);
  std::vector<float> row(q && !q->empty() ? static_cast<size_t>(D) : 0);
  for (size_t i = 0; i < nz.size(); i += 2) {
    const int64_t r = nz[i], j = nz[i + 1];
    const float* wr = w ? w + j * D : nullptr;
    if (!row.empty()) {
      dequantize_rows(*q, j, 1, row.data());
      wr = row.data();
    }
    const float a = g[r * V + j];
    float* o = dh + r * D;
    for (int64_t k = 0; k < D; ++k) o[k] += a * wr[k];
  }
}

void add_bias_rows(float* y, int64_t rows, int64_t width, const float* bias) {
  if (!bias) return;
  const vec::Kernels& k = vec::kernels();
  for (int64_t n = 0; n < rows; ++n) k.add(width, bias, y + n * width);
}

}  // namespace

namespace {

// The kept regions (KeptRegion), under one lock.
struct KeptRegions {
  std::mutex mu;
  std::vector<std::pair<void*, size_t>> free;  // at most kKeptRegions
};
KeptRegions& kept() {
  static KeptRegions* k = new KeptRegions;  // never destroyed: regions may go after main
  return *k;
}

// Removes the smallest kept region from the list (k.mu held); the caller unmaps it after
// unlocking.
void take_smallest(KeptRegions& k, void** p, size_t* bytes) {
  auto smallest = std::min_element(k.free.begin(), k.free.end(),
                                   [](const auto& a, const auto& b) { return a.second < b.second; });
  *p = smallest->first;
  *bytes = smallest->second;
  k.free.erase(smallest);
}

size_t page_round(size_t bytes) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  return (bytes + page - 1) / page * page;
}

}  // namespace

KeptRegion::KeptRegion(size_t bytes) {
  if (bytes == 0) return;
  const size_t want = page_round(bytes);
  void* unmap = nullptr;
  size_t unmap_bytes = 0;
  {
    KeptRegions& k = kept();
    std::lock_guard<std::mutex> lock(k.mu);
    // The smallest kept region that is large enough; else, with every slot full, the smallest
    // goes back to the system to make room for the new one.
    int best = -1;
    for (size_t i = 0; i < k.free.size(); ++i) {
      if (k.free[i].second >= want &&
          (best < 0 || k.free[i].second < k.free[static_cast<size_t>(best)].second))
        best = static_cast<int>(i);
    }
    if (best >= 0) {
      p_ = k.free[static_cast<size_t>(best)].first;
      bytes_ = k.free[static_cast<size_t>(best)].second;
      k.free.erase(k.free.begin() + best);
      return;
    }
    if (static_cast<int>(k.free.size()) >= kKeptRegions) take_smallest(k, &unmap, &unmap_bytes);
  }
  if (unmap) ::munmap(unmap, unmap_bytes);
  void* p = ::mmap(nullptr, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    release_kept_regions();  // what is kept may be what is missing
    p = ::mmap(nullptr, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  }
  if (p == MAP_FAILED) {
    throw Error(ErrorCode::kResourceExhausted,
                "cannot map " + std::to_string(want >> 20) + " MB for a gradient pass",
                "use fewer tokens or a smaller internal_batch_size, or lower the tape budget");
  }
  p_ = p;
  bytes_ = want;
}

KeptRegion::~KeptRegion() {
  if (!p_) return;
  ::madvise(p_, bytes_, MADV_FREE);  // the system may take the pages back meanwhile
  KeptRegions& k = kept();
  void* unmap = nullptr;
  size_t unmap_bytes = 0;
  {
    std::lock_guard<std::mutex> lock(k.mu);
    k.free.emplace_back(p_, bytes_);
    if (static_cast<int>(k.free.size()) > kKeptRegions) take_smallest(k, &unmap, &unmap_bytes);
  }
  if (unmap) ::munmap(unmap, unmap_bytes);
}

KeptRegion::KeptRegion(KeptRegion&& o) noexcept : p_(o.p_), bytes_(o.bytes_) {
  o.p_ = nullptr;
  o.bytes_ = 0;
}

KeptRegion& KeptRegion::operator=(KeptRegion&& o) noexcept {
  if (this != &o) {
    KeptRegion old(std::move(*this));
    p_ = o.p_;
    bytes_ = o.bytes_;
    o.p_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

void release_kept_regions() {
  std::vector<std::pair<void*, size_t>> all;
  {
    KeptRegions& k = kept();
    std::lock_guard<std::mutex> lock(k.mu);
    all.swap(k.free);
  }
  for (const auto& r : all) ::munmap(r.first, r.second);
}

size_t kept_region_bytes() {
  KeptRegions& k = kept();
  std::lock_guard<std::mutex> lock(k.mu);
  size_t n = 0;
  for (const auto& r : k.free) n += r.second;
  return n;
}

namespace {

std::atomic<int64_t> g_tape_budget{int64_t{1} << 30};

// Floats per token of one layer's kept buffers, by kind (full layout).
void kind_sizes(const ModelConfig& c, int64_t out[Tape::kKinds]) {
  const int64_t hd = c.head_dim();
  const int64_t F2 = c.activation == Activation::kSwiGLU ? 2 * c.hidden_dim : c.hidden_dim;
  out[Tape::kAttnInput] = c.dim;      // residual stream entering the attention block
  out[Tape::kFfnInput] = c.dim;       // entering the feed-forward block
  out[Tape::kQ] = c.n_heads * hd;     // rotated queries [B, KV, G * T, hd]
  out[Tape::kK] = c.n_kv_heads * hd;  // rotated keys [B, KV, T, hd]
  out[Tape::kV] = c.n_kv_heads * hd;  // values [B, KV, T, hd]
  out[Tape::kPreActivation] = F2;     // the feed-forward's pre-activations [N, F2]
}

int64_t tape_floats(const ModelConfig& c, int64_t N, int64_t layers, bool lean) {
  int64_t per[Tape::kKinds];
  kind_sizes(c, per);
  int64_t per_token = 0;
  for (int k = 0; k < Tape::kKinds; ++k)
    if (!lean || k == Tape::kAttnInput || k == Tape::kFfnInput) per_token += per[k];
  return layers * N * per_token + N * c.dim;
}

}  // namespace

void set_tape_budget(int64_t bytes) { g_tape_budget = std::max<int64_t>(0, bytes); }
int64_t tape_budget() { return g_tape_budget; }

int64_t Tape::full_bytes(const ModelConfig& c, int64_t batch, int64_t tokens, int64_t first) {
  return 4 * tape_floats(c, batch * tokens, c.n_layers - first, false);
}

int64_t Tape::lean_bytes(const ModelConfig& c, int64_t batch, int64_t tokens, int64_t first) {
  return 4 * tape_floats(c, batch * tokens, c.n_layers - first, true);
}

void Tape::begin(const ModelConfig& c, int64_t batch, int64_t tokens, int64_t first_layer) {
  B = batch;
  T = tokens;
  first = first_layer;
  const int64_t N = B * T;
  lean_ = full_bytes(c, B, T, first) > tape_budget();
  int64_t per[kKinds];
  kind_sizes(c, per);
  int64_t off = 0;
  for (int k = 0; k < kKinds; ++k) {
    const bool kept = !lean_ || k == kAttnInput || k == kFfnInput;
    offset_[k] = off;
    size_[k] = kept ? N * per[k] : 0;
    off += size_[k];
  }
  n_layers_ = c.n_layers;
  per_layer_ = off;
  const int64_t floats = (n_layers_ - first) * per_layer_ + N * c.dim;
  bytes_ = 4 * floats;
  storage_ = KeptRegion(static_cast<size_t>(floats) * sizeof(float));
  data_ = storage_.floats();
}

float* Tape::at(Kind kind, int64_t l) {
  if (size_[kind] == 0) return nullptr;
  return data_ + (l - first) * per_layer_ + offset_[kind];
}

void Tape::keep(Kind kind, int64_t l, const float* src, int64_t n) {
  if (size_[kind] == 0) return;
  std::copy(src, src + n, at(kind, l));
}

at::Tensor llama_backward(const ModelConfig& c, const LlamaWeights& w, const Tape& tape,
                          const at::Tensor& dlogits_in) {
  const int64_t T = tape.T, D = c.dim, V = c.vocab_size;
  const int64_t P = static_cast<int64_t>(tape.rows.size());
  if (!tape.ready()) throw Error(ErrorCode::kInternal, "backward without a recorded forward");
  if (dlogits_in.dim() != 3 || dlogits_in.size(0) != tape.B || dlogits_in.size(1) != P ||
      dlogits_in.size(2) != V) {
    throw Error(ErrorCode::kInvalidArgument, "the logits' gradient must have the logits' shape [" +
                                                 std::to_string(tape.B) + ", " + std::to_string(P) +
                                                 ", " + std::to_string(V) + "]");
  }
  const at::Tensor dlogits = dlogits_in.to(at::kFloat).contiguous();
  at::Tensor result = at::zeros({tape.B, T, D}, at::kFloat);
  // Rows after the last one with a nonzero gradient get none: they are not run (a batch may
  // carry rows whose values only are wanted, such as f(baseline) beside f(x)).
  int64_t B = 0;
  {
    const at::Tensor nonzero = dlogits.ne(0).view({tape.B, -1}).any(1);
    for (int64_t b = tape.B - 1; b >= 0 && B == 0; --b)
      if (nonzero[b].item<bool>()) B = b + 1;
  }
  if (B == 0) return result;
  const int64_t H = c.n_heads, KV = c.n_kv_heads, G = H / KV, hd = c.head_dim();
  const int64_t N = B * T, QKV = (H + 2 * KV) * hd, F = c.hidden_dim, HD = H * hd;
  const bool gated = c.activation == Activation::kSwiGLU;
  const int64_t F2 = gated ? 2 * F : F;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  const float* rope_p = tape.rope.defined() ? tape.rope.data_ptr<float>() : nullptr;

  // The pass's threads (pool.h), as in the forward.
  const PassThreads pass;
  const int64_t threads = pass.threads();
  // The arena of the backward.
  const int64_t GT = G * T;
  const int64_t sizes[] = {
      std::max(B * P, N) * D,           // dh: gradient at a norm's output
      N * std::max(F2, QKV),            // dz: gradient at the feed-forward's pre-activations,
                                        //     or at qkv
      N * F,                            // da: gradient at the activation's output
      N * HD,                           // dout: gradient at the heads' outputs
      N * HD,                           // dq: [B, KV, G * T, hd]
      2 * N * KV * hd,                  // dk, dv: [B, KV, T, hd]
      threads * 2 * kBackwardTile * T,  // probabilities and their gradient, per thread
      tape.lean() ? N * (HD + 2 * KV * hd + F2) : 0,  // lean tape: recomputed q, k, v, f
  };
  int64_t total = 0;
  for (int64_t s : sizes) total += s;
  // Small arenas are the thread's own (vec.h); a large one (an integrated-gradients chunk)
  // a kept region, so its pages are not faulted in afresh on every pass.
  std::unique_ptr<float[]> own;
  KeptRegion region;
  float* cur = nullptr;
  if (total <= vec::kKeptArenaFloats) {
    cur = vec::pass_arena(1, total, &own);
  } else {
    region = KeptRegion(static_cast<size_t>(total) * sizeof(float));
    cur = region.floats();
  }
  auto take = [&](int64_t n) {
    float* p = cur;
    cur += n;
    return p;
  };
  float* dh = take(sizes[0]);
  float* dz = take(sizes[1]);
  float* da = take(sizes[2]);
  float* dout = take(sizes[3]);
  float* dq = take(sizes[4]);
  float* dk = take(sizes[5]);
  float* dv = dk + N * KV * hd;
  float* scratch_all = take(sizes[6]);
  float* rq = tape.lean()
                  ? take(sizes[7])
                  : nullptr;  // lean tape only: q [B, KV, G * T, hd], k, v [B, KV, T, hd], f
  float* rk = rq ? rq + N * HD : nullptr;
  float* rv = rk ? rk + N * KV * hd : nullptr;
  float* rf = rv ? rv + N * KV * hd : nullptr;

  float* dx = result.data_ptr<float>();  // the residual stream's gradient, layer by layer

  // The output projection and the final norm, at the positions the logits came from.
  if (B * P > 0)
    output_backward(B * P, V, D, dlogits.data_ptr<float>(), weight_ptr(w.output),
                    w.quant ? &w.quant->output : nullptr, dh);
  // Entering the last layer, the residual stream's gradient is zero but at those positions;
  // the last layer's feed-forward block (row by row) keeps it so, and its attention block's
  // queries elsewhere get none. Both are run at those rows only when they are few (a quarter
  // of the rows at most): the rows, sorted, and a flag per row.
  std::vector<int64_t> live;
  std::vector<uint8_t> is_live;
  if (tape.first < c.n_layers) {
    is_live.assign(static_cast<size_t>(N), 0);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t p = 0; p < P; ++p)
        is_live[static_cast<size_t>(b * T + tape.rows[static_cast<size_t>(p)])] = 1;
    for (int64_t n = 0; n < N; ++n)
      if (is_live[static_cast<size_t>(n)]) live.push_back(n);
    if (4 * static_cast<int64_t>(live.size()) > N) {
      live.clear();
      is_live.clear();
    }
  }
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t p = 0; p < P; ++p) {
      const int64_t row = b * T + tape.rows[static_cast<size_t>(p)];
      norm_backward_rows(c, tape.final() + row * D, D, dh + (b * P + p) * D, D, 1,
                         weight_ptr(w.final_norm), dx + row * D, D);
    }
  }
  const float kNegInf = -std::numeric_limits<float>::infinity();

  for (int64_t l = c.n_layers - 1; l >= tape.first; --l) {
    const LlamaLayerWeights& L = w.layers[static_cast<size_t>(l)];
    const QuantLayerWeights* QL = w.quant ? &w.quant->layers[static_cast<size_t>(l)] : nullptr;
    // The last layer, when its gradient lives at a few rows: its feed-forward block and the
    // attention's output projection at those rows only (gathered), the queries elsewhere
    // skipped in the attention below.
    const bool few = l == c.n_layers - 1 && !live.empty();
    if (few) {
      const int64_t M = static_cast<int64_t>(live.size());
      std::vector<float> g(static_cast<size_t>(M * (2 * D + F2 + HD)));
      float* xin = g.data();
      float* dxr = xin + M * D;
      float* prer = dxr + M * D;
      float* doutr = prer + M * F2;
      const float* ffn_in = tape.at(Tape::kFfnInput, l);
      const float* kept_pre = tape.at(Tape::kPreActivation, l);
      for (int64_t i = 0; i < M; ++i) {
        const int64_t n = live[static_cast<size_t>(i)];
        std::copy(ffn_in + n * D, ffn_in + (n + 1) * D, xin + i * D);
        std::copy(dx + n * D, dx + (n + 1) * D, dxr + i * D);
        if (kept_pre) std::copy(kept_pre + n * F2, kept_pre + (n + 1) * F2, prer + i * F2);
      }
      if (!kept_pre) {  // lean tape: the pre-activations of these rows again
        norm_rows(c, xin, D, M, weight_ptr(L.ffn_norm), weight_ptr(L.ffn_norm_bias), dh, D);
        linear_nt(M, F2, D, dh, D, weight_ptr(L.w13), QL ? &QL->w13 : nullptr, 0.0f, prer, F2);
        add_bias_rows(prer, M, F2, weight_ptr(L.b13));
      }
      linear_nn(M, D, F, dxr, D, weight_ptr(L.w2), QL ? &QL->w2 : nullptr, 0.0f, da, F);
      activation_backward_rows(c.activation, da, F, prer, dz, M, F, F2);
      linear_nn(M, F2, D, dz, F2, weight_ptr(L.w13), QL ? &QL->w13 : nullptr, 0.0f, dh, D);
      norm_backward_rows(c, xin, D, dh, D, M, weight_ptr(L.ffn_norm), dxr, D);
      linear_nn(M, D, HD, dxr, D, weight_ptr(L.wo), QL ? &QL->wo : nullptr, 0.0f, doutr, HD);
      std::fill(dout, dout + N * HD, 0.0f);
      for (int64_t i = 0; i < M; ++i) {
        const int64_t n = live[static_cast<size_t>(i)];
        std::copy(dxr + i * D, dxr + (i + 1) * D, dx + n * D);
        std::copy(doutr + i * HD, doutr + (i + 1) * HD, dout + n * HD);
      }
    }
    // Feed-forward block: x' = x + act(norm(x) W13^T + b13) W2^T + b2.
    const float* pre = tape.at(Tape::kPreActivation, l);
    if (!few && tape.lean()) {  // the pre-activations again, from the block's input
      norm_rows(c, tape.at(Tape::kFfnInput, l), D, N, weight_ptr(L.ffn_norm),
                weight_ptr(L.ffn_norm_bias), dh, D);
      linear_nt(N, F2, D, dh, D, weight_ptr(L.w13), QL ? &QL->w13 : nullptr, 0.0f, rf, F2);
      add_bias_rows(rf, N, F2, weight_ptr(L.b13));
      pre = rf;
    }
    if (!few) {
      linear_nn(N, D, F, dx, D, weight_ptr(L.w2), QL ? &QL->w2 : nullptr, 0.0f, da, F);
      activation_backward_rows(c.activation, da, F, pre, dz, N, F, F2);
      linear_nn(N, F2, D, dz, F2, weight_ptr(L.w13), QL ? &QL->w13 : nullptr, 0.0f, dh, D);
      norm_backward_rows(c, tape.at(Tape::kFfnInput, l), D, dh, D, N, weight_ptr(L.ffn_norm), dx,
                         D);
    }

    // Attention block: x' = x + attention(norm(x) Wqkv^T + bqkv) Wo^T + bo.
    if (!few) linear_nn(N, D, HD, dx, D, weight_ptr(L.wo), QL ? &QL->wo : nullptr, 0.0f, dout, HD);
    std::fill(dk, dk + 2 * N * KV * hd, 0.0f);
    const float* q = tape.at(Tape::kQ, l);
    const float* kbase = tape.at(Tape::kK, l);
    const float* vbase = tape.at(Tape::kV, l);
    if (tape.lean()) {  // q, k and v again, from the block's input, laid out as the forward's
      norm_rows(c, tape.at(Tape::kAttnInput, l), D, N, weight_ptr(L.attn_norm),
                weight_ptr(L.attn_norm_bias), dh, D);
      float* qkv = dz;  // free until it takes the gradient at qkv below
      linear_nt(N, QKV, D, dh, D, weight_ptr(L.wqkv), QL ? &QL->wqkv : nullptr, 0.0f, qkv, QKV);
      add_bias_rows(qkv, N, QKV, weight_ptr(L.bqkv));
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t t = 0; t < T; ++t) {
          const float* row = qkv + (b * T + t) * QKV;
          const float* table = rope_p ? rope_p + tape.key_pos[b * T + t] * hd : nullptr;
          for (int64_t hh = 0; hh < H; ++hh) {
            const int64_t kvh = hh / G, g = hh % G;
            rotate_into(row + hh * hd, rq + ((b * KV + kvh) * GT + g * T + t) * hd, table, hd);
          }
          for (int64_t kvh = 0; kvh < KV; ++kvh) {
            const int64_t off = ((b * KV + kvh) * T + t) * hd;
            rotate_into(row + (H + kvh) * hd, rk + off, table, hd);
            std::copy(row + (H + KV + kvh) * hd, row + (H + KV + kvh + 1) * hd, rv + off);
          }
        }
      }
      q = rq;
      kbase = rk;
      vbase = rv;
    }
    const int64_t window = c.window_of(l);
    const bool windowed = window > 0 && T > window;
    auto attend_back = [&](int64_t begin, int64_t end, int slot) {
      float* prob = scratch_all + slot * 2 * kBackwardTile * T;
      float* dprob = prob + kBackwardTile * T;
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / KV, kvh = task % KV;
        const uint8_t* real = tape.key_real.data() + b * T;
        const int64_t* kpos = tape.key_pos.data() + b * T;
        const bool padded = tape.any_padding[static_cast<size_t>(b)] != 0;
        const float* K = kbase + (b * KV + kvh) * T * hd;  // [T, hd]
        const float* Vv = vbase + (b * KV + kvh) * T * hd;
        float* dK = dk + (b * KV + kvh) * T * hd;
        float* dV = dv + (b * KV + kvh) * T * hd;
        for (int64_t g = 0; g < G; ++g) {
          for (int64_t t0 = 0; t0 < T; t0 += kBackwardTile) {
            const int64_t t1 = std::min(T, t0 + kBackwardTile), m = t1 - t0, nk = t1;
            const float* Q = q + ((b * KV + kvh) * GT + g * T + t0) * hd;  // [m, hd]
            float* dQ = dq + ((b * KV + kvh) * GT + g * T + t0) * hd;
            const float* dO = dout + (b * T + t0) * HD + (kvh * G + g) * hd;  // [m, hd], ld HD
            if (few && std::find(is_live.begin() + b * T + t0, is_live.begin() + b * T + t1,
                                 uint8_t{1}) == is_live.begin() + b * T + t1) {
              std::fill(dQ, dQ + m * hd, 0.0f);  // no gradient at these queries
              continue;
            }
            // The probabilities, as the forward computed them.
            gemm_nt(m, nk, hd, scale, Q, hd, K, hd, 0.0f, prob, nk);
            for (int64_t i = 0; i < m; ++i) {
              const int64_t t = t0 + i, self = t;
              float* sr = prob + i * nk;
              for (int64_t s = self + 1; s < nk; ++s) sr[s] = 0.0f;
              if (padded || windowed) {
                const int64_t qpos = kpos[t];
                for (int64_t s = 0; s < self; ++s) {
                  if ((padded && !real[s]) || (windowed && qpos - kpos[s] >= window))
                    sr[s] = kNegInf;
                }
              }
              vec::kernels().softmax(sr, self + 1);
            }
            // dV += P^T dO; dP = dO V^T; dS = P (dP - sum(P dP)); dQ = scale dS K;
            // dK += scale dS^T Q.
            gemm_tn(nk, hd, m, 1.0f, prob, nk, dO, HD, 1.0f, dV, hd);
            gemm_nt(m, nk, hd, 1.0f, dO, HD, Vv, hd, 0.0f, dprob, nk);
            for (int64_t i = 0; i < m; ++i) {
              const int64_t self = t0 + i;
              const float* pr = prob + i * nk;
              float* dr = dprob + i * nk;
              vec::kernels().softmax_backward(pr, dr, self + 1);
              for (int64_t s = self + 1; s < nk; ++s) dr[s] = 0.0f;
            }
            gemm_nn(m, hd, nk, scale, dprob, nk, K, hd, 0.0f, dQ, hd);
            gemm_tn(nk, hd, m, scale, dprob, nk, Q, hd, 1.0f, dK, hd);
          }
        }
      }
    };
    parallel_for(B * KV, 1, attend_back);
    // Back to the qkv projection's output: rotary embeddings undone on q and k.
    float* dqkv = dz;
    parallel_for(N, std::max<int64_t>(1, 8192 / QKV), [&](int64_t n0, int64_t n1, int) {
      for (int64_t n = n0; n < n1; ++n) {
        const int64_t b = n / T, t = n % T;
        float* row = dqkv + (b * T + t) * QKV;
        const float* table = rope_p ? rope_p + tape.key_pos[b * T + t] * hd : nullptr;
        for (int64_t hh = 0; hh < H; ++hh) {
          const int64_t kvh = hh / G, g = hh % G;
          unrotate_into(dq + ((b * KV + kvh) * GT + g * T + t) * hd, row + hh * hd, table, hd);
        }
        for (int64_t kvh = 0; kvh < KV; ++kvh) {
          const int64_t off = ((b * KV + kvh) * T + t) * hd;
          unrotate_into(dk + off, row + (H + kvh) * hd, table, hd);
          std::copy(dv + off, dv + off + hd, row + (H + KV + kvh) * hd);
        }
      }
    });
    linear_nn(N, QKV, D, dqkv, QKV, weight_ptr(L.wqkv), QL ? &QL->wqkv : nullptr, 0.0f, dh, D);
    norm_backward_rows(c, tape.at(Tape::kAttnInput, l), D, dh, D, N, weight_ptr(L.attn_norm), dx,
                       D);
  }
  return result;
}

}  // namespace candor::fused
