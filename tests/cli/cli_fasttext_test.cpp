// fastText classifiers from the command line (issue 13, defect 4): `info` describes one and
// `explain` gives its exact decomposition (console, JSON, HTML); the commands that need a
// network candor runs (generate, evaluate, convert, explain's other methods) say so and name
// the command to use. A tiny fastText model is written by the test itself (the file format of
// fastText 0.9); the real Amazon polarity model in ../shared is used when present.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <fstream>
#include <numeric>

#include "test_util.h"

namespace candor {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::run_command;
using testing::shared_path;

const std::string kCli = CANDOR_CLI_PATH;
constexpr const char* kAmazon = "models/fasttext_amazon/amazon_review_polarity.ftz";

using CliResult = testing::CliRun;
CliResult candor(const std::string& args) { return testing::run_cli(args); }

using testing::write_tiny_fasttext;

TEST(CliFastText, InfoDescribesTheClassifier) {
  const std::string model = write_tiny_fasttext(testing::temp_dir() + "/tiny.ftz");
  CliResult t = candor("info --model " + model);
  ASSERT_EQ(t.code, 0) << t.out;
  EXPECT_THAT(t.out, HasSubstr("fasttext .bin, file version 12"));
  EXPECT_THAT(t.out, HasSubstr("2 labels: __label__pos, __label__neg"));
  EXPECT_THAT(t.out, HasSubstr("4 words"));
  EXPECT_THAT(t.out, HasSubstr("candor explain --model " + model));
  EXPECT_THAT(t.out, Not(HasSubstr("invalid model header")));
  CliResult j = candor("info --json --model " + model);
  ASSERT_EQ(j.code, 0) << j.out;
  nlohmann::json info = nlohmann::json::parse(j.out);
  EXPECT_EQ(info["architecture"], "fasttext");
  EXPECT_EQ(info["kind"], "classifier");
  EXPECT_EQ(info["parameters"], 12);  // (4 words + 2 labels) x dim 2
  EXPECT_EQ(info["loss"], "softmax");
  EXPECT_EQ(info["labels"], nlohmann::json({"__label__pos", "__label__neg"}));
}

TEST(CliFastText, ExplainGivesTheExactDecomposition) {
  const std::string dir = testing::temp_dir();
  const std::string model = write_tiny_fasttext(dir + "/tiny.ftz");
  CliResult r = candor("explain --model " + model + " --prompt 'good movie' --no-progress --json " +
                       dir + "/e.json --html " + dir + "/e.html");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("== fasttext_exact"));
  EXPECT_THAT(r.out, HasSubstr("logit_difference(__label__pos vs __label__neg) = 1.333"));
  EXPECT_THAT(r.out, HasSubstr("+1.3333  good"));
  std::ifstream in(dir + "/e.json");
  nlohmann::json j = nlohmann::json::parse(in);
  EXPECT_EQ(j["target"], "logit(__label__pos) - logit(__label__neg)");
  const nlohmann::json& a = j["attributions"][0];
  EXPECT_EQ(a["method"], "fasttext_exact");
  const std::vector<double> total = a["total"].get<std::vector<double>>();
  ASSERT_EQ(total.size(), 3u);  // good, movie, </s>
  EXPECT_NEAR(total[0], 4.0 / 3, 1e-6);
  EXPECT_NEAR(total[1], 0.0, 1e-9);
  EXPECT_NEAR(std::accumulate(total.begin(), total.end(), 0.0),
              a["steps"][0]["target_value"].get<double>(), 1e-9);
  EXPECT_NEAR(a["steps"][0]["target_value"].get<double>(), 4.0 / 3, 1e-6);
  EXPECT_EQ(a["extra"]["exact"], true);
  std::ifstream html(dir + "/e.html");
  std::string page((std::istreambuf_iterator<char>(html)), std::istreambuf_iterator<char>());
  EXPECT_THAT(page, HasSubstr("<!DOCTYPE html>"));
  EXPECT_THAT(page, HasSubstr("fasttext_exact"));

  // A class by label, by its name without the prefix, or by #index; a contrast of two labels.
  CliResult neg = candor("explain --model " + model + " --prompt 'good movie' --target neg");
  ASSERT_EQ(neg.code, 0) << neg.out;
  EXPECT_THAT(neg.out, HasSubstr("(__label__neg vs __label__pos) = -1.333"));
  CliResult idx = candor("explain --model " + model + " --prompt 'bad' --target '#1'");
  ASSERT_EQ(idx.code, 0) << idx.out;
  EXPECT_THAT(idx.out, HasSubstr("(__label__neg vs __label__pos) = 2"));
  CliResult c = candor("explain --model " + model +
                       " --prompt 'good bad. movie' --contrast __label__neg,__label__pos "
                       "--granularity sentence");
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_THAT(c.out, HasSubstr("good bad."));
}

TEST(CliFastText, OptionsThatNeedANetworkSayWhatToUse) {
  const std::string dir = testing::temp_dir();
  const std::string model = write_tiny_fasttext(dir + "/tiny.ftz");
  const std::string base = "explain --model " + model + " --prompt good ";
  for (const auto& [args, part] : std::vector<std::pair<std::string, std::string>>{
           {"--method occlusion", "fasttext_exact"},
           {"--generate 3", "--generate needs a language model"},
           {"--evaluate", "exact"},
           {"--target-function prob", "logits"},
           {"--target __label__maybe", "__label__pos, __label__neg"},
           {"--contrast pos,pos", "0 for every input"}}) {
    CliResult r = candor(base + args);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.out;
    EXPECT_THAT(r.out, HasSubstr(part)) << args;
    EXPECT_THAT(r.out, HasSubstr("hint: ")) << args;
  }
  // Commands that run a transformer: a clear error naming the commands that take the file.
  std::ofstream(dir + "/t.csv") << "text\ngood movie\n";
  for (const std::string& cmd :
       {"generate --model " + model + " -p hi", "convert --model " + model + " --out " + dir + "/c",
        "evaluate --model " + model + " --data " + dir + "/t.csv --out " + dir + "/ev"}) {
    CliResult r = candor(cmd);
    EXPECT_EQ(r.code, 1) << cmd << "\n" << r.out;
    EXPECT_THAT(r.out, HasSubstr("is a fastText classifier")) << cmd;
    EXPECT_THAT(r.out, HasSubstr("candor explain --model " + model)) << cmd;
    EXPECT_THAT(r.out, Not(HasSubstr("invalid model header"))) << cmd;
  }
}

// The sibling in distill: a fastText model is recognised by its contents, not its name (a
// fastText file named otherwise was taken for a causal LM that "needs --prompt").
TEST(CliFastText, DistillRecognisesAFastTextTeacherByItsContents) {
  const std::string dir = testing::temp_dir();
  const std::string model = write_tiny_fasttext(dir + "/sentiment.model");
  {
    std::ofstream csv(dir + "/t.csv");
    csv << "text\n";
    const char* rows[] = {"good", "bad", "good movie", "bad movie", "movie good", "movie bad"};
    for (int i = 0; i < 60; ++i) csv << rows[i % 6] << "\n";
  }
  CliResult r = candor("distill --teacher " + model + " --data " + dir + "/t.csv --out " + dir +
                       "/d --no-progress");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("fasttext classifier"));
  EXPECT_THAT(r.out, Not(HasSubstr("needs --prompt")));
}

// The real model of the issue: explained and described from the CLI.
TEST(CliFastText, AmazonPolarityModelExplainsExactly) {
  CANDOR_REQUIRE_SHARED(kAmazon);
  const std::string json = testing::temp_dir() + "/e.json";
  CliResult r = candor("explain --model " + shared_path(kAmazon) +
                       " --prompt 'this product is great , i love it' --no-progress --json " + json);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("(__label__2 vs __label__1)"));  // positive predicted
  std::ifstream in(json);
  nlohmann::json a = nlohmann::json::parse(in)["attributions"][0];
  const std::vector<double> total = a["total"].get<std::vector<double>>();
  EXPECT_NEAR(std::accumulate(total.begin(), total.end(), 0.0),
              a["steps"][0]["target_value"].get<double>(), 1e-6);
  EXPECT_GT(a["steps"][0]["target_value"].get<double>(), 0);
  CliResult i = candor("info --model " + shared_path(kAmazon));
  ASSERT_EQ(i.code, 0) << i.out;
  EXPECT_THAT(i.out, HasSubstr("fasttext .ftz (quantised)"));
  EXPECT_THAT(i.out, HasSubstr("17530 words"));
}

}  // namespace
}  // namespace candor
