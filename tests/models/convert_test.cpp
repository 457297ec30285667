// stories260K (llama2.c format) written as a Hugging Face folder by save_hf_folder and by
// `candor convert` loads back and reproduces the reference runner's greedy text byte for byte.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "candor/generate.h"
#include "candor/model.h"
#include "test_util.h"

namespace candor {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

constexpr const char* kGolden = "models/stories260K/golden/gen_t0_n64_once_upon_a_time.txt";

std::string greedy_text(const Model& model) {
  std::vector<TokenId> ids = model.tokenizer().encode("Once upon a time", true, false);
  GenerateOptions o;
  o.max_new_tokens = 64 - (static_cast<int64_t>(ids.size()) - 1);
  GenerateResult r = generate(model, ids, o);
  return r.prompt_text + r.text + "\n";
}

TEST(Convert, Stories260KAsHfFolderReproducesGoldenText) {
  CANDOR_REQUIRE_SHARED(kGolden);
  auto model = load_model(testing::shared_path("models/stories260K"));
  std::string dir = testing::temp_dir() + "/stories_hf";
  save_hf_folder(*model, dir);
  EXPECT_TRUE(std::filesystem::exists(dir + "/config.json"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/model.safetensors"));
  auto back = load_model(dir);
  EXPECT_EQ(back->config().source_format, "safetensors");
  EXPECT_EQ(back->config().architecture, "llama");
  EXPECT_EQ(back->n_params(), model->n_params());
  EXPECT_EQ(greedy_text(*back), read_file(testing::shared_path(kGolden)));
}

TEST(Convert, CliWritesFolderThatInfoDescribes) {
  CANDOR_REQUIRE_SHARED(kGolden);
  const std::string cli = CANDOR_CLI_PATH;
  std::string dir = testing::temp_dir() + "/cli_hf";
  std::string out;
  ASSERT_EQ(testing::run_command(cli + " convert --model " +
                                     testing::shared_path("models/stories260K") + " --out " + dir,
                                 &out),
            0)
      << out;
  std::string text = testing::temp_dir() + "/gen.txt";
  ASSERT_EQ(testing::run_command("(" + cli + " generate --model " + dir +
                                 " --prompt 'Once upon a time' -n 60 > " + text + " 2>/dev/null)"),
            0);
  EXPECT_EQ(read_file(text), read_file(testing::shared_path(kGolden)));
  ASSERT_EQ(testing::run_command(cli + " info --json --model " + dir, &out), 0) << out;
  EXPECT_NE(out.find("\"format\": \"safetensors\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"kind\": \"causal_lm\""), std::string::npos) << out;
  // The llama2.c vocabulary comes back from the tokenizer.json convert wrote.
  EXPECT_NE(out.find("\"tokenizer\": \"hf-bpe-metaspace\""), std::string::npos) << out;
  ASSERT_EQ(testing::run_command(cli + " info --model " + std::string(CANDOR_SOURCE_DIR) +
                                     "/tests/fixtures/models/bert",
                                 &out),
            0)
      << out;
  EXPECT_NE(out.find("negative, neutral, positive"), std::string::npos) << out;
  EXPECT_NE(testing::run_command(
                cli + " convert --model " + dir + " --out " + dir + "_x --dtype q3", &out),
            0);
}

TEST(Convert, CliExplainsAClassifierClass) {
  CANDOR_REQUIRE_SHARED("models/stories260K/tok512.bin");
  const std::string cli = CANDOR_CLI_PATH;
  const std::string model = std::string(CANDOR_SOURCE_DIR) + "/tests/fixtures/models/distilbert";
  const std::string json = testing::temp_dir() + "/a.json";
  std::string out;
  ASSERT_EQ(testing::run_command(cli + " explain --model " + model + " --tokenizer " +
                                     testing::shared_path("models/stories260K/tok512.bin") +
                                     " --prompt 'a good film' --target POSITIVE --method "
                                     "occlusion --no-progress --json " +
                                     json,
                                 &out),
            0)
      << out;
  EXPECT_NE(read_file(json).find("\"POSITIVE\""), std::string::npos);
  EXPECT_EQ(testing::run_command(cli + " explain --model " + model + " --tokenizer " +
                                     testing::shared_path("models/stories260K/tok512.bin") +
                                     " --prompt 'a good film' --target MAYBE",
                                 &out),
            2)
      << out;
  EXPECT_NE(out.find("POSITIVE"), std::string::npos) << out;  // the hint lists the classes
}

}  // namespace
}  // namespace candor
