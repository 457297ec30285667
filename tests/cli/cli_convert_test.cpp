// `candor convert --format hf` writes a folder the Hugging Face tools read (issue 13, defect 12):
// a llama2.c vocabulary becomes tokenizer.json + tokenizer_config.json (no llama2.c tok512.bin,
// which no Hugging Face tool reads), a SentencePiece model is copied as tokenizer.model; the
// folder's tokenizer gives the llama2.c ids in candor and in the JavaScript reference.
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "candor/tokenizer.h"
#include "test_util.h"

namespace candor {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::run_command;
using testing::shared_path;

const std::string kCli = CANDOR_CLI_PATH;

const std::vector<std::string> kTexts = {
    "Once upon a time", "Lily and Tom went to the park.\nThey played all day!",
    "caf\xC3\xA9 \xF0\x9F\x98\x80 and   spaces", "She said, \"Mom, look!\""};

TEST(CliConvert, LlamaTwoCVocabularyBecomesTokenizerJson) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  const std::string dir = testing::temp_dir() + "/hf";
  std::string out;
  ASSERT_EQ(run_command(kCli + " convert --model " + shared_path("models/stories260K") +
                            " --out " + dir + " 2>&1",
                        &out),
            0)
      << out;
  EXPECT_TRUE(fs::exists(dir + "/tokenizer.json"));
  EXPECT_TRUE(fs::exists(dir + "/tokenizer_config.json"));
  EXPECT_FALSE(fs::exists(dir + "/tok512.bin")) << "a llama2.c tokenizer no HF tool reads";
  EXPECT_FALSE(fs::exists(dir + "/tokenizer.bin"));

  // candor reads the folder's tokenizer.json (its only tokenizer) to the llama2.c ids.
  std::unique_ptr<Tokenizer> llama2c = load_llama2c_tokenizer(shared_path("models/stories260K/tok512.bin"));
  std::unique_ptr<Tokenizer> hf = load_hf_tokenizer(dir);
  for (const std::string& t : kTexts) EXPECT_EQ(hf->encode(t), llama2c->encode(t)) << t;
  ASSERT_EQ(run_command(kCli + " info --json --model " + dir + " 2>&1", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("\"tokenizer\": \"hf-bpe-metaspace\""));

  // The JavaScript reference (transformers.js' tokenizers) reads the same files to the same ids.
  const char* env = std::getenv("CANDOR_NPM_CACHE");
  const char* home = std::getenv("HOME");
  const std::string npm = (env != nullptr && *env)
                              ? env
                              : std::string(home != nullptr ? home : "") + "/.cache/candor/npm";
  const std::string lib = npm + "/node_modules/@lenml/tokenizers";
  if (!fs::exists(lib + "/package.json") || run_command("command -v node >/dev/null") != 0) {
    GTEST_SKIP() << "skipped the JavaScript check: needs node and " << lib
                 << " (run scripts/fetch_tokenizer_refs.sh with npm)";
  }
  std::ofstream(dir + "/../texts.json") << nlohmann::json(kTexts).dump();
  std::ofstream(dir + "/../run.js")
      << "const fs = require('fs');\n"
         "const { TokenizerLoader } = require(process.argv[2]);\n"
         "const d = process.argv[3];\n"
         "const read = (f) => JSON.parse(fs.readFileSync(f, 'utf8'));\n"
         "const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON: read(d + "
         "'/tokenizer.json'),\n"
         "  tokenizerConfig: read(d + '/tokenizer_config.json') });\n"
         "const ids = read(d + '/../texts.json').map((t) => tok.encode(t));\n"
         "fs.writeFileSync(d + '/../ids.json', JSON.stringify(ids));\n";
  ASSERT_EQ(run_command("node " + dir + "/../run.js " + lib + " " + dir, &out), 0) << out;
  std::ifstream in(dir + "/../ids.json");
  nlohmann::json ids = nlohmann::json::parse(in);
  ASSERT_EQ(ids.size(), kTexts.size());
  for (size_t i = 0; i < kTexts.size(); ++i)
    EXPECT_EQ(ids[i].get<std::vector<TokenId>>(), llama2c->encode(kTexts[i])) << kTexts[i];
}

// The sibling: a SentencePiece tokenizer is copied under the name Hugging Face tools look for.
TEST(CliConvert, SentencePieceModelIsCopiedAsTokenizerModel) {
  CANDOR_REQUIRE_SHARED("models/stories260K/tok512.model");
  const std::string dir = testing::temp_dir() + "/hf";
  std::string out;
  ASSERT_EQ(run_command(kCli + " convert --model " +
                            shared_path("models/stories260K/stories260K.bin") + " --tokenizer " +
                            shared_path("models/stories260K/tok512.model") + " --out " + dir +
                            " 2>&1",
                        &out),
            0)
      << out;
  EXPECT_TRUE(fs::exists(dir + "/tokenizer.model"));
  EXPECT_FALSE(fs::exists(dir + "/tok512.model"));
  ASSERT_EQ(run_command(kCli + " info --json --model " + dir + " 2>&1", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("\"tokenizer\": \"sentencepiece\""));
}

}  // namespace
}  // namespace candor
