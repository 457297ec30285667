// Runtime thread settings: a request above 4 x the cores is an error that changes nothing, and
// neither libtorch's nor OpenBLAS's pool ever gets more threads than the cores.
#include "candor/runtime.h"

#include <thread>

#include "candor/error.h"
#include "test_util.h"

namespace candor {
namespace {

using ::testing::HasSubstr;

TEST(Runtime, ThreadCountsAreBoundedByTheCores) {
  int cores = usable_cores();
  ASSERT_GE(cores, 1);
  EXPECT_EQ(max_threads(), 4 * cores);
  EXPECT_EQ(effective_threads(0), cores);
  EXPECT_EQ(effective_threads(-3), cores);
  EXPECT_EQ(effective_threads(1), 1);
  EXPECT_EQ(effective_threads(max_threads()), cores);
}

TEST(Runtime, TooManyThreadsThrowsAndChangesNothing) {
  set_num_threads(1);
  ASSERT_EQ(num_threads(), 1);
  for (int n : {max_threads() + 1, 4096, 100000}) {
    try {
      ThreadScope scope(n);
      ADD_FAILURE() << "ThreadScope(" << n << ") did not throw";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_THAT(e.what(), HasSubstr(std::to_string(n)));
      EXPECT_THAT(e.hint(), HasSubstr(std::to_string(max_threads())));
    }
    EXPECT_EQ(num_threads(), 1);
    EXPECT_THAT(testing::error_of([&] { set_num_threads(n); }), HasSubstr("more than 4 x"));
    EXPECT_EQ(num_threads(), 1);
  }
}

TEST(Runtime, MoreThreadsThanCoresRunOnePerCore) {
  set_num_threads(1);
  {
    ThreadScope scope(max_threads());
    EXPECT_EQ(num_threads(), usable_cores());
  }
  EXPECT_EQ(num_threads(), 1);
  set_num_threads(max_threads());
  EXPECT_EQ(num_threads(), usable_cores());
}

// A ThreadScope changes its own thread's count only: a thread started meanwhile starts with the
// process's. (It used to go through at::set_num_threads, which also changes the count of every
// thread started later and rebuilds libtorch's process-wide pthreadpool at each change: twice
// per decode step in the service when its step and its requests ran at different counts.)
TEST(Runtime, AScopeChangesOnlyItsOwnThread) {
  if (usable_cores() < 2) GTEST_SKIP() << "needs 2 cores to tell 1 thread from 2";
  set_num_threads(2);
  {
    ThreadScope one(1);
    EXPECT_EQ(num_threads(), 1);
    int seen = 0;
    std::thread([&] { seen = num_threads(); }).join();
    EXPECT_EQ(seen, 2);
  }
  EXPECT_EQ(num_threads(), 2);
}

}  // namespace
}  // namespace candor
