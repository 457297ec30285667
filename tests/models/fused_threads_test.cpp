// The fused kernels' thread pool (src/models/fused/pool.*): parallel_for covers its range once
// in chunks of the grain, nests and shares the pool safely, passes exceptions on; the split
// products (sgemm by columns or rows, the quantized products by panels or rows) and whole
// fused passes (logits, KV cache steps, gradients to the embeddings) agree on 1, 2 and 4
// threads within float rounding (OpenBLAS's kernels round a block of columns differently from
// the whole: a few ulps, measured), and really ran on several; OpenBLAS is held at one thread while
// a pass runs on the pool and given back its count afterwards.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "candor/model.h"
#include "candor/runtime.h"
#include "models/formats/gguf.h"
#include "models/fused/gemm.h"
#include "models/fused/pool.h"
#include "models/fused/qgemm.h"
#include "test_util.h"

namespace candor {
namespace {

using fused::parallel_for;
using fused::PassThreads;

TEST(FusedPool, ParallelForCoversTheRangeOnceInChunksOfTheGrain) {
  for (int threads : {1, 2, 3, 4}) {
    for (int64_t n : {1, 7, 64, 1000}) {
      for (int64_t grain : {1, 16, 100}) {
        SCOPED_TRACE("threads " + std::to_string(threads) + ", n " + std::to_string(n) +
                     ", grain " + std::to_string(grain));
        PassThreads pass(threads);
        std::vector<int> hits(static_cast<size_t>(n), 0);
        std::mutex m;
        std::vector<std::pair<int64_t, int64_t>> chunks;
        std::atomic<int> bad_slot{0};
        parallel_for(n, grain, [&](int64_t b, int64_t e, int slot) {
          if (slot < 0 || slot >= threads) ++bad_slot;
          for (int64_t i = b; i < e; ++i) ++hits[static_cast<size_t>(i)];
          std::lock_guard<std::mutex> lock(m);
          chunks.push_back({b, e});
        });
        EXPECT_EQ(bad_slot.load(), 0);
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)], 1) << i;
        EXPECT_LE(static_cast<int>(chunks.size()), threads);
        for (const auto& [b, e] : chunks) {
          EXPECT_EQ(b % grain, 0);
          EXPECT_TRUE(e == n || e % grain == 0);
        }
      }
    }
  }
}

TEST(FusedPool, RunsOnSeveralThreadsAndNestsOnTheCallingThread) {
  PassThreads pass(2);
  ASSERT_EQ(fused::pass_threads(), 2);
  const int64_t before = fused::pool_splits();
  std::mutex m;
  std::vector<std::thread::id> ids;
  std::atomic<int> inner_threads{0};
  parallel_for(2, 1, [&](int64_t, int64_t, int) {
    {
      std::lock_guard<std::mutex> lock(m);
      ids.push_back(std::this_thread::get_id());
    }
    // Inside a split: one thread, and a nested loop runs here.
    inner_threads += fused::pass_threads();
    const std::thread::id self = std::this_thread::get_id();
    parallel_for(100, 1, [&](int64_t b, int64_t e, int slot) {
      EXPECT_EQ(b, 0);
      EXPECT_EQ(e, 100);
      EXPECT_EQ(slot, 0);
      EXPECT_EQ(std::this_thread::get_id(), self);
    });
  });
  EXPECT_EQ(fused::pool_splits(), before + 1);
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_NE(ids[0], ids[1]);
  EXPECT_EQ(inner_threads.load(), 2);
  {
    PassThreads one(1);  // nested: keeps the outer count
    EXPECT_EQ(one.threads(), 2);
  }
  EXPECT_EQ(fused::pass_threads(), 2);
}

TEST(FusedPool, OneThreadNeverUsesThePool) {
  PassThreads pass(1);
  const int64_t before = fused::pool_splits();
  parallel_for(1000, 1, [&](int64_t b, int64_t e, int) {
    EXPECT_EQ(b, 0);
    EXPECT_EQ(e, 1000);
  });
  EXPECT_EQ(fused::pool_splits(), before);
}

TEST(FusedPool, TheFirstExceptionReachesTheCallerAfterEveryChunk) {
  PassThreads pass(4);
  std::atomic<int> ran{0};
  EXPECT_THROW(parallel_for(4, 1,
                            [&](int64_t b, int64_t, int) {
                              ++ran;
                              if (b == 1) throw std::runtime_error("chunk 1");
                            }),
               std::runtime_error);
  EXPECT_EQ(ran.load(), 4);
  // The pool still works afterwards.
  std::atomic<int64_t> sum{0};
  parallel_for(100, 1, [&](int64_t b, int64_t e, int) { sum += e - b; });
  EXPECT_EQ(sum.load(), 100);
}

TEST(FusedPool, PassesOnSeveralCallerThreadsShareThePoolSafely) {
  // Four threads each run splits at once: one holds the pool, the others compute on their own
  // thread; every sum comes out right. Bounded: 4 x 200 loops.
  std::vector<std::thread> callers;
  std::atomic<int> wrong{0};
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&] {
      PassThreads pass(2);
      for (int r = 0; r < 200; ++r) {
        std::vector<int64_t> v(1000, 0);
        parallel_for(1000, 10, [&](int64_t b, int64_t e, int) {
          for (int64_t i = b; i < e; ++i) v[static_cast<size_t>(i)] = i;
        });
        int64_t s = 0;
        for (int64_t x : v) s += x;
        if (s != 999 * 1000 / 2) ++wrong;
      }
    });
  }
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(FusedPool, OpenBlasIsHeldAtOneThreadDuringAPassOnThePool) {
  auto get = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  if (!get) GTEST_SKIP() << "the process's BLAS is not OpenBLAS";
  if (usable_cores() < 2) GTEST_SKIP() << "one core: OpenBLAS runs on one thread anyway";
  ThreadScope scope(2);
  ASSERT_EQ(get(), 2);
  EXPECT_EQ(fused::kernel_threads(), 2);
  {
    PassThreads pass;
    EXPECT_EQ(pass.threads(), 2);
    EXPECT_EQ(get(), 1);
    std::atomic<int> seen{0};
    parallel_for(2, 1, [&](int64_t, int64_t, int) { seen += get(); });
    EXPECT_EQ(seen.load(), 2);
  }
  EXPECT_EQ(get(), 2);  // given back
  {
    ThreadScope one(1);
    EXPECT_EQ(fused::kernel_threads(), 1);
  }
}

// ---- split products: the same values on any number of threads --------------------------------

// |a - b| <= 1e-6 x (the largest |b|): a few float roundings of the values.
double rel(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(b.abs().max().item<double>(), 1e-30);
}

// Runs `f` with the pass on `threads` threads and returns how many splits it made.
template <typename F>
int64_t on_threads(int threads, F&& f) {
  ThreadScope blas_and_torch(1);  // the one-thread run's sgemm on one OpenBLAS thread too
  PassThreads pass(threads);
  const int64_t before = fused::pool_splits();
  f();
  return fused::pool_splits() - before;
}

TEST(FusedPool, SgemmSplitsGiveTheSameValuesWithinRounding) {
  at::manual_seed(3);
  struct Shape {
    int64_t M, N, K;
  };
  // Wide (split by columns, a ragged last block), tall (split by rows), one row.
  for (const Shape& s : {Shape{37, 1000, 300}, Shape{500, 40, 256}, Shape{1, 3000, 768}}) {
    SCOPED_TRACE(std::to_string(s.M) + "x" + std::to_string(s.N) + "x" + std::to_string(s.K));
    const at::Tensor A = at::randn({s.M, s.K}), Bt = at::randn({s.N, s.K}),
                     Bn = at::randn({s.K, s.N}), At = at::randn({s.K, s.M}),
                     C0 = at::randn({s.M, s.N});
    auto run = [&](int threads) {
      std::vector<at::Tensor> out = {C0.clone(), C0.clone(), C0.clone()};
      const int64_t splits = on_threads(threads, [&] {
        fused::gemm_nt(s.M, s.N, s.K, 0.5f, A.data_ptr<float>(), s.K, Bt.data_ptr<float>(), s.K,
                       1.0f, out[0].data_ptr<float>(), s.N);
        fused::gemm_nn(s.M, s.N, s.K, 1.0f, A.data_ptr<float>(), s.K, Bn.data_ptr<float>(), s.N,
                       0.0f, out[1].data_ptr<float>(), s.N);
        fused::gemm_tn(s.M, s.N, s.K, 1.0f, At.data_ptr<float>(), s.M, Bn.data_ptr<float>(), s.N,
                       0.25f, out[2].data_ptr<float>(), s.N);
      });
      EXPECT_EQ(splits > 0, threads > 1) << threads << " threads";
      return out;
    };
    const std::vector<at::Tensor> one = run(1);
    EXPECT_LE((one[0] - (0.5 * A.mm(Bt.t()) + C0)).abs().max().item<double>(), 1e-3);
    for (int threads : {2, 4}) {
      const std::vector<at::Tensor> many = run(threads);
      for (size_t i = 0; i < 3; ++i)
        EXPECT_LE(rel(many[i], one[i]), 1e-6) << "product " << i << ", " << threads << " threads";
    }
  }
}

TEST(FusedPool, QuantizedProductsGiveTheSameValuesWithinRounding) {
  at::manual_seed(5);
  const int64_t K = 512;
  for (uint32_t type : {8u, 12u, 14u}) {  // Q8_0, Q4_K, Q6_K
    SCOPED_TRACE(ggml_type_name(type));
    const int64_t rows = 700;  // several panels, a ragged last one
    const at::Tensor Wf = at::randn({rows, K});
    const std::string blocks = quantize_ggml(type, Wf.data_ptr<float>(), rows * K);
    fused::QuantMatrix W;
    W.rows = rows;
    W.cols = K;
    W.parts.push_back({type, rows, reinterpret_cast<const uint8_t*>(blocks.data())});
    for (int64_t M : {1, 64}) {
      const at::Tensor A = at::randn({M, K}), G = at::randn({M, rows});
      auto run = [&](int threads) {
        at::Tensor C = at::ones({M, rows}), D = at::ones({M, K});
        const int64_t splits = on_threads(threads, [&] {
          fused::qgemm_nt(M, A.data_ptr<float>(), K, W, 1.0f, C.data_ptr<float>(), rows);
          fused::qgemm_nn(M, G.data_ptr<float>(), rows, W, 0.5f, D.data_ptr<float>(), K);
        });
        EXPECT_EQ(splits > 0, threads > 1) << M << " rows, " << threads << " threads";
        return std::make_pair(C, D);
      };
      const auto one = run(1);
      for (int threads : {2, 4}) {
        const auto many = run(threads);
        EXPECT_LE(rel(many.first, one.first), 1e-6) << "x·Wᵀ, " << M << " rows, " << threads;
        EXPECT_LE(rel(many.second, one.second), 1e-6) << "g·W, " << M << " rows, " << threads;
      }
    }
  }
}

// ---- whole passes -----------------------------------------------------------------------------

std::vector<int64_t> sequence(int64_t n, int64_t vocab, uint64_t seed) {
  std::vector<int64_t> v;
  uint64_t s = seed * 2654435761u + 12345u;
  for (int64_t i = 0; i < n; ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    v.push_back(3 + static_cast<int64_t>((s >> 33) % static_cast<uint64_t>(vocab - 3)));
  }
  v[0] = 1;
  return v;
}

// A mid-sized random Llama with grouped-query attention and a padded batch of three rows,
// run on 1, 2 and 4 threads: logits, a KV-cache step after a prefill, and the gradient to the
// embeddings agree within the fused path's tolerances against libtorch (1e-5 of the largest
// logit, 1e-4 of the largest gradient; measured: a few ulps), and the threaded runs used the
// pool.
TEST(FusedPool, AWholeForwardAndBackwardAgreeOnOneTwoAndFourThreads) {
  ModelConfig c;
  c.dim = 256;
  c.hidden_dim = 688;
  c.n_layers = 2;
  c.n_heads = 8;
  c.n_kv_heads = 2;
  c.vocab_size = 1000;
  c.max_seq_len = 128;
  auto model = make_random_llama(c, 21);
  ASSERT_EQ(model->forward_path().rfind("fused", 0), 0u) << model->forward_path();
  const int64_t B = 3, T = 48;
  std::vector<int64_t> toks, mask;
  for (int64_t r = 0; r < B; ++r) {
    std::vector<int64_t> s = sequence(T, c.vocab_size, 30 + r);
    for (int64_t t = 0; t < T; ++t) {
      const bool real = r == 0 ? t >= 5 : true;  // row 0 left-padded
      toks.push_back(real ? s[t] : 0);
      mask.push_back(real);
    }
  }
  const at::Tensor tokens = at::tensor(toks, at::kLong).view({B, T});
  const at::Tensor attn = at::tensor(mask, at::kLong).view({B, T});
  at::manual_seed(8);
  const at::Tensor dlogits = at::randn({B, T, c.vocab_size});

  struct Out {
    at::Tensor logits, step, grad;
  };
  auto run = [&](int threads) {
    Out out;
    const int64_t splits = on_threads(threads, [&] {
      at::NoGradGuard ng;
      ForwardArgs a;
      a.tokens = tokens;
      a.attention_mask = attn;
      out.logits = model->forward(a);
      // A prefill of the first T - 1 tokens into a cache, then one step.
      KVCache cache = model->new_cache(B);
      ForwardArgs p;
      p.tokens = tokens.narrow(1, 0, T - 1);
      p.attention_mask = attn.narrow(1, 0, T - 1);
      p.cache = &cache;
      model->forward(p);
      ForwardArgs s;
      s.tokens = tokens.narrow(1, T - 1, 1);
      s.cache = &cache;
      out.step = model->forward(s);
      ForwardArgs g;
      g.embeddings = model->embed(tokens);
      g.attention_mask = attn;
      at::Tensor logits;
      std::unique_ptr<GradientTape> tape = model->forward_with_tape(g, &logits);
      ASSERT_TRUE(tape != nullptr);
      EXPECT_TRUE(logits.equal(out.logits));
      out.grad = tape->backward(dlogits);
    });
    EXPECT_EQ(splits > 0, threads > 1) << threads << " threads";
    return out;
  };
  const Out one = run(1);
  EXPECT_GT(one.grad.abs().max().item<double>(), 0.0);
  // The one-thread run is the path tested against libtorch elsewhere; check it once here too.
  {
    at::NoGradGuard ng;
    ForwardArgs r;
    r.tokens = tokens;
    r.attention_mask = attn;
    r.libtorch_path = true;
    const at::Tensor ref = model->forward(r);
    EXPECT_LE((one.logits - ref).abs().max().item<double>() / ref.abs().max().item<double>(), 1e-5);
  }
  for (int threads : {2, 4}) {
    SCOPED_TRACE(std::to_string(threads) + " threads");
    const Out many = run(threads);
    EXPECT_LE(rel(many.logits, one.logits), 1e-5);
    EXPECT_LE(rel(many.step, one.step), 1e-5);
    EXPECT_LE(rel(many.grad, one.grad), 1e-4);
    std::printf("%d threads: logits within %.2e, cache step %.2e, gradient %.2e of the largest\n",
                threads, rel(many.logits, one.logits), rel(many.step, one.step),
                rel(many.grad, one.grad));
  }
}

// `candor info` says how many threads the fused kernels run on (--threads).
TEST(FusedPool, InfoNamesTheKernelThreads) {
  const std::string model = std::string(CANDOR_SOURCE_DIR) + "/tests/fixtures/models/llama";
  testing::CliRun one = testing::run_cli("info --threads 1 --model " + model);
  EXPECT_EQ(one.code, 0) << one.out;
  EXPECT_NE(one.out.find("; 1 kernel thread\n"), std::string::npos) << one.out;
  if (usable_cores() < 2) GTEST_SKIP() << "one core: --threads 2 runs on one";
  testing::CliRun two = testing::run_cli("info --threads 2 --model " + model);
  EXPECT_EQ(two.code, 0) << two.out;
  EXPECT_NE(two.out.find("; 2 kernel threads in candor's pool"), std::string::npos) << two.out;
}

}  // namespace
}  // namespace candor
