// The fused no-grad forward against the libtorch path and PyTorch eager, in the same run.
//
// For stories260K and the GPT-2-small-sized random Llama (llama768), at 32 and 128 tokens and
// 1 and 2 threads: a forward (one sequence, logits of the last position), a KernelSHAP-style
// batch (16 masked copies of the input embeddings, zero baseline, logits of the last position),
// a forward + backward to the input embeddings (one sequence, the gradient of the last
// position's top logit: the fused path's hand-written backward, libtorch's autograd) and
// integrated gradients with 50 points batched as Captum batches them (internal_batch_size
// --ig-chunk, 10 by default: each chunk one forward + one backward), each through candor's fused
// path, candor's libtorch path (not for integrated gradients) and PyTorch eager (Debian's
// python3-torch, bench/bench_kernels.py, served over a pipe so the three are measured
// interleaved, round after round). Reported: medians, ratios to PyTorch, each as a fraction of
// the FLOP rate of a 1024^3 sgemm measured in the same rounds, and 2 threads against 1.
// PyTorch runs on candor's own weights (dumped to a temporary file), and a check compares the
// two sides' logits, gradient and integrated gradients on the same ids. Section 2 takes the
// single-input gradient path (saliency) apart on llama768 at 32 tokens, one thread.
//
// The report (markdown) goes to stdout, progress to stderr: bench/bench_kernels.sh runs it all.
//
// Section 3 (run first, so that resident memory is measured in a fresh process) runs
// llama768's Q4_K and Q8_0 GGUF copies, kept quantized in memory, against its float32 forward
// (time and memory).
//
// Run: bench_kernels [--models=stories260K,llama768] [--lengths=32,128] [--threads=1,2]
//                    [--rounds=7] [--passes=forward,kshap16,fwdbwd,ig50] [--ig-chunk=10]
//                    [--no-torch] [--no-saliency] [--no-quant] [--only-quant]
//                    [--quant-types=q4_k,q8_0] [--scalar] [--loop=N] [--dequant]
// --scalar: the fused path's scalar elementwise kernels instead of AVX2 (models/fused/vec.h).
// --loop=N: only the fused forward and forward + backward of the first model and length, N
// times each (those of them --passes names), timed per pass (for a profiler: `perf record -g
// build/bench/bench_kernels --models=stories260K --lengths=128 --passes=forward --loop=200`). With --loop the first model may also be
// gpt2_768, a GPT-2-small-sized random model (LayerNorm, tanh GELU, learned positions, biases;
// vocabulary 50257, tied), for the LayerNorm and GELU kernels.
// --dequant: only the block expansion of each GGUF type, the reader's loops against AVX2.
#include <ATen/ATen.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "bench_common.h"
#include "candor/explain.h"
#include "candor/model.h"
#include "candor/runtime.h"
#include "models/formats/gguf.h"
#include "models/fused/vec.h"
#include "models/llama.h"

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
  bool dequant = false;  // --dequant
  std::vector<std::string> passes = {"forward", "kshap16", "fwdbwd", "ig50"};
  int ig_points = 50;
  int ig_chunk = 10;  // Captum's internal_batch_size
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

// Integrated gradients of one sequence x [1, T, D] as Captum computes them (riemann_middle,
// zero baseline, internal_batch_size = chunk): the points' scaled copies in chunks of `chunk`
// rows, each chunk one fused forward with a tape and one backward of the target logit at the
// last position; the gradients averaged and multiplied by x - baseline. Returns ms (0 when the
// model has no fused backward); the attribution [T, D] into *attr when given.
double time_candor_ig(const Model& m, const at::Tensor& x, int64_t target, int points, int chunk,
                      at::Tensor* attr = nullptr) {
  auto t = Clock::now();
  at::Tensor total = at::zeros({x.size(1), x.size(2)}, at::kFloat);
  for (int start = 0; start < points; start += chunk) {
    const int64_t n = std::min(chunk, points - start);
    at::Tensor alphas = (at::arange(start, start + n, at::kFloat) + 0.5) / points;
    ForwardArgs a;
    a.embeddings = (alphas.view({n, 1, 1}) * x).contiguous();  // baseline + a * (x - baseline)
    a.last_only = true;
    at::Tensor logits;
    std::unique_ptr<GradientTape> tape = m.forward_with_tape(a, &logits);
    if (!tape) return 0;
    at::Tensor d = at::zeros_like(logits);
    d.select(-1, target).fill_(1.0f);
    total.add_(tape->backward(d).sum(0));
  }
  at::Tensor result = x[0] * total / static_cast<double>(points);
  const double ms = ms_since(t);
  if (attr) *attr = result;
  return ms;
}

// The top logit's id at the last position of x [1, T, D].
int64_t top_token(const Model& m, const at::Tensor& x) {
  at::NoGradGuard ng;
  ForwardArgs a;
  a.embeddings = x;
  a.last_only = true;
  return m.forward(a).reshape({-1}).argmax().item<int64_t>();
}

bool write_f32(FILE* f, const at::Tensor& t) {
  const at::Tensor c = t.detach().to(at::kFloat).contiguous();
  return std::fwrite(c.data_ptr<float>(), sizeof(float), c.numel(), f) ==
         static_cast<size_t>(c.numel());
}

bool write_f32(const std::string& path, const at::Tensor& t) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return false;
  const bool ok = write_f32(f, t);
  return std::fclose(f) == 0 && ok;
}

bool write_text(const std::string& path, const std::string& text) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) return false;
  const bool ok = std::fputs(text.c_str(), f) >= 0;
  return std::fclose(f) == 0 && ok;
}

// A temporary folder, removed with what it holds when this goes.
struct TempDir {
  std::string path;
  std::vector<std::string> files;
  TempDir() {
    char tmpl[] = "/tmp/candor_bench_kernels_XXXXXX";
    if (::mkdtemp(tmpl)) path = tmpl;
  }
  std::string file(const std::string& name) {
    files.push_back(path + "/" + name);
    return files.back();
  }
  ~TempDir() {
    for (const std::string& f : files) std::remove(f.c_str());
    if (!path.empty()) ::rmdir(path.c_str());
  }
};

// Loads `name` into the PyTorch side with this model's own weights: its named parameters,
// float32, one after the other in `path`, their names and shapes in path.txt (what
// bench_kernels.py's load_weights reads). False (why in *why) when it cannot.
bool send_model(TorchPeer* peer, const std::string& name, const Model& m, std::string* why) {
  const ModelConfig& c = m.config();
  TempDir dir;
  if (dir.path.empty()) {
    *why = "cannot make a temporary folder under /tmp";
    return false;
  }
  const std::string path = dir.file("weights.f32");
  const std::string names = dir.file("weights.f32.txt");
  FILE* f = std::fopen(path.c_str(), "wb");
  std::string manifest;
  bool ok = f != nullptr;
  for (const auto& [pname, t] : m.named_parameters()) {
    if (!ok) break;
    ok = write_f32(f, t);
    manifest += pname;
    for (int64_t s : t.sizes()) manifest += " " + std::to_string(s);
    manifest += "\n";
  }
  if (f && std::fclose(f) != 0) ok = false;
  if (!ok || !write_text(names, manifest)) {
    *why = "cannot write the weights to " + path + " (disk full?)";
    return false;
  }
  char req[512];
  std::snprintf(req, sizeof req, "model %s %lld %lld %lld %lld %lld %lld %.9g %.9g %s",
                name.c_str(), (long long)c.dim, (long long)c.hidden_dim, (long long)c.n_layers,
                (long long)c.n_heads, (long long)c.n_kv_heads, (long long)c.vocab_size,
                static_cast<double>(c.norm_eps), static_cast<double>(c.rope_theta), path.c_str());
  const std::string answer = peer->ask(req);
  if (answer != "ok") {
    *why = answer.empty() ? "python3 gave no answer" : answer;
    return false;
  }
  return true;
}

// The same computation on both sides, one thread: for T random ids, the last position's logits
// (fused forward), the gradient of its top logit to the embeddings (hand-written backward) and
// integrated gradients of that logit; bench_kernels.py computes its own and prints the largest
// differences relative to the largest value. Returns that line.
std::string check_same(TorchPeer* peer, const Model& m, int64_t T, const Settings& s) {
  ThreadScope scope(1);
  TempDir dir;
  if (dir.path.empty()) return "skipped: cannot make a temporary folder under /tmp";
  at::manual_seed(99);
  at::Tensor ids = at::randint(3, m.config().vocab_size, {1, T}, at::kLong);
  at::Tensor x = m.embed(ids);
  at::Tensor logits;
  {
    at::NoGradGuard ng;
    ForwardArgs a;
    a.embeddings = x;
    a.last_only = true;
    logits = m.forward(a).reshape({-1});
  }
  const int64_t target = logits.argmax().item<int64_t>();
  ForwardArgs a;
  a.embeddings = x;
  a.last_only = true;
  at::Tensor tape_logits;
  std::unique_ptr<GradientTape> tape = m.forward_with_tape(a, &tape_logits);
  if (!tape) return "skipped: the model has no fused backward";
  at::Tensor d = at::zeros_like(tape_logits);
  d.select(-1, target).fill_(1.0f);
  at::Tensor grad = tape->backward(d)[0];
  at::Tensor ig;
  time_candor_ig(m, x, target, s.ig_points, s.ig_chunk, &ig);
  std::string id_text;
  for (int64_t i = 0; i < T; ++i) id_text += std::to_string(ids[0][i].item<int64_t>()) + " ";
  if (!write_text(dir.file("ids.txt"), id_text) ||
      !write_text(dir.file("target.txt"), std::to_string(target)) ||
      !write_f32(dir.file("logits.f32"), logits) || !write_f32(dir.file("grad.f32"), grad) ||
      !write_f32(dir.file("ig.f32"), ig))
    return "skipped: cannot write under " + dir.path;
  return peer->ask("check " + dir.path + " " + std::to_string(s.ig_points) + " " +
                   std::to_string(s.ig_chunk));
}

struct Row {
  std::string model, what;
  int64_t T;
  int threads;
  double fused, libtorch, torch, sgemm_gflops, flops;  // libtorch < 0: not run
};

// GPT-2 small's shapes (12 layers of 768, 12 heads, MLP 3072, vocabulary 50257, tied) with
// random weights (normal, std 0.02; LayerNorm weights 1, biases 0.02-normal).
std::unique_ptr<Model> make_gpt2_768() {
  ModelConfig c;
  c.architecture = "gpt2";
  c.source_format = "random";
  c.dim = 768;
  c.hidden_dim = 3072;
  c.n_layers = 12;
  c.n_heads = c.n_kv_heads = 12;
  c.vocab_size = 50257;
  c.max_seq_len = 1024;
  c.norm = NormKind::kLayerNorm;
  c.positions = PositionKind::kLearned;
  c.activation = Activation::kGeluTanh;
  c.attention_bias = true;
  c.tied_embeddings = true;
  at::Generator gen = at::detail::createCPUGenerator(4321);
  auto randn = [&](std::vector<int64_t> shape) {
    return at::normal(0.0, 0.02, shape, gen, at::TensorOptions().dtype(at::kFloat));
  };
  const int64_t D = c.dim, F = c.hidden_dim;
  LlamaWeights w;
  w.tok_embeddings = randn({c.vocab_size, D});
  w.pos_embeddings = randn({c.max_seq_len, D});
  for (int64_t l = 0; l < c.n_layers; ++l) {
    LlamaLayerWeights L;
    L.attn_norm = at::ones({D});
    L.attn_norm_bias = randn({D});
    L.wqkv = randn({3 * D, D});
    L.bqkv = randn({3 * D});
    L.wo = randn({D, D});
    L.bo = randn({D});
    L.ffn_norm = at::ones({D});
    L.ffn_norm_bias = randn({D});
    L.w13 = randn({F, D});
    L.b13 = randn({F});
    L.w2 = randn({D, F});
    L.b2 = randn({D});
    w.layers.push_back(std::move(L));
  }
  w.final_norm = at::ones({D});
  w.final_norm_bias = randn({D});
  w.output = w.tok_embeddings;
  return std::make_unique<LlamaModel>(c, std::move(w), nullptr);
}

// --dequant: the expansion of one 64K-value panel (qgemm's panel size) of each GGUF block type
// by the GGUF reader's scalar loops (dequantize_ggml) and by the AVX2 kernels
// (vec::dequantize_blocks), interleaved round after round over 64 panels of random weights
// (256 MB of floats out per type and side); medians of the per-round times, in the thread's
// CPU time (on a loaded machine wall time would charge the long scalar rounds for the
// preemptions the short vector rounds escape).
double thread_cpu_ms() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) * 1e-6;
}

double process_cpu_ms() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) * 1e-6;
}

void run_dequant(const Settings& s) {
  constexpr int64_t kPanel = int64_t{1} << 16, kPanels = 64;
  const int64_t n = kPanel * kPanels;
  std::vector<float> w(static_cast<size_t>(n));
  {
    at::Generator gen = at::detail::createCPUGenerator(7);
    at::Tensor t = at::normal(0.0, 0.02, {n}, gen, at::TensorOptions().dtype(at::kFloat));
    std::memcpy(w.data(), t.data_ptr<float>(), sizeof(float) * static_cast<size_t>(n));
  }
  std::printf("\n## Block expansion, one panel of %lld values at a time, %lld panels (medians of "
              "%d rounds, thread CPU ms per %lld values)\n\n| type | reader's loops | AVX2 | ratio |\n"
              "|---|---|---|---|\n",
              (long long)kPanel, (long long)kPanels, s.rounds, (long long)n);
  struct T { uint32_t type; const char* name; };
  for (const T t : {T{8, "Q8_0"}, T{12, "Q4_K"}, T{14, "Q6_K"}, T{2, "Q4_0"}, T{1, "F16"},
                    T{30, "BF16"}}) {
    std::string blocks;
    if (t.type == 2) {  // candor does not write Q4_0: f16 scale 2^-9, random nibbles
      blocks.assign(static_cast<size_t>(n / 32 * 18), '\0');
      uint32_t r = 12345;
      for (int64_t b = 0; b < n / 32; ++b) {
        blocks[b * 18] = 0;
        blocks[b * 18 + 1] = 0x18;
        for (int j = 2; j < 18; ++j) {
          r = r * 1664525u + 1013904223u;
          blocks[b * 18 + j] = static_cast<char>(r >> 24);
        }
      }
    } else {
      blocks = quantize_ggml(t.type, w.data(), n);
    }
    const uint8_t* p = reinterpret_cast<const uint8_t*>(blocks.data());
    const size_t panel_bytes = blocks.size() / kPanels;
    std::vector<float> out(static_cast<size_t>(kPanel));
    std::vector<double> ts, tv;
    bool vec_ok = true;
    for (int r = 0; r < s.rounds + 1; ++r) {
      double t0 = thread_cpu_ms();
      for (int64_t k = 0; k < kPanels; ++k) dequantize_ggml(t.type, p + k * panel_bytes, kPanel, out.data());
      const double a = thread_cpu_ms() - t0;
      t0 = thread_cpu_ms();
      for (int64_t k = 0; k < kPanels; ++k)
        vec_ok = fused::vec::dequantize_blocks(t.type, p + k * panel_bytes, kPanel, out.data()) && vec_ok;
      const double b = thread_cpu_ms() - t0;
      if (r > 0) {  // the first round warms up
        ts.push_back(a);
        tv.push_back(b);
      }
    }
    if (!vec_ok) {
      std::printf("| %s | %.2f | - (no vector kernel here) | - |\n", t.name, median(ts));
      continue;
    }
    std::printf("| %s | %.2f | %.2f | %.2fx |\n", t.name, median(ts), median(tv),
                median(ts) / median(tv));
  }
}

// --loop=N: the fused forward and forward + backward, N times each, on one thread.
void run_loop(const Settings& s) {
  std::string why;
  std::unique_ptr<Model> model = s.models.front() == "stories260K" ? bench::load_stories(&why)
                                 : s.models.front() == "gpt2_768"
                                     ? make_gpt2_768()
                                     : make_random_llama(bench::llama768_config(32000), 1234);
  if (!model) {
    std::printf("%s skipped: %s\n", s.models.front().c_str(), why.c_str());
    return;
  }
  ThreadScope scope(s.threads.front());
  const int64_t T = s.lengths.front();
  const at::Tensor emb = make_input(*model, 1, T);
  std::vector<double> f, g, fc, gc;  // wall ms; process CPU ms (steadier on a loaded machine)
  auto wants = [&](const char* p) {
    return std::find(s.passes.begin(), s.passes.end(), p) != s.passes.end();
  };
  if (wants("forward"))
    for (int i = 0; i < s.loop; ++i) {
      const double c0 = process_cpu_ms();
      f.push_back(time_candor(*model, emb, false));
      fc.push_back(process_cpu_ms() - c0);
    }
  if (wants("fwdbwd"))
    for (int i = 0; i < s.loop; ++i) {
      const double c0 = process_cpu_ms();
      g.push_back(time_candor_grad(*model, emb, false));
      gc.push_back(process_cpu_ms() - c0);
    }
  std::printf("%s T=%lld threads %d kernels %s: forward %.3f ms, forward + backward %.3f ms "
              "(medians of %d); CPU ms: forward %.3f, forward + backward %.3f\n",
              s.models.front().c_str(), (long long)T, s.threads.front(),
              fused::vec::kernels().name, median(f), median(g), s.loop, median(fc), median(gc));
  std::fprintf(stderr, "forward path: %s; gradients: %s\n", model->forward_path().c_str(),
               model->gradient_path().c_str());
}

// "12.345" for ms values, "-" when not measured.
std::string ms_text(double v) {
  if (v <= 0) return "-";
  char b[32];
  std::snprintf(b, sizeof b, v >= 100 ? "%.1f" : "%.3f", v);
  return b;
}

std::string ratio_text(double a, double b) {
  if (a <= 0 || b <= 0) return "-";
  char t[32];
  std::snprintf(t, sizeof t, "%.2f", a / b);
  return t;
}

void run_table(const Settings& s, TorchPeer* peer_all) {
  std::vector<Row> rows;
  std::vector<std::string> checks;
  for (const std::string& name : s.models) {
    std::unique_ptr<Model> model;
    std::string why;
    if (name == "stories260K") {
      model = bench::load_stories(&why);
      if (!model) {
        std::printf("stories260K skipped: %s\n", why.c_str());
        continue;
      }
    } else if (name == "llama768") {
      model = make_random_llama(bench::llama768_config(32000), 1234);
    } else {
      std::printf("%s skipped: unknown model (stories260K or llama768)\n", name.c_str());
      continue;
    }
    const ModelConfig& c = model->config();
    TorchPeer* peer = peer_all;
    if (peer && !send_model(peer, name, *model, &why)) {
      std::printf("%s: PyTorch side skipped: %s\n", name.c_str(), why.c_str());
      peer = nullptr;
    }
    std::fprintf(stderr, "%s: forward path: %s; gradients: %s\n", name.c_str(),
                 model->forward_path().c_str(), model->gradient_path().c_str());
    if (peer) {
      const int64_t T = s.lengths.front();
      const std::string line = check_same(peer, *model, T, s);
      checks.push_back("| " + name + " | " + std::to_string(T) + " | " + line + " |");
      std::fprintf(stderr, "  check, %lld tokens: %s\n", (long long)T, line.c_str());
    }
    for (int threads : s.threads) {
      ThreadScope scope(threads);
      for (int64_t T : s.lengths) {
        for (const std::string& what : s.passes) {
          const bool ig = what == "ig50";
          const int64_t B = what == "kshap16" ? 16 : ig ? s.ig_chunk : 1;
          const bool grad = what == "fwdbwd";
          at::Tensor emb = make_input(*model, ig ? 1 : B, T);
          const int64_t target = ig ? top_token(*model, emb) : 0;
          const double flops = ig     ? s.ig_points * fwdbwd_flops(c, T)
                               : grad ? fwdbwd_flops(c, T)
                                      : forward_flops(c, B, T, 1);
          auto run = [&](bool libtorch) {
            if (ig) return time_candor_ig(*model, emb, target, s.ig_points, s.ig_chunk);
            return grad ? time_candor_grad(*model, emb, libtorch)
                        : time_candor(*model, emb, libtorch);
          };
          // A large model at 128 tokens x 16 rows is slow: fewer rounds there.
          const double est = flops / 2e10 * 1e3;  // ms at ~20 GFLOP/s
          const int rounds = est > 3000 ? 1 : est > 800 ? std::min(3, s.rounds) : s.rounds;
          const int inner = est < 5 ? 20 : 1;  // tiny passes: several per round
          std::vector<double> f, l, p, g;
          if (ig) {  // warm-up: one chunk
            time_candor_ig(*model, emb, target, s.ig_chunk, s.ig_chunk);
          } else if (est < 3000) {
            run(false);
            run(true);
          }
          for (int r = 0; r < rounds; ++r) {
            double tf = 0, tl = 0;
            for (int i = 0; i < inner; ++i) tf += run(false);
            if (!ig)  // integrated gradients: fused against PyTorch only
              for (int i = 0; i < inner; ++i) tl += run(true);
            f.push_back(tf / inner);
            l.push_back(ig ? -1.0 : tl / inner);
            g.push_back(sgemm_ms(1024));
            if (peer) {
              char req[128];
              std::snprintf(req, sizeof req, "time %s %lld %lld %d %d %d",
                            ig ? "ig" : grad ? "fwdbwd" : B > 1 ? "kshap" : "forward",
                            (long long)B, (long long)T, threads, inner, s.ig_points);
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
          std::fprintf(stderr,
                       "  %-8s T=%-4lld threads %d: fused %.3f ms, libtorch %s ms, torch %s ms "
                       "(%d rounds)\n",
                       row.what.c_str(), (long long)T, threads, row.fused,
                       ms_text(row.libtorch).c_str(), ms_text(row.torch).c_str(), rounds);
        }
      }
    }
  }
  std::printf(
      "\n## Passes\n\n"
      "| model | pass | tokens | threads | fused ms | libtorch ms | PyTorch ms | fused / "
      "PyTorch | libtorch / PyTorch | fused GFLOP/s | sgemm GFLOP/s | fused / sgemm rate |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    const double gf = r.fused > 0 ? r.flops / r.fused / 1e6 : 0;
    std::printf("| %s | %s | %lld | %d | %s | %s | %s | %s | %s | %.1f | %.1f | %.2f |\n",
                r.model.c_str(), r.what.c_str(), (long long)r.T, r.threads,
                ms_text(r.fused).c_str(), ms_text(r.libtorch).c_str(), ms_text(r.torch).c_str(),
                ratio_text(r.fused, r.torch).c_str(), ratio_text(r.libtorch, r.torch).c_str(), gf,
                r.sgemm_gflops, gf / r.sgemm_gflops);
  }
  // 2 threads against 1: time at 1 thread / time at 2 threads, per side.
  bool header = false;
  for (const Row& one : rows) {
    if (one.threads != 1) continue;
    for (const Row& two : rows) {
      if (two.threads != 2 || two.model != one.model || two.what != one.what || two.T != one.T)
        continue;
      if (!header) {
        std::printf("\n## 2 threads against 1 (time with 1 thread / time with 2)\n\n"
                    "| model | pass | tokens | fused | libtorch | PyTorch | sgemm |\n"
                    "|---|---|---|---|---|---|---|\n");
        header = true;
      }
      std::printf("| %s | %s | %lld | %s | %s | %s | %.2f |\n", one.model.c_str(),
                  one.what.c_str(), (long long)one.T, ratio_text(one.fused, two.fused).c_str(),
                  ratio_text(one.libtorch, two.libtorch).c_str(),
                  ratio_text(one.torch, two.torch).c_str(), two.sgemm_gflops / one.sgemm_gflops);
    }
  }
  if (!checks.empty()) {
    std::printf("\n## Same computation on both sides (candor fused vs PyTorch eager, one thread; "
                "*_rel: largest difference / largest value)\n\n| model | tokens | values |\n"
                "|---|---|---|\n");
    for (const std::string& line : checks) std::printf("%s\n", line.c_str());
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
  // Resident growth below half the weights' bytes means memory freed before was reused: the
  // resident columns are then not measured.
  const bool mem_ok = f32_mem > 0.5 * f32_weights;
  if (!mem_ok)
    std::printf("(resident growth of loading float32 llama768: %.0f MB, under half its %.0f MB "
                "of weights: memory freed earlier was reused, so the resident columns are not "
                "measured; run with --only-quant)\n",
                f32_mem / 1e6, f32_weights / 1e6);
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
      auto mem_text = [&](double m) {
        char b[32];
        std::snprintf(b, sizeof b, "%.0f", m / 1e6);
        return mem_ok ? std::string(b) : std::string("-");
      };
      std::printf("| f32 | %d | %lld | %.1f | 1.00 | %s | 1.00 | %.0f | 1.00 |\n", threads,
                  (long long)T, mf, mem_text(f32_mem).c_str(), f32_weights / 1e6);
      for (size_t i = 0; i < qs.size(); ++i) {
        const double mq = median(tq[i]);
        char ratio[32] = "-";
        if (mem_ok) std::snprintf(ratio, sizeof ratio, "1/%.1f", f32_mem / std::max(1.0, qs[i].mem));
        std::printf("| %s | %d | %lld | %.1f | %.2f | %s | %s | %.0f | 1/%.1f |\n",
                    qs[i].type.c_str(), threads, (long long)T, mq, mq / mf,
                    mem_text(qs[i].mem).c_str(), ratio, qs[i].file / 1e6,
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
    } else if (a == "--dequant") {
      s.dequant = true;
    } else if (!val("--loop").empty()) {
      s.loop = std::max(1, std::stoi(val("--loop")));
    } else if (!val("--quant-types").empty()) {
      s.quant_types = split(val("--quant-types"));
    } else if (!val("--passes").empty()) {
      s.passes = split(val("--passes"));
      for (const std::string& p : s.passes) {
        if (p != "forward" && p != "kshap16" && p != "fwdbwd" && p != "ig50") {
          std::fprintf(stderr, "unknown pass %s: use forward, kshap16, fwdbwd or ig50\n",
                       p.c_str());
          return 2;
        }
      }
    } else if (!val("--ig-chunk").empty()) {
      s.ig_chunk = std::max(1, std::stoi(val("--ig-chunk")));
    } else {
      std::fprintf(stderr,
                   "unknown argument %s\nusage: bench_kernels [--models=stories260K,llama768] "
                   "[--lengths=32,128] [--threads=1,2] [--rounds=7] "
                   "[--passes=forward,kshap16,fwdbwd,ig50] [--ig-chunk=10] [--no-torch] "
                   "[--no-saliency] [--only-saliency] [--no-quant] [--only-quant] "
                   "[--quant-types=q4_k,q8_0] [--scalar] [--loop=N] [--dequant]\n",
                   a.c_str());
      return 2;
    }
  }
  if (s.dequant) {
    run_dequant(s);
    return 0;
  }
  if (s.loop > 0) {
    if (s.models.empty()) s.models = {"stories260K"};
    run_loop(s);
    return 0;
  }
  const BlasInfo blas = blas_info();
  std::printf(
      "# bench_kernels\n\nBLAS %s (%s); medians over rounds, each round runs fused, "
      "libtorch, a 1024^3 sgemm and PyTorch one after the other (1 round, no full warm-up, "
      "for passes estimated over 3 s).\n\n"
      "Passes: `forward` one sequence, logits of the last position; `kshap16` 16 masked copies "
      "of one sequence's embeddings (zero baseline), logits of the last position; `fwdbwd` one "
      "sequence, gradient of the last position's top logit to the embeddings; `ig50` integrated "
      "gradients, %d points (Riemann midpoints, zero baseline) in chunks of %d rows as Captum's "
      "internal_batch_size runs them, each chunk one forward + one backward (fused path only; "
      "no libtorch column).\n\n"
      "FLOPs counted (2 per multiply-add): forward = B x [2 T (D (H+2KV) hd + H hd D + 3 D F) L "
      "+ 4 T^2 H hd L + 2 D V] (projections at every position, attention scores and mix over the "
      "full T x T square as the kernels compute it, output matrix at the last position only); "
      "fwdbwd = 2 x forward + 4 T^2 H hd L (the backward to the inputs repeats every projection "
      "once, transposed; attention needs dV, dP, dQ, dK: four products against the forward's "
      "two; no weight gradients; recomputed attention probabilities not counted); ig50 = %d x "
      "fwdbwd. GFLOP/s = FLOPs / fused time; the sgemm rate is a 1024^3 at::mm in the same "
      "rounds with the same thread count.\n",
      blas.library.c_str(), blas.core.c_str(), s.ig_points, s.ig_chunk, s.ig_points);
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
  // The quantized section first: its memory figures are the process's resident growth, which
  // the earlier sections' freed (and reused) memory would hide.
  if (s.quant) run_quant(s);
  if (!s.models.empty()) run_table(s, peer.get());
  if (s.saliency) run_saliency(s, peer.get());
  return 0;
}
