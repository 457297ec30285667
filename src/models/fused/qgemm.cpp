// Products with weights kept quantized; see qgemm.h. The blocks are expanded by the GGUF
// reader's own dequantiser (models/formats/gguf_quant.cpp), a panel of rows at a time.
#include "models/fused/qgemm.h"

#include <algorithm>
#include <cctype>
#include <set>

#include "candor/error.h"
#include "models/formats/gguf.h"
#include "models/formats/gguf_format.h"
#include "models/fused/gemm.h"
#include "models/fused/vec.h"
#include "models/fused/pool.h"

namespace candor::fused {
namespace {

// Floats of one dequantised panel: 256 KB, so it stays in L2 while sgemm packs it.
constexpr int64_t kPanelFloats = int64_t{1} << 16;

// Rows per panel for rows of `cols` values (a multiple of 8, at least 8).
int64_t panel_rows(int64_t cols) {
  const int64_t r = std::max<int64_t>(8, kPanelFloats / std::max<int64_t>(1, cols));
  return r / 8 * 8;
}

float* panel_buffer(int64_t n) {
  thread_local std::vector<float> buf;
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(static_cast<size_t>(n));
  return buf.data();
}

// Calls f(first_row, n_rows, const float* rows) for each panel of W, in row order.
template <typename F>
void for_each_panel(const QuantMatrix& W, F&& f) {
  const int64_t K = W.cols, step = panel_rows(K);
  float* buf = panel_buffer(step * K);
  int64_t r0 = 0;
  for (const QuantPart& p : W.parts) {
    const size_t rb = quant_row_bytes(p.type, K);
    for (int64_t r = 0; r < p.rows; r += step) {
      const int64_t n = std::min(step, p.rows - r);
      const uint8_t* src = p.data + static_cast<size_t>(r) * rb;
      if (!vec::dequantize_blocks(p.type, src, n * K, buf)) dequantize_ggml(p.type, src, n * K, buf);
      f(r0 + r, n, static_cast<const float*>(buf));
    }
    r0 += p.rows;
  }
}

// The panels of W in row order, for the pass's threads to share out.
struct Panel {
  uint32_t type;
  const uint8_t* data;
  int64_t r0, n;
};

std::vector<Panel> panels_of(const QuantMatrix& W) {
  std::vector<Panel> out;
  const int64_t K = W.cols, step = panel_rows(K);
  int64_t r0 = 0;
  for (const QuantPart& p : W.parts) {
    const size_t rb = quant_row_bytes(p.type, K);
    for (int64_t r = 0; r < p.rows; r += step)
      out.push_back(
          {p.type, p.data + static_cast<size_t>(r) * rb, r0 + r, std::min(step, p.rows - r)});
    r0 += p.rows;
  }
  return out;
}

}  // namespace

size_t quant_row_bytes(uint32_t type, int64_t cols) { return ggml_nbytes(type, cols); }

bool quant_type_usable(uint32_t type, int64_t cols) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kF32:
    case GgmlType::kF16:
    case GgmlType::kBF16:
    case GgmlType::kQ8_0:
    case GgmlType::kQ4_0:
    case GgmlType::kQ4_K:
    case GgmlType::kQ6_K:
      return cols > 0 && ggml_nbytes(type, cols) > 0;
  }
  return false;
}

size_t QuantMatrix::bytes() const {
  size_t b = 0;
  for (const QuantPart& p : parts) b += static_cast<size_t>(p.rows) * quant_row_bytes(p.type, cols);
  return b;
}

std::string QuantMatrix::type_summary() const {
  std::set<std::string> kinds;
  for (const QuantPart& p : parts) {
    std::string s = ggml_type_name(p.type);
    for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    kinds.insert(s);
  }
  std::string s;
  for (const std::string& k : kinds) s += (s.empty() ? "" : "+") + k;
  return s;
}

void qgemm_nt(int64_t M, const float* A, int64_t lda, const QuantMatrix& W, float beta, float* C,
              int64_t ldc) {
  if (M <= 0) return;
  // On the pass's threads (pool.h): each takes whole panels (columns of C), each element of C
  // one product over all of K as on one thread.
  if (worth_splitting(static_cast<double>(M) * static_cast<double>(W.rows) *
                      static_cast<double>(W.cols))) {
    const std::vector<Panel> panels = panels_of(W);
    if (panels.size() > 1) {
      parallel_for(static_cast<int64_t>(panels.size()), 1, [&](int64_t p0, int64_t p1, int) {
        float* buf = panel_buffer(panel_rows(W.cols) * W.cols);
        for (int64_t i = p0; i < p1; ++i) {
          const Panel& p = panels[static_cast<size_t>(i)];
          if (!vec::dequantize_blocks(p.type, p.data, p.n * W.cols, buf))
            dequantize_ggml(p.type, p.data, p.n * W.cols, buf);
          gemm_nt(M, p.n, W.cols, 1.0f, A, lda, buf, W.cols, beta, C + p.r0, ldc);
        }
      });
      return;
    }
  }
  for_each_panel(W, [&](int64_t r0, int64_t n, const float* w) {
    gemm_nt(M, n, W.cols, 1.0f, A, lda, w, W.cols, beta, C + r0, ldc);
  });
}

void qgemm_nn(int64_t M, const float* G, int64_t ldg, const QuantMatrix& W, float beta, float* C,
              int64_t ldc) {
  if (M <= 0) return;
  // On the pass's threads: each takes a block of rows of G and C through every panel (the
  // panels' sum in the same order as on one thread).
  if (M >= 32 && worth_splitting(static_cast<double>(M) * static_cast<double>(W.rows) *
                                 static_cast<double>(W.cols))) {
    parallel_for(M, 16, [&](int64_t i0, int64_t i1, int) {
      qgemm_nn(i1 - i0, G + i0 * ldg, ldg, W, beta, C + i0 * ldc, ldc);
    });
    return;
  }
  bool first = true;
  for_each_panel(W, [&](int64_t r0, int64_t n, const float* w) {
    gemm_nn(M, W.cols, n, 1.0f, G + r0, ldg, w, W.cols, first ? beta : 1.0f, C, ldc);
    first = false;
  });
  if (first) {  // no rows: C = beta C
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < W.cols; ++j) C[i * ldc + j] = beta == 0 ? 0.0f : beta * C[i * ldc + j];
  }
}

void linear_nt(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* w,
               const QuantMatrix* q, float beta, float* C, int64_t ldc) {
  if (q && !q->empty()) {
    qgemm_nt(M, A, lda, *q, beta, C, ldc);
  } else {
    gemm_nt(M, N, K, 1.0f, A, lda, w, K, beta, C, ldc);
  }
}

void linear_nn(int64_t M, int64_t N, int64_t K, const float* G, int64_t ldg, const float* w,
               const QuantMatrix* q, float beta, float* C, int64_t ldc) {
  if (q && !q->empty()) {
    qgemm_nn(M, G, ldg, *q, beta, C, ldc);
  } else {
    gemm_nn(M, K, N, 1.0f, G, ldg, w, K, beta, C, ldc);
  }
}

void dequantize_rows(const QuantMatrix& W, int64_t r0, int64_t n, float* out) {
  if (r0 < 0 || n < 0 || r0 + n > W.rows)
    throw Error(ErrorCode::kInternal, "dequantize_rows: rows out of range");
  int64_t base = 0;
  for (const QuantPart& p : W.parts) {
    const int64_t lo = std::max(r0, base), hi = std::min(r0 + n, base + p.rows);
    if (lo < hi) {
      const uint8_t* src = p.data + static_cast<size_t>(lo - base) * quant_row_bytes(p.type, W.cols);
      if (!vec::dequantize_blocks(p.type, src, (hi - lo) * W.cols, out + (lo - r0) * W.cols))
        dequantize_ggml(p.type, src, (hi - lo) * W.cols, out + (lo - r0) * W.cols);
    }
    base += p.rows;
  }
}

void gather_rows(const QuantMatrix& W, const int64_t* ids, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) dequantize_rows(W, ids[i], 1, out + i * W.cols);
}

}  // namespace candor::fused
