// The fused path's vector kernels (src/models/fused/vec.h) against their scalar versions, on odd
// sizes (vector bodies with every length of scalar tail), within float rounding; the scalar
// versions against plain double-precision formulas; and the small products against a
// triple loop in double, with strides, both betas and sizes that are not multiples of 8.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "models/formats/gguf.h"
#include "models/fused/gemm.h"
#include "models/fused/vec.h"

namespace candor::fused {
namespace {

const int64_t kSizes[] = {1, 2, 7, 8, 9, 15, 16, 17, 33, 64, 100, 260, 1000};

std::vector<float> random_vector(int64_t n, uint32_t seed, float lo = -3.0f, float hi = 3.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = u(rng);
  return v;
}

// |a - b| <= rel * max(|b|, scale) elementwise.
void expect_close(const std::vector<float>& a, const std::vector<float>& b, double rel,
                  double scale, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    const double tol = rel * std::max<double>(std::fabs(b[i]), scale);
    ASSERT_LE(std::fabs(static_cast<double>(a[i]) - b[i]), tol)
        << what << " at " << i << " of " << a.size() << ": " << a[i] << " vs " << b[i];
  }
}

class VecKernels : public ::testing::Test {
 protected:
  void SetUp() override {
    v_ = vec::avx2_kernels();
    if (!v_) GTEST_SKIP() << "this CPU has no AVX2 + FMA: only the scalar kernels run here";
  }
  const vec::Kernels& s_ = vec::scalar_kernels();
  const vec::Kernels* v_ = nullptr;
};

TEST_F(VecKernels, ReductionsEqualScalar) {
  for (int64_t n : kSizes) {
    SCOPED_TRACE(n);
    const auto a = random_vector(n, 1), b = random_vector(n, 2), c = random_vector(n, 3);
    double ref = 0, abs_sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      ref += static_cast<double>(a[i]) * b[i];
      abs_sum += std::fabs(static_cast<double>(a[i]) * b[i]);
    }
    const double eps = std::numeric_limits<float>::epsilon();
    EXPECT_NEAR(v_->dot(a.data(), b.data(), n), ref, 2 * n * eps * abs_sum + 1e-30);
    EXPECT_NEAR(s_.dot(a.data(), b.data(), n), ref, 2 * n * eps * abs_sum + 1e-30);
    // Double accumulations: the same to double rounding.
    const double ss = s_.sum_squares(a.data(), n);
    EXPECT_NEAR(v_->sum_squares(a.data(), n), ss, 1e-12 * ss);
    const double g = s_.rms_grad_dot(a.data(), b.data(), c.data(), n);
    EXPECT_NEAR(v_->rms_grad_dot(a.data(), b.data(), c.data(), n), g, 1e-12 * (std::fabs(g) + n));
  }
}

TEST_F(VecKernels, ElementwiseEqualScalar) {
  for (int64_t n : kSizes) {
    SCOPED_TRACE(n);
    const auto x = random_vector(n, 4), w = random_vector(n, 5), dy = random_vector(n, 6);
    std::vector<float> ys = random_vector(n, 7), yv = ys;
    s_.add(n, x.data(), ys.data());
    v_->add(n, x.data(), yv.data());
    EXPECT_EQ(ys, yv);  // one rounding each: identical
    std::vector<float> os(x.size()), ov(x.size());
    s_.scale_mul(n, x.data(), 0.37f, w.data(), os.data());
    v_->scale_mul(n, x.data(), 0.37f, w.data(), ov.data());
    EXPECT_EQ(os, ov);  // (x r) w in both
    ys = random_vector(n, 8);
    yv = ys;
    s_.rms_grad_apply(n, 0.8f, dy.data(), w.data(), -0.3f, x.data(), ys.data());
    v_->rms_grad_apply(n, 0.8f, dy.data(), w.data(), -0.3f, x.data(), yv.data());
    expect_close(yv, ys, 4e-7, 10.0, "rms_grad_apply");
  }
}

TEST_F(VecKernels, RotationsEqualScalarAndUndoEachOther) {
  for (int64_t hd : {2, 4, 6, 8, 10, 16, 18, 64, 128, 130}) {
    SCOPED_TRACE(hd);
    const auto src = random_vector(hd, 9);
    std::vector<float> table(static_cast<size_t>(hd));
    for (int64_t j = 0; j < hd / 2; ++j) {
      const double angle = 0.37 * static_cast<double>(j + 1);
      table[2 * j] = static_cast<float>(std::cos(angle));
      table[2 * j + 1] = static_cast<float>(std::sin(angle));
    }
    std::vector<float> rs(src.size()), rv(src.size()), back(src.size());
    s_.rotate(src.data(), rs.data(), table.data(), hd);
    v_->rotate(src.data(), rv.data(), table.data(), hd);
    expect_close(rv, rs, 1e-6, 3.0, "rotate");
    // Against the complex product in double.
    for (int64_t j = 0; j < hd / 2; ++j) {
      const double a = src[2 * j], b = src[2 * j + 1], co = table[2 * j], si = table[2 * j + 1];
      EXPECT_NEAR(rv[2 * j], a * co - b * si, 1e-5);
      EXPECT_NEAR(rv[2 * j + 1], a * si + b * co, 1e-5);
    }
    std::vector<float> us(src.size());
    s_.unrotate(rv.data(), us.data(), table.data(), hd);
    v_->unrotate(rv.data(), back.data(), table.data(), hd);
    expect_close(back, us, 1e-6, 3.0, "unrotate");
    expect_close(back, src, 1e-5, 3.0, "unrotate(rotate(x)) = x");
  }
}

TEST_F(VecKernels, SoftmaxEqualsScalarWithMaskedEntries) {
  for (int64_t n : kSizes) {
    SCOPED_TRACE(n);
    std::vector<float> s = random_vector(n, 10, -20.0f, 20.0f);
    if (n > 2) s[1] = -std::numeric_limits<float>::infinity();  // a masked key
    if (n > 9) s[n - 2] = -std::numeric_limits<float>::infinity();
    std::vector<float> ps = s, pv = s;
    s_.softmax(ps.data(), n);
    v_->softmax(pv.data(), n);
    expect_close(pv, ps, 1e-6, 1e-30, "softmax");
    double total = 0;
    for (float p : pv) total += p;
    EXPECT_NEAR(total, 1.0, 1e-5);
    if (n > 2) EXPECT_EQ(pv[1], 0.0f);
    // Against exp in double.
    const double mx = *std::max_element(s.begin(), s.end());
    double z = 0;
    for (float x : s) z += std::exp(static_cast<double>(x) - mx);
    // (s - max is rounded to float first: a relative error of up to |s - max| ulp.)
    for (int64_t i = 0; i < n; ++i) {
      if (std::isinf(s[i])) {
        EXPECT_EQ(pv[i], 0.0f);
        continue;
      }
      const double x = static_cast<double>(s[i]) - mx;
      EXPECT_NEAR(pv[i], std::exp(x) / z, (2e-6 + 1.2e-7 * std::fabs(x)) * pv[i] + 1e-38);
    }

    std::vector<float> d = random_vector(n, 11), ds = d, dv = d;
    s_.softmax_backward(pv.data(), ds.data(), n);
    v_->softmax_backward(pv.data(), dv.data(), n);
    expect_close(dv, ds, 1e-6, 1e-6, "softmax_backward");
  }
}

TEST_F(VecKernels, SwiGLUAndItsBackwardEqualScalar) {
  for (int64_t n : kSizes) {
    SCOPED_TRACE(n);
    std::vector<float> g = random_vector(n, 12, -12.0f, 12.0f), u = random_vector(n, 13);
    if (n > 3) {  // beyond the exponential's range either way
      g[0] = -95.0f;
      g[2] = 95.0f;
    }
    std::vector<float> gs = g, gv = g;
    s_.swiglu(n, gs.data(), u.data());
    v_->swiglu(n, gv.data(), u.data());
    expect_close(gv, gs, 1e-6, 1e-6, "swiglu");
    for (int64_t i = 0; i < n; ++i) {
      const double x = g[i];
      EXPECT_NEAR(gv[i], x / (1 + std::exp(-x)) * u[i], 1e-6 * std::fabs(x * u[i]) + 1e-30);
    }
    const auto da = random_vector(n, 14);
    std::vector<float> dgs(g.size()), dus(g.size()), dgv(g.size()), duv(g.size());
    s_.swiglu_backward(n, da.data(), g.data(), u.data(), dgs.data(), dus.data());
    v_->swiglu_backward(n, da.data(), g.data(), u.data(), dgv.data(), duv.data());
    // dg = da u s (1 + g (1 - s)) cancels near g = -1.28: bounded by its terms' magnitude.
    for (int64_t i = 0; i < n; ++i) {
      const double x = g[i], s = 1 / (1 + std::exp(-x));
      const double terms = std::fabs(da[i] * u[i] * s) * (1 + std::fabs(x * (1 - s)));
      EXPECT_NEAR(dgv[i], dgs[i], 1e-6 * terms + 1e-30) << "dg at " << i;
    }
    expect_close(duv, dus, 2e-6, 1e-5, "swiglu_backward du");
  }
}

// The three small products against a triple loop in double.
TEST_F(VecKernels, SmallProductsEqualATripleLoop) {
  const int64_t shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {32, 40, 8}, {7, 9, 16}, {17, 8, 33},
                               {32, 128, 8}, {5, 17, 24}, {1, 100, 8}, {9, 3, 64}};
  uint32_t seed = 20;
  for (const auto& sh : shapes) {
    const int64_t M = sh[0], N = sh[1], K = sh[2];
    for (const vec::Kernels* k : {&s_, v_}) {
      for (float beta : {0.0f, 1.0f, 0.5f}) {
        for (int form = 0; form < 3; ++form) {
          SCOPED_TRACE(std::string(k->name) + " form " + std::to_string(form) + " M=" +
                       std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K) +
                       " beta=" + std::to_string(beta));
          // Strides wider than the rows, so a kernel reading past its row would show.
          const int64_t lda = (form == 2 ? M : K) + 3, ldb = (form == 0 ? K : N) + 2, ldc = N + 5;
          const auto A = random_vector((form == 2 ? K : M) * lda, ++seed);
          const auto B = random_vector((form == 0 ? N : K) * ldb, ++seed);
          std::vector<float> C = random_vector(M * ldc, ++seed);
          if (beta == 0.0f) std::fill(C.begin(), C.end(), std::numeric_limits<float>::quiet_NaN());
          const std::vector<float> C0 = C;
          const float alpha = 0.75f;
          auto a = [&](int64_t i, int64_t kk) { return form == 2 ? A[kk * lda + i] : A[i * lda + kk]; };
          auto b = [&](int64_t kk, int64_t j) { return form == 0 ? B[j * ldb + kk] : B[kk * ldb + j]; };
          if (form == 0) k->gemm_nt(M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
          if (form == 1) k->gemm_nn(M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
          if (form == 2) k->gemm_tn(M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
          for (int64_t i = 0; i < M; ++i) {
            for (int64_t j = 0; j < N; ++j) {
              double ref = 0, mag = 0;
              for (int64_t kk = 0; kk < K; ++kk) {
                ref += static_cast<double>(a(i, kk)) * b(kk, j);
                mag += std::fabs(static_cast<double>(a(i, kk)) * b(kk, j));
              }
              ref *= alpha;
              if (beta != 0.0f) ref += beta * static_cast<double>(C0[i * ldc + j]);
              ASSERT_NEAR(C[i * ldc + j], ref, 1e-6 * (K * mag + 10)) << i << ", " << j;
            }
            for (int64_t j = N; j < ldc; ++j) {  // the padding of each row is left alone
              if (beta == 0.0f) {
                ASSERT_TRUE(std::isnan(C[i * ldc + j]));
              } else {
                ASSERT_EQ(C[i * ldc + j], C0[i * ldc + j]);
              }
            }
          }
        }
      }
    }
  }
}

// The vector expansion of Q8_0 and Q4_K blocks gives the GGUF reader's values to the bit, on
// random blocks whose f16 scales include zero, subnormal, negative and large ones.
TEST_F(VecKernels, DequantizedBlocksEqualTheReadersBitForBit) {
  std::mt19937 rng(40);
  auto half = [&](int i) -> uint16_t {
    switch (i % 5) {
      case 0: return 0;                                                     // zero
      case 1: return static_cast<uint16_t>(1 + rng() % 1023);              // subnormal
      case 2: return static_cast<uint16_t>(0x8000 | (14 << 10) | (rng() % 1024));  // negative
      case 3: return static_cast<uint16_t>((25 << 10) | (rng() % 1024));   // large
      default: return static_cast<uint16_t>(((8 + rng() % 10) << 10) | (rng() % 1024));
    }
  };
  struct Case { uint32_t type; int64_t block_values, block_bytes, scales; };
  for (const Case c : {Case{8, 32, 34, 1}, Case{12, 256, 144, 2}}) {
    for (int64_t blocks : {1, 3, 17}) {
      SCOPED_TRACE(std::to_string(c.type) + " x " + std::to_string(blocks));
      std::vector<uint8_t> data(static_cast<size_t>(blocks * c.block_bytes));
      for (uint8_t& b : data) b = static_cast<uint8_t>(rng());
      for (int64_t b = 0; b < blocks; ++b) {
        for (int64_t k = 0; k < c.scales; ++k) {
          const uint16_t h = half(static_cast<int>(b * c.scales + k));
          data[b * c.block_bytes + 2 * k] = static_cast<uint8_t>(h & 0xFF);
          data[b * c.block_bytes + 2 * k + 1] = static_cast<uint8_t>(h >> 8);
        }
      }
      const int64_t n = blocks * c.block_values;
      std::vector<float> ref(static_cast<size_t>(n)), mine(static_cast<size_t>(n), -1.0f);
      dequantize_ggml(c.type, data.data(), n, ref.data());
      ASSERT_TRUE(vec::dequantize_blocks(c.type, data.data(), n, mine.data()));
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(mine[i], ref[i]) << i;
    }
  }
  float out = 0;
  EXPECT_FALSE(vec::dequantize_blocks(0, nullptr, 0, &out));  // F32: the reader's copy
  vec::set_simd(false);
  std::vector<uint8_t> block(34, 0);
  EXPECT_FALSE(vec::dequantize_blocks(8, block.data(), 32, &out));  // scalar kernels in use
  vec::set_simd(true);
}

// LayerNorm and its backward, vector against scalar, with and without a bias, on rows centred
// at 0 and rows far from it (where the mean matters); and the backward's invariants: its sum
// over the row is 0, and so is its dot product with xhat (up to eps).
TEST_F(VecKernels, LayerNormAndItsBackwardEqualScalar) {
  for (int64_t n : kSizes) {
    for (const float offset : {0.0f, 40.0f}) {
      SCOPED_TRACE(std::to_string(n) + " offset " + std::to_string(offset));
      auto x = random_vector(n, 60, -3.0f + offset, 3.0f + offset);
      const auto w = random_vector(n, 61, 0.5f, 1.5f), b = random_vector(n, 62);
      const auto dy = random_vector(n, 63);
      const double eps = 1e-5;
      for (const float* bias : {static_cast<const float*>(nullptr), b.data()}) {
        std::vector<float> os(n), ov(n, -7.0f);
        s_.layer_norm(n, x.data(), eps, w.data(), bias, os.data());
        v_->layer_norm(n, x.data(), eps, w.data(), bias, ov.data());
        expect_close(ov, os, 2e-6, 1e-3, "layer_norm");
      }
      // The scalar forward against the formula in double.
      {
        double mean = 0, var = 0;
        for (float xi : x) mean += xi;
        mean /= static_cast<double>(n);
        for (float xi : x) var += (xi - mean) * (xi - mean);
        const double r = 1.0 / std::sqrt(var / static_cast<double>(n) + eps);
        std::vector<float> os(n), ref(n);
        s_.layer_norm(n, x.data(), eps, w.data(), b.data(), os.data());
        for (int64_t i = 0; i < n; ++i)
          ref[i] = static_cast<float>((x[i] - mean) * r * w[i] + b[i]);
        // x - m in float: an error of up to ulp(|m|) / 2, times r w.
        expect_close(os, ref, 1e-5, 1e-2 + 0.01 * offset, "scalar layer_norm vs double");
      }
      const auto start = random_vector(n, 64);  // the backward adds to what is there
      std::vector<float> gs = start, gv = start;
      s_.layer_norm_backward(n, x.data(), dy.data(), w.data(), eps, gs.data());
      v_->layer_norm_backward(n, x.data(), dy.data(), w.data(), eps, gv.data());
      double scale = 0;
      for (int64_t i = 0; i < n; ++i) scale = std::max(scale, std::fabs(double(gs[i]) - start[i]));
      expect_close(gv, gs, 1e-5, std::max(scale, 1e-3), "layer_norm_backward");
      if (n >= 2) {
        double sum = 0, dot = 0, mean = 0;
        for (float xi : x) mean += xi;
        mean /= static_cast<double>(n);
        for (int64_t i = 0; i < n; ++i) {
          const double d = double(gv[i]) - start[i];
          sum += d;
          dot += d * (x[i] - mean);
        }
        EXPECT_LE(std::fabs(sum), 1e-4 * std::max(1.0, scale) * n) << "sum of dx";
        EXPECT_LE(std::fabs(dot), 1e-3 * std::max(1.0, scale) * n) << "dx . (x - mean)";
      }
    }
  }
}

// GELU (tanh form) and its backward: vector against scalar and both against the formula in
// double, over [-8, 8] and a few far and special values. The scalar forward's 1 + tanh(u)
// loses digits where tanh u is near -1 (an absolute error of about |x| ulp(1) / 2), the
// vector's x sigmoid(2u) does not: the tolerance against the scalar allows for that.
TEST_F(VecKernels, GeluTanhAndItsBackwardEqualScalar) {
  // In double, with 0.5 (1 + tanh u) written as sigmoid(2u) (no cancellation in the tail).
  const double k = 0.7978845608028654, c = 0.044715;
  const auto sig = [&](double v) { return 1 / (1 + std::exp(-2 * k * (v + c * v * v * v))); };
  const auto ref = [&](double v) { return v * sig(v); };
  const auto dref = [&](double v) {
    const double s = sig(v);  // 0.5 (1 + th), and 1 - th^2 = 4 s (1 - s)
    return s + 2 * v * s * (1 - s) * k * (1 + 3 * c * v * v);
  };
  for (int64_t n : kSizes) {
    SCOPED_TRACE(n);
    auto x = random_vector(n, 70, -8.0f, 8.0f);
    const float special[] = {0.0f, -0.0f, 1e-20f, -1e-20f, 30.0f, -30.0f, 1e4f, -1e4f, -0.7522f};
    for (int64_t i = 0; i < n && i < 9; ++i) x[static_cast<size_t>(i * 7 % n)] = special[i];
    const auto da = random_vector(n, 71);
    std::vector<float> fs = x, fv = x;
    s_.gelu_tanh(n, fs.data());
    v_->gelu_tanh(n, fv.data());
    std::vector<float> bs(n), bv(n, -7.0f);
    s_.gelu_tanh_backward(n, da.data(), x.data(), bs.data());
    v_->gelu_tanh_backward(n, da.data(), x.data(), bv.data());
    for (int64_t i = 0; i < n; ++i) {
      const double r = ref(x[i]), ax = std::fabs(x[i]);
      // The vector's relative error grows as |2u| ulp in the far negative tail (exp's argument).
      ASSERT_LE(std::fabs(fv[i] - r), 2e-5 * std::fabs(r) + 1e-30) << "vector gelu at " << x[i];
      ASSERT_LE(std::fabs(fs[i] - r), 4e-6 * std::fabs(r) + 1e-7 * ax) << "scalar gelu at " << x[i];
      ASSERT_LE(std::fabs(fv[i] - fs[i]), 4e-6 * std::fabs(fs[i]) + 1e-7 * ax)
          << "gelu at " << x[i];
      const double dr = da[i] * dref(x[i]);
      ASSERT_LE(std::fabs(bs[i] - dr), 1e-6 * std::fabs(dr) + 1e-12 * std::fabs(da[i]))
          << "scalar backward at " << x[i];
      ASSERT_LE(std::fabs(bv[i] - dr), 1e-5 * std::fabs(dr) + 1e-7 * std::fabs(da[i]))
          << "vector backward at " << x[i];
    }
  }
}

// GELU (erf form) and its backward: vector against scalar and against erfc in double, over
// [-14, 14] and special values. The vector computes Phi(x) as 0.5 erfc(-x / sqrt 2), keeping
// relative precision in the negative tail, where its error grows as x^2 ulp (exp's argument);
// the scalar's 1 + erf loses digits there (an absolute error of about |x| ulp(1) / 2).
TEST_F(VecKernels, GeluErfAndItsBackwardEqualScalar) {
  const auto phi = [](double v) { return 0.5 * std::erfc(-v / std::sqrt(2.0)); };
  for (int64_t n : kSizes) {
    SCOPED_TRACE(n);
    auto x = random_vector(n, 72, -14.0f, 14.0f);
    const float special[] = {0.0f, -0.0f, 1e-20f, -1e-20f, 30.0f, -30.0f, 1e4f, -1e4f, 1.4142135f};
    for (int64_t i = 0; i < n && i < 9; ++i) x[static_cast<size_t>(i * 7 % n)] = special[i];
    const auto da = random_vector(n, 73);
    std::vector<float> fs = x, fv = x;
    s_.gelu_erf(n, fs.data());
    v_->gelu_erf(n, fv.data());
    std::vector<float> bs(n), bv(n, -7.0f);
    s_.gelu_erf_backward(n, da.data(), x.data(), bs.data());
    v_->gelu_erf_backward(n, da.data(), x.data(), bv.data());
    for (int64_t i = 0; i < n; ++i) {
      const double v = x[i], r = v * phi(v), ax = std::fabs(v);
      const double a2 = std::min(v * v, 200.0);
      ASSERT_LE(std::fabs(fv[i] - r), 2e-6 * (1 + a2) * std::fabs(r) + 1e-37) << "vector gelu at " << v;
      ASSERT_LE(std::fabs(fs[i] - r), 4e-6 * std::fabs(r) + 1e-7 * ax) << "scalar gelu at " << v;
      ASSERT_LE(std::fabs(fv[i] - fs[i]), 4e-6 * std::fabs(fs[i]) + 1e-7 * ax) << "gelu at " << v;
      const double dr = da[i] * (phi(v) + v * std::exp(-0.5 * v * v) / std::sqrt(2 * M_PI));
      ASSERT_LE(std::fabs(bs[i] - dr), 1e-6 * std::fabs(dr) + 1e-12 * std::fabs(da[i]))
          << "scalar backward at " << v;
      ASSERT_LE(std::fabs(bv[i] - dr), 4e-6 * std::fabs(dr) + 2e-7 * std::fabs(da[i]))
          << "vector backward at " << v;
    }
  }
}

// The vector expansion of Q6_K and Q4_0 blocks gives the GGUF reader's values to the bit, on
// 1, 2, 3 and 17 random blocks whose f16 scales include zero, subnormal, negative and large
// ones (Q6_K's int8 sub-block scales random, negative among them).
TEST_F(VecKernels, Q6KAndQ4_0BlocksEqualTheReadersBitForBit) {
  std::mt19937 rng(41);
  const uint16_t halves[] = {0, 0x0001, 0x03FF, 0x8000 | (14 << 10) | 123, (25 << 10) | 999,
                             (15 << 10), (9 << 10) | 77};
  // type, values and bytes per block, where the block's f16 scale is.
  struct Case { uint32_t type; int64_t block_values, block_bytes, half_at; };
  for (const Case c : {Case{14, 256, 210, 208}, Case{2, 32, 18, 0}}) {
    for (int64_t blocks : {1, 2, 3, 17}) {
      SCOPED_TRACE(std::to_string(c.type) + " x " + std::to_string(blocks));
      std::vector<uint8_t> data(static_cast<size_t>(blocks * c.block_bytes));
      for (uint8_t& b : data) b = static_cast<uint8_t>(rng());
      for (int64_t b = 0; b < blocks; ++b) {
        const uint16_t h = halves[(b + blocks) % 7];
        data[b * c.block_bytes + c.half_at] = static_cast<uint8_t>(h & 0xFF);
        data[b * c.block_bytes + c.half_at + 1] = static_cast<uint8_t>(h >> 8);
      }
      const int64_t n = blocks * c.block_values;
      std::vector<float> ref(static_cast<size_t>(n)), mine(static_cast<size_t>(n), -1.0f);
      dequantize_ggml(c.type, data.data(), n, ref.data());
      ASSERT_TRUE(vec::dequantize_blocks(c.type, data.data(), n, mine.data()));
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(mine[i], ref[i]) << i;
    }
  }
}

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// F16 and BF16: every one of the 65536 bit patterns (zeros, subnormals, infinities and NaNs
// among them) to the reader's bits, then lengths 1..40 (every tail after the vector body) at
// odd offsets.
TEST_F(VecKernels, F16AndBf16EqualTheReadersBitForBit) {
  std::vector<uint8_t> all(2 * 65536);
  for (uint32_t h = 0; h < 65536; ++h) {
    all[2 * h] = static_cast<uint8_t>(h & 0xFF);
    all[2 * h + 1] = static_cast<uint8_t>(h >> 8);
  }
  for (uint32_t type : {1u, 30u}) {
    SCOPED_TRACE(type);
    std::vector<float> ref(65536), mine(65536, -1.0f);
    dequantize_ggml(type, all.data(), 65536, ref.data());
    ASSERT_TRUE(vec::dequantize_blocks(type, all.data(), 65536, mine.data()))
        << "no vector expansion (F16 needs the CPU's F16C)";
    for (uint32_t h = 0; h < 65536; ++h) ASSERT_EQ(bits_of(mine[h]), bits_of(ref[h])) << h;
    for (int64_t n = 1; n <= 40; ++n) {
      const uint8_t* p = all.data() + 2 * (977 * n % 60000);
      std::vector<float> r(n), m(n + 1, -1.0f);
      dequantize_ggml(type, p, n, r.data());
      ASSERT_TRUE(vec::dequantize_blocks(type, p, n, m.data()));
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(bits_of(m[i]), bits_of(r[i])) << n << " " << i;
      EXPECT_EQ(m[n], -1.0f) << "wrote past the end at n = " << n;
    }
  }
}

// set_simd switches what kernels() returns, and the BLAS entry points agree either way on a
// product small enough to take the vector path.
TEST_F(VecKernels, SwitchingOffGivesTheScalarKernels) {
  EXPECT_FALSE(vec::set_simd(false));
  EXPECT_EQ(std::string(vec::kernels().name), "scalar");
  // Turned off, gemm_nt goes through BLAS.
  if (!gemm_available()) {
    vec::set_simd(true);
    GTEST_SKIP() << "no BLAS sgemm in this process (libtorch not loaded)";
  }
  const int64_t M = 16, N = 24, K = 8;
  const auto A = random_vector(M * K, 30), B = random_vector(N * K, 31);
  std::vector<float> blas(M * N), mine(M * N);
  gemm_nt(M, N, K, 1.0f, A.data(), K, B.data(), K, 0.0f, blas.data(), N);
  EXPECT_TRUE(vec::set_simd(true));
  EXPECT_EQ(std::string(vec::kernels().name), "avx2");
  gemm_nt(M, N, K, 1.0f, A.data(), K, B.data(), K, 0.0f, mine.data(), N);
  expect_close(mine, blas, 1e-5, 1.0, "small gemm_nt vs BLAS");
}

// The streamed product (gemm_nt_stream: tiles of 3 x 4 with K-long accumulators, remainders of
// rows, columns and K) against a double-precision triple loop, with padded strides.
TEST_F(VecKernels, StreamedProductEqualsATripleLoop) {
  const int64_t shapes[][3] = {{1, 4, 32},  {1, 5, 260}, {2, 9, 300}, {3, 8, 256},
                               {4, 13, 17}, {7, 6, 771}, {32, 20, 768}, {48, 7, 263}};
  uint32_t seed = 70;
  for (const auto& sh : shapes) {
    const int64_t M = sh[0], N = sh[1], K = sh[2];
    for (float beta : {0.0f, 1.0f}) {
      SCOPED_TRACE("M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" +
                   std::to_string(K) + " beta=" + std::to_string(beta));
      const int64_t lda = K + 3, ldb = K + 1, ldc = N + 5;
      const auto A = random_vector(M * lda, ++seed), B = random_vector(N * ldb, ++seed);
      std::vector<float> C = random_vector(M * ldc, ++seed);
      if (beta == 0.0f) std::fill(C.begin(), C.end(), std::numeric_limits<float>::quiet_NaN());
      const std::vector<float> C0 = C;
      ASSERT_TRUE(vec::gemm_nt_stream(M, N, K, 0.5f, A.data(), lda, B.data(), ldb, beta,
                                      C.data(), ldc));
      for (int64_t i = 0; i < M; ++i) {
        for (int64_t j = 0; j < N; ++j) {
          double ref = 0, mag = 0;
          for (int64_t kk = 0; kk < K; ++kk) {
            ref += static_cast<double>(A[i * lda + kk]) * B[j * ldb + kk];
            mag += std::fabs(static_cast<double>(A[i * lda + kk]) * B[j * ldb + kk]);
          }
          ref *= 0.5;
          if (beta != 0.0f) ref += C0[i * ldc + j];
          ASSERT_NEAR(C[i * ldc + j], ref, 1e-6 * (mag + 10)) << i << ", " << j;
        }
        for (int64_t j = N; j < ldc; ++j) {  // the padding of each row is left alone
          if (beta == 0.0f) {
            ASSERT_TRUE(std::isnan(C[i * ldc + j]));
          } else {
            ASSERT_EQ(C[i * ldc + j], C0[i * ldc + j]);
          }
        }
      }
    }
  }
  vec::set_simd(false);  // the scalar kernels in use: the caller is told to use BLAS
  float c = 0;
  const float one = 1;
  EXPECT_FALSE(vec::gemm_nt_stream(1, 1, 1, 1.0f, &one, 1, &one, 1, 0.0f, &c, 1));
  vec::set_simd(true);
}

// One query row's attention (attn_scores_t, then attn_softmax_mix) against softmax(q·k) v in
// double, for head sizes 1 to 32 and key counts across the vector blocks, with a masked key;
// and the vector and scalar versions against each other.
TEST_F(VecKernels, AttentionRowEqualsSoftmaxOfScores) {
  uint32_t seed = 90;
  for (int64_t hd : {1, 4, 8, 12, 16, 32}) {
    for (int64_t n : {1, 2, 7, 8, 9, 31, 32, 33, 64, 100}) {
      for (bool simd : {true, false}) {
        SCOPED_TRACE("hd=" + std::to_string(hd) + " n=" + std::to_string(n) +
                     (simd ? " avx2" : " scalar"));
        vec::set_simd(simd);
        const int64_t S = n + 5, S8 = (S + 7) / 8 * 8;  // keys stored beyond n, as in a pass
        const auto q = random_vector(hd, ++seed), V = random_vector(S * hd, ++seed);
        auto Kt = random_vector(hd * S8, ++seed);
        std::vector<float> s(static_cast<size_t>(S8), 0.0f), out(static_cast<size_t>(hd));
        const float scale = 0.3f;
        vec::attn_scores_t(q.data(), Kt.data(), S8, n, hd, scale, s.data());
        const bool masked = n > 2;
        if (masked) s[1] = -std::numeric_limits<float>::infinity();
        vec::attn_softmax_mix(s.data(), n, V.data(), hd, hd, out.data());
        std::vector<double> p(static_cast<size_t>(n));
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j < n; ++j) {
          double a = 0;
          for (int64_t d = 0; d < hd; ++d) a += static_cast<double>(q[d]) * Kt[d * S8 + j];
          p[j] = masked && j == 1 ? -1e300 : scale * a;
          mx = std::max(mx, p[j]);
        }
        for (int64_t j = 0; j < n; ++j) sum += p[j] = masked && j == 1 ? 0.0 : std::exp(p[j] - mx);
        for (int64_t c = 0; c < hd; ++c) {
          double ref = 0;
          for (int64_t j = 0; j < n; ++j) ref += p[j] / sum * V[j * hd + c];
          ASSERT_NEAR(out[c], ref, 2e-6 * 3.0 + 1e-6 * std::fabs(ref)) << c;
        }
      }
    }
  }
  vec::set_simd(true);
}

}  // namespace
}  // namespace candor::fused
