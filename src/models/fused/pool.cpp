// The fused kernels' thread pool; see pool.h.
#include "models/fused/pool.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "candor/runtime.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CANDOR_POOL_PAUSE() _mm_pause()
#else
#define CANDOR_POOL_PAUSE() std::this_thread::yield()
#endif

namespace candor::fused {
namespace {

thread_local int tls_pass_threads = 0;  // 0: no pass on this thread
thread_local bool tls_in_split = false;
thread_local bool tls_pool_thread = false;
std::atomic<int64_t> splits{0};

// A split must have at least this many units of work (multiply-adds or element operations)
// to go to the pool: waking a sleeping thread costs some microseconds.
constexpr double kMinSplitWork = 32768;

// How long a thread spins for the next piece of work (or the caller for the last chunk)
// before it sleeps: short, since the machine may be shared.
constexpr auto kSpin = std::chrono::microseconds(50);

template <typename Ready>
void spin_then(Ready&& ready) {
  const auto until = std::chrono::steady_clock::now() + kSpin;
  int i = 0;
  while (!ready()) {
    CANDOR_POOL_PAUSE();
    if (++i % 64 == 0 && std::chrono::steady_clock::now() > until) return;
  }
}

class Pool {
 public:
  static Pool& get() {
    static Pool* pool = new Pool;  // never destroyed: its threads sleep until the process ends
    return *pool;
  }

  // False (nothing done) when another thread's split holds the pool.
  bool run(int threads, int64_t n, int64_t grain,
           const std::function<void(int64_t, int64_t, int)>& fn) {
    std::unique_lock<std::mutex> region(region_, std::try_to_lock);
    if (!region.owns_lock()) return false;
    const int64_t units = (n + grain - 1) / grain;
    const int chunks = static_cast<int>(std::min<int64_t>(threads, units));
    grow(chunks - 1);
    splits.fetch_add(1, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lock(m_);
      job_ = Job{&fn, n, grain, units, chunks};
      pending_.store(chunks - 1, std::memory_order_relaxed);
      error_ = nullptr;
      generation_.fetch_add(1, std::memory_order_release);
    }
    work_.notify_all();
    run_chunk(job_, 0);
    spin_then([&] { return pending_.load(std::memory_order_acquire) == 0; });
    {
      std::unique_lock<std::mutex> lock(m_);
      done_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
    }
    if (error_) std::rethrow_exception(error_);
    return true;
  }

 private:
  struct Job {
    const std::function<void(int64_t, int64_t, int)>* fn = nullptr;
    int64_t n = 0, grain = 1, units = 0;
    int chunks = 0;
  };

  void run_chunk(const Job& job, int slot) {
    const int64_t u0 = job.units * slot / job.chunks, u1 = job.units * (slot + 1) / job.chunks;
    const int64_t begin = std::min(job.n, u0 * job.grain), end = std::min(job.n, u1 * job.grain);
    if (begin >= end) return;
    const bool was = tls_in_split;
    tls_in_split = true;
    try {
      (*job.fn)(begin, end, slot);
    } catch (...) {
      std::lock_guard<std::mutex> lock(m_);
      if (!error_) error_ = std::current_exception();
    }
    tls_in_split = was;
  }

  // Makes sure there are at least `want` worker threads (slots 1..want).
  void grow(int want) {
    while (static_cast<int>(workers_) < want) {
      const int slot = static_cast<int>(++workers_);
      // The generation it has seen is read here, before the split that needs it begins.
      const uint64_t seen = generation_.load(std::memory_order_acquire);
      std::thread([this, slot, seen] { worker(slot, seen); }).detach();
    }
  }

  void worker(int slot, uint64_t seen) {
    tls_pool_thread = true;
    for (;;) {
      spin_then([&] { return generation_.load(std::memory_order_acquire) != seen; });
      Job job;
      {
        std::unique_lock<std::mutex> lock(m_);
        work_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
        seen = generation_.load(std::memory_order_acquire);
        job = job_;
      }
      if (slot >= job.chunks) continue;
      run_chunk(job, slot);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(m_);  // the caller may be about to wait
        done_.notify_one();
      }
    }
  }

  std::mutex region_;  // one split at a time
  std::mutex m_;
  std::condition_variable work_, done_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  Job job_;
  std::exception_ptr error_;
  size_t workers_ = 0;  // only grown under region_
};

// OpenBLAS held at one thread while any pass runs on the pool.
std::mutex blas_mutex;
int blas_holders = 0;
int blas_saved = 0;

// OpenBLAS's thread-count functions, looked up once (null without OpenBLAS).
struct BlasThreads {
  int (*get)() = nullptr;
  void (*set)(int) = nullptr;
};

const BlasThreads& blas_threads() {
  static const BlasThreads fns = [] {
    BlasThreads b;
    b.get = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
    b.set = reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
    return b;
  }();
  return fns;
}

void hold_blas() {
  std::lock_guard<std::mutex> lock(blas_mutex);
  if (blas_holders++ > 0) return;
  const auto [get, set] = blas_threads();
  blas_saved = get ? get() : 0;
  if (set && blas_saved != 1) set(1);
}

void release_blas() {
  std::lock_guard<std::mutex> lock(blas_mutex);
  if (--blas_holders > 0) return;
  const auto [get, set] = blas_threads();
  // Put back the count found, unless a ThreadScope changed it meanwhile.
  if (set && get && blas_saved > 1 && get() == 1) set(blas_saved);
}

}  // namespace

int kernel_threads() {
  if (tls_pool_thread || tls_in_split || at::in_parallel_region()) return 1;
  return std::clamp(num_threads(), 1, max_threads());
}

int pass_threads() {
  if (tls_pool_thread || tls_in_split) return 1;
  return std::max(1, tls_pass_threads);
}

PassThreads::PassThreads() : PassThreads(0) {}

PassThreads::PassThreads(int threads) : threads_(1), previous_(tls_pass_threads) {
  if (tls_pool_thread || tls_in_split) {
    threads_ = 1;
  } else if (previous_ > 0) {
    threads_ = previous_;  // a pass inside a pass keeps the outer count
  } else {
    threads_ = threads > 0 ? std::min(threads, max_threads()) : kernel_threads();
  }
  tls_pass_threads = threads_;
  if (threads_ > 1 && previous_ == 0) {
    hold_blas();
    held_blas_ = true;
  }
}

PassThreads::~PassThreads() {
  tls_pass_threads = previous_;
  if (held_blas_) release_blas();
}

int64_t pool_splits() { return splits.load(std::memory_order_relaxed); }

bool worth_splitting(double work) { return pass_threads() > 1 && work >= kMinSplitWork; }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int threads = pass_threads();
  if (threads <= 1 || n <= grain || !Pool::get().run(threads, n, grain, fn)) {
    const bool was = tls_in_split;
    tls_in_split = true;  // what fn calls runs on this thread too
    try {
      fn(0, n, 0);
    } catch (...) {
      tls_in_split = was;
      throw;
    }
    tls_in_split = was;
  }
}

}  // namespace candor::fused
