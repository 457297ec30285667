// The batched decoding of the service over a Model: the backend (a preallocated KV cache with a
// slot per sequence in flight) and the LogitSource that lets generate() decode through the
// scheduler.
#pragma once

#include <memory>
#include <vector>

#include "candor/generate.h"
#include "candor/model.h"
#include "serve/batcher.h"

namespace candor::serve {

// A DecodeBackend over `model` (borrowed). Its step runs with `threads` intra-op threads.
std::shared_ptr<DecodeBackend> model_decode_backend(const Model& model, int threads);

// What the backend did to its shared cache so far (for the tests and benchmarks): rows packed to
// the left, reallocations (more slots or a longer context). Zero for other backends.
struct DecodeCacheStats {
  int64_t packs = 0;
  int64_t reallocations = 0;
};
DecodeCacheStats decode_cache_stats(const DecodeBackend& backend);

// generate()'s logits through `scheduler`: the prompt prefilled on the calling thread, each
// next token read in the batched step.
class ScheduledSource : public LogitSource {
 public:
  explicit ScheduledSource(DecodeScheduler& scheduler) : scheduler_(scheduler) {}
  const float* prefill(const std::vector<TokenId>& prompt_ids) override {
    sequence_ = scheduler_.open(prompt_ids);
    return sequence_->prompt_logits();
  }
  const float* next(TokenId token) override { return sequence_->next(token); }

 private:
  DecodeScheduler& scheduler_;
  std::unique_ptr<DecodeScheduler::Sequence> sequence_;
};

}  // namespace candor::serve
