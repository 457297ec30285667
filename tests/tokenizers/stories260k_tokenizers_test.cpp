// Tests of the real tokenizer pair of stories260K (../shared/models/stories260K/tok512.bin and
// tok512.model): both formats agree id for id, round-trip text, and match the reference run.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "candor/error.h"
#include "candor/tokenizer.h"
#include "test_util.h"

namespace candor {
namespace {

using ::candor::testing::shared_path;

constexpr const char* kBinPath = "models/stories260K/tok512.bin";
constexpr const char* kModelPath = "models/stories260K/tok512.model";
constexpr const char* kGoldenTokensPath =
    "models/stories260K/golden/logits_t0_n64_once_upon_a_time.tsv";
constexpr const char* kGoldenTextPath = "models/stories260K/golden/gen_t0_n64_once_upon_a_time.txt";

// Varied text: plain English, whitespace runs, non-ASCII that needs byte fallback, text that
// looks like special pieces, SentencePiece's own space marker, an embedded NUL.
std::vector<std::string> sample_sentences() {
  return {
      "Once upon a time",
      "",
      "\n",
      " leading space",
      "multiple   spaces  between   words",
      "trailing space ",
      "  ",
      "\n\nTwo newlines first",
      "caf\xC3\xA9 au lait",                                   // café
      "na\xC3\xAFve gar\xC3\xA7on \xC3\x9Cmlaut \xC3\x80 la",  // naïve garçon Ümlaut À la
      "\xE4\xBD\xA0\xE5\xA5\xBD\xEF\xBC\x8C\xE4\xB8\x96\xE7\x95\x8C",  // 你好，世界
      "emoji \xF0\x9F\x98\x80\xF0\x9F\x8E\x89 party",                  // 😀🎉
      "\xCE\x95\xCE\xBB\xCE\xBB\xCE\xB7\xCE\xBD\xCE\xB9\xCE\xBA\xCE\xAC and "
      "\xD1\x80\xD1\x83\xD1\x81\xD1\x81\xD0\xBA\xD0\xB8\xD0\xB9",  // Ελληνικά and русский
      "Lily's ball was \"red\"! Tim said: (no) - ok?",
      "tab\tand\r\nCRLF",
      "digits 1234567890 and 3.14",
      "<0x41> <s> </s> <unk> look like special pieces",
      "a literal \xE2\x96\x81 marker",  // U+2581, SentencePiece's space symbol
      "\xE2\x96\x81",
      std::string("nul\0byte", 8),
      "The end.\n",
      "She saw a big, red ball. She wanted to play with it, but it was too high.",
  };
}

class Stories260kTokenizersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CANDOR_REQUIRE_SHARED(kBinPath);
    CANDOR_REQUIRE_SHARED(kModelPath);
    llama2c_ = load_llama2c_tokenizer(shared_path(kBinPath));
    sentencepiece_ = load_sentencepiece_tokenizer(shared_path(kModelPath));
  }

  std::unique_ptr<Tokenizer> llama2c_;
  std::unique_ptr<Tokenizer> sentencepiece_;
};

// Input tokens of the reference run (column 2 of the golden logits file).
std::vector<TokenId> golden_input_tokens() {
  std::ifstream in(shared_path(kGoldenTokensPath));
  std::vector<TokenId> ids;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    int position = 0;
    TokenId token = 0;
    fields >> position >> token;
    ids.push_back(token);
  }
  return ids;
}

// The merge loop of llama2.c's run.c written plainly (quadratic): look up each code point, else
// byte fallback; merge the best-scoring adjacent pair (first on ties) until none is left.
std::vector<TokenId> quadratic_reference_encode(const Tokenizer& tokenizer,
                                                const std::string& text) {
  std::map<std::string, TokenId> vocab;
  for (TokenId id = tokenizer.vocab_size() - 1; id >= 0; --id) vocab[tokenizer.piece(id)] = id;
  std::vector<TokenId> tokens{tokenizer.bos_id()};
  if (text.empty()) return tokens;
  const std::string padded = " " + text;
  for (size_t i = 0; i < padded.size();) {
    size_t length = 1;
    while (i + length < padded.size() && (padded[i + length] & 0xC0) == 0x80) ++length;
    const auto it = vocab.find(padded.substr(i, length));
    if (it != vocab.end()) {
      tokens.push_back(it->second);
    } else {
      for (size_t k = 0; k < length; ++k) tokens.push_back(static_cast<uint8_t>(padded[i + k]) + 3);
    }
    i += length;
  }
  while (true) {
    float best_score = -1e10f;
    TokenId best_id = -1;
    size_t best_index = 0;
    for (size_t i = 1; i + 1 < tokens.size(); ++i) {
      const auto it = vocab.find(tokenizer.piece(tokens[i]) + tokenizer.piece(tokens[i + 1]));
      if (it != vocab.end() && tokenizer.score(it->second) > best_score) {
        best_score = tokenizer.score(it->second);
        best_id = it->second;
        best_index = i;
      }
    }
    if (best_id < 0) break;
    tokens[best_index] = best_id;
    tokens.erase(tokens.begin() + static_cast<long>(best_index) + 1);
  }
  return tokens;
}

// Random text from fragments that exercise merges, whitespace, byte fallback and odd pieces.
std::string random_text(std::mt19937* rng) {
  // Besides ASCII: é, Ü, 中, a hair space (a piece of this vocabulary), ▁, 😀.
  static const std::vector<std::string> fragments = {"a",
                                                     "e",
                                                     "t",
                                                     "h",
                                                     "o",
                                                     "n",
                                                     "s",
                                                     " ",
                                                     "  ",
                                                     "\n",
                                                     ".",
                                                     ",",
                                                     "'",
                                                     "the",
                                                     "and",
                                                     " once",
                                                     "upon",
                                                     "Lily",
                                                     "0",
                                                     "7",
                                                     "<",
                                                     "0x",
                                                     ">",
                                                     "-",
                                                     "\t",
                                                     "\r",
                                                     "\xC3\xA9",
                                                     "\xC3\x9C",
                                                     "\xE4\xB8\xAD",
                                                     "\xE2\x80\x8A",
                                                     "\xE2\x96\x81",
                                                     "\xF0\x9F\x98\x80"};
  std::string text;
  const int n = static_cast<int>((*rng)() % 24);
  for (int i = 0; i < n; ++i) text += fragments[(*rng)() % fragments.size()];
  return text;
}

TEST_F(Stories260kTokenizersTest, ReportsTheirKindAndSpecialIds) {
  EXPECT_EQ(llama2c_->kind(), "llama2c");
  EXPECT_EQ(sentencepiece_->kind(), "sentencepiece");
  for (const Tokenizer* tokenizer : {llama2c_.get(), sentencepiece_.get()}) {
    EXPECT_EQ(tokenizer->vocab_size(), 512);
    EXPECT_EQ(tokenizer->bos_id(), 1);
    EXPECT_EQ(tokenizer->eos_id(), 2);
  }
}

TEST_F(Stories260kTokenizersTest, VocabulariesAgreeOnPiecesAndScores) {
  // The special pieces are spelled differently ("\n<s>\n" in tokenizer.bin, "<s>" in the
  // SentencePiece model); every other piece and score matches, with "▁" shown as ' '.
  for (TokenId id = 3; id < 512; ++id) {
    EXPECT_EQ(llama2c_->piece(id), sentencepiece_->piece(id)) << "id " << id;
    EXPECT_EQ(llama2c_->score(id), sentencepiece_->score(id)) << "id " << id;
  }
  EXPECT_EQ(llama2c_->piece(403), " Once");
  EXPECT_EQ(sentencepiece_->piece(13), "<0x0A>");
}

TEST_F(Stories260kTokenizersTest, BothGiveIdenticalIdsOnVariedSentences) {
  for (const std::string& text : sample_sentences()) {
    for (bool add_bos : {true, false}) {
      for (bool add_eos : {false, true}) {
        EXPECT_EQ(llama2c_->encode(text, add_bos, add_eos),
                  sentencepiece_->encode(text, add_bos, add_eos))
            << "text [" << text << "] bos " << add_bos << " eos " << add_eos;
      }
    }
  }
}

TEST_F(Stories260kTokenizersTest, DecodeInvertsEncodeForBothTokenizers) {
  for (const Tokenizer* tokenizer : {llama2c_.get(), sentencepiece_.get()}) {
    for (const std::string& text : sample_sentences()) {
      EXPECT_EQ(tokenizer->decode(tokenizer->encode(text)), text)
          << tokenizer->kind() << " text [" << text << "]";
      EXPECT_EQ(tokenizer->decode(tokenizer->encode(text, false, true)), text)
          << tokenizer->kind() << " without BOS, with EOS: [" << text << "]";
    }
  }
}

TEST_F(Stories260kTokenizersTest, NonAsciiOutsideTheVocabularyFallsBackToBytes) {
  // "你" is E4 BD A0; byte pieces are id = byte + 3. The dummy prefix " " is id 410.
  const std::vector<TokenId> expected{1, 410, 0xE4 + 3, 0xBD + 3, 0xA0 + 3};
  EXPECT_EQ(llama2c_->encode("\xE4\xBD\xA0"), expected);
  EXPECT_EQ(sentencepiece_->encode("\xE4\xBD\xA0"), expected);
}

TEST_F(Stories260kTokenizersTest, AgreeOnSeededRandomText) {
  std::mt19937 rng(20240501);
  for (int i = 0; i < 3000; ++i) {
    const std::string text = random_text(&rng);
    const auto ids = llama2c_->encode(text, true, true);
    ASSERT_EQ(ids, sentencepiece_->encode(text, true, true)) << "text [" << text << "]";
    ASSERT_EQ(llama2c_->decode(ids), text);
    ASSERT_EQ(sentencepiece_->decode(ids), text);
  }
}

TEST_F(Stories260kTokenizersTest, Llama2cEncodeMatchesQuadraticRunCReference) {
  std::mt19937 rng(7);
  std::vector<std::string> texts = sample_sentences();
  for (int i = 0; i < 500; ++i) texts.push_back(random_text(&rng));
  for (const std::string& text : texts) {
    ASSERT_EQ(llama2c_->encode(text), quadratic_reference_encode(*llama2c_, text))
        << "text [" << text << "]";
  }
}

TEST_F(Stories260kTokenizersTest, EncodesOnceUponATimeLikeTheReferenceRun) {
  const std::vector<TokenId> expected{1, 403, 407, 261, 378};
  EXPECT_EQ(llama2c_->encode("Once upon a time"), expected);
  EXPECT_EQ(sentencepiece_->encode("Once upon a time"), expected);
  CANDOR_REQUIRE_SHARED(kGoldenTokensPath);
  const std::vector<TokenId> golden = golden_input_tokens();
  ASSERT_GE(golden.size(), expected.size());
  EXPECT_EQ(std::vector<TokenId>(golden.begin(), golden.begin() + 5), expected);
}

TEST_F(Stories260kTokenizersTest, DecodesReferenceRunTokensToReferenceText) {
  CANDOR_REQUIRE_SHARED(kGoldenTokensPath);
  CANDOR_REQUIRE_SHARED(kGoldenTextPath);
  // The reference runner prints every piece after the BOS; its stdout also holds the piece
  // of the last step's prediction, which is not an input token, so ours must be a prefix.
  std::ifstream in(shared_path(kGoldenTextPath), std::ios::binary);
  const std::string golden_text((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  const std::vector<TokenId> ids = golden_input_tokens();
  ASSERT_EQ(ids.size(), 64u);
  for (const Tokenizer* tokenizer : {llama2c_.get(), sentencepiece_.get()}) {
    const std::string text = tokenizer->decode(ids);
    EXPECT_GT(text.size(), 150u);
    EXPECT_EQ(golden_text.compare(0, text.size(), text), 0)
        << tokenizer->kind() << " decoded [" << text << "]";
  }
}

TEST_F(Stories260kTokenizersTest, DecodePieceDropsTheLeadingSpaceOnlyAfterBos) {
  for (const Tokenizer* tokenizer : {llama2c_.get(), sentencepiece_.get()}) {
    EXPECT_EQ(tokenizer->decode_piece(1, 403), "Once") << tokenizer->kind();
    EXPECT_EQ(tokenizer->decode_piece(403, 407), " upon") << tokenizer->kind();
    EXPECT_EQ(tokenizer->decode_piece(261, 403), " Once") << tokenizer->kind();
    // A byte piece yields its raw byte, even a space right after BOS.
    EXPECT_EQ(tokenizer->decode_piece(378, 13), "\n") << tokenizer->kind();
    EXPECT_EQ(tokenizer->decode_piece(1, 0x20 + 3), " ") << tokenizer->kind();
    EXPECT_EQ(tokenizer->decode_piece(1, 0xE4 + 3), "\xE4") << tokenizer->kind();
    // Special tokens yield nothing.
    EXPECT_EQ(tokenizer->decode_piece(1, 0), "") << tokenizer->kind();
    EXPECT_EQ(tokenizer->decode_piece(1, 1), "") << tokenizer->kind();
    EXPECT_EQ(tokenizer->decode_piece(378, 2), "") << tokenizer->kind();
  }
}

TEST_F(Stories260kTokenizersTest, RejectInvalidUtf8NamingTheByteOffset) {
  const std::string text = "Once \xC3\x28 upon";  // C3 needs a continuation byte
  for (const Tokenizer* tokenizer : {llama2c_.get(), sentencepiece_.get()}) {
    try {
      tokenizer->encode(text);
      ADD_FAILURE() << tokenizer->kind() << " accepted invalid UTF-8";
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument) << tokenizer->kind();
      EXPECT_NE(std::string(error.what()).find("byte offset 5"), std::string::npos) << error.what();
      EXPECT_FALSE(error.hint().empty());
    }
    EXPECT_THROW(tokenizer->encode("\xED\xA0\x80"), Error) << "surrogate, " << tokenizer->kind();
    EXPECT_THROW(tokenizer->encode("abc\xF0\x9F"), Error) << "truncated, " << tokenizer->kind();
  }
}

TEST_F(Stories260kTokenizersTest, RejectOutOfRangeIds) {
  for (const Tokenizer* tokenizer : {llama2c_.get(), sentencepiece_.get()}) {
    for (TokenId bad : {-1, 512, 100000}) {
      try {
        tokenizer->decode_piece(1, bad);
        ADD_FAILURE() << tokenizer->kind() << " decoded id " << bad;
      } catch (const Error& error) {
        EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
        EXPECT_NE(std::string(error.what()).find(std::to_string(bad)), std::string::npos)
            << error.what();
      }
      EXPECT_THROW(tokenizer->piece(bad), Error);
      EXPECT_THROW(tokenizer->score(bad), Error);
      EXPECT_THROW(tokenizer->decode({403, bad}), Error);
    }
  }
}

TEST_F(Stories260kTokenizersTest, LoadTokenizerDetectsEachFormat) {
  EXPECT_EQ(load_tokenizer(shared_path(kBinPath))->kind(), "llama2c");
  EXPECT_EQ(load_tokenizer(shared_path(kModelPath))->kind(), "sentencepiece");
}

TEST_F(Stories260kTokenizersTest, CanBeUsedFromSeveralThreadsAtOnce) {
  const std::vector<std::string> texts = sample_sentences();
  std::vector<std::vector<TokenId>> expected;
  for (const std::string& text : texts) expected.push_back(sentencepiece_->encode(text));
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const Tokenizer& tokenizer = t % 2 == 0 ? *llama2c_ : *sentencepiece_;
      for (int round = 0; round < 50; ++round) {
        for (size_t i = 0; i < texts.size(); ++i) {
          if (tokenizer.encode(texts[i]) != expected[i]) ++mismatches[t];
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

}  // namespace
}  // namespace candor
