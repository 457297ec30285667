// The service's costs, in process on 127.0.0.1, on stories260K and the GPT-2-small-sized random
// Llama: (a) HTTP overhead: a plain completion (no explanation, no checks) through the server
// against generate() in process; (b) supervision: the default policy's word-level explanation
// of a 32-token answer (and the checks, when the policy has any) as a multiple of plain
// generation; (c) throughput and p50 / p99 latency at 1, 4 and 16 concurrent clients with
// --parallel 1 and 4. The audit log is the real SQLite one (durable) in a temporary folder.
// (c) also reports the process's CPU seconds per generated token (robust to a loaded machine)
// and, with --parallel 4, the mean batch of the batched decode steps (/metrics).
// Usage: bench_serve [--quick] [--large-only | --small-only] [--load-only: (c) at 1 and 4
// clients only | --no-load: (a) and (b) only] [--reps N: medians of N in (a) and (b)]
// [--explain-loop N: only the explanation of (b) in process, N times, beside generation]
// [--clients N] [--parallel N]: (c) at these only (each may repeat; for profiling)
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <iostream>
#include <string>
#include <sys/resource.h>
#include <vector>

#include "bench_common.h"
#include "candor/audit_log.h"
#include "candor/explain.h"
#include "candor/jobs_explain.h"
#include "candor/generate.h"
#include "candor/runtime.h"
#include "candor/serve.h"

using namespace candor;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * (v.size() - 1) + 0.5));
  return v[i];
}

double median(std::vector<double> v) { return percentile(std::move(v), 0.5); }

std::shared_ptr<serve::Supervision> plain_policy() {
  auto s = std::make_shared<serve::Supervision>();
  s->policy.explain.enabled = false;
  s->policy.limits.max_tokens = 256;
  s->policy.hash = "bench-plain";
  s->policy.limits.request_timeout_ms = 3600e3;  // the load test queues; no request is cut
  return s;
}

std::shared_ptr<serve::Supervision> supervised_policy() {
  auto s = std::make_shared<serve::Supervision>();
  s->policy.explain.enabled = true;
  s->policy.explain.method = "occlusion";
  s->policy.explain.granularity = "word";
  s->policy.limits.max_tokens = 256;
  s->policy.hash = "bench-supervised";
  s->policy.limits.request_timeout_ms = 3600e3;
  return s;
}

struct Bench {
  const Model& model;
  std::string name;
  std::string prompt;
  std::string dir;
  int reps;
  int threads;  // intra-op threads of a request, in process and in the server alike

  struct Served {
    std::unique_ptr<serve::Server> server;
    std::shared_ptr<store::AuditLog> log;
  };
  // durable false: the log at synchronous=NORMAL (candor serve --audit-sync normal).
  Served start(int parallel, std::shared_ptr<serve::Supervision> sup, int threads,
               bool durable = true) const {
    Served s;
    serve::ServerOptions o;
    o.port = 0;
    o.parallel = parallel;
    o.queue = 64;
    o.threads = threads;
    s.server = std::make_unique<serve::Server>(o);
    s.server->set_supervision(sup);
    s.server->start();
    static int n = 0;
    store::AuditLogOptions lo;
    lo.durable = durable;
    s.log = store::open_audit_log(dir + "/audit" + std::to_string(n++) + ".db", lo);
    s.server->set_model(&model, s.log, "bench");
    return s;
  }

  // A client as OpenAI's SDKs are: one keep-alive connection reused for its requests, Nagle
  // off (the request's headers and body go out without waiting for an ACK).
  static std::unique_ptr<httplib::Client> client(int port) {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port);
    c->set_keep_alive(true);
    c->set_tcp_nodelay(true);
    c->set_read_timeout(600, 0);
    return c;
  }

  // One completion on a new connection (closed after it); see the overload below.
  static double request(int port, const json& body, int64_t* tokens, json* timings = nullptr) {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(600, 0);
    return request(c, body, tokens, timings);
  }

  // One completion through `c`; returns seconds (and the generated tokens through *tokens, the
  // server's timings through *timings).
  static double request(httplib::Client& c, const json& body, int64_t* tokens,
                        json* timings = nullptr) {
    const auto t0 = Clock::now();
    auto r = c.Post("/v1/completions", body.dump(), "application/json");
    const double s = seconds_since(t0);
    if (!r || r->status != 200) {
      std::cerr << "request failed: " << (r ? r->body : std::string("no answer")) << "\n";
      return -1;
    }
    const json j = json::parse(r->body);
    if (tokens) *tokens = j["usage"]["completion_tokens"].get<int64_t>();
    if (timings) *timings = j["candor"]["timings"];
    return s;
  }

  // CPU seconds (user + system) this process has used so far.
  static double cpu_seconds() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
  }

  // A gauge's value from /metrics (-1 when absent).
  static double gauge(int port, const std::string& name) {
    httplib::Client c("127.0.0.1", port);
    auto r = c.Get("/metrics");
    if (!r) return -1;
    const size_t at = r->body.find("\n" + name + " ");
    return at == std::string::npos ? -1 : std::stod(r->body.substr(at + name.size() + 2));
  }

  // The supervised request's explanation in process, alone, `n` times (for profiling and for the
  // split of (b)): the greedy 32-token answer's word-level occlusion and its envelope.
  void explain_loop(int n) const {
    GenerateOptions g;
    g.max_new_tokens = 32;
    ThreadScope ts(threads);
    const GenerateResult r = generate(model, prompt, g);
    ExplainRequest req;
    req.input_ids = r.prompt_ids;
    req.target.span = r.generated_ids;
    req.granularity = parse_granularity("word");
    auto ex = make_explainer("occlusion");
    std::vector<double> t_gen, t_ex, t_env, c_gen, c_ex;
    for (int i = 0; i < n; ++i) {
      auto t0 = Clock::now();
      double c0 = cpu_seconds();
      generate(model, prompt, g);
      t_gen.push_back(seconds_since(t0));
      c_gen.push_back(cpu_seconds() - c0);
      t0 = Clock::now();
      c0 = cpu_seconds();
      std::vector<Attribution> atts{ex->explain(model, req)};
      t_ex.push_back(seconds_since(t0));
      c_ex.push_back(cpu_seconds() - c0);
      t0 = Clock::now();
      ReportContext rc;
      rc.prompt = prompt;
      rc.generated_text = r.text;
      const auto env = jobs::explain_envelope(rc, atts);
      t_env.push_back(seconds_since(t0));
    }
    std::printf(
        "in process, %s: generation %.2f ms, word-level occlusion of the %zu-token answer %.2f ms "
        "(%.2fx), its JSON envelope %.2f ms (medians of %d)\n",
        name.c_str(), median(t_gen) * 1e3, r.generated_ids.size(), median(t_ex) * 1e3,
        median(t_ex) / median(t_gen), median(t_env) * 1e3, n);
    {  // positions run against the least any prefix-reusing occlusion needs
      const Attribution a = ex->explain(model, req);
      const double T = static_cast<double>(a.tokens.size());
      double least = T;  // the unperturbed pass
      for (const Feature& f : a.features) least += T - f.begin;
      if (!a.features.empty()) least += T - a.features[0].begin;  // the all-removed row
      std::printf("    %zu features over %.0f positions: %.0f positions run, %.0f at least\n",
                  a.features.size(), T, a.forward_passes * T, least);
    }
    std::printf(
        "    CPU time (robust to a loaded machine): generation %.2f ms, the explanation %.2f ms "
        "(%.2fx)\n",
        median(c_gen) * 1e3, median(c_ex) * 1e3, median(c_ex) / median(c_gen));
  }

  std::vector<int> only_clients, only_parallel;  // (c): empty = all

  void run(bool quick, bool load_only = false, bool no_load = false) const {
    const int64_t n_tokens = 32;
    json body = {{"prompt", prompt}, {"max_tokens", n_tokens}, {"temperature", 0}};
    GenerateOptions g;
    g.max_new_tokens = n_tokens;
    std::cout << "\n## " << name << " (" << usable_cores() << " cores)\n";

    if (!load_only) {
      // (a) HTTP overhead, one client, --parallel 1, all the cores for the request.
      std::vector<double> t_proc, t_http, t_fresh, t_normal, t_sup, srv_gen, srv_audit,
          normal_audit, sup_explain, srv_before;
      std::vector<double> sup_gen, sup_audit, sup_checks;
      {
        ThreadScope ts(threads);
        for (int i = 0; i < 2; ++i) generate(model, prompt, g);  // warm-up
      }
      Served plain = start(1, plain_policy(), threads);
      Served sup = start(1, supervised_policy(), threads);
      Served normal = start(1, plain_policy(), threads, false);
      const int port_plain = plain.server->port(), port_sup = sup.server->port();
      auto plain_client = client(port_plain), sup_client = client(port_sup);
      auto normal_client = client(normal.server->port());
      request(*normal_client, body, nullptr);
      int64_t toks = 0;
      request(*plain_client, body, &toks);
      request(*sup_client, body, nullptr);
      request(port_plain, body, nullptr);
      for (int i = 0; i < reps; ++i) {  // interleaved, so drifts in machine load hit all three
        {
          ThreadScope ts(threads);
          const auto t0 = Clock::now();
          GenerateResult r = generate(model, prompt, g);
          t_proc.push_back(seconds_since(t0));
        }
        json tm;
        t_http.push_back(request(*plain_client, body, nullptr, &tm));
        srv_gen.push_back(tm["generate_ms"].get<double>() / 1e3);
        srv_audit.push_back(tm["audit_ms"].get<double>() / 1e3);
        srv_before.push_back(tm.value("before_audit_ms", 0.0) / 1e3);
        t_fresh.push_back(request(port_plain, body, nullptr));
        t_normal.push_back(request(*normal_client, body, nullptr, &tm));
        normal_audit.push_back(tm["audit_ms"].get<double>() / 1e3);
        t_sup.push_back(request(*sup_client, body, nullptr, &tm));
        sup_explain.push_back(tm.value("explain_ms", 0.0) / 1e3);
        sup_gen.push_back(tm.value("generate_ms", 0.0) / 1e3);
        sup_audit.push_back(tm.value("audit_ms", 0.0) / 1e3);
        sup_checks.push_back(tm.value("checks_ms", 0.0) / 1e3);
      }
      const double mp = median(t_proc), mh = median(t_http), ms = median(t_sup);
      std::printf(
          "(a) plain completion of %lld tokens: in process %.2f ms, through HTTP %.2f ms: "
          "overhead %+.1f%% (medians of %d)\n",
          static_cast<long long>(toks), mp * 1e3, mh * 1e3, 100 * (mh / mp - 1), reps);
      std::printf(
          "    of which, inside the server: generate %.2f ms, audit commit (durable) %.2f ms; "
          "the rest (HTTP, JSON, admission) %.2f ms\n",
          median(srv_gen) * 1e3, median(srv_audit) * 1e3,
          (mh - median(srv_gen) - median(srv_audit)) * 1e3);
      // The rest split: inside the handler before the audit (parse, tokenise, admission, checks:
      // before_audit_ms - generate_ms) and outside it (connect, HTTP, response JSON).
      std::vector<double> pre, outside;
      for (size_t i = 0; i < t_http.size(); ++i) {
        pre.push_back(srv_before[i] - srv_gen[i]);
        outside.push_back(t_http[i] - srv_before[i] - srv_audit[i]);
      }
      std::printf(
          "    the rest: in the handler besides generation %.2f ms; connection, HTTP and "
          "response JSON %.2f ms (medians)\n",
          median(pre) * 1e3, median(outside) * 1e3);
      std::printf(
          "    a new connection per request instead of one kept alive: through HTTP %.2f ms: "
          "overhead %+.1f%%\n",
          median(t_fresh) * 1e3, 100 * (median(t_fresh) / mp - 1));
      std::printf(
          "    the audit log at synchronous=NORMAL (--audit-sync normal: survives kill -9, not a "
          "power loss): through HTTP %.2f ms: overhead %+.1f%%, audit commit %.2f ms\n",
          median(t_normal) * 1e3, 100 * (median(t_normal) / mp - 1), median(normal_audit) * 1e3);
      std::printf(
          "(b) supervised (word-level occlusion of the %lld-token answer, audit commit): "
          "%.2f ms = %.2fx plain generation in process, %.2fx plain through HTTP\n",
          static_cast<long long>(toks), ms * 1e3, ms / mp, ms / mh);
      std::printf(
          "    of which the explanation %.2f ms (with its JSON envelope), generation %.2f ms, "
          "checks %.2f ms, the audit commit %.2f ms (medians)\n",
          median(sup_explain) * 1e3, median(sup_gen) * 1e3, median(sup_checks) * 1e3,
          median(sup_audit) * 1e3);
      plain.server->stop();
      sup.server->stop();
      normal.server->stop();
      normal.log->close();
      plain.log->close();
      sup.log->close();
    }

    if (no_load) return;
    // (c) throughput and latency.
    std::printf(
        "(c) clients  parallel  requests  req/s   tok/s    p50 ms   p99 ms  cpu ms/tok  batch\n");
    const std::vector<int> client_counts = !only_clients.empty() ? only_clients
                                           : load_only           ? std::vector<int>{1, 4}
                                                                 : std::vector<int>{1, 4, 16};
    for (int parallel : only_parallel.empty() ? std::vector<int>{1, 4} : only_parallel) {
      for (int clients : client_counts) {
        const int per_client = quick ? 2 : std::max(2, reps * 2 / clients + 1);
        Served s = start(parallel, plain_policy(), std::max(1, usable_cores() / parallel));
        const int port = s.server->port();
        request(*client(port), body, nullptr);
        std::vector<std::future<std::vector<double>>> fs;
        std::atomic<int64_t> total_tokens{0};
        const double steps0 = gauge(port, "candor_batched_decode_steps");
        const double rows0 = gauge(port, "candor_batched_decode_rows");
        const double cpu0 = cpu_seconds();
        const auto t0 = Clock::now();
        for (int k = 0; k < clients; ++k)
          fs.push_back(std::async(std::launch::async, [&, k] {
            auto c = client(port);
            std::vector<double> lat;
            for (int i = 0; i < per_client; ++i) {
              json b = body;
              b["temperature"] = 1.0;
              b["seed"] = k * 1000 + i;
              int64_t t = 0;
              double l = request(*c, b, &t);
              if (l >= 0) lat.push_back(l), total_tokens += t;
            }
            return lat;
          }));
        std::vector<double> all;
        for (auto& f : fs)
          for (double l : f.get()) all.push_back(l);
        const double wall = seconds_since(t0);
        const double cpu = cpu_seconds() - cpu0;
        const double steps = gauge(port, "candor_batched_decode_steps") - steps0;
        const double rows = gauge(port, "candor_batched_decode_rows") - rows0;
        std::printf("    %7d  %8d  %8zu  %6.2f  %7.1f  %7.1f  %7.1f  %10.1f  %5.2f\n", clients,
                    parallel, all.size(), all.size() / wall, total_tokens / wall,
                    percentile(all, 0.5) * 1e3, percentile(all, 0.99) * 1e3,
                    total_tokens > 0 ? cpu * 1e3 / total_tokens : 0.0,
                    steps > 0 ? rows / steps : 1.0);
        s.server->stop();
        s.log->close();
      }
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  prepare_process(argc, argv);
  bool quick = false, small = true, large = true, load_only = false, no_load = false;
  int explain_only = 0;  // --explain-loop N: only the in-process explanation, N times
  int reps = 0;  // 0: the default (30 / 8, or 5 / 3 with --quick)
  std::vector<int> only_clients, only_parallel;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--clients" || a == "--parallel") && i + 1 < argc)
      (a == "--clients" ? only_clients : only_parallel).push_back(std::atoi(argv[++i]));
    if (a == "--quick") quick = true;
    if (a == "--large-only") small = false;
    if (a == "--small-only") large = false;
    if (a == "--load-only") load_only = true;
    if (a == "--no-load") no_load = true;
    if (a == "--explain-loop" && i + 1 < argc) explain_only = std::max(1, std::atoi(argv[++i]));
    if (a == "--reps" && i + 1 < argc) reps = std::max(1, std::atoi(argv[++i]));
  }
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("candor_bench_serve_" + std::to_string(::getpid())))
                              .string();
  std::filesystem::create_directories(dir);
  std::cout << "# bench_serve: the service against generate() in process (127.0.0.1)\n";
  // One model's run: (a), (b) and (c), or only the in-process explanation with --explain-loop.
  auto run_one = [&](const Model& model, const char* name, const char* prompt, int default_reps,
                     int threads) {
    Bench b{model, name, prompt, dir, reps > 0 ? reps : default_reps, threads, {}, {}};
    b.only_clients = only_clients;
    b.only_parallel = only_parallel;
    if (explain_only > 0) b.explain_loop(explain_only);
    else b.run(quick, load_only, no_load);
  };
  if (small) {
    std::string why;
    std::unique_ptr<Model> stories = bench::load_stories(&why);
    if (!stories) {
      std::cout << "stories260K skipped: " << why << "\n";
    } else {
      run_one(*stories, "stories260K",
              "Once upon a time, there was a little girl named Lily. She", quick ? 5 : 30, 1);
    }
  }
  if (large) {
    std::unique_ptr<Model> big = bench::make_large();
    run_one(*big, "random Llama, GPT-2-small size (dim 768, 12 layers, vocab 32000)",
            "t300 t301 t302 t303 t304 t305 t306 t307 t308 t309 t310 t311", quick ? 3 : 8, 0);
  }
  std::filesystem::remove_all(dir);
  return 0;
}
