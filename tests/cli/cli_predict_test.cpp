// `candor predict`: per-row predictions of every kind of model candor runs or trains, equal to
// what the library computes in process; CSV and JSON Lines in and out; bad columns named; bad
// rows failed or skipped; the output complete or absent.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "candor/classifier.h"
#include "candor/data.h"
#include "candor/distill.h"
#include "candor/generate.h"
#include "candor/model.h"
#include "test_util.h"

namespace candor {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

testing::CliRun cli(const std::string& args) { return testing::run_cli(args); }

std::string write(const std::string& dir, const std::string& name, const std::string& text) {
  const std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

std::vector<nlohmann::json> jsonl_of(const std::string& path) {
  std::vector<nlohmann::json> out;
  for (const std::string& l : lines_of(path)) out.push_back(nlohmann::json::parse(l));
  return out;
}

std::vector<size_t> all_rows(const data::Table& t) {
  std::vector<size_t> r(t.n_rows());
  for (size_t i = 0; i < r.size(); ++i) r[i] = i;
  return r;
}

// The predictions file as a table (read by candor's own CSV reader) against probabilities
// computed in process: the same class per row and the same probabilities (printed exactly).
void expect_predictions(const std::string& out, const std::vector<std::string>& classes,
                        const distill::Probs& want, const std::vector<int64_t>& lines) {
  data::Table t = data::read_table(out);
  ASSERT_EQ(t.n_rows(), want.size()) << out;
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(t.column("line").numeric[i], lines[i]);
    size_t best = std::max_element(want[i].begin(), want[i].end()) - want[i].begin();
    EXPECT_EQ(t.column("class").raw[i], classes[best]) << "row " << i;
    for (size_t k = 0; k < classes.size(); ++k)
      EXPECT_EQ(std::stod(t.column("class:" + classes[k]).raw[i]), want[i][k])
          << "row " << i << " class " << classes[k];
  }
}

using testing::write_tiny_fasttext;

const char* kReviews =
    "id,review\n1,good movie\n2,bad bad movie\n3,\"good, good, and \"\"bad\"\"\"\n4,movie\n"
    "5,good good good\n";

TEST(CliPredict, FastTextCsvAndJsonLinesEqualTheLibrary) {
  const std::string dir = testing::temp_dir();
  const std::string model = write_tiny_fasttext(dir + "/tiny.ftz");
  const std::string data = write(dir, "reviews.csv", kReviews);
  testing::CliRun r = cli("predict --model " + model + " --data " + data +
                          " --text-column review --keep id --out " + dir + "/p.csv");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("predicted 5 rows"));
  std::unique_ptr<TextClassifier> ft = load_fasttext(model);
  data::Table in = data::read_table(data);
  distill::Probs want;
  for (size_t i = 0; i < in.n_rows(); ++i)
    want.push_back(ft->predict_proba(in.column("review").raw[i]));
  expect_predictions(dir + "/p.csv", ft->labels(), want, {2, 3, 4, 5, 6});
  EXPECT_EQ(lines_of(dir + "/p.csv")[0], "line,id,class,class:__label__pos,class:__label__neg");
  // JSON Lines in and out (by the name, and by --format): the same numbers.
  std::string jin;
  for (size_t i = 0; i < in.n_rows(); ++i)
    jin += nlohmann::json{{"id", i + 1}, {"review", in.column("review").raw[i]}}.dump() + "\n";
  const std::string jdata = write(dir, "reviews.jsonl", jin);
  for (const std::string& out : {dir + "/p.jsonl", dir + "/p.txt --format jsonl"}) {
    r = cli("predict --model " + model + " --data " + jdata + " --text-column review --keep id " +
            "--out " + out);
    ASSERT_EQ(r.code, 0) << r.out;
  }
  for (const std::string& out : {dir + "/p.jsonl", dir + "/p.txt"}) {
    std::vector<nlohmann::json> rows = jsonl_of(out);
    ASSERT_EQ(rows.size(), want.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      EXPECT_EQ(rows[i]["line"], i + 1);
      EXPECT_EQ(rows[i]["id"], i + 1);
      EXPECT_EQ(rows[i]["class:__label__pos"].get<double>(), want[i][0]);
      EXPECT_EQ(rows[i]["class:__label__neg"].get<double>(), want[i][1]);
    }
  }
  // The output is a teacher: distill reads its class and class:NAME columns back.
  EXPECT_EQ(data::read_table(dir + "/p.csv").column("class").raw[0], "__label__pos");
}

TEST(CliPredict, BuiltinSentimentModelEqualsTheLibrary) {
  const std::string dir = testing::temp_dir();
  const std::string model = std::string(CANDOR_SOURCE_DIR) + "/models/builtin/sentiment";
  const std::string data =
      write(dir, "t.csv", "text\nwhat a wonderful film\nterrible and boring\nit was fine\n");
  testing::CliRun r =
      cli("predict --model " + model + " --data " + data + " --out " + dir + "/p.csv --threads 1");
  ASSERT_EQ(r.code, 0) << r.out;
  std::shared_ptr<const Model> m = load_model(model);
  std::unique_ptr<TextClassifier> c = model_text_classifier(m);
  data::Table in = data::read_table(data);
  distill::Probs want = c->predict_proba_batch(in.column("text").raw);
  data::Table got = data::read_table(dir + "/p.csv");
  ASSERT_EQ(got.n_rows(), 3u);
  for (size_t i = 0; i < 3; ++i)
    for (size_t k = 0; k < c->labels().size(); ++k)  // one thread here too: within rounding
      EXPECT_NEAR(got.column("class:" + c->labels()[k]).numeric[i], want[i][k], 1e-5);
  EXPECT_EQ(got.column("class").raw[0], "positive");
  EXPECT_EQ(got.column("class").raw[1], "negative");
}

// A table whose label follows x (numbers) and colour (categories).
std::string table_csv() {
  std::string csv = "x,colour,label\n";
  const char* colours[] = {"red", "green", "blue"};
  for (int i = 0; i < 600; ++i) {
    int x = (i * 37) % 100, c = i % 3;
    csv +=
        std::to_string(x) + "," + colours[c] + "," + ((x > 50) != (c == 2) ? "yes" : "no") + "\n";
  }
  return csv;
}

TEST(CliPredict, TrainedMlpEqualsTheLibraryAndNamesAMissingColumn) {
  const std::string dir = testing::temp_dir();
  const std::string data = write(dir, "t.csv", table_csv());
  testing::CliRun r =
      cli("train --data " + data + " --label label --epochs 3 --out " + dir + "/mlp");
  ASSERT_EQ(r.code, 0) << r.out;
  // New rows, an unseen colour and a missing x among them; no label column needed.
  const std::string fresh =
      write(dir, "new.csv", "colour,x\nred,10\ngreen,90\nblue,\npurple,60\nblue,70\n");
  r = cli("predict --model " + dir + "/mlp --data " + fresh + " --out " + dir + "/p.csv");
  ASSERT_EQ(r.code, 0) << r.out;
  std::unique_ptr<distill::MlpClassifier> mlp = distill::MlpClassifier::load(dir + "/mlp");
  data::ReadOptions ro;
  ro.types["x"] = data::ColumnType::kNumeric;
  data::Table in = data::read_table(fresh, ro);
  expect_predictions(dir + "/p.csv", mlp->classes(), mlp->predict(in, all_rows(in)),
                     {2, 3, 4, 5, 6});
  // The checkpoint file names the same model.
  r = cli("predict --model " + dir + "/mlp/model.ckpt --data " + fresh + " --out " + dir +
          "/q.csv");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(lines_of(dir + "/q.csv"), lines_of(dir + "/p.csv"));
  // A column the model reads is missing: named, with the columns the file has; no output.
  const std::string lacking = write(dir, "lacking.csv", "color,x\nred,1\n");
  r = cli("predict --model " + dir + "/mlp --data " + lacking + " --out " + dir + "/bad.csv");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("missing column 'colour'"));
  EXPECT_THAT(r.out, HasSubstr("color, x"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/bad.csv"));
}

TEST(CliPredict, DistilledStudentsEqualTheLibrary) {
  const std::string dir = testing::temp_dir();
  const std::string data = write(dir, "t.csv", table_csv());
  const std::string fresh = write(dir, "new.csv", "x,colour\n10,red\n90,green\n,blue\n60,purple\n");
  data::ReadOptions ro;
  ro.types["x"] = data::ColumnType::kNumeric;
  data::Table in = data::read_table(fresh, ro);
  for (const std::string student : {"linear", "tree", "gam:rounds=30"}) {
    const std::string out = dir + "/" + student.substr(0, student.find(':'));
    testing::CliRun r = cli("distill --teacher-column label --data " + data + " --student " +
                            student + " --out " + out);
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_THAT(r.out, HasSubstr(out + "/student.json"));
    r = cli("predict --model " + out + " --data " + fresh + " --out " + out + "/p.csv");
    ASSERT_EQ(r.code, 0) << student << ": " << r.out;
    std::unique_ptr<distill::SavedStudent> s = distill::SavedStudent::load(out);
    expect_predictions(out + "/p.csv", s->classes(), s->predict(in, all_rows(in)), {2, 3, 4, 5});
  }
}

// A distilled glass-box student is a model under audit too (issue 15): the fairness audit's
// accuracy is the share of rows where the student's class is the label, computed here from
// the student's own predictions.
TEST(CliPredict, ADistilledStudentIsAuditedWithModel) {
  const std::string dir = testing::temp_dir();
  const std::string data = write(dir, "t.csv", table_csv());
  const std::string out = dir + "/tree";
  testing::CliRun r =
      cli("distill --teacher-column label --data " + data + " --student tree --out " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  r = cli("audit fairness --model " + out + " --data " + data +
          " --label label --label-positive yes --group colour --n-boot 10 --out " + dir + "/a");
  ASSERT_EQ(r.code, 0) << r.out;
  std::ifstream in(dir + "/a/audit.json");
  nlohmann::json j = nlohmann::json::parse(in);
  EXPECT_EQ(j["model"]["kind"], "student");
  ASSERT_EQ(j["groups"].size(), 3u);
  data::ReadOptions ro;
  ro.types["x"] = data::ColumnType::kNumeric;
  data::Table t = data::read_table(data, ro);
  std::unique_ptr<distill::SavedStudent> s = distill::SavedStudent::load(out);
  distill::Probs p = s->predict(t, all_rows(t));
  const std::vector<std::string> classes = s->classes();
  size_t right = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    size_t best = std::max_element(p[i].begin(), p[i].end()) - p[i].begin();
    right += classes[best] == t.column("label").raw[i];
  }
  EXPECT_NEAR(j["overall"]["metrics"]["accuracy"].get<double>(),
              double(right) / double(p.size()), 1e-12);
}

// Defect 3 of issue 13: a model candor trained is accepted wherever a model is: info describes
// the MLP of candor train and a distilled student; the commands that run language models say
// what it is and which commands take it, instead of "no model checkpoint found".
TEST(CliTableModels, InfoDescribesThemAndOtherCommandsSayWhichTakeThem) {
  const std::string dir = testing::temp_dir();
  const std::string data = write(dir, "t.csv", table_csv());
  testing::CliRun r =
      cli("train --data " + data + " --label label --epochs 2 --hidden 8 --out " + dir + "/mlp");
  ASSERT_EQ(r.code, 0) << r.out;
  r = cli("distill --teacher-column label --data " + data + " --student tree --out " + dir +
          "/tree");
  ASSERT_EQ(r.code, 0) << r.out;
  for (const std::string m : {dir + "/mlp", dir + "/mlp/model.ckpt", dir + "/mlp/mlp.json"}) {
    r = cli("info --model " + m + " --json");
    ASSERT_EQ(r.code, 0) << m << ": " << r.out;
    nlohmann::json j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["architecture"], "mlp");
    EXPECT_EQ(j["labels"], nlohmann::json({"no", "yes"}));
    EXPECT_EQ(j["columns"], nlohmann::json({{"colour", "categorical"}, {"x", "numeric"}}));
    EXPECT_EQ(j["hidden"], nlohmann::json({8}));
  }
  r = cli("info --model " + dir + "/tree");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("a tree student distilled by candor distill"));
  EXPECT_THAT(r.out, HasSubstr("colour (categorical), x (numeric)"));
  EXPECT_THAT(r.out, HasSubstr("candor predict --model"));
  for (const std::string m : {dir + "/mlp", dir + "/mlp/model.ckpt", dir + "/tree"}) {
    for (const std::string cmd :
         {std::string("explain --prompt hello --model "), std::string("generate --model "),
          "convert --out " + dir + "/conv --model "}) {
      r = cli(cmd + m);
      EXPECT_NE(r.code, 0) << cmd << m << ": " << r.out;
      EXPECT_THAT(r.out, HasSubstr("a model over table rows")) << cmd << m;
      // explain takes it, with rows instead of a prompt (cli_explain_table_test.cpp).
      EXPECT_THAT(r.out, HasSubstr(cmd.rfind("explain", 0) == 0 ? "explain a row with --data FILE"
                                                                 : "candor predict --model " + m))
          << cmd << m;
      EXPECT_THAT(r.out, Not(HasSubstr("no model checkpoint found"))) << cmd << m;
    }
  }
}

// A transformer student: its distill --out folder stands for the Hugging Face folder in it, for
// predict and for every command that loads a model (info here).
TEST(CliPredict, TransformerStudentFolderEqualsItsModelFolder) {
  const std::string dir = testing::temp_dir();
  std::string csv = "text,label\n";
  const char* words[] = {"good", "bad", "fine", "awful", "great", "poor"};
  for (int i = 0; i < 80; ++i)
    csv += std::string(words[i % 6]) + " film " + words[(i * 5) % 6] + "," +
           (i % 6 % 2 ? "0" : "1") + "\n";
  const std::string data = write(dir, "t.csv", csv);
  const std::string out = dir + "/tr";
  testing::CliRun r = cli("distill --teacher-column label --data " + data +
                          " --columns text --type text=text --threads 1 --student " +
                          "transformer:dim=16,layers=1,heads=2,epochs=1 --out " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  r = cli("predict --model " + out + " --data " + data + " --out " + dir + "/a.csv");
  ASSERT_EQ(r.code, 0) << r.out;
  r = cli("predict --model " + out + "/model --data " + data + " --out " + dir + "/b.csv");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(lines_of(dir + "/a.csv"), lines_of(dir + "/b.csv"));
  EXPECT_EQ(lines_of(dir + "/a.csv").size(), 81u);
  std::shared_ptr<const Model> m = load_model(out + "/model");
  std::unique_ptr<TextClassifier> c = model_text_classifier(m);
  data::Table in = data::read_table(data);
  distill::Probs want = c->predict_proba_batch(in.column("text").raw);
  data::Table got = data::read_table(dir + "/a.csv");
  for (size_t i = 0; i < want.size(); ++i)
    for (size_t k = 0; k < c->labels().size(); ++k)
      EXPECT_NEAR(got.column("class:" + c->labels()[k]).numeric[i], want[i][k], 1e-5) << i;
  r = cli("info --json --model " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("\"kind\": \"classifier\""));
}

TEST(CliPredict, BadRowsFailOrAreSkippedAndTheOutputIsComplete) {
  const std::string dir = testing::temp_dir();
  const std::string model = write_tiny_fasttext(dir + "/tiny.ftz");
  std::string csv = "id,text\n";
  for (int i = 0; i < 3000; ++i)
    csv += std::to_string(i) + "," + (i == 2500 ? std::string() : "good movie") + "\n";
  csv += "3000,bad,extra\n";
  const std::string data = write(dir, "big.csv", csv);
  // fail: the first bad row is named; nothing is written, not even the rows before it.
  testing::CliRun r =
      cli("predict --model " + model + " --data " + data + " --out " + dir + "/p.csv");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("big.csv line 2502: column 'text': no value"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/p.csv"));
  // skip: both bad rows listed, every other row predicted, in order.
  r = cli("predict --model " + model + " --data " + data + " --out " + dir +
          "/p.csv --on-error skip --keep id");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("skipped 2 bad records"));
  EXPECT_THAT(r.out, HasSubstr("line 2502: column 'text'"));
  EXPECT_THAT(r.out, HasSubstr("line 3002: 3 fields"));
  std::vector<std::string> lines = lines_of(dir + "/p.csv");
  ASSERT_EQ(lines.size(), 1u + 2999u);
  EXPECT_THAT(lines[1], ::testing::StartsWith("2,0,__label__pos,"));
  EXPECT_THAT(lines.back(), ::testing::StartsWith("3001,2999,__label__pos,"));
  // A wrong text column is named with the columns the file has.
  r = cli("predict --model " + model + " --data " + data + " --out " + dir +
          "/q.csv --text-column body");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("missing column 'body'"));
  EXPECT_THAT(r.out, HasSubstr("id, text"));
  // An output name that says no format is a usage error before any work.
  r = cli("predict --model " + model + " --data " + data + " --out " + dir + "/p.txt");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("--format"));
}

TEST(CliPredict, CausalLmGeneratesPerRowAndClassifiesThroughVerbalisers) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  const std::string dir = testing::temp_dir();
  const std::string model = testing::shared_path("models/stories260K/stories260K.bin");
  const std::string tok = testing::shared_path("models/stories260K/tok512.bin");
  const std::string data =
      write(dir, "p.csv", "name,text\nTom,Once upon a time\nLily,The cat\nSam,One day\n");
  testing::CliRun r =
      cli("predict --model " + model + " --tokenizer " + tok + " --data " + data + " --out " + dir +
          "/g.jsonl -n 12 --temperature 0.8 --seed 5 --threads 1");
  ASSERT_EQ(r.code, 0) << r.out;
  LoadOptions lo;
  lo.tokenizer_path = tok;
  std::shared_ptr<const Model> lm = load_model(model, lo);
  std::vector<nlohmann::json> rows = jsonl_of(dir + "/g.jsonl");
  ASSERT_EQ(rows.size(), 3u);
  const char* prompts[] = {"Once upon a time", "The cat", "One day"};
  for (size_t i = 0; i < 3; ++i) {
    GenerateOptions g;
    g.max_new_tokens = 12;
    g.temperature = 0.8f;
    g.seed = 5 + (i + 2);  // seed + the row's line
    EXPECT_EQ(rows[i]["generated"], generate(*lm, prompts[i], g).text) << "row " << i;
  }
  // As a classifier: a prompt with the row's fields, one verbaliser token per class.
  r = cli("predict --model " + model + " --tokenizer " + tok + " --data " + data + " --out " + dir +
          "/c.csv --prompt '{name} was' --classes happy,sad --verbalisers ' happy, sad' "
          "--threads 1");
  ASSERT_EQ(r.code, 0) << r.out;
  std::unique_ptr<distill::Teacher> t =
      distill::lm_teacher(lm, "{name} was", {"happy", "sad"}, {" happy", " sad"});
  data::Table in = data::read_table(data);
  expect_predictions(dir + "/c.csv", t->classes(), t->predict(in, all_rows(in)), {2, 3, 4});
}

}  // namespace
}  // namespace candor
