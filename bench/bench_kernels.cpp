// The fused no-grad forward against the libtorch path and PyTorch eager, in the same run.
//
// For stories260K and the GPT-2-small-sized random Llama (llama768), at 32 and 128 tokens and
// 1 and 2 threads: a forward (one sequence, logits of the last position), a KernelSHAP-style
// batch (16 masked copies of the input embeddings, zero baseline, logits of the last position)
// and a forward + backward to the input embeddings (one sequence, the gradient of the last
// position's top logit: the fused path's hand-written backward, libtorch's autograd), each
// through candor's fused path, candor's libtorch path and PyTorch eager (Debian's
// python3-torch, bench/bench_kernels.py, served over a pipe so the three are measured
// interleaved, round after round). Reported: medians, ratios to PyTorch, and each as a
// fraction of the FLOP rate of a 1024^3 sgemm measured in the same rounds. Section 2 takes the
// single-input gradient path (saliency) apart on llama768 at 32 tokens, one thread.
//
// Section 3 runs llama768's Q4_K and Q8_0 GGUF copies, kept quantized in memory, against its
// float32 forward (time and memory).
//
// Run: bench_kernels [--models=stories260K,llama768] [--lengths=32,128] [--threads=1,2]
//                    [--rounds=7] [--no-torch] [--no-saliency] [--no-quant] [--only-quant]
//                    [--quant-types=q4_k,q8_0] [--scalar] [--loop=N]
// --scalar: the fused path's scalar elementwise kernels instead of AVX2 (models/fused/vec.h).
// --loop=N: only the fused forward and forward + backward of the first model and length, N
// times each, timed per pass (for a profiler: `perf record build/bench/bench_kernels
// --models=stories260K --lengths=128 --loop=200`).
#include <ATen/ATen.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "bench_common.h"
#include "candor/explain.h"
#include "candor/model.h"
#include "candor/runtime.h"
#include "models/fused/vec.h"

namespace candor {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string x;
  while (std::getline(ss, x, ',')) out.push_back(x);
  return out;
}

// bench_kernels.py as a co-process: requests on its stdin, answers from its stdout.
class TorchPeer {
 public:
  bool start(std::string* why) {
    const std::string script = std::string(CANDOR_SOURCE_DIR) + "/bench/bench_kernels.py";
    const char* python = ::access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
    int to_child[2], from_child[2];
    if (pipe(to_child) != 0 || pipe(from_child) != 0) {
      *why = "cannot make pipes";
      return false;
    }
    pid_ = fork();
    if (pid_ == 0) {
      dup2(to_child[0], 0);
      dup2(from_child[1], 1);
      close(to_child[1]);
      close(from_child[0]);
      execlp(python, python, script.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    close(to_child[0]);
    close(from_child[1]);
    out_ = fdopen(to_child[1], "w");
    in_ = fdopen(from_child[0], "r");
    const std::string hello = read_line();
    if (hello.rfind("ready", 0) != 0) {
      *why = hello.empty() ? "python3 did not start" : hello.substr(hello.find(' ') + 1);
      return false;
    }
    version_ = hello.substr(6);
    return true;
  }
  ~TorchPeer() {
    if (out_) {
      std::fprintf(out_, "quit\n");
      std::fclose(out_);
    }
    if (in_) std::fclose(in_);
    if (pid_ > 0) waitpid(pid_, nullptr, 0);
  }
  std::string ask(const std::string& request) {
    std::fprintf(out_, "%s\n", request.c_str());
    std::fflush(out_);
    return read_line();
  }
  // The timings of a "time" or "sgemm" request, ms.
  std::vector<double> times(const std::string& request) {
    std::istringstream in(ask(request));
    std::string tag;
    in >> tag;
    std::vector<double> t;
    double v;
    while (in >> v) t.push_back(v);
    return t;
  }
  const std::string& version() const { return version_; }

 private:
  std::string read_line() {
    char buf[8192];
    if (!in_ || !std::fgets(buf, sizeof buf, in_)) return "";
    std::string s(buf);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    return s;
  }
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
  FILE* in_ = nullptr;
  std::string version_;
};

struct Settings {
  std::vector<std::string> models = {"stories260K", "llama768"};
  std::vector<int64_t> lengths = {32, 128};
  std::vector<int> threads = {1, 2};
  int rounds = 7;
  bool torch = true, saliency = true, quant = true;
  std::vector<std::string> quant_types = {"q4_k", "q8_0"};
  int loop = 0;  // --loop=N
};

// FLOPs of a pass: projections at every position, attention over the full square (as the
// kernels compute it), the output matrix at `outputs` positions per row.
double forward_flops(const ModelConfig& c, int64_t B, int64_t T, int64_t outputs) {
  const double hd = static_cast<double>(c.head_dim());
  const double layer = static_cast<double>(c.dim) * (c.n_heads + 2 * c.n_kv_heads) * hd +
                       static_cast<double>(c.n_heads) * hd * c.dim +
                       3.0 * static_cast<double>(c.dim) * c.hidden_dim;
  const double per_row = 2.0 * T * layer * c.n_layers + 4.0 * T * T * c.n_heads * hd * c.n_layers +
                         2.0 * outputs * static_cast<double>(c.dim) * c.vocab_size;
  return per_row * static_cast<double>(B);
}

double sgemm_ms(int64_t n) {
  static at::Tensor a = at::randn({1024, 1024}), b = at::randn({1024, 1024});
  (void)n;
  auto t = Clock::now();
  at::Tensor c = at::mm(a, b);
  return ms_since(t);
}

// One sequence (B = 1) or a KernelSHAP batch (B = 16 masked copies).
at::Tensor make_input(const Model& m, int64_t B, int64_t T) {
  at::manual_seed(7 + T);
  at::Tensor ids = at::randint(3, m.config().vocab_size, {1, T}, at::kLong);
  at::Tensor emb = m.embed(ids);  // [1, T, D]
  if (B == 1) return emb;
  at::Tensor keep = at::rand({B, T, 1}) < 0.5;
  return at::where(keep, emb.expand({B, T, -1}), at::zeros_like(emb)).contiguous();
}

double time_candor(const Model& m, const at::Tensor& emb, bool libtorch) {
  at::NoGradGuard ng;
  ForwardArgs a;
  a.embeddings = emb;
  a.last_only = true;
  a.libtorch_path = libtorch;
  auto t = Clock::now();
  at::Tensor out = m.forward(a);
  return ms_since(t);
}

// Forward + backward to the embeddings: the gradient of the last position's top logit.
double time_candor_grad(const Model& m, const at::Tensor& emb, bool libtorch) {
  auto t = Clock::now();
  ForwardArgs a;
  a.last_only = true;
  if (!libtorch) {
    a.embeddings = emb;
    at::Tensor logits;
    std::unique_ptr<GradientTape> tape = m.forward_with_tape(a, &logits);
    if (!tape) return 0;
    at::Tensor d = at::zeros_like(logits);
    d.view({-1, logits.size(-1)}).scatter_(1, logits.view({-1, logits.size(-1)}).argmax(1, true),
                                          1.0f);
    at::Tensor g = tape->backward(d);
    return ms_since(t);
  }
  at::AutoGradMode grad(true);
  at::Tensor e = emb.detach().requires_grad_(true);
  a.embeddings = e;
  a.libtorch_path = true;
  std::get<0>(m.forward(a).max(-1)).sum().backward();
  return ms_since(t);
}

// FLOPs of forward + backward to the inputs: the projections twice, the attention products
// three times (scores and mix forward; dV, dP, dQ, dK backward), the output matrix twice.
double fwdbwd_flops(const ModelConfig& c, int64_t T) {
  const double hd = static_cast<double>(c.head_dim());
  return 2.0 * forward_flops(c, 1, T, 1) + 4.0 * T * T * c.n_heads * hd * c.n_layers;
}

struct Row {
  std::string model, what;
  int64_t T;
  int threads;
  double fused, libtorch, torch, sgemm_gflops, flops;
};

// --loop=N: the fused forward and forward + backward, N times each, on one thread.
void run_loop(const Settings& s) {
  std::string why;
  std::unique_ptr<Model> model = s.models.front() == "stories260K"
                                     ? bench::load_stories(&why)
                                     : make_random_llama(bench::llama768_config(32000), 1234);
  if (!model) {
    std::printf("%s skipped: %s\n", s.models.front().c_str(), why.c_str());
    return;
  }
  ThreadScope scope(s.threads.front());
  const int64_t T = s.lengths.front();
  const at::Tensor emb = make_input(*model, 1, T);
  std::vector<double> f, g;
  for (int i = 0; i < s.loop; ++i) f.push_back(time_candor(*model, emb, false));
  for (int i = 0; i < s.loop; ++i) g.push_back(time_candor_grad(*model, emb, false));
  std::printf("%s T=%lld threads %d kernels %s: forward %.3f ms, forward + backward %.3f ms "
              "(medians of %d)\n",
              s.models.front().c_str(), (long long)T, s.threads.front(),
              fused::vec::kernels().name, median(f), median(g), s.loop);
}

void run_table(const Settings& s, TorchPeer* peer) {
  std::vector<Row> rows;
  for (const std::string& name : s.models) {
    std::unique_ptr<Model> model;
    std::string why;
    if (name == "stories260K") {
      model = bench::load_stories(&why);
      if (!model) {
        std::printf("stories260K skipped: %s\n", why.c_str());
        continue;
      }
    } else {
      model = make_random_llama(bench::llama768_config(32000), 1234);
    }
    const ModelConfig& c = model->config();
    if (peer) {
      char req[256];
      std::snprintf(req, sizeof req, "model %s %lld %lld %lld %lld %lld %lld", name.c_str(),
                    (long long)c.dim, (long long)c.hidden_dim, (long long)c.n_layers,
                    (long long)c.n_heads, (long long)c.n_kv_heads, (long long)c.vocab_size);
      peer->ask(req);
    }
    std::printf("%s: forward path: %s; gradients: %s\n", name.c_str(),
                model->forward_path().c_str(), model->gradient_path().c_str());
    std::fflush(stdout);
    for (int threads : s.threads) {
      ThreadScope scope(threads);
      for (int64_t T : s.lengths) {
        for (const std::string what : {"forward", "kshap16", "fwdbwd"}) {
          const int64_t B = what == "kshap16" ? 16 : 1;
          const bool grad = what == "fwdbwd";
          at::Tensor emb = make_input(*model, B, T);
          const double flops = grad ? fwdbwd_flops(c, T) : forward_flops(c, B, T, 1);
          auto run = [&](bool libtorch) {
            return grad ? time_candor_grad(*model, emb, libtorch)
                        : time_candor(*model, emb, libtorch);
          };
          // A large model at 128 tokens x 16 rows is slow: fewer rounds there.
          const double est = flops / 2e10 * 1e3;  // ms at ~20 GFLOP/s
          const int rounds = est > 3000 ? 1 : est > 800 ? std::min(3, s.rounds) : s.rounds;
          const int inner = est < 5 ? 20 : 1;  // tiny passes: several per round
          std::vector<double> f, l, p, g;
          if (est < 3000) {  // warm-up
            run(false);
            run(true);
          }
          for (int r = 0; r < rounds; ++r) {
            double tf = 0, tl = 0;
            for (int i = 0; i < inner; ++i) tf += run(false);
            for (int i = 0; i < inner; ++i) tl += run(true);
            f.push_back(tf / inner);
            l.push_back(tl / inner);
            g.push_back(sgemm_ms(1024));
            if (peer) {
              char req[128];
              std::snprintf(req, sizeof req, "time %s %lld %lld %d %d", grad ? "fwdbwd" : "forward",
                            (long long)B, (long long)T, threads, inner);
              std::vector<double> t = peer->times(req);
              double sum = 0;
              for (double x : t) sum += x;
              if (!t.empty()) p.push_back(sum / static_cast<double>(t.size()));
            }
          }
          Row row{name,
                  what,
                  T,
                  threads,
                  median(f),
                  median(l),
                  p.empty() ? 0.0 : median(p),
                  2.0 * 1024 * 1024 * 1024 / median(g) / 1e6,
                  flops};
          rows.push_back(row);
          std::printf(
              "  %-8s T=%-4lld threads %d: fused %.3f ms, libtorch %.3f ms, torch %.3f ms\n",
              row.what.c_str(), (long long)T, threads, row.fused, row.libtorch, row.torch);
          std::fflush(stdout);
        }
      }
    }
  }
  std::printf(
      "\n| model | pass | tokens | threads | fused ms | libtorch ms | PyTorch ms | fused / "
      "PyTorch | libtorch / PyTorch | fused GFLOP/s | sgemm GFLOP/s | fused / sgemm rate |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    const double gf = r.flops / r.fused / 1e6;
    auto ratio = [&](double x) {
      char b[32];
      if (r.torch > 0)
        std::snprintf(b, sizeof b, "%.2f", x / r.torch);
      else
        std::snprintf(b, sizeof b, "-");
      return std::string(b);
    };
    std::printf("| %s | %s | %lld | %d | %.3f | %.3f | %s | %s | %s | %.1f | %.1f | %.2f |\n",
                r.model.c_str(), r.what.c_str(), (long long)r.T, r.threads, r.fused, r.libtorch,
                r.torch > 0 ? std::to_string(r.torch).substr(0, 7).c_str() : "-",
                ratio(r.fused).c_str(), ratio(r.libtorch).c_str(), gf, r.sgemm_gflops,
                gf / r.sgemm_gflops);
  }
}

// Section 2: saliency on llama768 at 32 tokens, one thread, taken apart.
void run_saliency(const Settings& s, TorchPeer* peer) {
  ThreadScope scope(1);
  auto model = bench::make_large();
  const int64_t T = 32;
  const std::vector<TokenId> ids = bench::make_prompt(*model, true, T);
  at::Tensor ids_t =
      at::tensor(std::vector<int64_t>(ids.begin(), ids.end()), at::kLong).unsqueeze(0);
  ExplainRequest req;
  req.input_ids = ids;
  std::unique_ptr<Explainer> ex = make_explainer("saliency");
  if (peer) {
    const ModelConfig& c = model->config();
    char r[256];
    std::snprintf(r, sizeof r, "model llama768 %lld %lld %lld %lld %lld %lld", (long long)c.dim,
                  (long long)c.hidden_dim, (long long)c.n_layers, (long long)c.n_heads,
                  (long long)c.n_kv_heads, (long long)c.vocab_size);
    peer->ask(r);
  }
  auto fwd_bwd = [&](int64_t B) {  // forward with grad at the last position + backward
    at::Tensor emb = model->embed(ids_t).expand({B, T, -1}).contiguous().requires_grad_(true);
    auto t = Clock::now();
    ForwardArgs a;
    a.embeddings = emb;
    a.output_positions = at::tensor(std::vector<int64_t>{T - 1}, at::kLong);
    at::Tensor v = at::log_softmax(model->forward(a), -1).select(-1, 5).sum();
    v.backward();
    return ms_since(t);
  };
  std::vector<double> explain, fb1, fb8, fwd_lt, fwd_fused, fb_fused, torch_fb;
  ex->explain(*model, req);
  for (int r = 0; r < s.rounds; ++r) {
    auto t = Clock::now();
    ex->explain(*model, req);
    explain.push_back(ms_since(t));
    fb1.push_back(fwd_bwd(1));
    fb8.push_back(fwd_bwd(8) / 8);
    at::Tensor emb = model->embed(ids_t);
    fwd_lt.push_back(time_candor(*model, emb, true));
    fwd_fused.push_back(time_candor(*model, emb, false));
    fb_fused.push_back(time_candor_grad(*model, emb, false));
    if (peer) {
      std::vector<double> t2 = peer->times("time fwdbwd 1 32 1 1");
      if (!t2.empty()) torch_fb.push_back(t2[0]);
    }
  }
  std::printf(
      "\n## Saliency, llama768, 32 tokens, 1 thread (medians of %d rounds)\n\n"
      "| what | ms |\n|---|---|\n"
      "| explain(saliency) end to end (target: top prediction) | %.1f |\n"
      "| forward with grad + backward (libtorch autograd), batch 1 | %.1f |\n"
      "| forward with grad + backward, batch 8, per row | %.1f |\n"
      "| no-grad forward, libtorch path | %.1f |\n"
      "| no-grad forward, fused path | %.1f |\n"
      "| fused forward + hand-written backward, batch 1 | %.1f |\n"
      "| PyTorch eager forward + backward, batch 1 | %s |\n",
      s.rounds, median(explain), median(fb1), median(fb8), median(fwd_lt), median(fwd_fused),
      median(fb_fused),
      torch_fb.empty() ? "-" : std::to_string(median(torch_fb)).substr(0, 6).c_str());
}

// Resident memory of the process, in bytes (/proc/self/statm).
double rss_bytes() {
  long pages = 0, resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  std::fclose(f);
  return static_cast<double>(resident) * static_cast<double>(::sysconf(_SC_PAGESIZE));
}

// Section 3: llama768 kept quantized (Q4_K, Q8_0 GGUF copies of the random model, loaded with
// their matrices in blocks) against its float32 forward: one sequence, logits of the last
// position, fused path, interleaved round after round; memory as the resident growth of
// loading the model and running one forward (the file's pages count once touched).
void run_quant(const Settings& s) {
  std::printf("\n## llama768 with weights kept quantized vs float32 (fused forward, medians of %d "
              "rounds)\n\n",
              s.rounds);
  std::fflush(stdout);
  const double rss0 = rss_bytes();
  auto f32 = bench::make_large();
  {
    at::Tensor e = make_input(*f32, 1, 8);
    time_candor(*f32, e, false);
  }
  const double f32_mem = rss_bytes() - rss0;
  const double f32_weights = 4.0 * static_cast<double>(f32->n_params());
  char tmpl[] = "/tmp/candor_bench_quant_XXXXXX";
  const char* dir = ::mkdtemp(tmpl);
  if (!dir) {
    std::printf("skipped: cannot make a temporary folder\n");
    return;
  }
  struct Q {
    std::string type;
    std::unique_ptr<Model> model;
    double mem = 0, file = 0;
  };
  std::vector<Q> qs;
  for (const std::string& type : s.quant_types) {
    const std::string path = std::string(dir) + "/llama768_" + type + ".gguf";
    save_gguf(*f32, path, type);
    struct stat st;
    ::stat(path.c_str(), &st);
    const double before = rss_bytes();
    Q q{type, load_model(path), 0, static_cast<double>(st.st_size)};
    at::Tensor e = make_input(*q.model, 1, 8);
    time_candor(*q.model, e, false);
    q.mem = rss_bytes() - before;
    std::printf("%s: forward path: %s\n", type.c_str(), q.model->forward_path().c_str());
    std::remove(path.c_str());
    qs.push_back(std::move(q));
  }
  ::rmdir(dir);
  std::printf("\n| weights | threads | tokens | ms | / f32 time | resident MB | / f32 resident | "
              "weight bytes MB | / f32 weight bytes |\n|---|---|---|---|---|---|---|---|---|\n");
  for (int threads : s.threads) {
    ThreadScope scope(threads);
    for (int64_t T : s.lengths) {
      at::Tensor emb = make_input(*f32, 1, T);
      time_candor(*f32, emb, false);
      for (Q& q : qs) time_candor(*q.model, emb, false);
      std::vector<double> tf;
      std::vector<std::vector<double>> tq(qs.size());
      for (int r = 0; r < s.rounds; ++r) {
        tf.push_back(time_candor(*f32, emb, false));
        for (size_t i = 0; i < qs.size(); ++i) tq[i].push_back(time_candor(*qs[i].model, emb, false));
      }
      const double mf = median(tf);
      std::printf("| f32 | %d | %lld | %.1f | 1.00 | %.0f | 1.00 | %.0f | 1.00 |\n", threads,
                  (long long)T, mf, f32_mem / 1e6, f32_weights / 1e6);
      for (size_t i = 0; i < qs.size(); ++i) {
        const double mq = median(tq[i]);
        std::printf("| %s | %d | %lld | %.1f | %.2f | %.0f | 1/%.1f | %.0f | 1/%.1f |\n",
                    qs[i].type.c_str(), threads, (long long)T, mq, mq / mf, qs[i].mem / 1e6,
                    f32_mem / std::max(1.0, qs[i].mem), qs[i].file / 1e6,
                    f32_weights / qs[i].file);
      }
      std::fflush(stdout);
    }
  }
}

}  // namespace
}  // namespace candor

int main(int argc, char** argv) {
  candor::prepare_process(argc, argv);
  using namespace candor;
  Settings s;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&](const char* key) {
      const std::string k = std::string(key) + "=";
      return a.rfind(k, 0) == 0 ? a.substr(k.size()) : std::string();
    };
    if (!val("--models").empty()) {
      s.models = split(val("--models"));
    } else if (!val("--lengths").empty()) {
      s.lengths.clear();
      for (auto& x : split(val("--lengths"))) s.lengths.push_back(std::stoll(x));
    } else if (!val("--threads").empty()) {
      s.threads.clear();
      for (auto& x : split(val("--threads"))) s.threads.push_back(std::stoi(x));
    } else if (!val("--rounds").empty()) {
      s.rounds = std::max(1, std::stoi(val("--rounds")));
    } else if (a == "--no-torch") {
      s.torch = false;
    } else if (a == "--no-saliency") {
      s.saliency = false;
    } else if (a == "--only-saliency") {
      s.models.clear();
      s.quant = false;
    } else if (a == "--no-quant") {
      s.quant = false;
    } else if (a == "--only-quant") {
      s.models.clear();
      s.saliency = false;
      s.torch = false;
    } else if (a == "--scalar") {
      fused::vec::set_simd(false);
    } else if (!val("--loop").empty()) {
      s.loop = std::max(1, std::stoi(val("--loop")));
    } else if (!val("--quant-types").empty()) {
      s.quant_types = split(val("--quant-types"));
    } else {
      std::fprintf(stderr,
                   "unknown argument %s\nusage: bench_kernels [--models=stories260K,llama768] "
                   "[--lengths=32,128] [--threads=1,2] [--rounds=7] [--no-torch] "
                   "[--no-saliency] [--only-saliency] [--no-quant] [--only-quant] "
                   "[--quant-types=q4_k,q8_0] [--scalar] [--loop=N]\n",
                   a.c_str());
      return 2;
    }
  }
  if (s.loop > 0) {
    if (s.models.empty()) s.models = {"stories260K"};
    run_loop(s);
    return 0;
  }
  const BlasInfo blas = blas_info();
  std::printf(
      "# bench_kernels\n\nBLAS %s (%s); medians over rounds, each round runs fused, "
      "libtorch, a 1024^3 sgemm and PyTorch one after the other\n",
      blas.library.c_str(), blas.core.c_str());
  std::unique_ptr<TorchPeer> peer;
  if (s.torch) {
    peer = std::make_unique<TorchPeer>();
    std::string why;
    if (!peer->start(&why)) {
      std::printf("PyTorch side skipped: %s\n", why.c_str());
      peer.reset();
    } else {
      std::printf("PyTorch eager %s (python3-torch)\n", peer->version().c_str());
    }
  }
  std::fflush(stdout);
  if (!s.models.empty()) run_table(s, peer.get());
  if (s.saliency) run_saliency(s, peer.get());
  if (s.quant) run_quant(s);
  return 0;
}
