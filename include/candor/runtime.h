// Runtime settings: BLAS kernel selection, thread counts (process-wide, or per job with
// ThreadScope), and what is active.
#pragma once

#include <string>

namespace candor {

// What BLAS the process is using.
struct BlasInfo {
  std::string library;  // "OpenBLAS", or "reference BLAS" when OpenBLAS is not the active one
  std::string core;     // OpenBLAS kernel family in use, e.g. "SkylakeX", "Haswell", "Prescott"
  std::string config;   // OpenBLAS build configuration string
  std::string coretype_env;  // OPENBLAS_CORETYPE as seen by this process ("" when unset)
  bool slow = false;    // true for reference BLAS or OpenBLAS's generic SSE3 ("Prescott") kernels
  std::string warning;  // what to do about a slow BLAS, "" when fine
};

// The OpenBLAS core this CPU should use: "SkylakeX" (AVX-512), "Haswell" (AVX2+FMA), or ""
// (leave OpenBLAS's own detection alone).
std::string preferred_openblas_core();

// Call first thing in main(). When the user has not set OPENBLAS_CORETYPE (or
// OMP_WAIT_POLICY), sets them for this CPU and re-executes the program so that OpenBLAS, which
// reads the variable once when it is loaded, starts with the right kernels. Never overrides a
// value the user set. Returns normally when no re-execution is needed or it failed.
void prepare_process(int argc, char** argv);

// Inspects the loaded BLAS.
BlasInfo blas_info();

// Sets intra-op threads of libtorch and OpenBLAS together (n <= 0: one per core).
void set_num_threads(int n);
int num_threads();

// The intra-op thread count of one job (a CLI command, a service request), restored when the
// scope ends: sets libtorch's and OpenBLAS's counts to n (n <= 0: one per core) and puts back
// the counts it found. libtorch's count (OpenMP) belongs to the calling thread, so concurrent
// requests on different threads each compute with their own; OpenBLAS's is process-wide (the
// last scope to start sets it; each restores what it found when it ends). Not copyable.
class ThreadScope {
 public:
  explicit ThreadScope(int n);
  ~ThreadScope();
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;

 private:
  int previous_torch_;
  int previous_blas_;  // 0: no OpenBLAS
};

}  // namespace candor
