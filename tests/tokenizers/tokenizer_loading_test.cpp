// Tests of tokenizer loading and of the llama2.c merge rules on small vocabularies written at
// test time: missing, truncated and garbage files give clear errors; ties merge leftmost.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "candor/error.h"
#include "candor/tokenizer.h"
#include "test_util.h"

namespace candor {
namespace {

using ::candor::testing::shared_path;
using ::candor::testing::temp_dir;
using Pieces = std::vector<std::pair<std::string, float>>;

void append_le32(uint32_t value, std::string* out) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
}

// Serializes a llama2.c tokenizer.bin: int32 max_token_length, then per piece float score,
// int32 length, bytes.
std::string llama2c_bytes(const Pieces& pieces, int32_t max_token_length) {
  std::string out;
  append_le32(static_cast<uint32_t>(max_token_length), &out);
  for (const auto& [text, score] : pieces) {
    uint32_t bits = 0;
    std::memcpy(&bits, &score, sizeof(bits));
    append_le32(bits, &out);
    append_le32(static_cast<uint32_t>(text.size()), &out);
    out += text;
  }
  return out;
}

std::string write_file(const std::string& name, const std::string& bytes) {
  const std::string path = temp_dir() + "/" + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The llama2.c layout: <unk>, <s>, </s>, the 256 byte pieces, then `extra`.
Pieces vocabulary_with(const Pieces& extra) {
  Pieces pieces{{"<unk>", 0.0f}, {"\n<s>\n", 0.0f}, {"\n</s>\n", 0.0f}};
  for (int byte = 0; byte < 256; ++byte) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", byte);
    pieces.emplace_back(name, 0.0f);
  }
  pieces.insert(pieces.end(), extra.begin(), extra.end());
  return pieces;
}

// Id of the n-th extra piece of vocabulary_with().
constexpr TokenId extra_id(int n) { return 259 + n; }

// Runs `load` and returns the Error it throws (fails the test when it does not throw).
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

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// ---------------------------------------------------------------------------------------------
// Missing, truncated and garbage files
// ---------------------------------------------------------------------------------------------

TEST(TokenizerLoadingTest, MissingFileIsNotFoundAndNamesThePath) {
  const std::string path = temp_dir() + "/no_such_tokenizer.bin";
  for (auto load : {&load_llama2c_tokenizer, &load_sentencepiece_tokenizer, &load_tokenizer}) {
    const Error error = error_from([&] { load(path); });
    EXPECT_EQ(error.code(), ErrorCode::kNotFound);
    EXPECT_TRUE(contains(error.what(), path)) << error.what();
    EXPECT_FALSE(error.hint().empty());
  }
}

TEST(TokenizerLoadingTest, DirectoryIsRejectedAsInvalidArgument) {
  const std::string dir = temp_dir();
  const Error error = error_from([&] { load_tokenizer(dir); });
  EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(contains(error.what(), dir)) << error.what();
}

TEST(TokenizerLoadingTest, TruncatedRealTokenizerBinNamesFileAndOffset) {
  CANDOR_REQUIRE_SHARED("models/stories260K/tok512.bin");
  const std::string bytes = read_file(shared_path("models/stories260K/tok512.bin"));
  ASSERT_GT(bytes.size(), 1000u);
  // Cut inside the header, inside a record's score/length, and inside a piece's bytes
  // (record 0 is score 0, length 5, "<unk>": its piece spans bytes 12..16).
  for (size_t cut : {size_t{2}, size_t{9}, size_t{14}, bytes.size() - 1}) {
    const std::string path = write_file("tok512_cut.bin", bytes.substr(0, cut));
    for (auto load : {&load_llama2c_tokenizer, &load_tokenizer}) {
      const Error error = error_from([&] { load(path); });
      EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument) << "cut at " << cut;
      EXPECT_TRUE(contains(error.what(), path)) << error.what();
      EXPECT_TRUE(contains(error.what(), "byte offset")) << error.what();
    }
  }
  const std::string path = write_file("tok512_cut.bin", bytes.substr(0, 14));
  const Error error = error_from([&] { load_llama2c_tokenizer(path); });
  EXPECT_TRUE(contains(error.what(), "byte offset 12")) << error.what();
  EXPECT_TRUE(contains(error.what(), "truncated")) << error.what();
}

TEST(TokenizerLoadingTest, TruncatedSentencePieceModelNamesTheFile) {
  CANDOR_REQUIRE_SHARED("models/stories260K/tok512.model");
  const std::string bytes = read_file(shared_path("models/stories260K/tok512.model"));
  const std::string path = write_file("tok512_cut.model", bytes.substr(0, bytes.size() / 2));
  for (auto load : {&load_sentencepiece_tokenizer, &load_tokenizer}) {
    const Error error = error_from([&] { load(path); });
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    EXPECT_TRUE(contains(error.what(), path)) << error.what();
    EXPECT_TRUE(contains(error.what(), "SentencePiece model")) << error.what();
    EXPECT_TRUE(contains(error.what(), "byte offset")) << error.what();
  }
}

TEST(TokenizerLoadingTest, GarbageFileGivesAClearError) {
  const std::string path =
      write_file("garbage.txt", "This is a README, not a tokenizer. It has text and no pieces.\n");
  const Error error = error_from([&] { load_tokenizer(path); });
  EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(contains(error.what(), path)) << error.what();
  EXPECT_TRUE(contains(error.what(), "neither a SentencePiece")) << error.what();
  EXPECT_FALSE(error.hint().empty());

  EXPECT_EQ(error_from([&] { load_sentencepiece_tokenizer(path); }).code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(error_from([&] { load_llama2c_tokenizer(path); }).code(), ErrorCode::kInvalidArgument);
}

TEST(TokenizerLoadingTest, EmptyFileIsInvalidArgument) {
  const std::string path = write_file("empty.bin", "");
  for (auto load : {&load_llama2c_tokenizer, &load_sentencepiece_tokenizer, &load_tokenizer}) {
    const Error error = error_from([&] { load(path); });
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    EXPECT_TRUE(contains(error.what(), path)) << error.what();
  }
}

TEST(TokenizerLoadingTest, ImplausibleHeaderAndPieceLengthsAreRejectedWithOffsets) {
  const Pieces pieces = vocabulary_with({{"a", 0.0f}});
  const Error zero_header =
      error_from([&] { load_llama2c_tokenizer(write_file("zero.bin", llama2c_bytes(pieces, 0))); });
  EXPECT_EQ(zero_header.code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(contains(zero_header.what(), "max_token_length")) << zero_header.what();

  // Piece 0 ("<unk>", 5 bytes) longer than a header that promises at most 4 bytes.
  const Error too_long =
      error_from([&] { load_llama2c_tokenizer(write_file("long.bin", llama2c_bytes(pieces, 4))); });
  EXPECT_EQ(too_long.code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(contains(too_long.what(), "byte offset 8")) << too_long.what();

  std::string negative = llama2c_bytes({{"<unk>", 0.0f}}, 8);
  append_le32(0, &negative);
  append_le32(0xFFFFFFFFu, &negative);  // length -1
  const Error negative_length =
      error_from([&] { load_llama2c_tokenizer(write_file("neg.bin", negative)); });
  EXPECT_EQ(negative_length.code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(contains(negative_length.what(), "length -1")) << negative_length.what();
}

TEST(TokenizerLoadingTest, VocabularyWithoutTheSpecialTokensIsRejected) {
  const std::string path = write_file("two.bin", llama2c_bytes({{"<unk>", 0}, {"<s>", 0}}, 8));
  EXPECT_EQ(error_from([&] { load_llama2c_tokenizer(path); }).code(), ErrorCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// llama2.c merge rules on small vocabularies
// ---------------------------------------------------------------------------------------------

TEST(Llama2cTokenizerTest, VocabularySizeIsTheNumberOfRecords) {
  const auto tokenizer = load_llama2c_tokenizer(
      write_file("v.bin", llama2c_bytes(vocabulary_with({{" ", 0}, {"a", 0}}), 6)));
  EXPECT_EQ(tokenizer->vocab_size(), 261);
  EXPECT_EQ(tokenizer->piece(extra_id(1)), "a");
}

TEST(Llama2cTokenizerTest, EqualScoresMergeTheLeftmostPairFirst) {
  // " aba": "ab" and "ba" score the same, so "ab" (further left) wins and blocks "ba".
  const Pieces extra{{" ", 0}, {"a", 0}, {"b", 0}, {"ab", -1}, {"ba", -1}};
  const auto tokenizer =
      load_llama2c_tokenizer(write_file("tie.bin", llama2c_bytes(vocabulary_with(extra), 6)));
  EXPECT_EQ(tokenizer->encode("aba"),
            (std::vector<TokenId>{1, extra_id(0), extra_id(3), extra_id(1)}));
  EXPECT_EQ(tokenizer->encode("bab"),
            (std::vector<TokenId>{1, extra_id(0), extra_id(4), extra_id(2)}));
}

TEST(Llama2cTokenizerTest, HigherScoringPairMergesFirstAndMergesChain) {
  // "bc" (score 0) beats "ab" (-1); then "bc"+"d" -> "bcd" and " "+"a" never merge.
  const Pieces extra{{" ", 0},   {"a", 0},  {"b", 0},    {"c", 0},    {"d", 0},
                     {"ab", -1}, {"bc", 0}, {"bcd", -2}, {"abcd", -3}};
  const auto tokenizer =
      load_llama2c_tokenizer(write_file("chain.bin", llama2c_bytes(vocabulary_with(extra), 6)));
  // a b c d -> a [bc] d -> a [bcd] -> [abcd]; "ab" never applies because "bc" came first.
  EXPECT_EQ(tokenizer->encode("abcd", false), (std::vector<TokenId>{extra_id(0), extra_id(8)}));
  EXPECT_EQ(tokenizer->encode("abc", false),
            (std::vector<TokenId>{extra_id(0), extra_id(1), extra_id(6)}));
  EXPECT_EQ(tokenizer->decode(tokenizer->encode("abcd abc")), "abcd abc");
}

TEST(Llama2cTokenizerTest, PiecesSpelledLikeBytesOrSpecialsAreNotMatchedInText) {
  // Special tokens spelled "<s>", "</s>" (as SentencePiece spells them) and merges that could
  // rebuild them or a byte piece: text typed as "<s>" or "<0x41>" stays ordinary characters
  // and never becomes the BOS token or the byte 'A'.
  Pieces pieces = vocabulary_with({{" ", 0},
                                   {"<", 0},
                                   {">", 0},
                                   {"s", 0},
                                   {"<s", -1},
                                   {"0", 0},
                                   {"x", 0},
                                   {"4", 0},
                                   {"1", 0},
                                   {"<0", -2},
                                   {"<0x", -3},
                                   {"<0x4", -4},
                                   {"<0x41", -5}});
  pieces[1].first = "<s>";
  pieces[2].first = "</s>";
  const auto tokenizer = load_llama2c_tokenizer(write_file("sp.bin", llama2c_bytes(pieces, 6)));
  const std::vector<TokenId> bos_like = tokenizer->encode("<s>", false);
  EXPECT_EQ(bos_like, (std::vector<TokenId>{extra_id(0), extra_id(4), extra_id(2)}));
  EXPECT_EQ(tokenizer->decode(bos_like), "<s>");
  const std::vector<TokenId> byte_like = tokenizer->encode("<0x41>", false);
  EXPECT_EQ(byte_like, (std::vector<TokenId>{extra_id(0), extra_id(12), extra_id(2)}));
  EXPECT_EQ(tokenizer->decode(byte_like), "<0x41>");
}

TEST(Llama2cTokenizerTest, CharacterOutsideAVocabularyWithoutBytePiecesIsUnsupported) {
  const std::string path = write_file(
      "nobytes.bin",
      llama2c_bytes({{"<unk>", 0}, {"\n<s>\n", 0}, {"\n</s>\n", 0}, {" ", 0}, {"a", 0}, {" a", -1}},
                    6));
  const auto tokenizer = load_llama2c_tokenizer(path);
  EXPECT_EQ(tokenizer->encode("a"), (std::vector<TokenId>{1, 5}));
  const Error error = error_from([&] { tokenizer->encode("a\xC3\xA9"); });
  EXPECT_EQ(error.code(), ErrorCode::kUnsupported);
  EXPECT_TRUE(contains(error.what(), "byte offset 1")) << error.what();
}

TEST(Llama2cTokenizerTest, LoadTokenizerReadsABinWhoseHeaderLooksLikeProtobuf) {
  // max_token_length 10 makes the file start with byte 0x0A, the tag a SentencePiece model
  // starts with.
  const std::string path =
      write_file("ten.bin", llama2c_bytes(vocabulary_with({{" ", 0}, {"a", 0}}), 10));
  const auto tokenizer = load_tokenizer(path);
  EXPECT_EQ(tokenizer->kind(), "llama2c");
  EXPECT_EQ(tokenizer->vocab_size(), 261);
}

TEST(Llama2cTokenizerTest, EncodesEmptyTextToJustTheRequestedSpecials) {
  const auto tokenizer =
      load_llama2c_tokenizer(write_file("e.bin", llama2c_bytes(vocabulary_with({{" ", 0}}), 6)));
  EXPECT_EQ(tokenizer->encode(""), (std::vector<TokenId>{1}));
  EXPECT_EQ(tokenizer->encode("", true, true), (std::vector<TokenId>{1, 2}));
  EXPECT_TRUE(tokenizer->encode("", false, false).empty());
  EXPECT_EQ(tokenizer->decode({}), "");
}

}  // namespace
}  // namespace candor
