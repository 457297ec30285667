// The service's temperature scaling, OpenTelemetry export and the `regenerate` action, in
// process: a real server on 127.0.0.1 (a free port) over stories260K with an in-memory audit log;
// the OTLP collector is a cpp-httplib server on another free loopback port inside the test.
// Every wait is bounded in count and time.
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <regex>
#include <sstream>
#include <thread>

#include "candor/generate.h"
#include "candor/jobs.h"
#include "candor/jobs_temperature.h"
#include "candor/serve.h"
#include "candor/supervise.h"
#include "serve/otlp.h"
#include "serve/serve_harness.h"
#include "test_util.h"

namespace candor {
namespace {

using nlohmann::json;
using testing::stories260k;
using Clock = std::chrono::steady_clock;
using serve_test::MemoryLog;
using serve_test::Running;

// A supervision from policy text (YAML), checks run by the library's Supervisor.
std::shared_ptr<serve::Supervision> supervision(const std::string& yaml) {
  auto s = std::make_shared<serve::Supervision>();
  s->policy = supervise::parse_policy(yaml, "test-policy.yaml");
  auto sup = std::make_shared<supervise::Supervisor>(s->policy);
  s->review = [sup](const supervise::Exchange& e) { return sup->review(e); };
  return s;
}

const char* kNoExplain = "explain:\n  enabled: false\nlimits:\n  max_tokens: 64\n";

// The value of a Prometheus sample line `name{labels} value` (0 when absent).
double metric_value(const std::string& text, const std::string& series) {
  const size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return 0;
  return std::stod(text.substr(at + series.size() + 2));
}

// Waits (at most `seconds`) for `pred`.
template <typename P>
bool eventually(P pred, double seconds = 30) {
  const auto until = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  while (Clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

class ServeExtras : public ::testing::Test {
 protected:
  void SetUp() override { CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin"); }
};

// ---------------------------------------------------------------------------------------------
// Temperature scaling
// ---------------------------------------------------------------------------------------------

// A served model with temperature T returns log-probabilities equal to log_softmax(logits / T)
// computed in process, for the echoed prompt and for the generated tokens, and records T.
TEST_F(ServeExtras, TemperatureScalingServesLogSoftmaxOfLogitsOverT) {
  const double T = 1.7;
  serve::ServerOptions o;
  o.temperature_scaling = T;
  Running r(o, supervision(kNoExplain));
  const std::string prompt = "Once upon a time, there was a little girl named Lily";
  auto [status, body] = r.post(
      "/v1/completions", {{"prompt", prompt}, {"max_tokens", 0}, {"echo", true}, {"logprobs", 2}});
  ASSERT_EQ(status, 200) << body.dump();
  const Tokenizer& tok = stories260k().tokenizer();
  const std::vector<TokenId> ids = jobs::encode_prompt(tok, prompt, false, "");
  at::Tensor lsm, raw;
  {
    at::NoGradGuard no_grad;
    lsm = at::log_softmax(stories260k().logits(ids).to(at::kDouble) / T, -1);
    raw = at::log_softmax(stories260k().logits(ids).to(at::kDouble), -1);
  }
  const json& lp = body["choices"][0]["logprobs"];
  ASSERT_EQ(lp["token_logprobs"].size(), ids.size() - 1);
  double max_diff = 0, max_unscaled_diff = 0;
  for (size_t i = 1; i < ids.size(); ++i) {
    const double want = lsm[static_cast<int64_t>(i) - 1][ids[i]].item<double>();
    const double got = lp["token_logprobs"][i - 1].get<double>();
    max_diff = std::max(max_diff, std::abs(got - want));
    max_unscaled_diff = std::max(
        max_unscaled_diff, std::abs(got - raw[static_cast<int64_t>(i) - 1][ids[i]].item<double>()));
    // The best alternative is the arg-max of the scaled distribution, with its log-probability.
    double best = -1e300;
    for (const auto& [text, v] : lp["top_logprobs"][i - 1].items())
      best = std::max(best, v.get<double>());
    EXPECT_NEAR(best, lsm[static_cast<int64_t>(i) - 1].max().item<double>(), 1e-4) << i;
  }
  EXPECT_LT(max_diff, 1e-4);
  EXPECT_GT(max_unscaled_diff, 0.05) << "T = 1.7 must change the log-probabilities";
  EXPECT_EQ(body["candor"]["temperature_scaling"], T);

  // Generation: the sampled tokens' log-probabilities are the scaled model's, teacher-forced.
  auto [s2, gen] = r.post("/v1/completions", {{"prompt", "Once upon a time"},
                                              {"max_tokens", 12},
                                              {"temperature", 0.9},
                                              {"seed", 11},
                                              {"logprobs", 0}});
  ASSERT_EQ(s2, 200) << gen.dump();
  auto scaled = jobs::temperature_scaled(stories260k(), T);
  jobs::GenerateJobOptions g;
  g.model.model = scaled.get();
  g.prompt = "Once upon a time";
  g.generation.max_new_tokens = 12;
  g.generation.temperature = 0.9f;
  g.generation.seed = 11;
  jobs::GenerateJobResult ref = jobs::run_generate(g);
  EXPECT_EQ(gen["choices"][0]["text"], ref.result.text);
  std::vector<TokenId> all = ref.result.prompt_ids;
  all.insert(all.end(), ref.result.generated_ids.begin(), ref.result.generated_ids.end());
  at::Tensor full;
  {
    at::NoGradGuard no_grad;
    full = at::log_softmax(stories260k().logits(all).to(at::kDouble) / T, -1);
  }
  const json& glp = gen["choices"][0]["logprobs"]["token_logprobs"];
  ASSERT_EQ(glp.size(), ref.result.generated_ids.size());
  const int64_t n_prompt = static_cast<int64_t>(ref.result.prompt_ids.size());
  for (size_t i = 0; i < glp.size(); ++i)
    EXPECT_NEAR(
        glp[i].get<double>(),
        full[n_prompt + static_cast<int64_t>(i) - 1][ref.result.generated_ids[i]].item<double>(),
        1e-4)
        << i;
  // Recorded in every audit record's parameters.
  auto recs = r.log->records();
  ASSERT_EQ(recs.size(), 2u);
  for (const auto& rec : recs) EXPECT_EQ(rec.parameters["temperature_scaling"], T);
}

// `candor serve --temperature-scaling` without a saved temperature fails at once, naming the
// file it looked for and the command that writes it.
TEST_F(ServeExtras, CliTemperatureScalingWithoutASavedTemperatureSaysWhatToRun) {
  const std::string dir = testing::temp_dir();
  const std::string model = dir + "/stories260K.bin";
  std::filesystem::create_symlink(testing::shared_path("models/stories260K/stories260K.bin"),
                                  model);
  testing::CliRun run = testing::run_cli("serve --model " + model + " --listen 127.0.0.1:0 --db " +
                                         dir + "/audit.db --temperature-scaling");
  const int rc = run.code;
  const std::string& out = run.out;
  EXPECT_NE(rc, 0) << out;
  EXPECT_NE(out.find(model + ".temperature.json"), std::string::npos) << out;
  EXPECT_NE(out.find("candor audit calibration --model " + model), std::string::npos) << out;
  EXPECT_NE(out.find("--save-temperature"), std::string::npos) << out;
  EXPECT_EQ(out.find("listening on"), std::string::npos) << "it must fail before it serves";
}

// ---------------------------------------------------------------------------------------------
// OpenTelemetry export
// ---------------------------------------------------------------------------------------------

// A tiny OTLP/HTTP collector: stores every /v1/traces body; `hold` makes it wait (bounded) before
// answering, as a slow collector would. With a certificate and key it serves HTTPS.
struct Collector {
  std::unique_ptr<httplib::Server> server;
  httplib::Server& http;
  bool tls = false;
  std::thread thread;
  int port = 0;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<json> bodies;
  bool hold = false;
  int held = 0;  // requests waiting in the handler
  explicit Collector(const std::string& cert = "", const std::string& key = "")
      : server(cert.empty() ? std::make_unique<httplib::Server>()
                            : std::make_unique<httplib::SSLServer>(cert.c_str(), key.c_str())),
        http(*server),
        tls(!cert.empty()) {
    http.Post("/v1/traces", [this](const httplib::Request& req, httplib::Response& res) {
      std::unique_lock<std::mutex> lock(mu);
      ++held;
      cv.notify_all();
      cv.wait_for(lock, std::chrono::seconds(60), [&] { return !hold; });
      --held;
      bodies.push_back(json::parse(req.body, nullptr, false));
      cv.notify_all();
      res.set_content("{}", "application/json");
    });
    port = http.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { http.listen_after_bind(); });
    for (int i = 0; i < 500 && !http.is_running(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ~Collector() {
    release();
    http.stop();
    if (thread.joinable()) thread.join();
  }
  void release() {
    std::lock_guard<std::mutex> lock(mu);
    hold = false;
    cv.notify_all();
  }
  std::string url() const {
    return std::string(tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(port);
  }
  // Every span received so far.
  std::vector<json> spans() {
    std::lock_guard<std::mutex> lock(mu);
    std::vector<json> out;
    for (const json& b : bodies)
      for (const json& rs : b["resourceSpans"])
        for (const json& ss : rs["scopeSpans"])
          for (const json& s : ss["spans"]) out.push_back(s);
    return out;
  }
};

// The value of attribute `key` of an OTLP attribute list (null when absent).
json attribute(const json& attrs, const std::string& key) {
  for (const json& a : attrs)
    if (a["key"] == key) {
      const json& v = a["value"];
      if (v.contains("stringValue")) return v["stringValue"];
      if (v.contains("intValue")) return std::stoll(v["intValue"].get<std::string>());
      if (v.contains("doubleValue")) return v["doubleValue"];
      if (v.contains("boolValue")) return v["boolValue"];
      if (v.contains("arrayValue")) {
        json out = json::array();
        for (const json& x : v["arrayValue"]["values"]) out.push_back(x["stringValue"]);
        return out;
      }
    }
  return nullptr;
}

const char* kTwoChecks =
    "explain:\n  enabled: false\nlimits:\n  max_tokens: 64\n"
    "checks:\n"
    "  - name: words\n    type: blocked_terms\n    terms: [xylophone]\n    on_fail: block\n"
    "  - name: short\n    type: length\n    max_tokens: 4\n    on_fail: flag\n";

TEST_F(ServeExtras, EachRequestIsExportedAsAGenAiSpanWithOneEvaluationEventPerCheck) {
  Collector col;
  ASSERT_GT(col.port, 0);
  serve::ServerOptions o;
  o.otlp_url = col.url();
  Running r(o, supervision(kTwoChecks));
  const std::string trace = "4bf92f3577b34da6a3ce929d0e0e4736", parent = "00f067aa0ba902b7";
  auto [status, body] =
      r.post("/v1/completions",
             {{"prompt", "Once upon a time"}, {"max_tokens", 8}, {"seed", 5}, {"stop", {"zzz"}}},
             {{"traceparent", "00-" + trace + "-" + parent + "-01"}});
  ASSERT_EQ(status, 200) << body.dump();
  ASSERT_TRUE(eventually([&] { return col.spans().size() >= 1; })) << "no span arrived";
  json span = col.spans()[0];
  EXPECT_EQ(span["traceId"], trace);
  EXPECT_EQ(span["parentSpanId"], parent);
  EXPECT_TRUE(std::regex_match(span["spanId"].get<std::string>(), std::regex("[0-9a-f]{16}")));
  EXPECT_NE(span["spanId"], parent);
  EXPECT_EQ(body["candor"]["trace_id"], trace);
  EXPECT_EQ(span["name"], "text_completion stories260K");
  EXPECT_EQ(span["kind"], 1);
  EXPECT_LE(std::stoll(span["startTimeUnixNano"].get<std::string>()),
            std::stoll(span["endTimeUnixNano"].get<std::string>()));
  const json& a = span["attributes"];
  EXPECT_EQ(attribute(a, "gen_ai.operation.name"), "text_completion");
  EXPECT_EQ(attribute(a, "gen_ai.provider.name"), "candor");
  EXPECT_EQ(attribute(a, "gen_ai.request.model"), "stories260K");
  EXPECT_EQ(attribute(a, "gen_ai.response.model"), "stories260K");
  EXPECT_EQ(attribute(a, "gen_ai.response.id"), body["id"]);
  EXPECT_EQ(attribute(a, "gen_ai.response.finish_reasons"),
            json::array({body["choices"][0]["finish_reason"]}));
  EXPECT_EQ(attribute(a, "gen_ai.usage.input_tokens"), body["usage"]["prompt_tokens"]);
  EXPECT_EQ(attribute(a, "gen_ai.usage.output_tokens"), body["usage"]["completion_tokens"]);
  EXPECT_EQ(attribute(a, "gen_ai.request.max_tokens"), 8);
  EXPECT_EQ(attribute(a, "gen_ai.request.seed"), 5);
  EXPECT_EQ(attribute(a, "gen_ai.request.temperature"), 1.0);
  EXPECT_EQ(attribute(a, "gen_ai.request.stop_sequences"), json::array({"zzz"}));
  EXPECT_EQ(attribute(a, "candor.audit_id"), body["candor"]["audit_id"]);
  EXPECT_EQ(attribute(a, "candor.decision"), body["candor"]["decision"]);
  // No message content: the policy does not allow it.
  EXPECT_TRUE(attribute(a, "gen_ai.input.messages").is_null());
  EXPECT_TRUE(attribute(a, "gen_ai.output.messages").is_null());
  EXPECT_EQ(span.dump().find("Once upon a time"), std::string::npos);
  // One evaluation event per check, in policy order, with the check's outcome and value.
  const json& checks = body["candor"]["checks"];
  ASSERT_EQ(checks.size(), 2u);
  ASSERT_EQ(span["events"].size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const json& e = span["events"][i];
    EXPECT_EQ(e["name"], "gen_ai.evaluation.result");
    EXPECT_EQ(attribute(e["attributes"], "gen_ai.evaluation.name"), checks[i]["name"]);
    EXPECT_EQ(attribute(e["attributes"], "gen_ai.evaluation.score.label"), checks[i]["outcome"]);
    EXPECT_DOUBLE_EQ(attribute(e["attributes"], "gen_ai.evaluation.score.value").get<double>(),
                     checks[i]["value"].get<double>());
    EXPECT_EQ(attribute(e["attributes"], "gen_ai.response.id"), body["id"]);
  }
  // 8 tokens > 4: the length check failed.
  EXPECT_EQ(attribute(span["events"][1]["attributes"], "gen_ai.evaluation.score.label"), "fail");

  // Without a traceparent: a trace of its own, no parent. A chat request is a "chat" span.
  auto [s2, b2] =
      r.post("/v1/chat/completions",
             {{"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"max_tokens", 3}});
  ASSERT_EQ(s2, 200) << b2.dump();
  ASSERT_TRUE(eventually([&] { return col.spans().size() >= 2; }));
  json chat = col.spans()[1];
  EXPECT_TRUE(std::regex_match(chat["traceId"].get<std::string>(), std::regex("[0-9a-f]{32}")));
  EXPECT_NE(chat["traceId"], trace);
  EXPECT_FALSE(chat.contains("parentSpanId"));
  EXPECT_EQ(chat["name"], "chat stories260K");
  EXPECT_EQ(attribute(chat["attributes"], "gen_ai.operation.name"), "chat");
  EXPECT_EQ(b2["candor"]["trace_id"], chat["traceId"]);
  // The collector holds the span before the exporter has read its reply and counted it.
  EXPECT_TRUE(eventually(
      [&] { return metric_value(r.metrics(), "candor_otlp_spans_exported_total") == 2; }))
      << r.metrics();
}

TEST_F(ServeExtras, MessageContentIsExportedOnlyWhenThePolicyAllowsIt) {
  Collector col;
  serve::ServerOptions o;
  o.otlp_url = col.url() + "/";  // a trailing slash is fine
  Running r(o, supervision(std::string(kNoExplain) + "export_content: true\n"));
  auto [status, body] =
      r.post("/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 6}, {"seed", 2}});
  ASSERT_EQ(status, 200) << body.dump();
  ASSERT_TRUE(eventually([&] { return col.spans().size() >= 1; }));
  const json a = col.spans()[0]["attributes"];
  const json in = json::parse(attribute(a, "gen_ai.input.messages").get<std::string>());
  const json out = json::parse(attribute(a, "gen_ai.output.messages").get<std::string>());
  EXPECT_EQ(in[0]["role"], "user");
  EXPECT_EQ(in[0]["parts"][0]["type"], "text");
  EXPECT_EQ(in[0]["parts"][0]["content"], "Once upon a time");
  EXPECT_EQ(out[0]["role"], "assistant");
  EXPECT_EQ(out[0]["parts"][0]["content"], body["choices"][0]["text"]);
  // log_content: false wins over export_content.
  Collector col2;
  serve::ServerOptions o2;
  o2.otlp_url = col2.url();
  Running r2(o2,
             supervision(std::string(kNoExplain) + "export_content: true\nlog_content: false\n"));
  ASSERT_EQ(r2.post("/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 6}}).first,
            200);
  ASSERT_TRUE(eventually([&] { return col2.spans().size() >= 1; }));
  EXPECT_TRUE(attribute(col2.spans()[0]["attributes"], "gen_ai.input.messages").is_null());
}

// A collector that does not answer never holds a request up: requests are answered while it
// waits, spans that do not fit in the queue are dropped and counted, and the rest arrive once it
// answers.
TEST_F(ServeExtras, ASlowCollectorNeverBlocksRequestsAndDropsAreCounted) {
  Collector col;
  col.hold = true;
  serve::ServerOptions o;
  o.otlp_url = col.url();
  o.otlp_queue = 2;
  o.otlp_timeout_ms = 60000;
  Running r(o, supervision(kNoExplain));
  ASSERT_EQ(r.post("/v1/completions", {{"prompt", "Once"}, {"max_tokens", 2}}).first, 200);
  // The sender is now waiting on the collector with the first span.
  ASSERT_TRUE(eventually([&] {
    std::lock_guard<std::mutex> lock(col.mu);
    return col.held == 1;
  }));
  for (int i = 0; i < 5; ++i) {
    auto [status, body] = r.post("/v1/completions", {{"prompt", "Once"}, {"max_tokens", 2}});
    ASSERT_EQ(status, 200) << i << " " << body.dump();
  }
  std::string m = r.metrics();
  // 1 in flight + 2 queued: 3 of the 5 later spans were dropped.
  EXPECT_EQ(metric_value(m, "candor_otlp_spans_dropped_total{reason=\"queue_full\"}"), 3) << m;
  col.release();
  ASSERT_TRUE(eventually([&] { return col.spans().size() >= 3; }));
  EXPECT_TRUE(eventually([&] {
    return metric_value(r.metrics(), "candor_otlp_spans_exported_total") == 3;
  })) << r.metrics();
}

TEST_F(ServeExtras, ADeadCollectorNeverFailsRequests) {
  int dead_port = 0;
  {
    Collector gone;  // a free port, closed again
    dead_port = gone.port;
  }
  serve::ServerOptions o;
  o.otlp_url = "http://127.0.0.1:" + std::to_string(dead_port);
  o.otlp_timeout_ms = 500;
  Running r(o, supervision(kNoExplain));
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(r.post("/v1/completions", {{"prompt", "Once"}, {"max_tokens", 2}}).first, 200);
  EXPECT_TRUE(eventually([&] {
    return metric_value(r.metrics(), "candor_otlp_spans_dropped_total{reason=\"export_failed\"}") ==
           3;
  })) << r.metrics();
  std::lock_guard<std::mutex> lock(r.lines_mu);
  bool said = false;
  for (const auto& l : r.lines) said = said || l.find("OTLP export to") != std::string::npos;
  EXPECT_TRUE(said) << "the failure is logged once";
}

// The span of a request, by its OTLP attribute candor.audit_id (null when none arrived).
json span_of(Collector& col, const std::string& audit_id, const std::string& name_prefix = "") {
  for (const json& s : col.spans())
    if (attribute(s["attributes"], "candor.audit_id") == audit_id &&
        s["name"].get<std::string>().rfind(name_prefix, 0) == 0)
      return s;
  return nullptr;
}

// Requests that fail after admission are exported too, with status ERROR (2), error.type and
// the HTTP status; so are requests cut by the time limit and blocked answers.
TEST_F(ServeExtras, FailedTimedOutAndBlockedRequestsAreExportedWithAnErrorStatus) {
  Collector col;
  serve::ServerOptions o;
  o.otlp_url = col.url();
  o.api_keys = {{"c1", "client", serve::sha256_hex("good-key")}};
  Running r(o, supervision(kTwoChecks));
  const httplib::Headers key = {{"Authorization", "Bearer good-key"}};
  // 1. Invalid JSON after admission: a chat span with error.type invalid_json and 400.
  const std::string trace = "0af7651916cd43dd8448eb211c80319c", parent = "b7ad6b7169203331";
  httplib::Headers with_trace = key;
  with_trace.emplace("traceparent", "00-" + trace + "-" + parent + "-01");
  auto [s1, b1] = r.post_raw("/v1/chat/completions", "{not json", with_trace);
  ASSERT_EQ(s1, 400) << b1.dump();
  // 2. An unknown model: 404 model_not_found.
  auto [s2, b2] = r.post("/v1/completions", {{"prompt", "Once"}, {"model", "gpt-9"}}, key);
  ASSERT_EQ(s2, 404) << b2.dump();
  // Before admission (no key): nothing is exported.
  auto [s0, b0] = r.post("/v1/completions", {{"prompt", "Once"}, {"max_tokens", 2}});
  ASSERT_EQ(s0, 401) << b0.dump();

  ASSERT_TRUE(eventually([&] { return col.spans().size() >= 2; })) << col.spans().size();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the 401 would come by now
  const std::vector<json> spans = col.spans();
  ASSERT_EQ(spans.size(), 2u) << "only admitted requests are exported";
  const json& bad = spans[0]["name"] == "chat stories260K" ? spans[0] : spans[1];
  const json& unknown = spans[0]["name"] == "chat stories260K" ? spans[1] : spans[0];
  EXPECT_EQ(bad["traceId"], trace);
  EXPECT_EQ(bad["parentSpanId"], parent);
  EXPECT_EQ(bad["status"]["code"], 2);
  EXPECT_NE(bad["status"]["message"].get<std::string>().find("not valid JSON"),
            std::string::npos)
      << bad.dump();
  EXPECT_EQ(attribute(bad["attributes"], "error.type"), "invalid_json");
  EXPECT_EQ(attribute(bad["attributes"], "http.response.status_code"), 400);
  EXPECT_TRUE(attribute(bad["attributes"], "gen_ai.response.finish_reasons").is_null());
  EXPECT_TRUE(attribute(bad["attributes"], "candor.audit_id").is_null());
  EXPECT_EQ(unknown["name"], "text_completion stories260K");
  EXPECT_EQ(attribute(unknown["attributes"], "error.type"), "model_not_found");
  EXPECT_EQ(attribute(unknown["attributes"], "http.response.status_code"), 404);
  EXPECT_EQ(unknown["status"]["code"], 2);
}

TEST_F(ServeExtras, TimedOutAndBlockedAnswersAreExportedWithAnErrorStatus) {
  Collector col;
  serve::ServerOptions o;
  o.otlp_url = col.url();
  // Every answer of more than 2 tokens is blocked by the length check.
  auto sup = supervision(
      "explain:\n  enabled: false\nlimits:\n  max_tokens: 64\n"
      "checks:\n  - name: short\n    type: length\n    max_tokens: 2\n    on_fail: block\n");
  Running r(o, sup);
  auto [s1, b1] = r.post("/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 6}});
  ASSERT_EQ(s1, 200) << b1.dump();
  ASSERT_EQ(b1["candor"]["decision"], "block");
  const std::string blocked_id = b1["candor"]["audit_id"];
  json blocked;
  ASSERT_TRUE(eventually([&] { return !(blocked = span_of(col, blocked_id)).is_null(); }));
  EXPECT_EQ(blocked["status"]["code"], 2);
  EXPECT_EQ(attribute(blocked["attributes"], "error.type"), "blocked");
  EXPECT_NE(blocked["status"]["message"].get<std::string>().find("blocked"), std::string::npos);
  EXPECT_EQ(attribute(blocked["attributes"], "gen_ai.response.finish_reasons"),
            json::array({"content_filter"}));
  EXPECT_EQ(attribute(blocked["attributes"], "candor.decision"), "block");
  // An allowed answer has no error status.
  auto [s2, b2] = r.post("/v1/completions", {{"prompt", "Once"}, {"max_tokens", 1}});
  ASSERT_EQ(s2, 200) << b2.dump();
  ASSERT_EQ(b2["candor"]["decision"], "allow");
  json ok;
  ASSERT_TRUE(eventually([&] {
    return !(ok = span_of(col, b2["candor"]["audit_id"].get<std::string>())).is_null();
  }));
  EXPECT_FALSE(ok["status"].contains("code")) << ok["status"].dump();
  EXPECT_TRUE(attribute(ok["attributes"], "error.type").is_null());

  // The time limit: the request answers, cut short, and its span says "timeout".
  Collector col2;
  serve::ServerOptions o2;
  o2.otlp_url = col2.url();
  auto fast = supervision(kNoExplain);
  fast->policy.limits.request_timeout_ms = 1;
  Running r2(o2, fast);
  auto [s3, b3] = r2.post("/v1/completions",
                          {{"prompt", "Once upon a time"}, {"max_tokens", 60}, {"temperature", 0}});
  ASSERT_EQ(s3, 200) << b3.dump();
  ASSERT_EQ(b3["candor"]["time_limited"], true);
  json timed;
  ASSERT_TRUE(eventually([&] {
    return !(timed = span_of(col2, b3["candor"]["audit_id"].get<std::string>())).is_null();
  }));
  EXPECT_EQ(timed["status"]["code"], 2);
  EXPECT_EQ(attribute(timed["attributes"], "error.type"), "timeout");
  EXPECT_NE(timed["status"]["message"].get<std::string>().find("time limit"), std::string::npos);
}

// A request that fails at its audit record (a full write queue: 429) is exported with the error
// and what it had generated.
TEST_F(ServeExtras, AnAuditFailureIsExportedAsAnErrorSpan) {
  Collector col;
  serve::ServerOptions o;
  o.otlp_url = col.url();
  Running r(o, supervision(kNoExplain));
  r.log->full = true;
  auto [status, body] = r.post("/v1/completions", {{"prompt", "Once"}, {"max_tokens", 3}});
  ASSERT_EQ(status, 429) << body.dump();
  ASSERT_TRUE(eventually([&] { return col.spans().size() >= 1; }));
  const json span = col.spans()[0];
  EXPECT_EQ(attribute(span["attributes"], "error.type"), "audit_queue_full");
  EXPECT_EQ(attribute(span["attributes"], "http.response.status_code"), 429);
  // What was generated before the failure is in the span.
  EXPECT_EQ(attribute(span["attributes"], "gen_ai.usage.output_tokens"), 3);
  EXPECT_FALSE(attribute(span["attributes"], "gen_ai.response.id").is_null());
  // The same failure in a stream (the status was sent with the first event): the error event
  // ends the stream, and the span carries the error.
  auto c = r.client();
  auto res = c.Post("/v1/completions",
                    R"({"prompt":"Once","max_tokens":3,"stream":true})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_NE(res->body.find("audit_queue_full"), std::string::npos) << res->body;
  ASSERT_TRUE(eventually([&] { return col.spans().size() >= 2; }));
  const json streamed = col.spans()[1];
  EXPECT_EQ(attribute(streamed["attributes"], "error.type"), "audit_queue_full");
  EXPECT_EQ(streamed["status"]["code"], 2);
  EXPECT_TRUE(attribute(streamed["attributes"], "candor.audit_id").is_null());
}

// /v1/explain is exported as an `explain` span with its methods and audit record.
TEST_F(ServeExtras, ExplainRequestsAreExportedAsExplainSpans) {
  Collector col;
  serve::ServerOptions o;
  o.otlp_url = col.url();
  auto sup = supervision("limits:\n  max_tokens: 64\n");
  sup->policy.explain.method = "occlusion";
  Running r(o, sup);
  const std::string trace = "5bf92f3577b34da6a3ce929d0e0e4736", parent = "10f067aa0ba902b7";
  auto [status, body] = r.post("/v1/explain",
                               {{"prompt", "Once upon a time"},
                                {"methods", {"occlusion"}},
                                {"generate", 4},
                                {"user", "reviewer-7"}},
                               {{"traceparent", "00-" + trace + "-" + parent + "-01"}});
  ASSERT_EQ(status, 200) << body.dump();
  const std::string id = body["audit_id"];
  json span;
  ASSERT_TRUE(eventually([&] { return !(span = span_of(col, id)).is_null(); }));
  EXPECT_EQ(span["name"], "explain stories260K");
  EXPECT_EQ(span["traceId"], trace);
  EXPECT_EQ(span["parentSpanId"], parent);
  EXPECT_EQ(body["trace_id"], trace);
  EXPECT_EQ(attribute(span["attributes"], "gen_ai.operation.name"), "explain");
  EXPECT_EQ(attribute(span["attributes"], "candor.explain.methods"), json::array({"occlusion"}));
  EXPECT_EQ(attribute(span["attributes"], "candor.decision"), "allow");
  EXPECT_FALSE(span["status"].contains("code"));
  // The record keeps the request's user.
  bool user_recorded = false;
  for (const auto& rec : r.log->records()) user_recorded |= rec.id == id && rec.user == "reviewer-7";
  EXPECT_TRUE(user_recorded);
  // A failing explain request (a model not served here): an error span.
  auto [s2, b2] = r.post("/v1/explain", {{"prompt", "Once"}, {"model", "gpt-9"}});
  ASSERT_EQ(s2, 404) << b2.dump();
  ASSERT_TRUE(eventually([&] { return col.spans().size() >= 2; }));
  json failed;
  for (const json& s : col.spans())
    if (s["status"].contains("code")) failed = s;
  ASSERT_FALSE(failed.is_null());
  EXPECT_EQ(failed["name"], "explain stories260K");
  EXPECT_EQ(attribute(failed["attributes"], "error.type"), "model_not_found");
  EXPECT_EQ(attribute(failed["attributes"], "http.response.status_code"), 404);
}

// Async check results follow as a child span of the request's span, in its trace, linked by
// candor.audit_id, with one evaluation event per async check.
TEST_F(ServeExtras, AsyncCheckResultsFollowAsAChildSpanInTheSameTrace) {
  Collector col;
  serve::ServerOptions o;
  o.otlp_url = col.url();
  auto sup = supervision(kNoExplain);
  sup->review_async = [](const supervise::Exchange& ex) {
    supervise::Review rv;
    supervise::CheckResult c;
    c.name = "slow_probe";
    c.type = "counterfactual";
    c.outcome = "fail";
    c.value = 0.75;
    c.threshold = 0.5;
    c.async = true;
    c.detail = "answer of " + std::to_string(ex.answer_ids.size()) + " tokens";
    rv.checks.push_back(c);
    rv.decision = "flag";
    rv.reasons.push_back("slow_probe failed");
    return rv;
  };
  Running r(o, sup);
  auto [status, body] = r.post("/v1/completions", {{"prompt", "Once"}, {"max_tokens", 4}});
  ASSERT_EQ(status, 200) << body.dump();
  const std::string id = body["candor"]["audit_id"];
  json main, follow;
  ASSERT_TRUE(eventually([&] {
    main = span_of(col, id, "text_completion");
    follow = span_of(col, id, "candor.async_checks");
    return !main.is_null() && !follow.is_null();
  })) << col.spans().size();
  EXPECT_EQ(follow["traceId"], main["traceId"]);
  EXPECT_EQ(follow["parentSpanId"], main["spanId"]);
  EXPECT_NE(follow["spanId"], main["spanId"]);
  EXPECT_EQ(attribute(follow["attributes"], "gen_ai.operation.name"), "evaluate");
  EXPECT_EQ(attribute(follow["attributes"], "candor.decision"), "flag");
  // The addendum record the results were appended as.
  std::string addendum;
  for (const auto& rec : r.log->records())
    if (rec.kind == "addendum" && rec.refers_to == id) addendum = rec.id;
  ASSERT_FALSE(addendum.empty());
  EXPECT_EQ(attribute(follow["attributes"], "candor.addendum_id"), addendum);
  ASSERT_EQ(follow["events"].size(), 1u);
  const json& e = follow["events"][0]["attributes"];
  EXPECT_EQ(attribute(e, "gen_ai.evaluation.name"), "slow_probe");
  EXPECT_EQ(attribute(e, "gen_ai.evaluation.score.label"), "fail");
  EXPECT_DOUBLE_EQ(attribute(e, "gen_ai.evaluation.score.value").get<double>(), 0.75);
  EXPECT_EQ(attribute(e, "candor.audit_id"), id);
  EXPECT_LE(std::stoll(main["endTimeUnixNano"].get<std::string>()),
            std::stoll(follow["endTimeUnixNano"].get<std::string>()));
}

// ---- HTTPS collectors ----

struct TestCert {
  std::string dir, cert, key;
  bool ok = false;
};

// A self-signed certificate for 127.0.0.1 (made with the openssl command).
TestCert make_cert(const std::string& cn = "127.0.0.1") {
  TestCert c;
  c.dir = testing::temp_dir();
  c.cert = c.dir + "/cert.pem";
  c.key = c.dir + "/key.pem";
  c.ok = testing::run_command("openssl req -x509 -newkey rsa:2048 -nodes -keyout " + c.key +
                              " -out " + c.cert + " -days 1 -subj /CN=" + cn +
                              " -addext subjectAltName=IP:" + cn + " 2>/dev/null") == 0;
  return c;
}

TEST_F(ServeExtras, AnHttpsCollectorTrustedThroughTheCaFileReceivesSpans) {
  TestCert c = make_cert();
  if (!c.ok) GTEST_SKIP() << "skipped: the openssl command could not make a test certificate";
  Collector col(c.cert, c.key);
  ASSERT_GT(col.port, 0);
  ASSERT_EQ(col.url().rfind("https://", 0), 0u);
  serve::ServerOptions o;
  o.otlp_url = col.url();
  o.otlp_ca = c.cert;  // self-signed: the certificate is its own CA
  Running r(o, supervision(kNoExplain));
  auto [status, body] = r.post("/v1/completions", {{"prompt", "Once"}, {"max_tokens", 2}});
  ASSERT_EQ(status, 200) << body.dump();
  ASSERT_TRUE(eventually([&] { return col.spans().size() >= 1; })) << r.metrics();
  EXPECT_EQ(attribute(col.spans()[0]["attributes"], "candor.audit_id"),
            body["candor"]["audit_id"]);
  EXPECT_TRUE(eventually(
      [&] { return metric_value(r.metrics(), "candor_otlp_spans_exported_total") == 1; }));
}

TEST_F(ServeExtras, AnUntrustedHttpsCollectorIsRefusedWithAClearError) {
  TestCert c = make_cert(), other = make_cert();
  if (!c.ok || !other.ok)
    GTEST_SKIP() << "skipped: the openssl command could not make a test certificate";
  Collector col(c.cert, c.key);
  // Without --otlp-ca the self-signed certificate is not trusted; with another CA neither.
  for (const std::string& ca : {std::string(), other.cert}) {
    serve::ServerOptions o;
    o.otlp_url = col.url();
    o.otlp_ca = ca;
    o.otlp_timeout_ms = 5000;
    Running r(o, supervision(kNoExplain));
    ASSERT_EQ(r.post("/v1/completions", {{"prompt", "Once"}, {"max_tokens", 2}}).first, 200);
    EXPECT_TRUE(eventually([&] {
      return metric_value(r.metrics(),
                          "candor_otlp_spans_dropped_total{reason=\"export_failed\"}") == 1;
    })) << r.metrics();
    std::string said;
    {
      std::lock_guard<std::mutex> lock(r.lines_mu);
      for (const auto& l : r.lines)
        if (l.find("OTLP export to") != std::string::npos) said = l;
    }
    EXPECT_NE(said.find("certificate"), std::string::npos) << said;
    EXPECT_NE(said.find("--otlp-ca"), std::string::npos) << said;
    if (!ca.empty()) EXPECT_NE(said.find(ca), std::string::npos) << said;
  }
  EXPECT_TRUE(col.spans().empty());
}

TEST_F(ServeExtras, ABadOtlpCaFileIsRefusedAtStart) {
  const std::string dir = testing::temp_dir();
  const std::string junk = dir + "/junk.pem";
  std::ofstream(junk) << "not a certificate\n";
  serve::ServerOptions o;
  o.port = 0;
  o.otlp_url = "https://127.0.0.1:4318";
  o.otlp_ca = dir + "/missing.pem";
  std::string err = testing::error_of([&] { serve::Server s(o); });
  EXPECT_NE(err.find("missing.pem"), std::string::npos) << err;
  EXPECT_NE(err.find("--otlp-ca"), std::string::npos) << err;
  o.otlp_ca = junk;
  err = testing::error_of([&] { serve::Server s(o); });
  EXPECT_NE(err.find("junk.pem"), std::string::npos) << err;
  EXPECT_NE(err.find("no PEM certificate"), std::string::npos) << err;
  // A CA file for a plain http:// collector, or without a collector, is a mistake too.
  o.otlp_url = "http://127.0.0.1:4318";
  EXPECT_NE(testing::error_of([&] { serve::Server s(o); }).find("https://"), std::string::npos);
  o.otlp_url.clear();
  EXPECT_NE(testing::error_of([&] { serve::Server s(o); }).find("without --otlp"),
            std::string::npos);
}

TEST(Otlp, TraceparentAndEndpointParsing) {
  std::string t, p;
  EXPECT_TRUE(
      serve::parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &t, &p));
  EXPECT_EQ(t, "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(p, "00f067aa0ba902b7");
  for (const char* bad : {"", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                          "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                          "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                          "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                          "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                          "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"}) {
    std::string t2 = "x", p2 = "y";
    EXPECT_FALSE(serve::parse_traceparent(bad, &t2, &p2)) << bad;
    EXPECT_EQ(t2, "x");
  }
  EXPECT_EQ(serve::otlp_endpoint("http://127.0.0.1:4318"),
            std::make_pair(std::string("http://127.0.0.1:4318"), std::string("/v1/traces")));
  EXPECT_EQ(serve::otlp_endpoint("http://h:1/otel/").second, "/otel/v1/traces");
  EXPECT_EQ(serve::otlp_endpoint("https://h:1/v1/traces").second, "/v1/traces");
  EXPECT_NE(testing::error_of([] { serve::otlp_endpoint("127.0.0.1:4318"); }).find("http://"),
            std::string::npos);
}

TEST(Otlp, ACheckInErrorHasNoScoreAndAnErrorType) {
  serve::GenAiSpan s;
  s.trace_id = std::string(32, 'a');
  s.span_id = std::string(16, 'b');
  s.operation = "chat";
  s.model = "m";
  s.response_id = "chatcmpl-1";
  s.seed = UINT64_MAX;  // does not fit an OTLP integer: sent as text
  supervise::CheckResult bad;
  bad.name = "probe";
  bad.type = "counterfactual";
  bad.outcome = "error";
  bad.detail = "the counterfactual check needs the model";
  s.checks = {bad};
  json j = serve::otlp_span_json(s);
  EXPECT_EQ(j["name"], "chat m");
  EXPECT_FALSE(j.contains("parentSpanId"));
  EXPECT_EQ(attribute(j["attributes"], "gen_ai.request.seed"), std::to_string(UINT64_MAX));
  ASSERT_EQ(j["events"].size(), 1u);
  const json& e = j["events"][0]["attributes"];
  EXPECT_TRUE(attribute(e, "gen_ai.evaluation.score.value").is_null());
  EXPECT_EQ(attribute(e, "gen_ai.evaluation.score.label"), "error");
  EXPECT_EQ(attribute(e, "error.type"), "check_error");
  EXPECT_EQ(attribute(e, "gen_ai.evaluation.explanation"), bad.detail);
  json req = serve::otlp_request_json({j});
  EXPECT_EQ(attribute(req["resourceSpans"][0]["resource"]["attributes"], "service.name"), "candor");
  EXPECT_EQ(req["resourceSpans"][0]["scopeSpans"][0]["scope"]["name"], "candor.serve");
}

// `candor serve --temperature-scaling --otlp URL` as a child process: the temperature saved
// beside a model folder is applied and recorded, and the request's span reaches the collector.
TEST_F(ServeExtras, CliServesTheSavedTemperatureAndExportsSpans) {
  const std::string dir = testing::temp_dir(), model = dir + "/model";
  std::filesystem::create_directories(model);
  for (const char* f : {"stories260K.bin", "tok512.bin"})
    std::filesystem::create_symlink(testing::shared_path(std::string("models/stories260K/") + f),
                                    model + "/" + f);
  jobs::save_temperature(model, 2.0, {{"fitted_on", "test"}});
  Collector col;
  const std::string log = dir + "/serve.log";
  const pid_t pid = ::fork();
  if (pid == 0) {
    FILE* f = std::freopen(log.c_str(), "w", stderr);
    (void)f;
    ::dup2(::fileno(stderr), 1);
    std::vector<std::string> args = {CANDOR_CLI_PATH, "serve",       "--model",
                                     model,           "--db",        dir + "/audit.db",
                                     "--listen",      "127.0.0.1:0", "--temperature-scaling",
                                     "--otlp",        col.url()};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ASSERT_GT(pid, 0);
  pid_t running = pid;  // killed and reaped on every way out of the test
  struct Reap {
    pid_t* pid;
    ~Reap() {
      if (*pid <= 0) return;
      int status = 0;
      ::kill(*pid, SIGKILL);
      ::waitpid(*pid, &status, 0);
    }
  } reap{&running};
  auto read_log = [&] {
    std::ifstream in(log);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  int port = 0;
  ASSERT_TRUE(eventually(
      [&] {
        std::smatch m;
        const std::string text = read_log();
        if (!std::regex_search(text, m, std::regex(R"(ready: )"))) return false;
        if (!std::regex_search(text, m, std::regex(R"(listening on http://127\.0\.0\.1:(\d+))")))
          return false;
        port = std::stoi(m[1]);
        return true;
      },
      60))
      << read_log();
  const std::string text = read_log();
  EXPECT_NE(text.find("temperature scaling: every logit is divided by 2"), std::string::npos)
      << text;
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(60, 0);
  auto res =
      c.Post("/v1/completions",
             R"({"prompt": "Once upon a time", "max_tokens": 0, "echo": true, "logprobs": 0})",
             "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  json body = json::parse(res->body);
  EXPECT_EQ(body["candor"]["temperature_scaling"], 2.0);
  // The first scored token's log-probability is the scaled one.
  const std::vector<TokenId> ids =
      jobs::encode_prompt(stories260k().tokenizer(), "Once upon a time", false, "");
  at::Tensor lsm;
  {
    at::NoGradGuard no_grad;
    lsm = at::log_softmax(stories260k().logits(ids).to(at::kDouble) / 2.0, -1);
  }
  EXPECT_NEAR(body["choices"][0]["logprobs"]["token_logprobs"][0].get<double>(),
              lsm[0][ids[1]].item<double>(), 1e-4);
  ASSERT_TRUE(eventually([&] { return col.spans().size() >= 1; }));
  EXPECT_EQ(attribute(col.spans()[0]["attributes"], "candor.temperature_scaling"), 2.0);
  EXPECT_EQ(attribute(col.spans()[0]["attributes"], "candor.audit_id"), body["candor"]["audit_id"]);
  ::kill(pid, SIGTERM);
  int status = -1;
  EXPECT_TRUE(eventually(
      [&] {
        if (running > 0 && ::waitpid(pid, &status, WNOHANG) == pid) running = -1;
        return running < 0;
      },
      60));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << read_log();
}

// ---------------------------------------------------------------------------------------------
// Regeneration
// ---------------------------------------------------------------------------------------------

// The in-process answer for the request below with the seed of regeneration `attempt`.
std::string answer_with(uint64_t seed, int attempt) {
  jobs::GenerateJobOptions g;
  g.model.model = &stories260k();
  g.prompt = "Once upon a time";
  g.generation.max_new_tokens = 20;
  g.generation.temperature = 1.0f;
  g.generation.seed = serve::regeneration_seed(seed, attempt);
  return jobs::run_generate(g).result.text;
}

std::vector<std::string> words_of(const std::string& text) {
  std::vector<std::string> out;
  std::regex word("\\b[A-Za-z]{3,}\\b");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), word); it != std::sregex_iterator();
       ++it) {
    std::string w = it->str();
    for (auto& ch : w) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    out.push_back(w);
  }
  return out;
}

bool has_word(const std::string& text, const std::string& w) {
  return std::regex_search(text, std::regex("\\b" + w + "\\b", std::regex::icase));
}

// A blocked term that the first sample contains and the second does not: the service samples
// again with the derived seed, answers the clean text, and records both attempts.
TEST_F(ServeExtras, RegenerateSamplesAgainUntilTheChecksPass) {
  const uint64_t seed = 7;
  const std::string first = answer_with(seed, 0), second = answer_with(seed, 1);
  std::string term;
  for (const auto& w : words_of(first))
    if (!has_word(second, w)) {
      term = w;
      break;
    }
  ASSERT_FALSE(term.empty()) << "every word of '" << first << "' is also in '" << second << "'";
  Running r({}, supervision(std::string(kNoExplain) +
                            "checks:\n  - name: words\n    type: blocked_terms\n    terms: [" +
                            term + "]\n    on_fail: regenerate\n"));
  auto [status, body] = r.post(
      "/v1/completions",
      {{"prompt", "Once upon a time"}, {"max_tokens", 20}, {"temperature", 1.0}, {"seed", seed}});
  ASSERT_EQ(status, 200) << body.dump();
  EXPECT_EQ(body["choices"][0]["text"], second);
  EXPECT_EQ(body["candor"]["decision"], "allow") << body["candor"].dump();
  EXPECT_EQ(body["candor"]["seed"], seed);
  const json& attempts = body["candor"]["attempts"];
  ASSERT_EQ(attempts.size(), 2u) << body["candor"].dump();
  EXPECT_EQ(attempts[0]["seed"], seed);
  EXPECT_EQ(attempts[0]["decision"], "flag");
  EXPECT_EQ(attempts[0]["checks"][0]["outcome"], "fail");
  EXPECT_FALSE(attempts[0].contains("answer")) << "the client sees the final answer only";
  EXPECT_EQ(attempts[1]["seed"], serve::regeneration_seed(seed, 1));
  EXPECT_EQ(attempts[1]["checks"][0]["outcome"], "pass");
  // One record, holding every attempt with its answer, and the final decision.
  auto recs = r.log->records();
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].answer, second);
  EXPECT_EQ(recs[0].decision, "allow");
  EXPECT_EQ(recs[0].parameters["seed"], seed);
  const json& rec_attempts = recs[0].parameters["regeneration"]["attempts"];
  ASSERT_EQ(rec_attempts.size(), 2u);
  EXPECT_EQ(rec_attempts[0]["answer"], first);
  EXPECT_EQ(rec_attempts[1]["answer"], second);
  EXPECT_EQ(recs[0].parameters["regeneration"]["max_regenerations"], 2);
  EXPECT_EQ(metric_value(r.metrics(), "candor_regenerations_total"), 1);
}

// A check that fails under every seed: the policy's limit of attempts, each recorded, and the
// final decision says why it stopped.
TEST_F(ServeExtras, RegenerateStopsAtThePolicyLimit) {
  Running r({}, supervision(std::string(kNoExplain) +
                            "  max_regenerations: 3\n"
                            "checks:\n  - name: any\n    type: blocked_terms\n"
                            "    patterns: ['[a-z]']\n    on_fail: regenerate\n"));
  auto [status, body] = r.post(
      "/v1/completions",
      {{"prompt", "Once upon a time"}, {"max_tokens", 20}, {"temperature", 1.0}, {"seed", 9}});
  ASSERT_EQ(status, 200) << body.dump();
  const json& attempts = body["candor"]["attempts"];
  ASSERT_EQ(attempts.size(), 4u);
  EXPECT_EQ(body["candor"]["decision"], "flag");
  EXPECT_NE(body["candor"]["regeneration_note"].get<std::string>().find(
                "still failing after 3 regenerations"),
            std::string::npos);
  auto recs = r.log->records();
  ASSERT_EQ(recs.size(), 1u);
  const json& rec_attempts = recs[0].parameters["regeneration"]["attempts"];
  ASSERT_EQ(rec_attempts.size(), 4u);
  for (int k = 0; k < 4; ++k) {
    EXPECT_EQ(rec_attempts[k]["attempt"], k);
    EXPECT_EQ(rec_attempts[k]["seed"], serve::regeneration_seed(9, k));
    EXPECT_EQ(rec_attempts[k]["answer"], answer_with(9, k)) << k;
    EXPECT_EQ(rec_attempts[k]["checks"][0]["outcome"], "fail");
  }
  EXPECT_EQ(body["choices"][0]["text"], answer_with(9, 3));
  bool reason = false;
  for (const auto& x : recs[0].reasons)
    reason = reason || x.get<std::string>().find("regenerate: still failing") == 0;
  EXPECT_TRUE(reason) << recs[0].reasons.dump();
  // Streamed, a policy that may regenerate holds the stream until the checks decide (buffered,
  // docs/serve.md#guarded-streaming): nothing was sent, so it is sampled again as above, and the
  // one piece released is the last attempt's answer.
  httplib::Client c("127.0.0.1", r.server->port());
  c.set_read_timeout(120, 0);
  json req = {{"prompt", "Once upon a time"}, {"max_tokens", 20}, {"temperature", 1.0},
              {"seed", 9}, {"stream", true}};
  auto res = c.Post("/v1/completions", req.dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  json last;
  std::string text;
  std::istringstream events(res->body);
  for (std::string line; std::getline(events, line);)
    if (line.rfind("data: {", 0) == 0) {
      last = json::parse(line.substr(6));
      if (!last.contains("candor")) text += last["choices"][0]["text"].get<std::string>();
    }
  ASSERT_TRUE(last.contains("candor")) << res->body;
  EXPECT_EQ(last["candor"]["stream"]["mode"], "buffered");
  EXPECT_EQ(last["candor"]["attempts"].size(), 4u);
  EXPECT_NE(last["candor"]["regeneration_note"].get<std::string>().find(
                "still failing after 3 regenerations"),
            std::string::npos);
  EXPECT_EQ(last["candor"]["decision"], "flag");
  EXPECT_EQ(text, answer_with(9, 3));
  EXPECT_EQ(r.log->records().back().parameters["regeneration"]["note"],
            last["candor"]["regeneration_note"]);
}

}  // namespace
}  // namespace candor
