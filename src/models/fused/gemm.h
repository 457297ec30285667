// Single-precision matrix products through the process's BLAS (OpenBLAS, loaded by libtorch),
// row-major, for the fused kernels. Internal header.
#pragma once

#include <cstdint>

namespace candor::fused {

// C[M, N] = alpha * A[M, K] * B^T + beta * C, where B is stored [N, K] row-major (a weight
// matrix as nn.Linear keeps it). lda, ldb, ldc are row strides in floats.
void gemm_nt(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
             const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
// C[M, N] = alpha * A[M, K] * B[K, N] + beta * C (B stored [K, N] row-major).
void gemm_nn(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
             const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
// C[M, N] = alpha * A^T * B + beta * C, where A is stored [K, M] and B [K, N] row-major (the
// transposed products of the backward pass).
void gemm_tn(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
             const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
// True when a BLAS sgemm was found in the process.
bool gemm_available();

}  // namespace candor::fused
