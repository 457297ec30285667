// Batched decoding for the service: the decode steps of concurrent requests run as one forward.
// Each request keeps its own decoding loop on its own thread (generate() over a LogitSource, so
// it picks its tokens, stops and streams exactly as alone); only "read one more token and give
// me the next logits" goes through the scheduler, which gathers the waiting sequences, runs one
// batched step on its own thread and hands each its row of logits. The prompt's prefill runs on
// the request's thread. No libtorch here: the model side is a DecodeBackend (decode_model.cpp
// over a Model; the ThreadSanitizer tests use one of their own).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "candor/tokenizer.h"

namespace candor::serve {

// A sequence's state as the backend keeps it (its KV cache until it joins the batch).
struct DecodeSequence {
  virtual ~DecodeSequence() = default;
};

// One row of a batched step: the sequence (id: unique, never reused) and the token it reads, or
// none (fed = false: a sequence whose request has not asked for its next step yet; it keeps its
// place in the batch and reads nothing).
struct StepRow {
  uint64_t id = 0;
  DecodeSequence* sequence = nullptr;
  TokenId token = 0;
  bool fed = false;
};

// The model side of batched decoding.
class DecodeBackend {
 public:
  virtual ~DecodeBackend() = default;
  virtual int64_t vocab_size() const = 0;
  // Reads a prompt: its state and the logits of its last position (vocab_size floats). Runs on
  // the request's thread, concurrently with other prefills and with step().
  virtual std::unique_ptr<DecodeSequence> prefill(const std::vector<TokenId>& prompt_ids,
                                                  std::vector<float>* logits) const = 0;
  // One step of every row at once, on the scheduler's thread (one call at a time): writes
  // rows.size() x vocab_size logits (the rows not fed: anything). The rows may differ from the
  // last call's: rows fresh from prefill() join, missing ones have left for good.
  virtual void step(const std::vector<StepRow>& rows, std::vector<float>* logits) = 0;
};

class DecodeScheduler {
 public:
  // `gather`: how long a step waits at least, once one sequence asks, for the others still
  // decoding (at most half the last step's time when that is longer).
  // `alone_inline`: a sequence alone in the batch steps on its own thread (false: every step
  // goes through the scheduler's thread, as the tests of batching want).
  explicit DecodeScheduler(std::shared_ptr<DecodeBackend> backend,
                           std::chrono::microseconds gather = std::chrono::microseconds(2000),
                           bool alone_inline = true);
  ~DecodeScheduler();  // stop()
  DecodeScheduler(const DecodeScheduler&) = delete;
  DecodeScheduler& operator=(const DecodeScheduler&) = delete;

  struct Row;
  // One request's sequence in the batch; used by one thread; leaves the batch when destroyed.
  class Sequence {
   public:
    ~Sequence();
    Sequence(const Sequence&) = delete;
    Sequence& operator=(const Sequence&) = delete;
    // The logits after the prompt (vocab_size floats).
    const float* prompt_logits() const;
    // Reads `token`; blocks until the batched step that read it has run and returns the logits
    // after it (valid until the next call). A sequence alone in the batch runs its step on the
    // calling thread (no hand-off to the scheduler's thread). Throws what the step threw (Error kInternal naming
    // it), Error(kCancelled) once the scheduler has stopped.
    const float* next(TokenId token);

   private:
    friend class DecodeScheduler;
    Sequence(DecodeScheduler* owner, std::shared_ptr<Row> row) : owner_(owner), row_(row) {}
    DecodeScheduler* owner_;
    std::shared_ptr<Row> row_;
    std::vector<float> logits_;
  };

  // Prefills `prompt_ids` on the calling thread and joins the batch. Throws what the backend's
  // prefill throws, Error(kCancelled) after stop().
  std::unique_ptr<Sequence> open(const std::vector<TokenId>& prompt_ids);
  // Ends the loop once no sequence is left; open() throws from now on.
  void stop();

  int64_t vocab_size() const { return vocab_; }
  // Statistics: batched steps run and rows they read (rows / steps = the mean batch).
  int64_t steps() const;
  int64_t rows_read() const;

 private:
  void loop();
  std::shared_ptr<DecodeBackend> backend_;
  const int64_t vocab_;
  const std::chrono::microseconds gather_;
  const bool alone_inline_;
  mutable std::mutex mu_;
  std::condition_variable wake_;   // the loop: a sequence asked, left, or stop
  std::condition_variable done_;   // the sequences: a step finished
  std::vector<std::shared_ptr<Row>> rows_;  // in the batch, in order of joining
  uint64_t next_id_ = 1;
  bool stopping_ = false;
  bool stepping_ = false;  // a step runs (on the loop's thread, or a lone sequence's own)
  int64_t steps_ = 0, rows_read_ = 0;
  std::thread thread_;
};

}  // namespace candor::serve
