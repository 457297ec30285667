// The supervisor's checks: an exchange crafted to fail each check gets the configured decision
// and a reason naming the check and its value; errors are recorded, never thrown; async checks
// run only in review_async. The counterfactual probe runs on the built-in LM.
#include <gtest/gtest.h>

#include "candor/evaluate.h"
#include "candor/generate.h"
#include "candor/model.h"
#include "candor/audit.h"
#include "candor/supervise.h"
#include "test_util.h"

namespace candor::supervise {
namespace {

const std::string kBuiltin = std::string(CANDOR_SOURCE_DIR) + "/models/builtin/lm";

const Model& builtin_lm() {
  static std::unique_ptr<Model> model = load_model(kBuiltin);
  return *model;
}

Policy policy_of(const std::string& yaml) { return parse_policy(yaml, "test.yaml"); }

std::vector<TokenStats> stats(const std::vector<float>& entropies, float logprob = -1.0f) {
  std::vector<TokenStats> v;
  for (float e : entropies) {
    TokenStats s;
    s.entropy = e;
    s.logprob = logprob;
    v.push_back(s);
  }
  return v;
}

bool has_reason(const Review& r, const std::string& needle) {
  for (const auto& s : r.reasons)
    if (s.find(needle) != std::string::npos) return true;
  return false;
}

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE((haystack).find(needle), std::string::npos) << "in: " << (haystack)

TEST(Checks, UncertaintyFromTokenStats) {
  Supervisor sup(
      policy_of("checks:\n  - type: uncertainty\n    max_mean_entropy: 2\n    min_logprob: -5\n    "
                "on_fail: block\n"));
  Exchange x;
  x.token_stats = stats({1.0f, 4.0f, 4.0f});  // mean 3 > 2
  Review r = sup.review(x);
  ASSERT_EQ(r.checks.size(), 1u);
  EXPECT_EQ(r.checks[0].outcome, "fail");
  EXPECT_DOUBLE_EQ(r.checks[0].value, 3.0);
  EXPECT_DOUBLE_EQ(r.checks[0].threshold, 2.0);
  EXPECT_DOUBLE_EQ(r.checks[0].measures["max_entropy"].get<double>(), 4.0);
  EXPECT_EQ(r.decision, "block");
  EXPECT_TRUE(has_reason(r, "uncertainty (uncertainty): mean entropy 3 > 2")) << r.to_json();
  x.token_stats = stats({1.0f, 1.0f}, -7.0f);  // calm, but an unlikely token
  r = sup.review(x);
  EXPECT_EQ(r.checks[0].outcome, "fail");
  EXPECT_DOUBLE_EQ(r.checks[0].value, -7.0);
  EXPECT_TRUE(has_reason(r, "min log-prob -7 < -5"));
  x.token_stats = stats({1.0f, 1.0f}, -1.0f);
  r = sup.review(x);
  EXPECT_EQ(r.checks[0].outcome, "pass");
  EXPECT_EQ(r.decision, "allow");
  EXPECT_TRUE(r.reasons.empty());
  x.token_stats.clear();
  EXPECT_EQ(sup.review(x).checks[0].outcome, "skipped");
}

TEST(Checks, ExplanationQualityFromTheQualityBlock) {
  Supervisor sup(
      policy_of("checks:\n  - type: explanation_quality\n    min_comprehensiveness: 0.1\n"));
  Attribution a;
  a.extra = {{"quality", {{"comprehensiveness_aopc", 0.05}, {"sufficiency_aopc", 0.5}}}};
  Exchange x;
  x.explanation = &a;
  Review r = sup.review(x);
  EXPECT_EQ(r.checks[0].outcome, "fail");
  EXPECT_EQ(r.decision, "flag");  // the default action
  EXPECT_TRUE(has_reason(r, "comprehensiveness AOPC 0.05 < 0.1")) << r.to_json();
  // Good figures, but no better than a decoy.
  a.extra["quality"]["comprehensiveness_aopc"] = 0.3;
  a.extra["quality"]["decoys"] = {{"random", {{"comprehensiveness_aopc", 0.4}}},
                                  {"lexicon", {{"comprehensiveness_aopc", 0.1}}}};
  r = sup.review(x);
  EXPECT_EQ(r.checks[0].outcome, "fail");
  EXPECT_TRUE(has_reason(r, "over decoy random 0.3 <= 0.4")) << r.to_json();
  a.extra["quality"]["decoys"]["random"]["comprehensiveness_aopc"] = 0.2;
  EXPECT_EQ(sup.review(x).checks[0].outcome, "pass");
  a.extra = nlohmann::json::object();
  EXPECT_EQ(sup.review(x).checks[0].outcome, "skipped");
  x.explanation = nullptr;
  EXPECT_EQ(sup.review(x).checks[0].outcome, "skipped");
}

// Without a quality block, the check scores the explanation and its decoys with the model; the
// figures equal the evaluator's, and an explanation that is no better than a decoy fails.
TEST(Checks, ExplanationQualityScoresDecoysWithTheModel) {
  const Model& model = builtin_lm();
  ExplainRequest req;
  req.input_ids = model.tokenizer().encode("Once upon a time, there was a little boy who", true);
  req.granularity = Granularity::kWord;
  Attribution a = make_explainer("occlusion")->explain(model, req);
  Exchange x;
  x.model = &model;
  x.explain_request = &req;
  x.explanation = &a;
  Supervisor sup(policy_of("checks:\n  - type: explanation_quality\n    beat_decoys: true\n"));
  Review r = sup.review(x);
  ASSERT_EQ(r.checks.size(), 1u);
  const CheckResult& c = r.checks[0];
  ASSERT_TRUE(c.outcome == "pass" || c.outcome == "fail") << r.to_json();
  EXPECT_EQ(c.measures["source"], "computed");
  // The evaluator on the same attributions, independently.
  std::vector<Attribution> all = {a};
  for (auto& d : make_decoys(model, req, a, DecoyOptions{})) all.push_back(d);
  FaithfulnessOptions o;
  o.curves = o.infidelity = o.loo = false;
  auto f = evaluate_faithfulness(model, req, all, o);
  EXPECT_NEAR(c.measures["comprehensiveness_aopc"].get<double>(), f[0].comprehensiveness_aopc,
              1e-9);
  bool beats_all = true;
  for (size_t i = 1; i < all.size(); ++i) {
    EXPECT_NEAR(c.measures["decoys"][all[i].method].get<double>(), f[i].comprehensiveness_aopc,
                1e-9);
    beats_all = beats_all && f[0].comprehensiveness_aopc > f[i].comprehensiveness_aopc;
  }
  EXPECT_EQ(c.outcome, beats_all ? "pass" : "fail") << r.to_json();
  // An "explanation" that ranks the features as the `first` decoy does cannot beat it.
  Attribution first;
  for (const auto& d : all)
    if (d.method == "first") first = d;
  ASSERT_FALSE(first.scores.empty()) << "make_decoys made no `first` decoy";
  Attribution copy = decoy_with_scores(a, "occlusion", first.total());
  x.explanation = &copy;
  r = sup.review(x);
  EXPECT_EQ(r.checks[0].outcome, "fail") << r.to_json();
  EXPECT_TRUE(has_reason(r, "over decoy first")) << r.to_json();
}

TEST(Checks, BlockedTermsWholeWordsAnyCaseAndPatternsRedacted) {
  Supervisor sup(policy_of(
      "checks:\n  - name: secrets\n    type: blocked_terms\n    terms: [password, 'credit card']\n"
      "    patterns: ['\\b\\d{3}-\\d{2}-\\d{4}\\b']\n    on_fail: redact\n"));
  Exchange x;
  x.answer =
      "Your Password is 123-45-6789; passwords and my Credit  card are safe, CREDIT CARD not.";
  Review r = sup.review(x);
  ASSERT_EQ(r.checks[0].outcome, "fail");
  EXPECT_DOUBLE_EQ(r.checks[0].value, 3.0);  // Password, the number, CREDIT CARD
  EXPECT_EQ(r.decision, "flag");
  EXPECT_TRUE(r.redact);
  EXPECT_EQ(
      r.redacted_answer,
      "Your [redacted] is [redacted]; passwords and my Credit  card are safe, [redacted] not.");
  EXPECT_TRUE(has_reason(r, "secrets (blocked_terms): 3 match(es)")) << r.to_json();
  x.answer = "Nothing to see: passwordless login.";
  r = sup.review(x);
  EXPECT_EQ(r.checks[0].outcome, "pass");
  EXPECT_FALSE(r.redact);
  // The plain function, case-sensitive patterns.
  std::string redacted;
  CheckResult c =
      check_blocked_terms("ABC abc", {{"patterns", {"abc"}}, {"case_sensitive", true}}, &redacted);
  EXPECT_DOUBLE_EQ(c.value, 1.0);
  EXPECT_EQ(redacted, "ABC [redacted]");
}

TEST(Checks, LengthAndTime) {
  Supervisor sup(policy_of(
      "checks:\n  - type: length\n    max_tokens: 32\n    on_fail: block\n  - type: time\n"
      "    max_ms: 1000\n    on_fail: flag\n"));
  Exchange x;
  x.answer_ids = std::vector<TokenId>(40, 5);
  x.elapsed_ms = 5000;
  Review r = sup.review(x);
  ASSERT_EQ(r.checks.size(), 2u);
  EXPECT_EQ(r.checks[0].outcome, "fail");
  EXPECT_DOUBLE_EQ(r.checks[0].value, 40);
  EXPECT_EQ(r.checks[1].outcome, "fail");
  EXPECT_DOUBLE_EQ(r.checks[1].value, 5000);
  EXPECT_EQ(r.decision, "block");  // the strongest of flag and block
  EXPECT_TRUE(has_reason(r, "length (length): answer tokens 40 > 32 -> block"));
  EXPECT_TRUE(has_reason(r, "time (time): elapsed ms 5000 > 1000 -> flag"));
  x.answer_ids.resize(10);
  x.elapsed_ms = 10;
  r = sup.review(x);
  EXPECT_EQ(r.decision, "allow");
}

TEST(Checks, AllowRecordsTheFailureButAllows) {
  Supervisor sup(policy_of("checks:\n  - type: time\n    max_ms: 1\n    on_fail: allow\n"));
  Exchange x;
  x.elapsed_ms = 2;
  Review r = sup.review(x);
  EXPECT_EQ(r.checks[0].outcome, "fail");
  EXPECT_EQ(r.checks[0].action, "allow");
  EXPECT_EQ(r.decision, "allow");
}

TEST(Checks, RegenerateFlagsAndAsks) {
  Supervisor sup(
      policy_of("checks:\n  - type: length\n    max_tokens: 1\n    on_fail: regenerate\n"));
  Exchange x;
  x.answer_ids = {1, 2};
  Review r = sup.review(x);
  EXPECT_EQ(r.decision, "flag");
  EXPECT_TRUE(r.regenerate);
}

TEST(Checks, AThrowingCheckIsRecordedAsErrorNeverPropagated) {
  // The counterfactual check needs the model; without one it throws inside.
  Supervisor sup(policy_of(
      "checks:\n  - type: counterfactual\n    on_fail: block\n  - type: time\n    max_ms: 100\n"));
  Exchange x;
  x.prompt = "He went home.";
  x.answer_ids = {5, 6};
  Review r;
  ASSERT_NO_THROW(r = sup.review(x));
  ASSERT_EQ(r.checks.size(), 2u);
  EXPECT_EQ(r.checks[0].outcome, "error");
  EXPECT_HAS(r.checks[0].detail, "needs the model");
  EXPECT_EQ(r.checks[1].outcome, "pass");  // the others still run
  EXPECT_EQ(r.decision, "flag");           // an error flags; it does not take the block action
  EXPECT_TRUE(has_reason(r, "counterfactual (counterfactual): error:"));
  // A swapper that throws, too.
  Supervisor throwing(policy_of("checks:\n  - type: counterfactual\n"),
                      [](const std::string&) -> std::vector<std::string> {
                        throw std::runtime_error("word list unavailable");
                      });
  x.model = &builtin_lm();
  r = throwing.review(x);
  EXPECT_EQ(r.checks[0].outcome, "error");
  EXPECT_HAS(r.checks[0].detail, "word list unavailable");
}

TEST(Checks, AsyncChecksRunOnlyInReviewAsync) {
  Supervisor sup(
      policy_of("checks:\n  - type: length\n    max_tokens: 1\n  - name: slow\n    type: time\n    "
                "max_ms: 1\n"
                "    async: true\n    on_fail: block\n"));
  Exchange x;
  x.answer_ids = {1, 2, 3};
  x.elapsed_ms = 50;
  Review now = sup.review(x);
  ASSERT_EQ(now.checks.size(), 1u);
  EXPECT_EQ(now.checks[0].name, "length");
  EXPECT_FALSE(now.checks[0].async);
  EXPECT_EQ(now.decision, "flag");
  Review later = sup.review_async(x);
  ASSERT_EQ(later.checks.size(), 1u);
  EXPECT_EQ(later.checks[0].name, "slow");
  EXPECT_TRUE(later.checks[0].async);
  EXPECT_EQ(later.decision, "block");
  nlohmann::json j = later.to_json();
  EXPECT_EQ(j["checks"][0]["name"], "slow");
  EXPECT_EQ(j["decision"], "block");
}

TEST(Swapper, DefaultSwapsGenderedWordsKeepingCase) {
  Swapper swap = default_swapper();
  auto out = swap("He told his Mother that the KING saw her, and she thanked him for her book.");
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], "She told her Father that the QUEEN saw him, and he thanked her for his book.");
  EXPECT_TRUE(swap("The cat sat on the mat. Theme: shelter.").empty());  // no whole-word term
}

// Teacher forcing against the generating pass: the mean log-probability of a greedy answer
// computed in one forward pass equals the mean of generate()'s per-token log-probabilities.
TEST(Counterfactual, TeacherForcedLogprobMatchesGeneration) {
  const Model& model = builtin_lm();
  GenerateOptions o;
  o.max_new_tokens = 12;
  o.token_stats = true;
  GenerateResult g = generate(model, std::string_view("Once upon a time, a little boy"), o);
  ASSERT_FALSE(g.generated_ids.empty());
  double mean = 0;
  for (float lp : g.logprobs) mean += lp;
  mean /= static_cast<double>(g.logprobs.size());
  EXPECT_NEAR(answer_mean_logprob(model, g.prompt_ids, g.generated_ids), mean, 1e-4);
}

TEST(Counterfactual, FlagsWhenASwapMovesTheAnswerAndSkipsWithoutTerms) {
  const Model& model = builtin_lm();
  GenerateOptions o;
  o.max_new_tokens = 16;
  o.token_stats = true;
  std::string prompt = "Once upon a time, there was a little boy. He";
  GenerateResult g = generate(model, std::string_view(prompt), o);
  ASSERT_FALSE(g.generated_ids.empty());
  Exchange x;
  x.model = &model;
  x.prompt = prompt;
  x.prompt_ids = g.prompt_ids;
  x.answer_ids = g.generated_ids;
  x.answer = g.text;
  x.token_stats = g.token_stats;
  // The swapped prompt by hand, scored by hand: the check's value is |that - original|.
  const std::string swapped = "Once upon a time, there was a little girl. She";
  EXPECT_EQ(default_swapper()(prompt), std::vector<std::string>{swapped});
  double base = answer_mean_logprob(model, model.tokenizer().encode(prompt, true), g.generated_ids);
  double other =
      answer_mean_logprob(model, model.tokenizer().encode(swapped, true), g.generated_ids);
  double expected = std::abs(other - base);
  ASSERT_GT(expected, 0.0) << "the swap changed nothing: the test cannot tell pass from fail";

  Supervisor strict(
      policy_of("checks:\n  - type: counterfactual\n    threshold: 0\n    on_fail: block\n"));
  Review r = strict.review(x);
  ASSERT_EQ(r.checks[0].outcome, "fail") << r.to_json();
  EXPECT_NEAR(r.checks[0].value, expected, 1e-6);
  EXPECT_EQ(r.decision, "block");
  EXPECT_TRUE(has_reason(r, "counterfactual (counterfactual): the answer's mean log-prob moves"));
  EXPECT_EQ(r.checks[0].measures["swaps"][0]["prompt"], swapped);

  Supervisor lenient(policy_of("checks:\n  - type: counterfactual\n    threshold: 100\n"));
  r = lenient.review(x);
  EXPECT_EQ(r.checks[0].outcome, "pass");
  EXPECT_EQ(r.decision, "allow");

  x.prompt = "Once upon a time, there was a little cat. It";
  r = strict.review(x);
  EXPECT_EQ(r.checks[0].outcome, "skipped");
  EXPECT_EQ(r.decision, "allow");
}

// A check naming `attributes` swaps the audits' word lists of those attributes, not the default
// gendered list: a prompt that mentions a religious term is probed once per other group.
TEST(Counterfactual, AttributesSwapTheAuditsWordLists) {
  const Model& model = builtin_lm();
  GenerateOptions o;
  o.max_new_tokens = 8;
  o.token_stats = true;
  std::string prompt = "Once upon a time, a girl went to the church. She";
  GenerateResult g = generate(model, std::string_view(prompt), o);
  ASSERT_FALSE(g.generated_ids.empty());
  Exchange x;
  x.model = &model;
  x.prompt = prompt;
  x.prompt_ids = g.prompt_ids;
  x.answer_ids = g.generated_ids;
  x.answer = g.text;
  x.token_stats = g.token_stats;
  const std::vector<std::string> expected =
      audit::swapped_texts(prompt, audit::builtin_swap_lexicon("religion"));
  ASSERT_GE(expected.size(), 2u) << "the religion list should have several groups";
  Supervisor sup(policy_of(
      "checks:\n  - type: counterfactual\n    threshold: 0\n    max_swaps: 64\n"
      "    attributes: [religion]\n"));
  Review r = sup.review(x);
  ASSERT_EQ(r.checks[0].outcome, "fail") << r.to_json();
  const auto& swaps = r.checks[0].measures["swaps"];
  ASSERT_EQ(swaps.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(swaps[i]["prompt"], expected[i]);
  for (const auto& s : swaps) EXPECT_EQ(s["prompt"].get<std::string>().find("church"), std::string::npos);

  // The default (gendered) list would have swapped "girl" and "She"; the religion list keeps them.
  EXPECT_NE(swaps[0]["prompt"].get<std::string>().find("girl"), std::string::npos);

  EXPECT_THROW(Supervisor(policy_of("checks:\n  - type: counterfactual\n    attributes: [relgion]\n")),
               Error);
}

}  // namespace
}  // namespace candor::supervise
