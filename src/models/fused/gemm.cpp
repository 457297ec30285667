// sgemm through the BLAS that libtorch loaded (resolved once with dlsym: candor does not link a
// BLAS itself, so it uses the very library, and kernels, that libtorch's matmuls use).
#include "models/fused/gemm.h"

#include <dlfcn.h>

#include "candor/error.h"
#include "models/fused/vec.h"

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

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands.
void gemm_rowmajor(char ta, char tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                   int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  SgemmFn fn = resolve_sgemm();
  if (!fn) {
    throw Error(ErrorCode::kInternal, "no BLAS sgemm in the process",
                "install libopenblas0-pthread (libtorch loads it)");
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

}  // namespace

void gemm_nt(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
             const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (const vec::Kernels* k = small(M, N, K))
    return k->gemm_nt(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
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
