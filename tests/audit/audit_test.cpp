// candor_audit: hand-computed fairness and calibration figures, bootstrap determinism,
// conformal coverage on synthetic data, and bad inputs.
#include <cmath>
#include <fstream>
#include <random>

#include "candor/audit.h"
#include "test_util.h"

namespace candor::audit {
namespace {

CodedColumn coded(const std::string& name, const std::vector<int32_t>& codes, std::vector<std::string> values) {
  CodedColumn c;
  c.column = name;
  c.codes = codes;
  c.values = std::move(values);
  return c;
}

// Group A: TP 2, FP 1, FN 1, TN 2 (n 6); group B: TP 1, FP 0, FN 1, TN 2 (n 4).
BinaryOutcomes small_table(std::vector<int32_t>* g) {
  BinaryOutcomes o;
  o.label = {1, 1, 0, 1, 0, 0, 1, 0, 1, 0};
  o.prediction = {1, 1, 1, 0, 0, 0, 1, 0, 0, 0};
  *g = {0, 0, 0, 0, 0, 0, 1, 1, 1, 1};
  return o;
}

TEST(AuditFairness, GroupMetricsAndGapsEqualHandValues) {
  std::vector<int32_t> g;
  BinaryOutcomes o = small_table(&g);
  FairnessOptions opt;
  opt.n_boot = 0;
  FairnessResult r = audit_fairness(o, {coded("grp", g, {"A", "B"})}, opt);
  ASSERT_EQ(r.groups.size(), 2u);
  const auto& a = r.groups[0].metrics;
  const auto& b = r.groups[1].metrics;
  EXPECT_DOUBLE_EQ(a.at("selection_rate"), 3.0 / 6);
  EXPECT_DOUBLE_EQ(a.at("tpr"), 2.0 / 3);
  EXPECT_DOUBLE_EQ(a.at("fpr"), 1.0 / 3);
  EXPECT_DOUBLE_EQ(a.at("precision"), 2.0 / 3);
  EXPECT_DOUBLE_EQ(a.at("npv"), 2.0 / 3);
  EXPECT_DOUBLE_EQ(a.at("accuracy"), 4.0 / 6);
  EXPECT_DOUBLE_EQ(b.at("selection_rate"), 1.0 / 4);
  EXPECT_DOUBLE_EQ(b.at("tpr"), 0.5);
  EXPECT_DOUBLE_EQ(b.at("fpr"), 0.0);
  EXPECT_DOUBLE_EQ(b.at("fnr"), 0.5);
  EXPECT_DOUBLE_EQ(b.at("base_rate"), 0.5);
  for (const Disparity& d : r.disparities) {
    if (d.reference != "groups") continue;
    if (d.metric == "demographic_parity" && d.kind == "difference") EXPECT_DOUBLE_EQ(d.value, 0.25);
    if (d.metric == "demographic_parity" && d.kind == "ratio") {
      EXPECT_DOUBLE_EQ(d.value, 0.5);
      EXPECT_TRUE(d.flag);
      EXPECT_EQ(d.between[0], "B");
    }
    if (d.metric == "equalized_odds") EXPECT_DOUBLE_EQ(d.value, 1.0 / 3);  // FPR gap 1/3 > TPR gap 1/6
    if (d.metric == "equalized_odds_mean") EXPECT_DOUBLE_EQ(d.value, 0.25);
    if (d.metric == "equal_opportunity") EXPECT_DOUBLE_EQ(d.value, 2.0 / 3 - 0.5);
    if (d.metric == "predictive_parity") EXPECT_DOUBLE_EQ(d.value, 1.0 / 3);
  }
  EXPECT_TRUE(r.groups[0].small);
}

TEST(AuditFairness, BootstrapIsSeededAndCoversThePointEstimate) {
  std::mt19937_64 gen(3);
  BinaryOutcomes o;
  std::vector<int32_t> g;
  for (int i = 0; i < 2000; ++i) {
    g.push_back(i % 2);
    o.label.push_back(gen() % 2);
    o.prediction.push_back(gen() % 3 == 0);
  }
  FairnessOptions opt;
  opt.n_boot = 200;
  FairnessResult r1 = audit_fairness(o, {coded("g", g, {"x", "y"})}, opt);
  opt.threads = 1;
  FairnessResult r2 = audit_fairness(o, {coded("g", g, {"x", "y"})}, opt);
  EXPECT_EQ(r1.to_json().dump(), r2.to_json().dump());
  for (const GroupMetrics& gm : r1.groups)
    for (const auto& [k, v] : gm.metrics) {
      EXPECT_LE(gm.ci.at(k)[0], v) << k;
      EXPECT_GE(gm.ci.at(k)[1], v) << k;
    }
}

TEST(AuditFairness, OneValuedGroupColumnIsAClearError) {
  std::vector<int32_t> g;
  BinaryOutcomes o = small_table(&g);
  std::vector<int32_t> one(10, 0);
  EXPECT_THAT(testing::error_of([&] { audit_fairness(o, {coded("grp", one, {"A"})}); }),
              ::testing::HasSubstr("has one value ('A')"));
}

TEST(AuditCalibration, HandComputedEceBrierNll) {
  ClassProbabilities p;
  p.n_classes = 2;
  p.classes = {"n", "y"};
  // confidences 0.9 (correct), 0.8 (wrong), 0.6 (correct), 0.7 (correct)
  p.p = {0.09f, 0.91f, 0.82f, 0.18f, 0.37f, 0.63f, 0.26f, 0.74f};
  p.label = {1, 1, 1, 1};
  CalibrationMetrics m = calibration_metrics(p, 2);
  // Two bins [0, .5), [.5, 1]: all four in bin 1: accuracy .75, confidence .75 -> ECE 0.
  EXPECT_NEAR(m.ece, 0.025, 1e-6);  // |0.75 - 0.775|
  EXPECT_NEAR(m.accuracy, 0.75, 1e-12);
  EXPECT_NEAR(m.brier, (0.0081 + 0.6724 + 0.1369 + 0.0676) / 4, 1e-6);
  EXPECT_NEAR(m.nll, -(std::log(0.91) + std::log(0.18) + std::log(0.63) + std::log(0.74)) / 4, 1e-6);
  CalibrationMetrics m10 = calibration_metrics(p, 10);
  // Bins .6 (acc 1), .7 (1), .8 (0), .9 (1): ECE = (.4 + .3 + .8 + .1) / 4; MCE .8
  EXPECT_NEAR(m10.ece, (0.37 + 0.26 + 0.82 + 0.09) / 4, 1e-6);
  EXPECT_NEAR(m10.mce, 0.82, 1e-6);
}

ClassProbabilities synthetic(int n, int K, double sharpness, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> z(0, 1);
  ClassProbabilities p;
  p.n_classes = K;
  for (int k = 0; k < K; ++k) p.classes.push_back("c" + std::to_string(k));
  for (int i = 0; i < n; ++i) {
    std::vector<double> l(K);
    double s = 0;
    for (int k = 0; k < K; ++k) s += (l[k] = std::exp(1.5 * z(gen)));
    std::vector<double> q(K);
    for (int k = 0; k < K; ++k) q[k] = l[k] / s;
    std::discrete_distribution<int> d(q.begin(), q.end());
    p.label.push_back(d(gen));  // labels drawn from q: q is calibrated
    double s2 = 0;
    std::vector<double> r(K);
    for (int k = 0; k < K; ++k) s2 += (r[k] = std::pow(q[k], sharpness));
    for (int k = 0; k < K; ++k) p.p.push_back(static_cast<float>(r[k] / s2));
  }
  return p;
}

TEST(AuditCalibration, TemperatureScalingLowersHeldOutNll) {
  ClassProbabilities p = synthetic(4000, 3, 3.0, 5);  // overconfident
  CalibrationResult r = audit_calibration(p, {});
  EXPECT_GT(r.temperature, 1.5);
  EXPECT_LT(r.heldout_after.nll, r.heldout_before.nll);
  EXPECT_LT(r.heldout_after.ece, r.heldout_before.ece);
}

TEST(AuditConformal, CoverageOver20SplitsWithinBinomialTolerance) {
  ClassProbabilities p = synthetic(2000, 4, 1.0, 11);
  for (double alpha : {0.05, 0.1, 0.2}) {
    double lac = 0, aps = 0;
    for (uint64_t seed = 1; seed <= 20; ++seed) {
      ConformalOptions o;
      o.alpha = alpha;
      o.seed = seed;
      ConformalResult r = audit_conformal(p, {}, o);
      lac += r.methods[0].coverage / 20;
      aps += r.methods[1].coverage / 20;
      EXPECT_EQ(r.methods[1].n_empty, 0);
    }
    const double tol = 3 * std::sqrt(alpha * (1 - alpha) / (20 * 1000.0)) + 1.0 / 1001;
    EXPECT_NEAR(lac, 1 - alpha, tol) << alpha;
    EXPECT_GE(aps, 1 - alpha - tol) << alpha;
  }
}

TEST(AuditSelective, AurcHandComputed) {
  ClassProbabilities p;
  p.n_classes = 2;
  p.classes = {"n", "y"};
  p.p = {0.1f, 0.9f, 0.2f, 0.8f, 0.3f, 0.7f};  // predicts y, confidences .9 .8 .7
  p.label = {1, 0, 1};                         // correct, wrong, correct
  RiskCoverage rc = risk_coverage(p);
  EXPECT_NEAR(rc.aurc, (0.0 + 0.5 + 1.0 / 3) / 3, 1e-9);
  EXPECT_NEAR(rc.optimal_aurc, (0.0 + 0.0 + 1.0 / 3) / 3, 1e-9);
}

TEST(AuditRead, BadInputsAreClearErrorsOrCountedSkips) {
  const std::string dir = testing::temp_dir();
  std::ofstream(dir + "/empty.csv");
  EXPECT_THAT(testing::error_of([&] { read_audit_data(dir + "/empty.csv", {"y", "", {"p"}, {"g"}}); }),
              ::testing::HasSubstr("empty"));
  std::ofstream(dir + "/bad.csv") << "y,p,g\n1,0.5,a\n0,1.5,b\n1,0.2,b\n";
  EXPECT_THAT(testing::error_of([&] { read_audit_data(dir + "/bad.csv", {"y", "", {"p"}, {"g"}}); }),
              ::testing::HasSubstr("line 3: column 'p': probability 1.5 is outside [0, 1]"));
  AuditData d = read_audit_data(dir + "/bad.csv", {"y", "", {"p"}, {"g"}}, data::ErrorPolicy::kSkip);
  EXPECT_EQ(d.n_rows, 2);
  EXPECT_EQ(d.n_skipped, 1);
  std::ofstream(dir + "/lab.csv") << "y,p,g\nyes,0.5,a\nno,0.1,b\nmaybe,0.2,b\n";
  AuditData l = read_audit_data(dir + "/lab.csv", {"y", "", {"p"}, {"g"}});
  EXPECT_THAT(testing::error_of([&] { binarize(l, {}, {}); }), ::testing::HasSubstr("which of them are the positive outcome"));
  EXPECT_THAT(testing::error_of([&] { binarize(l, {"true"}, {}); }),
              ::testing::HasSubstr("'true' is not a value of column 'y'"));
}

}  // namespace
}  // namespace candor::audit
