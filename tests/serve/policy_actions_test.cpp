// Policy actions and limits through the HTTP API that the other service tests do not reach: a
// `redact` check rewrites what the client receives (and the record says why), and the policy's
// limit on prompt tokens is a 400 naming the limit, before any generation or record.
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <regex>
#include <string>

#include "candor/serve.h"
#include "candor/supervise.h"
#include "serve/serve_harness.h"
#include "test_util.h"

namespace candor {
namespace {

using nlohmann::json;
using serve_test::Running;

std::shared_ptr<serve::Supervision> supervision(const std::string& yaml) {
  auto s = std::make_shared<serve::Supervision>();
  s->policy = supervise::parse_policy(yaml, "actions.yaml");
  auto sup = std::make_shared<supervise::Supervisor>(s->policy);
  s->review = [sup](const supervise::Exchange& e) { return sup->review(e); };
  return s;
}

class ServePolicyActions : public ::testing::Test {
 protected:
  void SetUp() override { CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin"); }
};

TEST_F(ServePolicyActions, RedactRewritesTheAnswerTheClientReceives) {
  // Every run of three or more letters is a match: whatever the model says is redacted.
  Running r({}, supervision("explain:\n  enabled: false\nlimits:\n  max_tokens: 32\n"
                            "checks:\n  - name: words\n    type: blocked_terms\n"
                            "    patterns: ['[A-Za-z]{3,}']\n    on_fail: redact\n"));
  auto [status, body] = r.post("/v1/completions", {{"prompt", "Once upon a time"},
                                                   {"max_tokens", 12},
                                                   {"temperature", 0}});
  ASSERT_EQ(status, 200) << body.dump();
  const std::string text = body["choices"][0]["text"];
  EXPECT_NE(text.find("[redacted]"), std::string::npos) << text;
  // Nothing of three letters or more is left but the marker itself.
  const std::string rest = std::regex_replace(text, std::regex("\\[redacted\\]"), "");
  EXPECT_FALSE(std::regex_search(rest, std::regex("[A-Za-z]{3,}"))) << text;
  EXPECT_EQ(body["candor"]["decision"], "flag");
  ASSERT_EQ(body["candor"]["checks"].size(), 1u);
  EXPECT_EQ(body["candor"]["checks"][0]["outcome"], "fail");
  auto recs = r.log->records();
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].decision, "flag");
  EXPECT_NE(recs[0].reasons.dump().find("words"), std::string::npos) << recs[0].reasons.dump();
}

TEST_F(ServePolicyActions, ThePromptTokenLimitIsA400NamingTheLimit) {
  Running r({}, supervision("explain:\n  enabled: false\nlimits:\n  max_prompt_tokens: 5\n"));
  auto [status, body] = r.post(
      "/v1/completions",
      {{"prompt", "Once upon a time there was a little girl named Lily"}, {"max_tokens", 2}});
  EXPECT_EQ(status, 400) << body.dump();
  EXPECT_EQ(body["error"]["code"], "prompt_too_long");
  EXPECT_NE(body["error"]["message"].get<std::string>().find("more than the 5"),
            std::string::npos)
      << body.dump();
  EXPECT_TRUE(r.log->records().empty()) << "a refused request is not recorded";
  // A short prompt is within the limit.
  auto [s2, b2] = r.post("/v1/completions", {{"prompt", "Once"}, {"max_tokens", 2}});
  EXPECT_EQ(s2, 200) << b2.dump();
}

}  // namespace
}  // namespace candor
