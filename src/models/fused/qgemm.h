// Matrix products with weights kept in their GGUF blocks (Q8_0, Q4_0, Q4_K, Q6_K, F16, BF16,
// and F32 parts beside them), dequantised on the fly: a panel of weight rows at a time is
// expanded into a small float buffer that stays in cache and multiplied through sgemm, so a
// quantized model lives in memory at about its file size and computes at close to float32
// speed. Both products of a linear layer: x · Wᵀ (forward) and g · W (the backward's product
// to the input). Internal header (no libtorch types).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace candor::fused {

// A block of consecutive rows of one ggml type, `rows` rows of the matrix's `cols` values.
struct QuantPart {
  uint32_t type = 0;  // ggml type (GgmlType)
  int64_t rows = 0;
  const uint8_t* data = nullptr;  // rows * row_bytes(type, cols) bytes, row after row
};

// A [rows, cols] weight matrix (as nn.Linear keeps it: out x in) made of row parts of possibly
// different ggml types (a fused q/k/v matrix whose v rows are Q6_K and q, k rows Q4_K).
struct QuantMatrix {
  int64_t rows = 0, cols = 0;
  std::vector<QuantPart> parts;
  std::shared_ptr<const void> keep;  // keeps the parts' bytes alive (the mapped file)

  bool empty() const { return parts.empty(); }
  size_t bytes() const;
  // Types of the parts, lower case, e.g. "q4_k" or "q4_k+q6_k".
  std::string type_summary() const;
};

// True when the products below take weights of ggml `type` with rows of `cols` values (the
// row a whole number of blocks).
bool quant_type_usable(uint32_t type, int64_t cols);
// Bytes of one row of `cols` values of `type`.
size_t quant_row_bytes(uint32_t type, int64_t cols);

// C[M, W.rows] = A[M, W.cols] · Wᵀ + beta · C (lda, ldc: row strides in floats).
void qgemm_nt(int64_t M, const float* A, int64_t lda, const QuantMatrix& W, float beta, float* C,
              int64_t ldc);
// C[M, W.cols] = G[M, W.rows] · W + beta · C.
void qgemm_nn(int64_t M, const float* G, int64_t ldg, const QuantMatrix& W, float beta, float* C,
              int64_t ldc);
// A linear layer's two products, whichever way its [N, K] weight is kept: the float matrix `w`
// (row-major, as nn.Linear keeps it), or, when `q` is set and not empty, its quantized blocks
// (read as they are, no float32 copy). The forward's and the backward's one dispatch.
//   linear_nt: C[M, N] = A[M, K] · Wᵀ + beta · C
//   linear_nn: C[M, K] = G[M, N] · W + beta · C
void linear_nt(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* w,
               const QuantMatrix* q, float beta, float* C, int64_t ldc);
void linear_nn(int64_t M, int64_t N, int64_t K, const float* G, int64_t ldg, const float* w,
               const QuantMatrix* q, float beta, float* C, int64_t ldc);
// out[i, :] = row r0 + i of W as floats, for i < n (out: n x W.cols).
void dequantize_rows(const QuantMatrix& W, int64_t r0, int64_t n, float* out);
// out[i, :] = row ids[i] of W as floats (an embedding lookup).
void gather_rows(const QuantMatrix& W, const int64_t* ids, int64_t n, float* out);

}  // namespace candor::fused
