// The fused path's elementwise kernels, scalar and AVX2 + FMA; see vec.h.
#include "models/fused/vec.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CANDOR_VEC_X86 1
#endif

namespace candor::fused::vec {
namespace {

// ---- scalar: the reference ------------------------------------------------------------------

float s_dot(const float* a, const float* b, int64_t n) {
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

void s_add(int64_t n, const float* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

double s_sum_squares(const float* x, int64_t n) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  return ss;
}

void s_scale_mul(int64_t n, const float* x, float r, const float* w, float* o) {
  for (int64_t i = 0; i < n; ++i) o[i] = x[i] * r * w[i];
}

double s_rms_grad_dot(const float* dy, const float* w, const float* x, int64_t n) {
  double gx = 0;
  for (int64_t i = 0; i < n; ++i) gx += static_cast<double>(dy[i]) * w[i] * x[i];
  return gx;
}

void s_rms_grad_apply(int64_t n, float a, const float* dy, const float* w, float b, const float* x,
                      float* o) {
  for (int64_t i = 0; i < n; ++i) o[i] += a * dy[i] * w[i] - b * x[i];
}

void s_rotate(const float* src, float* dst, const float* table, int64_t hd) {
  for (int64_t j = 0; j < hd / 2; ++j) {
    const float a = src[2 * j], b = src[2 * j + 1];
    const float co = table[2 * j], si = table[2 * j + 1];
    dst[2 * j] = a * co - b * si;
    dst[2 * j + 1] = a * si + b * co;
  }
}

void s_unrotate(const float* dy, float* dsrc, const float* table, int64_t hd) {
  for (int64_t j = 0; j < hd / 2; ++j) {
    const float a = dy[2 * j], b = dy[2 * j + 1];
    const float co = table[2 * j], si = table[2 * j + 1];
    dsrc[2 * j] = a * co + b * si;
    dsrc[2 * j + 1] = -a * si + b * co;
  }
}

void s_softmax(float* s, int64_t n) {
  float mx = s[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, s[i]);
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float e = std::exp(s[i] - mx);  // exp(-inf) = 0: masked keys
    s[i] = e;
    sum += e;
  }
  const float inv = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) s[i] *= inv;
}

void s_softmax_backward(const float* p, float* d, int64_t n) {
  double dot = 0;
  for (int64_t i = 0; i < n; ++i) dot += static_cast<double>(p[i]) * d[i];
  const float m = static_cast<float>(dot);
  for (int64_t i = 0; i < n; ++i) d[i] = p[i] * (d[i] - m);
}

void s_swiglu(int64_t n, float* g, const float* u) {
  for (int64_t i = 0; i < n; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

void s_swiglu_backward(int64_t n, const float* da, const float* g, const float* u, float* dg,
                       float* du) {
  for (int64_t i = 0; i < n; ++i) {
    const float s = 1.0f / (1.0f + std::exp(-g[i]));
    dg[i] = da[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
    du[i] = da[i] * g[i] * s;
  }
}

// C = alpha * sum_k A(i, k) B(k, :) + beta C, A(i, k) = A[i * sai + k * sak].
void s_gemm_rows(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t sai,
                 int64_t sak, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    float* c = C + i * ldc;
    for (int64_t j = 0; j < N; ++j) c[j] = beta == 0.0f ? 0.0f : beta * c[j];
    for (int64_t k = 0; k < K; ++k) {
      const float a = alpha * A[i * sai + k * sak];
      const float* b = B + k * ldb;
      for (int64_t j = 0; j < N; ++j) c[j] += a * b[j];
    }
  }
}

void s_gemm_nt(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
               const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      const float d = alpha * s_dot(A + i * lda, B + j * ldb, K);
      C[i * ldc + j] = beta == 0.0f ? d : d + beta * C[i * ldc + j];
    }
  }
}

void s_gemm_nn(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
               const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  s_gemm_rows(M, N, K, alpha, A, lda, 1, B, ldb, beta, C, ldc);
}

void s_gemm_tn(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
               const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  s_gemm_rows(M, N, K, alpha, A, 1, lda, B, ldb, beta, C, ldc);
}

void s_layer_norm(int64_t n, const float* x, double eps, const float* w, const float* b,
                  float* o) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i];
  const double mean = s / static_cast<double>(n);
  double v = 0;
  for (int64_t i = 0; i < n; ++i) v += (x[i] - mean) * (x[i] - mean);
  const float r = static_cast<float>(1.0 / std::sqrt(v / static_cast<double>(n) + eps));
  const float m = static_cast<float>(mean);
  for (int64_t i = 0; i < n; ++i) o[i] = (x[i] - m) * r * w[i] + (b ? b[i] : 0.f);
}

void s_layer_norm_backward(int64_t n, const float* x, const float* dy, const float* w, double eps,
                           float* o) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i];
  const double mean = s / static_cast<double>(n);
  double v = 0;
  for (int64_t i = 0; i < n; ++i) v += (x[i] - mean) * (x[i] - mean);
  const double r = 1.0 / std::sqrt(v / static_cast<double>(n) + eps);
  double sg = 0, sgx = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double g = static_cast<double>(dy[i]) * w[i];
    sg += g;
    sgx += g * (x[i] - mean) * r;
  }
  const double mg = sg / static_cast<double>(n), mgx = sgx / static_cast<double>(n);
  for (int64_t i = 0; i < n; ++i) {
    const double g = static_cast<double>(dy[i]) * w[i];
    const double xhat = (x[i] - mean) * r;
    o[i] += static_cast<float>(r * (g - mg - xhat * mgx));
  }
}

constexpr float kSqrt2OverPiF = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;

void s_gelu_tanh(int64_t n, float* x) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    x[i] = 0.5f * v * (1.0f + std::tanh(kSqrt2OverPiF * (v + kGeluCubic * v * v * v)));
  }
}

void s_gelu_tanh_backward(int64_t n, const float* da, const float* x, float* o) {
  constexpr double k = 0.7978845608028654;
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    const double th = std::tanh(k * (v + 0.044715 * v * v * v));
    const double d = 0.5 * (1 + th) + 0.5 * v * (1 - th * th) * k * (1 + 3 * 0.044715 * v * v);
    o[i] = static_cast<float>(da[i] * d);
  }
}

void s_gelu_erf(int64_t n, float* x) {
  constexpr float kInvSqrt2 = 0.7071067811865476f;
  for (int64_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * kInvSqrt2));
}

void s_gelu_erf_backward(int64_t n, const float* da, const float* x, float* o) {
  constexpr double kInvSqrt2 = 0.7071067811865476, kInvSqrt2Pi = 0.3989422804014327;
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    const double d = 0.5 * (1 + std::erf(v * kInvSqrt2)) + v * kInvSqrt2Pi * std::exp(-0.5 * v * v);
    o[i] = static_cast<float>(da[i] * d);
  }
}

const Kernels kScalar = {
    "scalar",     s_dot,        s_add,          s_sum_squares,      s_scale_mul,
    s_rms_grad_dot, s_rms_grad_apply, s_rotate, s_unrotate,         s_softmax,
    s_softmax_backward, s_swiglu, s_swiglu_backward, s_gemm_nt,      s_gemm_nn,
    s_gemm_tn,
    s_layer_norm, s_layer_norm_backward, s_gelu_tanh, s_gelu_tanh_backward,
    s_gelu_erf, s_gelu_erf_backward,
};

// ---- AVX2 + FMA ---------------------------------------------------------------------------

#ifdef CANDOR_VEC_X86
#define CANDOR_AVX2 __attribute__((target("avx2,fma")))

CANDOR_AVX2 inline float hsum(__m256 v) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

CANDOR_AVX2 inline float hmax(__m256 v) {
  __m128 lo = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_max_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_max_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

CANDOR_AVX2 inline double hsum_pd(__m256d v) {
  __m128d lo = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  lo = _mm_add_sd(lo, _mm_unpackhi_pd(lo, lo));
  return _mm_cvtsd_f64(lo);
}

// exp(x), lanewise: a degree-6 polynomial on [-ln2/2, ln2/2] after taking out 2^n (Cody-Waite
// reduction), within 2 ulp of std::exp; inputs below ln(FLT_MIN) (-inf among them) give 0,
// inputs above 88 are taken as 88.
CANDOR_AVX2 inline __m256 exp256(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.33654f);
  const __m256 tiny = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(88.0f));
  __m256 n = _mm256_floor_ps(
      _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
  x = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  const __m256i e =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
  return _mm256_andnot_ps(tiny, y);
}

CANDOR_AVX2 float v_dot(const float* a, const float* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  if (i + 8 <= n) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    i += 8;
  }
  float s = hsum(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

CANDOR_AVX2 void v_add(int64_t n, const float* x, float* y) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
  for (; i < n; ++i) y[i] += x[i];
}

CANDOR_AVX2 double v_sum_squares(const float* x, int64_t n) {
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256d a = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
    const __m256d b = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
    s0 = _mm256_fmadd_pd(a, a, s0);
    s1 = _mm256_fmadd_pd(b, b, s1);
  }
  double s = hsum_pd(_mm256_add_pd(s0, s1));
  for (; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return s;
}

CANDOR_AVX2 void v_scale_mul(int64_t n, const float* x, float r, const float* w, float* o) {
  const __m256 rv = _mm256_set1_ps(r);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(
        o + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), rv), _mm256_loadu_ps(w + i)));
  }
  for (; i < n; ++i) o[i] = x[i] * r * w[i];
}

CANDOR_AVX2 double v_rms_grad_dot(const float* dy, const float* w, const float* x, int64_t n) {
  __m256d s = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const __m256d a = _mm256_cvtps_pd(_mm_loadu_ps(dy + i));
    const __m256d b = _mm256_cvtps_pd(_mm_loadu_ps(w + i));
    const __m256d c = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
    s = _mm256_fmadd_pd(_mm256_mul_pd(a, b), c, s);
  }
  double r = hsum_pd(s);
  for (; i < n; ++i) r += static_cast<double>(dy[i]) * w[i] * x[i];
  return r;
}

CANDOR_AVX2 void v_rms_grad_apply(int64_t n, float a, const float* dy, const float* w, float b,
                                  const float* x, float* o) {
  const __m256 av = _mm256_set1_ps(a), bv = _mm256_set1_ps(b);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_mul_ps(_mm256_mul_ps(av, _mm256_loadu_ps(dy + i)), _mm256_loadu_ps(w + i));
    const __m256 t = _mm256_fnmadd_ps(bv, _mm256_loadu_ps(x + i), g);
    _mm256_storeu_ps(o + i, _mm256_add_ps(_mm256_loadu_ps(o + i), t));
  }
  for (; i < n; ++i) o[i] += a * dy[i] * w[i] - b * x[i];
}

// Complex products of interleaved pairs: fmaddsub gives v co - swap(v) si in even lanes and
// v co + swap(v) si in odd ones (the rotation); fmsubadd the other signs (its inverse).
CANDOR_AVX2 void v_rotate(const float* src, float* dst, const float* table, int64_t hd) {
  int64_t i = 0;
  for (; i + 8 <= hd; i += 8) {
    const __m256 v = _mm256_loadu_ps(src + i), t = _mm256_loadu_ps(table + i);
    const __m256 swapped = _mm256_permute_ps(v, 0xB1);
    _mm256_storeu_ps(dst + i, _mm256_fmaddsub_ps(v, _mm256_moveldup_ps(t),
                                                 _mm256_mul_ps(swapped, _mm256_movehdup_ps(t))));
  }
  s_rotate(src + i, dst + i, table + i, hd - i);
}

CANDOR_AVX2 void v_unrotate(const float* dy, float* dsrc, const float* table, int64_t hd) {
  int64_t i = 0;
  for (; i + 8 <= hd; i += 8) {
    const __m256 v = _mm256_loadu_ps(dy + i), t = _mm256_loadu_ps(table + i);
    const __m256 swapped = _mm256_permute_ps(v, 0xB1);
    _mm256_storeu_ps(dsrc + i, _mm256_fmsubadd_ps(v, _mm256_moveldup_ps(t),
                                                  _mm256_mul_ps(swapped, _mm256_movehdup_ps(t))));
  }
  s_unrotate(dy + i, dsrc + i, table + i, hd - i);
}

CANDOR_AVX2 void v_softmax(float* s, int64_t n) {
  int64_t i = 0;
  __m256 mv = _mm256_set1_ps(s[0]);
  for (; i + 8 <= n; i += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(s + i));
  float mx = hmax(mv);
  for (; i < n; ++i) mx = std::max(mx, s[i]);
  const __m256 m = _mm256_set1_ps(mx);
  __m256 sv = _mm256_setzero_ps();
  for (i = 0; i + 8 <= n; i += 8) {
    const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + i), m));
    _mm256_storeu_ps(s + i, e);
    sv = _mm256_add_ps(sv, e);
  }
  float sum = hsum(sv);
  for (; i < n; ++i) {
    const float e = std::exp(s[i] - mx);
    s[i] = e;
    sum += e;
  }
  const float inv = 1.0f / sum;
  const __m256 iv = _mm256_set1_ps(inv);
  for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(s + i, _mm256_mul_ps(_mm256_loadu_ps(s + i), iv));
  for (; i < n; ++i) s[i] *= inv;
}

CANDOR_AVX2 void v_softmax_backward(const float* p, float* d, int64_t n) {
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    s0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(p + i)), _mm256_cvtps_pd(_mm_loadu_ps(d + i)), s0);
    s1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(p + i + 4)),
                         _mm256_cvtps_pd(_mm_loadu_ps(d + i + 4)), s1);
  }
  double dot = hsum_pd(_mm256_add_pd(s0, s1));
  for (; i < n; ++i) dot += static_cast<double>(p[i]) * d[i];
  const float mf = static_cast<float>(dot);
  const __m256 m = _mm256_set1_ps(mf);
  for (i = 0; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(d + i, _mm256_mul_ps(_mm256_loadu_ps(p + i),
                                          _mm256_sub_ps(_mm256_loadu_ps(d + i), m)));
  }
  for (; i < n; ++i) d[i] = p[i] * (d[i] - mf);
}

CANDOR_AVX2 void v_swiglu(int64_t n, float* g, const float* u) {
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(g + i);
    const __m256 silu = _mm256_div_ps(x, _mm256_add_ps(one, exp256(_mm256_sub_ps(zero, x))));
    _mm256_storeu_ps(g + i, _mm256_mul_ps(silu, _mm256_loadu_ps(u + i)));
  }
  s_swiglu(n - i, g + i, u + i);
}

CANDOR_AVX2 void v_swiglu_backward(int64_t n, const float* da, const float* g, const float* u,
                                   float* dg, float* du) {
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(g + i), a = _mm256_loadu_ps(da + i);
    const __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, exp256(_mm256_sub_ps(zero, x))));
    const __m256 t = _mm256_fmadd_ps(x, _mm256_sub_ps(one, s), one);  // 1 + g (1 - s)
    _mm256_storeu_ps(dg + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(a, _mm256_loadu_ps(u + i)), s), t));
    _mm256_storeu_ps(du + i, _mm256_mul_ps(_mm256_mul_ps(a, x), s));
  }
  s_swiglu_backward(n - i, da + i, g + i, u + i, dg + i, du + i);
}

// Eight dot products of a against b0..b7 (K a multiple of 8), as one vector of 8 sums (named
// accumulators, so that they stay in registers).
CANDOR_AVX2 inline __m256 dot8(const float* a, const float* b, int64_t ldb, int64_t K) {
  __m256 p0 = _mm256_setzero_ps(), p1 = p0, p2 = p0, p3 = p0, p4 = p0, p5 = p0, p6 = p0, p7 = p0;
  for (int64_t k = 0; k < K; k += 8) {
    const __m256 av = _mm256_loadu_ps(a + k);
    p0 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b + k), p0);
    p1 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b + ldb + k), p1);
    p2 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b + 2 * ldb + k), p2);
    p3 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b + 3 * ldb + k), p3);
    p4 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b + 4 * ldb + k), p4);
    p5 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b + 5 * ldb + k), p5);
    p6 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b + 6 * ldb + k), p6);
    p7 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b + 7 * ldb + k), p7);
  }
  const __m256 h01 = _mm256_hadd_ps(p0, p1), h23 = _mm256_hadd_ps(p2, p3);
  const __m256 h45 = _mm256_hadd_ps(p4, p5), h67 = _mm256_hadd_ps(p6, p7);
  const __m256 h0123 = _mm256_hadd_ps(h01, h23), h4567 = _mm256_hadd_ps(h45, h67);
  return _mm256_add_ps(_mm256_permute2f128_ps(h0123, h4567, 0x20),
                       _mm256_permute2f128_ps(h0123, h4567, 0x31));
}

CANDOR_AVX2 void v_gemm_nt(int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                           int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                           int64_t ldc) {
  const __m256 al = _mm256_set1_ps(alpha), be = _mm256_set1_ps(beta);
  for (int64_t i = 0; i < M; ++i) {
    const float* a = A + i * lda;
    float* c = C + i * ldc;
    int64_t j = 0;
    if (K % 8 == 0) {
      for (; j + 8 <= N; j += 8) {
        __m256 d = _mm256_mul_ps(al, dot8(a, B + j * ldb, ldb, K));
        if (beta != 0.0f) d = _mm256_fmadd_ps(be, _mm256_loadu_ps(c + j), d);
        _mm256_storeu_ps(c + j, d);
      }
    }
    for (; j < N; ++j) {
      const float d = alpha * v_dot(a, B + j * ldb, K);
      c[j] = beta == 0.0f ? d : d + beta * c[j];
    }
  }
}

// C = alpha * sum_k A(i, k) B(k, :) + beta C, A(i, k) = A[i * sai + k * sak]: eight columns at a
// time, with four partial sums over k.
CANDOR_AVX2 void v_gemm_rows(int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                             int64_t sai, int64_t sak, const float* B, int64_t ldb, float beta,
                             float* C, int64_t ldc) {
  const __m256 al = _mm256_set1_ps(alpha), be = _mm256_set1_ps(beta);
  for (int64_t i = 0; i < M; ++i) {
    const float* a = A + i * sai;
    float* c = C + i * ldc;
    int64_t j = 0;
    for (; j + 8 <= N; j += 8) {
      __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
      int64_t k = 0;
      for (; k + 4 <= K; k += 4) {
        s0 = _mm256_fmadd_ps(_mm256_set1_ps(a[k * sak]), _mm256_loadu_ps(B + k * ldb + j), s0);
        s1 = _mm256_fmadd_ps(_mm256_set1_ps(a[(k + 1) * sak]), _mm256_loadu_ps(B + (k + 1) * ldb + j), s1);
        s2 = _mm256_fmadd_ps(_mm256_set1_ps(a[(k + 2) * sak]), _mm256_loadu_ps(B + (k + 2) * ldb + j), s2);
        s3 = _mm256_fmadd_ps(_mm256_set1_ps(a[(k + 3) * sak]), _mm256_loadu_ps(B + (k + 3) * ldb + j), s3);
      }
      for (; k < K; ++k)
        s0 = _mm256_fmadd_ps(_mm256_set1_ps(a[k * sak]), _mm256_loadu_ps(B + k * ldb + j), s0);
      __m256 d = _mm256_mul_ps(al, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
      if (beta != 0.0f) d = _mm256_fmadd_ps(be, _mm256_loadu_ps(c + j), d);
      _mm256_storeu_ps(c + j, d);
    }
    for (; j < N; ++j) {
      float s = 0;
      for (int64_t k = 0; k < K; ++k) s += a[k * sak] * B[k * ldb + j];
      c[j] = beta == 0.0f ? alpha * s : alpha * s + beta * c[j];
    }
  }
}

CANDOR_AVX2 void v_gemm_nn(int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                           int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                           int64_t ldc) {
  v_gemm_rows(M, N, K, alpha, A, lda, 1, B, ldb, beta, C, ldc);
}

CANDOR_AVX2 void v_gemm_tn(int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                           int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                           int64_t ldc) {
  v_gemm_rows(M, N, K, alpha, A, 1, lda, B, ldb, beta, C, ldc);
}

// sum x[i] in double.
CANDOR_AVX2 double v_sum(const float* x, int64_t n) {
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm_loadu_ps(x + i)));
    s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)));
  }
  double s = hsum_pd(_mm256_add_pd(s0, s1));
  for (; i < n; ++i) s += x[i];
  return s;
}

// sum (x[i] - mean)^2 in double.
CANDOR_AVX2 double v_sum_sq_dev(const float* x, double mean, int64_t n) {
  const __m256d m = _mm256_set1_pd(mean);
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256d a = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i)), m);
    const __m256d b = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)), m);
    s0 = _mm256_fmadd_pd(a, a, s0);
    s1 = _mm256_fmadd_pd(b, b, s1);
  }
  double s = hsum_pd(_mm256_add_pd(s0, s1));
  for (; i < n; ++i) s += (x[i] - mean) * (x[i] - mean);
  return s;
}

CANDOR_AVX2 void v_layer_norm(int64_t n, const float* x, double eps, const float* w,
                              const float* b, float* o) {
  const double mean = v_sum(x, n) / static_cast<double>(n);
  const double var = v_sum_sq_dev(x, mean, n) / static_cast<double>(n);
  const float r = static_cast<float>(1.0 / std::sqrt(var + eps));
  const float m = static_cast<float>(mean);
  const __m256 rv = _mm256_set1_ps(r), mv = _mm256_set1_ps(m);
  int64_t i = 0;
  // (x - m) r w (+ b): multiply, then add, rounding as the scalar loop does.
  for (; i + 8 <= n; i += 8) {
    __m256 y = _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv), rv),
                             _mm256_loadu_ps(w + i));
    if (b) y = _mm256_add_ps(y, _mm256_loadu_ps(b + i));
    _mm256_storeu_ps(o + i, y);
  }
  for (; i < n; ++i) o[i] = (x[i] - m) * r * w[i] + (b ? b[i] : 0.f);
}

CANDOR_AVX2 void v_layer_norm_backward(int64_t n, const float* x, const float* dy, const float* w,
                                       double eps, float* o) {
  const double mean = v_sum(x, n) / static_cast<double>(n);
  const double r = 1.0 / std::sqrt(v_sum_sq_dev(x, mean, n) / static_cast<double>(n) + eps);
  // sum g and sum g (x - mean), g = dy w, in double.
  const __m256d m = _mm256_set1_pd(mean);
  __m256d sg = _mm256_setzero_pd(), sgx = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const __m256d g = _mm256_mul_pd(_mm256_cvtps_pd(_mm_loadu_ps(dy + i)),
                                    _mm256_cvtps_pd(_mm_loadu_ps(w + i)));
    sg = _mm256_add_pd(sg, g);
    sgx = _mm256_fmadd_pd(g, _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i)), m), sgx);
  }
  double sgs = hsum_pd(sg), sgxs = hsum_pd(sgx);
  for (; i < n; ++i) {
    const double g = static_cast<double>(dy[i]) * w[i];
    sgs += g;
    sgxs += g * (x[i] - mean);
  }
  const double mg = sgs / static_cast<double>(n), mgx = sgxs * r / static_cast<double>(n);
  // o += r (g - mg - xhat mgx), xhat = (x - mean) r, in double as the scalar loop (in float,
  // r g and its cancelling terms would leave rounding of r |g| where the row is nearly
  // constant and r large).
  const __m256d rv = _mm256_set1_pd(r), mgv = _mm256_set1_pd(mg), mgxv = _mm256_set1_pd(mgx);
  for (i = 0; i + 4 <= n; i += 4) {
    const __m256d g = _mm256_mul_pd(_mm256_cvtps_pd(_mm_loadu_ps(dy + i)),
                                    _mm256_cvtps_pd(_mm_loadu_ps(w + i)));
    const __m256d xhat = _mm256_mul_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i)), m), rv);
    const __m256d t = _mm256_mul_pd(rv, _mm256_fnmadd_pd(xhat, mgxv, _mm256_sub_pd(g, mgv)));
    _mm_storeu_ps(o + i, _mm_add_ps(_mm_loadu_ps(o + i), _mm256_cvtpd_ps(t)));
  }
  for (; i < n; ++i) {
    const double g = static_cast<double>(dy[i]) * w[i];
    const double xhat = (x[i] - mean) * r;
    o[i] += static_cast<float>(r * (g - mg - xhat * mgx));
  }
}

// y = F(x) over blocks of eight, in place; the tail through the same formula, padded to 8 lanes.
template <__m256 (*F)(__m256)>
CANDOR_AVX2 inline void map_in_place_8(int64_t n, float* x) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, F(_mm256_loadu_ps(x + i)));
  if (i < n) {
    float t[8] = {0};
    std::copy(x + i, x + n, t);
    _mm256_storeu_ps(t, F(_mm256_loadu_ps(t)));
    std::copy(t, t + (n - i), x + i);
  }
}

// o = B(da, x) over blocks of eight; the tail through the same formula, padded to 8 lanes.
template <void (*B)(const float*, const float*, float*)>
CANDOR_AVX2 inline void map_pairs_8(int64_t n, const float* da, const float* x, float* o) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) B(da + i, x + i, o + i);
  if (i < n) {
    float ta[8] = {0}, tx[8] = {0}, to[8];
    std::copy(da + i, da + n, ta);
    std::copy(x + i, x + n, tx);
    B(ta, tx, to);
    std::copy(to, to + (n - i), o + i);
  }
}

// GELU (tanh form) as x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3): 0.5 (1 + tanh u) is
// sigmoid(2u), which has no cancellation where tanh u is near -1.
CANDOR_AVX2 inline __m256 gelu_sigmoid(__m256 v) {
  const __m256 inner = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(kGeluCubic), v),
                                       _mm256_mul_ps(v, v), v);
  const __m256 minus_2u = _mm256_mul_ps(_mm256_set1_ps(-2.0f * kSqrt2OverPiF), inner);
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(one, _mm256_add_ps(one, exp256(minus_2u)));
}

CANDOR_AVX2 inline __m256 gelu_tanh_8(__m256 v) { return _mm256_mul_ps(v, gelu_sigmoid(v)); }

CANDOR_AVX2 void v_gelu_tanh(int64_t n, float* x) { map_in_place_8<gelu_tanh_8>(n, x); }

// d/dx: 0.5 (1 + th) + 0.5 x (1 - th^2) k (1 + 3 c x^2) = s + 2 x s (1 - s) k (1 + 3 c x^2),
// s = sigmoid(2u).
CANDOR_AVX2 inline void gelu_tanh_backward_8(const float* da, const float* x, float* o) {
  const __m256 one = _mm256_set1_ps(1.0f), k2 = _mm256_set1_ps(2.0f * kSqrt2OverPiF),
               c3 = _mm256_set1_ps(3.0f * kGeluCubic);
  const __m256 v = _mm256_loadu_ps(x);
  const __m256 s = gelu_sigmoid(v);
  const __m256 poly = _mm256_fmadd_ps(_mm256_mul_ps(c3, v), v, one);  // 1 + 3 c x^2
  const __m256 t = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(k2, v), s),
                                 _mm256_mul_ps(_mm256_sub_ps(one, s), poly));
  _mm256_storeu_ps(o, _mm256_mul_ps(_mm256_loadu_ps(da), _mm256_add_ps(s, t)));
}

CANDOR_AVX2 void v_gelu_tanh_backward(int64_t n, const float* da, const float* x, float* o) {
  map_pairs_8<gelu_tanh_backward_8>(n, da, x, o);
}

// Phi(v) = 0.5 erfc(-v / sqrt 2) lanewise, and exp(-v^2 / 2) beside it (the backward's
// density). With a = |v| / sqrt 2: for a <= 1, erf(a) = a P(a^2), P a degree-6 polynomial in
// 2 a^2 - 1; for a > 1, erfc(a) = exp(-a^2) s Q(s), s = 1 / a, Q a degree-12 polynomial in
// 2 s - 1 (the tail is computed as erfc, so Phi of large negative v keeps its relative
// precision). Both are Chebyshev interpolants (of erf(sqrt t) / sqrt t on [0, 1] and of
// erfc(1 / s) exp(1 / s^2) / s on (0, 1]), within 3e-8 relative before float rounding.
CANDOR_AVX2 inline __m256 normal_cdf(__m256 v, __m256* density_exp) {
  static const float kP[] = {9.654687643e-01f,  -1.405360997e-01f, 1.985249855e-02f,
                             -2.285419498e-03f, 2.175119880e-04f,  -1.766908099e-05f,
                             1.231640113e-06f};
  static const float kQ[] = {5.107913613e-01f,  -8.360547572e-02f, -9.158574045e-03f,
                             1.486973837e-02f,  -6.793217734e-03f, 1.331239939e-03f,
                             6.122449995e-04f,  -8.190415101e-04f, 5.344944657e-04f,
                             -1.776306017e-04f, -7.190764882e-05f, 9.817320097e-05f,
                             -2.781844887e-05f};
  const __m256 one = _mm256_set1_ps(1.0f), two = _mm256_set1_ps(2.0f),
               half = _mm256_set1_ps(0.5f);
  const __m256 sign_mask = _mm256_set1_ps(-0.0f);
  const __m256 a = _mm256_andnot_ps(sign_mask, _mm256_mul_ps(v, _mm256_set1_ps(0.7071067811865476f)));
  const __m256 a2 = _mm256_mul_ps(a, a);
  const __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), a2));
  *density_exp = e;
  // a <= 1: erfc(a) = 1 - a P(2 a^2 - 1).
  const __m256 u = _mm256_fmsub_ps(two, a2, one);
  __m256 p = _mm256_set1_ps(kP[6]);
  for (int k = 5; k >= 0; --k) p = _mm256_fmadd_ps(p, u, _mm256_set1_ps(kP[k]));
  const __m256 erfc_small = _mm256_fnmadd_ps(a, p, one);
  // a > 1: erfc(a) = exp(-a^2) s Q(2 s - 1), s = 1 / a (a = 0 gives s = inf: not selected).
  const __m256 s = _mm256_div_ps(one, _mm256_max_ps(a, one));
  const __m256 w = _mm256_fmsub_ps(two, s, one);
  __m256 q = _mm256_set1_ps(kQ[12]);
  for (int k = 11; k >= 0; --k) q = _mm256_fmadd_ps(q, w, _mm256_set1_ps(kQ[k]));
  const __m256 erfc_large = _mm256_mul_ps(e, _mm256_mul_ps(s, q));
  const __m256 erfc_a = _mm256_blendv_ps(erfc_small, erfc_large, _mm256_cmp_ps(a, one, _CMP_GT_OQ));
  // Phi = 0.5 erfc(a) for v < 0, 1 - 0.5 erfc(a) otherwise.
  const __m256 lower = _mm256_mul_ps(half, erfc_a);
  return _mm256_blendv_ps(_mm256_sub_ps(one, lower), lower,
                          _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ));
}

CANDOR_AVX2 inline __m256 gelu_erf_8(__m256 v) {
  __m256 e;
  return _mm256_mul_ps(v, normal_cdf(v, &e));
}

CANDOR_AVX2 void v_gelu_erf(int64_t n, float* x) { map_in_place_8<gelu_erf_8>(n, x); }

CANDOR_AVX2 inline void gelu_erf_backward_8(const float* da, const float* x, float* o) {
  __m256 e;
  const __m256 v = _mm256_loadu_ps(x);
  const __m256 cdf = normal_cdf(v, &e);  // e = exp(-v^2 / 2)
  const __m256 d = _mm256_fmadd_ps(_mm256_mul_ps(v, _mm256_set1_ps(0.3989422804014327f)), e, cdf);
  _mm256_storeu_ps(o, _mm256_mul_ps(_mm256_loadu_ps(da), d));
}

CANDOR_AVX2 void v_gelu_erf_backward(int64_t n, const float* da, const float* x, float* o) {
  map_pairs_8<gelu_erf_backward_8>(n, da, x, o);
}

// The streamed product C = alpha A Bᵀ + beta C (gemm_nt_stream): tiles of Q rows of A by R rows
// of B, each Q x R block of dot products over all of K in Q * R accumulators, B read once per
// tile straight from where it lies (no packed copy), A from cache.
template <int Q, int R>
CANDOR_AVX2 inline void nt_stream_tile(int64_t K, float alpha, const float* A, int64_t lda,
                                       const float* B, int64_t ldb, float beta, float* C,
                                       int64_t ldc) {
  __m256 acc[Q][4];
#pragma GCC unroll 4
  for (int q = 0; q < Q; ++q)
#pragma GCC unroll 4
    for (int r = 0; r < 4; ++r) acc[q][r] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    __m256 a[Q];
#pragma GCC unroll 4
    for (int q = 0; q < Q; ++q) a[q] = _mm256_loadu_ps(A + q * lda + k);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m256 b = _mm256_loadu_ps(B + r * ldb + k);
#pragma GCC unroll 4
      for (int q = 0; q < Q; ++q) acc[q][r] = _mm256_fmadd_ps(a[q], b, acc[q][r]);
    }
  }
#pragma GCC unroll 4
  for (int q = 0; q < Q; ++q) {
    // The four sums of row q: hadd pairs, then the two halves.
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(acc[q][0], acc[q][1]),
                                    _mm256_hadd_ps(acc[q][2], acc[q][3]));
    float sums[4];
    _mm_storeu_ps(sums, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
    float* c = C + q * ldc;
    for (int r = 0; r < R; ++r) {
      float d = sums[r];
      for (int64_t kk = k; kk < K; ++kk) d += A[q * lda + kk] * B[r * ldb + kk];
      d *= alpha;
      c[r] = beta == 0.0f ? d : d + beta * c[r];
    }
  }
}

template <int R>
CANDOR_AVX2 inline void nt_stream_panel(int64_t M, int64_t K, float alpha, const float* A,
                                        int64_t lda, const float* B, int64_t ldb, float beta,
                                        float* C, int64_t ldc) {
  int64_t i = 0;
  for (; i + 3 <= M; i += 3)
    nt_stream_tile<3, R>(K, alpha, A + i * lda, lda, B, ldb, beta, C + i * ldc, ldc);
  if (M - i == 2) nt_stream_tile<2, R>(K, alpha, A + i * lda, lda, B, ldb, beta, C + i * ldc, ldc);
  if (M - i == 1) nt_stream_tile<1, R>(K, alpha, A + i * lda, lda, B, ldb, beta, C + i * ldc, ldc);
}

CANDOR_AVX2 void v_gemm_nt_stream(int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                                  int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                                  int64_t ldc) {
  int64_t j = 0;
  for (; j + 4 <= N; j += 4)
    nt_stream_panel<4>(M, K, alpha, A, lda, B + j * ldb, ldb, beta, C + j, ldc);
  for (; j < N; ++j) nt_stream_panel<1>(M, K, alpha, A, lda, B + j * ldb, ldb, beta, C + j, ldc);
}

// Attention of one query over keys laid out transposed (attn_scores_t) and the mix of values
// (attn_mix); see vec.h.
CANDOR_AVX2 void v_attn_scores_t(const float* q, const float* Kt, int64_t ldk, int64_t n,
                                 int64_t hd, float scale, float* s) {
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t d = 0; d < hd; ++d) {
      const __m256 qd = _mm256_set1_ps(q[d]);
      const float* k = Kt + d * ldk + j;
      a0 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(k), a0);
      a1 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(k + 8), a1);
      a2 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(k + 16), a2);
      a3 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(k + 24), a3);
    }
    const __m256 sc = _mm256_set1_ps(scale);
    _mm256_storeu_ps(s + j, _mm256_mul_ps(sc, a0));
    _mm256_storeu_ps(s + j + 8, _mm256_mul_ps(sc, a1));
    _mm256_storeu_ps(s + j + 16, _mm256_mul_ps(sc, a2));
    _mm256_storeu_ps(s + j + 24, _mm256_mul_ps(sc, a3));
  }
  for (; j < n; j += 8) {  // the last block rounded up: ldk and s have room (vec.h)
    __m256 a0 = _mm256_setzero_ps();
    for (int64_t d = 0; d < hd; ++d)
      a0 = _mm256_fmadd_ps(_mm256_set1_ps(q[d]), _mm256_loadu_ps(Kt + d * ldk + j), a0);
    _mm256_storeu_ps(s + j, _mm256_mul_ps(_mm256_set1_ps(scale), a0));
  }
}


CANDOR_AVX2 void v_attn_mix(const float* p, const float* V, int64_t ldv, int64_t n, int64_t hd,
                            float* out) {
  int64_t c = 0;
  for (; c + 8 <= hd; c += 8) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    const float* v = V + c;
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
      a0 = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), _mm256_loadu_ps(v + j * ldv), a0);
      a1 = _mm256_fmadd_ps(_mm256_set1_ps(p[j + 1]), _mm256_loadu_ps(v + (j + 1) * ldv), a1);
      a2 = _mm256_fmadd_ps(_mm256_set1_ps(p[j + 2]), _mm256_loadu_ps(v + (j + 2) * ldv), a2);
      a3 = _mm256_fmadd_ps(_mm256_set1_ps(p[j + 3]), _mm256_loadu_ps(v + (j + 3) * ldv), a3);
    }
    for (; j < n; ++j)
      a0 = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), _mm256_loadu_ps(v + j * ldv), a0);
    _mm256_storeu_ps(out + c, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  }
  for (; c < hd; ++c) {
    float a = 0;
    for (int64_t j = 0; j < n; ++j) a += p[j] * V[j * ldv + c];
    out[c] = a;
  }
}

CANDOR_AVX2 void v_attn_softmax_mix(float* s, int64_t n, const float* V, int64_t ldv,
                                    int64_t hd, float* out) {
  const int64_t n8 = (n + 7) / 8 * 8;
  for (int64_t j = n; j < n8; ++j) s[j] = -std::numeric_limits<float>::infinity();
  __m256 mv = _mm256_loadu_ps(s);
  for (int64_t j = 8; j < n8; j += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(s + j));
  const __m256 m = _mm256_set1_ps(hmax(mv));
  __m256 sv = _mm256_setzero_ps();
  for (int64_t j = 0; j < n8; j += 8) {
    const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j), m));
    _mm256_storeu_ps(s + j, e);
    sv = _mm256_add_ps(sv, e);
  }
  const float inv = 1.0f / hsum(sv);
  v_attn_mix(s, V, ldv, n, hd, out);
  for (int64_t c = 0; c < hd; ++c) out[c] *= inv;
}

const Kernels kAvx2 = {
    "avx2",       v_dot,        v_add,          v_sum_squares,      v_scale_mul,
    v_rms_grad_dot, v_rms_grad_apply, v_rotate, v_unrotate,         v_softmax,
    v_softmax_backward, v_swiglu, v_swiglu_backward, v_gemm_nt,      v_gemm_nn,
    v_gemm_tn,
    v_layer_norm, v_layer_norm_backward, v_gelu_tanh, v_gelu_tanh_backward,
    v_gelu_erf, v_gelu_erf_backward,
};

// IEEE half to float, exactly (as c10's conversion the GGUF reader uses).
inline float half_to_float(const uint8_t* p) {
  const uint32_t h = static_cast<uint32_t>(p[0] | (p[1] << 8));
  const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in float
    const float f = static_cast<float>(mant) * 5.9604644775390625e-8f;
    return sign ? -f : f;
  }
  const uint32_t bits = exp == 31 ? sign | 0x7F800000u | (mant << 13)
                                  : sign | ((exp + 112) << 23) | (mant << 13);
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Q8_0: per 32 values, f16 d and 32 int8 q: x = d q.
CANDOR_AVX2 void v_dequant_q8_0(const uint8_t* p, int64_t n, float* y) {
  for (int64_t b = 0; b < n / 32; ++b, p += 34, y += 32) {
    const __m256 d = _mm256_set1_ps(half_to_float(p));
    for (int g = 0; g < 4; ++g) {
      const __m128i q8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 2 + 8 * g));
      _mm256_storeu_ps(y + 8 * g, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8))));
    }
  }
}

// Q4_K: per 256 values, f16 d and dmin, 12 bytes of 6-bit scales and mins of 8 sub-blocks,
// 128 bytes of nibbles (64 values per 32 bytes: low nibbles, then high): x = d s q - dmin m.
CANDOR_AVX2 void v_dequant_q4_k(const uint8_t* p, int64_t n, float* y) {
  const __m256i low4 = _mm256_set1_epi32(0x0F);
  for (int64_t b = 0; b < n / 256; ++b, p += 144) {
    const float d = half_to_float(p), dmin = half_to_float(p + 2);
    const uint8_t* sc = p + 4;
    const uint8_t* q = p + 16;
    auto scale_min = [&](int j, int* s, int* m) {
      if (j < 4) {
        *s = sc[j] & 63;
        *m = sc[j + 4] & 63;
      } else {
        *s = (sc[j + 4] & 0x0F) | ((sc[j - 4] >> 6) << 4);
        *m = (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4);
      }
    };
    for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
      int s1, m1, s2, m2;
      scale_min(is, &s1, &m1);
      scale_min(is + 1, &s2, &m2);
      const __m256 d1 = _mm256_set1_ps(d * static_cast<float>(s1));
      const __m256 n1 = _mm256_set1_ps(dmin * static_cast<float>(m1));
      const __m256 d2 = _mm256_set1_ps(d * static_cast<float>(s2));
      const __m256 n2 = _mm256_set1_ps(dmin * static_cast<float>(m2));
      for (int l = 0; l < 32; l += 8) {
        const __m256i bytes =
            _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + l)));
        const __m256 lo = _mm256_cvtepi32_ps(_mm256_and_si256(bytes, low4));
        const __m256 hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(bytes, 4));
        // Multiply, then subtract (two roundings, as the scalar loop).
        _mm256_storeu_ps(y + l, _mm256_sub_ps(_mm256_mul_ps(d1, lo), n1));
        _mm256_storeu_ps(y + 32 + l, _mm256_sub_ps(_mm256_mul_ps(d2, hi), n2));
      }
      y += 64;
    }
  }
}

// Q4_0: per 32 values, f16 d and 16 bytes of nibbles (low nibbles values 0..15, high ones
// 16..31): x = d (q - 8).
CANDOR_AVX2 void v_dequant_q4_0(const uint8_t* p, int64_t n, float* y) {
  const __m128i low4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
  for (int64_t b = 0; b < n / 32; ++b, p += 18, y += 32) {
    const __m256 d = _mm256_set1_ps(half_to_float(p));
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2));
    const __m128i lo = _mm_sub_epi8(_mm_and_si128(q, low4), eight);
    const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), low4), eight);
    _mm256_storeu_ps(y, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                                                 _mm_srli_si128(lo, 8)))));
    _mm256_storeu_ps(y + 16, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
    _mm256_storeu_ps(y + 24, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                                                  _mm_srli_si128(hi, 8)))));
  }
}

// 32 signed bytes q to floats: the first 16 times s0, the next 16 times s1.
CANDOR_AVX2 inline void scale_32(__m256i q, float s0, float s1, float* y) {
  const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
  const __m256 a = _mm256_set1_ps(s0), b = _mm256_set1_ps(s1);
  _mm256_storeu_ps(y, _mm256_mul_ps(a, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
  _mm256_storeu_ps(y + 8, _mm256_mul_ps(a, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                                               _mm_srli_si128(lo, 8)))));
  _mm256_storeu_ps(y + 16, _mm256_mul_ps(b, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
  _mm256_storeu_ps(y + 24, _mm256_mul_ps(b, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                                                _mm_srli_si128(hi, 8)))));
}

// Q6_K: per 256 values, 128 bytes of low 4 bits, 64 bytes of high 2 bits, 16 int8 scales of
// sub-blocks of 16, f16 d: x = (d s) (q - 32), the scale product rounded first as the reader's
// loop does. Per half of 128 values, value l + 32 j (j = 0..3) takes its low bits from ql[l]
// (j = 0, 2: low / high nibble) or ql[l + 32] (j = 1, 3) and its high bits from bits 2j, 2j + 1
// of qh[l].
CANDOR_AVX2 void v_dequant_q6_k(const uint8_t* p, int64_t n, float* y) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), m03 = _mm256_set1_epi8(0x03),
                m0c = _mm256_set1_epi8(0x0C), m30 = _mm256_set1_epi8(0x30),
                mc0 = _mm256_set1_epi8(static_cast<char>(0xC0)), k32 = _mm256_set1_epi8(32);
  for (int64_t b = 0; b < n / 256; ++b, p += 210) {
    const uint8_t* ql = p;
    const uint8_t* qh = p + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(p + 192);
    const float d = half_to_float(p + 208);
    for (int half = 0; half < 2; ++half, ql += 64, qh += 32, sc += 8, y += 128) {
      const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
      const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh));
      // Shifts of 16-bit lanes, masked so that no bit crosses into the neighbouring byte.
      const __m256i q1 = _mm256_or_si256(_mm256_and_si256(a, low4),
                                         _mm256_slli_epi16(_mm256_and_si256(h, m03), 4));
      const __m256i q2 = _mm256_or_si256(_mm256_and_si256(c, low4),
                                         _mm256_slli_epi16(_mm256_and_si256(h, m0c), 2));
      const __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(a, 4), low4),
                                         _mm256_and_si256(h, m30));
      const __m256i q4 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(c, 4), low4),
                                         _mm256_srli_epi16(_mm256_and_si256(h, mc0), 2));
      const __m256i qs[4] = {q1, q2, q3, q4};
      for (int j = 0; j < 4; ++j) {
        const float s0 = d * sc[2 * j], s1 = d * sc[2 * j + 1];
        scale_32(_mm256_sub_epi8(qs[j], k32), s0, s1, y + 32 * j);
      }
    }
  }
}

// BF16: the 16 bits are a float's upper half.
CANDOR_AVX2 void v_dequant_bf16(const uint8_t* p, int64_t n, float* y) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i v =
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i)));
    _mm256_storeu_ps(y + i, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
  }
  for (; i < n; ++i) {
    const uint32_t bits = static_cast<uint32_t>(p[2 * i] | (p[2 * i + 1] << 8)) << 16;
    std::memcpy(&y[i], &bits, 4);
  }
}

// F16 through the F16C conversion (exact, as every half is a float).
__attribute__((target("avx2,fma,f16c"))) void v_dequant_f16(const uint8_t* p, int64_t n,
                                                             float* y) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i))));
  for (; i < n; ++i) y[i] = half_to_float(p + 2 * i);
}

bool cpu_has_f16c() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("f16c");
}

bool cpu_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif  // CANDOR_VEC_X86

const Kernels* detect() {
#ifdef CANDOR_VEC_X86
  static const bool has = cpu_has_avx2();
  return has ? &kAvx2 : nullptr;
#else
  return nullptr;
#endif
}

std::atomic<const Kernels*>& active() {
  static std::atomic<const Kernels*> k{detect() ? detect() : &kScalar};
  return k;
}

}  // namespace

const Kernels& scalar_kernels() { return kScalar; }
const Kernels* avx2_kernels() { return detect(); }
const Kernels& kernels() { return *active().load(std::memory_order_relaxed); }

bool dequantize_blocks(uint32_t type, const uint8_t* p, int64_t n, float* y) {
#ifdef CANDOR_VEC_X86
  if (&kernels() != &kAvx2) return false;
  static const bool f16c = cpu_has_f16c();
  void (*expand)(const uint8_t*, int64_t, float*) = nullptr;
  switch (type) {  // GGML type ids
    case 8: expand = v_dequant_q8_0; break;
    case 12: expand = v_dequant_q4_k; break;
    case 14: expand = v_dequant_q6_k; break;
    case 2: expand = v_dequant_q4_0; break;
    case 30: expand = v_dequant_bf16; break;
    case 1: expand = f16c ? v_dequant_f16 : nullptr; break;
    default: break;
  }
  if (expand) {
    expand(p, n, y);
    return true;
  }
#else
  (void)type;
  (void)p;
  (void)n;
  (void)y;
#endif
  return false;
}

float* pass_arena(int which, int64_t n, std::unique_ptr<float[]>* own) {
  if (n > kKeptArenaFloats) {
    own->reset(new float[static_cast<size_t>(n)]);
    return own->get();
  }
  thread_local std::unique_ptr<float[]> kept[2];
  thread_local int64_t size[2] = {0, 0};
  const int w = which != 0;
  if (size[w] < n) {
    kept[w].reset(new float[static_cast<size_t>(n)]);
    size[w] = n;
  }
  return kept[w].get();
}

bool gemm_nt_stream(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                    const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
#ifdef CANDOR_VEC_X86
  if (&kernels() != detect() || detect() == nullptr) return false;
  v_gemm_nt_stream(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  return true;
#else
  (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda, (void)B, (void)ldb, (void)beta;
  (void)C, (void)ldc;
  return false;
#endif
}

void attn_scores_t(const float* q, const float* Kt, int64_t ldk, int64_t n, int64_t hd,
                   float scale, float* s) {
#ifdef CANDOR_VEC_X86
  if (&kernels() != &kScalar) return v_attn_scores_t(q, Kt, ldk, n, hd, scale, s);
#endif
  for (int64_t j = 0; j < n; ++j) {
    float a = 0;
    for (int64_t d = 0; d < hd; ++d) a += q[d] * Kt[d * ldk + j];
    s[j] = scale * a;
  }
}

void attn_softmax_mix(float* s, int64_t n, const float* V, int64_t ldv, int64_t hd, float* out) {
#ifdef CANDOR_VEC_X86
  if (&kernels() != &kScalar) return v_attn_softmax_mix(s, n, V, ldv, hd, out);
#endif
  s_softmax(s, n);
  attn_mix(s, V, ldv, n, hd, out);
}

void attn_mix(const float* p, const float* V, int64_t ldv, int64_t n, int64_t hd, float* out) {
#ifdef CANDOR_VEC_X86
  if (&kernels() != &kScalar) return v_attn_mix(p, V, ldv, n, hd, out);
#endif
  for (int64_t c = 0; c < hd; ++c) {
    float a = 0;
    for (int64_t j = 0; j < n; ++j) a += p[j] * V[j * ldv + c];
    out[c] = a;
  }
}

bool set_simd(bool on) {
  const Kernels* k = on && detect() ? detect() : &kScalar;
  active().store(k, std::memory_order_relaxed);
  return k != &kScalar;
}

}  // namespace candor::fused::vec
