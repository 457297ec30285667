// Vectorised elementwise kernels of the fused path: the norms, rotary embeddings, attention
// softmax, SwiGLU, residual and bias additions, their backwards, and the small products of
// attention (q·k and p·v for small head dimensions, where a BLAS call costs more than its
// arithmetic). Two implementations of one table: the scalar loops, which are the reference and
// the fallback, and AVX2 + FMA, compiled with __attribute__((target)) so the library still
// runs on any x86-64 (chosen at run time with __builtin_cpu_supports) and elsewhere. The two
// agree within float rounding (the exponential is a polynomial within 2 ulp of std::exp; sums
// are taken in another order); tests/models/vec_test.cpp compares them. Internal header (no
// libtorch types).
#pragma once

#include <cstdint>
#include <memory>

namespace candor::fused::vec {

struct Kernels {
  const char* name;  // "scalar" or "avx2"

  // sum a[i] * b[i].
  float (*dot)(const float* a, const float* b, int64_t n);
  // y[i] += x[i].
  void (*add)(int64_t n, const float* x, float* y);
  // sum x[i]^2, accumulated in double.
  double (*sum_squares)(const float* x, int64_t n);
  // o[i] = x[i] * r * w[i] (RMSNorm's output).
  void (*scale_mul)(int64_t n, const float* x, float r, const float* w, float* o);
  // RMSNorm backward: gx = sum dy[i] w[i] x[i] (double) is returned by rms_grad_dot, then
  // o[i] += a dy[i] w[i] - b x[i].
  double (*rms_grad_dot)(const float* dy, const float* w, const float* x, int64_t n);
  void (*rms_grad_apply)(int64_t n, float a, const float* dy, const float* w, float b,
                         const float* x, float* o);
  // Rotary embedding of one head: dst = src rotated by the (cos, sin) pairs of `table`
  // (interleaved pairs 2j, 2j + 1); unrotate applies the inverse (the backward). hd even.
  void (*rotate)(const float* src, float* dst, const float* table, int64_t hd);
  void (*unrotate)(const float* dy, float* dsrc, const float* table, int64_t hd);
  // In place over s[0, n): s = exp(s - max s) / sum (entries of -inf give 0). n >= 1 and at
  // least one entry finite.
  void (*softmax)(float* s, int64_t n);
  // Softmax backward in place: d[i] = p[i] (d[i] - sum p d), the sum in double.
  void (*softmax_backward)(const float* p, float* d, int64_t n);
  // SwiGLU in place over the gate: g[i] = silu(g[i]) * u[i].
  void (*swiglu)(int64_t n, float* g, const float* u);
  // SwiGLU backward: from the output's gradient da and the pre-activations g, u:
  // dg = da u s (1 + g (1 - s)), du = da silu(g), s = sigmoid(g).
  void (*swiglu_backward)(int64_t n, const float* da, const float* g, const float* u, float* dg,
                          float* du);
  // The small products (row-major, strides in floats; beta 0 does not read C):
  //   gemm_nt: C[M, N] = alpha A[M, K] B[N, K]ᵀ + beta C
  //   gemm_nn: C[M, N] = alpha A[M, K] B[K, N] + beta C
  //   gemm_tn: C[M, N] = alpha A[K, M]ᵀ B[K, N] + beta C
  void (*gemm_nt)(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                  const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
  void (*gemm_nn)(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                  const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
  void (*gemm_tn)(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                  const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

  // LayerNorm of one row of n: o[i] = (x[i] - m) r w[i] + b[i] (b may be null), the mean m and
  // r = (mean (x - m)^2 + eps)^-1/2 taken in double (the mean first, then the squared
  // deviations) and rounded to float before the row is written.
  void (*layer_norm)(int64_t n, const float* x, double eps, const float* w, const float* b,
                     float* o);
  // LayerNorm backward of one row, added to o: o[i] += r (g[i] - mean g - xhat[i] mean(g xhat)),
  // g = dy w, xhat = (x - m) r (the sums in double).
  void (*layer_norm_backward)(int64_t n, const float* x, const float* dy, const float* w,
                              double eps, float* o);
  // GELU, tanh form, in place: x = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); its
  // backward o[i] = da[i] gelu'(x[i]) from the pre-activation x.
  void (*gelu_tanh)(int64_t n, float* x);
  void (*gelu_tanh_backward)(int64_t n, const float* da, const float* x, float* o);
  // GELU, exact (erf) form, in place: x = x Phi(x), Phi(x) = 0.5 (1 + erf(x / sqrt 2)); its
  // backward o[i] = da[i] (Phi(x) + x phi(x)), phi the normal density.
  void (*gelu_erf)(int64_t n, float* x);
  void (*gelu_erf_backward)(int64_t n, const float* da, const float* x, float* o);
};

// The scalar loops (the reference).
const Kernels& scalar_kernels();
// The AVX2 + FMA kernels, or null when this CPU (or compiler) has none.
const Kernels* avx2_kernels();
// The kernels in use: AVX2 when the CPU has it, unless turned off by set_simd(false).
const Kernels& kernels();
// Turns the vector kernels on (the default where the CPU has them) or off (the scalar loops;
// for benchmarks and tests comparing the two). Returns whether vector kernels are now in use.
bool set_simd(bool on);

// Expands n values (whole blocks) of GGUF Q8_0 (ggml type 8), Q4_K (12), Q6_K (14), Q4_0 (2),
// F16 (1; with the CPU's F16C conversion) or BF16 (30) at p into y with the AVX2 kernels, to
// the same bits as the GGUF reader's loops (dequantize_ggml); false, doing nothing, for another
// type or when the scalar kernels are in use (the caller then uses dequantize_ggml).
bool dequantize_blocks(uint32_t type, const uint8_t* p, int64_t n, float* y);

// C[M, N] = alpha A[M, K] B[N, K]ᵀ + beta C (row-major, strides in floats; beta 0 does not read
// C) with the vector kernels, reading B where it lies instead of packing a copy as sgemm does:
// for few rows of A (a short sequence against a weight matrix, which then streams from memory
// once while the arithmetic runs) this beats sgemm, whose packing pass reads and writes the
// whole matrix before any arithmetic. Each element is one dot product over all of K. False,
// doing nothing, when the vector kernels are not in use (the caller then uses BLAS).
bool gemm_nt_stream(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                    const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// Attention of one query row, for small head dimensions (where one BLAS or tiled product per
// block of queries costs more than it computes):
//   attn_scores_t: s[j] = scale * sum_d q[d] Kt[d * ldk + j] for j < n (the keys laid out
//                  transposed, [hd, ldk], so that eight keys' scores are one vector product);
//   attn_mix:      out[c] = sum_{j < n} p[j] V[j * ldv + c] for c < hd.
//   attn_softmax_mix: s = softmax(s[0, n)) in place (entries of -inf give 0; n >= 1, one entry
//                  finite), then out = attn_mix(s) (normalised after the mix).
// Each sum runs over d (resp. j) in order within a vector lane; the scalar loops when the
// vector kernels are off. The vector kernels compute whole blocks of eight keys: attn_scores_t
// reads Kt up to column round_up(n, 8) (so ldk >= that) and writes s up to there, and
// attn_softmax_mix uses s up to there as scratch.
void attn_scores_t(const float* q, const float* Kt, int64_t ldk, int64_t n, int64_t hd,
                   float scale, float* s);
void attn_mix(const float* p, const float* V, int64_t ldv, int64_t n, int64_t hd, float* out);
void attn_softmax_mix(float* s, int64_t n, const float* V, int64_t ldv, int64_t hd, float* out);

// The arena of one pass (`which`: 0 the forward, 1 the backward): the calling thread's
// buffer of at least n floats, kept for its next pass when at most kKeptArenaFloats, so that
// small passes, run by the thousand, neither allocate nor fault pages in; a larger one is
// allocated into *own for this pass only. Valid until the thread's next call with `which`.
constexpr int64_t kKeptArenaFloats = int64_t{1} << 22;  // 16 MB
float* pass_arena(int which, int64_t n, std::unique_ptr<float[]>* own);

// Products at most this many multiply-adds go through gemm_* above rather than BLAS (a BLAS
// call costs a few microseconds of setup and packing, more than such a product's arithmetic).
constexpr int64_t kSmallProduct = int64_t{1} << 15;

}  // namespace candor::fused::vec
