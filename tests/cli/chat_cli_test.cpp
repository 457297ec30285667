// `--chat` of candor generate / explain: the prompt goes through the tokenizer's chat template.
// Uses stories260K with a hand-made 512-token byte-level tokenizer.json that has ChatML tokens.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <string>

#include "candor/tokenizer.h"
#include "test_util.h"

namespace candor {
namespace {

using json = nlohmann::json;

// 256 byte tokens, ChatML's two special tokens, filler up to the model's 512.
std::string write_chatml_tokenizer() {
  const std::string dir = testing::temp_dir();
  json vocab = json::object();
  std::string printable;
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    const bool direct = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    const char32_t cp = direct ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
    std::string s;
    if (cp < 0x80) {
      s.push_back(static_cast<char>(cp));
    } else {
      s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
    vocab[s] = b;
  }
  for (int id = 258; id < 512; ++id) vocab["<filler" + std::to_string(id) + ">"] = id;
  const json root = {{"added_tokens",
                      {{{"id", 256}, {"content", "<|im_start|>"}, {"special", true}},
                       {{"id", 257}, {"content", "<|im_end|>"}, {"special", true}}}},
                     {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
                     {"decoder", {{"type", "ByteLevel"}}},
                     {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}}}};
  std::ofstream(dir + "/tokenizer.json") << root.dump();
  std::ofstream(dir + "/tokenizer_config.json")
      << json{{"eos_token", "<|im_end|>"},
              {"chat_template", "{% for m in messages %}<|im_start|>{{ m.role }}...{% endfor %}"}}
             .dump();
  return dir + "/tokenizer.json";
}

TEST(ChatCli, GenerateWrapsThePromptInTheChatTemplate) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  const std::string tokenizer = write_chatml_tokenizer();
  std::string out;
  const int code =
      testing::run_command(std::string(CANDOR_CLI_PATH) + " generate --model " +
                               testing::shared_path("models/stories260K") + " --tokenizer " +
                               tokenizer + " --chat --system Be -p Hi -n 1 --json 2>&1",
                           &out);
  ASSERT_EQ(code, 0) << out;
  const json j = json::parse(out.substr(out.find('{')));
  const auto tok = load_hf_tokenizer(tokenizer);
  const std::string text =
      "<|im_start|>system\nBe<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
      "<|im_start|>assistant\n";
  EXPECT_EQ(j["prompt_tokens"].get<std::vector<TokenId>>(), tok->encode(text, false, false));
  EXPECT_EQ(j["prompt_tokens"][0].get<TokenId>(), 256);
}

TEST(ChatCli, ChatWithoutTemplateIsARuntimeError) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  std::string out;
  const int code = testing::run_command(std::string(CANDOR_CLI_PATH) + " generate --model " +
                                            testing::shared_path("models/stories260K") +
                                            " --chat -p Hi -n 1 2>&1",
                                        &out);
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("no chat template"), std::string::npos) << out;
}

}  // namespace
}  // namespace candor
