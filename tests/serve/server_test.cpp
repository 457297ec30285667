// The HTTP service in process: a real server on 127.0.0.1 (a free port) over stories260K, talked
// to with httplib's client; the audit log is an in-memory one so that these tests need no store.
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "candor/evaluate.h"
#include "candor/explain.h"
#include "candor/generate.h"
#include "candor/jobs.h"
#include "candor/serve.h"
#include "candor/supervise.h"
#include "serve/serve_harness.h"
#include "test_util.h"

namespace candor {
namespace {

using nlohmann::json;
using testing::stories260k;
using serve_test::MemoryLog;

std::shared_ptr<serve::Supervision> supervision(const std::string& hash = "policy-a") {
  auto s = std::make_shared<serve::Supervision>();
  s->policy.hash = hash;
  s->policy.explain.method = "occlusion";
  s->policy.explain.granularity = "word";
  s->policy.explain.allowed_methods = {"occlusion", "input_x_gradient"};
  s->policy.limits.max_tokens = 64;
  return s;
}

// A server over stories260K with an in-memory log, started on a free port (policy-a by default).
struct Running : serve_test::Running {
  explicit Running(serve::ServerOptions o = {},
                   std::shared_ptr<serve::Supervision> sup = supervision())
      : serve_test::Running(std::move(o), std::move(sup)) {}
};

class Serve : public ::testing::Test {
 protected:
  void SetUp() override { CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin"); }
};

TEST_F(Serve, HealthModelsAndLoading) {
  serve::ServerOptions o;
  o.port = 0;
  serve::Server s(o);
  s.set_supervision(supervision());
  s.bind();
  s.start();
  httplib::Client c("127.0.0.1", s.port());
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 503) << "no model yet: loading";
  auto comp = c.Post("/v1/completions", R"({"prompt":"Once"})", "application/json");
  ASSERT_TRUE(comp);
  EXPECT_EQ(comp->status, 503);
  EXPECT_TRUE(json::parse(comp->body).contains("error"));
  s.set_model(&stories260k(), std::make_shared<MemoryLog>(), "w");
  h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  auto m = c.Get("/v1/models");
  ASSERT_TRUE(m);
  json mj = json::parse(m->body);
  ASSERT_EQ(mj["data"].size(), 1u);
  EXPECT_EQ(mj["data"][0]["id"], "candor");
  s.stop();
}

TEST_F(Serve, RefusesANonLoopbackAddressWithoutKeys) {
  serve::ServerOptions o;
  o.host = "0.0.0.0";
  EXPECT_NE(testing::error_of([&] { serve::Server s(o); }).find("without API keys"),
            std::string::npos);
}

// Same tokens and log-probabilities as generate() (the job the CLI runs) with the same seed.
TEST_F(Serve, CompletionMatchesInProcessGeneration) {
  Running r;
  auto [status, body] = r.post("/v1/completions", {{"model", "stories260K"},
                                                   {"prompt", "Once upon a time"},
                                                   {"max_tokens", 24},
                                                   {"temperature", 0.9},
                                                   {"seed", 7},
                                                   {"logprobs", 0}});
  ASSERT_EQ(status, 200) << body.dump();
  jobs::GenerateJobOptions g;
  g.model.model = &stories260k();
  g.prompt = "Once upon a time";
  g.generation.max_new_tokens = 24;
  g.generation.temperature = 0.9f;
  g.generation.seed = 7;
  jobs::GenerateJobResult ref = jobs::run_generate(g);
  const json& choice = body["choices"][0];
  EXPECT_EQ(choice["text"], ref.result.text);
  const json& lp = choice["logprobs"];
  ASSERT_EQ(lp["token_logprobs"].size(), ref.result.logprobs.size());
  for (size_t i = 0; i < ref.result.logprobs.size(); ++i)
    EXPECT_NEAR(lp["token_logprobs"][i].get<double>(), ref.result.logprobs[i], 1e-5) << i;
  EXPECT_EQ(body["usage"]["completion_tokens"], ref.result.generated_ids.size());
  EXPECT_EQ(body["object"], "text_completion");
  // The candor block: an explanation, a decision, and a committed record with that id.
  const json& cb = body["candor"];
  EXPECT_EQ(cb["decision"], "allow");
  EXPECT_EQ(cb["policy_hash"], "policy-a");
  ASSERT_TRUE(cb["explanation"].is_object());
  EXPECT_EQ(cb["explanation"]["attributions"][0]["method"], "occlusion");
  auto recs = r.log->records();
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(cb["audit_id"], recs[0].id);
  EXPECT_EQ(recs[0].answer, ref.result.text);
  EXPECT_EQ(recs[0].prompt, "Once upon a time");
  EXPECT_EQ(recs[0].endpoint, "/v1/completions");
  EXPECT_EQ(recs[0].parameters["seed"], 7);
  EXPECT_EQ(recs[0].weights_hash.size(), 64u);
  EXPECT_FALSE(recs[0].explanation["methods"][0]["top_features"].empty());
  // One line per request on the log.
  std::lock_guard<std::mutex> lock(r.lines_mu);
  bool seen = false;
  for (const auto& l : r.lines) seen = seen || l.find("POST /v1/completions 200") == 0;
  EXPECT_TRUE(seen) << ::testing::PrintToString(r.lines);
}

// The explanation in the candor block is the one `candor explain --generate N` makes (greedy
// span, word level, the policy's method).
TEST_F(Serve, ExplanationMatchesTheExplainJob) {
  Running r;
  auto [status, body] =
      r.post("/v1/completions",
             {{"prompt", "Lily liked the big red ball"}, {"max_tokens", 6}, {"temperature", 0}});
  ASSERT_EQ(status, 200) << body.dump();
  jobs::ExplainOptions o;
  o.model.model = &stories260k();
  o.prompt = "Lily liked the big red ball";
  o.methods = {"occlusion"};
  o.granularity = "word";
  o.generate = 6;
  jobs::ExplainResult ref = jobs::run_explain(o);
  const json& got = body["candor"]["explanation"]["attributions"][0];
  json want = attribution_to_json(ref.attributions[0]);
  EXPECT_EQ(got["features"], want["features"]);
  ASSERT_TRUE(want.contains("total"));
  EXPECT_EQ(got["steps"].dump(), want["steps"].dump());
  EXPECT_EQ(got["total"].dump(), want["total"].dump());
  EXPECT_EQ(body["choices"][0]["text"], ref.context.generated_text);

  // And /v1/explain gives the job's envelope itself.
  auto [s2, env] = r.post("/v1/explain", {{"prompt", "Lily liked the big red ball"},
                                          {"methods", {"occlusion"}},
                                          {"granularity", "word"},
                                          {"generate", 6}});
  ASSERT_EQ(s2, 200) << env.dump();
  EXPECT_EQ(env["attributions"][0]["steps"].dump(), want["steps"].dump());
  EXPECT_EQ(env["generated_text"], ref.context.generated_text);
  EXPECT_FALSE(env["audit_id"].get<std::string>().empty());
}

TEST_F(Serve, StreamedChunksEqualTheAnswerAndEndWithTheCandorBlock) {
  Running r;
  json req = {
      {"prompt", "Once upon a time"}, {"max_tokens", 30}, {"temperature", 0.8}, {"seed", 3}};
  auto [status, plain] = r.post("/v1/completions", req);
  ASSERT_EQ(status, 200);
  for (bool chat : {false, true}) {
    json q = req;
    q["stream"] = true;
    std::string path = "/v1/completions";
    if (chat) {
      q.erase("prompt");
      q["messages"] = {{{"role", "user"}, {"content", "Tell me a story"}}};
      path = "/v1/chat/completions";
    }
    auto c = r.client();
    auto res = c.Post(path.c_str(), q.dump(), "application/json");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200);
    EXPECT_NE(res->get_header_value("Content-Type").find("text/event-stream"), std::string::npos);
    std::vector<json> events;
    bool done = false;
    size_t pos = 0;
    const std::string& b = res->body;
    while (pos < b.size()) {
      size_t end = b.find("\n\n", pos);
      ASSERT_NE(end, std::string::npos) << "every event ends with a blank line";
      std::string ev = b.substr(pos, end - pos);
      ASSERT_EQ(ev.rfind("data: ", 0), 0u) << ev;
      ev = ev.substr(6);
      if (ev == "[DONE]") {
        done = true;
      } else {
        ASSERT_FALSE(done) << "nothing after [DONE]";
        events.push_back(json::parse(ev));
      }
      pos = end + 2;
    }
    EXPECT_TRUE(done);
    ASSERT_GE(events.size(), 2u);
    std::string text;
    for (size_t i = 0; i + 1 < events.size(); ++i)
      text += chat ? events[i]["choices"][0]["delta"]["content"].get<std::string>()
                   : events[i]["choices"][0]["text"].get<std::string>();
    const json& last = events.back();
    ASSERT_TRUE(last.contains("candor")) << last.dump();
    EXPECT_FALSE(last["candor"]["audit_id"].get<std::string>().empty());
    EXPECT_FALSE(last["choices"][0]["finish_reason"].is_null());
    if (!chat) {
      EXPECT_EQ(text, plain["choices"][0]["text"]);
    } else {
      // The same request without streaming gives the same text.
      json q2 = q;
      q2["stream"] = false;
      auto [s3, nonstream] = r.post(path, q2);
      ASSERT_EQ(s3, 200);
      EXPECT_EQ(text, nonstream["choices"][0]["message"]["content"]);
    }
  }
}

TEST_F(Serve, ChatWithoutATemplateReadsThePlainTranscript) {
  Running r;
  json msgs = {{{"role", "system"}, {"content", "Be kind."}},
               {{"role", "user"}, {"content", "Hi"}}};
  auto [status, body] = r.post("/v1/chat/completions", {{"messages", msgs},
                                                        {"max_tokens", 12},
                                                        {"temperature", 0},
                                                        {"logprobs", true},
                                                        {"top_logprobs", 2}});
  ASSERT_EQ(status, 200) << body.dump();
  EXPECT_EQ(body["object"], "chat.completion");
  EXPECT_EQ(body["choices"][0]["message"]["role"], "assistant");
  GenerateOptions g;
  g.max_new_tokens = 12;
  GenerateResult ref = generate(stories260k(), "System: Be kind.\nUser: Hi\nAssistant:", g);
  EXPECT_EQ(body["choices"][0]["message"]["content"], ref.text);
  const json& content = body["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), ref.generated_ids.size());
  for (const json& t : content) EXPECT_EQ(t["top_logprobs"].size(), 2u);
}

TEST_F(Serve, StopSequencesCutTheAnswer) {
  Running r;
  auto [s0, full] = r.post(
      "/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 40}, {"temperature", 0}});
  ASSERT_EQ(s0, 200);
  const std::string text = full["choices"][0]["text"];
  const size_t dot = text.find('.');
  ASSERT_NE(dot, std::string::npos) << text;
  auto [s1, cut] = r.post(
      "/v1/completions",
      {{"prompt", "Once upon a time"}, {"max_tokens", 40}, {"temperature", 0}, {"stop", "."}});
  ASSERT_EQ(s1, 200);
  EXPECT_EQ(cut["choices"][0]["text"], text.substr(0, dot));
  EXPECT_EQ(cut["choices"][0]["finish_reason"], "stop");
}

TEST_F(Serve, BadRequestsAreAnsweredWithTheErrorObject) {
  serve::ServerOptions o;
  o.api_keys = {{"alice", "client", serve::sha256_hex("sk-alice")},
                {"audrey", "auditor", serve::sha256_hex("sk-audrey")}};
  Running r(o);
  const httplib::Headers client = {{"Authorization", "Bearer sk-alice"}};
  const httplib::Headers auditor = {{"Authorization", "Bearer sk-audrey"}};
  struct Case {
    std::string name, path, body;
    httplib::Headers headers;
    int status;
  };
  const std::string big(10 * 1024 * 1024, 'a');
  std::vector<Case> cases = {
      {"invalid JSON", "/v1/completions", "{\"prompt\": ", client, 400},
      {"not an object", "/v1/completions", "[1,2]", client, 400},
      {"wrong type", "/v1/completions", R"({"prompt": "a", "max_tokens": "ten"})", client, 400},
      {"wrong type of messages", "/v1/chat/completions", R"({"messages": "hi"})", client, 400},
      {"unknown model", "/v1/completions", R"({"model": "gpt-17", "prompt": "a"})", client, 404},
      {"negative max_tokens", "/v1/completions", R"({"prompt": "a", "max_tokens": -1})", client,
       400},
      {"huge max_tokens", "/v1/completions", R"({"prompt": "a", "max_tokens": 100000000})", client,
       400},
      {"temperature < 0", "/v1/completions", R"({"prompt": "a", "temperature": -0.5})", client,
       400},
      {"10 MB body", "/v1/completions", R"({"prompt": ")" + big + "\"}", client, 413},
      {"invalid UTF-8", "/v1/completions", "{\"prompt\": \"caf\xC3\x28\"}", client, 400},
      {"missing key", "/v1/completions", R"({"prompt": "a"})", {}, 401},
      {"wrong key",
       "/v1/completions",
       R"({"prompt": "a"})",
       {{"Authorization", "Bearer sk-eve"}},
       401},
      {"auditor key on completions", "/v1/completions", R"({"prompt": "a"})", auditor, 403},
      {"method outside the policy", "/v1/completions",
       R"({"prompt": "a", "candor": {"methods": ["lime"]}})", client, 400},
      {"unknown endpoint", "/v1/nothing", "{}", client, 404},
  };
  for (const Case& c : cases) {
    auto [status, body] = r.post_raw(c.path, c.body, c.headers);
    EXPECT_EQ(status, c.status) << c.name << ": " << body.dump();
    ASSERT_TRUE(body.is_object() && body.contains("error")) << c.name << ": " << body.dump();
    EXPECT_TRUE(body["error"]["message"].is_string()) << c.name;
    EXPECT_TRUE(body["error"].contains("type") && body["error"].contains("code")) << c.name;
  }
  // The auditor endpoint with a client key.
  auto [sa, ba] = r.get("/v1/audit/records", client);
  EXPECT_EQ(sa, 403) << ba.dump();
  EXPECT_TRUE(ba.contains("error"));
  // Still healthy, and a good request still works.
  EXPECT_EQ(r.get("/health").first, 200);
  auto [ok, body] = r.post("/v1/completions", {{"prompt", "Once"}, {"max_tokens", 4}}, client);
  EXPECT_EQ(ok, 200) << body.dump();
  EXPECT_TRUE(r.log->records().size() == 1u) << "only the good request is logged";
  EXPECT_EQ(r.log->records()[0].key_id, "alice");
  // The auditor reads it.
  auto [s4, list] = r.get("/v1/audit/records?limit=10", auditor);
  ASSERT_EQ(s4, 200) << list.dump();
  ASSERT_EQ(list["data"].size(), 1u);
  EXPECT_EQ(list["data"][0]["id"], body["candor"]["audit_id"]);
  auto [s5, one] =
      r.get("/v1/audit/records/" + body["candor"]["audit_id"].get<std::string>(), auditor);
  ASSERT_EQ(s5, 200);
  EXPECT_EQ(one["answer"], body["choices"][0]["text"]);
  EXPECT_EQ(r.get("/v1/audit/records/nosuch", auditor).first, 404);
  EXPECT_EQ(r.get("/v1/audit/records?limit=0", auditor).first, 400);
}

TEST_F(Serve, ApiKeysFileIsReadAndCheckedLineByLine) {
  const std::string dir = testing::temp_dir();
  const std::string good = dir + "/keys.txt";
  {
    std::ofstream f(good);
    f << "# id role sha256\n\nalice client " << serve::sha256_hex("sk-1") << "\n"
      << "audrey auditor " << serve::sha256_hex("sk-2") << "  # the auditor\n";
  }
  auto keys = serve::load_api_keys(good);
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(serve::find_api_key(keys, "sk-2")->id, "audrey");
  EXPECT_EQ(serve::find_api_key(keys, "sk-3"), nullptr);
  const std::string bad = dir + "/bad.txt";
  {
    std::ofstream f(bad);
    f << "alice client " << serve::sha256_hex("x") << "\nbob admin " << serve::sha256_hex("y")
      << "\n";
  }
  const std::string e = testing::error_of([&] { serve::load_api_keys(bad); });
  EXPECT_NE(e.find("bad.txt:2"), std::string::npos) << e;
  EXPECT_NE(e.find("admin"), std::string::npos) << e;
  EXPECT_EQ(serve::sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

// The legacy shape: echo + logprobs + max_tokens 0 scores given text; choosing the continuation
// with the highest summed token_logprobs agrees with scoring in process.
TEST_F(Serve, LegacyEchoScoringChoosesAsInProcessScoring) {
  Running r;
  struct Item {
    std::string context;
    std::vector<std::string> continuations;
  };
  std::vector<Item> items = {
      {"Once upon a time, there was a little", {" girl", " car", " sky", " the"}},
      {"Lily went to the park. She saw a big", {" dog", " sad", " ran"}},
      {"The sun was", {" shining", " dog", " ball"}},
  };
  const Model& m = stories260k();
  const Tokenizer& tok = m.tokenizer();
  for (const Item& item : items) {
    int best_http = -1, best_ref = -1;
    double best_http_v = -1e30, best_ref_v = -1e30;
    for (size_t k = 0; k < item.continuations.size(); ++k) {
      const std::string text = item.context + item.continuations[k];
      auto [status, body] =
          r.post("/v1/completions",
                 {{"prompt", text}, {"max_tokens", 0}, {"echo", true}, {"logprobs", 1}});
      ASSERT_EQ(status, 200) << body.dump();
      const json& lp = body["choices"][0]["logprobs"];
      EXPECT_EQ(body["choices"][0]["text"], text);
      EXPECT_EQ(body["usage"]["completion_tokens"], 0);
      const size_t n = lp["tokens"].size();
      ASSERT_EQ(lp["token_logprobs"].size(), n);
      ASSERT_EQ(lp["text_offset"].size(), n);
      // The offsets map each token back to the text.
      for (size_t i = 0; i < n; ++i) {
        const size_t off = lp["text_offset"][i];
        const std::string t = lp["tokens"][i];
        EXPECT_EQ(text.substr(off, t.size()), t) << i;
        if (i + 1 < n) EXPECT_EQ(off + t.size(), lp["text_offset"][i + 1].get<size_t>());
        EXPECT_EQ(lp["top_logprobs"][i].size(), 1u);
      }
      // The continuation: tokens starting at or after the context's end.
      double sum = 0;
      for (size_t i = 0; i < n; ++i)
        if (lp["text_offset"][i].get<size_t>() >= item.context.size())
          sum += lp["token_logprobs"][i].get<double>();
      if (sum > best_http_v) best_http_v = sum, best_http = static_cast<int>(k);
      // In process: one forward pass, the log-probabilities of the continuation's tokens.
      std::vector<TokenId> ids = tok.encode(text, true, false);
      const size_t n_ctx = tok.encode(item.context, true, false).size();
      at::NoGradGuard ng;
      at::Tensor t =
          at::tensor(std::vector<int64_t>(ids.begin(), ids.end()), at::kLong).view({1, -1});
      at::Tensor lsm = at::log_softmax(m.forward_tokens(t), -1)[0];
      double ref = 0;
      for (size_t i = n_ctx; i < ids.size(); ++i) ref += lsm[i - 1][ids[i]].item<double>();
      EXPECT_NEAR(sum, ref, 1e-4) << text;
      if (ref > best_ref_v) best_ref_v = ref, best_ref = static_cast<int>(k);
    }
    EXPECT_EQ(best_http, best_ref) << item.context;
  }
}

TEST_F(Serve, APolicyCheckDecidesAndTheRecordShowsTheReason) {
  auto sup = supervision();
  sup->review = [](const supervise::Exchange& ex) {
    supervise::Review rv;
    supervise::CheckResult c;
    c.name = "no_dragons";
    c.type = "blocked_terms";
    c.outcome = ex.prompt.find("dragon") != std::string::npos ? "fail" : "pass";
    c.action = "block";
    c.detail = "the prompt mentions a dragon";
    rv.checks.push_back(c);
    if (c.outcome == "fail") {
      rv.decision = "block";
      rv.reasons.push_back("no_dragons: the prompt mentions a dragon");
    }
    return rv;
  };
  Running r({}, sup);
  auto [s1, ok] = r.post("/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 5}});
  ASSERT_EQ(s1, 200);
  EXPECT_EQ(ok["candor"]["decision"], "allow");
  auto [s2, blocked] = r.post("/v1/completions", {{"prompt", "The dragon"}, {"max_tokens", 5}});
  ASSERT_EQ(s2, 200);
  EXPECT_EQ(blocked["candor"]["decision"], "block");
  EXPECT_EQ(blocked["choices"][0]["text"], "");
  EXPECT_EQ(blocked["choices"][0]["finish_reason"], "content_filter");
  EXPECT_EQ(blocked["candor"]["checks"][0]["outcome"], "fail");
  auto rec = r.log->get(blocked["candor"]["audit_id"]);
  ASSERT_TRUE(rec);
  EXPECT_EQ(rec->decision, "block");
  EXPECT_EQ(rec->reasons[0], "no_dragons: the prompt mentions a dragon");
  EXPECT_FALSE(rec->answer.empty()) << "the auditor sees what the model said";
}

TEST_F(Serve, ReloadedPolicyAppliesToNewRequests) {
  Running r;
  auto [s1, a] = r.post("/v1/completions", {{"prompt", "Once"}, {"max_tokens", 3}});
  ASSERT_EQ(s1, 200);
  auto next = supervision("policy-b");
  next->policy.limits.max_tokens = 2;
  r.server->set_supervision(next);
  auto [s2, b] = r.post("/v1/completions", {{"prompt", "Once"}, {"max_tokens", 2}});
  ASSERT_EQ(s2, 200);
  EXPECT_EQ(r.post("/v1/completions", {{"prompt", "Once"}, {"max_tokens", 3}}).first, 400);
  auto recs = r.log->records();
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].policy_hash, "policy-a");
  EXPECT_EQ(recs[1].policy_hash, "policy-b");
}

// A busy server with no queue answers 429 with Retry-After; a full audit queue too.
TEST_F(Serve, FullQueuesAnswer429WithRetryAfter) {
  auto sup = supervision();
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  std::atomic<int> entered{0};
  sup->review = [gate, &entered](const supervise::Exchange&) {
    ++entered;
    gate.wait_for(std::chrono::seconds(30));
    return supervise::Review{};
  };
  serve::ServerOptions o;
  o.parallel = 1;
  o.queue = -1;
  Running r(o, sup);
  auto first = std::async(std::launch::async, [&] {
    return r.post("/v1/completions", {{"prompt", "Once"}, {"max_tokens", 2}}).first;
  });
  for (int i = 0; i < 3000 && entered.load() == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(entered.load(), 1) << "the first request holds the one slot";
  auto c = r.client();
  auto busy = c.Post("/v1/completions", R"({"prompt":"Once","max_tokens":2})", "application/json");
  ASSERT_TRUE(busy);
  EXPECT_EQ(busy->status, 429);
  EXPECT_EQ(busy->get_header_value("Retry-After"), "1");
  EXPECT_EQ(json::parse(busy->body)["error"]["type"], "rate_limit_error");
  release.set_value();
  EXPECT_EQ(first.get(), 200);

  r.log->full = true;
  auto full = c.Post("/v1/completions", R"({"prompt":"Once","max_tokens":2})", "application/json");
  ASSERT_TRUE(full);
  EXPECT_EQ(full->status, 429);
  EXPECT_EQ(full->get_header_value("Retry-After"), "1");
  EXPECT_EQ(json::parse(full->body)["error"]["code"], "audit_queue_full");
}

TEST_F(Serve, MetricsCountRequestsDecisionsAndLatencies) {
  Running r;
  ASSERT_EQ(r.post("/v1/completions", {{"prompt", "Once"}, {"max_tokens", 4}}).first, 200);
  ASSERT_EQ(r.post("/v1/completions", {{"prompt", 1}}).first, 400);
  auto c = r.client();
  auto m = c.Get("/metrics");
  ASSERT_TRUE(m);
  ASSERT_EQ(m->status, 200);
  const std::string& t = m->body;
  for (const char* want :
       {"candor_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 1",
        "candor_requests_total{endpoint=\"/v1/completions\",status=\"400\"} 1",
        "# TYPE candor_request_duration_seconds histogram",
        "candor_time_to_first_token_seconds_count 1", "candor_audit_write_duration_seconds_count 1",
        "candor_decisions_total{decision=\"allow\"} 1", "candor_tokens_generated_total 4",
        "candor_queue_depth 0", "candor_time_per_output_token_seconds_bucket{le=\"+Inf\"} 1"})
    EXPECT_NE(t.find(want), std::string::npos) << want << "\n" << t;
}

// Several clients at once: each gets its own answer, as generated alone.
TEST_F(Serve, ConcurrentRequestsGetTheirOwnAnswers) {
  serve::ServerOptions o;
  o.parallel = 4;
  o.threads = 1;
  Running r(o);
  std::vector<std::future<std::pair<int, json>>> fs;
  for (int i = 0; i < 8; ++i)
    fs.push_back(std::async(std::launch::async, [&r, i] {
      return r.post(
          "/v1/completions",
          {{"prompt", "Once upon a time"}, {"max_tokens", 16}, {"temperature", 1.0}, {"seed", i}});
    }));
  for (int i = 0; i < 8; ++i) {
    auto [status, body] = fs[i].get();
    ASSERT_EQ(status, 200) << body.dump();
    GenerateOptions g;
    g.max_new_tokens = 16;
    g.temperature = 1.0f;
    g.seed = static_cast<uint64_t>(i);
    EXPECT_EQ(body["choices"][0]["text"], generate(stories260k(), "Once upon a time", g).text) << i;
  }
  EXPECT_EQ(r.log->records().size(), 8u);
}

}  // namespace
}  // namespace candor

namespace candor {
namespace {

// The same request through the API and through the CLI binary (`candor generate --json`,
// `candor explain --json`): the same tokens, log-probabilities and attribution.
TEST_F(Serve, SameAnswerAndAttributionAsTheCli) {
  Running r;
  const std::string model = testing::shared_path("models/stories260K");
  auto cli = testing::run_cli("generate --model " + model +
                              " --prompt 'One day, Tom' -n 20 -t 0.9 -s 11 --json 2>/dev/null");
  ASSERT_EQ(cli.code, 0) << cli.out;
  json want = json::parse(cli.out);
  auto [status, body] = r.post("/v1/completions", {{"prompt", "One day, Tom"},
                                                   {"max_tokens", 20},
                                                   {"temperature", 0.9},
                                                   {"seed", 11},
                                                   {"logprobs", 0}});
  ASSERT_EQ(status, 200) << body.dump();
  EXPECT_EQ(body["choices"][0]["text"], want["text"]);
  const json& lps = body["choices"][0]["logprobs"]["token_logprobs"];
  ASSERT_EQ(lps.size(), want["logprobs"].size());
  for (size_t i = 0; i < lps.size(); ++i)
    EXPECT_NEAR(lps[i].get<double>(), want["logprobs"][i].get<double>(), 1e-5) << i;
  ASSERT_EQ(body["choices"][0]["logprobs"]["tokens"].size(), want["tokens"].size());

  const std::string out = testing::temp_dir() + "/explain.json";
  auto ex = testing::run_cli("explain --model " + model +
                             " --prompt 'One day, Tom' --generate 8 --method occlusion "
                             "--granularity word --json " +
                             out + " >/dev/null 2>&1");
  ASSERT_EQ(ex.code, 0) << ex.out;
  std::ifstream in(out);
  json env = json::parse(in);
  auto [s2, greedy] = r.post("/v1/completions",
                             {{"prompt", "One day, Tom"}, {"max_tokens", 8}, {"temperature", 0}});
  ASSERT_EQ(s2, 200);
  const json& got = greedy["candor"]["explanation"];
  EXPECT_EQ(got["generated_text"], env["generated_text"]);
  EXPECT_EQ(got["target"], env["target"]);
  EXPECT_EQ(got["attributions"][0]["features"], env["attributions"][0]["features"]);
  EXPECT_EQ(got["attributions"][0]["steps"].dump(), env["attributions"][0]["steps"].dump());
}

}  // namespace
}  // namespace candor

namespace candor {
namespace {

// The policy's real checks (candor_supervise): a blocked term in the answer blocks it, an
// uncertainty threshold no answer meets flags it, and the record shows both reasons.
TEST_F(Serve, RealPolicyChecksDecideAndTheRecordShowsTheReasons) {
  GenerateOptions g;
  g.max_new_tokens = 20;
  const std::string answer = generate(stories260k(), "Once upon a time", g).text;
  // A whole word of the greedy answer.
  std::string word;
  for (size_t i = 0, j; i < answer.size(); i = j + 1) {
    j = answer.find_first_of(" ,.!?\n", i);
    if (j == std::string::npos) j = answer.size();
    if (j - i >= 4) {
      word = answer.substr(i, j - i);
      break;
    }
  }
  ASSERT_FALSE(word.empty()) << answer;
  const std::string yaml =
      "explain:\n  method: occlusion\n  granularity: word\nchecks:\n"
      "  - name: words\n    type: blocked_terms\n    terms: [" +
      word +
      "]\n    on_fail: block\n"
      "  - name: unsure\n    type: uncertainty\n    max_mean_entropy: 0.0001\n    on_fail: flag\n";
  auto sup = std::make_shared<serve::Supervision>();
  sup->policy = supervise::parse_policy(yaml, "test-policy.yaml");
  auto supervisor = std::make_shared<supervise::Supervisor>(sup->policy);
  sup->review = [supervisor](const supervise::Exchange& e) { return supervisor->review(e); };
  Running r({}, sup);
  auto [status, body] = r.post(
      "/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 20}, {"temperature", 0}});
  ASSERT_EQ(status, 200) << body.dump();
  const json& cb = body["candor"];
  EXPECT_EQ(cb["decision"], "block") << cb.dump(2);
  EXPECT_EQ(body["choices"][0]["text"], "");
  ASSERT_EQ(cb["checks"].size(), 2u);
  EXPECT_EQ(cb["checks"][0]["outcome"], "fail");
  EXPECT_EQ(cb["checks"][1]["outcome"], "fail");
  EXPECT_EQ(cb["policy_hash"], sup->policy.hash);
  auto rec = r.log->get(cb["audit_id"]);
  ASSERT_TRUE(rec);
  EXPECT_EQ(rec->decision, "block");
  ASSERT_EQ(rec->reasons.size(), 2u) << rec->reasons.dump();
  EXPECT_NE(rec->reasons.dump().find("words"), std::string::npos) << rec->reasons.dump();
  EXPECT_NE(rec->reasons.dump().find("unsure"), std::string::npos) << rec->reasons.dump();
  EXPECT_EQ(rec->checks[0]["name"], "words");
  EXPECT_EQ(rec->answer, answer);

  // Another prompt whose answer lacks the word is only flagged.
  auto [s2, b2] =
      r.post("/v1/completions", {{"prompt", "Tom"}, {"max_tokens", 2}, {"temperature", 0}});
  ASSERT_EQ(s2, 200);
  if (b2["choices"][0]["text"].get<std::string>().find(word) == std::string::npos) {
    EXPECT_EQ(b2["candor"]["decision"], "flag") << b2["candor"].dump(2);
  }
}

}  // namespace
}  // namespace candor

namespace candor {
namespace {

// Checks declared async run after the answer; their results are appended as an addendum that
// refers to the request's audit_id.
TEST_F(Serve, AsyncChecksAppendAnAddendumToTheRecord) {
  auto sup = supervision();
  sup->review_async = [](const supervise::Exchange& ex) {
    supervise::Review rv;
    supervise::CheckResult c;
    c.name = "slow_probe";
    c.type = "counterfactual";
    c.outcome = "fail";
    c.async = true;
    c.detail = "answer of " + std::to_string(ex.answer_ids.size()) + " tokens";
    rv.checks.push_back(c);
    rv.decision = "flag";
    rv.reasons.push_back("slow_probe failed");
    return rv;
  };
  Running r({}, sup);
  auto [status, body] = r.post("/v1/completions", {{"prompt", "Once"}, {"max_tokens", 5}});
  ASSERT_EQ(status, 200);
  const std::string id = body["candor"]["audit_id"];
  std::optional<store::AuditRecord> add;
  for (int i = 0; i < 1000 && !add; ++i) {
    for (const auto& rec : r.log->records())
      if (rec.kind == "addendum" && rec.refers_to == id) add = rec;
    if (!add) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(add) << "no addendum for " << id;
  EXPECT_EQ(add->decision, "flag");
  EXPECT_EQ(add->checks[0]["name"], "slow_probe");
  EXPECT_EQ(add->checks[0]["detail"], "answer of 5 tokens");
  // The auditor finds it by the request's id.
  auto [s2, list] = r.get("/v1/audit/records?refers_to=" + id);
  ASSERT_EQ(s2, 200) << list.dump();
  ASSERT_EQ(list["data"].size(), 1u);
  EXPECT_EQ(list["data"][0]["kind"], "addendum");
}

TEST_F(Serve, TheTimeLimitCutsTheRequest) {
  auto sup = supervision();
  sup->policy.limits.request_timeout_ms = 1;
  Running r({}, sup);
  auto [status, body] = r.post(
      "/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 60}, {"temperature", 0}});
  ASSERT_EQ(status, 200) << body.dump();
  EXPECT_EQ(body["candor"]["time_limited"], true);
  EXPECT_EQ(body["choices"][0]["finish_reason"], "length");
  EXPECT_LT(body["usage"]["completion_tokens"].get<int>(), 60);
  EXPECT_FALSE(body["candor"]["audit_id"].get<std::string>().empty());
}

TEST_F(Serve, ARequestMayAskForMoreWithinThePolicy) {
  Running r;
  auto [status, body] = r.post("/v1/completions", {{"prompt", "Lily went to the park"},
                                                   {"max_tokens", 4},
                                                   {"temperature", 0},
                                                   {"candor",
                                                    {{"methods", {"occlusion", "input_x_gradient"}},
                                                     {"granularity", "token"},
                                                     {"evaluate", true}}}});
  ASSERT_EQ(status, 200) << body.dump();
  const json& atts = body["candor"]["explanation"]["attributions"];
  ASSERT_EQ(atts.size(), 2u);
  EXPECT_EQ(atts[0]["method"], "occlusion");
  EXPECT_EQ(atts[1]["method"], "input_x_gradient");
  EXPECT_TRUE(atts[0].contains("quality")) << atts[0].dump();
  // Token level: one feature per prompt token after BOS (and per generated token but the last).
  EXPECT_EQ(atts[0]["features"].size(), atts[0]["tokens"].size() - 1);
  // More methods than the policy allows.
  auto [s2, b2] =
      r.post("/v1/completions",
             {{"prompt", "Lily"},
              {"candor", {{"methods", {"occlusion", "input_x_gradient", "occlusion"}}}}});
  EXPECT_EQ(s2, 400);
  EXPECT_EQ(b2["error"]["code"], "policy_limit");
}

TEST_F(Serve, ServesHttpsWithACertificate) {
  const std::string dir = testing::temp_dir();
  const std::string cert = dir + "/cert.pem", key = dir + "/key.pem";
  if (testing::run_command("openssl req -x509 -newkey rsa:2048 -nodes -keyout " + key + " -out " +
                           cert + " -days 1 -subj /CN=127.0.0.1 2>/dev/null") != 0)
    GTEST_SKIP() << "skipped: the openssl command could not make a test certificate";
  serve::ServerOptions o;
  o.tls_cert = cert;
  o.tls_key = key;
  Running r(o);
  EXPECT_EQ(r.server->url().rfind("https://", 0), 0u);
  httplib::SSLClient c("127.0.0.1", r.server->port());
  c.enable_server_certificate_verification(false);
  c.set_read_timeout(60, 0);
  auto res = c.Post("/v1/completions", R"({"prompt":"Once","max_tokens":3})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_FALSE(json::parse(res->body)["candor"]["audit_id"].get<std::string>().empty());
  // A key without its certificate is refused.
  serve::ServerOptions bad;
  bad.tls_key = key;
  EXPECT_NE(testing::error_of([&] { serve::Server s(bad); }).find("--tls-cert"), std::string::npos);
}

}  // namespace
}  // namespace candor

namespace candor {
namespace {

TEST(ServeModels, AClassifierIsRefusedAndTheBuiltInLmServes) {
  serve::ServerOptions o;
  o.port = 0;
  serve::Server s(o);
  std::unique_ptr<Model> classifier =
      load_model(std::string(CANDOR_SOURCE_DIR) + "/models/builtin/sentiment");
  EXPECT_NE(testing::error_of([&] {
              s.set_model(classifier.get(), std::make_shared<MemoryLog>(), "w");
            }).find("causal language model"),
            std::string::npos);
  std::unique_ptr<Model> lm = load_model(std::string(CANDOR_SOURCE_DIR) + "/models/builtin/lm");
  s.set_supervision(supervision());
  s.set_model(lm.get(), std::make_shared<MemoryLog>(), "w");
  s.start();
  httplib::Client c("127.0.0.1", s.port());
  c.set_read_timeout(60, 0);
  auto r = c.Post(
      "/v1/chat/completions",
      R"({"messages":[{"role":"user","content":"Tell me about a cat"}],"max_tokens":6,"temperature":0})",
      "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  s.stop();
}

}  // namespace
}  // namespace candor

namespace candor {
namespace {

// Text that is not UTF-8 (a byte token alone: part of a character) still gets its record:
// the bad bytes become U+FFFD in the log and on the wire.
TEST_F(Serve, TextThatIsNotUtf8IsRecordedWithReplacementCharacters) {
  const Tokenizer& tok = stories260k().tokenizer();
  TokenId byte = -1;
  for (TokenId i = 0; i < tok.vocab_size(); ++i)
    if (tok.piece(i) == "<0xE2>") byte = i;
  if (byte < 0) GTEST_SKIP() << "skipped: the vocabulary has no <0xE2> byte token";
  Running r;
  auto [status, body] = r.post(
      "/v1/completions",
      {{"prompt", {tok.bos_id(), byte}}, {"max_tokens", 3}, {"echo", true}, {"logprobs", 1}});
  ASSERT_EQ(status, 200) << body.dump();
  auto rec = r.log->get(body["candor"]["audit_id"]);
  ASSERT_TRUE(rec);
  EXPECT_EQ(rec->prompt.substr(0, 3), "\xEF\xBF\xBD") << "U+FFFD for the lone byte";
}

}  // namespace
}  // namespace candor

namespace candor {
namespace {

// --parallel 4 decodes the requests in flight in shared batched steps: four concurrent requests of
// different prompt lengths, answer lengths and sampling parameters (greedy, temperature, top-p,
// top-k, a stop sequence) get the same tokens and log-probabilities (within 1e-5) as
// `candor generate --json` with the same seed, over two rounds, and /metrics shows that steps
// were shared.
TEST_F(Serve, BatchedDecodingGivesEachRequestItsAnswerAlone) {
  struct Ask {
    std::string prompt;
    int n;
    double temperature, top_p;
    int top_k;
    uint64_t seed;
    std::string stop;
  };
  const std::vector<Ask> asks = {
      {"Once upon a time", 24, 0.8, 0.9, 0, 3, ""},
      {"One day, Tom went to the park with his dog and", 9, 0.0, 1.0, 0, 0, ""},
      {"The cat", 31, 1.2, 1.0, 12, 77, ""},
      {"Lily and her mom baked a big cake. Then", 40, 1.0, 0.6, 0, 5, "."},
  };
  const std::string model = testing::shared_path("models/stories260K");
  std::vector<json> want;
  for (const Ask& a : asks) {
    std::ostringstream cmd;
    cmd << "generate --model " << model << " --prompt '" << a.prompt << "' -n " << a.n << " -t "
        << a.temperature << " --top-p " << a.top_p << " --top-k " << a.top_k << " -s " << a.seed
        << " --json 2>/dev/null";
    auto cli = testing::run_cli(cmd.str());
    ASSERT_EQ(cli.code, 0) << cmd.str() << "\n" << cli.out;
    want.push_back(json::parse(cli.out));
  }
  serve::ServerOptions o;
  o.parallel = 4;
  o.threads = 1;
  Running r(o);
  for (int round = 0; round < 2; ++round) {
    std::vector<std::future<std::pair<int, json>>> fs;
    for (const Ask& a : asks) {
      json body = {{"prompt", a.prompt},     {"max_tokens", a.n}, {"temperature", a.temperature},
                   {"top_p", a.top_p},       {"seed", a.seed},    {"logprobs", 0}};
      if (a.top_k > 0) body["top_k"] = a.top_k;
      if (!a.stop.empty()) body["stop"] = json::array({a.stop});
      fs.push_back(std::async(std::launch::async,
                              [&r, body] { return r.post("/v1/completions", body); }));
    }
    for (size_t i = 0; i < asks.size(); ++i) {
      auto [status, body] = fs[i].get();
      ASSERT_EQ(status, 200) << body.dump();
      std::string text = want[i]["text"].get<std::string>();
      if (!asks[i].stop.empty() && text.find(asks[i].stop) != std::string::npos)
        text = text.substr(0, text.find(asks[i].stop));
      const json& choice = body["choices"][0];
      EXPECT_EQ(choice["text"], text) << "request " << i << ", round " << round;
      const json& lps = choice["logprobs"]["token_logprobs"];
      ASSERT_GT(lps.size(), 0u);
      ASSERT_LE(lps.size(), want[i]["logprobs"].size()) << i;
      if (asks[i].stop.empty()) EXPECT_EQ(lps.size(), want[i]["logprobs"].size()) << i;
      for (size_t k = 0; k < lps.size(); ++k)
        EXPECT_NEAR(lps[k].get<double>(), want[i]["logprobs"][k].get<double>(), 1e-5)
            << "request " << i << ", token " << k;
    }
  }
  auto c = r.client();
  auto m = c.Get("/metrics");
  ASSERT_TRUE(m);
  auto gauge = [&](const std::string& name) {
    const size_t at = m->body.find("\n" + name + " ");
    return at == std::string::npos ? -1.0 : std::stod(m->body.substr(at + name.size() + 2));
  };
  EXPECT_GT(gauge("candor_batched_decode_steps"), 0) << m->body;
  EXPECT_GE(gauge("candor_batched_decode_rows"), gauge("candor_batched_decode_steps"));
}

}  // namespace
}  // namespace candor
