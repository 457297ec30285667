// The training loop (reproducibility, resume) and the MLP teacher on Adult with a GAM student.
#include <nlohmann/json.hpp>

#include <ATen/ATen.h>

#include <fstream>
#include <random>

#include "candor/data.h"
#include "candor/distill.h"
#include "candor/error.h"
#include "candor/train.h"
#include "test_util.h"

namespace candor::train {
namespace {

data::Table small_table() {
  std::mt19937_64 rng(5);
  std::string csv = "x,c,label\n";
  for (int i = 0; i < 600; ++i) {
    int x = static_cast<int>(rng() % 100);
    int c = static_cast<int>(rng() % 4);
    csv += std::to_string(x) + ",k" + std::to_string(c) + "," + ((x > 50) != (c == 3) ? "a" : "b") +
           "\n";
  }
  return data::parse_csv(csv, "small.csv");
}

std::vector<size_t> all_rows(const data::Table& t) {
  std::vector<size_t> r(t.n_rows());
  for (size_t i = 0; i < r.size(); ++i) r[i] = i;
  return r;
}

bool same(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!at::equal(a[i], b[i])) return false;
  return true;
}

TEST(Train, SameSeedSameModelAndResumeEqualsUninterrupted) {
  data::Table t = small_table();
  TrainOptions o;
  o.epochs = 20;
  o.batch_size = 64;
  o.learning_rate = 1e-2;
  o.seed = 3;
  distill::MlpOptions m;
  m.hidden = {16};
  auto a = distill::MlpClassifier::train(t, all_rows(t), "label", m, o);
  auto b = distill::MlpClassifier::train(t, all_rows(t), "label", m, o);
  EXPECT_TRUE(same(a->parameters(), b->parameters()));
  TrainOptions o2 = o;
  o2.seed = 4;
  auto c = distill::MlpClassifier::train(t, all_rows(t), "label", m, o2);
  EXPECT_FALSE(same(a->parameters(), c->parameters()));
  // Interrupted after 13 of 200 steps, then resumed from the checkpoint.
  const std::string ckpt = testing::temp_dir() + "/run.ckpt";
  TrainOptions oi = o;
  oi.checkpoint = ckpt;
  oi.stop_after_steps = 13;
  auto partial = distill::MlpClassifier::train(t, all_rows(t), "label", m, oi);
  EXPECT_FALSE(same(a->parameters(), partial->parameters()));
  oi.stop_after_steps = -1;
  oi.resume = true;
  auto resumed = distill::MlpClassifier::train(t, all_rows(t), "label", m, oi);
  EXPECT_TRUE(same(a->parameters(), resumed->parameters()));
  // It learnt the rule.
  auto p = a->predict(t, all_rows(t));
  int ok = 0;
  const auto& lab = t.column("label").raw;
  for (size_t i = 0; i < p.size(); ++i) ok += (p[i][0] > p[i][1] ? "a" : "b") == lab[i];
  EXPECT_GT(ok, 540);
}

TEST(Train, ScheduleAndErrors) {
  TrainOptions o;
  o.learning_rate = 1.0;
  o.warmup_fraction = 0.1;
  EXPECT_NEAR(scheduled_lr(o, 0, 100), 0.1, 1e-12);
  EXPECT_NEAR(scheduled_lr(o, 9, 100), 1.0, 1e-12);
  EXPECT_NEAR(scheduled_lr(o, 55, 100), 0.5, 1e-9);
  EXPECT_LT(scheduled_lr(o, 99, 100), 0.001);
  data::Table one = data::parse_csv("x,label\n1,a\n2,a\n", "one.csv");
  try {
    distill::MlpClassifier::train(one, {0, 1}, "label", distill::MlpOptions(), TrainOptions());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("label column 'label' has 1 class ('a')"),
              std::string::npos)
        << e.what();
  }
  data::Table t = small_table();
  const std::string ckpt = testing::temp_dir() + "/bad.ckpt";
  { std::ofstream(ckpt) << "garbage"; }
  TrainOptions bad;
  bad.checkpoint = ckpt;
  bad.resume = true;
  EXPECT_THROW(distill::MlpClassifier::train(t, all_rows(t), "label", distill::MlpOptions(), bad),
               Error);
}

TEST(Adult, GamStudentImitatesMlpTeacher) {
  CANDOR_REQUIRE_SHARED("data/fairness/adult_train.csv");
  CANDOR_REQUIRE_SHARED("data/fairness/adult_test.csv");
  data::Table train = data::read_csv(testing::shared_path("data/fairness/adult_train.csv"));
  data::Table test = data::read_csv(testing::shared_path("data/fairness/adult_test.csv"));
  TrainOptions o;
  o.epochs = 3;
  o.batch_size = 256;
  o.seed = 1;
  distill::MlpOptions m;
  m.hidden = {64, 32};
  auto teacher = distill::MlpClassifier::train(train, all_rows(train), "income", m, o);
  distill::DistillOptions d;
  d.student = distill::parse_student("gam");
  d.label_column = "income";
  d.slice_columns = {"sex", "race"};
  d.test_fraction = 0.3;
  d.seed = 2;
  // The teacher never saw adult_test: the GAM learns from teacher labels on 70% of it and is
  // measured on the other 30%.
  distill::DistillResult r = distill::distill(test, *teacher, d);
  std::cout << "Adult MLP -> GAM: held-out agreement " << r.test_fidelity.agreement
            << ", teacher accuracy " << r.test_fidelity.teacher_accuracy << ", GAM accuracy "
            << r.test_fidelity.student_accuracy << ", KL " << r.test_fidelity.kl << ", fit "
            << r.fit_seconds << " s\n";
  EXPECT_GE(r.test_fidelity.agreement, 0.95);
  EXPECT_LE(std::fabs(r.test_fidelity.student_accuracy - r.test_fidelity.teacher_accuracy), 0.02);
  // scikit-learn's comparable models on the same rows and teacher labels, in the same run:
  // LogisticRegression, an additive boosted model (its nearest GAM) and unconstrained boosting.
  // The GAM is within 1 point of the additive model and at least as good as the logistic one.
  std::string out;
  if (testing::run_command("/usr/bin/python3 -c 'import sklearn, numpy' 2>&1", &out) != 0) {
    std::cout << "scikit-learn comparison skipped: python3-sklearn is absent (scripts/setup.sh)\n";
  } else {
    const data::Split split = distill::distill_split(test, d);
    std::vector<size_t> all = all_rows(test);
    const distill::Probs p = teacher->predict(test, all);
    std::vector<std::string> where(test.n_rows(), "train");
    for (size_t row : split.test) where[row] = "test";
    const std::string side = testing::temp_dir() + "/adult_teacher.csv";
    {
      std::ofstream f(side);
      f << "teacher_1,split_1\n";
      for (size_t i = 0; i < all.size(); ++i) f << (p[i][1] > p[i][0] ? 1 : 0) << "," << where[i] << "\n";
    }
    ASSERT_EQ(testing::run_command("/usr/bin/python3 " + std::string(CANDOR_SOURCE_DIR) +
                                       "/tests/distill/sklearn_agreement.py --gam '" +
                                       testing::shared_path("data/fairness/adult_test.csv") +
                                       "' income " + side + " 4 2>&1",
                                   &out),
              0)
        << out;
    const nlohmann::json sk = nlohmann::json::parse(out.substr(out.find('{')));
    const double lr = sk["logistic"][0].get<double>(), additive = sk["additive_boosting"][0].get<double>(),
                 boosting = sk["boosting"][0].get<double>();
    std::cout << "same rows, scikit-learn: LogisticRegression " << lr << ", additive boosting "
              << additive << ", boosting " << boosting << ", DecisionTree(depth 4) "
              << sk["tree"][0].get<double>() << "\n";
    EXPECT_GE(r.test_fidelity.agreement, additive - 0.01);
    EXPECT_GE(r.test_fidelity.agreement, lr);
  }
  EXPECT_GT(r.test_fidelity.teacher_accuracy, 0.82);
  EXPECT_EQ(r.test_fidelity.slices.size(), 2u + r.test_fidelity.slices.size() - 2u);
  bool has_female = false;
  for (const auto& s : r.test_fidelity.slices)
    has_female |= s.column == "sex" && s.value == "Female";
  EXPECT_TRUE(has_female);
}

}  // namespace
}  // namespace candor::train
