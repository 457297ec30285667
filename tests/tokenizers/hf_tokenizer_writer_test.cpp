// The llama2.c vocabulary of stories260K written as Hugging Face files (scored_tokenizer_to_hf,
// what `candor convert --format hf` writes): read back by candor's Hugging Face loader, and by the
// JavaScript reference (@lenml/tokenizers, a port of transformers.js' tokenizers, from the npm
// cache of scripts/fetch_tokenizer_refs.sh) when it is installed, it gives the llama2.c
// tokenizer's ids on varied and random text.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "candor/tokenizer.h"
#include "test_util.h"

namespace candor {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kBin = "models/stories260K/tok512.bin";

// Texts without the pieces that tokenizer.json reads differently by design (special tokens in
// the text, a literal U+2581): whitespace runs, byte fallback, punctuation, digits, a NUL.
std::vector<std::string> texts() {
  return {"Once upon a time",
          "",
          "\n",
          " leading space",
          "multiple   spaces  between   words",
          "trailing space ",
          "  ",
          "\n\nTwo newlines first",
          "caf\xC3\xA9 au lait",
          "na\xC3\xAFve gar\xC3\xA7on \xC3\x9Cmlaut \xC3\x80 la",
          "\xE4\xBD\xA0\xE5\xA5\xBD\xEF\xBC\x8C\xE4\xB8\x96\xE7\x95\x8C",
          "emoji \xF0\x9F\x98\x80\xF0\x9F\x8E\x89 party",
          "Lily's ball was \"red\"! Tim said: (no) - ok?",
          "tab\tand\r\nCRLF",
          "digits 1234567890 and 3.14",
          "<0x41> <s > look like pieces",
          std::string("nul\0byte", 8),
          "The end.\n",
          "She saw a big, red ball. She wanted to play with it, but it was too high.",
          "Once upon a time, there was a little girl named Lily. She loved to play outside."};
}

std::string random_text(std::mt19937* rng) {
  static const std::vector<std::string> fragments = {
      "a",   "e",   "t",    "h",     "o",     "n",    "s",  " ",  "  ",         "\n",
      ".",   ",",   "'",    "the",   "and",   " once", "upon", "Lily", "0",    "7",
      "<",   "0x",  ">",    "-",     "\t",    "\r",   "\xC3\xA9", "\xC3\x9C", "\xE4\xB8\xAD",
      "\xE2\x80\x8A", "\xF0\x9F\x98\x80", "ing", " was", "ed"};
  while (true) {
    std::string text;
    const int n = static_cast<int>((*rng)() % 24);
    for (int i = 0; i < n; ++i) text += fragments[(*rng)() % fragments.size()];
    // Special pieces spelled out in the text are split out as special tokens (by design).
    if (text.find("<s>") == std::string::npos && text.find("</s>") == std::string::npos)
      return text;
  }
}

class HfTokenizerWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CANDOR_REQUIRE_SHARED(kBin);
    llama2c_ = load_llama2c_tokenizer(testing::shared_path(kBin));
    files_ = scored_tokenizer_to_hf(*llama2c_);
    hf_ = make_hf_tokenizer(files_.tokenizer_json, files_.tokenizer_config_json, "converted");
  }
  std::unique_ptr<Tokenizer> llama2c_, hf_;
  HfTokenizerFiles files_;
};

TEST_F(HfTokenizerWriterTest, IsALlama2StyleBpeFile) {
  json j = json::parse(files_.tokenizer_json);
  EXPECT_EQ(j["model"]["type"], "BPE");
  EXPECT_EQ(j["model"]["byte_fallback"], true);
  EXPECT_EQ(j["model"]["vocab"].size(), 512u);
  EXPECT_EQ(j["model"]["vocab"]["<s>"], 1);
  EXPECT_EQ(j["model"]["vocab"]["\xE2\x96\x81Once"], 403);
  EXPECT_GT(j["model"]["merges"].size(), 100u);
  for (const auto& m : j["model"]["merges"]) ASSERT_TRUE(m.is_string()) << m;  // "a b": any version
  json c = json::parse(files_.tokenizer_config_json);
  EXPECT_EQ(c["bos_token"], "<s>");
  EXPECT_EQ(c["eos_token"], "</s>");
  EXPECT_EQ(hf_->vocab_size(), 512);
  EXPECT_EQ(hf_->bos_id(), 1);
  EXPECT_EQ(hf_->eos_id(), 2);
}

TEST_F(HfTokenizerWriterTest, ReadBackGivesTheLlama2cIds) {
  std::vector<std::string> all = texts();
  std::mt19937 rng(13);
  for (int i = 0; i < 2000; ++i) all.push_back(random_text(&rng));
  for (const std::string& text : all) {
    for (bool bos : {true, false}) {
      for (bool eos : {false, true}) {
        ASSERT_EQ(hf_->encode(text, bos, eos), llama2c_->encode(text, bos, eos))
            << "text [" << text << "] bos " << bos << " eos " << eos;
      }
    }
    std::vector<TokenId> ids = llama2c_->encode(text, true, false);
    EXPECT_EQ(hf_->decode(ids), llama2c_->decode(ids)) << "text [" << text << "]";
  }
}

// The JavaScript reference reads the files as transformers.js does.
TEST_F(HfTokenizerWriterTest, JavaScriptReferenceGivesTheLlama2cIds) {
  const char* env = std::getenv("CANDOR_NPM_CACHE");
  const char* home = std::getenv("HOME");
  const std::string npm =
      (env != nullptr && *env) ? env : std::string(home != nullptr ? home : "") + "/.cache/candor/npm";
  const std::string lib = npm + "/node_modules/@lenml/tokenizers";
  if (!fs::exists(lib + "/package.json") || testing::run_command("command -v node >/dev/null") != 0)
    GTEST_SKIP() << "skipped: needs node and " << lib
                 << " (run scripts/fetch_tokenizer_refs.sh with npm)";
  const std::string dir = testing::temp_dir();
  std::ofstream(dir + "/tokenizer.json") << files_.tokenizer_json;
  std::ofstream(dir + "/tokenizer_config.json") << files_.tokenizer_config_json;
  std::vector<std::string> all = texts();
  std::mt19937 rng(7);
  for (int i = 0; i < 300; ++i) all.push_back(random_text(&rng));
  std::ofstream(dir + "/texts.json") << json(all).dump();
  std::ofstream(dir + "/run.js")
      << "const fs = require('fs');\n"
         "const { TokenizerLoader } = require(process.argv[2]);\n"
         "const d = process.argv[3];\n"
         "const read = (f) => JSON.parse(fs.readFileSync(d + '/' + f, 'utf8'));\n"
         "const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON: read('tokenizer.json'),\n"
         "  tokenizerConfig: read('tokenizer_config.json') });\n"
         "const out = read('texts.json').map((t) => tok.encode(t, { add_special_tokens: true }));\n"
         "fs.writeFileSync(d + '/ids.json', JSON.stringify(out));\n";
  std::string out;
  ASSERT_EQ(testing::run_command("node " + dir + "/run.js " + lib + " " + dir, &out), 0) << out;
  std::ifstream in(dir + "/ids.json");
  json ids = json::parse(in);
  ASSERT_EQ(ids.size(), all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(ids[i].get<std::vector<TokenId>>(), llama2c_->encode(all[i], true, false))
        << "text [" << all[i] << "]";
  }
}

// The documented differences of this layout, pinned so that a change to them is seen.
TEST_F(HfTokenizerWriterTest, SpecialPiecesAndTheSpaceMarkerInTextAreReadAsHuggingFaceDoes) {
  EXPECT_EQ(hf_->encode("a <s> b", false, false)[2], 1);  // BOS, not the characters <, s, >
  EXPECT_NE(llama2c_->encode("a <s> b", false, false)[2], 1);
  EXPECT_EQ(hf_->encode("a\xE2\x96\x81" "b", false, false), hf_->encode("a b", false, false));
}

TEST(HfTokenizerWriter, RefusesTokenizersWithoutALlama2cVocabulary) {
  CANDOR_REQUIRE_SHARED("models/stories260K/tok512.model");
  std::unique_ptr<Tokenizer> tok =
      load_sentencepiece_tokenizer(testing::shared_path("models/stories260K/tok512.model"));
  EXPECT_THAT(testing::error_of([&] { scored_tokenizer_to_hf(*tok); }),
              ::testing::HasSubstr("no scored vocabulary"));
}

}  // namespace
}  // namespace candor
