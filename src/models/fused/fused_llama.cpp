// The fused no-grad forward of the Llama family; see fused_llama.h.
#include "models/fused/fused_llama.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "candor/error.h"
#include "models/fused/fused_backward.h"
#include "models/fused/gemm.h"
#include "models/fused/pool.h"
#include "models/fused/qgemm.h"
#include "models/fused/vec.h"

namespace candor::fused {
namespace {

// Queries per attention tile (rows of one score product).
constexpr int64_t kQueryTile = 32;
// Head dimensions up to this attend one query row at a time (llama_forward's row path).
constexpr int64_t kRowPathHeadDim = 32;

bool usable_weight(const at::Tensor& t) {
  return !t.defined() || (t.scalar_type() == at::kFloat && t.is_contiguous() && !t.is_complex() &&
                          t.device().is_cpu());
}

const float* ptr(const at::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }

// C[M, N] = A[M, K] · Wᵀ + beta · C with W the float tensor `t`, or, when `q` is set and not
// empty, the quantized matrix (qgemm.h).
void linear(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const at::Tensor& t,
            const QuantMatrix* q, float beta, float* C, int64_t ldc) {
  linear_nt(M, N, K, A, lda, ptr(t), q, beta, C, ldc);
}

}  // namespace

void norm_rows(const ModelConfig& c, const float* x, int64_t ldx, int64_t rows, const float* weight,
               const float* bias, float* out, int64_t ldo) {
  const int64_t D = c.dim;
  if (split_rows(rows, 4 * D, [&](int64_t r0, int64_t r1) {
        norm_rows(c, x + r0 * ldx, ldx, r1 - r0, weight, bias, out + r0 * ldo, ldo);
      }))
    return;
  const double eps = c.norm_eps;
  for (int64_t n = 0; n < rows; ++n) {
    const float* xr = x + n * ldx;
    float* o = out + n * ldo;
    if (c.norm == NormKind::kRMSNorm) {
      const vec::Kernels& k = vec::kernels();
      const double ss = k.sum_squares(xr, D);
      const float r = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(D) + eps));
      k.scale_mul(D, xr, r, weight, o);
    } else {
      vec::kernels().layer_norm(D, xr, eps, weight, bias, o);
    }
  }
}

namespace {

void add_bias(float* y, int64_t rows, int64_t width, int64_t ld, const float* bias) {
  if (!bias) return;
  const vec::Kernels& k = vec::kernels();
  for (int64_t n = 0; n < rows; ++n) k.add(width, bias, y + n * ld);
}

// The feed-forward activation over f [rows, ld], in place: SwiGLU writes silu(gate) * up over
// the gate half (columns [0, F)); the others act on the F columns.
void activate_rows(Activation a, float* f, int64_t rows, int64_t F, int64_t ld) {
  if (split_rows(rows, 8 * F,
                 [&](int64_t r0, int64_t r1) { activate_rows(a, f + r0 * ld, r1 - r0, F, ld); }))
    return;
  for (int64_t n = 0; n < rows; ++n) {
    float* r = f + n * ld;
    switch (a) {
      case Activation::kSwiGLU:
        vec::kernels().swiglu(F, r, r + F);
        break;
      case Activation::kGeluTanh:
        vec::kernels().gelu_tanh(F, r);
        break;
      case Activation::kGelu:
        vec::kernels().gelu_erf(F, r);
        break;
      case Activation::kRelu:
        for (int64_t i = 0; i < F; ++i) r[i] = std::max(r[i], 0.0f);
        break;
    }
  }
}

}  // namespace

void rotate_into(const float* src, float* dst, const float* table, int64_t hd) {
  if (!table) {
    std::copy(src, src + hd, dst);
    return;
  }
  vec::kernels().rotate(src, dst, table, hd);
}

std::string llama_unsupported(const ModelConfig& c, const LlamaWeights& w, at::ScalarType dtype) {
  if (dtype != at::kFloat) return "computes in " + c.compute_dtype + " (the fused path is float32)";
  if (!gemm_available()) return "no BLAS sgemm found in the process";
  if (c.positions == PositionKind::kRotary && c.head_dim() % 2 != 0) return "odd head dimension";
  if (c.dim > (int64_t{1} << 30) / 8 || c.vocab_size > (int64_t{1} << 30))
    return "dimensions beyond BLAS's 32-bit sizes";
  std::vector<const at::Tensor*> all = {&w.tok_embeddings, &w.pos_embeddings, &w.final_norm,
                                        &w.final_norm_bias, &w.output};
  for (const LlamaLayerWeights& L : w.layers) {
    for (const at::Tensor* t : {&L.attn_norm, &L.wqkv, &L.wo, &L.ffn_norm, &L.w13, &L.w2,
                                &L.attn_norm_bias, &L.bqkv, &L.bo, &L.ffn_norm_bias, &L.b13, &L.b2})
      all.push_back(t);
  }
  for (const at::Tensor* t : all) {
    if (!usable_weight(*t)) return "weights that are not contiguous float32 tensors";
  }
  return "";
}

bool cache_usable(const ModelConfig& c, KVCache& cache) {
  if (cache.batch() == 0) return true;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    for (const at::Tensor* t : {&cache.keys(l), &cache.values(l)}) {
      if (!t->defined() || t->scalar_type() != at::kFloat || !t->is_contiguous() || t->dim() != 4 ||
          t->size(1) != c.n_kv_heads || t->size(3) != c.head_dim())
        return false;
    }
  }
  return cache.key_mask().defined() && cache.key_mask().is_contiguous() &&
         cache.key_mask().scalar_type() == at::kBool;
}

at::Tensor llama_forward(const ModelConfig& c, const LlamaWeights& w, const at::Tensor& x_in,
                         const at::Tensor& mask, const at::Tensor& positions,
                         const at::Tensor& rope, KVCache* cache, const std::vector<int64_t>& rows,
                         Tape* tape, int64_t first) {
  const int64_t B = x_in.size(0), T = x_in.size(1), D = c.dim;
  const int64_t H = c.n_heads, KV = c.n_kv_heads, G = H / KV, hd = c.head_dim();
  const int64_t N = B * T, QKV = (H + 2 * KV) * hd, F = c.hidden_dim;
  const bool gated = c.activation == Activation::kSwiGLU;
  const int64_t F2 = gated ? 2 * F : F;
  const int64_t past = cache ? cache->length() : 0, S = past + T;
  const int64_t cap = cache ? cache->capacity() : T;
  const int64_t P = static_cast<int64_t>(rows.size());
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));

  // Per-row facts shared by every layer: which keys are real, the positions of the keys (for
  // the sliding window), the rotary position of each new token.
  std::vector<uint8_t> key_real(B * S, 1);
  std::vector<int64_t> key_pos(B * S, 0);
  const at::Tensor pos = positions.to(at::kLong).contiguous();
  const int64_t* pos_p = pos.data_ptr<int64_t>();
  at::Tensor mask_c;
  if (mask.defined()) mask_c = mask.to(at::kBool).contiguous();
  const bool* mask_p = mask_c.defined() ? mask_c.data_ptr<bool>() : nullptr;
  const bool* km = cache && past > 0 ? cache->key_mask().data_ptr<bool>() : nullptr;
  for (int64_t b = 0; b < B; ++b) {
    int64_t count = 0;
    for (int64_t s = 0; s < past; ++s) {
      const bool real = km[b * cap + s];
      key_real[b * S + s] = real;
      key_pos[b * S + s] = count;
      count += real;
    }
    for (int64_t t = 0; t < T; ++t) {
      key_real[b * S + past + t] = mask_p ? mask_p[b * T + t] : 1;
      key_pos[b * S + past + t] = pos_p[b * T + t];
    }
  }
  std::vector<uint8_t> any_padding(static_cast<size_t>(B), 0);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t s = 0; s < S; ++s) any_padding[static_cast<size_t>(b)] |= !key_real[b * S + s];
  }
  const float* rope_p = rope.defined() ? rope.data_ptr<float>() : nullptr;
  if (tape) {  // what the backward needs besides the kept activations
    if (cache) throw Error(ErrorCode::kInternal, "a gradient pass cannot continue a KV cache");
    tape->begin(c, B, T, first);
    tape->rows = rows;
    tape->key_real = key_real;
    tape->key_pos = key_pos;
    tape->any_padding = any_padding;
    tape->rope = rope;
  }

  // The pass's threads (pool.h): --threads of the job, OpenBLAS held at one thread meanwhile.
  // Attention runs one (row, key head) pair per task on them; inside another parallel region
  // (a caller's own workers) everything runs on the calling thread.
  const PassThreads pass;
  const int64_t threads = pass.threads();

  // The arena: every buffer of the pass, allocated once.
  const int64_t GT = G * T;
  // Small heads attend one query row at a time over keys transposed (vec::attn_scores_t):
  // a tile's product of head_dim-long dot products costs more in reductions and in the masked
  // corner than it computes.
  const bool row_path = hd <= kRowPathHeadDim;
  const int64_t S8 = (S + 7) / 8 * 8;  // whole blocks of eight keys (vec.h)
  const int64_t sizes[] = {
      N * D,                        // x: the residual stream
      std::max(N, B * P) * D,       // h: normed input of a projection (and of the output)
      N * F2,                       // f: the feed-forward's hidden units
      N * QKV,                      // qkv
      B * KV * GT * hd,             // q by key head: [B, KV, G * T, hd]
      cache ? 0 : 2 * N * KV * hd,  // k, v without a cache: [B, KV, T, hd] each
      threads * kQueryTile * S,     // scores of one tile of queries, per thread
      row_path ? threads * hd * S8 : 0,  // keys transposed [hd, S8], per thread (row path)
      N * H * hd,                   // o: heads side by side
  };
  int64_t total = 0;
  for (int64_t s : sizes) total += s;
  std::unique_ptr<float[]> own;
  float* cur = vec::pass_arena(0, total, &own);
  auto take = [&](int64_t n) {
    float* p = cur;
    cur += n;
    return p;
  };
  float* x = take(sizes[0]);
  float* h = take(sizes[1]);
  float* f = take(sizes[2]);
  float* qkv = take(sizes[3]);
  float* q = take(sizes[4]);
  float* kv_own = take(sizes[5]);
  float* scores_all = take(sizes[6]);
  float* kt_all = take(sizes[7]);
  float* o = take(sizes[8]);
  {
    const at::Tensor xc = x_in.contiguous();
    std::copy(xc.data_ptr<float>(), xc.data_ptr<float>() + N * D, x);
  }
  const float kNegInf = -std::numeric_limits<float>::infinity();

  for (int64_t l = first; l < c.n_layers; ++l) {
    const LlamaLayerWeights& L = w.layers[static_cast<size_t>(l)];
    const QuantLayerWeights* QL = w.quant ? &w.quant->layers[static_cast<size_t>(l)] : nullptr;
    if (tape) tape->keep(Tape::kAttnInput, l, x, N * D);
    // Attention block.
    norm_rows(c, x, D, N, ptr(L.attn_norm), ptr(L.attn_norm_bias), h, D);
    linear(N, QKV, D, h, D, L.wqkv, QL ? &QL->wqkv : nullptr, 0.0f, qkv, QKV);
    add_bias(qkv, N, QKV, QKV, ptr(L.bqkv));
    // Keys and values of the new positions: into the cache, or the arena.
    float* kbase = cache ? cache->keys(l).data_ptr<float>() : kv_own;
    float* vbase = cache ? cache->values(l).data_ptr<float>() : kv_own + N * KV * hd;
    parallel_for(N, std::max<int64_t>(1, 8192 / QKV), [&](int64_t n0, int64_t n1, int) {
      for (int64_t n = n0; n < n1; ++n) {
        const int64_t b = n / T, t = n % T;
        const float* row = qkv + (b * T + t) * QKV;
        const float* table = rope_p ? rope_p + pos_p[b * T + t] * hd : nullptr;
        for (int64_t hh = 0; hh < H; ++hh) {
          const int64_t kvh = hh / G, g = hh % G;
          rotate_into(row + hh * hd, q + ((b * KV + kvh) * GT + g * T + t) * hd, table, hd);
        }
        for (int64_t kvh = 0; kvh < KV; ++kvh) {
          const int64_t off = ((b * KV + kvh) * cap + past + t) * hd;
          rotate_into(row + (H + kvh) * hd, kbase + off, table, hd);
          std::copy(row + (H + KV + kvh) * hd, row + (H + KV + kvh + 1) * hd, vbase + off);
        }
      }
    });
    if (tape) {
      tape->keep(Tape::kQ, l, q, N * H * hd);
      tape->keep(Tape::kK, l, kbase, N * KV * hd);
      tape->keep(Tape::kV, l, vbase, N * KV * hd);
    }
    const int64_t window = c.window_of(l);
    const bool windowed = window > 0 && S > window;
    // One (row, key head) pair per task; each thread its own scores.
    auto attend = [&](int64_t begin, int64_t end, int slot) {
      float* scores = scores_all + slot * kQueryTile * S;
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / KV, kvh = task % KV;
        const uint8_t* real = key_real.data() + b * S;
        const int64_t* kpos = key_pos.data() + b * S;
        const bool padded = any_padding[static_cast<size_t>(b)] != 0;
        const float* K = kbase + (b * KV + kvh) * cap * hd;  // [S, hd]
        const float* V = vbase + (b * KV + kvh) * cap * hd;
        if (row_path) {
          float* kt = kt_all + slot * hd * S8;  // [hd, S8], the columns past S zero
          for (int64_t d = 0; d < hd; ++d) {
            float* row = kt + d * S8;
            for (int64_t s = 0; s < S; ++s) row[s] = K[s * hd + d];
            std::fill(row + S, row + S8, 0.0f);
          }
          for (int64_t g = 0; g < G; ++g) {
            for (int64_t t = 0; t < T; ++t) {
              const int64_t self = past + t, n = self + 1;  // causal: keys [0, self]
              vec::attn_scores_t(q + ((b * KV + kvh) * GT + g * T + t) * hd, kt, S8, n, hd, scale,
                                 scores);
              if (padded || windowed) {
                const int64_t qpos = pos_p[b * T + t];
                for (int64_t s = 0; s < self; ++s) {
                  if ((padded && !real[s]) || (windowed && qpos - kpos[s] >= window))
                    scores[s] = kNegInf;
                }
              }
              vec::attn_softmax_mix(scores, n, V, hd, hd,
                                    o + (b * T + t) * H * hd + (kvh * G + g) * hd);
            }
          }
          continue;
        }
        for (int64_t g = 0; g < G; ++g) {
          // Query tiles: a tile's queries see keys [0, past + t1) only (causal), so the
          // products skip most of the masked upper triangle.
          for (int64_t t0 = 0; t0 < T; t0 += kQueryTile) {
            const int64_t t1 = std::min(T, t0 + kQueryTile), m = t1 - t0, nk = past + t1;
            const float* Q = q + ((b * KV + kvh) * GT + g * T + t0) * hd;  // [m, hd]
            gemm_nt(m, nk, hd, scale, Q, hd, K, hd, 0.0f, scores, nk);
            for (int64_t i = 0; i < m; ++i) {
              const int64_t t = t0 + i, self = past + t;
              float* sr = scores + i * nk;
              // Keys after `self` are the future: no weight.
              for (int64_t s = self + 1; s < nk; ++s) sr[s] = 0.0f;
              if (padded || windowed) {
                const int64_t qpos = pos_p[b * T + t];
                for (int64_t s = 0; s < self; ++s) {
                  if ((padded && !real[s]) || (windowed && qpos - kpos[s] >= window))
                    sr[s] = kNegInf;
                }
              }
              vec::kernels().softmax(sr, self + 1);  // a query always sees itself
            }
            // Straight into the heads' columns of o: [m, hd] at row b * T + t0.
            gemm_nn(m, hd, nk, 1.0f, scores, nk, V, hd, 0.0f,
                    o + (b * T + t0) * H * hd + (kvh * G + g) * hd, H * hd);
          }
        }
      }
    };
    // On the pool only when the products pay for waking a thread (a decode step of a small
    // model does not: its split cost more than the attention itself).
    const double attend_work = 2.0 * static_cast<double>(B * H * T) * static_cast<double>(S * hd);
    parallel_for(B * KV, worth_splitting(attend_work) ? 1 : B * KV, attend);
    add_bias(x, N, D, D, ptr(L.bo));
    linear(N, D, H * hd, o, H * hd, L.wo, QL ? &QL->wo : nullptr, 1.0f, x, D);  // x += o Wo^T
    if (tape) tape->keep(Tape::kFfnInput, l, x, N * D);
    // Feed-forward block.
    norm_rows(c, x, D, N, ptr(L.ffn_norm), ptr(L.ffn_norm_bias), h, D);
    linear(N, F2, D, h, D, L.w13, QL ? &QL->w13 : nullptr, 0.0f, f, F2);
    add_bias(f, N, F2, F2, ptr(L.b13));
    if (tape) tape->keep(Tape::kPreActivation, l, f, N * F2);
    activate_rows(c.activation, f, N, F, F2);
    add_bias(x, N, D, D, ptr(L.b2));
    linear(N, D, F, f, F2, L.w2, QL ? &QL->w2 : nullptr, 1.0f, x, D);  // x += act(f) W2^T
  }

  if (tape) std::copy(x, x + N * D, tape->final());
  // The final norm and the output projection, at the positions asked for only.
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t p = 0; p < P; ++p) {
      norm_rows(c, x + (b * T + rows[static_cast<size_t>(p)]) * D, D, 1, ptr(w.final_norm),
                ptr(w.final_norm_bias), h + (b * P + p) * D, D);
    }
  }
  at::Tensor logits = at::empty({B, P, c.vocab_size}, at::kFloat);
  if (B * P > 0)
    linear(B * P, c.vocab_size, D, h, D, w.output, w.quant ? &w.quant->output : nullptr, 0.0f,
           logits.data_ptr<float>(), c.vocab_size);
  return logits;
}

}  // namespace candor::fused
