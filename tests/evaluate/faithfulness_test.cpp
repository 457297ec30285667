// Faithfulness metrics on hand-built linear models, against values computed by hand.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "candor/error.h"
#include "candor/evaluate.h"
#include "candor/explain.h"
#include "toy_models.h"

namespace candor {
namespace {

using testing::ToyModel;

constexpr TokenId kTarget = 10;
const std::vector<TokenId> kIds = {1, 5, 9, 12, 7, 20, 3, 15};  // BOS + 7 features

ExplainRequest logit_request() {
  ExplainRequest r;
  r.input_ids = kIds;
  r.target.function = TargetFunction::kLogit;
  r.target.token = kTarget;
  return r;
}

// An attribution with the layout of the request and the given per-feature scores.
Attribution with_scores(const Model& m, const ExplainRequest& r, const std::vector<double>& phi) {
  Attribution a = make_explainer("leave_one_out")->explain(m, r);
  a.scores = phi;
  a.method = "hand";
  return a;
}

std::vector<int64_t> order_of(const std::vector<double>& phi) {
  std::vector<int64_t> o(phi.size());
  std::iota(o.begin(), o.end(), 0);
  std::stable_sort(o.begin(), o.end(), [&](int64_t a, int64_t b) { return phi[a] > phi[b]; });
  return o;
}

double trapezoid(const std::vector<double>& v) {  // over k / F, k = 0..F
  const double F = static_cast<double>(v.size() - 1);
  double s = 0;
  for (size_t i = 1; i < v.size(); ++i) s += 0.5 * (v[i] + v[i - 1]) / F;
  return s;
}

// Checks every faithfulness figure of a linear target with per-feature removal effects c
// (f(x) - f(x without i) = c[i], effects additive) against the hand computation.
void expect_linear(const Faithfulness& f, double fx, const std::vector<double>& c,
                   const std::vector<double>& phi) {
  const int64_t F = static_cast<int64_t>(c.size());
  const double tol = 1e-4 * (1 + std::fabs(fx));
  const auto o = order_of(phi);
  auto top_sum = [&](int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += c[o[i]];
    return s;
  };
  const double total = std::accumulate(c.begin(), c.end(), 0.0);
  EXPECT_NEAR(f.full_value, fx, tol);
  EXPECT_NEAR(f.empty_value, fx - total, tol);
  // F = 7: fractions .01 .05 .1 .2 .5 take ceil(q F) = 1, 1, 1, 2, 4 features.
  const std::vector<int64_t> counts = {1, 1, 1, 2, 4};
  ASSERT_EQ(f.counts, counts);
  double comp_aopc = 0, suff_aopc = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    EXPECT_NEAR(f.comprehensiveness[i], top_sum(counts[i]), tol) << i;
    EXPECT_NEAR(f.sufficiency[i], total - top_sum(counts[i]), tol) << i;
    comp_aopc += top_sum(counts[i]) / 5;
    suff_aopc += (total - top_sum(counts[i])) / 5;
  }
  EXPECT_NEAR(f.comprehensiveness_aopc, comp_aopc, tol);
  EXPECT_NEAR(f.sufficiency_aopc, suff_aopc, tol);
  std::vector<double> del, ins;
  for (int64_t k = 0; k <= F; ++k) {
    del.push_back(fx - top_sum(k));
    ins.push_back(fx - total + top_sum(k));
  }
  ASSERT_EQ(f.deletion.value.size(), del.size());
  for (size_t k = 0; k < del.size(); ++k) {
    EXPECT_NEAR(f.deletion.value[k], del[k], tol) << k;
    EXPECT_NEAR(f.insertion.value[k], ins[k], tol) << k;
    EXPECT_DOUBLE_EQ(f.deletion.fraction[k], static_cast<double>(k) / F);
  }
  EXPECT_NEAR(f.deletion.area, trapezoid(del), tol);
  EXPECT_NEAR(f.insertion.area, trapezoid(ins), tol);
  ASSERT_EQ(f.loo.size(), c.size());
  for (int64_t i = 0; i < F; ++i) EXPECT_NEAR(f.loo[i], c[i], tol) << i;
  // Kendall tau-b by hand: (C - D) / sqrt((n0 - n1)(n0 - n2)), n1/n2 pairs tied in phi/c.
  double conc = 0, disc = 0, n0 = 0, n1 = 0, n2 = 0;
  for (int64_t i = 0; i < F; ++i) {
    for (int64_t j = i + 1; j < F; ++j) {
      n0 += 1;
      const double dp = phi[i] - phi[j], dc = std::fabs(c[i] - c[j]) < 1e-9 ? 0 : c[i] - c[j];
      if (dp == 0) n1 += 1;
      if (dc == 0) n2 += 1;
      if (dp * dc > 0) conc += 1;
      if (dp * dc < 0) disc += 1;
    }
  }
  // (Skipped when c has ties: float noise in the measured zeros breaks them at random.)
  if (n2 == 0) EXPECT_NEAR(f.loo_kendall, (conc - disc) / std::sqrt((n0 - n1) * (n0 - n2)), 1e-6);
}

class LinearBag : public ::testing::TestWithParam<Removal> {};

TEST_P(LinearBag, EveryMetricMatchesTheHandComputation) {
  const Removal removal = GetParam();
  ToyModel m(ToyModel::Kind::kBag, 32, 8, 3);
  ExplainRequest r = logit_request();
  // Removal effect of feature i: u_y . (e_i - e_unk) by replacement, u_y . e_i by deletion.
  std::vector<double> c;
  double fx = 0;
  for (size_t t = 0; t < kIds.size(); ++t) {
    fx += m.dot(kTarget, kIds[t]);
    if (t > 0)
      c.push_back(m.dot(kTarget, kIds[t]) -
                  (removal == Removal::kBaseline ? m.dot(kTarget, 0) : 0.0));
  }
  // Scores in a fixed order unrelated to c: 3, 1, 4, 1.5, 5, 9, 2.
  std::vector<double> phi = {3, 1, 4, 1.5, 5, 9, 2};
  FaithfulnessOptions o;
  o.removal = removal;
  o.batch_size = 3;  // several chunks, each with its own cache prefix
  Faithfulness f = evaluate_faithfulness(m, r, with_scores(m, r, phi), o);
  expect_linear(f, fx, c, phi);
  EXPECT_GT(f.forward_passes, 0);

  // The exact contributions have zero infidelity and a Kendall tau of 1 with leave-one-out.
  Faithfulness exact = evaluate_faithfulness(m, r, with_scores(m, r, c), o);
  EXPECT_NEAR(exact.infidelity, 0, 1e-6 * (1 + fx * fx));
  EXPECT_NEAR(exact.loo_kendall, 1.0, 1e-12);
  // Off by d on one feature: each random mask removes it or not, so infidelity / d^2 is the
  // fraction of masks removing it, strictly between 0 and 1 for 32 fair coins.
  std::vector<double> off = c;
  off[2] += 2.0;
  double inf = evaluate_faithfulness(m, r, with_scores(m, r, off), o).infidelity;
  EXPECT_GT(inf / 4.0, 0.1);
  EXPECT_LT(inf / 4.0, 0.9);
  EXPECT_NEAR(inf / 4.0 * 32, std::round(inf / 4.0 * 32), 1e-3);
}

INSTANTIATE_TEST_SUITE_P(Removals, LinearBag,
                         ::testing::Values(Removal::kBaseline, Removal::kDelete),
                         [](const auto& info) { return std::string(removal_name(info.param)); });

TEST(LinearBag, LeaveOneOutIsTheExactContributionUnderBaselineRemoval) {
  ToyModel m(ToyModel::Kind::kBag, 32, 8, 4);
  ExplainRequest r = logit_request();
  Attribution a = make_explainer("leave_one_out")->explain(m, r);
  for (size_t i = 1; i < kIds.size(); ++i)
    EXPECT_NEAR(a.scores[i - 1], m.dot(kTarget, kIds[i]) - m.dot(kTarget, 0), 1e-4);
}

TEST(OneTokenModel, OnlyTheLastTokenCountsByReplacement) {
  ToyModel m(ToyModel::Kind::kLast, 32, 8, 5);
  ExplainRequest r = logit_request();
  const double fx = m.dot(kTarget, kIds.back());
  const double removed = m.dot(kTarget, 0);  // the unk embedding at the last position
  // Last token ranked second: comprehensiveness is 0 for one feature, the full drop from two.
  std::vector<double> phi = {1, 2, 3, 4, 5, 9, 8};
  FaithfulnessOptions o;
  Faithfulness f = evaluate_faithfulness(m, r, with_scores(m, r, phi), o);
  const double drop = fx - removed;
  std::vector<double> c(7, 0.0);
  c[6] = drop;
  expect_linear(f, fx, c, phi);
}

TEST(OneTokenModel, DeletionExposesThePreviousToken) {
  ToyModel m(ToyModel::Kind::kLast, 32, 8, 6);
  ExplainRequest r = logit_request();
  const double fx = m.dot(kTarget, kIds.back());
  // Features 0..6 are positions 1..7. Top-2 = positions 7 and 5: the last kept is position 6.
  std::vector<double> phi = {1, 2, 3, 4, 8, 0.5, 9};
  FaithfulnessOptions o;
  o.removal = Removal::kDelete;
  Faithfulness f = evaluate_faithfulness(m, r, with_scores(m, r, phi), o);
  EXPECT_NEAR(f.comprehensiveness[0], fx - m.dot(kTarget, kIds[6]), 1e-4);
  EXPECT_NEAR(f.comprehensiveness[3], fx - m.dot(kTarget, kIds[6]), 1e-4);
  // Top-4 = positions 7, 5, 4, 3 removed: the last kept is position 6 again.
  EXPECT_NEAR(f.comprehensiveness[4], fx - m.dot(kTarget, kIds[6]), 1e-4);
  // Keeping only positions 7 and 5 (and BOS): the last token is still 15.
  EXPECT_NEAR(f.sufficiency[3], 0.0, 1e-4);
  // Everything deleted: BOS alone.
  EXPECT_NEAR(f.empty_value, m.dot(kTarget, 1), 1e-4);
  // Deletion curve: k = 1 removes position 7 -> position 6 is last; k = 7 leaves BOS.
  EXPECT_NEAR(f.deletion.value[1], m.dot(kTarget, kIds[6]), 1e-4);
  EXPECT_NEAR(f.deletion.value[7], m.dot(kTarget, 1), 1e-4);
  // Leave-one-out: only the last position matters.
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(f.loo[i], 0.0, 1e-4) << i;
  EXPECT_NEAR(f.loo[6], fx - m.dot(kTarget, kIds[6]), 1e-4);
}

TEST(Faithfulness, CurvePointsSubsampleAndMasksAreShared) {
  ToyModel m(ToyModel::Kind::kBag, 32, 8, 7);
  ExplainRequest r = logit_request();
  std::vector<double> phi = {7, 6, 5, 4, 3, 2, 1};
  FaithfulnessOptions o;
  o.curve_points = 3;  // k = 0, 4 (3.5 rounds to 4), 7
  o.infidelity = false;
  Faithfulness f = evaluate_faithfulness(m, r, with_scores(m, r, phi), o);
  EXPECT_EQ(f.deletion.fraction, (std::vector<double>{0, 4.0 / 7, 1}));
  // Distinct masks: empty; without top 1,2,4 and only top 1,2,4 (comp/suff); curve: full,
  // without top 4 / only top 4 (shared), empty (shared); 7 LOO masks (without top 1 shared).
  EXPECT_EQ(f.masks_scored, 1 + 6 + 1 + 6);
}

TEST(Faithfulness, RejectsAttributionsWithoutScoresOrForAnotherRequest) {
  ToyModel m(ToyModel::Kind::kBag, 32, 8, 8);
  ExplainRequest r = logit_request();
  Attribution a = with_scores(m, r, {1, 2, 3, 4, 5, 6, 7});
  Attribution none = a;
  none.scores.clear();
  EXPECT_THROW(evaluate_faithfulness(m, r, none), Error);
  ExplainRequest other = r;
  other.input_ids.pop_back();
  EXPECT_THROW(evaluate_faithfulness(m, other, a), Error);
  FaithfulnessOptions bad;
  bad.fractions = {0.0};
  EXPECT_THROW(evaluate_faithfulness(m, r, a, bad), Error);
}

TEST(RankStatistics, KnownValues) {
  EXPECT_NEAR(kendall_tau({1, 2, 3, 4}, {1, 2, 3, 4}), 1.0, 1e-12);
  EXPECT_NEAR(kendall_tau({1, 2, 3, 4}, {4, 3, 2, 1}), -1.0, 1e-12);
  // One discordant pair of six: (5 - 1) / 6.
  EXPECT_NEAR(kendall_tau({1, 2, 3, 4}, {1, 3, 2, 4}), 4.0 / 6, 1e-12);
  // Spearman: ranks (1 2 3 4) vs (2 1 4 3): 1 - 6 * 4 / (4 * 15) = 0.6.
  EXPECT_NEAR(spearman({1, 2, 3, 4}, {20, 10, 40, 30}), 0.6, 1e-12);
  EXPECT_DOUBLE_EQ(topk_intersection({5, 4, 3, 2}, {9, 8, 0, 1}, 2), 1.0);
  EXPECT_DOUBLE_EQ(topk_intersection({5, 4, 3, 2}, {5, 1, 4, 0}, 2), 0.5);
  EXPECT_DOUBLE_EQ(topk_intersection({5, 4, 3, 2}, {0, 1, 4, 5}, 2), 0.0);
  EXPECT_DOUBLE_EQ(topk_intersection({5, 4, 3, 2}, {5, 1, 4, 0}, 10), 1.0);
  EXPECT_THROW(spearman({1, 2}, {1}), Error);
}

}  // namespace
}  // namespace candor

namespace candor {
namespace {

// Several attributions of one request from one shared bank: each gets what it gets on its own,
// a removal set two of them share gives both exactly the same value, shared masks run once, and
// attributions of different tokens are refused.
TEST(Faithfulness, SharedBankMatchesSeparateRunsAndTiesExactly) {
  ToyModel m(ToyModel::Kind::kBag, 32, 8, 21);
  ExplainRequest r = logit_request();
  // Same top feature (6), different order below it.
  Attribution a = with_scores(m, r, {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.9});
  Attribution b = with_scores(m, r, {0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.9});
  b.method = "other";
  FaithfulnessOptions fo;
  fo.infidelity_samples = 8;
  std::vector<Faithfulness> both = evaluate_faithfulness(m, r, {a, b}, fo);
  ASSERT_EQ(both.size(), 2u);
  Faithfulness fa = evaluate_faithfulness(m, r, a, fo), fb = evaluate_faithfulness(m, r, b, fo);
  // Equal up to float32 rounding: another batch layout moves values by ~1e-7 relative.
  for (size_t q = 0; q < fa.comprehensiveness.size(); ++q) {
    EXPECT_NEAR(both[0].comprehensiveness[q], fa.comprehensiveness[q], 1e-4);
    EXPECT_NEAR(both[1].sufficiency[q], fb.sufficiency[q], 1e-4);
  }
  EXPECT_NEAR(both[0].deletion.area, fa.deletion.area, 1e-4);
  EXPECT_NEAR(both[1].insertion.area, fb.insertion.area, 1e-4);
  EXPECT_NEAR(both[1].loo_kendall, fb.loo_kendall, 1e-12);
  EXPECT_NEAR(both[0].infidelity, fa.infidelity, 1e-6 * fa.infidelity);
  // 1% and 5% of 7 features: the top one, the same feature for both: exactly equal.
  ASSERT_EQ(both[0].counts[0], 1);
  EXPECT_EQ(both[0].comprehensiveness[0], both[1].comprehensiveness[0]);
  EXPECT_EQ(both[0].sufficiency[1], both[1].sufficiency[1]);
  EXPECT_NE(both[0].comprehensiveness[4], both[1].comprehensiveness[4]);
  // Shared masks (LOO, infidelity, the empty and full inputs, the shared top-1 sets) run once.
  EXPECT_LT(both[0].masks_scored, fa.masks_scored + fb.masks_scored);
  EXPECT_EQ(both[0].masks_scored, both[1].masks_scored);
  // Attributions of different tokens cannot share a bank.
  ExplainRequest r2 = r;
  r2.target.token = kTarget + 1;
  Attribution c = with_scores(m, r2, {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.9});
  EXPECT_THROW(evaluate_faithfulness(m, r, {a, c}, fo), Error);
  EXPECT_TRUE(evaluate_faithfulness(m, r, std::vector<Attribution>{}, fo).empty());
}

}  // namespace
}  // namespace candor
