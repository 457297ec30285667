// Guarded streaming over HTTP (docs/serve.md#guarded-streaming), on stories260K with greedy
// decoding: a blocked term split across the model's pieces is never released and stops the
// stream with finish_reason content_filter; a redacting term or pattern releases the redacted
// text, equal to the non-streamed answer; a check that needs the whole answer buffers the
// stream; a policy that cannot block leaves the stream as it was. The audit record keeps what
// was released.
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include "candor/serve.h"
#include "candor/supervise.h"
#include "serve/serve_harness.h"
#include "test_util.h"

namespace candor {
namespace {

using nlohmann::json;
using serve_test::Running;

std::shared_ptr<serve::Supervision> supervision(const std::string& checks,
                                               const std::string& limits = "") {
  auto s = std::make_shared<serve::Supervision>();
  s->policy = supervise::parse_policy(
      "explain:\n  enabled: false\nlimits:\n  max_tokens: 64\n" + limits + checks, "stream.yaml");
  auto sup = std::make_shared<supervise::Supervisor>(s->policy);
  s->review = [sup](const supervise::Exchange& e) { return sup->review(e); };
  return s;
}

struct Streamed {
  std::vector<std::string> pieces;  // the text of each chunk before the last event
  std::string text;                 // their concatenation
  json last;                        // the final event (finish_reason, usage, candor)
  bool done = false;
};

Streamed stream(const Running& r, bool chat, json body) {
  body["stream"] = true;
  auto c = r.client();
  auto res = c.Post(chat ? "/v1/chat/completions" : "/v1/completions", body.dump(),
                    "application/json");
  Streamed s;
  if (!res || res->status != 200) {
    ADD_FAILURE() << "stream failed: " << (res ? res->body : std::string("no answer"));
    return s;
  }
  std::vector<json> events;
  const std::string& b = res->body;
  for (size_t pos = 0; pos < b.size();) {
    const size_t end = b.find("\n\n", pos);
    if (end == std::string::npos) break;
    std::string ev = b.substr(pos, end - pos);
    pos = end + 2;
    if (ev.rfind("data: ", 0) != 0) continue;
    ev = ev.substr(6);
    if (ev == "[DONE]") {
      s.done = true;
      continue;
    }
    events.push_back(json::parse(ev));
  }
  if (events.empty()) return s;
  s.last = events.back();
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    const json& ch = events[i]["choices"][0];
    const std::string t = chat ? ch["delta"]["content"].get<std::string>() : ch["text"].get<std::string>();
    s.pieces.push_back(t);
    s.text += t;
  }
  return s;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

const json kAsk = {{"prompt", "Once upon a time"}, {"max_tokens", 48}, {"temperature", 0}};

class ServeStreamGuard : public ::testing::Test {
 protected:
  void SetUp() override {
    CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
    r = std::make_unique<Running>(serve::ServerOptions{}, supervision(""));
    auto [status, body] = r->post("/v1/completions", kAsk);
    ASSERT_EQ(status, 200) << body.dump();
    plain = body["choices"][0]["text"];
    plain_tokens = body["usage"]["completion_tokens"];
    // The live stream's pieces, and a word of at least 4 letters in the first two thirds of the
    // answer that no single piece holds (the model wrote it across pieces).
    live = stream(*r, false, kAsk);
    ASSERT_EQ(live.text, plain);
    ASSERT_GE(live.pieces.size(), 4u);
    std::vector<size_t> starts;  // each piece's offset
    size_t at = 0;
    for (const auto& p : live.pieces) {
      starts.push_back(at);
      at += p.size();
    }
    for (size_t i = 0; i < plain.size() * 2 / 3 && word.empty();) {
      if (!std::isalpha(static_cast<unsigned char>(plain[i]))) {
        ++i;
        continue;
      }
      size_t j = i;
      while (j < plain.size() && std::isalpha(static_cast<unsigned char>(plain[j]))) ++j;
      bool split = false;
      for (size_t s : starts) split = split || (s > i && s < j);
      if (j - i >= 4 && split) word = plain.substr(i, j - i), word_at = i;
      i = j;
    }
    ASSERT_FALSE(word.empty()) << "no word split across pieces in: " << plain;
  }
  void use(const std::string& checks, const std::string& limits = "") {
    r->server->set_supervision(supervision(checks, limits));
  }
  std::unique_ptr<Running> r;
  std::string plain;
  int64_t plain_tokens = 0;
  Streamed live;
  std::string word;
  size_t word_at = 0;
};

TEST_F(ServeStreamGuard, ABlockedTermSplitAcrossPiecesStopsTheStreamBeforeIt) {
  use("checks:\n  - {name: secrets, type: blocked_terms, terms: ['" + word +
      "'], on_fail: block}\n");
  Streamed s = stream(*r, false, kAsk);
  ASSERT_TRUE(s.done);
  EXPECT_EQ(lower(s.text).find(lower(word)), std::string::npos) << s.text;
  // What was released passed: the answer up to (at most) the term.
  EXPECT_EQ(plain.compare(0, s.text.size(), s.text), 0) << s.text;
  EXPECT_LE(s.text.size(), word_at);
  EXPECT_EQ(s.last["choices"][0]["finish_reason"], "content_filter");
  const json& cb = s.last["candor"];
  EXPECT_EQ(cb["decision"], "block");
  EXPECT_NE(cb["reasons"].dump().find("secrets (blocked_terms)"), std::string::npos) << cb.dump();
  EXPECT_EQ(cb["stream"]["mode"], "windowed");
  EXPECT_EQ(cb["stream"]["stopped"], true);
  EXPECT_EQ(cb["stream"]["released_bytes"], s.text.size());
  // Generation stopped at the term, not at max_tokens.
  EXPECT_LT(s.last["usage"]["completion_tokens"].get<int64_t>(), plain_tokens);
  // The record: blocked, with what was released.
  auto recs = r->log->records();
  ASSERT_FALSE(recs.empty());
  const auto& rec = recs.back();
  EXPECT_EQ(rec.id, cb["audit_id"]);
  EXPECT_EQ(rec.decision, "block");
  EXPECT_EQ(rec.parameters["stream"]["released"], s.text);
  EXPECT_EQ(rec.parameters["finish_reason"], "content_filter");
  // Not streamed, the same policy blocks the whole answer.
  auto [status, body] = r->post("/v1/completions", kAsk);
  ASSERT_EQ(status, 200);
  EXPECT_EQ(body["candor"]["decision"], "block");
  EXPECT_EQ(body["choices"][0]["text"], "");
}

TEST_F(ServeStreamGuard, ARedactedTermIsReleasedRedactedAsTheWholeAnswerIs) {
  use("checks:\n  - {name: secrets, type: blocked_terms, terms: ['" + word +
      "'], on_fail: redact}\n");
  auto [status, body] = r->post("/v1/completions", kAsk);
  ASSERT_EQ(status, 200);
  const std::string want = body["choices"][0]["text"];
  ASSERT_NE(want.find("[redacted]"), std::string::npos) << want;
  Streamed s = stream(*r, false, kAsk);
  EXPECT_EQ(s.text, want);
  EXPECT_GE(s.pieces.size(), 2u) << "released in pieces as the window moves";
  for (const auto& p : s.pieces) EXPECT_EQ(lower(p).find(lower(word)), std::string::npos) << p;
  EXPECT_EQ(s.last["candor"]["decision"], "flag");
  EXPECT_EQ(s.last["candor"]["stream"]["mode"], "windowed");
  EXPECT_EQ(s.last["choices"][0]["finish_reason"], body["choices"][0]["finish_reason"]);
  EXPECT_EQ(r->log->records().back().parameters["stream"]["released"], want);
  // Chat: the same through delta.content.
  json chat = {{"messages", {{{"role", "user"}, {"content", "Tell me a story"}}}},
               {"max_tokens", 48},
               {"temperature", 0}};
  auto [cs, cbody] = r->post("/v1/chat/completions", chat);
  ASSERT_EQ(cs, 200);
  EXPECT_EQ(stream(*r, true, chat).text, cbody["choices"][0]["message"]["content"]);
}

TEST_F(ServeStreamGuard, ARegexWithMaxMatchIsJudgedOnTheWindow) {
  // Any word of the term's length that begins with its first letter.
  const std::string pattern = std::string("\\\\b[") + word[0] + "][a-zA-Z]{" +
                              std::to_string(word.size() - 1) + "}\\\\b";
  use("checks:\n  - {name: shape, type: blocked_terms, patterns: [\"" + pattern +
      "\"], max_match: " + std::to_string(word.size()) + ", on_fail: redact}\n");
  auto [status, body] = r->post("/v1/completions", kAsk);
  ASSERT_EQ(status, 200);
  const std::string want = body["choices"][0]["text"];
  ASSERT_NE(want.find("[redacted]"), std::string::npos) << want << " " << pattern;
  Streamed s = stream(*r, false, kAsk);
  EXPECT_EQ(s.text, want);
  EXPECT_EQ(s.last["candor"]["stream"]["mode"], "windowed");
  EXPECT_EQ(s.last["candor"]["stream"]["window_bytes"], word.size() + 1);
  EXPECT_GE(s.pieces.size(), 2u);
  // Without max_match the pattern holds the stream whole: one piece, after the checks.
  use("checks:\n  - {name: shape, type: blocked_terms, patterns: [\"" + pattern +
      "\"], on_fail: redact}\n");
  Streamed whole = stream(*r, false, kAsk);
  EXPECT_EQ(whole.text, want);
  EXPECT_EQ(whole.pieces.size(), 1u);
  EXPECT_EQ(whole.last["candor"]["stream"]["mode"], "buffered");
}

TEST_F(ServeStreamGuard, AWholeAnswerCheckThatCanBlockBuffersTheStream) {
  // Passes: the answer is released in one piece once the checks have decided.
  use("checks:\n  - {name: unsure, type: uncertainty, max_entropy: 100, on_fail: block}\n");
  Streamed s = stream(*r, false, kAsk);
  EXPECT_EQ(s.text, plain);
  ASSERT_EQ(s.pieces.size(), 1u);
  EXPECT_EQ(s.last["candor"]["stream"]["mode"], "buffered");
  EXPECT_EQ(s.last["candor"]["decision"], "allow");
  // Fails (every token's log-probability is below 0): nothing at all is released.
  use("checks:\n  - {name: unsure, type: uncertainty, min_logprob: 0, on_fail: block}\n");
  Streamed b = stream(*r, false, kAsk);
  EXPECT_TRUE(b.pieces.empty()) << b.text;
  EXPECT_EQ(b.last["choices"][0]["finish_reason"], "content_filter");
  EXPECT_EQ(b.last["candor"]["decision"], "block");
  EXPECT_EQ(r->log->records().back().parameters["stream"]["released"], "");
  // Regenerate: nothing was released, so a buffered stream is sampled again like any request.
  use("checks:\n  - {name: unsure, type: uncertainty, min_logprob: 0, on_fail: regenerate}\n",
      "  max_regenerations: 1\n");
  Streamed g = stream(*r, false, kAsk);
  ASSERT_TRUE(g.last["candor"].contains("attempts")) << g.last.dump();
  EXPECT_EQ(g.last["candor"]["attempts"].size(), 2u);
  EXPECT_EQ(g.last["candor"]["regeneration_note"].get<std::string>().find("streamed"),
            std::string::npos);
  EXPECT_EQ(g.pieces.size(), 1u);
}

TEST_F(ServeStreamGuard, APolicyThatCannotBlockLeavesTheStreamUnchanged) {
  // Flag: live, the same pieces as with no policy.
  use("checks:\n  - {name: secrets, type: blocked_terms, terms: ['" + word +
      "'], on_fail: flag}\n");
  Streamed f = stream(*r, false, kAsk);
  EXPECT_EQ(f.pieces, live.pieces);
  EXPECT_EQ(f.last["candor"]["decision"], "flag");
  EXPECT_EQ(f.last["candor"]["stream"]["mode"], "live");
  // A blocking term the answer does not contain: windowed, the same text, still in pieces.
  use("checks:\n  - {name: secrets, type: blocked_terms, terms: [xylophone], on_fail: block}\n");
  Streamed w = stream(*r, false, kAsk);
  EXPECT_EQ(w.text, plain);
  EXPECT_GE(w.pieces.size(), live.pieces.size() / 2);
  EXPECT_EQ(w.last["candor"]["decision"], "allow");
  EXPECT_EQ(w.last["candor"]["stream"]["mode"], "windowed");
  EXPECT_EQ(w.last["candor"]["stream"]["stopped"], false);
  EXPECT_EQ(r->log->records().back().parameters["stream"]["released"], plain);
}

}  // namespace
}  // namespace candor
