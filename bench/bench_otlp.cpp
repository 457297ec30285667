// The cost of OpenTelemetry export on the request path (issue 16, `candor serve --otlp`): the
// same plain completion on stories260K through four servers, interleaved: no export, export to a
// live collector, to a dead one (a closed port) and to a slow one (each POST held 200 ms). The
// export runs on a background thread, so the ratios should stay near 1. The audit log is in
// memory here, so that only the export differs between the servers.
// Usage: bench_otlp [--reps N]
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.h"
#include "candor/audit_log.h"
#include "candor/runtime.h"
#include "candor/serve.h"
#include "candor/supervise.h"

using namespace candor;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

class MemoryLog : public store::AuditLog {
 public:
  store::AuditRecord append(store::AuditRecord r) override {
    std::lock_guard<std::mutex> lock(mu_);
    r.seq = ++n_;
    r.id = "r" + std::to_string(n_);
    return r;
  }
  std::optional<store::AuditRecord> get(const std::string&) const override { return std::nullopt; }
  store::AuditPage query(const store::AuditQuery&) const override { return {}; }
  size_t queue_depth() const override { return 0; }
  void close() override {}

 private:
  std::mutex mu_;
  int64_t n_ = 0;
};

// A collector on a free loopback port; every POST waits `delay_ms` before it answers.
struct Collector {
  httplib::Server http;
  std::thread thread;
  int port = 0;
  std::atomic<int64_t> spans{0};
  explicit Collector(int delay_ms) {
    http.Post("/v1/traces", [this, delay_ms](const httplib::Request& req, httplib::Response& res) {
      if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
      json j = json::parse(req.body, nullptr, false);
      if (j.is_object())
        for (const json& rs : j["resourceSpans"])
          for (const json& ss : rs["scopeSpans"]) spans += static_cast<int64_t>(ss["spans"].size());
      res.set_content("{}", "application/json");
    });
    port = http.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { http.listen_after_bind(); });
    for (int i = 0; i < 500 && !http.is_running(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ~Collector() {
    http.stop();
    if (thread.joinable()) thread.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  prepare_process(argc, argv);
  int reps = 40;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--reps") reps = std::max(3, std::atoi(argv[i + 1]));
  std::string why;
  std::unique_ptr<Model> model = bench::load_stories(&why);
  if (!model) {
    std::cout << "bench_otlp skipped: " << why << "\n";
    return 0;
  }
  auto sup = std::make_shared<serve::Supervision>();
  sup->policy = supervise::parse_policy(
      "explain:\n  enabled: false\nchecks:\n"
      "  - type: uncertainty\n    max_mean_entropy: 4\n"
      "  - type: length\n    max_tokens: 64\n"
      "  - type: blocked_terms\n    terms: [dragon]\n",
      "bench.yaml");
  auto supervisor = std::make_shared<supervise::Supervisor>(sup->policy);
  sup->review = [supervisor](const supervise::Exchange& e) { return supervisor->review(e); };

  Collector live(0), slow(200);
  int dead_port = 0;
  {
    Collector gone(0);
    dead_port = gone.port;
  }
  const std::vector<std::pair<std::string, std::string>> setups = {
      {"no export", ""},
      {"live collector", live.url()},
      {"dead collector (closed port)", "http://127.0.0.1:" + std::to_string(dead_port)},
      {"slow collector (200 ms per POST)", slow.url()}};
  std::vector<std::unique_ptr<serve::Server>> servers;
  auto log = std::make_shared<MemoryLog>();
  for (const auto& [name, url] : setups) {
    serve::ServerOptions o;
    o.port = 0;
    o.otlp_url = url;
    o.otlp_queue = 64;
    auto s = std::make_unique<serve::Server>(o);
    s->set_supervision(sup);
    s->start();
    s->set_model(model.get(), log, "bench");
    servers.push_back(std::move(s));
  }
  const json body = {{"prompt", "Once upon a time, there was a little girl named Lily. She"},
                     {"max_tokens", 16},
                     {"temperature", 0}};
  std::vector<std::vector<double>> lat(servers.size());
  for (int r = -2; r < reps; ++r)  // two warm-up rounds, then interleaved rounds
    for (size_t k = 0; k < servers.size(); ++k) {
      httplib::Client c("127.0.0.1", servers[k]->port());
      c.set_read_timeout(60, 0);
      const auto t0 = Clock::now();
      auto res = c.Post("/v1/completions", body.dump(), "application/json");
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      if (!res || res->status != 200) {
        std::cerr << "request failed on '" << setups[k].first << "'\n";
        return 1;
      }
      if (r >= 0) lat[k].push_back(ms);
    }
  std::cout << "# bench_otlp: a 16-token completion on stories260K, 3 checks, medians of " << reps
            << " interleaved requests\n";
  const double base = median(lat[0]);
  for (size_t k = 0; k < servers.size(); ++k)
    std::printf("%-34s %7.2f ms  %.3fx no export\n", setups[k].first.c_str(), median(lat[k]),
                median(lat[k]) / base);
  for (auto& s : servers) s->stop();
  std::printf(
      "spans received: live %lld, slow %lld (of %d requests each; the rest were dropped "
      "and counted)\n",
      static_cast<long long>(live.spans.load()), static_cast<long long>(slow.spans.load()),
      reps + 2);
  return 0;
}
