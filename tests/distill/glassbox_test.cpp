// Glass-box students, teachers, fidelity and bad data.
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <random>

#include "candor/classifier.h"
#include "candor/data.h"
#include "candor/distill.h"
#include "candor/error.h"
#include "candor/report.h"
#include "test_util.h"

namespace candor::distill {
namespace {

using candor::testing::error_of;

// A table whose teacher label is a known function of two features plus an irrelevant one.
data::Table synthetic(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 100);
  std::string csv = "age,colour,noise,teacher,split\n";
  const char* colours[] = {"red", "green", "blue"};
  for (size_t i = 0; i < n; ++i) {
    double age = u(rng), noise = u(rng);
    int c = static_cast<int>(rng() % 3);
    bool yes = (age > 40 && c != 2) || age > 80;
    csv += std::to_string(age) + "," + colours[c] + "," + std::to_string(noise) + "," +
           (yes ? "yes" : "no") + "," + (i % 5 == 0 ? "test" : "train") + "\n";
  }
  return data::parse_csv(csv, "synthetic.csv");
}

TEST(Students, SparseRowsMatchTheDenseBins) {
  // Numeric, categorical and text columns; a repeated bigram and a missing text.
  data::ReadOptions ro;
  ro.types["text"] = data::ColumnType::kText;
  data::Table t = data::parse_csv(
      "x,c,text,y\n1,a,good good food,1\n2,b,bad food,0\n3,a,,1\n4,b,good food good food,1\n"
      "5,a,bad bad,0\n6,b,food,0\n",
      "mixed.csv", ro);
  Featurizer fz;
  FeatureOptions fo;
  fo.exclude = {"y"};
  fo.min_count = 1;
  std::vector<size_t> rows = {0, 1, 2, 3, 4, 5};
  fz.fit(t, rows, fo);
  auto dense = fz.transform(t, rows);
  SparseRows sp = fz.transform_sparse(t, rows);
  ASSERT_EQ(sp.n_rows(), rows.size());
  ASSERT_EQ(dense.size(), fz.features().size() + 1);
  for (size_t i = 0; i < rows.size(); ++i) {
    std::vector<uint16_t> from_sparse(fz.features().size(), 0);
    for (size_t e = sp.start[i]; e < sp.start[i + 1]; ++e) {
      if (fz.features()[sp.feature[e]].kind == Feature::kNgram) EXPECT_EQ(sp.bin[e], 1);
      from_sparse[sp.feature[e]] = sp.bin[e];
    }
    for (size_t j = 0; j < fz.features().size(); ++j)
      EXPECT_EQ(from_sparse[j], dense[j][i]) << "row " << i << ", " << fz.features()[j].name;
    EXPECT_EQ(sp.length[i], dense.back()[i]);
  }
  // The linear student gives the same probabilities from both forms.
  Probs target = {{0.1, 0.9}, {0.8, 0.2}, {0.3, 0.7}, {0.2, 0.8}, {0.9, 0.1}, {0.6, 0.4}};
  auto a = make_student(parse_student("linear:lambda=1e-3"));
  auto b = make_student(parse_student("linear:lambda=1e-3"));
  ASSERT_TRUE(a->fits_sparse());
  a->fit(fz, dense, target);
  b->fit_sparse(fz, sp, target);
  Probs pa = a->predict(dense), pb = b->predict_sparse(sp), pc = a->predict_sparse(sp);
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_NEAR(pa[i][1], pb[i][1], 1e-12);
    EXPECT_NEAR(pa[i][1], pc[i][1], 1e-12);
  }
  EXPECT_GT(pa[0][1], pa[1][1]);  // "good" vs "bad"
  EXPECT_FALSE(make_student(parse_student("tree"))->fits_sparse());
}

TEST(Students, RecoverAKnownRuleFromTeacherLabels) {
  data::Table t = synthetic(3000, 1);
  auto teacher = column_teacher(t, "teacher");
  for (const char* spec : {"linear:lambda=0.0005", "tree:max_depth=4", "gam"}) {
    DistillOptions o;
    o.student = parse_student(spec);
    o.features.exclude = {"teacher"};
    o.split_column = "split";
    o.label_column = "teacher";
    o.slice_columns = {"colour"};
    DistillResult r = distill(t, *teacher, o);
    EXPECT_EQ(r.test_fidelity.rows, 600u);
    EXPECT_GE(r.test_fidelity.agreement, 0.95) << spec;
    EXPECT_DOUBLE_EQ(r.test_fidelity.teacher_accuracy, 1.0);
    EXPECT_EQ(r.test_fidelity.slices.size(), 3u);
    nlohmann::json j = r.to_json();
    EXPECT_EQ(j["student"]["kind"], std::string(spec).substr(0, std::string(spec).find(':')));
    std::string html = render_distill_html(j, "t");
    EXPECT_NE(html.find("Fidelity"), std::string::npos);
    if (std::string(spec) == "gam") {
      // The irrelevant column matters least; shape functions are drawn as SVG.
      auto shapes = j["student"]["models"][0]["shapes"];
      EXPECT_EQ(shapes.back()["feature"], "noise");
      EXPECT_EQ(shapes.front()["feature"], "age");
      EXPECT_NE(html.find("<svg"), std::string::npos);
    }
    if (std::string(spec).rfind("tree", 0) == 0) {
      EXPECT_NE(j["student"]["rules"][0]["conditions"][0].get<std::string>().find("age"),
                std::string::npos);
    }
    if (std::string(spec).rfind("linear", 0) == 0) {
      // L1: the noise column's bins get (almost) no weight compared with age's.
      double noise = 0, age = 0;
      for (const auto& term : j["student"]["models"][0]["terms"]) {
        double w = std::fabs(term["weight"].get<double>());
        if (term["feature"] == "noise") noise += w;
        if (term["feature"] == "age") age += w;
      }
      EXPECT_LT(noise, 0.1 * age);
    }
  }
}

TEST(Students, TreeRulesNameTheClassesAndPlaceMissingValues) {
  // yes when x > 60 or x is missing: the tree must send missing values with the large ones.
  std::mt19937_64 rng(4);
  std::string csv = "x,teacher\n";
  for (int i = 0; i < 1200; ++i) {
    const double x = double(rng() % 10000) / 100;
    const bool missing = i % 7 == 0;
    csv += (missing ? std::string() : std::to_string(x)) + "," +
           (missing || x > 60 ? "yes" : "no") + "\n";
  }
  data::Table t = data::parse_csv(csv, "missing.csv");
  auto teacher = column_teacher(t, "teacher");
  DistillOptions o;
  o.features.exclude = {"teacher"};
  o.student = parse_student("tree:max_depth=2");
  DistillResult r = distill(t, *teacher, o);
  EXPECT_GE(r.test_fidelity.agreement, 0.97);
  nlohmann::json j = r.to_json()["student"];
  bool high_or_missing = false;
  for (const auto& rule : j["rules"]) {
    EXPECT_TRUE(rule["class"] == "yes" || rule["class"] == "no") << rule.dump();
    for (const auto& c : rule["conditions"]) {
      const std::string text = c;
      // Every numeric condition says where missing values go.
      EXPECT_TRUE(text.find("missing") != std::string::npos) << text;
      if (text.find("x > ") == 0 && text.find("or missing") != std::string::npos &&
          rule["class"] == "yes")
        high_or_missing = true;
    }
  }
  EXPECT_TRUE(high_or_missing) << j["rules"].dump();
  ASSERT_FALSE(j["splits"].empty());
  EXPECT_EQ(j["splits"][0]["missing"], "right");
  EXPECT_NEAR(j["splits"][0]["threshold"].get<double>(), 60, 3.5);
  ASSERT_TRUE(j.contains("cv"));
  EXPECT_EQ(j["cv"]["parameter"], "min_leaf");
  EXPECT_EQ(j["min_leaf"], j["cv"]["chosen"]);
  std::string html = render_distill_html(r.to_json(), "t");
  EXPECT_NE(html.find("class 'yes'"), std::string::npos);
}

TEST(Students, GamShapesAreFewLabelledMonotoneAndBanded) {
  // A noisy rising risk in age, a falling one in bmi, and a colour effect.
  std::mt19937_64 rng(6);
  std::normal_distribution<double> z(0, 1);
  std::string csv = "age,bmi,colour,teacher\n";
  for (int i = 0; i < 2000; ++i) {
    const double age = 20 + double(rng() % 6000) / 100, bmi = 18 + double(rng() % 2000) / 100;
    const int c = static_cast<int>(rng() % 3);
    const double logit = 0.08 * (age - 50) - 0.15 * (bmi - 28) + (c == 0 ? 0.8 : 0) + z(rng);
    csv += std::to_string(age) + "," + (i % 20 == 0 ? std::string() : std::to_string(bmi)) +
           "," + (c == 0 ? "red" : c == 1 ? "green" : "blue") + "," + (logit > 0 ? "yes" : "no") +
           "\n";
  }
  data::Table t = data::parse_csv(csv, "gam.csv");
  auto teacher = column_teacher(t, "teacher");
  DistillOptions o;
  o.features.exclude = {"teacher"};
  o.student = parse_student("gam:monotone=age:+;bmi:-,interactions=0");
  DistillResult r = distill(t, *teacher, o);
  EXPECT_GE(r.test_fidelity.agreement, 0.8);
  nlohmann::json j = r.to_json()["student"];
  ASSERT_TRUE(j.contains("cv"));
  EXPECT_EQ(j["cv"]["parameter"], "smoothing");
  EXPECT_DOUBLE_EQ(j["smoothing"].get<double>(), j["cv"]["chosen"].get<double>());
  EXPECT_EQ(j["models"][0]["class"], "yes");
  int checked = 0;
  for (const auto& sh : j["models"][0]["shapes"]) {
    const auto v = sh["values"].get<std::vector<double>>();
    const auto labels = sh["bins"].get<std::vector<std::string>>();
    ASSERT_EQ(labels.size(), v.size());
    const auto lo = sh["lower"].get<std::vector<double>>(), hi = sh["upper"].get<std::vector<double>>();
    for (size_t b = 0; b < v.size(); ++b) {
      EXPECT_LE(lo[b], v[b] + 1e-12);
      EXPECT_GE(hi[b], v[b] - 1e-12);
    }
    if (sh["feature"] == "colour") continue;
    // 16 quantile groups and the missing one; the 15 cuts in years / kg/m2, rising.
    EXPECT_EQ(v.size(), 17u) << sh["feature"];
    const auto edges = sh["edges"].get<std::vector<double>>();
    ASSERT_EQ(edges.size(), 15u);
    for (size_t e = 1; e < edges.size(); ++e) EXPECT_GT(edges[e], edges[e - 1]);
    EXPECT_EQ(labels.back(), "missing");
    EXPECT_EQ(labels[1].find('('), 0u);  // "(lo, hi]" in the column's units
    const double sign = sh["feature"] == "age" ? 1 : -1;
    EXPECT_EQ(sh["monotone"], sign > 0 ? "+" : "-");
    for (size_t b = 1; b + 1 < v.size(); ++b) EXPECT_GE(sign * (v[b] - v[b - 1]), -1e-9) << b;
    EXPECT_GT(sign * (v[v.size() - 2] - v[0]), 1.0);  // and it does rise (fall)
    ++checked;
  }
  EXPECT_EQ(checked, 2);
  EXPECT_NE(error_of([&] {
              o.student = parse_student("gam:monotone=weight:+");
              distill(t, *teacher, o);
            }).find("monotone names 'weight'"),
            std::string::npos);
}

// The number of pairwise interactions is chosen by cross-validation on the training rows: a
// teacher whose answer is an interaction of two columns (x > 50 exactly when y <= 50, an XOR no
// sum of shapes can fit) gets at least the one pair (x, y), first; a teacher additive in the
// columns gets none that the held-out folds do not pay for; a given number is kept.
TEST(Students, GamInteractionsAreChosenByCrossValidation) {
  std::mt19937_64 rng(9);
  std::string xor_csv = "x,y,z,teacher\n", add_csv = xor_csv;
  for (int i = 0; i < 2000; ++i) {
    const double x = double(rng() % 10000) / 100, y = double(rng() % 10000) / 100,
                 z = double(rng() % 10000) / 100;
    const std::string row = std::to_string(x) + "," + std::to_string(y) + "," + std::to_string(z) + ",";
    xor_csv += row + (((x > 50) != (y > 50)) ? "yes" : "no") + "\n";
    add_csv += row + ((x + 0.5 * y > 75) ? "yes" : "no") + "\n";
  }
  auto fit = [](const std::string& csv, const std::string& spec) {
    data::Table t = data::parse_csv(csv, "pairs.csv");
    auto teacher = column_teacher(t, "teacher");
    DistillOptions o;
    o.features.exclude = {"teacher"};
    o.student = parse_student(spec);
    o.seed = 3;
    DistillResult r = distill(t, *teacher, o);
    return std::make_pair(r.test_fidelity.agreement, r.to_json());
  };
  const auto [xor_agree, xor_report] = fit(xor_csv, "gam:bags=0");
  const nlohmann::json& xj = xor_report["student"];
  ASSERT_TRUE(xj.contains("interactions_cv")) << xj.dump();
  EXPECT_EQ(xj["interactions_cv"]["parameter"], "interactions");
  EXPECT_EQ(xj["interactions_cv"]["grid"], nlohmann::json({0, 1, 2, 3}));  // 3 columns: 3 pairs
  const int chosen = xj["interactions"].get<int>();
  EXPECT_GE(chosen, 1);
  EXPECT_EQ(xj["interactions_cv"]["chosen"].get<double>(), chosen);
  ASSERT_EQ(xj["models"][0]["interactions"].size(), static_cast<size_t>(chosen));
  const auto first = xj["models"][0]["interactions"][0]["features"];
  EXPECT_EQ(first, nlohmann::json({"x", "y"}));
  // Held-out: the pairs the CV kept carry the XOR; without them the GAM is near chance.
  const auto [none_agree, none_report] = fit(xor_csv, "gam:bags=0,interactions=0");
  const nlohmann::json& nj = none_report["student"];
  EXPECT_FALSE(nj.contains("interactions_cv"));
  EXPECT_TRUE(nj["models"][0]["interactions"].empty());
  std::cout << "XOR teacher: " << chosen << " pairs chosen, held-out agreement " << xor_agree
            << " (no pairs: " << none_agree << "); log-loss per count "
            << xj["interactions_cv"]["log_loss"].dump() << "\n";
  EXPECT_GT(xor_agree, none_agree + 0.2) << xor_agree << " vs " << none_agree;
  // The CV's own held-out figures say the same: the chosen count beats no pairs.
  const auto ll = xj["interactions_cv"]["log_loss"].get<std::vector<double>>();
  EXPECT_LT(ll[static_cast<size_t>(chosen) == 5 ? 4 : std::min<size_t>(chosen, 3)], ll[0]);
  // An additive teacher: the main effects fit it; pairs, if any, add nothing held out.
  const auto [add_agree, add_report] = fit(add_csv, "gam:bags=0");
  ASSERT_TRUE(add_report["student"].contains("interactions_cv"));
  EXPECT_GE(add_agree, 0.95);
  std::cout << "additive teacher: " << add_report["student"]["interactions"] << " pairs chosen, held-out "
            << add_agree << "\n";
  // The report names the choice.
  const std::string html = render_distill_html(xor_report, "t");
  EXPECT_NE(html.find("interactions = <b>"), std::string::npos);
}

TEST(Students, SameSeedSameStudent) {
  data::Table t = synthetic(800, 2);
  auto teacher = column_teacher(t, "teacher");
  DistillOptions o;
  o.student = parse_student("gam:rounds=50");
  o.features.exclude = {"teacher", "split"};
  o.seed = 11;
  std::string a = distill(t, *teacher, o).to_json()["student"].dump();
  std::string b = distill(t, *teacher, o).to_json()["student"].dump();
  EXPECT_EQ(a, b);
  o.seed = 12;
  EXPECT_NE(a, distill(t, *teacher, o).to_json()["student"].dump());
}

TEST(BadData, ClearErrors) {
  data::Table one = data::parse_csv("x,label\n1,a\n2,a\n3,a\n", "one.csv");
  EXPECT_NE(error_of([&] { column_teacher(one, "label"); }).find("has 1 class ('a')"),
            std::string::npos);
  EXPECT_NE(error_of([&] { column_teacher(one, "nope"); }).find("no column 'nope'"),
            std::string::npos);
  data::Table t = synthetic(100, 3);
  auto teacher = column_teacher(t, "teacher");
  DistillOptions o;
  o.label_column = "colour";  // labels that are not the teacher's classes
  std::string e = error_of([&] { distill(t, *teacher, o); });
  EXPECT_NE(e.find("synthetic.csv line 2, column 'colour'"), std::string::npos) << e;
  EXPECT_NE(e.find("not a class of the teacher"), std::string::npos) << e;
  data::Table single = data::parse_csv("x,label,t\n1,a,y\n2,a,n\n3,a,y\n", "single.csv");
  auto t2 = column_teacher(single, "t");
  o.label_column = "label";
  o.features.columns = {"x"};
  e = error_of([&] { distill(single, *column_teacher(single, "t", {"a", "b"}), o); });
  EXPECT_NE(e.find("label column 'label' has 1 class"), std::string::npos) << e;
  EXPECT_NE(error_of([] { parse_student("forest"); }).find("unknown student 'forest'"),
            std::string::npos);
  EXPECT_NE(
      error_of([] { parse_student("tree:depth=3"); }).find("student 'tree' has no option 'depth'"),
      std::string::npos);
}

TEST(FastTextTeacher, SparseLinearStudentAgreesOnHeldOutSentences) {
  CANDOR_REQUIRE_SHARED("models/fasttext_amazon/amazon_review_polarity.ftz");
  CANDOR_REQUIRE_SHARED("data/text/sentiment_labelled_sentences.csv");
  CANDOR_REQUIRE_SHARED("data/text/rt_polarity.csv");
  CANDOR_REQUIRE_SHARED("data/text/fine_foods_train.csv");
  CANDOR_REQUIRE_SHARED("data/text/fine_foods_test.csv");
  CANDOR_REQUIRE_SHARED("data/text/austen_books_lines.csv");
  data::ReadOptions ro;
  ro.types["label"] = data::ColumnType::kCategorical;
  data::Table t =
      data::read_csv(testing::shared_path("data/text/sentiment_labelled_sentences.csv"), ro);
  std::shared_ptr<const TextClassifier> ft =
      load_fasttext(testing::shared_path("models/fasttext_amazon/amazon_review_polarity.ftz"));
  auto teacher = classifier_teacher(ft, "text", /*normalise=*/true);
  DistillOptions o;
  o.features.columns = {"text"};
  o.features.max_vocab = 30000;
  o.student = parse_student("linear:lambda=5e-7");
  o.label_column = "label";
  o.label_map = {{"1", "__label__2"}, {"0", "__label__1"}};
  o.slice_columns = {"source"};
  o.seed = 1;
  // Transfer set: more sentences for the teacher to label (no labels used; the held-out rows are
  // never in it): rt_polarity, all fine_foods reviews and the first 40,000 lines of Austen's
  // novels with at least 4 words (55,662 rows; sparse rows keep this to ~0.3 GB).
  auto reviews = [](const char* path) {
    data::Table ff = data::read_csv(testing::shared_path(path));
    data::Column review = ff.column("review");
    review.name = "text";
    ff.set_column(review);
    return ff;
  };
  data::Table austen = data::read_csv(testing::shared_path("data/text/austen_books_lines.csv"));
  std::vector<size_t> lines;
  const data::Column& at = austen.column("text");
  for (size_t r = 0; r < austen.n_rows() && lines.size() < 40000; ++r)
    if (!at.is_missing(r) && Featurizer::words(at.raw[r], true).size() >= 4) lines.push_back(r);
  data::Table transfer =
      data::concat(data::concat(data::read_csv(testing::shared_path("data/text/rt_polarity.csv")),
                                data::concat(reviews("data/text/fine_foods_train.csv"),
                                             reviews("data/text/fine_foods_test.csv"))),
                   austen.select_rows(lines));
  ASSERT_EQ(transfer.n_rows(), 55662u);
  o.transfer = &transfer;
  DistillResult r = distill(t, *teacher, o);
  std::cout << "fastText -> linear: held-out agreement " << r.test_fidelity.agreement << ", train "
            << r.train_fidelity.agreement << ", KL " << r.test_fidelity.kl << ", non-zero "
            << r.to_json()["student"]["models"][0]["nonzero"] << "\n";
  // Issue 6 asks for 0.90; measured 0.9017 (541 of 600; see docs/distillation.md).
  EXPECT_GE(r.test_fidelity.agreement, 0.90);
  EXPECT_EQ(r.test_fidelity.slices.size(), 3u);
  const std::string dir = testing::temp_dir();
  write_report(r, dir + "/out", "fastText sentiment distilled");
  std::ifstream h(dir + "/out/report.html"), j(dir + "/out/report.json");
  EXPECT_TRUE(h.good());
  nlohmann::json rep = nlohmann::json::parse(j);
  EXPECT_EQ(rep["fidelity"]["test"]["rows"], 600);
}

TEST(LmTeacher, VerbaliserProbabilitiesAndErrors) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  std::shared_ptr<const Model> lm(&testing::stories260k(), [](const Model*) {});
  data::Table t =
      data::parse_csv("name,mood\nTom,happy\nLily,sad\nBen,happy\nSue,angry\n", "moods.csv");
  auto teacher = lm_teacher(lm, "{name} was {mood}. Was {name} happy? The answer was",
                            {"yes", "no"}, {" yes", " no"});
  EXPECT_EQ(fill_template("{name} is {mood}", t, 1), "Lily is sad");
  Probs p = teacher->predict(t, {0, 1, 2, 3});
  ASSERT_EQ(p.size(), 4u);
  for (const auto& row : p) {
    ASSERT_EQ(row.size(), 2u);
    EXPECT_NEAR(row[0] + row[1], 1.0, 1e-9);
  }
  // The same prompt gives the same probabilities.
  EXPECT_NEAR(p[0][0], teacher->predict(t, {0})[0][0], 1e-9);
  std::string e = error_of([&] {
    lm_teacher(lm, "{nope}", {"a", "b"}, {" yes", " no"})->predict(t, {0});
  });
  EXPECT_NE(e.find("no column 'nope'"), std::string::npos) << e;
  e = error_of([&] { lm_teacher(lm, "{name}", {"a", "b"}, {" yes", " yes"}); });
  EXPECT_NE(e.find("start with the same token"), std::string::npos) << e;
}

}  // namespace
}  // namespace candor::distill
