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

// The cores this process may run on: its CPU affinity mask, capped by a cgroup CPU quota
// (at least 1).
int usable_cores();
// The most intra-op threads a job may ask for: 4 x usable_cores().
int max_threads();
// The threads each of libtorch's and OpenBLAS's pools gets for a request of n: one per core for
// n <= 0, else min(n, usable_cores()) (more threads than cores only spin). Throws
// Error(kInvalidArgument) for n > max_threads().
int effective_threads(int n);

// Sets intra-op threads of libtorch and OpenBLAS together to effective_threads(n) (n <= 0: one
// per core; never more than the cores). Throws Error(kInvalidArgument) for n > max_threads().
void set_num_threads(int n);
int num_threads();

// The intra-op thread count of one job (a CLI command, a service request), restored when the
// scope ends: sets libtorch's and OpenBLAS's counts to effective_threads(n) (n <= 0: one per
// core; throws Error(kInvalidArgument) above max_threads(), changing nothing) and puts back
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
