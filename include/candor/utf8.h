// UTF-8, once for the whole library: validation (RFC 3629: no overlong forms, surrogates, code
// points above U+10FFFF or truncated sequences), decoding and encoding of code points. The
// tokenizers and the data readers both use it.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace candor::utf8 {

// Describes the first malformed sequence of `text` ("truncated sequence", "overlong encoding",
// ...), or returns nullptr when `text` is well-formed; `*bad_offset` (when given) gets the offset
// of the sequence's first byte.
const char* problem(std::string_view text, size_t* bad_offset = nullptr);
// The offset of the first byte of `text` that is not part of well-formed UTF-8, or npos.
size_t invalid_at(std::string_view text);

// Bytes of the sequence that starts with `lead` (1 for anything that is not a multi-byte lead
// byte). Only meaningful on validated text.
inline size_t sequence_length(unsigned char lead) {
  if (lead >= 0xF0) return 4;
  if (lead >= 0xE0) return 3;
  if (lead >= 0xC0) return 2;
  return 1;
}

// Decodes the code point at text[*i] (valid UTF-8 assumed) and advances *i past it.
char32_t next_codepoint(std::string_view text, size_t* i);
// Appends the UTF-8 encoding of `cp`.
void append(char32_t cp, std::string* out);

}  // namespace candor::utf8
