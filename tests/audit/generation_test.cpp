// Generation audits without a model: answer confidence, self-consistency clusters, valence
// lexicons, probe templates, and the group gap with its bootstrap interval and permutation test.
#include <cmath>
#include <fstream>

#include "candor/audit.h"
#include "test_util.h"

namespace candor::audit {
namespace {

using ::testing::HasSubstr;

TEST(GenerationUncertainty, AnswerConfidenceEqualsHandValues) {
  AnswerConfidence a = answer_confidence({-0.5f, -2.0f, -0.25f});
  EXPECT_EQ(a.n_tokens, 3);
  EXPECT_NEAR(a.mean_logprob, -2.75 / 3, 1e-7);
  EXPECT_NEAR(a.min_logprob, -2.0, 1e-7);
  EXPECT_EQ(a.min_at, 1);
  EXPECT_NEAR(a.to_json()["perplexity"].get<double>(), std::exp(2.75 / 3), 1e-6);
  EXPECT_EQ(answer_confidence({}).n_tokens, 0);
}

TEST(GenerationUncertainty, SelfConsistencyClustersNormalisedAnswers) {
  EXPECT_EQ(normalise_answer("  The  Paris!\nmore lines"), "the paris");
  SelfConsistency s = self_consistency({"Paris.", " paris", "London", "PARIS!\nand so on"});
  ASSERT_EQ(s.clusters.size(), 2u);
  EXPECT_EQ(s.clusters[0], std::make_pair(std::string("paris"), int64_t{3}));
  EXPECT_DOUBLE_EQ(s.agreement, 0.75);
  const double h = -(0.75 * std::log(0.75) + 0.25 * std::log(0.25));
  EXPECT_NEAR(s.entropy, h, 1e-12);
  EXPECT_NEAR(s.normalised_entropy, h / std::log(4.0), 1e-12);
  SelfConsistency same = self_consistency({"a", "A", "a."});
  EXPECT_EQ(same.agreement, 1.0);
  EXPECT_EQ(same.entropy, 0.0);
}

TEST(GenerationProbes, LexiconsAndTemplates) {
  ValenceLexicon b = builtin_valence_lexicon();
  int64_t matched = 0;
  EXPECT_NEAR(b.score("A GOOD and terrible day.", &matched), (2.0 - 3.0) / 2 / 3, 1e-12);
  EXPECT_EQ(matched, 2);
  EXPECT_EQ(b.score("nothing to see"), 0.0);
  const std::string dir = testing::temp_dir();
  std::ofstream(dir + "/vader.txt") << "good\t1.9\t0.9\t[2, 2]\nbad\t-2.5\t0.5\t[-3, -2]\n";
  ValenceLexicon v = load_valence_lexicon(dir + "/vader.txt");
  EXPECT_NEAR(v.score("good"), 1.9 / 2.5, 1e-12);
  std::ofstream(dir + "/afinn.csv") << "word,value\nnice,3\nugly,-3\n";
  EXPECT_NEAR(load_valence_lexicon(dir + "/afinn.csv").score("nice ugly nice"), 1.0 / 3, 1e-12);
  std::ofstream(dir + "/broken.csv") << "nice,3\nugly,very\n";
  EXPECT_THAT(testing::error_of([&] { load_valence_lexicon(dir + "/broken.csv"); }), HasSubstr("line 2"));

  EXPECT_EQ(fill_group("The {group} met the {group}.", "nurse"), "The nurse met the nurse.");
  EXPECT_THAT(testing::error_of([] { fill_group("The person worked as a", "nurse"); }), HasSubstr("no {group}"));
  std::ofstream(dir + "/t.txt") << "# probes\nThe {group} was\nA person worked as a\n";
  std::ofstream(dir + "/g.csv") << "women,woman,lady\nmen,man\n";
  EXPECT_THAT(testing::error_of([&] { load_generation_probes(dir + "/t.txt", ""); }),
              HasSubstr("t.txt line 3: template 'A person worked as a' has no {group}"));
  std::ofstream(dir + "/t2.txt") << "The {group} was\n";
  GenerationProbeSet p = load_generation_probes(dir + "/t2.txt", dir + "/g.csv");
  EXPECT_EQ(p.templates.size(), 1u);
  ASSERT_EQ(p.groups.size(), 2u);
  EXPECT_EQ(p.groups[0].second, (std::vector<std::string>{"woman", "lady"}));
  EXPECT_GE(builtin_generation_probes().groups.size(), 2u);
}

std::vector<GenerationSample> two_groups(double a, double b, int n) {
  std::vector<GenerationSample> s;
  for (int i = 0; i < n; ++i) {
    s.push_back({"a", "p", "c", a + 0.01 * (i % 3), 1});
    s.push_back({"b", "p", "c", b + 0.01 * (i % 3), 1});
  }
  return s;
}

TEST(GenerationBias, GapIntervalAndPermutationTest) {
  GenerationBiasOptions o;
  o.n_boot = 500;
  o.n_permutations = 999;
  GenerationBiasResult r = audit_generation_bias(two_groups(0.5, -0.5, 30), o);
  ASSERT_EQ(r.groups.size(), 2u);
  EXPECT_NEAR(r.gap, 1.0, 1e-12);
  EXPECT_EQ(r.gap_between[0], "a");
  EXPECT_EQ(r.gap_between[1], "b");
  EXPECT_NEAR(r.groups[0].mean, 0.5 + 0.01, 1e-12);
  EXPECT_LE(r.gap_ci[0], 1.0);
  EXPECT_GE(r.gap_ci[1], 1.0);
  // Fully separated groups: no shuffle reaches the observed gap, p = 1 / (999 + 1).
  EXPECT_NEAR(r.p_value, 1.0 / 1000, 1e-12);
  // Same scores in both groups: every shuffle reaches the gap 0.
  GenerationBiasResult same = audit_generation_bias(two_groups(0.2, 0.2, 30), o);
  EXPECT_NEAR(same.gap, 0.0, 1e-12);
  EXPECT_GT(same.p_value, 0.5);
  // Seeded.
  EXPECT_EQ(audit_generation_bias(two_groups(0.5, -0.5, 30), o).gap_ci, r.gap_ci);
  EXPECT_THAT(testing::error_of([] { audit_generation_bias({{"a", "p", "c", 0, 0}}); }), HasSubstr("two groups"));
}

}  // namespace
}  // namespace candor::audit
