// Explainer cost benchmark: each registered method's cost in forward-pass equivalents (explain()
// time / one plain forward's, same run) beside its own forward_passes count, on stories260K and a
// GPT-2-small-sized random Llama, plus the leave-one-out and integrated-gradients cost targets.

// Run: bench_explain [--models=stories260K,llama768] [--lengths=32,128] [--methods=a,b]
//   [--set=method:key=value,...]... [--no-targets] [--targets-only] [--targets=abc]
//   [--memory-tokens=N (target c, default 32)] [--ig-tokens=N (target b, default 128)] [--reps=N]
// Environment: CANDOR_SHARED (the shared folder), CANDOR_BENCH_THREADS (intra-op threads).
#include <ATen/ATen.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "bench_common.h"
#include "candor/error.h"
#include "candor/explain.h"
#include "candor/model.h"
#include "candor/runtime.h"
#include "candor/tokenizer.h"

namespace candor {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int32_t kLargeVocab = 32000;
// exact_shapley: the input cut into this many equal spans (2^F coalitions), fewer on the large
// model where 2^10 coalitions of 128 tokens would take minutes.
constexpr int64_t kSpanFeatures = 10;
constexpr int64_t kSpanFeaturesLarge = 6;
constexpr int64_t kTargetTokens = 128;  // the targets are stated for 128 tokens

// Options on the large model, where the defaults would run for many minutes: reduced sample
// counts (reported in the table). Target (b) runs integrated_gradients with n_steps=50 apart.
const std::map<std::string, std::string>& large_model_options() {
  static const std::map<std::string, std::string> m = {
      {"integrated_gradients", "n_steps=16"},
      {"smoothgrad", "n_samples=8"},
      {"vargrad", "n_samples=8"},
      {"shapley_sampling", "n_permutations=1,antithetic=false"},
      {"kernel_shap", "n_samples=64"},
      {"lime", "n_samples=64"},
  };
  return m;
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
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

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, sep)) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Models and prompts
// ---------------------------------------------------------------------------------------------

using bench::load_stories;
using bench::make_large;
using bench::make_prompt;

struct BenchModel {
  std::string name;
  std::unique_ptr<Model> model;
  bool large = false;
};

// Positions 1..T-1 (BOS excluded) cut into `n` nearly equal spans.
std::vector<Feature> equal_spans(int64_t t, int64_t n) {
  std::vector<Feature> f;
  const int64_t len = t - 1;
  for (int64_t i = 0; i < n; ++i) {
    Feature x;
    x.begin = 1 + len * i / n;
    x.end = 1 + len * (i + 1) / n;
    x.label = "span" + std::to_string(i);
    f.push_back(x);
  }
  return f;
}

at::Tensor ids_tensor(const std::vector<TokenId>& ids) {  // [1, T] int64
  std::vector<int64_t> v(ids.begin(), ids.end());
  return at::tensor(v, at::kLong).view({1, static_cast<int64_t>(v.size())});
}

// ---------------------------------------------------------------------------------------------
// Reference costs
// ---------------------------------------------------------------------------------------------

// One plain no-grad forward over the prompt, logits of the last position only; seconds.
double time_forward(const Model& model, const at::Tensor& tokens) {
  at::NoGradGuard no_grad;
  ForwardArgs a;
  a.tokens = tokens;
  a.last_only = true;
  auto start = Clock::now();
  at::Tensor logits = model.forward(a);
  (void)logits.sum().item<float>();
  return seconds_since(start);
}

// Forward from `batch` copies of the prompt's embeddings that require grad (last position's
// logits), then backward of the summed log-probability of `target`; seconds.
double time_forward_backward(const Model& model, const at::Tensor& tokens, TokenId target,
                             int64_t batch = 1) {
  at::Tensor base;
  {
    at::NoGradGuard no_grad;
    base = model.embed(tokens).detach();  // [1, T, dim]
  }
  auto start = Clock::now();
  at::Tensor emb = base.expand({batch, -1, -1}).clone().requires_grad_(true);  // [B, T, dim]
  ForwardArgs a;
  a.embeddings = emb;
  a.last_only = true;
  at::Tensor logits = model.forward(a);  // [B, 1, vocab]
  at::Tensor lp = at::log_softmax(logits.select(1, 0), -1).select(1, target).sum();
  lp.backward();
  (void)emb.grad().sum().item<float>();
  return seconds_since(start);
}

// ---------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------

struct Settings {
  std::vector<std::string> models = {"stories260K", "llama768"};
  std::vector<int64_t> lengths = {32, 128};
  std::vector<std::string> methods;              // empty: every registered one
  std::map<std::string, std::string> overrides;  // method -> options, all models
  bool table = true;
  bool targets = true;
  std::string which_targets = "abc";  // subset of the targets to run
  int64_t memory_tokens = 32;
  int64_t ig_tokens = kTargetTokens;  // target (b)
  int reps = 3;  // at most this many runs of a method (fewer when a run takes > 2 s)
};

struct Row {
  std::string model, method, spec, note;
  int64_t t = 0, n_features = 0;
  double method_s = 0, forward_s = 0, self_fpe = 0;
  int runs = 0;
  std::string error;
};

std::string spec_for(const Settings& s, const std::string& method, bool large) {
  auto it = s.overrides.find(method);
  if (it != s.overrides.end()) return it->second.empty() ? method : method + ":" + it->second;
  if (large) {
    auto l = large_model_options().find(method);
    if (l != large_model_options().end()) return method + ":" + l->second;
  }
  return method;
}

// Runs `spec` on the request up to `reps` times (once when a run takes over 2 s); fills the
// row's median time and the method's own count. Reference forwards are timed before each run
// and pooled into `forward_pool`.
void measure(const BenchModel& bm, const ExplainRequest& req, const std::string& spec, int reps,
             std::vector<double>* forward_pool, const at::Tensor& tokens, Row* row) {
  std::unique_ptr<Explainer> ex = make_explainer(spec);
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    for (int k = 0; k < 3; ++k) forward_pool->push_back(time_forward(*bm.model, tokens));
    auto start = Clock::now();
    Attribution a = ex->explain(*bm.model, req);
    times.push_back(seconds_since(start));
    row->self_fpe = a.forward_passes;
    row->n_features = a.n_features();
    if (times.back() > 2.0) break;
  }
  row->method_s = median(times);
  row->runs = static_cast<int>(times.size());
}

std::vector<Row> run_table(const Settings& s, const std::vector<BenchModel>& models) {
  std::vector<Row> rows;
  std::vector<std::string> methods = s.methods;
  if (methods.empty()) {
    for (const auto& info : list_explainers()) methods.push_back(info.name);
  }
  for (const BenchModel& bm : models) {
    for (int64_t t : s.lengths) {
      const std::vector<TokenId> ids = make_prompt(*bm.model, bm.large, t);
      const at::Tensor tokens = ids_tensor(ids);
      // Warm-up: a few forwards and one gradient pass.
      for (int i = 0; i < 3; ++i) time_forward(*bm.model, tokens);
      time_forward_backward(*bm.model, tokens, 5);
      std::vector<double> pool;
      std::vector<Row> block;
      for (const std::string& method : methods) {
        Row row;
        row.model = bm.name;
        row.method = method;
        row.t = t;
        row.spec = spec_for(s, method, bm.large);
        ExplainRequest req;
        req.input_ids = ids;
        if (method == "exact_shapley") {
          const int64_t n = bm.large ? kSpanFeaturesLarge : kSpanFeatures;
          req.features = equal_spans(t, n);
          row.note = std::to_string(n) + " equal spans";
        }
        std::fprintf(stderr, "[%s T=%lld] %s ... (load %s)\n", bm.name.c_str(),
                     static_cast<long long>(t), row.spec.c_str(), load_average().c_str());
        try {
          measure(bm, req, row.spec, s.reps, &pool, tokens, &row);
        } catch (const std::exception& e) {
          row.error = e.what();
        }
        block.push_back(row);
      }
      const double fwd = median(pool);
      for (Row& r : block) r.forward_s = fwd;
      rows.insert(rows.end(), block.begin(), block.end());
    }
  }
  return rows;
}

void print_table(const std::vector<Row>& rows) {
  std::printf(
      "\n| model | T | method | options (non-default) | F | runs | explain ms | forward ms | "
      "FPE (time) | FPE (self-reported) |\n"
      "|---|---:|---|---|---:|---:|---:|---:|---:|---:|\n");
  for (const Row& r : rows) {
    std::string opts =
        r.spec.find(':') == std::string::npos ? "defaults" : r.spec.substr(r.spec.find(':') + 1);
    if (!r.note.empty()) opts += "; features: " + r.note;
    if (!r.error.empty()) {
      std::printf("| %s | %lld | %s | %s | | | error: %s | | | |\n", r.model.c_str(),
                  static_cast<long long>(r.t), r.method.c_str(), opts.c_str(), r.error.c_str());
      continue;
    }
    std::printf("| %s | %lld | %s | %s | %lld | %d | %.1f | %.2f | %.1f | %.1f |\n",
                r.model.c_str(), static_cast<long long>(r.t), r.method.c_str(), opts.c_str(),
                static_cast<long long>(r.n_features), r.runs, r.method_s * 1e3, r.forward_s * 1e3,
                r.method_s / r.forward_s, r.self_fpe);
  }
  std::fflush(stdout);
}

// ---------------------------------------------------------------------------------------------
// The targets (large model)
// ---------------------------------------------------------------------------------------------

const char* verdict(bool ok) { return ok ? "PASS" : "FAIL"; }

// Target (a): leave-one-out over 128 tokens costs at most 0.6 T forward passes (time-based).
void target_leave_one_out(const std::vector<Row>& rows, const BenchModel& large,
                          const Settings& s) {
  const Row* found = nullptr;
  for (const Row& r : rows) {
    if (r.model == large.name && r.t == kTargetTokens && r.method == "leave_one_out" &&
        r.error.empty() && r.spec == "leave_one_out")
      found = &r;
  }
  Row fresh;
  if (!found) {  // not in the table (subset chosen): measure it here
    const std::vector<TokenId> ids = make_prompt(*large.model, true, kTargetTokens);
    const at::Tensor tokens = ids_tensor(ids);
    for (int i = 0; i < 3; ++i) time_forward(*large.model, tokens);
    ExplainRequest req;
    req.input_ids = ids;
    std::vector<double> pool;
    fresh.spec = "leave_one_out";
    measure(large, req, fresh.spec, s.reps, &pool, tokens, &fresh);
    fresh.forward_s = median(pool);
    found = &fresh;
  }
  const double fpe = found->method_s / found->forward_s;
  const double limit = 0.6 * kTargetTokens;
  std::printf(
      "\n(a) leave_one_out, %s, T=%lld (%lld features): %.1f ms / forward %.2f ms = %.1f FPE "
      "(self-reported %.1f); target <= 0.6*T = %.1f FPE: %s (%.0f%% of the limit)\n",
      large.name.c_str(), static_cast<long long>(kTargetTokens),
      static_cast<long long>(found->n_features), found->method_s * 1e3, found->forward_s * 1e3, fpe,
      found->self_fpe, limit, verdict(fpe <= limit), 100.0 * fpe / limit);
}

// Target (b): integrated gradients with n_steps=50 takes at most 1.15 * 50 single-input
// forward+backward passes.
void target_integrated_gradients_time(const BenchModel& large, int64_t n_tokens) {
  const int64_t n_steps = 50;
  const std::vector<TokenId> ids = make_prompt(*large.model, true, n_tokens);
  const at::Tensor tokens = ids_tensor(ids);
  ExplainRequest req;
  req.input_ids = ids;
  TokenId target;
  {
    at::NoGradGuard no_grad;
    target = static_cast<TokenId>(large.model->logits(ids)[-1].argmax().item<int64_t>());
  }
  req.target.token = target;
  for (int i = 0; i < 2; ++i) time_forward_backward(*large.model, tokens, target);
  std::vector<double> fb, fwd, ig_times, fb16;
  std::unique_ptr<Explainer> ex =
      make_explainer("integrated_gradients:n_steps=" + std::to_string(n_steps));
  Attribution a;
  // One run (about a minute), with the references timed before and after it.
  for (int k = 0; k < 3; ++k) fb.push_back(time_forward_backward(*large.model, tokens, target));
  for (int k = 0; k < 3; ++k) fwd.push_back(time_forward(*large.model, tokens));
  auto start = Clock::now();
  a = ex->explain(*large.model, req);
  ig_times.push_back(seconds_since(start));
  for (int k = 0; k < 3; ++k) fb.push_back(time_forward_backward(*large.model, tokens, target));
  // Diagnostic: one batched forward+backward of 16 points (IG's default internal_batch_size).
  for (int k = 0; k < 2; ++k)
    fb16.push_back(time_forward_backward(*large.model, tokens, target, 16));
  const double fb_s = median(fb), ig_s = median(ig_times), limit = 1.15 * n_steps * fb_s;
  std::printf(
      "\n(b) integrated_gradients n_steps=%lld (internal_batch_size=%s), %s, T=%lld: %.0f ms "
      "(%zu run) vs one forward+backward %.1f ms (median of %zu; plain forward %.1f ms): "
      "%.2f forward+backward equivalents, %.1f FPE (self-reported %.1f); target <= 1.15*%lld = "
      "%.1f forward+backward (%.0f ms): %s (%.0f%% of the limit)\n"
      "    diagnostic: a batched forward+backward of 16 points takes %.0f ms = %.1f ms per point "
      "(%.2fx a single one)\n",
      static_cast<long long>(n_steps), a.options["internal_batch_size"].c_str(), large.name.c_str(),
      static_cast<long long>(n_tokens), ig_s * 1e3, ig_times.size(), fb_s * 1e3, fb.size(),
      median(fwd) * 1e3, ig_s / fb_s, ig_s / median(fwd), a.forward_passes,
      static_cast<long long>(n_steps), 1.15 * n_steps, limit * 1e3, verdict(ig_s <= limit),
      100.0 * ig_s / limit, median(fb16) * 1e3, median(fb16) * 1e3 / 16, median(fb16) / 16 / fb_s);
  std::fflush(stdout);
}

// Runs this program again as a child measuring the peak memory of one explanation.
bool child_peak_memory(const std::string& spec, int64_t t, double* model_mib, double* fwd_mib,
                       double* peak_mib, double* seconds) {
  char exe[4096];
  const ssize_t len = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (len <= 0) return false;
  const std::string cmd = "'" + std::string(exe, static_cast<size_t>(len)) + "' --memory-child='" +
                          spec + "' --memory-tokens=" + std::to_string(t);
  FILE* child = ::popen(cmd.c_str(), "r");
  if (!child) return false;
  char line[256];
  *model_mib = *fwd_mib = *peak_mib = *seconds = -1;
  while (std::fgets(line, sizeof line, child)) {
    std::sscanf(line, "model_rss_mib %lf", model_mib);
    std::sscanf(line, "forward_peak_mib %lf", fwd_mib);
    std::sscanf(line, "peak_rss_mib %lf", peak_mib);
    std::sscanf(line, "explain_s %lf", seconds);
  }
  return ::pclose(child) == 0 && *peak_mib > 0;
}

// Target (c): peak memory of integrated gradients with n_steps=200 within 10% of n_steps=50, at
// the same internal_batch_size.
void target_integrated_gradients_memory(const Settings& s) {
  const std::string batch = "16";
  double m[2][4];
  const int64_t steps[2] = {50, 200};
  for (int i = 0; i < 2; ++i) {
    const std::string spec = "integrated_gradients:n_steps=" + std::to_string(steps[i]) +
                             ",internal_batch_size=" + batch;
    std::fprintf(stderr, "[memory child] %s T=%lld (load %s)\n", spec.c_str(),
                 static_cast<long long>(s.memory_tokens), load_average().c_str());
    if (!child_peak_memory(spec, s.memory_tokens, &m[i][0], &m[i][1], &m[i][2], &m[i][3])) {
      std::printf("\n(c) integrated_gradients peak memory: the child process failed\n");
      return;
    }
  }
  const double ratio = m[1][2] / m[0][2];
  std::printf(
      "\n(c) integrated_gradients peak memory (VmHWM of a fresh process), llama768, T=%lld, "
      "internal_batch_size=%s:\n"
      "    n_steps=50:  model %.0f MiB, after a plain forward %.0f MiB, peak %.0f MiB (+%.0f MiB "
      "over the model; %.1f s)\n"
      "    n_steps=200: model %.0f MiB, after a plain forward %.0f MiB, peak %.0f MiB (+%.0f MiB "
      "over the model; %.1f s)\n"
      "    ratio 200/50 = %.3f; target within 10%%: %s\n",
      static_cast<long long>(s.memory_tokens), batch.c_str(), m[0][0], m[0][1], m[0][2],
      m[0][2] - m[0][0], m[0][3], m[1][0], m[1][1], m[1][2], m[1][2] - m[1][0], m[1][3], ratio,
      verdict(ratio <= 1.10 && ratio >= 0.90));
  std::fflush(stdout);
}

// --memory-child mode: build the large model, one plain forward, then one explanation; print
// the peak resident set at each stage.
int run_memory_child(const std::string& spec, int64_t t) {
  std::unique_ptr<Model> model = make_large();
  const std::vector<TokenId> ids = make_prompt(*model, true, t);
  const double model_mib = proc_status_mib("VmHWM");
  time_forward(*model, ids_tensor(ids));
  const double fwd_mib = proc_status_mib("VmHWM");
  ExplainRequest req;
  req.input_ids = ids;
  auto start = Clock::now();
  make_explainer(spec)->explain(*model, req);
  const double secs = seconds_since(start);
  std::printf("model_rss_mib %.1f\nforward_peak_mib %.1f\npeak_rss_mib %.1f\nexplain_s %.3f\n",
              model_mib, fwd_mib, proc_status_mib("VmHWM"), secs);
  return 0;
}

bool starts_with(const std::string& s, const std::string& prefix, std::string* rest) {
  if (s.rfind(prefix, 0) != 0) return false;
  *rest = s.substr(prefix.size());
  return true;
}

int usage(const std::string& bad) {
  std::fprintf(stderr,
               "error: unknown argument '%s'\n"
               "hint: bench_explain [--models=stories260K,llama768] [--lengths=32,128] "
               "[--methods=a,b] [--set=method:key=value,...] [--no-targets] [--targets-only] "
               "[--targets=abc] [--memory-tokens=N] [--ig-tokens=N] [--reps=N]\n",
               bad.c_str());
  return 2;
}

int run(int argc, char** argv) {
  Settings s;
  std::string memory_child;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    std::string v;
    if (starts_with(arg, "--models=", &v)) {
      s.models = split(v, ',');
    } else if (starts_with(arg, "--lengths=", &v)) {
      s.lengths.clear();
      for (const auto& x : split(v, ',')) s.lengths.push_back(std::atoll(x.c_str()));
    } else if (starts_with(arg, "--methods=", &v)) {
      s.methods = split(v, ',');
    } else if (starts_with(arg, "--set=", &v)) {
      const size_t colon = v.find(':');
      s.overrides[v.substr(0, colon)] = colon == std::string::npos ? "" : v.substr(colon + 1);
    } else if (starts_with(arg, "--targets=", &v)) {
      s.which_targets = v;
    } else if (arg == "--no-targets") {
      s.targets = false;
    } else if (arg == "--targets-only") {
      s.table = false;
    } else if (starts_with(arg, "--ig-tokens=", &v)) {
      s.ig_tokens = std::atoll(v.c_str());
    } else if (starts_with(arg, "--memory-tokens=", &v)) {
      s.memory_tokens = std::atoll(v.c_str());
    } else if (starts_with(arg, "--reps=", &v)) {
      s.reps = std::max(1, std::atoi(v.c_str()));
    } else if (starts_with(arg, "--memory-child=", &v)) {
      memory_child = v;
    } else {
      return usage(arg);
    }
  }
  if (!memory_child.empty()) return run_memory_child(memory_child, s.memory_tokens);

  const auto start = Clock::now();
  const BlasInfo blas = blas_info();
  std::printf("# bench_explain\n\nthreads %d, BLAS %s (%s), load average at start %s\n",
              num_threads(), blas.library.c_str(), blas.core.c_str(), load_average().c_str());
  std::printf(
      "FPE (time) = explain() wall time / median plain no-grad forward (tokens, last_only) over "
      "the same prompt, measured interleaved in the same run; FPE (self-reported) = "
      "Attribution::forward_passes (excludes prepare() and finish()'s endpoint passes). Target: "
      "next token (top prediction), logprob, token features (BOS excluded) unless noted.\n");
  std::fflush(stdout);

  std::vector<BenchModel> models;
  for (const std::string& name : s.models) {
    BenchModel bm;
    bm.name = name;
    if (name == "stories260K") {
      std::string why;
      bm.model = load_stories(&why);
      if (!bm.model) {
        std::printf("stories260K skipped: %s\n", why.c_str());
        continue;
      }
    } else if (name == "llama768") {
      bm.model = make_large();
      bm.large = true;
    } else {
      return usage("--models=" + name);
    }
    models.push_back(std::move(bm));
  }

  std::vector<Row> rows;
  if (s.table) {
    rows = run_table(s, models);
    print_table(rows);
    std::printf("\nload average after the table: %s\n", load_average().c_str());
  }
  if (s.targets) {
    const BenchModel* large = nullptr;
    for (const auto& bm : models) {
      if (bm.large) large = &bm;
    }
    BenchModel built;
    if (!large) {
      built.name = "llama768";
      built.model = make_large();
      built.large = true;
      large = &built;
    }
    std::printf("\n## Targets (llama768)\n");
    const auto wanted = [&](char c) { return s.which_targets.find(c) != std::string::npos; };
    if (wanted('a')) target_leave_one_out(rows, *large, s);
    if (wanted('b')) target_integrated_gradients_time(*large, s.ig_tokens);
    if (wanted('c')) target_integrated_gradients_memory(s);
  }
  std::printf("\nload average at the end: %s; total %.0f s\n", load_average().c_str(),
              seconds_since(start));
  return 0;
}

}  // namespace
}  // namespace candor

int main(int argc, char** argv) {
  candor::prepare_process(argc, argv);
  int threads = 0;  // one per core
  if (const char* env = std::getenv("CANDOR_BENCH_THREADS")) threads = std::atoi(env);
  candor::set_num_threads(threads);
  try {
    return candor::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
