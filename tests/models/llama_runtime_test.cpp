// The runtime's invariants: KV-cache decoding equals a full forward, fork/truncate/expand act
// like fresh caches, padded batches equal solo runs, embeddings input equals token input,
// captured activations are consistent. Run on a random GQA model (no ../shared needed) and on
// stories260K when present.
#include <ATen/ATen.h>

#include <algorithm>

#include "candor/error.h"
#include "candor/model.h"
#include "test_util.h"

namespace candor {
namespace {

ModelConfig small_config() {
  ModelConfig c;
  c.dim = 48;
  c.hidden_dim = 96;
  c.n_layers = 3;
  c.n_heads = 6;
  c.n_kv_heads = 2;
  c.vocab_size = 97;
  c.max_seq_len = 64;
  c.tied_embeddings = false;
  return c;
}

std::vector<std::unique_ptr<Model>> models_under_test() {
  std::vector<std::unique_ptr<Model>> out;
  out.push_back(make_random_llama(small_config(), 7));
  if (testing::shared_has("models/stories260K/stories260K.bin")) {
    out.push_back(load_model(testing::shared_path("models/stories260K")));
  }
  return out;
}

at::Tensor random_tokens(int64_t batch, int64_t len, int64_t vocab, uint64_t seed) {
  at::Generator g = at::detail::createCPUGenerator(seed);
  return at::randint(3, vocab, {batch, len}, g, at::kLong);
}

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

// Largest difference relative to the logits' scale: max|a - b| / max(1, max|b|). Runs that
// differ only in summation order (softmax and attention over rows of different lengths) stay
// within a few float32 ulps of the largest logit: stories260K's logits reach ~15, where one ulp
// is ~1e-6, and the absolute gap measured here was up to 1.3e-5.
double scaled_diff(const at::Tensor& a, const at::Tensor& b) {
  return max_diff(a, b) / std::max(1.0, b.abs().max().item<double>());
}

TEST(LlamaRuntime, IncrementalDecodingMatchesFullForward) {
  at::NoGradGuard ng;
  for (auto& m : models_under_test()) {
    at::Tensor toks = random_tokens(2, 20, m->config().vocab_size, 1);
    at::Tensor full = m->forward_tokens(toks);
    KVCache cache = m->new_cache(2, 4);  // small: forces growth
    std::vector<at::Tensor> parts;
    int64_t pos = 0;
    for (int64_t step : {7, 1, 1, 3, 1, 7}) {
      ForwardArgs a;
      a.tokens = toks.narrow(1, pos, step);
      a.cache = &cache;
      parts.push_back(m->forward(a));
      pos += step;
    }
    ASSERT_EQ(pos, 20);
    EXPECT_EQ(cache.length(), 20);
    EXPECT_LE(scaled_diff(at::cat(parts, 1), full), 1e-5);
  }
}

TEST(LlamaRuntime, ForkedAndTruncatedCachesContinueLikeFreshOnes) {
  at::NoGradGuard ng;
  for (auto& m : models_under_test()) {
    at::Tensor a = random_tokens(1, 16, m->config().vocab_size, 2);
    at::Tensor b = random_tokens(1, 6, m->config().vocab_size, 3);
    KVCache cache = m->new_cache(1);
    ForwardArgs args;
    args.tokens = a.narrow(1, 0, 10);
    args.cache = &cache;
    m->forward(args);

    KVCache forked = cache.fork();
    args.tokens = a.narrow(1, 10, 6);
    at::Tensor cont_a = m->forward(args);  // original cache continues with a[10:]
    ForwardArgs fa;
    fa.tokens = b;
    fa.cache = &forked;
    at::Tensor cont_b = m->forward(fa);  // fork continues with b
    at::Tensor fresh_b = m->forward_tokens(at::cat({a.narrow(1, 0, 10), b}, 1)).narrow(1, 10, 6);
    EXPECT_LE(scaled_diff(cont_b, fresh_b), 1e-5) << "forked cache";
    EXPECT_LE(scaled_diff(cont_a, m->forward_tokens(a).narrow(1, 10, 6)), 1e-5)
        << "the fork must not disturb the original";

    // A fresh cache fed the same prefix and continuation runs the very same operations.
    KVCache fresh = m->new_cache(1);
    ForwardArgs fr;
    fr.tokens = a.narrow(1, 0, 10);
    fr.cache = &fresh;
    m->forward(fr);
    fr.tokens = b;
    at::Tensor fresh_cached_b = m->forward(fr);
    EXPECT_EQ(max_diff(cont_b, fresh_cached_b), 0.0) << "forked cache vs fresh cache";

    cache.truncate(10);  // forget a[10:], continue with b
    args.tokens = b;
    at::Tensor trunc_b = m->forward(args);
    EXPECT_LE(scaled_diff(trunc_b, fresh_b), 1e-5) << "truncated cache";
    EXPECT_EQ(max_diff(trunc_b, fresh_cached_b), 0.0) << "truncated cache vs fresh cache";
    EXPECT_THROW(cache.truncate(99), Error);
  }
}

TEST(LlamaRuntime, ExpandedPrefixCacheServesEveryRow) {
  at::NoGradGuard ng;
  for (auto& m : models_under_test()) {
    at::Tensor prefix = random_tokens(1, 8, m->config().vocab_size, 4);
    at::Tensor tails = random_tokens(3, 4, m->config().vocab_size, 5);
    KVCache cache = m->new_cache(1);
    ForwardArgs args;
    args.tokens = prefix;
    args.cache = &cache;
    m->forward(args);
    KVCache batch = cache.expand(3);
    ForwardArgs bt;
    bt.tokens = tails;
    bt.cache = &batch;
    at::Tensor got = m->forward(bt);
    for (int64_t r = 0; r < 3; ++r) {
      at::Tensor solo =
          m->forward_tokens(at::cat({prefix, tails.narrow(0, r, 1)}, 1)).narrow(1, 8, 4);
      // Both sides are the fused path, but their products round differently (some of the
      // prefix's 8-row products fall below vec::kSmallProduct and run on the vector kernels,
      // the 12 rows of `solo` go through sgemm): a few ulps of the largest logit
      // (stories260K's are about 16, where an ulp is 1.9e-6).
      const double tol = 2e-6 * std::max(1.0, solo.abs().max().item<double>());
      EXPECT_LE(max_diff(got.narrow(0, r, 1), solo), tol) << "row " << r;
    }
  }
}

TEST(LlamaRuntime, PaddedBatchEqualsEachSequenceAlone) {
  at::NoGradGuard ng;
  for (auto& m : models_under_test()) {
    std::vector<int64_t> lens = {5, 12, 9};
    const int64_t T = 12;
    for (bool left : {false, true}) {
      at::Tensor toks = at::zeros({3, T}, at::kLong);
      at::Tensor mask = at::zeros({3, T}, at::kLong);
      std::vector<at::Tensor> seqs;
      for (int64_t r = 0; r < 3; ++r) {
        at::Tensor s = random_tokens(1, lens[r], m->config().vocab_size, 10 + r)[0];
        seqs.push_back(s);
        int64_t off = left ? T - lens[r] : 0;
        toks[r].narrow(0, off, lens[r]).copy_(s);
        mask[r].narrow(0, off, lens[r]).fill_(1);
      }
      at::Tensor batch = m->forward_tokens(toks, mask);
      for (int64_t r = 0; r < 3; ++r) {
        at::Tensor solo = m->forward_tokens(seqs[r].unsqueeze(0))[0];
        int64_t off = left ? T - lens[r] : 0;
        EXPECT_LE(scaled_diff(batch[r].narrow(0, off, lens[r]), solo), 1e-5)
            << (left ? "left" : "right") << " padding, row " << r;
      }
      // Decoding on from the padded batch continues each row like its solo run.
      KVCache cache = m->new_cache(3);
      ForwardArgs a;
      a.tokens = toks;
      a.attention_mask = mask;
      a.cache = &cache;
      m->forward(a);
      at::Tensor next = random_tokens(3, 1, m->config().vocab_size, 20);
      a.tokens = next;
      a.attention_mask = at::Tensor();
      at::Tensor stepped = m->forward(a);
      for (int64_t r = 0; r < 3; ++r) {
        at::Tensor solo = m->forward_tokens(at::cat({seqs[r], next[r]}).unsqueeze(0))[0];
        EXPECT_LE(scaled_diff(stepped[r][0], solo[lens[r]]), 1e-5)
            << (left ? "left" : "right") << " padding, decode row " << r;
      }
    }
  }
}

TEST(LlamaRuntime, EmbeddingInputEqualsTokenInputAndIsDifferentiable) {
  for (auto& m : models_under_test()) {
    at::Tensor toks = random_tokens(1, 10, m->config().vocab_size, 6);
    at::Tensor ref;
    {
      at::NoGradGuard ng;  // the libtorch path, as the gradient pass below runs
      ForwardArgs t;
      t.tokens = toks;
      t.libtorch_path = true;
      ref = m->forward(t);
    }
    at::Tensor emb = m->embed(toks).detach().clone().requires_grad_(true);
    ForwardArgs a;
    a.embeddings = emb;
    at::Tensor out = m->forward(a);
    EXPECT_LE(max_diff(out.detach(), ref), 1e-6);
    at::Tensor lp = at::log_softmax(out[0][9], -1)[5];
    lp.backward();
    ASSERT_TRUE(emb.grad().defined());
    EXPECT_GT(emb.grad().abs().sum().item<double>(), 0.0);
    // A causal model: the output at the last position cannot depend on nothing but itself, and
    // no gradient may flow from position 4's output to later inputs.
    at::Tensor emb2 = m->embed(toks).detach().clone().requires_grad_(true);
    a.embeddings = emb2;
    m->forward(a)[0][4].sum().backward();
    EXPECT_EQ(emb2.grad()[0].narrow(0, 5, 5).abs().sum().item<double>(), 0.0);
  }
}

TEST(LlamaRuntime, CapturedActivationsAreConsistent) {
  at::NoGradGuard ng;
  for (auto& m : models_under_test()) {
    const auto& c = m->config();
    at::Tensor toks = random_tokens(2, 9, c.vocab_size, 8);
    Activations act;
    ForwardArgs a;
    a.tokens = toks;
    a.capture = &act;
    a.capture_options.attention = true;
    a.capture_options.residual = true;
    at::Tensor logits = m->forward(a);
    ASSERT_EQ(static_cast<int64_t>(act.attention.size()), c.n_layers);
    ASSERT_EQ(static_cast<int64_t>(act.residual.size()), c.n_layers);
    for (const auto& att : act.attention) {
      EXPECT_EQ(att.sizes(), (at::IntArrayRef{2, c.n_heads, 9, 9}));
      EXPECT_LE(max_diff(att.sum(-1), at::ones({2, c.n_heads, 9})), 1e-5);
      EXPECT_EQ(att.triu(1).abs().sum().item<double>(), 0.0) << "attention must be causal";
    }
    EXPECT_LE(max_diff(m->unembed(act.residual.back(), true), logits), 1e-5);
    EXPECT_EQ(act.embeddings.sizes(), (at::IntArrayRef{2, 9, c.dim}));
  }
}

TEST(LlamaRuntime, BadShapesAndIdsAreClearErrors) {
  auto m = make_random_llama(small_config(), 1);
  ForwardArgs a;
  EXPECT_THROW(m->forward(a), Error);
  a.tokens = at::full({1, 3}, 500, at::kLong);
  try {
    m->forward(a);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("outside the vocabulary"));
  }
  a.tokens = at::ones({1, 65}, at::kLong);
  try {
    m->forward(a);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kResourceExhausted);
  }
  a.tokens = at::Tensor();
  a.embeddings = at::zeros({1, 3, 5});
  EXPECT_THROW(m->forward(a), Error);
}

}  // namespace
}  // namespace candor
