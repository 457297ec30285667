// `candor explain` on a model over table rows (issue 13, defect 3): the MLP of candor train and a
// glass-box student of candor distill explained per input column; one row's JSON has one feature
// per column labelled "column=value", equal to the library's scores; several rows give a table;
// bad rows, missing columns and text-model options are refused with what to do.
#include <nlohmann/json.hpp>

#include <fstream>

#include "candor/data.h"
#include "candor/distill.h"
#include "candor/table_explain.h"
#include "test_util.h"

namespace candor {
namespace {

using ::testing::HasSubstr;

const std::string kLm = std::string(CANDOR_SOURCE_DIR) + "/models/builtin/lm";

testing::CliRun cli(const std::string& args) { return testing::run_cli(args); }

std::string write(const std::string& dir, const std::string& name, const std::string& text) {
  const std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

std::string table_csv() {
  std::string csv = "x,colour,label\n";
  const char* colours[] = {"red", "green", "blue"};
  for (int i = 0; i < 300; ++i) {
    int x = (i * 37) % 100, c = i % 5 < 3 ? 0 : i % 5 - 2;  // red 60%, green and blue 20%
    csv +=
        std::to_string(x) + "," + colours[c] + "," + ((x > 50) != (c == 2) ? "yes" : "no") + "\n";
  }
  return csv;
}

struct Trained {
  std::string dir, data, mlp;
};

const Trained& trained() {
  static Trained t = [] {
    Trained t;
    t.dir = testing::temp_dir();
    t.data = write(t.dir, "t.csv", table_csv());
    t.mlp = t.dir + "/mlp";
    testing::CliRun r = cli("train --data " + t.data +
                            " --label label --epochs 3 --hidden 8 --threads 1 --out " + t.mlp);
    EXPECT_EQ(r.code, 0) << r.out;
    return t;
  }();
  return t;
}

TEST(CliExplainTable, ARowOfATrainedMlpIsExplainedPerColumn) {
  const Trained& t = trained();
  const std::string json = t.dir + "/row.json", html = t.dir + "/row.html";
  testing::CliRun r = cli(
      "explain --model " + t.mlp + " --data " + t.data + " --row 4 --method occlusion " +
      "--method exact_shapley --method integrated_gradients --json " + json + " --html " + html);
  ASSERT_EQ(r.code, 0) << r.out;
  // Row 4 is line 6: x = 48, colour = blue.
  EXPECT_THAT(r.out, HasSubstr("row 4 (line 6) of " + t.data + ": x=48, colour=blue"));
  EXPECT_THAT(r.out, HasSubstr("== exact_shapley"));
  nlohmann::json j = nlohmann::json::parse(std::ifstream(json));
  EXPECT_EQ(j["row"], 4);
  EXPECT_EQ(j["line"], 6);
  ASSERT_EQ(j["attributions"].size(), 3u);
  data::Table table = data::read_table(t.data);
  auto mlp = std::shared_ptr<const distill::MlpClassifier>(distill::MlpClassifier::load(t.mlp));
  distill::Probs p = mlp->predict(table, {4});
  const std::string predicted = p[0][1] > p[0][0] ? "yes" : "no";
  EXPECT_EQ(j["predicted"], predicted);
  distill::TableExplainOptions o;
  o.methods = {"occlusion", "exact_shapley", "integrated_gradients"};
  auto want = distill::TableExplainer(mlp).explain(table, {4}, o);
  for (size_t m = 0; m < 3; ++m) {
    const nlohmann::json& a = j["attributions"][m];
    EXPECT_EQ(a["method"], o.methods[m]);
    EXPECT_EQ(a["target_function"], "logodds");
    ASSERT_EQ(a["features"].size(), 2u);
    EXPECT_EQ(a["features"][0]["label"], "x=48");
    EXPECT_EQ(a["features"][1]["label"], "colour=blue");
    EXPECT_EQ(a["extra"]["baseline"]["colour"], "most frequent 'red'");
    EXPECT_THAT(a["extra"]["baseline"]["x"].get<std::string>(), HasSubstr("mean "));
    ASSERT_EQ(a["steps"].size(), 1u) << a.dump();  // one step: the class explained
    EXPECT_EQ(a["steps"][0]["text"], predicted);
    const auto& scores = a["steps"][0]["scores"];
    ASSERT_EQ(scores.size(), 2u) << a.dump();
    for (size_t k = 0; k < 2; ++k)
      EXPECT_NEAR(scores[k].get<double>(), want[0].attributions[m].scores[k], 1e-9) << m << k;
  }
  std::ifstream h(html);
  std::string page((std::istreambuf_iterator<char>(h)), std::istreambuf_iterator<char>());
  EXPECT_THAT(page, HasSubstr("colour=blue"));
}

TEST(CliExplainTable, SeveralRowsGiveATableAndACsv) {
  const Trained& t = trained();
  const std::string csv = t.dir + "/rows.csv", json = t.dir + "/rows.json";
  testing::CliRun r = cli("explain --model " + t.mlp + " --data " + t.data +
                          " --row 0-2,10 --no-progress --csv " + csv + " --json " + json);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("== exact_shapley"));
  EXPECT_THAT(r.out, HasSubstr("predicted"));
  data::Table out = data::read_table(csv);
  ASSERT_EQ(out.n_rows(), 4u);
  EXPECT_EQ(out.column("row").raw[3], "10");
  EXPECT_EQ(out.column("line").raw[3], "12");
  nlohmann::json j = nlohmann::json::parse(std::ifstream(json));
  ASSERT_EQ(j["rows"].size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    // The CSV's scores are the JSON's; the scores add up to target - baseline (Shapley).
    const nlohmann::json& a = j["rows"][i]["attributions"][0];
    double sum = 0;
    for (size_t k = 0; k < 2; ++k) {
      const double s = a["steps"][0]["scores"][k].get<double>();
      sum += s;
      EXPECT_NEAR(out.column(k == 0 ? "x" : "colour").numeric[i], s, 1e-5 * (1 + std::fabs(s)));
    }
    EXPECT_NEAR(
        sum,
        a["steps"][0]["target_value"].get<double>() - a["steps"][0]["baseline_value"].get<double>(),
        1e-9);
  }
}

TEST(CliExplainTable, AGlassBoxStudentIsExplainedByPerturbation) {
  const Trained& t = trained();
  const std::string tree = t.dir + "/tree", json = t.dir + "/tree.json";
  testing::CliRun r =
      cli("distill --teacher-column label --data " + t.data + " --student tree --out " + tree);
  ASSERT_EQ(r.code, 0) << r.out;
  r = cli("explain --model " + tree + " --data " + t.data + " --row 7 --json " + json);
  ASSERT_EQ(r.code, 0) << r.out;
  nlohmann::json j = nlohmann::json::parse(std::ifstream(json));
  EXPECT_EQ(j["attributions"][0]["extra"]["table_model"], "student");
  r = cli("explain --model " + tree + " --data " + t.data +
          " --row 7 --method integrated_gradients");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("use occlusion, exact_shapley or shapley_sampling"));
}

TEST(CliExplainTable, BadRowsColumnsAndOptionsAreNamed) {
  const Trained& t = trained();
  testing::CliRun r = cli("explain --model " + t.mlp + " --data " + t.data + " --row 300");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("--row 300: " + t.data + " has 300 data rows (0..299)"));
  r = cli("explain --model " + t.mlp + " --data " + t.data + " --row x3");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("is not a row index"));
  const std::string cut = write(t.dir, "cut.csv", "x,label\n3,yes\n");
  r = cli("explain --model " + t.mlp + " --data " + cut + " --row 0");
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("colour"));
  r = cli("explain --model " + t.mlp + " --prompt hello");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("a model over table rows"));
  EXPECT_THAT(r.out, HasSubstr("--data FILE --row N"));
  r = cli("explain --model " + t.mlp + " --data " + t.data + " --row 0 --evaluate");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("--evaluate"));
  r = cli("explain --model " + t.mlp + " --data " + t.data + " --row 0 --method lime");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("the column methods are occlusion"));
  r = cli("explain --model " + t.mlp + " --data " + t.data + " --row 0 --target maybe");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("its classes are no, yes"));
  // --data on a text model, and a text model without --prompt.
  r = cli("explain --model " + kLm + " --data " + t.data);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("--data explains rows of a table model"));
  r = cli("explain --model " + kLm);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("--prompt is required"));
}

}  // namespace
}  // namespace candor
