// `candor evaluate` and `candor explain --evaluate` end to end: the quality block, the table,
// resumption after an interruption, and bad data reported with line numbers.
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_util.h"

namespace candor {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::run_command;
using testing::shared_path;

const std::string kCli = CANDOR_CLI_PATH;

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

int candor(const std::string& args, std::string* out) {
  return run_command(kCli + " " + args + " 2>&1", out);
}

const char* kTexts[] = {
    "Once upon a time, there was a little girl named Lily.",
    "Tom had a big red ball. He liked to play with it in the park.",
    "The sun was hot and the cat wanted to sleep.",
    "One day, a bird flew to the tree and sang a song.",
    "Mom made a cake for the party and everyone was happy.",
    "The dog ran fast to catch the stick.",
    "Sue and Ben went to the beach to build a sand castle.",
    "The little boat sailed on the blue sea.",
};

std::string write_jsonl(const std::string& dir) {
  std::string path = dir + "/texts.jsonl";
  std::ofstream f(path);
  for (const char* t : kTexts) f << nlohmann::json{{"text", t}, {"id", 1}}.dump() << "\n";
  return path;
}

std::string eval_args(const std::string& data, const std::string& out) {
  return "evaluate --model " + shared_path("models/stories260K") + " --data " + data +
         " --method occlusion --method integrated_gradients:n_steps=4 --metric faithfulness "
         "--metric sensitivity --sensitivity-samples 2 --max-tokens 16 --bootstrap 200 "
         "--no-progress --out " +
         out;
}

TEST(CliEvaluate, ExplainEvaluateAttachesTheQualityBlock) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  std::string dir = testing::temp_dir(), out;
  int code = candor("explain --model " + shared_path("models/stories260K") +
                        " --prompt 'Once upon a time, there was a' --method occlusion "
                        "--method integrated_gradients:n_steps=8 --evaluate --no-progress --json " +
                        dir + "/e.json --html " + dir + "/e.html",
                    &out);
  ASSERT_EQ(code, 0) << out;
  auto j = nlohmann::json::parse(slurp(dir + "/e.json"));
  ASSERT_EQ(j["attributions"].size(), 2u);
  for (const auto& a : j["attributions"]) {
    ASSERT_TRUE(a.contains("quality")) << a.dump();
    const auto& q = a["quality"];
    EXPECT_EQ(q["comprehensiveness"].size(), 5u);
    EXPECT_TRUE(q["comprehensiveness_aopc"].is_number());
    EXPECT_TRUE(q["sufficiency_aopc"].is_number());
    EXPECT_TRUE(q["sensitivity"]["max_sensitivity"].is_number());
    EXPECT_EQ(q["agreement_spearman"].size(), 1u);  // the other method
    EXPECT_GT(q["forward_passes"].get<double>(), 0);
  }
  EXPECT_TRUE(
      j["attributions"][0]["quality"]["agreement_spearman"].contains("integrated_gradients"));
  std::string html = slurp(dir + "/e.html");
  EXPECT_THAT(html, HasSubstr("<h2>Quality</h2>"));
  EXPECT_THAT(html, HasSubstr("comprehensiveness AOPC"));
}

TEST(CliEvaluate, ResumedRunGivesTheSameTable) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  std::string dir = testing::temp_dir(), out;
  std::string data = write_jsonl(dir);
  ASSERT_EQ(candor(eval_args(data, dir + "/full"), &out), 0) << out;
  const std::string full_md = slurp(dir + "/full/table.md");
  const std::string full_json = slurp(dir + "/full/table.json");
  EXPECT_THAT(full_md, HasSubstr("| occlusion |"));
  EXPECT_THAT(full_md, HasSubstr("comprehensiveness"));
  EXPECT_THAT(slurp(dir + "/full/report.html"), HasSubstr("<polyline"));
  auto summary = nlohmann::json::parse(full_json);
  EXPECT_EQ(summary["n_examples"], 8);
  EXPECT_TRUE(summary["table"]["occlusion"]["comprehensiveness"].contains("ci_low"));

  // Interrupted after 3 examples (--limit), then the last record cut in half as by a crash.
  ASSERT_EQ(candor(eval_args(data, dir + "/part") + " --limit 3", &out), 0) << out;
  {
    std::string ex = slurp(dir + "/part/examples.jsonl");
    std::ofstream(dir + "/part/examples.jsonl", std::ios::trunc) << ex.substr(0, ex.size() - 40);
  }
  ASSERT_EQ(candor(eval_args(data, dir + "/part"), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("resuming: 2 example(s)"));
  EXPECT_THAT(out, HasSubstr("1 unfinished record(s)"));
  EXPECT_EQ(slurp(dir + "/part/table.md"), full_md);
  EXPECT_EQ(slurp(dir + "/part/table.json"), full_json);
  // Nothing left to do: a third run computes nothing and still writes the same table.
  ASSERT_EQ(candor(eval_args(data, dir + "/part"), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("resuming: 8 example(s)"));
  EXPECT_EQ(slurp(dir + "/part/table.json"), full_json);
  // Other settings in the same folder are refused.
  EXPECT_EQ(candor(eval_args(data, dir + "/part") + " --removal delete", &out), 2) << out;
  EXPECT_THAT(out, HasSubstr("other settings"));
}

TEST(CliEvaluate, BadDataIsReportedWithLineNumbers) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  std::string dir = testing::temp_dir(), out;
  {
    std::ofstream f(dir + "/bad.jsonl");
    f << "{\"text\": \"The cat sat on the mat.\"}\n"
      << "{\"text\": \"A dog ran in the park.\"}\n"
      << "{\"text\": \"broken\n"  // line 3: malformed JSON
      << "{\"text\": \"Lily had a doll.\"}\n"
      << "{\"text\": \"   \"}\n"  // line 5: empty text
      << "{\"label\": 1}\n";      // line 6: no text
  }
  std::string base = "evaluate --model " + shared_path("models/stories260K") + " --data " + dir +
                     "/bad.jsonl --method occlusion --metric comprehensiveness --no-progress "
                     "--max-tokens 12 --bootstrap 50 --out " +
                     dir;
  EXPECT_EQ(candor(base + "/fail", &out), 1) << out;
  EXPECT_THAT(out, HasSubstr("line 3"));
  EXPECT_THAT(out, HasSubstr("hint: "));
  ASSERT_EQ(candor(base + "/skip --on-error skip", &out), 0) << out;
  for (const char* l : {"line 3", "line 5", "line 6"}) EXPECT_THAT(out, HasSubstr(l)) << l;
  auto s = nlohmann::json::parse(slurp(dir + "/skip/table.json"));
  EXPECT_EQ(s["n_examples"], 3);
  ASSERT_EQ(s["skipped"].size(), 3u);
  std::vector<int64_t> lines;
  for (const auto& k : s["skipped"]) lines.push_back(k["line"].get<int64_t>());
  std::sort(lines.begin(), lines.end());
  EXPECT_EQ(lines, (std::vector<int64_t>{3, 5, 6}));

  // A CSV without the text column: the error names the columns the file has.
  std::ofstream(dir + "/nocol.csv") << "sentence,label\nhello there,1\n";
  EXPECT_EQ(candor("evaluate --model " + shared_path("models/stories260K") + " --data " + dir +
                       "/nocol.csv --out " + dir + "/nc --no-progress",
                   &out),
            1)
      << out;
  EXPECT_THAT(out, HasSubstr("text"));
  EXPECT_THAT(out, HasSubstr("sentence"));
  // Usage errors: unknown metric, bad policy.
  EXPECT_EQ(candor(base + "/u --metric nonsense", &out), 2) << out;
  EXPECT_THAT(out, HasSubstr("unknown metric 'nonsense'"));
  EXPECT_EQ(candor(base + "/u --on-error maybe", &out), 2) << out;
}

}  // namespace
}  // namespace candor
