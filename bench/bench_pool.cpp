// Two kernel threads against one on the fused path (issue 17, item 4), interleaved round by
// round so that a shared machine's load falls on both alike: the GPT-2-small-sized random Llama
// (llama768), one sequence, a forward (logits of the last position) and a forward + backward to
// the input embeddings (the last position's top logit), on 1 then 2 threads in each round;
// beside them a 1024^3 sgemm through libtorch on 1 then 2 OpenBLAS threads, as the measure of
// what two threads could give on the machine at that moment. Reported: medians and the median
// of the per-round ratios (1-thread time / 2-thread time).
//
// Run: bench_pool [--tokens=128] [--rounds=7]
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "bench_common.h"
#include "candor/model.h"
#include "candor/runtime.h"

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int main(int argc, char** argv) {
  candor::prepare_process(argc, argv);
  using namespace candor;
  int64_t T = 128;
  int rounds = 7;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--tokens=", 0) == 0) {
      T = std::stoll(a.substr(9));
    } else if (a.rfind("--rounds=", 0) == 0) {
      rounds = std::max(1, std::stoi(a.substr(9)));
    } else {
      std::fprintf(stderr, "unknown argument %s\nusage: bench_pool [--tokens=128] [--rounds=7]\n",
                   a.c_str());
      return 2;
    }
  }
  auto model = make_random_llama(bench::llama768_config(32000), 1234);
  at::manual_seed(7 + T);
  const at::Tensor ids = at::randint(3, model->config().vocab_size, {1, T}, at::kLong);
  at::Tensor emb;
  {
    at::NoGradGuard ng;
    emb = model->embed(ids);
  }
  auto forward = [&] {
    at::NoGradGuard ng;
    ForwardArgs a;
    a.embeddings = emb;
    a.last_only = true;
    const auto t = Clock::now();
    model->forward(a);
    return ms_since(t);
  };
  auto fwdbwd = [&] {
    const auto t = Clock::now();
    ForwardArgs a;
    a.embeddings = emb;
    a.last_only = true;
    at::Tensor logits;
    std::unique_ptr<GradientTape> tape = model->forward_with_tape(a, &logits);
    at::Tensor d = at::zeros_like(logits);
    d.view({-1, logits.size(-1)})
        .scatter_(1, logits.view({-1, logits.size(-1)}).argmax(1, true), 1.0f);
    tape->backward(d);
    return ms_since(t);
  };
  const at::Tensor A = at::randn({1024, 1024}), B = at::randn({1024, 1024});
  auto sgemm = [&] {
    const auto t = Clock::now();
    at::Tensor C = at::mm(A, B);
    return ms_since(t);
  };
  std::printf("# bench_pool: llama768, %lld tokens, %d rounds, %d usable cores\n", (long long)T,
              rounds, usable_cores());
  {
    ThreadScope two(2);
    std::printf("forward path at 2 threads: %s\n", model->forward_path().c_str());
  }
  struct Series {
    const char* name;
    std::function<double()> run;
    std::vector<double> one, two, ratio;
  };
  std::vector<Series> series = {{"forward", forward, {}, {}, {}},
                                {"forward + backward", fwdbwd, {}, {}, {}},
                                {"sgemm 1024^3 (libtorch)", sgemm, {}, {}, {}}};
  for (Series& s : series) {  // warm-up
    ThreadScope one(1);
    s.run();
  }
  for (int r = 0; r < rounds; ++r) {
    for (Series& s : series) {
      double t1, t2;
      {
        ThreadScope one(1);
        t1 = s.run();
      }
      {
        ThreadScope two(2);
        t2 = s.run();
      }
      s.one.push_back(t1);
      s.two.push_back(t2);
      s.ratio.push_back(t1 / t2);
    }
    std::fprintf(stderr, "round %d done\n", r + 1);
  }
  std::printf(
      "\n| pass | 1 thread ms | 2 threads ms | 1 thread / 2 threads (median of rounds) |\n"
      "|---|---|---|---|\n");
  for (const Series& s : series)
    std::printf("| %s | %.1f | %.1f | %.2f |\n", s.name, median(s.one), median(s.two),
                median(s.ratio));
  return 0;
}
