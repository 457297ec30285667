// The one thread pool of the fused kernels (issue 17, item 4). A fused pass takes its thread
// count from the job's --threads (candor::num_threads(), set by ThreadScope) and splits its
// work over rows and heads on this pool: the norms, activations and rotary layouts by rows,
// attention by (sequence, key head), the large sgemm calls by output columns or rows (gemm.cpp),
// the quantized products by weight panels or rows (qgemm.cpp). While a pass runs on more than
// one thread, OpenBLAS is held at one thread, so that its calls from several pool threads never
// start OpenBLAS's own workers beside the pool's: one set of threads, never more than asked.
// The row kernels and attention never split a row's reduction; a split sgemm call computes
// each element over all of K, but OpenBLAS rounds a block of columns a few ulps differently
// from the whole matrix, so results agree across thread counts within float rounding (tests:
// tests/models/fused_threads_test.cpp).
// Internal header (no libtorch types).
#pragma once

#include <cstdint>
#include <functional>

namespace candor::fused {

// The threads a fused pass started on this thread now would use: candor::num_threads() (the
// job's --threads), or 1 inside a libtorch parallel region or on a pool thread.
int kernel_threads();

// The threads of the pass running on this thread (set by PassThreads; 1 outside a pass, on a
// pool thread, and inside a split).
int pass_threads();

// For the duration of one fused pass (a forward or a backward): sets pass_threads() on the
// calling thread to `threads` (default kernel_threads()), and, when that is more than one,
// holds OpenBLAS at one thread (restored when the last pass that held it ends). Nested passes
// keep the outer count. Not copyable.
class PassThreads {
 public:
  PassThreads();
  explicit PassThreads(int threads);
  ~PassThreads();
  PassThreads(const PassThreads&) = delete;
  PassThreads& operator=(const PassThreads&) = delete;
  int threads() const { return threads_; }

 private:
  int threads_;
  int previous_;
  bool held_blas_ = false;
};

// Runs fn(begin, end, slot) over [0, n) cut into at most pass_threads() contiguous chunks whose
// boundaries are multiples of `grain` (slot: the chunk's index, below pass_threads(), for
// per-thread scratch). The caller runs chunk 0 and waits for the others. Runs fn(0, n, 0) on
// the calling thread when the pass has one thread, n fits in one grain, the caller is already
// inside a split, or the pool is busy with another thread's pass (that pass then computes on
// its own thread: no oversubscription). The first exception thrown by fn is rethrown here
// after every chunk has ended.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int)>& fn);

// How many splits have run on more than one thread in this process (for tests).
int64_t pool_splits();

// True when a split of `work` units (multiply-adds or element operations) should run on the
// pool: more than one pass thread, not inside a split, and enough work to pay for waking a
// thread.
bool worth_splitting(double work);

// For the row loops of the kernels: when worth_splitting(rows * per_row), runs body(r0, r1)
// over row ranges on the pool and returns true; else returns false having done nothing, and
// the kernel runs its rows itself. A kernel begins with
//   if (split_rows(rows, D, [&](int64_t r0, int64_t r1) { kernel(... r0 ..., r1 - r0); }))
//     return;
// (the recursive call is inside the split, so it runs its rows on its own thread).
template <typename Body>
bool split_rows(int64_t rows, int64_t per_row, Body&& body) {
  if (rows < 2 || !worth_splitting(static_cast<double>(rows) * static_cast<double>(per_row)))
    return false;
  parallel_for(rows, 1, [&](int64_t r0, int64_t r1, int) { body(r0, r1); });
  return true;
}

}  // namespace candor::fused
