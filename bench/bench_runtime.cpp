// Runtime benchmark: prefill and decode throughput, forward+backward time, achieved FLOP rate
// against a plain matmul, and peak memory, for stories260K and a GPT-2-small-sized random Llama.
// Run: build/bench/bench_runtime --benchmark_counters_tabular=true   (CANDOR_SHARED: shared folder;
// CANDOR_BENCH_THREADS: intra-op threads, default one per core; CANDOR_BENCH_MEMORY=1: memory only)
#include <ATen/ATen.h>
#include <benchmark/benchmark.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "bench_common.h"
#include "candor/model.h"
#include "candor/runtime.h"

namespace candor {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int64_t kDecodePrefix = 128;  // cached positions before each measured decode step
constexpr int64_t kBackwardTokens = 128;

enum class Which { kStories260K, kLlama768 };

// The model under test, built once per process; null (with `why` set) when it is unavailable.
const Model* get_model(Which which, std::string* why) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  if (which == Which::kLlama768) {
    static std::unique_ptr<Model> m = make_random_llama(bench::llama768_config(), /*seed=*/1234);
    return m.get();
  }
  static std::unique_ptr<Model> stories;
  static std::string error;
  static bool tried = false;
  if (!tried) {
    tried = true;
    std::string path = bench::shared_dir() + "/models/stories260K";
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      error = "needs ../shared/models/stories260K (or CANDOR_SHARED pointing at the shared folder)";
    } else {
      try {
        stories = load_model(path);
      } catch (const std::exception& e) {
        error = std::string("cannot load stories260K: ") + e.what();
      }
    }
  }
  if (!stories && why) *why = error;
  return stories.get();
}

// Fetches the model or marks the benchmark skipped; null when skipped.
const Model* model_or_skip(benchmark::State& state, Which which) {
  std::string why;
  const Model* m = get_model(which, &why);
  if (!m) state.SkipWithError(why.c_str());
  return m;
}

at::Tensor random_tokens(int64_t t, int64_t vocab, uint64_t seed) {  // [1, t] int64
  at::manual_seed(seed);
  return at::randint(0, vocab, {1, t}, at::kLong);
}

// Analytic FLOPs of a no-grad prefill of `t` tokens with no cache. Convention: one multiply-add
// is 2 FLOPs; linear layers count 2 * t * (their weights), i.e. per layer
// (H + 2 KV) * hd * dim (q, k, v) + dim * dim (output) + 3 * dim * hidden (gate, up, down), plus
// the output projection 2 * t * dim * vocab over every position; attention counts
// 2 * 2 * t * t * dim per layer (scores and weighted values over all t keys: the causal mask is
// not discounted). Norms, rotary, softmax and the activation function are not counted.
double prefill_flops(const ModelConfig& c, int64_t t) {
  const double hd = static_cast<double>(c.head_dim());
  const double dim = static_cast<double>(c.dim);
  const double linear_per_layer = (c.n_heads + 2.0 * c.n_kv_heads) * hd * dim + dim * dim +
                                  3.0 * dim * static_cast<double>(c.hidden_dim);
  const double T = static_cast<double>(t);
  return c.n_layers * (2.0 * T * linear_per_layer + 4.0 * T * T * dim) +
         2.0 * T * dim * static_cast<double>(c.vocab_size);
}

// A plain at::matmul [512, 768] x [768, 2048], the reference for the achieved FLOP rate.
struct MatmulReference {
  static constexpr int64_t kM = 512, kK = 768, kN = 2048;
  at::Tensor a, b;

  MatmulReference() {
    at::NoGradGuard no_grad;
    at::manual_seed(7);
    a = at::randn({kM, kK});
    b = at::randn({kK, kN});
    for (int i = 0; i < 3; ++i) benchmark::DoNotOptimize(at::matmul(a, b));  // warm-up
  }
  // Runs the product for about `seconds`; returns {FLOPs done, seconds taken}.
  std::pair<double, double> run(double seconds) const {
    at::NoGradGuard no_grad;
    int64_t runs = 0;
    double elapsed = 0;
    auto start = Clock::now();
    while (elapsed < seconds || runs < 3) {
      benchmark::DoNotOptimize(at::matmul(a, b));
      ++runs;
      elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    }
    return {2.0 * kM * kK * kN * static_cast<double>(runs), elapsed};
  }
};

// A no-grad forward over [1, T] random tokens, all logits. With `compare_matmul`, each timed
// forward is preceded by an untimed burst of the reference matmul, so that both rates see the
// same machine load (other processes on a shared machine shift either); the ratio is the
// forward's FLOP rate over the matmul's, each summed over all iterations.
void BM_Prefill(benchmark::State& state, Which which, bool compare_matmul) {
  const Model* model = model_or_skip(state, which);
  if (!model) return;
  const int64_t t = state.range(0);
  at::NoGradGuard no_grad;
  ForwardArgs args;
  args.tokens = random_tokens(t, model->config().vocab_size, 11);
  benchmark::DoNotOptimize(model->forward(args));  // warm-up
  std::unique_ptr<MatmulReference> reference;
  if (compare_matmul) reference = std::make_unique<MatmulReference>();

  double forward_s = 0, matmul_flops = 0, matmul_s = 0;
  for (auto _ : state) {
    if (reference) {
      state.PauseTiming();
      auto [f, s] = reference->run(0.3);
      matmul_flops += f;
      matmul_s += s;
      state.ResumeTiming();
    }
    auto start = Clock::now();
    benchmark::DoNotOptimize(model->forward(args));
    forward_s += std::chrono::duration<double>(Clock::now() - start).count();
  }

  const double flops = prefill_flops(model->config(), t);
  const double iters = static_cast<double>(state.iterations());
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(t) * iters, benchmark::Counter::kIsRate);
  state.counters["flops_per_s"] = benchmark::Counter(flops * iters, benchmark::Counter::kIsRate);
  if (reference) {
    const double matmul_rate = matmul_flops / matmul_s;
    state.counters["matmul_flops_per_s"] = matmul_rate;
    state.counters["ratio_to_matmul"] = flops * iters / forward_s / matmul_rate;
  }
}

// Single-token steps after a 128-token prefix; the cache is truncated back to the prefix after
// each step so that every iteration starts from the same state.
void BM_Decode(benchmark::State& state, Which which) {
  const Model* model = model_or_skip(state, which);
  if (!model) return;
  at::NoGradGuard no_grad;
  const int64_t vocab = model->config().vocab_size;
  KVCache cache = model->new_cache(1, kDecodePrefix + 1);
  ForwardArgs prefill;
  prefill.tokens = random_tokens(kDecodePrefix, vocab, 21);
  prefill.cache = &cache;
  prefill.last_only = true;
  model->forward(prefill);

  ForwardArgs step;
  step.tokens = random_tokens(1, vocab, 22);
  step.cache = &cache;
  step.last_only = true;
  benchmark::DoNotOptimize(model->forward(step));  // warm-up
  cache.truncate(kDecodePrefix);
  for (auto _ : state) {
    benchmark::DoNotOptimize(model->forward(step));
    cache.truncate(kDecodePrefix);
  }
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

// Gradient of the last position's log-probability of a target token with respect to the input
// embeddings (what gradient explainers do): forward from embeddings that require grad (logits
// of the last position only), log_softmax, backward.
void BM_ForwardBackward(benchmark::State& state, Which which) {
  const Model* model = model_or_skip(state, which);
  if (!model) return;
  const int64_t vocab = model->config().vocab_size;
  at::Tensor base;
  {
    at::NoGradGuard no_grad;
    base = model->embed(random_tokens(kBackwardTokens, vocab, 31)).detach();  // [1, T, dim]
  }
  const int64_t target = 5 % vocab;
  auto run = [&] {
    at::Tensor emb = base.clone().requires_grad_(true);
    ForwardArgs args;
    args.embeddings = emb;
    args.last_only = true;
    at::Tensor logits = model->forward(args);  // [1, 1, vocab]
    at::Tensor lp = at::log_softmax(logits[0][0], -1)[target];
    lp.backward();
    return emb.grad();
  };
  benchmark::DoNotOptimize(run());  // warm-up
  for (auto _ : state) benchmark::DoNotOptimize(run());
  state.counters["tokens_per_s"] = benchmark::Counter(
      static_cast<double>(kBackwardTokens * state.iterations()), benchmark::Counter::kIsRate);
}

// VmHWM (peak resident set) or VmRSS of this process, in MiB; -1 when unreadable.
double proc_status_mib(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::atof(line.c_str() + key.size() + 1) / 1024.0;
  }
  return -1;
}

// CANDOR_BENCH_MEMORY=1 mode: in a fresh process, build the large model and run one no-grad
// 512-token forward; prints the peak resident set before and after.
int run_memory_mode() {
  const Model* model = get_model(Which::kLlama768, nullptr);
  const double before = proc_status_mib("VmHWM");
  {
    at::NoGradGuard no_grad;
    ForwardArgs args;
    args.tokens = random_tokens(512, model->config().vocab_size, 41);
    benchmark::DoNotOptimize(model->forward(args));
  }
  const double after = proc_status_mib("VmHWM");
  std::printf("model_rss_mib %.1f\npeak_rss_mib %.1f\n", before, after);
  return 0;
}

// Peak memory of the large model's 512-token forward, measured in a child process (the
// high-water mark is process-wide, so this process's own figure would include everything else).
void BM_PeakMemory(benchmark::State& state) {
  double model_mib = -1, peak_mib = -1;
  char exe[4096];
  const ssize_t len = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (len <= 0) {
    state.SkipWithError("cannot find this program's path in /proc/self/exe");
    return;
  }
  const std::string self(exe, static_cast<size_t>(len));
  for (auto _ : state) {
    FILE* child = ::popen(("CANDOR_BENCH_MEMORY=1 '" + self + "'").c_str(), "r");
    if (!child) {
      state.SkipWithError("cannot start the memory-measuring child process");
      return;
    }
    char line[256];
    while (std::fgets(line, sizeof line, child)) {
      std::sscanf(line, "model_rss_mib %lf", &model_mib);
      std::sscanf(line, "peak_rss_mib %lf", &peak_mib);
    }
    if (::pclose(child) != 0 || peak_mib < 0) {
      state.SkipWithError("the memory-measuring child process failed");
      return;
    }
  }
  state.counters["model_rss_mib"] = model_mib;
  state.counters["peak_rss_mib"] = peak_mib;
}

void register_benchmarks() {
  struct Entry {
    Which which;
    const char* name;
    double min_time;  // seconds per benchmark
  };
  for (const Entry& e :
       {Entry{Which::kStories260K, "stories260K", 0.3}, Entry{Which::kLlama768, "llama768", 1.0}}) {
    const std::string n = e.name;
    for (int64_t t : {32, 128, 512}) {
      const bool compare = e.which == Which::kLlama768 && t == 512;
      auto* b =
          benchmark::RegisterBenchmark((n + "/prefill").c_str(), BM_Prefill, e.which, compare);
      b->Arg(t)->Unit(benchmark::kMillisecond)->UseRealTime();
      if (compare) {
        b->Iterations(3);  // about 1.5 s each, plus 0.3 s of matmul
      } else {
        b->MinTime(e.min_time);
      }
    }
    benchmark::RegisterBenchmark((n + "/decode_after_128").c_str(), BM_Decode, e.which)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime()
        ->MinTime(e.min_time);
    benchmark::RegisterBenchmark((n + "/forward_backward_128").c_str(), BM_ForwardBackward, e.which)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime()
        ->MinTime(e.min_time);
  }
  benchmark::RegisterBenchmark("llama768/peak_memory_prefill_512", BM_PeakMemory)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime()
      ->Iterations(1);
}

}  // namespace
}  // namespace candor

int main(int argc, char** argv) {
  candor::prepare_process(argc, argv);
  int threads = 0;  // one per core
  if (const char* env = std::getenv("CANDOR_BENCH_THREADS")) threads = std::atoi(env);
  candor::set_num_threads(threads);
  if (const char* mem = std::getenv("CANDOR_BENCH_MEMORY"); mem && std::string(mem) == "1") {
    return candor::run_memory_mode();
  }
  candor::register_benchmarks();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
