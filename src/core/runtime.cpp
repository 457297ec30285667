// BLAS kernel selection (OPENBLAS_CORETYPE), re-execution at start-up, and thread settings.
#include "candor/runtime.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <malloc.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>
#include <vector>

#include "candor/error.h"
#include "candor/launch.h"

namespace candor {
namespace {

template <typename Fn>
Fn blas_symbol(const char* name) {
  return reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, name));
}

// The CPU quota of this process's cgroup (v2 cpu.max "quota period"), rounded up to whole
// cores; 0 when there is none or it cannot be read.
int cgroup_cpu_limit() {
  std::ifstream f("/sys/fs/cgroup/cpu.max");
  std::string quota;
  long long period = 0;
  if (!(f >> quota >> period) || quota == "max" || period <= 0) return 0;
  long long q = std::atoll(quota.c_str());
  if (q <= 0) return 0;
  return static_cast<int>((q + period - 1) / period);
}

}  // namespace

int usable_cores() {
  static const int cores = [] {
    int n = 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) n = CPU_COUNT(&set);
    if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
    int quota = cgroup_cpu_limit();
    if (quota > 0) n = std::min(n, quota);
    return std::max(1, n);
  }();
  return cores;
}

int max_threads() { return 4 * usable_cores(); }

int effective_threads(int n) {
  if (n > max_threads()) {
    throw Error(ErrorCode::kInvalidArgument,
                "a thread count of " + std::to_string(n) + " is more than 4 x the " +
                    std::to_string(usable_cores()) + " cores this process may use (at most " +
                    std::to_string(max_threads()) + ")",
                "ask for 0 (one thread per core) or at most " + std::to_string(max_threads()));
  }
  // More threads than cores only makes libtorch's and OpenBLAS's workers spin against each
  // other: each pool gets at most one thread per core.
  if (n <= 0) return usable_cores();
  return std::min(n, usable_cores());
}

std::string preferred_openblas_core() { return openblas_core_for_this_cpu(); }

void prepare_process(int argc, char** argv) {
  (void)argc;
  // libtorch's CPU allocator does not cache: without this glibc returns every large tensor to
  // the OS after each forward and page-faults it back in the next (measured: 42% of a 512-token
  // stories260K forward in the kernel). Keep freed memory up to 1 GiB and serve blocks below
  // 32 MiB from the heap; the peak (high-water mark) is unchanged.
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  // Already re-executed once, or started by the launcher with the environment set.
  if (std::getenv(kPreparedMarker) != nullptr) return;
  if (!set_engine_environment()) return;
  setenv(kPreparedMarker, "1", 1);
  execv("/proc/self/exe", argv);
  // execv only returns on failure: carry on with whatever kernels OpenBLAS picked.
}

BlasInfo blas_info() {
  BlasInfo info;
  const char* env = std::getenv("OPENBLAS_CORETYPE");
  info.coretype_env = env ? env : "";
  auto corename = blas_symbol<char* (*)()>("openblas_get_corename");
  auto config = blas_symbol<char* (*)()>("openblas_get_config");
  if (corename == nullptr) {
    info.library = "reference BLAS";
    info.slow = true;
    info.warning =
        "the active BLAS is not OpenBLAS (about 10x slower); install libopenblas0-pthread "
        "and select it with update-alternatives --config libblas.so.3-x86_64-linux-gnu";
    return info;
  }
  info.library = "OpenBLAS";
  info.core = corename();
  if (config) info.config = config();
  if (info.core == "Prescott" || info.core == "prescott") {
    info.slow = true;
    info.warning =
        "OpenBLAS runs its generic SSE3 kernels; set OPENBLAS_CORETYPE (e.g. Haswell or "
        "SkylakeX) to match this CPU";
  }
  return info;
}

void set_num_threads(int n) {
  n = effective_threads(n);
  at::set_num_threads(n);
  if (auto fn = blas_symbol<void (*)(int)>("openblas_set_num_threads")) fn(n);
}

int num_threads() { return at::get_num_threads(); }

namespace {

// The calling thread's libtorch count (its OpenMP count, which at::get_num_threads() reads and
// libtorch's parallel regions use). Not at::set_num_threads: that one also rebuilds libtorch's
// process-wide pthreadpool whenever the count changes (nothing candor runs uses it), and each
// rebuild starts a thread that spins for milliseconds. A service whose decode step runs at
// another count than its requests paid that twice per token (issue 16: one client on
// --parallel 4 ran at a fifth of --parallel 1 on stories260K).
void set_this_thread_torch_threads(int n) {
  using OmpSet = void (*)(int);
  static const OmpSet omp_set = blas_symbol<OmpSet>("omp_set_num_threads");
  if (at::get_num_threads() == n) return;  // also libtorch's lazy per-thread set-up, first
  if (omp_set != nullptr) {
    omp_set(n);
  } else {
    at::set_num_threads(n);  // libtorch without OpenMP
  }
}

// OpenBLAS's process-wide count, changed only when it differs (the call takes a lock).
void set_blas_threads(int n) {
  static const auto get = blas_symbol<int (*)()>("openblas_get_num_threads");
  static const auto set = blas_symbol<void (*)(int)>("openblas_set_num_threads");
  if (get != nullptr && set != nullptr && get() != n) set(n);
}

}  // namespace

ThreadScope::ThreadScope(int n) : previous_torch_(at::get_num_threads()), previous_blas_(0) {
  int threads = effective_threads(n);  // throws before anything is changed
  if (auto get = blas_symbol<int (*)()>("openblas_get_num_threads")) previous_blas_ = get();
  set_this_thread_torch_threads(threads);
  set_blas_threads(threads);
}

ThreadScope::~ThreadScope() {
  set_this_thread_torch_threads(previous_torch_);
  if (previous_blas_ > 0) set_blas_threads(previous_blas_);
}

}  // namespace candor
