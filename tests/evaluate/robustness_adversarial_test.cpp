// Robustness, sanity checks, decoys, attacks and consensus on hand-built models, where each
// figure follows from a dot product the test computes itself.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>

#include "candor/error.h"
#include "candor/evaluate.h"
#include "candor/explain.h"
#include "test_util.h"
#include "toy_models.h"

namespace candor {
namespace {

using testing::ToyModel;

constexpr TokenId kTarget = 10;
const std::vector<TokenId> kIds = {1, 5, 9, 12, 7, 20, 3, 15};

ExplainRequest logit_request() {
  ExplainRequest r;
  r.input_ids = kIds;
  r.target.function = TargetFunction::kLogit;
  r.target.token = kTarget;
  return r;
}

double l2(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

// Scores from token ids or positions only: explanations an attack can or cannot move.
class FixedExplainer : public Explainer {
 public:
  explicit FixedExplainer(bool by_token) : by_token_(by_token) {}
  std::string name() const override { return by_token_ ? "by_token" : "by_position"; }
  std::map<std::string, std::string> options() const override { return {}; }
  Attribution explain(const Model& m, const ExplainRequest& r,
                      const ExplainContext& = {}) const override {
    Attribution a = make_explainer("leave_one_out")->explain(m, r);
    for (int64_t f = 0; f < a.n_features(); ++f)
      a.scores[f] = by_token_ ? r.input_ids[a.features[f].begin] : -static_cast<double>(f);
    a.method = name();
    return a;
  }

 private:
  bool by_token_;
};

TEST(Robustness, TokenSubstitutionMovesOnlyTheSubstitutedScore) {
  ToyModel m(ToyModel::Kind::kBag, 32, 8, 11);
  ExplainRequest r = logit_request();
  auto loo = make_explainer("leave_one_out");
  Attribution a = loo->explain(m, r);
  RobustnessOptions o;
  o.space = PerturbationSpace::kToken;
  o.n_samples = 5;
  o.neighbours = 3;
  Robustness rb = evaluate_robustness(m, r, *loo, a, o);
  ASSERT_EQ(rb.sensitivities.size(), 5u);
  double mx = 0, avg = 0;
  for (size_t s = 0; s < 5; ++s) {
    long long pos = 0;
    int from = 0, to = 0;
    ASSERT_EQ(
        std::sscanf(rb.perturbations[s].c_str(), "pos %lld: ' t%d' -> ' t%d'", &pos, &from, &to), 3)
        << rb.perturbations[s];
    EXPECT_EQ(from, kIds[pos]);
    // The substitute is among the 3 nearest tokens by cosine.
    auto nn = nearest_tokens(m, from, 3);
    EXPECT_NE(std::find(nn.begin(), nn.end(), to), nn.end());
    // Leave-one-out on a linear bag: only that feature's score moves, by u_y . (e_to - e_from).
    double hand = std::fabs(m.dot(kTarget, to) - m.dot(kTarget, from)) / l2(a.total());
    EXPECT_NEAR(rb.sensitivities[s], hand, 1e-4);
    mx = std::max(mx, hand);
    avg += hand / 5;
  }
  EXPECT_NEAR(rb.max_sensitivity, mx, 1e-4);
  EXPECT_NEAR(rb.avg_sensitivity, avg, 1e-4);
  EXPECT_GT(rb.forward_passes, 0);
}

TEST(Robustness, EmbeddingNoiseStaysWithinTheBound) {
  ToyModel m(ToyModel::Kind::kBag, 32, 8, 12);
  ExplainRequest r = logit_request();
  auto ixg = make_explainer("input_x_gradient");
  Attribution a = ixg->explain(m, r);
  RobustnessOptions o;
  o.radius = 0.1;
  o.n_samples = 4;
  Robustness rb = evaluate_robustness(m, r, *ixg, a, o);
  // input x gradient = u_y . (x_i + n_i): each score moves by u_y . n_i, |n_i|inf <= 0.1 std(E).
  const double bound = 0.1 * m.E().std().item<double>() * m.U()[kTarget].abs().sum().item<double>();
  const double n7 = std::sqrt(7.0);
  for (double s : rb.sensitivities) {
    EXPECT_GT(s, 0);
    EXPECT_LE(s * l2(a.total()), bound * n7 + 1e-5);
  }
  // The noisy model adds the noise to length-T sequences only.
  at::Tensor noise = at::ones({8, 8});
  auto noisy = with_embedding_noise(m, noise);
  at::Tensor ids = at::tensor(std::vector<int64_t>(kIds.begin(), kIds.end())).view({1, 8});
  EXPECT_TRUE(at::allclose(noisy->embed(ids), m.embed(ids) + 1));
  EXPECT_TRUE(at::equal(noisy->embed(ids.narrow(1, 0, 3)), m.embed(ids.narrow(1, 0, 3))));
}

TEST(Robustness, NearestTokensAreByCosine) {
  ToyModel m(ToyModel::Kind::kBag, 32, 8, 13);
  auto nn = nearest_tokens(m, 9, 4);
  ASSERT_EQ(nn.size(), 4u);
  at::Tensor E = m.E() / m.E().norm(2, 1, true);
  at::Tensor sim = at::matmul(E, E[9]);
  double prev = 2;
  for (TokenId t : nn) {
    EXPECT_GT(t, 2);  // never unk/BOS/EOS
    EXPECT_NE(t, 9);
    double s = sim[t].item<double>();
    EXPECT_LE(s, prev + 1e-6);
    prev = s;
  }
  for (int64_t t = 3; t < 32; ++t)
    if (t != 9 && std::find(nn.begin(), nn.end(), t) == nn.end())
      EXPECT_LE(sim[t].item<double>(), prev + 1e-6) << t;
}

TEST(Sanity, RandomLogitAndRandomisationOnTheLinearModel) {
  ToyModel m(ToyModel::Kind::kBag, 32, 8, 14);
  ExplainRequest r = logit_request();
  auto loo = make_explainer("leave_one_out");
  Attribution a = loo->explain(m, r);
  RandomLogit rl = random_logit_test(m, r, *loo, a);
  EXPECT_NE(rl.random_token, kTarget);
  EXPECT_GT(rl.random_token, 2);
  // The other token's scores are u_t . (e_i - e_unk).
  std::vector<double> other;
  for (size_t i = 1; i < kIds.size(); ++i)
    other.push_back(m.dot(rl.random_token, kIds[i]) - m.dot(rl.random_token, 0));
  EXPECT_NEAR(rl.spearman, spearman(a.total(), other), 1e-9);

  at::Tensor E0 = m.E().clone(), U0 = m.U().clone();
  auto steps = randomisation_test(m, r, *loo, a);
  ASSERT_EQ(steps.size(), 2u);  // output (U), then embeddings (E)
  EXPECT_EQ(steps[0].randomised, "output");
  EXPECT_EQ(steps[1].randomised, "embeddings");
  for (const auto& s : steps) EXPECT_LT(s.spearman, 0.999);
  // Parameters are restored exactly.
  EXPECT_TRUE(at::equal(m.E(), E0));
  EXPECT_TRUE(at::equal(m.U(), U0));
  // A model that ignores the randomised part keeps the explanation: a constant explainer gives
  // correlation 1 at every step.
  FixedExplainer pos(false);
  Attribution ap = pos.explain(m, r);
  for (const auto& s : randomisation_test(m, r, pos, ap)) EXPECT_NEAR(s.spearman, 1.0, 1e-12);
}

TEST(Decoys, ShapesAndHandValues) {
  ToyModel m(ToyModel::Kind::kBag, 32, 8, 15);
  ExplainRequest r = logit_request();
  auto loo = make_explainer("leave_one_out");
  Attribution a = loo->explain(m, r);
  std::string dir = testing::temp_dir();
  std::ofstream(dir + "/afinn.csv") << "word,valence\nt9,-3\nt20,2\n";
  Lexicon lex = load_lexicon(dir + "/afinn.csv");
  DecoyOptions o;
  o.lexicon = &lex;
  o.other_target = loo.get();
  auto decoys = make_decoys(m, r, a, o);
  ASSERT_EQ(decoys.size(), 6u);
  const std::vector<double> phi = a.total();
  EXPECT_EQ(decoys[0].method, "random");
  EXPECT_EQ(decoys[1].total(),
            (std::vector<double>{-phi[0], -phi[1], -phi[2], -phi[3], -phi[4], -phi[5], -phi[6]}));
  EXPECT_EQ(decoys[2].total(), (std::vector<double>{7, 6, 5, 4, 3, 2, 1}));
  EXPECT_EQ(decoys[3].total(), (std::vector<double>{1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(decoys[4].method, "other_target");
  EXPECT_EQ(decoys[5].total(), (std::vector<double>{0, 3, 0, 0, 2, 0, 0}));
  // The exact contributions beat the inverted decoy on comprehensiveness.
  double real = evaluate_faithfulness(m, r, a).comprehensiveness_aopc;
  double inv = evaluate_faithfulness(m, r, decoys[1]).comprehensiveness_aopc;
  EXPECT_GT(real, inv);

  std::ofstream(dir + "/v.txt") << "good\t1.9\t0.3\t[1]\nbad\t-2.5\t0.5\t[1]\n";
  Lexicon vader = load_lexicon(dir + "/v.txt");
  EXPECT_DOUBLE_EQ(vader.valence.at("bad"), -2.5);
  std::ofstream(dir + "/b.csv") << "\"word\",\"sentiment\"\n\"nice\",\"positive\"\n";
  EXPECT_DOUBLE_EQ(load_lexicon(dir + "/b.csv").valence.at("nice"), 1.0);
  std::ofstream(dir + "/bad.csv") << "word,valence\nfoo,xyz\n";
  EXPECT_THROW(load_lexicon(dir + "/bad.csv"), Error);
  EXPECT_THROW(load_lexicon(dir + "/missing.csv"), Error);
}

// For a span target the other_target decoy explains a span of random other tokens of the same
// length: same features, different scores, reproducible from the seed.
TEST(Decoys, OtherTargetOfASpan) {
  ToyModel m(ToyModel::Kind::kBag, 32, 8, 15);
  ExplainRequest r = logit_request();
  r.target.span = {10, 4, 22};
  auto loo = make_explainer("leave_one_out");
  Attribution a = loo->explain(m, r);
  ASSERT_EQ(a.n_steps(), 3);
  DecoyOptions o;
  o.other_target = loo.get();
  auto decoys = make_decoys(m, r, a, o);
  ASSERT_EQ(decoys.size(), 5u);
  EXPECT_EQ(decoys[4].method, "other_target");
  EXPECT_EQ(decoys[4].n_features(), a.n_features());
  EXPECT_NE(decoys[4].total(), a.total());
  EXPECT_EQ(make_decoys(m, r, a, o)[4].total(), decoys[4].total());
  o.seed = 1;
  EXPECT_NE(make_decoys(m, r, a, o)[4].total(), decoys[4].total());
  // It can be graded with the span's attributions from one bank.
  std::vector<Attribution> all = {a, decoys[4]};
  EXPECT_EQ(evaluate_faithfulness(m, r, all).size(), 2u);
}

TEST(Decoys, RankingCountsWins) {
  std::vector<std::map<std::string, double>> v = {
      {{"ig", 3}, {"occ", 2}, {"random", 1}, {"last", 2.5}},
      {{"ig", 1}, {"occ", 2}, {"random", 0}, {"last", 1.5}},
  };
  DecoyRanking r = rank_against_decoys(v, {"ig", "occ"}, {"random", "last"});
  EXPECT_DOUBLE_EQ(r.win_rate[0][0], 1.0);
  EXPECT_DOUBLE_EQ(r.win_rate[0][1], 0.5);
  EXPECT_DOUBLE_EQ(r.win_rate[1][1], 0.5);
  EXPECT_DOUBLE_EQ(r.caught_rate[0], 1.0);
  EXPECT_DOUBLE_EQ(r.caught_rate[1], 0.0);
}

TEST(Attacks, MoveTokenExplanationsButNotPositionOnes) {
  ToyModel m(ToyModel::Kind::kBag, 32, 8, 16);
  ExplainRequest r = logit_request();
  AttackOptions o;
  o.max_prob_change = 1.0;  // any substitution that keeps the top token
  o.top_k = 2;
  o.n_candidates = 8;
  o.n_rounds = 3;
  FixedExplainer by_pos(false), by_tok(true);
  AttackResult fixed = attack_explainer(m, r, by_pos, by_pos.explain(m, r), o);
  EXPECT_FALSE(fixed.success);
  EXPECT_DOUBLE_EQ(fixed.topk_intersection, 1.0);
  EXPECT_TRUE(fixed.changes.empty());
  AttackResult moved = attack_explainer(m, r, by_tok, by_tok.explain(m, r), o);
  EXPECT_LE(moved.candidates_valid, moved.candidates_tried);
  EXPECT_GT(moved.candidates_valid, 0);
  EXPECT_LT(moved.topk_intersection, 1.0);
  EXPECT_FALSE(moved.changes.empty());
  EXPECT_EQ(moved.success, moved.topk_intersection < 0.5);
  // A bound of zero probability change rejects every substitution that changes the output.
  o.max_prob_change = 0.0;
  o.space = PerturbationSpace::kEmbedding;
  AttackResult none = attack_explainer(m, r, by_tok, by_tok.explain(m, r), o);
  EXPECT_EQ(none.candidates_valid, 0);
  EXPECT_FALSE(none.success);
}

TEST(Consensus, WeightsByAgreement) {
  ToyModel m(ToyModel::Kind::kBag, 32, 8, 17);
  ExplainRequest r = logit_request();
  Attribution base = make_explainer("leave_one_out")->explain(m, r);
  auto with = [&](const std::string& name, std::vector<double> s) {
    Attribution a = base;
    a.method = name;
    a.scores = s;
    return a;
  };
  // Spearman: a-b 0.964 (one swap of 7), a-c -> hand below via spearman().
  std::vector<double> sa = {1, 2, 3, 4, 5, 6, 7}, sb = {1, 2, 4, 3, 5, 6, 14},
                      sc = {7, 1, 2, 3, 4, 5, 6};
  Attribution c = consensus({with("a", sa), with("b", sb), with("c", sc)});
  double rab = spearman(sa, sb), rac = spearman(sa, sc), rbc = spearman(sb, sc);
  double wa = std::max(0.0, (rab + rac) / 2), wb = std::max(0.0, (rab + rbc) / 2),
         wc = std::max(0.0, (rac + rbc) / 2), ws = wa + wb + wc;
  for (int f = 0; f < 7; ++f) {
    double hand = (wa * sa[f] / 7 + wb * sb[f] / 14 + wc * sc[f] / 7) / ws;
    EXPECT_NEAR(c.scores[f], hand, 1e-12) << f;
  }
  EXPECT_EQ(c.method, "consensus");
  EXPECT_NEAR(c.extra["consensus_weights"]["a"].get<double>(), wa / ws, 1e-12);
  // Its faithfulness is computed like any other attribution's.
  EXPECT_NO_THROW(evaluate_faithfulness(m, r, c));
}

}  // namespace
}  // namespace candor
