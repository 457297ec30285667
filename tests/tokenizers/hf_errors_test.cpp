// Bad tokenizer files give clear errors naming the file; small hand-written tokenizer.json files
// check the pipeline pieces the reference goldens do not reach. No npm files needed.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <string>
#include <vector>

#include "candor/error.h"
#include "candor/tokenizer.h"
#include "test_util.h"

namespace candor {
namespace {

using json = nlohmann::json;
using ::candor::testing::temp_dir;

std::string write(const std::string& text, const std::string& name = "tokenizer.json") {
  const std::string dir = temp_dir();
  std::ofstream(dir + "/" + name) << text;
  return dir + "/" + name;
}

template <typename Load>
Error error_from(Load load) {
  try {
    load();
  } catch (const Error& error) {
    return error;
  }
  ADD_FAILURE() << "expected a candor::Error";
  return Error(ErrorCode::kInternal, "no error");
}

// A byte-level BPE over the letters a, b, c and space with merges "a b" (rank 0), "ab c"
// (rank 1), "Ġ a" (rank 2).
json tiny_bytelevel() {
  return json::parse(R"({
    "version": "1.0",
    "added_tokens": [
      {"id": 9, "content": "<|end|>", "special": true, "lstrip": false, "rstrip": false},
      {"id": 10, "content": "<mask>", "special": true, "lstrip": true, "rstrip": true}
    ],
    "normalizer": null,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
    "post_processor": null,
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "c": 2, "Ġ": 3, "ab": 4, "abc": 5,
                                        "Ġa": 6, "x": 7, "cab": 8},
              "merges": ["a b", "ab c", "Ġ a"]}
  })");
}

TEST(HfTokenizerErrors, UnknownModelTypeNamesFileAndType) {
  json j = tiny_bytelevel();
  j["model"]["type"] = "Unigram";
  const std::string path = write(j.dump());
  const Error e = error_from([&] { load_hf_tokenizer(path); });
  EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("Unigram"), std::string::npos) << e.what();
}

TEST(HfTokenizerErrors, TruncatedJsonNamesFile) {
  const std::string text = tiny_bytelevel().dump();
  const std::string path = write(text.substr(0, text.size() / 2));
  const Error e = error_from([&] { load_hf_tokenizer(path); });
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("not valid JSON"), std::string::npos) << e.what();
}

TEST(HfTokenizerErrors, MergeOfUnknownPieceNamesMerge) {
  json j = tiny_bytelevel();
  j["model"]["merges"].push_back("q r");
  const std::string path = write(j.dump());
  const Error e = error_from([&] { load_hf_tokenizer(path); });
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("merge 3"), std::string::npos) << e.what();
}

TEST(HfTokenizerErrors, WrongFieldTypeNamesFileAndSection) {
  json j = tiny_bytelevel();
  j["model"]["vocab"]["a"] = "zero";
  const std::string path = write(j.dump());
  const Error e = error_from([&] { load_hf_tokenizer(path); });
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("model"), std::string::npos) << e.what();
}

TEST(HfTokenizerErrors, MissingModelAndNonObjectTopLevel) {
  json j = tiny_bytelevel();
  j.erase("model");
  EXPECT_EQ(error_from([&] { load_hf_tokenizer(write(j.dump())); }).code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(error_from([&] { load_hf_tokenizer(write("[1, 2]")); }).code(),
            ErrorCode::kInvalidArgument);
}

TEST(HfTokenizerErrors, UnsupportedComponentsAreNamed) {
  json j = tiny_bytelevel();
  j["normalizer"] = {{"type", "Precompiled"}, {"precompiled_charsmap", "AAAA"}};
  const Error e = error_from([&] { load_hf_tokenizer(write(j.dump())); });
  EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  EXPECT_NE(std::string(e.what()).find("Precompiled"), std::string::npos) << e.what();
  json k = tiny_bytelevel();
  k["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  const Error bad_regex = error_from([&] { load_hf_tokenizer(write(k.dump())); });
  EXPECT_EQ(bad_regex.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(std::string(bad_regex.what()).find("(unclosed"), std::string::npos);
}

TEST(HfTokenizerErrors, PostProcessorIdsOutOfRange) {
  json j = tiny_bytelevel();
  j["post_processor"] = json::parse(R"({"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A"}}],
      "special_tokens": {"<s>": {"id": "<s>", "ids": [70000], "tokens": ["<s>"]}}})");
  const std::string path = write(j.dump());
  const Error e = error_from([&] { load_hf_tokenizer(path); });
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(std::string(e.what()).find("70000"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
}

TEST(HfTokenizerErrors, MissingPathsAndEmptyFolders) {
  EXPECT_EQ(error_from([] { load_hf_tokenizer("/nonexistent/candor/tokenizer.json"); }).code(),
            ErrorCode::kNotFound);
  const Error e = error_from([] { load_hf_tokenizer(temp_dir()); });
  EXPECT_EQ(e.code(), ErrorCode::kNotFound);
  EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos) << e.what();
}

TEST(HfTokenizerErrors, BadIdsAndBadUtf8) {
  const auto tok = load_hf_tokenizer(write(tiny_bytelevel().dump()));
  EXPECT_EQ(error_from([&] { tok->decode_piece(-1, 11); }).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(error_from([&] { tok->encode("a\xC3", false, false); }).code(),
            ErrorCode::kInvalidArgument);
}

TEST(HfTokenizerPipeline, MergesApplyByRankAndAddedTokensSplitFirst) {
  const std::string path = write(tiny_bytelevel().dump());
  const auto tok = load_tokenizer(path);  // load_tokenizer recognises tokenizer.json
  EXPECT_EQ(tok->kind(), "hf-bpe-bytelevel");
  // "abc" -> a b c -> ab c -> abc; " a" -> Ġa; "cab" is in the vocabulary but no merge makes it.
  EXPECT_EQ(tok->encode("abc", false, false), (std::vector<TokenId>{5}));
  EXPECT_EQ(tok->encode("cab a", false, false), (std::vector<TokenId>{2, 4, 6}));
  EXPECT_EQ(tok->encode("ab<|end|>c", false, false), (std::vector<TokenId>{4, 9, 2}));
  // <mask> strips the spaces around it (lstrip/rstrip).
  EXPECT_EQ(tok->encode("ab <mask> c", false, false), (std::vector<TokenId>{4, 10, 2}));
  EXPECT_EQ(tok->decode({4, 9, 2}), "abc");
  EXPECT_EQ(tok->decode({5, 6}), "abc a");
}

TEST(HfTokenizerPipeline, IgnoreMergesTakesWholeWords) {
  json j = tiny_bytelevel();
  j["model"]["ignore_merges"] = true;
  const auto tok = load_hf_tokenizer(write(j.dump()));
  EXPECT_EQ(tok->encode("cab", false, false), (std::vector<TokenId>{8}));
}

TEST(HfTokenizerPipeline, ConfigGivesSpecialTokensAndChatFormat) {
  const std::string path = write(tiny_bytelevel().dump());
  const std::string dir = path.substr(0, path.rfind('/'));
  std::ofstream(dir + "/tokenizer_config.json")
      << json{{"bos_token", "<|end|>"},
              {"eos_token", {{"content", "<|end|>"}, {"__type", "AddedToken"}}},
              {"add_bos_token", true},
              {"chat_template", "{% for m in messages %}<|im_start|>...{% endfor %}"}}
             .dump();
  const auto tok = load_hf_tokenizer(dir);
  EXPECT_EQ(tok->bos_id(), 9);
  EXPECT_EQ(tok->eos_id(), 9);
  EXPECT_EQ(tok->encode("abc", true, true), (std::vector<TokenId>{9, 5, 9}));
  EXPECT_EQ(tok->chat_family(), "chatml");
  EXPECT_EQ(tok->apply_chat_template({{"user", "hi"}}, true),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(HfTokenizerPipeline, Llama2ChatRejectsNonAlternatingRoles) {
  json j = tiny_bytelevel();
  const std::string path = write(j.dump());
  const std::string dir = path.substr(0, path.rfind('/'));
  std::ofstream(dir + "/tokenizer_config.json")
      << json{{"chat_template", "... <<SYS>> ... [INST] ..."}}.dump();
  const auto tok = load_hf_tokenizer(dir);
  EXPECT_EQ(tok->chat_family(), "llama2");
  const Error e = error_from([&] {
    tok->apply_chat_template({{"user", "a"}, {"user", "b"}}, true);
  });
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  // A tokenizer without a chat template says so.
  const auto plain = load_hf_tokenizer(write(j.dump()));
  EXPECT_EQ(plain->chat_family(), "");
  EXPECT_EQ(error_from([&] {
              plain->apply_chat_template({{"user", "a"}}, true);
            }).code(),
            ErrorCode::kUnsupported);
}

// WordPiece details: lowercasing, accents, Chinese characters, punctuation, ## continuations,
// [UNK] for words without a split, and the decoder's spaces.
TEST(HfTokenizerPipeline, WordPieceFromVocabTxt) {
  const std::string dir = temp_dir();
  {
    std::ofstream out(dir + "/vocab.txt");
    for (const char* t : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##s",
                          "cafe", "!", ".", "\xE4\xB8\xAD", "un", "##aff", "##able"}) {
      out << t << "\n";
    }
  }
  const auto tok = load_hf_tokenizer(dir);
  EXPECT_EQ(tok->kind(), "hf-wordpiece");
  EXPECT_EQ(tok->encode("Hello WORLDS! Caf\xC3\xA9 unaffable \xE4\xB8\xAD.", true, true),
            (std::vector<TokenId>{2, 5, 6, 7, 9, 8, 12, 13, 14, 11, 10, 3}));
  EXPECT_EQ(tok->encode("xyz hello", false, false), (std::vector<TokenId>{1, 5}));
  EXPECT_EQ(tok->decode({2, 5, 6, 7, 9, 12, 13, 14, 10, 3}), "hello worlds! unaffable.");
}

}  // namespace
}  // namespace candor
