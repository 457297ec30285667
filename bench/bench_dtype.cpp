// Computing in bfloat16 against float32 (LoadOptions::compute_dtype): weight bytes, the time of a
// prefill, of KV-cache decoding and of a forward + backward pass (what gradient explainers run),
// as ratios bf16 / f32 measured in the same run (runs alternate between the two models, median
// of each), and how far the bf16 logits are from the f32 ones (max |diff| / max |logit|).
// Decoding is timed from a copy of a prefilled cache. Models: stories260K (../shared) and a random
// Llama of GPT-2-small width (dim 768, 6 layers, vocabulary 8000; the same weights in both dtypes).
//
//   bench_dtype [--threads N] [--reps N]      (default 1 thread, 7 repetitions)
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "bench_common.h"
#include "candor/model.h"
#include "candor/runtime.h"

using namespace candor;
using Clock = std::chrono::steady_clock;

namespace {

int64_t weight_bytes(const Model& m) {
  int64_t n = 0;
  for (const auto& [name, t] : m.named_parameters()) n += t.numel() * t.element_size();
  return n;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median seconds of `f` on each model, the runs alternating.
std::pair<double, double> time_pair(const std::function<void(const Model&)>& f, const Model& a,
                                    const Model& b, int reps) {
  std::vector<double> ta, tb;
  f(a);  // warm-up
  f(b);
  for (int r = 0; r < reps; ++r) {
    for (int which = 0; which < 2; ++which) {
      auto t0 = Clock::now();
      f(which == 0 ? a : b);
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      (which == 0 ? ta : tb).push_back(s);
    }
  }
  return {median(ta), median(tb)};
}

void compare(const std::string& label, const Model& f32, const Model& bf16,
             const std::vector<TokenId>& prompt, int reps) {
  std::printf("\n== %s (%lld parameters)\n", label.c_str(), static_cast<long long>(f32.n_params()));
  const double wf = static_cast<double>(weight_bytes(f32)),
               wb = static_cast<double>(weight_bytes(bf16));
  std::printf("weights          f32 %.1f MB   bf16 %.1f MB   ratio %.3f\n", wf / 1e6, wb / 1e6,
              wb / wf);
  at::Tensor ids = at::tensor(std::vector<int64_t>(prompt.begin(), prompt.end()), at::kLong)
                       .unsqueeze(0);  // [1, T]
  {
    at::NoGradGuard g;
    at::Tensor a = f32.forward_tokens(ids)[0].to(at::kDouble);
    at::Tensor b = bf16.forward_tokens(ids)[0].to(at::kDouble);
    const double rel = ((b - a).abs().max() / a.abs().max()).item<double>();
    const double mean_rel = ((b - a).abs().mean() / a.abs().max()).item<double>();
    const double agree = a.argmax(-1).eq(b.argmax(-1)).to(at::kDouble).mean().item<double>();
    std::printf(
        "logits           max |diff| / max |logit| %.4f   mean %.4f   argmax agreement %.3f"
        " (%lld positions)\n",
        rel, mean_rel, agree, static_cast<long long>(ids.size(1)));
  }
  auto report = [&](const char* what, std::pair<double, double> t) {
    std::printf("%-16s f32 %8.2f ms   bf16 %8.2f ms   ratio bf16/f32 %.2f\n", what, 1e3 * t.first,
                1e3 * t.second, t.second / t.first);
  };
  report("prefill", time_pair(
                        [&](const Model& m) {
                          at::NoGradGuard g;
                          m.forward_tokens(ids);
                        },
                        f32, bf16, reps));
  // Decoding: 16 steps after the prompt, from a copy of a cache prefilled outside the timer.
  const int64_t steps = 16;
  std::map<const Model*, KVCache> prefilled;
  for (const Model* m : {&f32, &bf16}) {
    at::NoGradGuard g;
    KVCache cache = m->new_cache(1, ids.size(1) + steps);
    ForwardArgs a;
    a.cache = &cache;
    a.tokens = ids;
    a.last_only = true;
    m->forward(a);
    prefilled[m] = cache;
  }
  report("decode 16 steps", time_pair(
                                [&](const Model& m) {
                                  at::NoGradGuard g;
                                  KVCache cache = prefilled.at(&m).fork();
                                  ForwardArgs a;
                                  a.cache = &cache;
                                  at::Tensor next = at::full({1, 1}, prompt.back(), at::kLong);
                                  for (int64_t s = 0; s < steps; ++s) {
                                    a.tokens = next.view({1, 1});
                                    next = m.forward(a).argmax(-1);
                                  }
                                },
                                f32, bf16, reps));
  report("forward+backward", time_pair(
                                 [&](const Model& m) {
                                   at::Tensor emb = m.embed(ids).detach().requires_grad_(true);
                                   ForwardArgs a;
                                   a.embeddings = emb;
                                   a.last_only = true;
                                   at::Tensor out = at::log_softmax(m.forward(a), -1)[0][0][0];
                                   out.backward();
                                 },
                                 f32, bf16, reps));
}

}  // namespace

int main(int argc, char** argv) {
  prepare_process(argc, argv);
  int threads = 1, reps = 7;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--threads") == 0)
      threads = std::atoi(argv[++i]);
    else if (std::strcmp(argv[i], "--reps") == 0)
      reps = std::atoi(argv[++i]);
  }
  set_num_threads(threads);
  std::printf("bench_dtype: %d thread(s), median of %d alternating runs\n", threads, reps);

  std::string why;
  if (auto stories = bench::load_stories(&why)) {
    LoadOptions o;
    o.compute_dtype = "bf16";
    auto low = load_model(bench::shared_dir() + "/models/stories260K", o);
    compare("stories260K", *stories, *low, bench::make_prompt(*stories, false, 128), reps);
  } else {
    std::printf("stories260K skipped: %s\n", why.c_str());
  }

  ModelConfig c = bench::llama768_config(8000);
  c.n_layers = 6;
  auto tok = bench::synthetic_tokenizer(8000);
  auto f32 = make_random_llama(c, 1234, tok);
  c.compute_dtype = "bf16";
  auto bf16 = make_random_llama(c, 1234, tok);
  compare("random llama dim 768, 6 layers", *f32, *bf16, bench::make_prompt(*f32, true, 128), reps);
  return 0;
}
