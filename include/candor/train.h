// Training: a seeded loop (AdamW, linear warm-up then cosine decay, gradient clipping,
// checkpoint and resume, progress) over ATen tensors. The models candor trains build on it (the
// transformer classifier in text_transformer.h; distill.h's MLP teacher and students use it, never
// the reverse). Tensors are ATen (<ATen/core/Tensor.h>); no torch/torch.h. Part of candor_train.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "candor/cancel.h"

namespace candor::train {

struct TrainProgress {
  int64_t step = 0, total_steps = 0;
  double loss = 0;  // mean loss of the last batch
  double learning_rate = 0;
  double fidelity = -1;  // set by callers that measure it (agreement with a teacher)
  int64_t start_step = 0;  // the step this run started from (> 0: resumed from the checkpoint)
};

struct TrainOptions {
  int epochs = 5;
  int64_t batch_size = 256;
  double learning_rate = 3e-3, weight_decay = 0.01, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double warmup_fraction = 0.05;  // linear warm-up over this share of the steps, then cosine
  double clip_norm = 1.0;         // global gradient-norm clip (<= 0: none)
  uint64_t seed = 0;              // initialisation and batch order
  // File written (atomically) every `checkpoint_every` steps, when `checkpoint_seconds` have
  // passed since the last one, at the end, and when the run is cancelled.
  std::string checkpoint;
  int64_t checkpoint_every = 0;
  double checkpoint_seconds = 0;  // > 0: also write at least this often (wall clock)
  bool resume = false;            // continue from `checkpoint` when it exists
  int64_t stop_after_steps = -1;  // stop (after checkpointing) at this step: an interruption
  std::function<bool(const TrainProgress&)> progress;  // false cancels (Error kCancelled)
  // Polled after every step: when cancelled, the checkpoint (if any) is written and
  // Error(kCancelled) thrown, naming the step and the checkpoint. Not owned; may be null.
  const CancelToken* cancel = nullptr;
};

// The learning rate at `step` of `total` steps (warm-up then cosine to 0).
double scheduled_lr(const TrainOptions& o, int64_t step, int64_t total);

// Minimises `loss(batch)` over `n_examples` examples in mini-batches (each epoch a seeded
// permutation: batch b of epoch e depends only on seed, e and b, so a resumed run sees the
// same batches). `params` are leaf tensors (float); they are updated in place with AdamW
// (decoupled weight decay). Returns the number of steps done. Throws Error(kCancelled) when
// progress returns false or `cancel` is set (after writing the checkpoint, so that a resumed
// run continues from the last finished step), Error(kInvalidArgument) for a checkpoint that
// does not match.
int64_t train_loop(std::vector<at::Tensor>& params, int64_t n_examples,
                   const std::function<at::Tensor(const std::vector<int64_t>& batch)>& loss,
                   const TrainOptions& options);

}  // namespace candor::train
