// UTF-8 validation for tokenizer input: well-formed sequences only (RFC 3629), with the offset
// and a description of the first bad sequence for error messages.
#include <cstdio>
#include <string>

#include "candor/error.h"
#include "candor/tokenizer.h"
#include "tokenizers/tokenizer_internal.h"

namespace candor {
namespace tokenizers {

namespace {

bool is_continuation(unsigned char byte) { return (byte & 0xC0) == 0x80; }

}  // namespace

const char* utf8_problem(std::string_view text, size_t* bad_offset) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  const size_t size = text.size();
  size_t i = 0;
  while (i < size) {
    const unsigned char lead = bytes[i];
    if (lead < 0x80) {
      ++i;
      continue;
    }
    if (bad_offset != nullptr) *bad_offset = i;
    if (is_continuation(lead)) return "unexpected continuation byte";
    if (lead == 0xC0 || lead == 0xC1) return "overlong encoding";
    if (lead > 0xF4) return lead >= 0xF8 ? "invalid byte" : "code point above U+10FFFF";
    const size_t length = utf8_sequence_length(lead);
    // The second byte's allowed range excludes overlongs, surrogates and values above U+10FFFF.
    unsigned char low = 0x80;
    unsigned char high = 0xBF;
    const char* narrowed = nullptr;
    if (lead == 0xE0) {
      low = 0xA0;
      narrowed = "overlong encoding";
    } else if (lead == 0xED) {
      high = 0x9F;
      narrowed = "UTF-16 surrogate (U+D800..U+DFFF)";
    } else if (lead == 0xF0) {
      low = 0x90;
      narrowed = "overlong encoding";
    } else if (lead == 0xF4) {
      high = 0x8F;
      narrowed = "code point above U+10FFFF";
    }
    for (size_t k = 1; k < length; ++k) {
      if (i + k >= size) return "truncated sequence at end of text";
      const unsigned char byte = bytes[i + k];
      if (!is_continuation(byte)) return "truncated sequence (missing continuation byte)";
      if (k == 1 && (byte < low || byte > high)) return narrowed;
    }
    i += length;
  }
  return nullptr;
}

void require_valid_utf8(std::string_view text) {
  size_t offset = 0;
  const char* problem = utf8_problem(text, &offset);
  if (problem == nullptr) return;
  std::string bytes;
  for (size_t k = offset; k < text.size() && k < offset + 4; ++k) {
    char hex[8];
    std::snprintf(hex, sizeof(hex), "%s0x%02X", bytes.empty() ? "" : " ",
                  static_cast<unsigned char>(text[k]));
    bytes += hex;
  }
  throw Error(ErrorCode::kInvalidArgument,
              "text is not valid UTF-8 at byte offset " + std::to_string(offset) + ": " + problem +
                  " (bytes " + bytes + ")",
              "pass UTF-8 text; convert other encodings (e.g. Latin-1) to UTF-8 first");
}

}  // namespace tokenizers

bool is_valid_utf8(std::string_view text, size_t* bad_offset) {
  return tokenizers::utf8_problem(text, bad_offset) == nullptr;
}

}  // namespace candor
