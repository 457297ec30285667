// The model backend of batched decoding against the unbatched path on stories260K: sequences of
// different prompt lengths join and leave in the middle of the others' decoding, some skip
// steps (not fed), a long one leaves padding behind (the rows are packed), one outgrows the
// cache's first capacity (reallocated); every row's logits after every token equal those of the
// same sequence decoded alone with its own KV cache (log-probabilities within float rounding; see
// expect_near).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

#include "serve/decode_model.h"
#include "test_util.h"

namespace candor::serve {
namespace {

std::vector<float> log_softmax(const float* x, int64_t n) {
  const float mx = *std::max_element(x, x + n);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(x[i]) - mx);
  const float lse = mx + static_cast<float>(std::log(sum));
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = x[i] - lse;
  return out;
}

// One sequence decoded alone: the log-probabilities after the prompt and after each token.
std::vector<std::vector<float>> alone(const Model& m, const std::vector<TokenId>& prompt,
                                      const std::vector<TokenId>& tokens) {
  at::NoGradGuard no_grad;
  const int64_t V = m.config().vocab_size;
  KVCache cache = m.new_cache(1, 0);
  std::vector<std::vector<float>> out;
  ForwardArgs a;
  a.tokens = at::tensor(std::vector<int64_t>(prompt.begin(), prompt.end()), at::kLong).view({1, -1});
  a.cache = &cache;
  a.last_only = true;
  at::Tensor l = m.forward(a).contiguous();
  out.push_back(log_softmax(l.data_ptr<float>(), V));
  for (TokenId t : tokens) {
    ForwardArgs b;
    b.tokens = at::full({1, 1}, static_cast<int64_t>(t), at::kLong);
    b.cache = &cache;
    b.last_only = true;
    l = m.forward(b).contiguous();
    out.push_back(log_softmax(l.data_ptr<float>(), V));
  }
  return out;
}

std::vector<TokenId> some_tokens(int n, int64_t vocab, uint64_t seed) {
  std::vector<TokenId> t;
  for (int i = 0; i < n; ++i) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    t.push_back(static_cast<TokenId>(3 + (seed >> 33) % static_cast<uint64_t>(vocab - 3)));
  }
  return t;
}

void expect_near(const std::vector<float>& got, const std::vector<float>& want,
                 const std::string& what) {
  // The likely tokens (what a request samples and sees as top log-probabilities) within 2.5e-5
  // (measured: up to 1.2e-5), every token within 1e-5 relative: a batched product, and an
  // attention whose masked padding columns shift BLAS's blocking, sum in another order than a
  // single unpadded row (float ulps, compounded over the layers). The service's end-to-end test
  // (server_test: Serve.BatchedDecoding*) holds the sampled tokens' log-probabilities to 1e-5.
  ASSERT_EQ(got.size(), want.size()) << what;
  float worst_likely = 0, worst_relative = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const float d = std::abs(got[i] - want[i]);
    if (want[i] >= -6.0f) worst_likely = std::max(worst_likely, d);
    worst_relative = std::max(worst_relative, d / std::max(1.0f, std::abs(want[i])));
  }
  EXPECT_LE(worst_likely, 2.5e-5f) << what;
  EXPECT_LE(worst_relative, 1e-5f) << what;
}

struct Plan {
  int join_at;                 // the step at which the sequence joins
  int prompt_len, n_tokens;    // prompt and tokens it reads
  std::vector<int> skips;      // steps (counted from its join) at which it reads nothing
};

// Runs `plans` through one backend step by step and checks every row against alone().
void run_plans(const Model& m, const std::vector<Plan>& plans, DecodeCacheStats* stats) {
  const int64_t V = m.config().vocab_size;
  auto backend = model_decode_backend(m, 1);
  struct Live {
    uint64_t id;
    std::unique_ptr<DecodeSequence> seq;
    std::vector<TokenId> tokens;
    std::vector<std::vector<float>> want;
    int read = 0, age = 0;
  };
  std::map<size_t, Live> live;
  std::vector<bool> done(plans.size(), false);
  std::vector<float> logits;
  for (int step = 0; step < 2000 && !std::all_of(done.begin(), done.end(), [](bool d) { return d; });
       ++step) {
    for (size_t i = 0; i < plans.size(); ++i) {
      if (plans[i].join_at != step) continue;
      Live l;
      l.id = 100 + i;
      const auto prompt = some_tokens(plans[i].prompt_len, V, 7 + i);
      l.tokens = some_tokens(plans[i].n_tokens, V, 1000 + i);
      l.want = alone(m, prompt, l.tokens);
      std::vector<float> first;
      l.seq = backend->prefill(prompt, &first);
      expect_near(log_softmax(first.data(), V), l.want[0], "prefill of sequence " + std::to_string(i));
      live[i] = std::move(l);
    }
    std::vector<StepRow> rows;
    std::vector<size_t> who;
    for (auto& [i, l] : live) {
      const Plan& p = plans[i];
      const bool skip = std::find(p.skips.begin(), p.skips.end(), l.age) != p.skips.end();
      rows.push_back({l.id, l.seq.get(), skip ? 0 : l.tokens[static_cast<size_t>(l.read)], !skip});
      who.push_back(i);
      ++l.age;
    }
    if (rows.empty()) continue;
    if (std::none_of(rows.begin(), rows.end(), [](const StepRow& r) { return r.fed; })) continue;
    backend->step(rows, &logits);
    ASSERT_GE(logits.size(), rows.size() * static_cast<size_t>(V));
    for (size_t k = 0; k < rows.size(); ++k) {
      if (!rows[k].fed) continue;
      Live& l = live[who[k]];
      ++l.read;
      expect_near(log_softmax(logits.data() + k * V, V), l.want[static_cast<size_t>(l.read)],
                  "sequence " + std::to_string(who[k]) + " after token " + std::to_string(l.read) +
                      " (step " + std::to_string(step) + ")");
      if (l.read == static_cast<int>(l.tokens.size())) {
        done[who[k]] = true;
        live.erase(who[k]);  // leaves: missing from the next step's rows
      }
    }
  }
  EXPECT_TRUE(std::all_of(done.begin(), done.end(), [](bool d) { return d; }));
  *stats = decode_cache_stats(*backend);
}

TEST(ModelDecodeBackend, JoinsAndLeavesMidDecodingGiveEachRowItsLogitsAlone) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  const Model& m = testing::stories260k();
  DecodeCacheStats stats;
  run_plans(m,
            {
                {0, 3, 12, {2, 3}},   // joins first; skips two steps
                {0, 11, 5, {}},       // leaves early: its slot is taken by sequence 3
                {4, 1, 9, {0, 5}},    // a one-token prompt, joining mid-run
                {7, 20, 6, {}},       // a prompt longer than the cache so far
                {7, 2, 14, {1}},      // joins in the same step
                {12, 5, 3, {}},       // joins while others leave
            },
            &stats);
  EXPECT_EQ(stats.packs, 0);
}

TEST(ModelDecodeBackend, PackingAndGrowingKeepEveryRowExact) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  const Model& m = testing::stories260k();
  ASSERT_GE(m.config().max_seq_len, 300);
  DecodeCacheStats stats;
  run_plans(m,
            {
                {0, 120, 2, {}},       // a long prompt that leaves padding behind it
                {0, 4, 150, {10, 11}},  // decodes on: the padding makes the rows pack
                {3, 2, 60, {}},
                {20, 250, 30, {}},     // beyond the first capacity (256): the cache grows
                {40, 6, 8, {}},
            },
            &stats);
  EXPECT_GT(stats.packs, 0);
  EXPECT_GT(stats.reallocations, 1);  // the first allocation, then a longer context
}

}  // namespace
}  // namespace candor::serve
