// Cancellation of the training loop: a cancelled run writes its checkpoint and says where, a
// resumed run continues from it to the same model as an uninterrupted run, and a checkpoint is
// written periodically (checkpoint_seconds).
#include <ATen/ATen.h>

#include <fstream>

#include "candor/cancel.h"
#include "candor/error.h"
#include "candor/train.h"
#include "test_util.h"

namespace candor::train {
namespace {

// A least-squares fit of w to fixed targets: deterministic, a few steps an epoch.
struct Problem {
  at::Tensor x = at::arange(40, at::kFloat).reshape({20, 2}) / 40.0;
  at::Tensor y = x.matmul(at::tensor({1.5f, -2.0f}));
  std::vector<at::Tensor> params = {at::zeros({2}, at::kFloat)};
  int64_t run(const TrainOptions& o) {
    return train_loop(
        params, 20,
        [&](const std::vector<int64_t>& b) {
          at::Tensor idx = at::tensor(b, at::kLong);
          return (x.index_select(0, idx).matmul(params[0]) - y.index_select(0, idx)).pow(2).mean();
        },
        o);
  }
};

TEST(TrainCancel, ACancelledRunCheckpointsAndResumesToTheSameModel) {
  TrainOptions o;
  o.epochs = 10;
  o.batch_size = 4;  // 5 steps an epoch, 50 in all
  o.learning_rate = 0.05;
  Problem whole;
  whole.run(o);

  const std::string ckpt = testing::temp_dir() + "/c.ckpt";
  CancelToken token;
  TrainOptions oi = o;
  oi.checkpoint = ckpt;
  oi.cancel = &token;
  oi.progress = [&](const TrainProgress& p) {
    if (p.step == 17) token.cancel();  // as a signal handler would, between steps
    return true;
  };
  Problem part;
  try {
    part.run(oi);
    FAIL() << "not cancelled";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCancelled);
    EXPECT_NE(std::string(e.what()).find("at step 17 of 50"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(ckpt), std::string::npos) << e.what();
  }
  ASSERT_TRUE(std::ifstream(ckpt).good()) << "no checkpoint written on cancel";
  int64_t start = -1;
  Problem resumed;
  TrainOptions orr = o;
  orr.checkpoint = ckpt;
  orr.resume = true;
  orr.progress = [&](const TrainProgress& p) {
    if (start < 0) start = p.start_step;
    return true;
  };
  EXPECT_EQ(resumed.run(orr), 50);
  EXPECT_EQ(start, 17);
  EXPECT_TRUE(at::allclose(resumed.params[0], whole.params[0], 1e-6, 1e-7));
}

TEST(TrainCancel, ACheckpointIsWrittenPeriodically) {
  TrainOptions o;
  o.epochs = 10;
  o.batch_size = 4;
  o.learning_rate = 0.05;
  o.checkpoint = testing::temp_dir() + "/p.ckpt";
  o.checkpoint_seconds = 1e-9;  // due after every step
  bool seen_before_end = false;
  o.progress = [&](const TrainProgress& p) {
    if (p.step == 3) seen_before_end = std::ifstream(o.checkpoint).good();
    return true;
  };
  Problem p;
  p.run(o);
  EXPECT_TRUE(seen_before_end) << "no checkpoint before the end of the run";
}

}  // namespace
}  // namespace candor::train
