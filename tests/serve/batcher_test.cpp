// The service's concurrency without a model: the decode scheduler (sequences of concurrent
// requests decoded in one batched step), the admission gate and the metrics, driven from many
// threads. No libtorch and no test_util.h: scripts/tsan.sh builds this file with
// ThreadSanitizer (cmake/tsan), and test_serve runs it in the normal build.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "candor/error.h"
#include "serve/batcher.h"
#include "serve/metrics.h"

namespace candor::serve {
namespace {

constexpr int64_t kVocab = 23;

uint64_t mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The "model": logits that are a pseudo-random function of a sequence's whole history (prompt and
// every token read), so a row mix-up, a lost or a doubled token changes what follows.
std::vector<float> logits_of(const std::vector<TokenId>& history) {
  uint64_t h = 1469598103934665603ull;
  for (TokenId t : history) h = (h ^ static_cast<uint64_t>(t)) * 1099511628211ull;
  std::vector<float> out(kVocab);
  for (int64_t v = 0; v < kVocab; ++v)
    out[v] = static_cast<float>(mix(h + static_cast<uint64_t>(v)) >> 40) / 16777216.0f;
  return out;
}

TokenId argmax(const float* logits) {
  return static_cast<TokenId>(std::max_element(logits, logits + kVocab) - logits);
}

struct FakeSequence : DecodeSequence {
  std::vector<TokenId> history;  // until the sequence joins the batch
};

// A backend that keeps its "batched cache" (each row's history) the way the model's does: rows
// join from their prefilled state and leave for good; it checks that steps never overlap and
// that a row id never comes back.
class FakeBackend : public DecodeBackend {
 public:
  int64_t vocab_size() const override { return kVocab; }
  std::unique_ptr<DecodeSequence> prefill(const std::vector<TokenId>& prompt,
                                          std::vector<float>* logits) const override {
    auto s = std::make_unique<FakeSequence>();
    s->history = prompt;
    *logits = logits_of(prompt);
    return s;
  }
  void step(const std::vector<StepRow>& rows, std::vector<float>* logits) override {
    if (busy_.exchange(true)) overlapped = true;
    ++steps;
    if (fail_at_step > 0 && steps == fail_at_step) {
      busy_ = false;
      throw Error(ErrorCode::kInternal, "the fake backend failed on purpose");
    }
    std::map<uint64_t, std::vector<TokenId>> now;
    for (const StepRow& r : rows) {
      auto it = batch_.find(r.id);
      if (it != batch_.end()) {
        now[r.id] = std::move(it->second);
      } else {
        if (gone_.count(r.id) != 0) came_back = true;
        now[r.id] = static_cast<FakeSequence*>(r.sequence)->history;
      }
    }
    for (const auto& [id, h] : batch_)
      if (now.count(id) == 0) gone_.insert(id);
    batch_ = std::move(now);
    logits->assign(rows.size() * kVocab, -1.0f);
    for (size_t i = 0; i < rows.size(); ++i) {
      if (!rows[i].fed) continue;
      std::vector<TokenId>& h = batch_[rows[i].id];
      h.push_back(rows[i].token);
      const std::vector<float> l = logits_of(h);
      std::copy(l.begin(), l.end(), logits->begin() + static_cast<int64_t>(i) * kVocab);
    }
    max_rows = std::max<int64_t>(max_rows, static_cast<int64_t>(rows.size()));
    busy_ = false;
  }

  // Read by the test after the threads are joined.
  int64_t steps = 0, max_rows = 0, fail_at_step = 0;
  bool overlapped = false, came_back = false;

 private:
  std::atomic<bool> busy_{false};
  std::map<uint64_t, std::vector<TokenId>> batch_;
  std::set<uint64_t> gone_;
};

std::vector<TokenId> prompt_of(int seed) {
  std::vector<TokenId> p(1 + static_cast<size_t>(mix(seed) % 7));
  for (size_t i = 0; i < p.size(); ++i)
    p[i] = static_cast<TokenId>(mix(seed * 31 + static_cast<int>(i)) % kVocab);
  return p;
}

// Greedy decoding alone: the reference.
std::vector<TokenId> alone(const std::vector<TokenId>& prompt, int n) {
  std::vector<TokenId> h = prompt, out;
  for (int i = 0; i < n; ++i) {
    const TokenId t = argmax(logits_of(h).data());
    out.push_back(t);
    h.push_back(t);
  }
  return out;
}

// Greedy decoding through the scheduler.
std::vector<TokenId> through(DecodeScheduler& s, const std::vector<TokenId>& prompt, int n) {
  auto seq = s.open(prompt);
  const float* logits = seq->prompt_logits();
  std::vector<TokenId> out;
  for (int i = 0; i < n; ++i) {
    const TokenId t = argmax(logits);
    out.push_back(t);
    if (i + 1 < n) logits = seq->next(t);
  }
  return out;
}

// Concurrent sequences of different lengths, joining and leaving at different times, each get
// what they get alone; the steps never overlap, rows never come back, and steps are batched.
TEST(DecodeScheduler, ConcurrentSequencesDecodeAsAloneInSharedSteps) {
  auto backend = std::make_shared<FakeBackend>();
  // Every step through the scheduler: the fake steps are instant, so a sequence alone would
  // otherwise finish on its own thread before the next one joins.
  DecodeScheduler s(backend, std::chrono::milliseconds(200), /*alone_inline=*/false);
  constexpr int kThreads = 6, kEach = 12;
  std::vector<std::vector<std::pair<int, std::vector<TokenId>>>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&s, &got, t] {
      for (int k = 0; k < kEach; ++k) {
        const int id = t * 1000 + k;
        const int n = 1 + static_cast<int>(mix(id) % 30);
        got[t].emplace_back(id, through(s, prompt_of(id), n));
      }
    });
  for (auto& th : threads) th.join();
  s.stop();
  for (int t = 0; t < kThreads; ++t)
    for (const auto& [id, tokens] : got[t])
      EXPECT_EQ(tokens, alone(prompt_of(id), static_cast<int>(tokens.size()))) << id;
  EXPECT_FALSE(backend->overlapped);
  EXPECT_FALSE(backend->came_back);
  EXPECT_EQ(s.steps(), backend->steps);
  // Six sequences in lock-step most of the time: far fewer steps than tokens read.
  EXPECT_GT(backend->max_rows, 1);
  EXPECT_LT(s.steps() * 2, s.rows_read()) << s.steps() << " steps, " << s.rows_read() << " rows";
}

// A sequence alone in the batch steps on its own thread: the same tokens, one row per step, the
// steps counted; a second one joining afterwards goes through the scheduler as before.
TEST(DecodeScheduler, ALoneSequenceStepsInlineAndDecodesAsAlone) {
  auto backend = std::make_shared<FakeBackend>();
  DecodeScheduler s(backend, std::chrono::milliseconds(1));
  EXPECT_EQ(through(s, prompt_of(7), 20), alone(prompt_of(7), 20));
  EXPECT_EQ(through(s, prompt_of(8), 5), alone(prompt_of(8), 5));
  s.stop();
  EXPECT_EQ(s.steps(), backend->steps);
  EXPECT_EQ(s.rows_read(), s.steps());
  EXPECT_EQ(backend->max_rows, 1);
  EXPECT_FALSE(backend->overlapped);
}

// A sequence that stops asking (its client is slow) does not hold the others: after the gather
// time they step without it, and it still decodes as alone when it comes back.
TEST(DecodeScheduler, ASlowSequenceKeepsItsPlaceWithoutHoldingTheOthers) {
  auto backend = std::make_shared<FakeBackend>();
  DecodeScheduler s(backend, std::chrono::milliseconds(1));
  const std::vector<TokenId> slow_prompt = prompt_of(7), fast_prompt = prompt_of(8);
  auto slow = s.open(slow_prompt);
  std::vector<TokenId> fast = through(s, fast_prompt, 20);  // 19 steps while `slow` waits
  EXPECT_EQ(fast, alone(fast_prompt, 20));
  std::vector<TokenId> mine;
  const float* logits = slow->prompt_logits();
  for (int i = 0; i < 5; ++i) {
    mine.push_back(argmax(logits));
    if (i + 1 < 5) logits = slow->next(mine.back());
  }
  slow.reset();
  EXPECT_EQ(mine, alone(slow_prompt, 5));
  s.stop();
  EXPECT_GE(s.steps(), 19 + 4);
  EXPECT_FALSE(backend->came_back);
}

// A failing step fails the sequences it read, with the backend's message; the others go on.
TEST(DecodeScheduler, AFailedStepFailsItsSequencesOnly) {
  auto backend = std::make_shared<FakeBackend>();
  backend->fail_at_step = 3;
  DecodeScheduler s(backend, std::chrono::milliseconds(1));
  auto seq = s.open(prompt_of(1));
  const float* logits = seq->prompt_logits();
  int failed_at = -1;
  for (int i = 0; i < 6 && failed_at < 0; ++i) {
    try {
      logits = seq->next(argmax(logits));
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInternal);
      EXPECT_NE(std::string(e.what()).find("failed on purpose"), std::string::npos) << e.what();
      failed_at = i;
    }
  }
  EXPECT_EQ(failed_at, 2);
  seq.reset();
  EXPECT_EQ(through(s, prompt_of(2), 4), alone(prompt_of(2), 4));
}

// Shutdown under load: stop() while sequences decode lets every open one finish (each as
// alone), refuses new ones with kCancelled, and returns once the last has left.
TEST(DecodeScheduler, StopUnderLoadFinishesOpenSequencesAndRefusesNewOnes) {
  auto backend = std::make_shared<FakeBackend>();
  auto s = std::make_unique<DecodeScheduler>(backend, std::chrono::microseconds(500));
  constexpr int kThreads = 5;
  std::atomic<int> finished{0}, refused{0}, wrong{0};
  std::atomic<bool> started[kThreads] = {};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int k = 0; k < 1000; ++k) {  // bounded: stop() comes long before
        const int id = t * 1000 + k;
        const int n = 2 + static_cast<int>(mix(id) % 20);
        try {
          std::vector<TokenId> got = through(*s, prompt_of(id), n);
          started[t] = true;
          if (got != alone(prompt_of(id), n)) ++wrong;
          ++finished;
        } catch (const Error& e) {
          if (e.code() == ErrorCode::kCancelled) {
            ++refused;
            return;
          }
          ++wrong;
          return;
        }
      }
    });
  // Bounded wait until every thread has finished one sequence, then stop under load.
  for (int i = 0; i < 2000; ++i) {
    bool all = true;
    for (int t = 0; t < kThreads; ++t) all = all && started[t];
    if (all) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  s->stop();
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(refused, kThreads);
  EXPECT_GE(finished, kThreads);
  EXPECT_THROW(s->open(prompt_of(1)), Error);
  s.reset();
  EXPECT_FALSE(backend->overlapped);
}

// Parallel requests at the admission gate: never more than `parallel` inside, a full queue
// refuses, and every one admitted leaves.
TEST(Admission, NeverAdmitsMoreThanParallelFromManyThreads) {
  Admission gate(3, 100);
  std::atomic<int> inside{0}, most{0}, admitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 12; ++t)
    threads.emplace_back([&] {
      for (int k = 0; k < 50; ++k) {
        if (!gate.enter(std::chrono::steady_clock::now() + std::chrono::seconds(30))) continue;
        const int now = ++inside;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        ++admitted;
        std::this_thread::yield();
        --inside;
        gate.leave();
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_LE(most.load(), 3);
  EXPECT_EQ(admitted.load(), 12 * 50);
  EXPECT_EQ(gate.running(), 0);
  EXPECT_EQ(gate.waiting(), 0);

  Admission none_wait(1, 0);
  ASSERT_TRUE(none_wait.enter(std::chrono::steady_clock::now() + std::chrono::seconds(1)));
  EXPECT_FALSE(none_wait.enter(std::chrono::steady_clock::now() + std::chrono::seconds(1)));
  none_wait.leave();
}

// Metrics written from many threads while another renders: exact totals at the end.
TEST(Metrics, CountsFromManyThreadsAddUp) {
  Metrics m;
  std::atomic<bool> done{false};
  std::thread reader([&] {
    for (int i = 0; i < 10000 && !done; ++i) (void)m.render();
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&m, t] {
      for (int k = 0; k < 500; ++k) {
        m.count("candor_requests_total", {{"endpoint", "/v1/completions"}, {"status", "200"}});
        m.observe("candor_request_duration_seconds", {{"endpoint", "/v1/completions"}}, 0.003);
        m.gauge("candor_queue_depth", t);
      }
    });
  for (auto& th : threads) th.join();
  done = true;
  reader.join();
  const std::string text = m.render();
  EXPECT_NE(
      text.find("candor_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 4000"),
      std::string::npos)
      << text;
  EXPECT_NE(
      text.find("candor_request_duration_seconds_count{endpoint=\"/v1/completions\"} 4000"),
      std::string::npos)
      << text;
}

}  // namespace
}  // namespace candor::serve
