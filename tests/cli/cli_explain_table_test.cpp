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

TEST(CliExplainTable, EvaluateGradesATableModelPerColumn) {
  const Trained& t = trained();
  const std::string out = t.dir + "/eval";
  testing::CliRun r = cli("evaluate --model " + t.mlp + " --data " + t.data +
                          " --limit 12 --method occlusion --method exact_shapley --decoys "
                          "--bootstrap 50 --no-progress --out " +
                          out);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("| exact_shapley |"));
  nlohmann::json j = nlohmann::json::parse(std::ifstream(out + "/table.json"));
  EXPECT_EQ(j["n_examples"], 12);
  EXPECT_EQ(j["methods"], (std::vector<std::string>{"occlusion", "exact_shapley", "decoy:random",
                                                    "decoy:inverted"}));
  EXPECT_EQ(j["metrics"], (std::vector<std::string>{"comprehensiveness", "sufficiency", "deletion",
                                                    "insertion"}));
  EXPECT_EQ(j["columns"], (std::vector<std::string>{"x", "colour"}));
  EXPECT_TRUE(j["table_model"].get<bool>());
  EXPECT_EQ(j["table"]["exact_shapley"]["comprehensiveness"]["n"], 12);
  EXPECT_TRUE(j["table"]["exact_shapley"]["comprehensiveness"].contains("ci_low"));
  EXPECT_EQ(j["curves"]["occlusion"]["deletion"].size(), 21u);
  EXPECT_TRUE(j["decoy_ranking"]["comprehensiveness"]["win_rate"]["exact_shapley"].contains(
      "decoy:random"));
  // The same figures as the library on the same rows.
  data::ReadOptions ro;
  ro.types["x"] = data::ColumnType::kNumeric;
  ro.types["colour"] = data::ColumnType::kCategorical;
  data::Table table = data::read_table(t.data, ro);
  auto mlp = std::shared_ptr<const distill::MlpClassifier>(distill::MlpClassifier::load(t.mlp));
  distill::TableEvaluateOptions o;
  o.explain.methods = {"exact_shapley"};
  std::vector<size_t> rows(12);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = i;
  auto ev = distill::evaluate_table_explanations(distill::TableExplainer(mlp), table, rows, o);
  EXPECT_NEAR(j["table"]["exact_shapley"]["comprehensiveness"]["mean"].get<double>(),
              ev.summary["table"]["exact_shapley"]["comprehensiveness"]["mean"].get<double>(),
              1e-9);
  std::ifstream md(out + "/table.md"), html(out + "/report.html");
  EXPECT_TRUE(md.good());
  EXPECT_TRUE(html.good());
}

TEST(CliExplainTable, EvaluateRefusesTextOptionsOnATableModel) {
  const Trained& t = trained();
  for (const std::string& opt : {std::string("--baseline pad"), std::string("--max-tokens 8"),
                                 std::string("--generate 2"), std::string("--attack noise")}) {
    testing::CliRun r = cli("evaluate --model " + t.mlp + " --data " + t.data + " " + opt +
                            " --out " + t.dir + "/bad_eval");
    EXPECT_NE(r.code, 0) << opt;
    const std::string name = opt.substr(0, opt.find(' '));
    EXPECT_THAT(r.out, HasSubstr(name + ": '" + t.mlp + "' is a model over table rows")) << opt;
    EXPECT_THAT(r.out, HasSubstr("leave " + name + " out")) << opt;
  }
  testing::CliRun r = cli("evaluate --model " + t.mlp + " --data " + t.data +
                          " --metric avg_sensitivity --out " + t.dir + "/bad_eval");
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("grades token explanations of a language model"));
}

}  // namespace
}  // namespace candor
