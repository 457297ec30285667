// Cooperative cancellation: a flag that long work (training, explaining with several methods,
// evaluating a data set) polls between its steps. When it is set the work stops at the next
// step boundary, keeps what is done (a training checkpoint, the finished methods) and reports
// the interruption (Error(kCancelled), or a result marked incomplete). The library never
// installs a signal handler; a program does (the CLI sets the flag on SIGINT). Part of
// candor_core.
#pragma once

#include <atomic>

namespace candor {

class CancelToken {
 public:
  // Safe to call from a signal handler (a lock-free atomic store) and from any thread.
  void cancel() noexcept { flag_.store(true, std::memory_order_relaxed); }
  bool cancelled() const noexcept { return flag_.load(std::memory_order_relaxed); }
  void reset() noexcept { flag_.store(false, std::memory_order_relaxed); }

 private:
  static_assert(std::atomic<bool>::is_always_lock_free, "the flag must be signal-safe");
  std::atomic<bool> flag_{false};
};

// True when `token` is given and cancelled.
inline bool is_cancelled(const CancelToken* token) { return token && token->cancelled(); }

}  // namespace candor
