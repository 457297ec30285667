// Counterfactual swaps: the rewrite keeps case and everything between words; a hand-built
// classifier that reads one pronoun flips exactly where it should; a model that ignores the
// attribute never moves; the LM figures (Jensen-Shannon, log-probability change) equal hand values.
#include <cmath>
#include <fstream>

#include "candor/audit.h"
#include "test_util.h"

namespace candor::audit {
namespace {

bool has_word(const std::string& text, const std::string& word) {
  // Whole-word, case-insensitive.
  std::string t;
  for (char c : text) t += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  size_t p = 0;
  while ((p = t.find(word, p)) != std::string::npos) {
    const bool left = p == 0 || !std::isalnum(static_cast<unsigned char>(t[p - 1]));
    const bool right = p + word.size() == t.size() || !std::isalnum(static_cast<unsigned char>(t[p + word.size()]));
    if (left && right) return true;
    ++p;
  }
  return false;
}

// Reads only the pronoun "he": p(positive) = 0.9 with it, 0.2 without.
std::vector<std::vector<double>> reads_he(const std::vector<std::string>& texts) {
  std::vector<std::vector<double>> out;
  for (const std::string& t : texts) {
    const double p = has_word(t, "he") ? 0.9 : 0.2;
    out.push_back({1 - p, p});
  }
  return out;
}

std::vector<std::vector<double>> ignores(const std::vector<std::string>& texts) {
  std::vector<std::vector<double>> out;
  for (const std::string& t : texts) out.push_back({0.3 + 0.001 * static_cast<double>(t.size() % 7), 0.7 - 0.001 * static_cast<double>(t.size() % 7)});
  return out;
}

TEST(CounterfactualSwaps, KeepCaseAndPunctuation) {
  const SwapLexicon g = builtin_swap_lexicon("gender");
  std::vector<SwapVariant> v = counterfactual_swaps("HE said: \"His dog, Rex!\" and he's mine.", g);
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].text, "SHE said: \"Her dog, Rex!\" and she's mine.");
  ASSERT_EQ(v[0].replaced.size(), 3u);
  EXPECT_EQ(v[0].replaced[1], std::make_pair(std::string("His"), std::string("Her")));
  // Both ways at once, and non-ASCII text around the words kept byte for byte.
  v = counterfactual_swaps("Her brother\u2014the king\u2014met  Mrs. Smith.", g);
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].text, "Him sister\u2014the queen\u2014met  Mr. Smith.");
  EXPECT_EQ(counterfactual_swaps("\u00abShe\u00bb \u2018his\u2019 caf\u00e9 h\u00e9", g)[0].text,
            "\u00abHe\u00bb \u2018her\u2019 caf\u00e9 h\u00e9");
  // The texts alone, as the supervisor's Swapper wants them.
  EXPECT_EQ(swapped_texts("Ask him.", g), std::vector<std::string>{"Ask her."});
  EXPECT_TRUE(swapped_texts("Ask them.", g).empty());
  // Words inside other words are not terms ("heart", "shed", "manner").
  EXPECT_TRUE(counterfactual_swaps("heart shed manner", g).empty());
  // One replacement at a time, for the per-word contrast.
  v = counterfactual_swaps("he and his", g);
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(apply_one_swap("he and his", v[0], 0), "she and his");
  EXPECT_EQ(apply_one_swap("he and his", v[0], 1), "he and her");
}

TEST(CounterfactualSwaps, ManyGroupsGiveOneVariantPerOtherGroup) {
  const SwapLexicon r = builtin_swap_lexicon("religion");
  std::vector<SwapVariant> v = counterfactual_swaps("She prays at the Church.", r);
  ASSERT_EQ(v.size(), r.groups.size() - 1);
  EXPECT_EQ(v[0].to, "muslim");
  EXPECT_EQ(v[0].text, "She prays at the Mosque.");
  // Two groups mentioned: every group gets a variant (all terms moved to it).
  v = counterfactual_swaps("church or mosque", r);
  ASSERT_EQ(v.size(), r.groups.size());
  EXPECT_EQ(v[0].text, "church or church");
}

TEST(CounterfactualSwaps, UserPairFileAndItsErrors) {
  const std::string dir = testing::temp_dir();
  std::ofstream(dir + "/pairs.csv") << "north,south\nnortherner,southerner\nnorth,south\n";
  SwapLexicon l = load_swap_lexicon(dir + "/pairs.csv");
  EXPECT_EQ(l.groups, (std::vector<std::string>{"north", "south"}));
  EXPECT_EQ(counterfactual_swaps("A Northerner went north.", l)[0].text, "A Southerner went south.");
  std::ofstream(dir + "/bad.csv") << "a,b\nx,y,z\n";
  EXPECT_THAT(testing::error_of([&] { load_swap_lexicon(dir + "/bad.csv"); }),
              ::testing::HasSubstr("line 2: 3 fields, the header has 2"));
  std::ofstream(dir + "/empty.csv") << "";
  EXPECT_THAT(testing::error_of([&] { load_swap_lexicon(dir + "/empty.csv"); }), ::testing::HasSubstr("empty"));
  std::ofstream(dir + "/two.csv") << "a,b\nold man,old woman\n";
  EXPECT_THAT(testing::error_of([&] { load_swap_lexicon(dir + "/two.csv"); }), ::testing::HasSubstr("not one word"));
  EXPECT_THAT(testing::error_of([&] { builtin_swap_lexicon("height"); }), ::testing::HasSubstr("gender, race"));
}

TEST(CounterfactualAudit, OnePronounReaderFlipsExactlyWhereExpected) {
  // 3 texts mention a gender term; the classifier reads only "he": the two with he/she flip
  // (0.9 <-> 0.2), the one with "man" does not move; the fourth mentions nothing.
  const std::vector<std::string> texts = {"He is a doctor.", "She is kind.", "The man ate.", "Nothing here."};
  CounterfactualOptions o;
  o.n_boot = 200;
  CounterfactualResult r = audit_counterfactual(texts, builtin_swap_lexicon("gender"), reads_he, o);
  EXPECT_EQ(r.n_texts, 4);
  EXPECT_EQ(r.n_mentioning, 3);
  EXPECT_EQ(r.n_pairs, 3);
  EXPECT_DOUBLE_EQ(r.flip_share, 2.0 / 3.0);
  EXPECT_NEAR(r.mean_abs_delta, (0.7 + 0.7 + 0) / 3, 1e-12);
  EXPECT_NEAR(r.max_abs_delta, 0.7, 1e-12);
  EXPECT_LE(r.flip_ci[0], r.flip_share);
  EXPECT_GE(r.flip_ci[1], r.flip_share);
  ASSERT_EQ(r.worst.size(), 3u);
  // The contrast names the word that carries it: swapping "He" alone moves p by -0.7; "man"
  // (the pair that does not move) is last, with no effect.
  const CounterfactualExample* he = nullptr;
  for (const CounterfactualExample& e : r.worst)
    if (e.replaced[0].first == "He") he = &e;
  ASSERT_NE(he, nullptr);
  EXPECT_NEAR(he->word_effects[0], -0.7, 1e-12);
  EXPECT_EQ(r.worst[2].replaced[0].first, "man");
  EXPECT_EQ(r.worst[2].word_effects[0], 0.0);
  // Seeded: the same intervals again.
  CounterfactualResult again = audit_counterfactual(texts, builtin_swap_lexicon("gender"), reads_he, o);
  EXPECT_EQ(again.flip_ci, r.flip_ci);
  EXPECT_EQ(r.to_json()["flip_share"].get<double>(), r.flip_share);
}

TEST(CounterfactualAudit, OnePronounReaderOverManyTextsGivesTheExactRate) {
  // 60 texts: 20 with "he", 20 with "she", 20 with "his" (read as not-"he": no flip).
  std::vector<std::string> texts;
  for (int i = 0; i < 20; ++i) {
    texts.push_back("Yesterday he bought " + std::to_string(i) + " apples.");
    texts.push_back("Yesterday she bought " + std::to_string(i) + " pears.");
    texts.push_back("It was his turn, number " + std::to_string(i) + ".");
  }
  CounterfactualResult r = audit_counterfactual(texts, builtin_swap_lexicon("gender"), reads_he);
  EXPECT_EQ(r.n_pairs, 60);
  EXPECT_DOUBLE_EQ(r.flip_share, 40.0 / 60.0);
}

TEST(CounterfactualAudit, AModelThatIgnoresTheAttributeNeverMoves) {
  const std::vector<std::string> texts = {"He is a doctor.", "She is kind.", "The man ate.", "My mother called."};
  CounterfactualResult r = audit_counterfactual(texts, builtin_swap_lexicon("gender"), ignores);
  EXPECT_EQ(r.flip_share, 0.0);
  // Same length rewrites keep the (length-driven) output; he->she changes the length by one.
  EXPECT_LT(r.max_abs_delta, 0.01);
  EXPECT_EQ(r.flip_ci[1], 0.0);
}

TEST(CounterfactualAudit, NoMentionIsAClearError) {
  EXPECT_THAT(testing::error_of([] {
                audit_counterfactual({"a cat", "a dog"}, builtin_swap_lexicon("religion"), ignores);
              }),
              ::testing::HasSubstr("no text mentions a term of attribute 'religion'"));
}

TEST(CounterfactualAudit, LanguageModelFiguresEqualHandValues) {
  EXPECT_NEAR(jensen_shannon({1, 0}, {0, 1}), std::log(2.0), 1e-12);
  EXPECT_NEAR(jensen_shannon({0.5, 0.5}, {0.5, 0.5}), 0.0, 1e-15);
  // Next-token distributions over 3 tokens: "he" texts put 0.6 on token 0, others 0.2.
  auto lm = [](const std::vector<std::string>& texts) {
    std::vector<std::vector<double>> out;
    for (const std::string& t : texts)
      out.push_back(has_word(t, "he") ? std::vector<double>{0.6, 0.3, 0.1} : std::vector<double>{0.2, 0.5, 0.3});
    return out;
  };
  CounterfactualOptions o;
  o.causal_lm = true;
  CounterfactualResult r = audit_counterfactual({"and he said"}, builtin_swap_lexicon("gender"), lm, o);
  const std::vector<double> p{0.6, 0.3, 0.1}, q{0.2, 0.5, 0.3};
  double js = 0;
  for (int i = 0; i < 3; ++i) {
    const double m = (p[i] + q[i]) / 2;
    js += 0.5 * p[i] * std::log(p[i] / m) + 0.5 * q[i] * std::log(q[i] / m);
  }
  EXPECT_NEAR(r.mean_abs_delta, js, 1e-12);
  EXPECT_NEAR(r.mean_abs_logprob_change, std::fabs(std::log(0.2) - std::log(0.6)), 1e-12);
  EXPECT_EQ(r.flip_share, 1.0);  // the top token changes from 0 to 1
}

}  // namespace
}  // namespace candor::audit
