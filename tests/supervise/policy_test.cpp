// Policy files: the documented example, YAML and JSON alike, the hash, and one test per kind of
// error (each names the file, the line and the field, with a suggestion where one fits).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "candor/audit_log.h"
#include "candor/supervise.h"
#include "test_util.h"

namespace candor::supervise {
namespace {

using candor::testing::temp_dir;

// The complete example of docs/policy.md (its first ```yaml block).
std::string documented_example() {
  std::ifstream in(std::string(CANDOR_SOURCE_DIR) + "/docs/policy.md");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string doc = ss.str();
  size_t begin = doc.find("```yaml\n");
  if (begin == std::string::npos) return "";
  begin += 8;
  return doc.substr(begin, doc.find("```", begin) - begin);
}

struct Failure {
  std::string message, hint;
};
Failure failure(const std::string& text, const std::string& source = "policy.yaml") {
  try {
    parse_policy(text, source);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    return {e.what(), e.hint()};
  }
  return {"(no error)", ""};
}

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE((haystack).find(needle), std::string::npos) << "in: " << (haystack)

TEST(Policy, DocumentedExampleParses) {
  std::string text = documented_example();
  ASSERT_FALSE(text.empty()) << "docs/policy.md has no ```yaml block";
  Policy p = parse_policy(text, "docs/policy.md");
  EXPECT_EQ(p.source, "docs/policy.md");
  EXPECT_EQ(p.hash, store::sha256_hex(text));
  EXPECT_EQ(p.explain.method, "occlusion");
  EXPECT_EQ(p.explain.granularity, "word");
  EXPECT_EQ(p.limits.max_tokens, 256);
  std::vector<std::string> types;
  for (const auto& c : p.checks) types.push_back(c.type);
  EXPECT_EQ(types, (std::vector<std::string>{"uncertainty", "explanation_quality", "counterfactual",
                                             "blocked_terms", "length", "time"}));
  EXPECT_EQ(p.checks[0].on_fail, Action::kFlag);
  EXPECT_DOUBLE_EQ(p.checks[0].params["max_mean_entropy"].get<double>(), 3.5);
  EXPECT_TRUE(p.checks[2].async);
  EXPECT_EQ(p.checks[3].on_fail, Action::kRedact);
  EXPECT_EQ(p.checks[3].params["terms"].size(), 2u);
  EXPECT_EQ(p.checks[4].on_fail, Action::kBlock);
}

TEST(Policy, JsonAndYamlGiveTheSamePolicy) {
  std::string yaml = R"(checks:
  - name: short
    type: length
    max_tokens: 32
    on_fail: block
limits:
  max_tokens: 64
)";
  std::string json = R"({"checks": [{"name": "short", "type": "length", "max_tokens": 32,
  "on_fail": "block"}], "limits": {"max_tokens": 64}})";
  Policy a = parse_policy(yaml, "a.yaml"), b = parse_policy(json, "b.json");
  nlohmann::json ja = a.to_json(), jb = b.to_json();
  ja.erase("source");
  ja.erase("hash");
  jb.erase("source");
  jb.erase("hash");
  EXPECT_EQ(ja, jb);
  EXPECT_NE(a.hash, b.hash);  // the bytes differ
  EXPECT_EQ(a.checks[0].params["max_tokens"], 32);
}

TEST(Policy, LoadsFromAFileAndHashesItsBytes) {
  std::string path = temp_dir() + "/policy.yaml";
  std::string text = "checks:\n  - type: time\n    max_ms: 250\n";
  std::ofstream(path) << text;
  Policy p = load_policy(path);
  EXPECT_EQ(p.source, path);
  EXPECT_EQ(p.hash, store::sha256_hex(text));
  ASSERT_EQ(p.checks.size(), 1u);
  EXPECT_EQ(p.checks[0].name, "time");  // the type names an unnamed check
  try {
    load_policy(temp_dir() + "/missing.yaml");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_HAS(std::string(e.what()), "missing.yaml");
  }
}

TEST(Policy, DefaultPolicyIsCheapAndHashed) {
  Policy p = default_policy();
  EXPECT_EQ(p.hash.size(), 64u);
  EXPECT_EQ(p.hash, default_policy().hash);
  for (const auto& c : p.checks) EXPECT_NE(c.type, "counterfactual");  // no extra model passes
  EXPECT_TRUE(p.explain.enabled);
  EXPECT_EQ(p.explain.granularity, "word");
}

TEST(PolicyErrors, SyntaxErrorNamesTheLine) {
  Failure f = failure("checks:\n  - type: length\n    max_tokens: [1, 2\n", "p.yaml");
  EXPECT_HAS(f.message, "p.yaml:");
  EXPECT_HAS(f.message, "not valid YAML or JSON");
}

TEST(PolicyErrors, MisspeltTopLevelKeySuggestsTheKey) {
  Failure f = failure("limits:\n  max_tokens: 10\nchekcs: []\n");
  EXPECT_HAS(f.message, "policy.yaml:3: chekcs: unknown key 'chekcs'");
  EXPECT_HAS(f.hint, "did you mean checks?");
}

TEST(PolicyErrors, MisspeltCheckKeySuggestsTheParameter) {
  Failure f = failure("checks:\n  - type: uncertainty\n    max_entropi: 3\n");
  EXPECT_HAS(f.message, "policy.yaml:3: checks[0].max_entropi: unknown key");
  EXPECT_HAS(f.hint, "did you mean max_entropy?");
}

TEST(PolicyErrors, UnknownCheckTypeSuggestsAType) {
  Failure f = failure("checks:\n  - type: length\n    max_tokens: 3\n  - type: uncertanity\n");
  EXPECT_HAS(f.message, "policy.yaml:4: checks[1].type: unknown check type 'uncertanity'");
  EXPECT_HAS(f.hint, "did you mean uncertainty?");
}

TEST(PolicyErrors, UnknownActionSuggestsAnAction) {
  Failure f = failure("checks:\n  - type: time\n    max_ms: 5\n    on_fail: blok\n");
  EXPECT_HAS(f.message, "policy.yaml:4: checks[0].on_fail: unknown action 'blok'");
  EXPECT_HAS(f.hint, "did you mean block?");
}

TEST(PolicyErrors, WrongTypeAndRange) {
  EXPECT_HAS(failure("limits:\n  max_tokens: many\n").message,
             "policy.yaml:2: limits.max_tokens: expected a whole number, not 'many'");
  EXPECT_HAS(failure("checks:\n  - type: uncertainty\n    min_logprob: 2\n").message,
             "policy.yaml:3: checks[0].min_logprob: 2 is out of range");
  EXPECT_HAS(failure("log_content: perhaps\n").message,
             "policy.yaml:1: log_content: expected true or false");
  EXPECT_HAS(failure("checks:\n  type: time\n").message, "checks: expected a list of checks");
  EXPECT_HAS(failure("- 1\n- 2\n").message, "expected a mapping");
}

TEST(PolicyErrors, MissingTypeAndMissingThreshold) {
  Failure f = failure("checks:\n  - name: a\n    on_fail: flag\n");
  EXPECT_HAS(f.message, "policy.yaml:2: checks[0].type: missing");
  EXPECT_HAS(f.hint, "uncertainty");
  EXPECT_HAS(failure("checks:\n  - type: length\n").message,
             "checks[0]: a length check needs max_tokens");
  EXPECT_HAS(failure("checks:\n  - type: uncertainty\n").message,
             "needs at least one of max_mean_entropy, max_entropy, min_logprob");
}

TEST(PolicyErrors, DuplicateNames) {
  Failure f = failure("checks:\n  - type: time\n    max_ms: 5\n  - type: time\n    max_ms: 9\n");
  EXPECT_HAS(f.message, "policy.yaml:4: checks[1].name: a second check named 'time'");
  EXPECT_HAS(failure("limits:\n  max_tokens: 1\n  max_tokens: 2\n").message, "given twice");
}

TEST(PolicyErrors, InvalidRegexNamesThePattern) {
  Failure f = failure(
      "checks:\n  - type: blocked_terms\n    patterns:\n      - 'ok'\n      - '(unclosed'\n");
  EXPECT_HAS(f.message,
             "policy.yaml:5: checks[0].patterns[1]: invalid regular expression '(unclosed'");
}

TEST(PolicyErrors, UnknownExplainerAndGranularity) {
  EXPECT_HAS(failure("explain:\n  method: occlsion\n").message, "policy.yaml:2: explain.method:");
  EXPECT_HAS(failure("explain:\n  granularity: paragraph\n").message,
             "policy.yaml:2: explain.granularity:");
  EXPECT_HAS(failure("version: 2\n").message, "unknown policy version 2");
}

}  // namespace
}  // namespace candor::supervise
