// Tests of is_valid_utf8: well-formed sequences pass, each kind of malformed sequence fails at
// the byte offset where it starts.
#include <gtest/gtest.h>

#include <string>

#include "candor/tokenizer.h"

namespace candor {
namespace {

// Returns the reported bad offset, or -1 when the text is valid.
long bad_offset_of(const std::string& text) {
  size_t offset = 12345;
  if (is_valid_utf8(text, &offset)) return -1;
  return static_cast<long>(offset);
}

TEST(Utf8Test, AcceptsAsciiAndEmptyText) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("Once upon a time\n"));
  EXPECT_TRUE(is_valid_utf8(std::string("nul\0inside", 10)));
}

TEST(Utf8Test, AcceptsTwoThreeAndFourByteSequencesAtTheirLimits) {
  EXPECT_TRUE(is_valid_utf8("\xC2\x80"));          // U+0080, smallest 2-byte
  EXPECT_TRUE(is_valid_utf8("\xDF\xBF"));          // U+07FF
  EXPECT_TRUE(is_valid_utf8("\xE0\xA0\x80"));      // U+0800, smallest 3-byte
  EXPECT_TRUE(is_valid_utf8("\xED\x9F\xBF"));      // U+D7FF, just below the surrogates
  EXPECT_TRUE(is_valid_utf8("\xEE\x80\x80"));      // U+E000, just above them
  EXPECT_TRUE(is_valid_utf8("\xEF\xBF\xBF"));      // U+FFFF
  EXPECT_TRUE(is_valid_utf8("\xF0\x90\x80\x80"));  // U+10000, smallest 4-byte
  EXPECT_TRUE(is_valid_utf8("\xF4\x8F\xBF\xBF"));  // U+10FFFF, the largest code point
  EXPECT_TRUE(is_valid_utf8("caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80"));
}

TEST(Utf8Test, RejectsOverlongEncodings) {
  EXPECT_EQ(bad_offset_of("ab\xC0\xAF"), 2);           // '/' in two bytes
  EXPECT_EQ(bad_offset_of("\xC1\xBF"), 0);             // U+007F in two bytes
  EXPECT_EQ(bad_offset_of("x\xE0\x80\xAF"), 1);        // '/' in three bytes
  EXPECT_EQ(bad_offset_of("\xE0\x9F\xBF"), 0);         // U+07FF in three bytes
  EXPECT_EQ(bad_offset_of("xyz\xF0\x8F\xBF\xBF"), 3);  // U+FFFF in four bytes
}

TEST(Utf8Test, RejectsSurrogates) {
  EXPECT_EQ(bad_offset_of("a\xED\xA0\x80"), 1);  // U+D800
  EXPECT_EQ(bad_offset_of("\xED\xBF\xBF"), 0);   // U+DFFF
}

TEST(Utf8Test, RejectsCodePointsAboveU10FFFF) {
  EXPECT_EQ(bad_offset_of("\xF4\x90\x80\x80"), 0);    // U+110000
  EXPECT_EQ(bad_offset_of("ok\xF5\x80\x80\x80"), 2);  // lead byte F5
  EXPECT_EQ(bad_offset_of("\xFF"), 0);
  EXPECT_EQ(bad_offset_of("\xFE"), 0);
}

TEST(Utf8Test, RejectsTruncatedSequences) {
  EXPECT_EQ(bad_offset_of("caf\xC3"), 3);                  // cut at the end
  EXPECT_EQ(bad_offset_of("\xE4\xBD"), 0);                 // 3-byte sequence with 2 bytes
  EXPECT_EQ(bad_offset_of("\xF0\x9F\x98"), 0);             // 4-byte sequence with 3 bytes
  EXPECT_EQ(bad_offset_of("\xC3(after"), 0);               // continuation replaced by ASCII
  EXPECT_EQ(bad_offset_of("ok \xE4\xBD\xE4\xBD\xA0"), 3);  // new lead before the end
}

TEST(Utf8Test, RejectsStrayContinuationBytes) {
  EXPECT_EQ(bad_offset_of("\x80"), 0);
  EXPECT_EQ(bad_offset_of("abc\xBF"), 3);
  EXPECT_EQ(bad_offset_of("\xC3\xA9\xA9"), 2);  // one continuation too many
}

TEST(Utf8Test, ReportsTheFirstOfSeveralBadSequences) {
  EXPECT_EQ(bad_offset_of("\xC3\xA9 ok \xFF then \xC0\x80"), 6);
}

TEST(Utf8Test, LeavesOffsetOptional) { EXPECT_FALSE(is_valid_utf8("\xFF", nullptr)); }

}  // namespace
}  // namespace candor
