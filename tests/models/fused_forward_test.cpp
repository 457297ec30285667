// The fused no-grad forward (src/models/fused/) against the libtorch path on every fixture of
// the Llama family and on stories260K: logits within 1e-5 of the largest logit in full passes,
// padded batches (padding on the left, on the right and in the middle once decoding continues),
// KV-cache continuations (caches written by one path and read by the other), a batch
// continuing a shared prefix as MaskScorer runs it, and the positions asked for only.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "candor/model.h"
#include "fused_fixtures.h"
#include "test_util.h"

namespace candor {
namespace {

const std::vector<std::string>& kFixtures = testing::kLlamaFamilyFixtures;
using testing::fixture;
using testing::rel_diff;
using testing::sequence;

// The same arguments through both paths (each with its own fork of the cache when given).
struct Both {
  at::Tensor fused, reference;
};
Both run_both(const Model& m, ForwardArgs a) {
  at::NoGradGuard ng;
  KVCache* original = a.cache;
  KVCache fc, rc;
  if (original) {
    fc = original->fork();
    rc = original->fork();
  }
  ForwardArgs f = a, r = a;
  if (original) {
    f.cache = &fc;
    r.cache = &rc;
  }
  r.libtorch_path = true;
  Both out{m.forward(f), m.forward(r)};
  if (original) {
    // The caches hold the same keys and values afterwards.
    EXPECT_EQ(fc.length(), rc.length());
    for (int64_t l = 0; l < m.config().n_layers; ++l) {
      const double scale = std::max(rc.keys(l).abs().max().item<double>(), 1e-30);
      EXPECT_LE((fc.keys(l) - rc.keys(l)).abs().max().item<double>() / scale, 1e-5)
          << "layer " << l;
      EXPECT_LE((fc.values(l) - rc.values(l)).abs().max().item<double>(),
                1e-5 * std::max(rc.values(l).abs().max().item<double>(), 1e-30));
    }
    EXPECT_TRUE(fc.key_mask().equal(rc.key_mask()));
    EXPECT_TRUE(fc.next_position().equal(rc.next_position()));
    *original = fc;
  }
  return out;
}

at::Tensor ids(std::vector<int64_t> v, int64_t rows) {
  const int64_t n = static_cast<int64_t>(v.size());
  return at::tensor(v, at::kLong).view({rows, n / rows});
}

void check_model(const Model& m, const std::string& name) {
  SCOPED_TRACE(name);
  ASSERT_EQ(m.forward_path().rfind("fused", 0), 0u) << m.forward_path();
  const int64_t V = m.config().vocab_size, T = std::min<int64_t>(12, m.config().max_seq_len);
  constexpr double kTol = 1e-5;

  // A full pass, every position.
  ForwardArgs a;
  a.tokens = ids(sequence(T, V, 1), 1);
  Both full = run_both(m, a);
  EXPECT_LE(rel_diff(full.fused, full.reference), kTol);
  // The fused path is the one running: the logits are not bit-identical to libtorch's.
  // (Equal logits would mean the comparison compares the libtorch path with itself.)

  // The last position, and chosen positions.
  a.last_only = true;
  Both last = run_both(m, a);
  EXPECT_LE(rel_diff(last.fused, last.reference), kTol);
  EXPECT_LE(rel_diff(last.fused[0][0], full.reference[0][T - 1]), kTol);
  a.last_only = false;
  a.output_positions = at::tensor(std::vector<int64_t>{T - 1, 2, 5}, at::kLong);
  Both some = run_both(m, a);
  EXPECT_LE(rel_diff(some.fused, some.reference), kTol);
  EXPECT_LE(rel_diff(some.fused[0][1], full.reference[0][2]), kTol);

  // A padded batch: row 0 left-padded by 3, row 1 right-padded by 2, row 2 full.
  std::vector<int64_t> toks, mask;
  for (int64_t r = 0; r < 3; ++r) {
    std::vector<int64_t> s = sequence(T, V, 10 + r);
    for (int64_t t = 0; t < T; ++t) {
      const bool real = r == 0 ? t >= 3 : r == 1 ? t < T - 2 : true;
      toks.push_back(real ? s[t] : 0);
      mask.push_back(real);
    }
  }
  ForwardArgs pb;
  pb.tokens = ids(toks, 3);
  pb.attention_mask = ids(mask, 3);
  Both padded = run_both(m, pb);
  EXPECT_LE(rel_diff(padded.fused, padded.reference), kTol);

  // KV cache: the padded batch as a prefix, then two single-token steps and a 3-token chunk
  // (the right-padded row then has padding in the middle).
  KVCache cache = m.new_cache(3);
  pb.cache = &cache;
  run_both(m, pb);
  for (int step = 0; step < 2; ++step) {
    ForwardArgs s;
    s.cache = &cache;
    s.tokens = ids({5 + step, 7 + step, 9 + step}, 3);
    Both b = run_both(m, s);
    EXPECT_LE(rel_diff(b.fused, b.reference), kTol) << "step " << step;
  }
  ForwardArgs chunk;
  chunk.cache = &cache;
  chunk.tokens = ids({4, 5, 6, 7, 8, 9, 10, 11, 12}, 3);
  chunk.attention_mask = ids({1, 1, 1, 0, 1, 1, 1, 1, 1}, 3);
  Both cb = run_both(m, chunk);
  EXPECT_LE(rel_diff(cb.fused, cb.reference), kTol);

  // Caches cross between the paths: a prefix through the fused path, the rest through
  // libtorch, equals the full libtorch pass.
  {
    at::NoGradGuard ng;
    std::vector<int64_t> s = sequence(T, V, 3);
    KVCache c = m.new_cache(1);
    ForwardArgs p1;
    p1.cache = &c;
    p1.tokens = ids(std::vector<int64_t>(s.begin(), s.begin() + T / 2), 1);
    m.forward(p1);
    ForwardArgs p2;
    p2.cache = &c;
    p2.libtorch_path = true;
    p2.tokens = ids(std::vector<int64_t>(s.begin() + T / 2, s.end()), 1);
    at::Tensor rest = m.forward(p2)[0];
    ForwardArgs whole;
    whole.tokens = ids(s, 1);
    whole.libtorch_path = true;
    EXPECT_LE(rel_diff(rest, m.forward(whole)[0].narrow(0, T / 2, T - T / 2)), kTol);
  }

  // MaskScorer's batch: a batch-1 prefix expanded to 4 rows, truncated, continued from input
  // embeddings that differ per row, logits at two positions.
  {
    at::NoGradGuard ng;
    std::vector<int64_t> s = sequence(T, V, 4);
    at::Tensor emb = m.embed(ids(s, 1));  // [1, T, D]
    KVCache base = m.new_cache(1, T);
    ForwardArgs p;
    p.cache = &base;
    p.embeddings = emb;
    m.forward(p);
    const int64_t from = T / 3;
    KVCache rows = base.expand(4);
    rows.truncate(from);
    at::Tensor e = emb.narrow(1, from, T - from).repeat({4, 1, 1}).clone();
    e[1][0].zero_();
    e[2].mul_(0.5);
    e[3][T - from - 1].zero_();
    ForwardArgs c;
    c.cache = &rows;
    c.embeddings = e;
    c.output_positions = at::tensor(std::vector<int64_t>{0, T - from - 1}, at::kLong);
    Both b = run_both(m, c);
    EXPECT_LE(rel_diff(b.fused, b.reference), kTol);
  }
}

TEST(FusedForward, MatchesLibtorchOnEveryLlamaFamilyFixture) {
  for (const std::string& name : kFixtures) {
    auto model = load_model(fixture(name));
    check_model(*model, name);
  }
}

TEST(FusedForward, MatchesLibtorchOnStories260K) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  check_model(testing::stories260k(), "stories260K");
}

// A GPT-2-small-sized layer stack (dim 768, hidden 2048, 12 heads, 2 layers): sgemm blocking
// and longer rows than the fixtures have.
TEST(FusedForward, MatchesLibtorchOnAWideRandomLlama) {
  ModelConfig c;
  c.dim = 768;
  c.hidden_dim = 2048;
  c.n_layers = 2;
  c.n_heads = 12;
  c.n_kv_heads = 4;
  c.vocab_size = 1000;
  c.max_seq_len = 128;
  auto model = make_random_llama(c, 7);
  at::NoGradGuard ng;
  ForwardArgs a;
  a.tokens = ids(sequence(2 * 40, 1000, 9), 2);
  Both b = run_both(*model, a);
  EXPECT_LE(rel_diff(b.fused, b.reference), 1e-5);
}

// Where the fused path does not apply, the libtorch path runs and forward_path() says why.
TEST(FusedForward, FallsBackAndSaysWhy) {
  LoadOptions lo;
  lo.compute_dtype = "bf16";
  auto bf16 = load_model(fixture("llama"), lo);
  EXPECT_EQ(bf16->forward_path().rfind("libtorch", 0), 0u) << bf16->forward_path();
  EXPECT_NE(bf16->forward_path().find("bf16"), std::string::npos) << bf16->forward_path();
  auto bert = load_model(fixture("bert"));
  EXPECT_EQ(bert->forward_path(), "libtorch");
  // Capture and gradients take the libtorch path; their logits agree with the fused ones.
  auto model = load_model(fixture("llama"));
  ForwardArgs a;
  a.tokens = ids(sequence(8, 96, 2), 1);
  Activations act;
  a.capture = &act;
  a.capture_options.residual = true;
  at::Tensor captured = model->forward(a);  // grad mode on: libtorch
  EXPECT_EQ(act.residual.size(), 2u);
  at::NoGradGuard ng;
  a.capture = nullptr;
  EXPECT_LE(rel_diff(model->forward(a), captured), 1e-5);
  // A bad output position is refused by name.
  a.output_positions = at::tensor(std::vector<int64_t>{8}, at::kLong);
  EXPECT_NE(testing::error_of([&] { model->forward(a); }).find("output position 8"),
            std::string::npos);
}

}  // namespace
}  // namespace candor
