// sgemm through the BLAS that libtorch loaded (resolved once with dlsym: candor does not link a
// BLAS itself, so it uses the very library, and kernels, that libtorch's matmuls use).
#include "models/fused/gemm.h"

#include <dlfcn.h>

#include "candor/error.h"
#include "models/fused/vec.h"
#include "models/fused/pool.h"

namespace candor::fused {
namespace {

// Fortran BLAS: column-major, arguments by pointer.
using SgemmFn = void (*)(const char*, const char*, const int*, const int*, const int*, const float*,
                         const float*, const int*, const float*, const int*, const float*, float*,
                         const int*);

SgemmFn resolve_sgemm() {
  static const SgemmFn fn = reinterpret_cast<SgemmFn>(dlsym(RTLD_DEFAULT, "sgemm_"));
  return fn;
}

// Columns (or rows) of C per block of a split: a multiple of sgemm's register tiles.
constexpr int64_t kColumnGrain = 64;
constexpr int64_t kRowGrain = 16;

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands.
void gemm_rowmajor(char ta, char tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                   int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  SgemmFn fn = resolve_sgemm();
  if (!fn) {
    throw Error(ErrorCode::kInternal, "no BLAS sgemm in the process",
                "install libopenblas0-pthread (libtorch loads it)");
  }
  // On the pass's threads (pool.h): each thread multiplies a block of C's columns (its slice of
  // B), or of C's rows when C is taller than wide. Every element of C is still one dot product
  // over all of K; OpenBLAS's kernels round a block a few ulps differently from the whole.
  if (worth_splitting(static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K))) {
    if (N >= M && N >= 2 * kColumnGrain) {
      parallel_for(N, kColumnGrain, [&](int64_t j0, int64_t j1, int) {
        const float* Bj = tb == 'N' ? B + j0 : B + j0 * ldb;
        gemm_rowmajor(ta, tb, M, j1 - j0, K, alpha, A, lda, Bj, ldb, beta, C + j0, ldc);
      });
      return;
    }
    if (M >= 2 * kRowGrain) {
      parallel_for(M, kRowGrain, [&](int64_t i0, int64_t i1, int) {
        const float* Ai = ta == 'N' ? A + i0 * lda : A + i0;
        gemm_rowmajor(ta, tb, i1 - i0, N, K, alpha, Ai, lda, B, ldb, beta, C + i0 * ldc, ldc);
      });
      return;
    }
  }
  const int m = static_cast<int>(N), n = static_cast<int>(M), k = static_cast<int>(K);
  const int la = static_cast<int>(lda), lb = static_cast<int>(ldb), lc = static_cast<int>(ldc);
  fn(&tb, &ta, &m, &n, &k, &alpha, B, &lb, A, &la, &beta, C, &lc);
}

// The vector kernels to use for a product this small (vec::kSmallProduct), or null: BLAS.
const vec::Kernels* small(int64_t M, int64_t N, int64_t K) {
  if (M * N * K > vec::kSmallProduct) return nullptr;
  const vec::Kernels& k = vec::kernels();
  return &k == &vec::scalar_kernels() ? nullptr : &k;
}

// Whether C = A Bᵀ goes through vec::gemm_nt_stream rather than sgemm: few rows of A against a
// B of some size. sgemm first packs all of B (reading and writing it) and then multiplies; with
// few rows of A that packing pass is a large share of the call (measured on OpenBLAS 0.3.21,
// Haswell kernels: a 32-row sequence against llama768's matrices 0.63-0.95x sgemm's time, one
// row against the 32000 x 768 output matrix 0.32x; from about 64 rows on sgemm is as fast or
// faster, and for K of 64 - stories260K - sgemm wins at every row count measured).
bool streamed(int64_t M, int64_t N, int64_t K) {
  return N >= 4 && ((K >= 256 && M <= 48) || (M <= 4 && K >= 32)) &&
         &vec::kernels() != &vec::scalar_kernels();
}

}  // namespace

void gemm_nt(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
             const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (const vec::Kernels* k = small(M, N, K))
    return k->gemm_nt(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  if (streamed(M, N, K)) {
    // Few rows against a large B (a weight matrix): B streamed once, no packed copy.
    if (worth_splitting(static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K)) &&
        N >= 2 * kColumnGrain) {
      parallel_for(N, kColumnGrain, [&](int64_t j0, int64_t j1, int) {
        vec::gemm_nt_stream(M, j1 - j0, K, alpha, A, lda, B + j0 * ldb, ldb, beta, C + j0, ldc);
      });
      return;
    }
    if (vec::gemm_nt_stream(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)) return;
  }
  gemm_rowmajor('N', 'T', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_nn(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
             const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (const vec::Kernels* k = small(M, N, K))
    return k->gemm_nn(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  gemm_rowmajor('N', 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_tn(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
             const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (const vec::Kernels* k = small(M, N, K))
    return k->gemm_tn(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  gemm_rowmajor('T', 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

bool gemm_available() { return resolve_sgemm() != nullptr; }

}  // namespace candor::fused
