// The decode scheduler: sequences ask for their next step from their own threads; one thread
// gathers the asks and runs them as one batched step (no libtorch here).
#include "serve/batcher.h"

#include <algorithm>

#include "candor/error.h"

namespace candor::serve {

struct DecodeScheduler::Row {
  uint64_t id = 0;
  std::unique_ptr<DecodeSequence> sequence;
  TokenId token = 0;
  bool pending = false;  // asked for a step that has not started
  bool ready = false;    // the step it asked for has run: `logits` or `error` hold its result
  std::vector<float> logits;
  std::string error;
};

DecodeScheduler::DecodeScheduler(std::shared_ptr<DecodeBackend> backend,
                                 std::chrono::microseconds gather, bool alone_inline)
    : backend_(std::move(backend)),
      vocab_(backend_->vocab_size()),
      gather_(gather),
      alone_inline_(alone_inline) {
  thread_ = std::thread([this] { loop(); });
}

DecodeScheduler::~DecodeScheduler() { stop(); }

void DecodeScheduler::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

int64_t DecodeScheduler::steps() const {
  std::lock_guard<std::mutex> lock(mu_);
  return steps_;
}

int64_t DecodeScheduler::rows_read() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rows_read_;
}

std::unique_ptr<DecodeScheduler::Sequence> DecodeScheduler::open(
    const std::vector<TokenId>& prompt_ids) {
  auto refuse = [] {
    return Error(ErrorCode::kCancelled, "the service is shutting down",
                 "retry against a running server");
  };
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) throw refuse();
  }
  auto row = std::make_shared<Row>();
  std::vector<float> logits;
  row->sequence = backend_->prefill(prompt_ids, &logits);
  std::unique_ptr<Sequence> s(new Sequence(this, row));
  s->logits_ = std::move(logits);
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) throw refuse();
  row->id = next_id_++;
  rows_.push_back(row);
  return s;
}

const float* DecodeScheduler::Sequence::prompt_logits() const { return logits_.data(); }

const float* DecodeScheduler::Sequence::next(TokenId token) {
  DecodeScheduler& s = *owner_;
  std::unique_lock<std::mutex> lock(s.mu_);
  if (s.alone_inline_ && s.rows_.size() == 1 && !s.stepping_) {
    // Alone: the step runs here. A sequence joining meanwhile waits for it in the loop.
    s.stepping_ = true;
    lock.unlock();
    const std::vector<StepRow> rows = {{row_->id, row_->sequence.get(), token, true}};
    std::string error;
    try {
      s.backend_->step(rows, &logits_);
      if (static_cast<int64_t>(logits_.size()) < s.vocab_)
        error = "the backend returned " + std::to_string(logits_.size()) + " logits for 1 row";
    } catch (const std::exception& e) {
      error = e.what();
    }
    lock.lock();
    s.stepping_ = false;
    ++s.steps_;
    ++s.rows_read_;
    lock.unlock();
    s.wake_.notify_all();
    if (!error.empty())
      throw Error(ErrorCode::kInternal, "a batched decoding step failed: " + error);
    return logits_.data();
  }
  row_->token = token;
  row_->pending = true;
  row_->ready = false;
  s.wake_.notify_all();
  s.done_.wait(lock, [this] { return row_->ready; });
  if (!row_->error.empty())
    throw Error(ErrorCode::kInternal, "a batched decoding step failed: " + row_->error);
  logits_.swap(row_->logits);
  return logits_.data();
}

DecodeScheduler::Sequence::~Sequence() {
  DecodeScheduler& s = *owner_;
  {
    std::lock_guard<std::mutex> lock(s.mu_);
    s.rows_.erase(std::remove(s.rows_.begin(), s.rows_.end(), row_), s.rows_.end());
  }
  // A step in flight may still hold the row (not fed): its shared_ptr keeps the state alive.
  s.wake_.notify_all();
}

void DecodeScheduler::loop() {
  auto any_pending = [this] {
    return std::any_of(rows_.begin(), rows_.end(), [](const auto& r) { return r->pending; });
  };
  auto all_pending = [this] {
    return std::all_of(rows_.begin(), rows_.end(), [](const auto& r) { return r->pending; });
  };
  std::vector<float> out;
  std::vector<std::shared_ptr<Row>> batch;  // kept across steps: no allocation per step
  std::vector<StepRow> step;
  std::chrono::steady_clock::duration last_step{0};
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    wake_.wait(lock, [&] {
      return (any_pending() && !stepping_) || (stopping_ && rows_.empty() && !stepping_);
    });
    if (!any_pending()) return;  // stopping, and every sequence has left
    // Give the other sequences a moment to ask too: they are sampling their last token (on a
    // loaded machine their threads may wait for a core first, so the wait scales with the step:
    // up to half the last step's time, at least `gather_`).
    const auto wait = std::max<std::chrono::steady_clock::duration>(gather_, last_step / 2);
    wake_.wait_until(lock, std::chrono::steady_clock::now() + wait, all_pending);
    if (!any_pending()) continue;  // the asking ones left meanwhile (cannot happen: they wait)
    batch.assign(rows_.begin(), rows_.end());
    step.resize(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      Row& r = *batch[i];
      step[i] = {r.id, r.sequence.get(), r.token, r.pending};
      r.pending = false;
    }
    stepping_ = true;
    lock.unlock();
    const auto t_step = std::chrono::steady_clock::now();
    std::string error;
    try {
      backend_->step(step, &out);
      if (static_cast<int64_t>(out.size()) < static_cast<int64_t>(step.size()) * vocab_)
        error = "the backend returned " + std::to_string(out.size()) + " logits for " +
                std::to_string(step.size()) + " rows";
    } catch (const std::exception& e) {
      error = e.what();
    }
    last_step = std::chrono::steady_clock::now() - t_step;
    lock.lock();
    stepping_ = false;
    ++steps_;
    for (size_t i = 0; i < batch.size(); ++i) {
      if (!step[i].fed) continue;
      Row& r = *batch[i];
      ++rows_read_;
      r.error = error;
      if (error.empty())
        r.logits.assign(out.begin() + static_cast<int64_t>(i) * vocab_,
                        out.begin() + static_cast<int64_t>(i + 1) * vocab_);
      r.ready = true;
    }
    done_.notify_all();
    // The rows that left meanwhile are released here, outside the step.
    for (auto& r : batch) r.reset();
  }
}

}  // namespace candor::serve
