// What `candor explain` and `candor evaluate` show a person (issue 13, items 9 and 13): the
// quality block and the top-8 cut on the console, leading spaces and the tokenizer's own special
// tokens, targets given as text on a byte-level vocabulary, decoy rates in table.md and
// report.html, the lexicon decoy, and saturated classifier targets (warning and the log-odds
// default).
#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "candor/model.h"
#include "test_util.h"

namespace candor {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::shared_path;

const std::string kCli = CANDOR_CLI_PATH;
const std::string kBuiltin = std::string(CANDOR_SOURCE_DIR) + "/models/builtin/lm";

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

int candor(const std::string& args, std::string* out) {
  return testing::run_command(kCli + " " + args + " 2>&1", out);
}

// The DistilBERT fixture with a WordPiece vocab.txt and its class bias pushed towards POSITIVE,
// so that p(POSITIVE) is near 1 on every input (the saturated classifier of the issue).
std::string saturated_classifier() {
  static std::string dir;
  if (!dir.empty()) return dir;
  const std::string src = testing::temp_dir() + "/distil_src";
  std::filesystem::copy(std::string(CANDOR_SOURCE_DIR) + "/tests/fixtures/models/distilbert", src,
                        std::filesystem::copy_options::recursive);
  {
    std::ofstream v(src + "/vocab.txt");
    for (const char* t : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "film", "was",
                          "good", "bad", "##s", "a", "long", "day"})
      v << t << "\n";
  }
  auto model = load_model(src);
  bool set = false;
  for (auto& [name, t] : model->named_parameters()) {
    if (t.dim() == 1 && t.size(0) == 2) {  // the class bias, the one parameter of 2 values
      at::NoGradGuard g;
      t.copy_(at::tensor({-4.0f, 4.0f}).to(t.dtype()));
      set = true;
    }
  }
  EXPECT_TRUE(set) << "no class bias among the parameters";
  dir = testing::temp_dir() + "/distil_saturated";
  save_hf_folder(*model, dir);
  return dir;
}

TEST(CliExplainOutput, ConsoleShowsTheQualityBlockAndTheTopCut) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  std::string out;
  ASSERT_EQ(candor("explain --model " + shared_path("models/stories260K") +
                       " -p 'Once upon a time there was a little girl named Lily' "
                       "--method occlusion --method integrated_gradients:n_steps=4 --evaluate "
                       "--no-progress",
                   &out),
            0)
      << out;
  EXPECT_THAT(out, HasSubstr("quality: comprehensiveness AOPC "));
  EXPECT_THAT(out, HasSubstr("sufficiency AOPC "));
  EXPECT_THAT(out, HasSubstr("sensitivity: max "));
  EXPECT_THAT(out, HasSubstr("agreement (Spearman): integrated_gradients "));
  // 13 tokens after BOS ("girl" is three), 8 shown: the cut is said.
  EXPECT_THAT(out, HasSubstr("... and 5 more features"));
  // A word's leading space is visible; the first word after BOS has none.
  EXPECT_THAT(out, HasSubstr("  \xE2\x90\xA3Lily\n"));
  EXPECT_THAT(out, HasSubstr("  Once\n"));
}

TEST(CliExplainOutput, TargetTextOnAByteLevelVocabulary) {
  std::string out;
  // The builtin LM's vocabulary spells the word as "Ġthe" and has no bare "the".
  ASSERT_EQ(candor("explain --model " + kBuiltin +
                       " -p 'Once upon a time there was' --target the --no-progress",
                   &out),
            0)
      << out;
  EXPECT_THAT(out, HasSubstr("(\xE2\x90\xA3the)"));
  EXPECT_THAT(out, Not(HasSubstr("\xC4\xA0")));  // no "Ġ" anywhere
  ASSERT_EQ(candor("explain --model " + kBuiltin +
                       " -p 'Once upon a time there was' --contrast 'the,a' --no-progress",
                   &out),
            0)
      << out;
}

TEST(CliExplainOutput, SaturatedClassifierWarnsAndDefaultsToLogOdds) {
  const std::string m = saturated_classifier();
  const std::string dir = testing::temp_dir();
  std::string out;
  ASSERT_EQ(candor("explain --model " + m +
                       " -p 'the film was good' --target-function prob --method occlusion "
                       "--no-progress --json " +
                       dir + "/p.json --html " + dir + "/p.html",
                   &out),
            0)
      << out;
  auto p = nlohmann::json::parse(slurp(dir + "/p.json"));
  const auto& pa = p["attributions"][0];
  ASSERT_GT(pa["steps"][0]["target_value"].get<double>(), 0.99) << "the fixture must saturate";
  ASSERT_EQ(pa["warnings"].size(), 1u) << pa.dump();
  EXPECT_THAT(pa["warnings"][0].get<std::string>(), HasSubstr("saturated target"));
  ASSERT_EQ(p["warnings"].size(), 1u);
  EXPECT_THAT(out, HasSubstr("warning: saturated target: p('POSITIVE') = "));
  EXPECT_THAT(slurp(dir + "/p.html"), HasSubstr("warning: saturated target"));
  // BERT's first token is its own [CLS], not Llama's <s>.
  EXPECT_THAT(out, HasSubstr("[CLS]the film was good"));
  EXPECT_THAT(out, Not(HasSubstr("<s>")));
  double max_prob = 0;
  for (const auto& v : pa["total"]) max_prob = std::max(max_prob, std::fabs(v.get<double>()));

  // No --target-function: the log-odds, which keeps the scores away from zero, and no warning.
  out.clear();
  ASSERT_EQ(candor("explain --model " + m +
                       " -p 'the film was good' --method occlusion --no-progress --json " + dir +
                       "/d.json",
                   &out),
            0)
      << out;
  auto d = nlohmann::json::parse(slurp(dir + "/d.json"));
  const auto& da = d["attributions"][0];
  EXPECT_EQ(da["target_function"], "logodds");
  EXPECT_THAT(d["target"].get<std::string>(), HasSubstr("logodds"));
  EXPECT_TRUE(da["warnings"].empty()) << da.dump();
  EXPECT_THAT(out, Not(HasSubstr("warning: saturated")));
  double max_odds = 0;
  for (const auto& v : da["total"]) max_odds = std::max(max_odds, std::fabs(v.get<double>()));
  EXPECT_GT(max_odds, 1e-3);
  EXPECT_GT(max_odds, 50 * max_prob) << "prob scores " << max_prob << ", log-odds " << max_odds;
}

TEST(CliExplainOutput, DecoyRatesInTableMdAndHtmlAndTheLexiconDecoy) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  CANDOR_REQUIRE_SHARED("lexicons/vader_lexicon.txt");
  const std::string dir = testing::temp_dir();
  {
    std::ofstream f(dir + "/t.csv");
    f << "text\nThe dog was happy and the cat was sad.\nTom had a good day at the park.\n";
  }
  std::string out;
  ASSERT_EQ(candor("evaluate --model " + shared_path("models/stories260K") + " --data " + dir +
                       "/t.csv --method occlusion --metric comprehensiveness --bootstrap 10 "
                       "--decoys --lexicon " +
                       shared_path("lexicons/vader_lexicon.txt") + " --no-progress --out " + dir +
                       "/o",
                   &out),
            0)
      << out;
  auto j = nlohmann::json::parse(slurp(dir + "/o/table.json"));
  EXPECT_TRUE(j["decoy_ranking"]["comprehensiveness"]["caught_rate"].contains("decoy:lexicon"))
      << j["decoy_ranking"].dump();
  const std::string md = slurp(dir + "/o/table.md");
  EXPECT_THAT(md, HasSubstr("## Decoys: comprehensiveness"));
  EXPECT_THAT(md, HasSubstr("| caught |"));
  EXPECT_THAT(md, HasSubstr("decoy:lexicon"));
  const std::string html = slurp(dir + "/o/report.html");
  EXPECT_THAT(html, HasSubstr("<h3>Decoys: comprehensiveness</h3>"));
  EXPECT_THAT(html, HasSubstr("<th>caught</th>"));
  // The lexicon needs --decoys.
  out.clear();
  EXPECT_EQ(candor("evaluate --model " + shared_path("models/stories260K") + " --data " + dir +
                       "/t.csv --lexicon " + shared_path("lexicons/vader_lexicon.txt") +
                       " --out " + dir + "/o2",
                   &out),
            2)
      << out;
  EXPECT_THAT(out, HasSubstr("--decoys"));
}

}  // namespace
}  // namespace candor
