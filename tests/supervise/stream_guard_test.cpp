// Guarded streaming (StreamGuard): which policies stream live, windowed or buffered, and that the
// text a guard releases, however the answer is cut into pieces, is exactly what the review gives
// the whole answer (the answer, or the redacted answer), and that a blocking match is never
// released, including a term split across pieces.
#include <gtest/gtest.h>

#include <random>

#include "candor/supervise.h"

namespace candor::supervise {
namespace {

Policy policy_of(const std::string& yaml) { return parse_policy(yaml, "stream.yaml"); }

// Feeds `answer` to a guard in pieces cut at `cuts` (byte offsets) and returns what it released.
std::string stream(StreamGuard& g, const std::string& answer, std::vector<size_t> cuts) {
  std::sort(cuts.begin(), cuts.end());
  std::string out;
  size_t at = 0;
  for (size_t c : cuts) {
    if (c <= at || c >= answer.size()) continue;
    out += g.push(answer.substr(at, c - at));
    at = c;
    if (g.blocked()) return out;
  }
  out += g.push(answer.substr(at));
  if (!g.blocked()) out += g.finish();
  return out;
}

std::vector<size_t> random_cuts(std::mt19937& rng, size_t n) {
  std::vector<size_t> cuts;
  if (n < 2) return cuts;
  std::uniform_int_distribution<size_t> count(0, std::min<size_t>(n, 40));
  std::uniform_int_distribution<size_t> at(1, n - 1);
  for (size_t k = count(rng); k > 0; --k) cuts.push_back(at(rng));
  return cuts;
}

TEST(StreamPlan, LiveWindowedOrBufferedByTheChecksThatCanRewriteTheAnswer) {
  EXPECT_EQ(plan_stream(policy_of("")).mode, StreamMode::kLive);
  // Flag and allow never withhold text; async checks come after the answer anyway.
  EXPECT_EQ(plan_stream(policy_of("checks:\n"
                                  "  - {type: uncertainty, max_entropy: 1, on_fail: flag}\n"
                                  "  - {type: blocked_terms, terms: [x], on_fail: allow}\n"
                                  "  - {type: length, max_tokens: 3, on_fail: block, async: true}\n"))
                .mode,
            StreamMode::kLive);
  StreamPlan w = plan_stream(policy_of(
      "checks:\n"
      "  - {name: a, type: blocked_terms, terms: [password, 'credit card'], on_fail: block}\n"
      "  - {name: b, type: blocked_terms, patterns: ['\\d{3}-\\d{4}'], max_match: 8, "
      "on_fail: redact}\n"));
  EXPECT_EQ(w.mode, StreamMode::kWindowed);
  EXPECT_EQ(w.window, 11u);  // 'credit card'; max_match + 1 = 9
  ASSERT_EQ(w.reasons.size(), 2u);
  EXPECT_EQ(w.to_json()["window_bytes"], 11);
  // A pattern without max_match, a whole-answer check that can block, a regenerate action.
  for (const char* yaml :
       {"checks:\n  - {type: blocked_terms, patterns: ['a+'], on_fail: block}\n",
        "checks:\n  - {type: uncertainty, max_entropy: 1, on_fail: block}\n",
        "checks:\n  - {type: length, max_tokens: 3, on_fail: redact}\n",
        "checks:\n  - {type: blocked_terms, terms: [x], on_fail: regenerate}\n"}) {
    StreamPlan b = plan_stream(policy_of(yaml));
    EXPECT_EQ(b.mode, StreamMode::kBuffered) << yaml;
    EXPECT_EQ(b.window, 0u);
    ASSERT_EQ(b.reasons.size(), 1u);
    EXPECT_NE(b.reasons[0].find("held until the checks decide"), std::string::npos);
  }
}

TEST(StreamGuard, ATermSplitAcrossPiecesIsNeverReleased) {
  Policy p = policy_of("checks:\n  - {name: secrets, type: blocked_terms, terms: [password], "
                       "on_fail: block}\n");
  StreamGuard g(p);
  std::string out;
  for (const char* piece : {"Your ", "pass", "wo", "rd is ", "hunter2."}) {
    out += g.push(piece);
    if (g.blocked()) break;
  }
  EXPECT_TRUE(g.blocked());
  EXPECT_NE(g.block_reason().find("secrets"), std::string::npos) << g.block_reason();
  EXPECT_EQ(out.find("pass"), std::string::npos) << out;
  EXPECT_EQ(out, g.released());
  EXPECT_EQ(g.push("more"), "");
  EXPECT_EQ(g.finish(), "");
  // A longer word is not the term: "passwords" passes, and is released whole at the end.
  StreamGuard h(p);
  EXPECT_EQ(stream(h, "no passwords here", {3, 7, 11, 12}), "no passwords here");
  EXPECT_FALSE(h.blocked());
  // The term at the very end is decided at finish().
  StreamGuard e(p);
  EXPECT_EQ(stream(e, "it is the password", {5, 13}), "it is the ");
  EXPECT_TRUE(e.blocked());
}

TEST(StreamGuard, HoldsBackOnlyTheWindow) {
  StreamGuard g(policy_of("checks:\n  - {type: blocked_terms, terms: [abcd], on_fail: block}\n"));
  EXPECT_EQ(g.plan().window, 4u);
  EXPECT_EQ(g.push("0123"), "");
  EXPECT_EQ(g.push("456789"), "012345");
  EXPECT_EQ(g.push("x"), "6");
  EXPECT_EQ(g.finish(), "789x");
  // Never inside a UTF-8 character: "é" is two bytes.
  StreamGuard u(policy_of("checks:\n  - {type: blocked_terms, terms: [ab], on_fail: block}\n"));
  EXPECT_EQ(u.push("x\xc3\xa9y"), "x");
  EXPECT_EQ(u.push("z"), "\xc3\xa9");
}

TEST(StreamGuard, BufferedReleasesNothingButStillStopsOnABlockedTerm) {
  Policy p = policy_of(
      "checks:\n  - {type: uncertainty, max_entropy: 1, on_fail: block}\n"
      "  - {name: t, type: blocked_terms, terms: [stop], on_fail: block}\n");
  StreamGuard g(p);
  EXPECT_EQ(g.plan().mode, StreamMode::kBuffered);
  EXPECT_EQ(g.push("a long answer "), "");
  EXPECT_EQ(g.push("that will stop here"), "");
  EXPECT_TRUE(g.blocked());
}

// The property: released == review's content for every decision but block, whatever the cuts;
// when blocked, what was released is a prefix of the answer that no complete match reaches.
TEST(StreamGuard, WhatIsReleasedIsWhatTheReviewGivesTheWholeAnswer) {
  const std::vector<std::string> policies = {
      "checks:\n  - {name: s, type: blocked_terms, terms: [password, 'credit card', 'é'], "
      "on_fail: redact}\n",
      "checks:\n  - {name: s, type: blocked_terms, patterns: ['\\b\\d{3}-\\d{2}-\\d{4}\\b'], "
      "max_match: 11, on_fail: redact}\n"
      "  - {name: t, type: blocked_terms, terms: [card, 'my credit'], on_fail: redact}\n",
      "checks:\n  - {name: s, type: blocked_terms, terms: [password], on_fail: block}\n"
      "  - {name: r, type: blocked_terms, patterns: ['[0-9]+'], max_match: 4, on_fail: redact}\n"
      "  - {name: f, type: blocked_terms, terms: [card], on_fail: flag}\n",
  };
  const std::vector<std::string> answers = {
      "Your Password is 123-45-6789; passwords and my Credit  card are safe, CREDIT CARD not.",
      "Nothing to see: passwordless login, café, 12 34 5678 9.",
      "my credit card 999-88-7777 and password",
      "password",
      "",
      "card card card 1 22 333 4444",
  };
  std::mt19937 rng(7);
  int checked = 0, blocked = 0, redacted = 0;
  for (const auto& yaml : policies) {
    Policy p = policy_of(yaml);
    Supervisor sup(p);
    for (const auto& answer : answers) {
      Exchange x;
      x.answer = answer;
      Review r = sup.review(x);
      for (int trial = 0; trial < 60; ++trial) {
        StreamGuard g(p);
        std::vector<size_t> cuts = trial == 0 ? std::vector<size_t>{} : random_cuts(rng, answer.size());
        if (trial == 1)  // one byte at a time
          for (size_t i = 1; i < answer.size(); ++i) cuts.push_back(i);
        const std::string out = stream(g, answer, cuts);
        EXPECT_EQ(out, g.released());
        ++checked;
        if (r.decision == "block") {
          ++blocked;
          ASSERT_TRUE(g.blocked()) << yaml << answer;
          EXPECT_EQ(out.find("password"), std::string::npos) << out;
          EXPECT_EQ(out.find("Password"), std::string::npos) << out;
        } else {
          ASSERT_FALSE(g.blocked()) << yaml << answer;
          const std::string want = r.redact ? r.redacted_answer : answer;
          redacted += r.redact ? 1 : 0;
          ASSERT_EQ(out, want) << "policy\n" << yaml << "answer: " << answer << "\ntrial " << trial;
        }
      }
    }
  }
  EXPECT_GT(blocked, 0);
  EXPECT_GT(redacted, 0);
  EXPECT_EQ(checked, 3 * 6 * 60);
}

// Several redacting checks mask the union of their matches in the original answer.
TEST(StreamGuard, RedactionIsTheUnionOfEveryRedactingChecksMatches) {
  Supervisor sup(policy_of(
      "checks:\n  - {name: a, type: blocked_terms, terms: ['my credit'], on_fail: redact}\n"
      "  - {name: b, type: blocked_terms, terms: ['credit card', redacted], on_fail: redact}\n"));
  Exchange x;
  x.answer = "take my credit card, redacted";
  Review r = sup.review(x);
  EXPECT_EQ(r.redacted_answer, "take [redacted], [redacted]");
}

}  // namespace
}  // namespace candor::supervise
