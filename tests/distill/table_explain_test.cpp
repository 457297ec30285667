// Per-column explanations of a model over table rows (table_explain.h), checked against brute
// force through the model's own predict() on rows rewritten as text: a removed column takes its
// training mean (numeric), most frequent training level (categorical) or the empty text.
#include "candor/table_explain.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "candor/data.h"
#include "candor/distill.h"
#include "candor/error.h"
#include "candor/train.h"
#include "test_util.h"

namespace candor::distill {
namespace {

using candor::testing::error_of;
using ::testing::HasSubstr;

const char* kHeader = "age,colour,text,label\n";

data::Table parse(const std::string& body) {
  data::ReadOptions ro;
  ro.types["text"] = data::ColumnType::kText;
  ro.types["age"] = data::ColumnType::kNumeric;
  ro.types["colour"] = data::ColumnType::kCategorical;
  return data::parse_csv(kHeader + body, "rows.csv", ro);
}

data::Table training_table() {
  std::string csv;
  const char* colours[] = {"red", "green", "blue", "red"};
  const char* words[] = {"good film", "bad film", "so so", "good plot"};
  for (int i = 0; i < 400; ++i) {
    const int age = (i * 37) % 83;
    const int c = i % 4, w = (i / 4) % 4;
    const bool yes = (age > 40) != (w == 1) || (c == 2 && age > 20);
    csv += std::to_string(age) + ".5," + colours[c] + "," + words[w] + "," + (yes ? "yes" : "no") +
           "\n";
  }
  return parse(csv);
}

struct Fixture {
  data::Table table = training_table();
  std::shared_ptr<const MlpClassifier> mlp;
  Fixture() {
    std::vector<size_t> rows(table.n_rows());
    for (size_t i = 0; i < rows.size(); ++i) rows[i] = i;
    MlpOptions mo;
    mo.hidden = {16, 8};
    mo.features.min_count = 1;
    train::TrainOptions to;
    to.epochs = 8;
    to.seed = 3;
    mlp = MlpClassifier::train(table, rows, "label", mo, to);
  }
};

const Fixture& fixture() {
  static Fixture f;
  return f;
}

double logodds(const std::vector<double>& p, size_t c) {
  double rest = 0;
  for (size_t j = 0; j < p.size(); ++j)
    if (j != c) rest += p[j];
  return std::log(p[c]) - std::log(rest);
}

// The row `r` with the columns not in `keep` (a mask over age, colour, text) at their baselines,
// as CSV text.
std::string rewritten(const data::Table& t, size_t r, unsigned keep, const Featurizer& f) {
  std::string age, colour;
  for (const Feature& ft : f.features()) {
    if (ft.kind == Feature::kNumeric) {
      char buf[64];
      std::snprintf(buf, sizeof(buf), "%.17g", ft.mean);
      age = buf;
    }
    if (ft.kind == Feature::kCategorical) colour = ft.bin_labels[ft.baseline];
  }
  std::string line = (keep & 1 ? t.column("age").raw[r] : age) + "," +
                     (keep & 2 ? t.column("colour").raw[r] : colour) + "," +
                     (keep & 4 ? t.column("text").raw[r] : "") + ",no\n";
  return line;
}

// v(S) for every coalition S of the three columns, through predict() on rewritten rows.
std::vector<double> brute_values(const MlpClassifier& m, const data::Table& t, size_t r, size_t c) {
  std::string body;
  for (unsigned s = 0; s < 8; ++s) body += rewritten(t, r, s, m.featurizer());
  data::Table rows = parse(body);
  Probs p = m.predict(rows, {0, 1, 2, 3, 4, 5, 6, 7});
  std::vector<double> v;
  for (const auto& pr : p) v.push_back(logodds(pr, c));
  return v;
}

TEST(TableExplain, BaselinesAreTheTrainingMeanAndMostFrequentLevel) {
  const Fixture& fx = fixture();
  const auto& fs = fx.mlp->featurizer().features();
  double sum = 0;
  for (size_t r = 0; r < fx.table.n_rows(); ++r) sum += fx.table.column("age").numeric[r];
  int seen_numeric = 0;
  for (const Feature& f : fs) {
    if (f.kind == Feature::kNumeric) {
      ++seen_numeric;
      EXPECT_NEAR(f.mean, sum / fx.table.n_rows(), 1e-9);
    }
    if (f.kind == Feature::kCategorical) EXPECT_EQ(f.bin_labels[f.baseline], "red");  // 2 of 4
    if (f.kind == Feature::kNgram) EXPECT_EQ(f.baseline, 0);
  }
  EXPECT_EQ(seen_numeric, 1);
  // Kept through save and load.
  const std::string dir = testing::temp_dir() + "/m";
  fx.mlp->save(dir, "label");
  auto back = MlpClassifier::load(dir);
  for (size_t i = 0; i < fs.size(); ++i) {
    EXPECT_EQ(back->featurizer().features()[i].baseline, fs[i].baseline) << i;
    EXPECT_EQ(back->featurizer().features()[i].mean, fs[i].mean) << i;
  }
}

TEST(TableExplain, ExactShapleyIsEfficientAndEqualsBruteForce) {
  const Fixture& fx = fixture();
  TableExplainer ex(fx.mlp);
  ASSERT_EQ(ex.columns(), (std::vector<std::string>{"age", "colour", "text"}));
  TableExplainOptions o;
  o.methods = {"exact_shapley"};
  const std::vector<size_t> rows = {0, 5, 17, 130};
  auto out = ex.explain(fx.table, rows, o);
  ASSERT_EQ(out.size(), rows.size());
  for (const RowExplanation& rx : out) {
    const Attribution& a = rx.attributions[0];
    const size_t c = static_cast<size_t>(a.step_tokens[0]);
    EXPECT_EQ(fx.mlp->classes()[c], rx.predicted);
    double sum = 0;
    for (double s : a.scores) sum += s;
    EXPECT_NEAR(sum, a.target_values[0] - a.baseline_values[0], 1e-9) << rx.row;
    ASSERT_EQ(a.convergence_delta.size(), 1u);
    EXPECT_NEAR(a.convergence_delta[0], 0, 1e-9);
    // Brute force: the Shapley formula over values from predict() on rewritten rows.
    std::vector<double> v = brute_values(*fx.mlp, fx.table, rx.row, c);
    EXPECT_NEAR(a.target_values[0], v[7], 1e-3);
    EXPECT_NEAR(a.baseline_values[0], v[0], 1e-3);
    const double w[3] = {1.0 / 3, 1.0 / 6, 1.0 / 3};  // |S| = 0, 1, 2 of 3 players
    for (unsigned j = 0; j < 3; ++j) {
      double phi = 0;
      for (unsigned s = 0; s < 8; ++s)
        if (!(s & (1u << j))) phi += w[__builtin_popcount(s)] * (v[s | (1u << j)] - v[s]);
      EXPECT_NEAR(a.scores[j], phi, 2e-3) << "row " << rx.row << " column " << j;
    }
    // Labels "column=value".
    EXPECT_EQ(a.features[0].label, "age=" + fx.table.column("age").raw[rx.row]);
    EXPECT_EQ(a.features[2].label, "text=" + fx.table.column("text").raw[rx.row]);
  }
}

TEST(TableExplain, OcclusionEqualsBruteForce) {
  const Fixture& fx = fixture();
  TableExplainer ex(fx.mlp);
  TableExplainOptions o;
  o.methods = {"occlusion"};
  for (size_t r : {3u, 44u, 250u}) {
    auto out = ex.explain(fx.table, {r}, o);
    const Attribution& a = out[0].attributions[0];
    std::vector<double> v =
        brute_values(*fx.mlp, fx.table, r, static_cast<size_t>(a.step_tokens[0]));
    for (unsigned j = 0; j < 3; ++j)
      EXPECT_NEAR(a.scores[j], v[7] - v[7 & ~(1u << j)], 2e-3) << "row " << r << " column " << j;
    EXPECT_TRUE(a.convergence_delta.empty());
  }
}

TEST(TableExplain, IntegratedGradientsAreComplete) {
  const Fixture& fx = fixture();
  TableExplainer ex(fx.mlp);
  TableExplainOptions o;
  o.methods = {"integrated_gradients:n_steps=512", "input_x_gradient", "exact_shapley"};
  for (const std::string tf : {"logodds", "logprob", "logit"}) {
    o.target_function = tf;
    auto out = ex.explain(fx.table, {1, 2, 77, 300}, o);
    for (const RowExplanation& rx : out) {
      const Attribution& ig = rx.attributions[0];
      const double change = ig.target_values[0] - ig.baseline_values[0];
      double sum = 0;
      for (double s : ig.scores) sum += s;
      EXPECT_NEAR(sum, change, 1e-2 * std::max(1.0, std::fabs(change))) << tf << " row " << rx.row;
      EXPECT_NEAR(ig.convergence_delta[0], sum - change, 1e-12);
      // The three methods explain the same value from the same baseline.
      EXPECT_DOUBLE_EQ(rx.attributions[1].target_values[0], ig.target_values[0]);
      EXPECT_NEAR(rx.attributions[2].target_values[0], ig.target_values[0], 1e-6);
      EXPECT_NEAR(rx.attributions[2].baseline_values[0], ig.baseline_values[0], 1e-6);
    }
  }
}

TEST(TableExplain, ShapleySamplingIsEfficientAndConverges) {
  const Fixture& fx = fixture();
  TableExplainer ex(fx.mlp);
  TableExplainOptions o;
  o.methods = {"shapley_sampling:samples=400,seed=7", "exact_shapley"};
  auto out = ex.explain(fx.table, {9}, o);
  const Attribution& s = out[0].attributions[0];
  const Attribution& e = out[0].attributions[1];
  double sum = 0, scale = 0;
  for (size_t j = 0; j < 3; ++j) {
    sum += s.scores[j];
    scale = std::max(scale, std::fabs(e.scores[j]));
  }
  EXPECT_NEAR(sum, s.target_values[0] - s.baseline_values[0], 1e-9);
  for (size_t j = 0; j < 3; ++j) EXPECT_NEAR(s.scores[j], e.scores[j], 0.1 * scale + 1e-6) << j;
}

TEST(TableExplain, BadRequestsAreNamed) {
  const Fixture& fx = fixture();
  TableExplainer ex(fx.mlp);
  TableExplainOptions o;
  EXPECT_THAT(error_of([&] { ex.explain(fx.table, {400}, o); }),
              HasSubstr("row 400 is out of range (the table has 400 data rows, 0..399)"));
  o.methods = {"lime"};
  EXPECT_THAT(error_of([&] { ex.check(o); }),
              HasSubstr("method 'lime' does not explain a model over table rows"));
  o.methods = {"exact_shapley:max_columns=2"};
  EXPECT_THAT(error_of([&] { ex.check(o); }), HasSubstr("above max_columns=2"));
  o.methods = {};
  o.target = "maybe";
  EXPECT_THAT(error_of([&] { ex.check(o); }), HasSubstr("class 'maybe' is not a class"));
  o.target = "";
  o.target_function = "entropy";
  EXPECT_THAT(error_of([&] { ex.check(o); }), HasSubstr("target function 'entropy'"));
  o.target_function = "logodds";
  data::Table no_colour = data::parse_csv("age,text\n3,good\n", "cut.csv");
  EXPECT_THAT(error_of([&] { ex.explain(no_colour, {0}, o); }), HasSubstr("colour"));
}

// A model saved before baselines were kept: the explained table gives them, and it is said.
TEST(TableExplain, OldSavesTakeBaselinesFromTheTableAndSaySo) {
  const Fixture& fx = fixture();
  const std::string dir = testing::temp_dir() + "/old";
  fx.mlp->save(dir, "label");
  nlohmann::json j;
  std::ifstream(dir + "/mlp.json") >> j;
  for (auto& f : j["featurizer"]["features"]) {
    f.erase("baseline");
    f.erase("mean");
  }
  std::ofstream(dir + "/mlp.json") << j.dump();
  TableExplainer ex(std::shared_ptr<const MlpClassifier>(MlpClassifier::load(dir)));
  TableExplainOptions o;
  o.methods = {"occlusion"};
  auto old = ex.explain(fx.table, {5}, o);
  auto now = TableExplainer(fx.mlp).explain(fx.table, {5}, o);
  ASSERT_FALSE(old[0].attributions[0].warnings.empty());
  EXPECT_THAT(old[0].attributions[0].warnings.back(), HasSubstr("without its training baselines"));
  EXPECT_TRUE(now[0].attributions[0].warnings.empty());
  // Explaining the training table itself, the baselines are the same.
  for (size_t k = 0; k < 3; ++k)
    EXPECT_NEAR(old[0].attributions[0].scores[k], now[0].attributions[0].scores[k], 1e-9);
}

// --- evaluate_table_explanations: the faithfulness of column explanations ------------------

// Columns by score, highest first (ties: earlier column first), as the evaluator ranks them.
std::vector<unsigned> by_score(const std::vector<double>& s) {
  std::vector<unsigned> o = {0, 1, 2};
  std::stable_sort(o.begin(), o.end(), [&](unsigned a, unsigned b) { return s[a] > s[b]; });
  return o;
}

TEST(TableEvaluate, ComprehensivenessAndCurvesEqualBruteForce) {
  const Fixture& fx = fixture();
  TableExplainer ex(fx.mlp);
  TableEvaluateOptions o;
  o.explain.methods = {"occlusion", "exact_shapley"};
  o.fractions = {0.3, 0.6, 1.0};  // 1, 2 and 3 of the three columns
  o.bootstrap = 10;
  const std::vector<size_t> rows = {3, 44, 250};
  TableEvaluation ev = evaluate_table_explanations(ex, fx.table, rows, o);
  ASSERT_EQ(ev.records.size(), rows.size());
  EXPECT_EQ(ev.metrics, (std::vector<std::string>{"comprehensiveness", "sufficiency", "deletion",
                                                  "insertion"}));
  auto explained = ex.explain(fx.table, rows, o.explain);
  for (size_t i = 0; i < rows.size(); ++i) {
    for (size_t m = 0; m < 2; ++m) {
      const Attribution& a = explained[i].attributions[m];
      const std::vector<double> v =
          brute_values(*fx.mlp, fx.table, rows[i], static_cast<size_t>(a.step_tokens[0]));
      const std::vector<unsigned> order = by_score(a.scores);
      double comp = 0, suff = 0, del = 0, ins = 0;
      unsigned top = 0;  // mask of the top n columns
      std::vector<double> dv = {v[7]}, iv = {v[0]};
      for (unsigned n = 1; n <= 3; ++n) {
        top |= 1u << order[n - 1];
        comp += v[7] - v[7 & ~top];
        suff += v[7] - v[top];
        dv.push_back(v[7 & ~top]);
        iv.push_back(v[top]);
      }
      for (size_t q = 1; q < 4; ++q) {
        del += 0.5 * (dv[q] + dv[q - 1]) / 3.0;
        ins += 0.5 * (iv[q] + iv[q - 1]) / 3.0;
      }
      const MethodRecord& r = ev.records[i].at(o.explain.methods[m]);
      EXPECT_NEAR(r.metrics.at("comprehensiveness"), comp / 3, 2e-3) << rows[i] << " " << m;
      EXPECT_NEAR(r.metrics.at("sufficiency"), suff / 3, 2e-3) << rows[i] << " " << m;
      EXPECT_NEAR(r.metrics.at("deletion"), del, 2e-3) << rows[i] << " " << m;
      EXPECT_NEAR(r.metrics.at("insertion"), ins, 2e-3) << rows[i] << " " << m;
      EXPECT_EQ(r.deletion_curve.size(), 21u);
      EXPECT_NEAR(r.deletion_curve.front(), v[7], 2e-3);
      EXPECT_NEAR(r.insertion_curve.front(), v[0], 2e-3);
    }
  }
  // The summary is the benchmark table: a cell per method and metric over the three rows.
  EXPECT_EQ(ev.summary["n_examples"], 3);
  EXPECT_EQ(ev.summary["table"]["exact_shapley"]["comprehensiveness"]["n"], 3);
  EXPECT_TRUE(ev.summary["table_model"].get<bool>());
}

TEST(TableEvaluate, ExactShapleyBeatsTheRandomDecoyOnAModelThatReadsOneColumn) {
  // The label is the colour alone; age and text are noise the MLP learns to ignore.
  std::string csv;
  const char* colours[] = {"red", "green", "blue"};
  const char* words[] = {"good film", "bad film", "so so", "good plot"};
  for (int i = 0; i < 300; ++i) {
    const int c = i % 3;
    csv += std::to_string((i * 37) % 83) + ".5," + colours[c] + "," + words[(i * 7 / 3) % 4] + "," +
           (c == 1 ? "yes" : "no") + "\n";
  }
  data::Table table = parse(csv);
  std::vector<size_t> all(table.n_rows());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  MlpOptions mo;
  mo.hidden = {8};
  mo.features.min_count = 1;
  train::TrainOptions to;
  to.epochs = 8;
  to.seed = 5;
  auto mlp =
      std::shared_ptr<const MlpClassifier>(MlpClassifier::train(table, all, "label", mo, to));
  TableExplainer ex(mlp);
  TableEvaluateOptions o;
  o.explain.methods = {"exact_shapley"};
  o.metrics = {"comprehensiveness", "deletion"};
  o.fractions = {0.3};  // the top column alone
  o.decoys = true;
  o.bootstrap = 10;
  const std::vector<size_t> rows = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17};
  TableEvaluation ev = evaluate_table_explanations(ex, table, rows, o);
  EXPECT_EQ(ev.methods,
            (std::vector<std::string>{"exact_shapley", "decoy:random", "decoy:inverted"}));
  double shap = 0, random = 0;
  for (const auto& rec : ev.records) {
    const double s = rec.at("exact_shapley").metrics.at("comprehensiveness");
    const double d = rec.at("decoy:random").metrics.at("comprehensiveness");
    EXPECT_GE(s, d - 1e-9);  // the colour first: no other column removes more
    shap += s;
    random += d;
  }
  EXPECT_GT(shap, random + 0.5 * static_cast<double>(rows.size()) * 0.1);
  const auto& rank = ev.summary["decoy_ranking"]["comprehensiveness"];
  EXPECT_GT(rank["win_rate"]["exact_shapley"]["decoy:random"].get<double>(), 0.3);
  EXPECT_DOUBLE_EQ(rank["win_rate"]["exact_shapley"]["decoy:inverted"].get<double>(), 1.0);
  // Deletion: removing the colour first drops the value sooner (lower area).
  EXPECT_LT(ev.summary["table"]["exact_shapley"]["deletion"]["mean"].get<double>(),
            ev.summary["table"]["decoy:random"]["deletion"]["mean"].get<double>());
}

TEST(TableEvaluate, MetricsOfTokensAndBadOptionsAreRefused) {
  const Fixture& fx = fixture();
  TableExplainer ex(fx.mlp);
  TableEvaluateOptions o;
  o.metrics = {"infidelity"};
  EXPECT_THAT(error_of([&] { check_table_evaluation(ex, o); }),
              HasSubstr("metric 'infidelity' grades token explanations"));
  o.metrics = {"nonsense"};
  EXPECT_THAT(error_of([&] { evaluate_table_explanations(ex, fx.table, {0}, o); }),
              HasSubstr("unknown metric 'nonsense'"));
  o.metrics = {};
  o.fractions = {0.0};
  EXPECT_THAT(error_of([&] { check_table_evaluation(ex, o); }), HasSubstr("is not in (0, 1]"));
  o.fractions = {0.5};
  o.explain.methods = {"lime"};
  EXPECT_THAT(error_of([&] { check_table_evaluation(ex, o); }),
              HasSubstr("does not explain a model over table rows"));
}

}  // namespace
}  // namespace candor::distill
