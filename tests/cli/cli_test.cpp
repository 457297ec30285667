// The candor binary end to end: golden output, JSON, and one test per kind of bad input (clear
// message, non-zero exit, never a crash).
#include <fstream>
#include <sstream>

#include "test_util.h"

namespace candor {
namespace {

using ::testing::HasSubstr;
using testing::run_command;
using testing::shared_path;

const std::string kCli = CANDOR_CLI_PATH;

std::string model_dir() { return shared_path("models/stories260K"); }

using CliRun = testing::CliRun;
CliRun candor(const std::string& args) { return testing::run_cli(args); }

// Exit code is 1 or 2 (never a signal) and the output has an error and a hint line.
void expect_clean_failure(const CliRun& r, std::initializer_list<std::string> parts) {
  EXPECT_TRUE(r.code == 1 || r.code == 2) << "exit code " << r.code << "\n" << r.out;
  EXPECT_THAT(r.out, HasSubstr("error: "));
  EXPECT_THAT(r.out, HasSubstr("hint: "));
  for (const auto& p : parts) EXPECT_THAT(r.out, HasSubstr(p));
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(Cli, GenerateReproducesTheGoldenStoryOnStdout) {
  CANDOR_REQUIRE_SHARED("models/stories260K/golden/gen_t0_n64_once_upon_a_time.txt");
  std::string out = testing::temp_dir() + "/out.txt";
  int code = run_command("(" + kCli + " generate --model " + model_dir() +
                         " --prompt 'Once upon a time' -n 60 > " + out + " 2>/dev/null)");
  ASSERT_EQ(code, 0);
  EXPECT_EQ(read_file(out),
            read_file(shared_path("models/stories260K/golden/gen_t0_n64_once_upon_a_time.txt")));
}

TEST(Cli, InfoReportsArchitectureAndBlas) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  CliRun r =
      candor("info --model " + shared_path("models/stories260K/stories260K.bin") + " --json");
  ASSERT_EQ(r.code, 0) << r.out;
  for (const char* key :
       {"\"parameters\": 260032", "\"vocab_size\": 512", "\"context_length\": 512",
        "\"n_kv_heads\": 4", "\"library\": \"OpenBLAS\"", "\"threads\""}) {
    EXPECT_THAT(r.out, HasSubstr(key));
  }
}

TEST(Cli, JsonGenerationIsSeededAndComplete) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  std::string args = "generate --model " + model_dir() +
                     " -p 'Tom' -n 20 --temperature 0.9 --top-k 30 --top-p 0.95 --seed 7 --json";
  CliRun a = candor(args), b = candor(args);
  ASSERT_EQ(a.code, 0) << a.out;
  EXPECT_EQ(a.out.substr(0, a.out.find("\"timing\"")), b.out.substr(0, b.out.find("\"timing\"")));
  for (const char* key : {"\"tokens\"", "\"logprobs\"", "\"text\"", "\"stop_reason\""}) {
    EXPECT_THAT(a.out, HasSubstr(key));
  }
}

TEST(CliErrors, MissingModelFile) {
  expect_clean_failure(candor("generate --model /no/such/model.bin -p hi"),
                       {"/no/such/model.bin", "does not exist"});
}

TEST(CliErrors, TruncatedCheckpoint) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  std::string dir = testing::temp_dir();
  testing::copy_prefix(shared_path("models/stories260K/stories260K.bin"), dir + "/m.bin", 5000);
  testing::copy_prefix(shared_path("models/stories260K/tok512.bin"), dir + "/tokenizer.bin",
                       1L << 40);
  expect_clean_failure(candor("generate --model " + dir + "/m.bin -p hi"), {"m.bin", "truncated"});
}

TEST(CliErrors, HeaderInconsistentWithFileSize) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  std::string dir = testing::temp_dir();
  testing::copy_prefix(shared_path("models/stories260K/stories260K.bin"), dir + "/m.bin", -100);
  testing::copy_prefix(shared_path("models/stories260K/tok512.bin"), dir + "/tokenizer.bin",
                       1L << 40);
  expect_clean_failure(candor("info --model " + dir), {"m.bin", "inconsistent with file size"});
}

TEST(CliErrors, TokenizerVocabularyMismatch) {
  CANDOR_REQUIRE_SHARED("models/stories260K/tok512.model");
  std::string dir = testing::temp_dir();
  testing::write_llama2c_checkpoint(dir + "/m.bin", 16, 32, 1, 2, 2, 300, 32);
  expect_clean_failure(candor("generate --model " + dir + "/m.bin --tokenizer " +
                              shared_path("models/stories260K/tok512.model") + " -p hi"),
                       {"tok512.model", "512", "300"});
}

TEST(CliErrors, PromptLongerThanContext) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  std::string prompt;
  for (int i = 0; i < 200; ++i) prompt += "a dog ran. ";
  expect_clean_failure(candor("generate --model " + model_dir() + " -p '" + prompt + "'"),
                       {"prompt", "context"});
}

TEST(CliErrors, InvalidUtf8Prompt) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  CliRun r = candor("generate --model " + model_dir() + " -p \"$(printf 'ab\\303\\050')\"");
  expect_clean_failure(r, {"UTF-8", "offset 2"});
  EXPECT_EQ(r.code, 2);
}

TEST(CliErrors, ZeroTokens) {
  CliRun r = candor("generate --model " + model_dir() + " -n 0");
  expect_clean_failure(r, {"-n", "at least 1"});
  EXPECT_EQ(r.code, 2);
}

TEST(CliErrors, NegativeTokens) {
  CliRun r = candor("generate --model " + model_dir() + " -n -5");
  expect_clean_failure(r, {"-n", "-5"});
  EXPECT_EQ(r.code, 2);
}

TEST(CliErrors, TopPAboveOne) {
  CliRun r = candor("generate --model " + model_dir() + " --top-p 2");
  expect_clean_failure(r, {"top-p", "(0, 1]"});
  EXPECT_EQ(r.code, 2);
}

TEST(CliErrors, UnknownOptionAndMissingSubcommand) {
  CliRun r = candor("generate --model x --bogus 1");
  expect_clean_failure(r, {"bogus"});
  EXPECT_EQ(r.code, 2);
  CliRun s = candor("");
  EXPECT_EQ(s.code, 2);
}

}  // namespace
}  // namespace candor

namespace candor {
namespace {

TEST(CliExplain, SpanWithSeveralMethodsWritesJsonAndHtml) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  std::string dir = testing::temp_dir();
  CliRun r =
      candor("explain --model " + model_dir() +
             " -p 'Lily went to the park' --generate 4 --granularity word --no-progress"
             " --method integrated_gradients:n_steps=8 --method occlusion --method logit_lens"
             " --json " +
             dir + "/e.json --html " + dir + "/e.html");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("== integrated_gradients"));
  EXPECT_THAT(r.out, HasSubstr("== occlusion"));
  // Integrated gradients shows how far its scores are from adding up (occlusion has no line).
  EXPECT_THAT(r.out, HasSubstr("completeness: |sum of scores - (f(x) - f(baseline))| = "));
  EXPECT_EQ(r.out.find("completeness:"), r.out.rfind("completeness:"));
  std::string json = read_file(dir + "/e.json");
  EXPECT_THAT(json, HasSubstr("\"attributions\""));
  EXPECT_THAT(json, HasSubstr("\"convergence_delta\""));
  std::string html = read_file(dir + "/e.html");
  EXPECT_THAT(html, HasSubstr("<!DOCTYPE html>"));
  EXPECT_THAT(html, HasSubstr("Logit lens"));
  EXPECT_THAT(html, ::testing::Not(HasSubstr("http://"))) << "the report must open offline";
  EXPECT_THAT(html, ::testing::Not(HasSubstr("https://")));
}

TEST(CliExplain, TargetAndContrastTokens) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  CliRun r =
      candor("explain --model " + model_dir() + " -p 'Once upon a' --target time --no-progress");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("time)"));
  CliRun c = candor("explain --model " + model_dir() +
                    " -p 'Lily saw a' --contrast 'big,little' --no-progress");
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_THAT(c.out, HasSubstr("contrast"));
}

TEST(CliExplain, BadMethodTokenAndUsageErrors) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  CliRun a = candor("explain --model " + model_dir() + " -p hi --method integrated_gradient");
  expect_clean_failure(a, {"integrated_gradient", "available methods"});
  EXPECT_EQ(a.code, 2);
  CliRun b = candor("explain --model " + model_dir() + " -p hi --method occlusion:window=0");
  expect_clean_failure(b, {"window"});
  CliRun c = candor("explain --model " + model_dir() + " -p hi --target 'xyzzy plugh'");
  expect_clean_failure(c, {"not a single token"});
  CliRun d = candor("explain --model " + model_dir() + " -p hi --contrast big");
  expect_clean_failure(d, {"A,B"});
  CliRun e = candor("methods");
  EXPECT_EQ(e.code, 0);
  EXPECT_THAT(e.out, HasSubstr("kernel_shap"));
}

}  // namespace
}  // namespace candor
