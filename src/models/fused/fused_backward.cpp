// The hand-written backward of the fused Llama-family forward; see fused_backward.h.
#include "models/fused/fused_backward.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

#include "candor/error.h"
#include "models/fused/gemm.h"
#include "models/fused/qgemm.h"
#include "models/fused/vec.h"
#include "models/fused/pool.h"

namespace candor::fused {
namespace {

// Queries per attention tile, as in the forward.
constexpr int64_t kBackwardTile = 32;

const float* weight_ptr(const at::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }

// C[M, K] = G[M, N] · W for the [N, K] weight of a linear layer: the float tensor `t`, or, when
// `q` is set and not empty, the matrix kept in its quantized blocks (read as they are, with no
// float32 copy).
void linear_backward(int64_t M, int64_t N, int64_t K, const float* G, int64_t ldg,
                     const at::Tensor& t, const QuantMatrix* q, float* C, int64_t ldc) {
  if (q && !q->empty()) {
    qgemm_nn(M, G, ldg, *q, 0.0f, C, ldc);
  } else {
    gemm_nn(M, K, N, 1.0f, G, ldg, weight_ptr(t), K, 0.0f, C, ldc);
  }
}

// C[M, N] = A[M, K] · Wᵀ as the forward computes it (fused_llama.cpp's linear, beta 0): the
// lean tape's recomputation, through the quantized blocks when the model keeps them.
void linear_forward(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                    const at::Tensor& t, const QuantMatrix* q, float* C, int64_t ldc) {
  if (q && !q->empty()) {
    qgemm_nt(M, A, lda, *q, 0.0f, C, ldc);
  } else {
    gemm_nt(M, N, K, 1.0f, A, lda, weight_ptr(t), K, 0.0f, C, ldc);
  }
}

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

// The forward's norm, recomputed for a lean tape: out[n, :] = norm(x[n, :]) * weight (+ bias),
// as fused_llama.cpp's norm_rows computes it.
void norm_forward_rows(const ModelConfig& c, const float* x, int64_t rows, const float* weight,
                       const float* bias, float* out) {
  const int64_t D = c.dim;
  const double eps = c.norm_eps;
  for (int64_t n = 0; n < rows; ++n) {
    const float* xr = x + n * D;
    float* o = out + n * D;
    if (c.norm == NormKind::kRMSNorm) {
      double ss = 0;
      for (int64_t i = 0; i < D; ++i) ss += static_cast<double>(xr[i]) * xr[i];
      const float r = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(D) + eps));
      for (int64_t i = 0; i < D; ++i) o[i] = xr[i] * r * weight[i];
    } else {
      vec::kernels().layer_norm(D, xr, eps, weight, bias, o);
    }
  }
}

void add_bias_rows(float* y, int64_t rows, int64_t width, const float* bias) {
  if (!bias) return;
  for (int64_t n = 0; n < rows; ++n)
    for (int64_t i = 0; i < width; ++i) y[n * width + i] += bias[i];
}

// The forward's rotation (dst = src (cos + i sin) per pair), or a copy without a table.
inline void rotate_forward(const float* src, float* dst, const float* table, int64_t hd) {
  if (!table) {
    std::copy(src, src + hd, dst);
    return;
  }
  for (int64_t j = 0; j < hd / 2; ++j) {
    const float a = src[2 * j], b = src[2 * j + 1];
    const float co = table[2 * j], si = table[2 * j + 1];
    dst[2 * j] = a * co - b * si;
    dst[2 * j + 1] = a * si + b * co;
  }
}

}  // namespace

namespace {

std::atomic<int64_t> g_tape_budget{int64_t{1} << 30};

// Floats per token of one layer's kept buffers, by kind (full layout).
void kind_sizes(const ModelConfig& c, int64_t out[Tape::kKinds]) {
  const int64_t hd = c.head_dim();
  const int64_t F2 = c.activation == Activation::kSwiGLU ? 2 * c.hidden_dim : c.hidden_dim;
  out[Tape::kAttnInput] = c.dim;              // residual stream entering the attention block
  out[Tape::kFfnInput] = c.dim;               // entering the feed-forward block
  out[Tape::kQ] = c.n_heads * hd;             // rotated queries [B, KV, G * T, hd]
  out[Tape::kK] = c.n_kv_heads * hd;          // rotated keys [B, KV, T, hd]
  out[Tape::kV] = c.n_kv_heads * hd;          // values [B, KV, T, hd]
  out[Tape::kPreActivation] = F2;             // the feed-forward's pre-activations [N, F2]
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
  data_.reset(new float[static_cast<size_t>(floats)]);
}

float* Tape::at(Kind kind, int64_t l) {
  if (size_[kind] == 0) return nullptr;
  return data_.get() + (l - first) * per_layer_ + offset_[kind];
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
  std::unique_ptr<float[]> own;
  float* cur = vec::pass_arena(1, total, &own);
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
  float* rq = tape.lean() ? take(sizes[7]) : nullptr;  // lean tape only: q [B, KV, G * T, hd], k, v [B, KV, T, hd], f
  float* rk = rq ? rq + N * HD : nullptr;
  float* rv = rk ? rk + N * KV * hd : nullptr;
  float* rf = rv ? rv + N * KV * hd : nullptr;

  float* dx = result.data_ptr<float>();  // the residual stream's gradient, layer by layer

  // The output projection and the final norm, at the positions the logits came from.
  if (B * P > 0)
    linear_backward(B * P, V, D, dlogits.data_ptr<float>(), V, w.output,
                    w.quant ? &w.quant->output : nullptr, dh, D);
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
    // Feed-forward block: x' = x + act(norm(x) W13^T + b13) W2^T + b2.
    const float* pre = tape.at(Tape::kPreActivation, l);
    if (tape.lean()) {  // the pre-activations again, from the block's input
      norm_forward_rows(c, tape.at(Tape::kFfnInput, l), N, weight_ptr(L.ffn_norm),
                        weight_ptr(L.ffn_norm_bias), dh);
      linear_forward(N, F2, D, dh, D, L.w13, QL ? &QL->w13 : nullptr, rf, F2);
      add_bias_rows(rf, N, F2, weight_ptr(L.b13));
      pre = rf;
    }
    linear_backward(N, D, F, dx, D, L.w2, QL ? &QL->w2 : nullptr, da, F);
    activation_backward_rows(c.activation, da, F, pre, dz, N, F, F2);
    linear_backward(N, F2, D, dz, F2, L.w13, QL ? &QL->w13 : nullptr, dh, D);
    norm_backward_rows(c, tape.at(Tape::kFfnInput, l), D, dh, D, N, weight_ptr(L.ffn_norm), dx, D);

    // Attention block: x' = x + attention(norm(x) Wqkv^T + bqkv) Wo^T + bo.
    linear_backward(N, D, HD, dx, D, L.wo, QL ? &QL->wo : nullptr, dout, HD);
    std::fill(dk, dk + 2 * N * KV * hd, 0.0f);
    const float* q = tape.at(Tape::kQ, l);
    const float* kbase = tape.at(Tape::kK, l);
    const float* vbase = tape.at(Tape::kV, l);
    if (tape.lean()) {  // q, k and v again, from the block's input, laid out as the forward's
      norm_forward_rows(c, tape.at(Tape::kAttnInput, l), N, weight_ptr(L.attn_norm),
                        weight_ptr(L.attn_norm_bias), dh);
      float* qkv = dz;  // free until it takes the gradient at qkv below
      linear_forward(N, QKV, D, dh, D, L.wqkv, QL ? &QL->wqkv : nullptr, qkv, QKV);
      add_bias_rows(qkv, N, QKV, weight_ptr(L.bqkv));
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t t = 0; t < T; ++t) {
          const float* row = qkv + (b * T + t) * QKV;
          const float* table = rope_p ? rope_p + tape.key_pos[b * T + t] * hd : nullptr;
          for (int64_t hh = 0; hh < H; ++hh) {
            const int64_t kvh = hh / G, g = hh % G;
            rotate_forward(row + hh * hd, rq + ((b * KV + kvh) * GT + g * T + t) * hd, table, hd);
          }
          for (int64_t kvh = 0; kvh < KV; ++kvh) {
            const int64_t off = ((b * KV + kvh) * T + t) * hd;
            rotate_forward(row + (H + kvh) * hd, rk + off, table, hd);
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
    linear_backward(N, QKV, D, dqkv, QKV, L.wqkv, QL ? &QL->wqkv : nullptr, dh, D);
    norm_backward_rows(c, tape.at(Tape::kAttnInput, l), D, dh, D, N, weight_ptr(L.attn_norm), dx,
                       D);
  }
  return result;
}

}  // namespace candor::fused
