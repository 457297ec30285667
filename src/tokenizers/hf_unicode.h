// Unicode services for the Hugging Face tokenizers (through ICU): regular expressions with the
// semantics of the Oniguruma patterns in tokenizer.json files, normalization forms, lowercasing
// and character classes. Not a public header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "candor/utf8.h"

namespace candor::tokenizers::unicode {

// Decoding and encoding of code points: candor/utf8.h.
using utf8::next_codepoint;
inline void append_utf8(char32_t cp, std::string* out) { utf8::append(cp, out); }

// A compiled pattern. Thread-safe: each call uses its own matcher.
class Regex {
 public:
  // `pattern` in the syntax of tokenizer.json (Oniguruma); `literal` compiles it as plain text.
  // Throws Error(kInvalidArgument) with ICU's message when it does not compile; `where` names
  // the file and field for that message.
  Regex(const std::string& pattern, bool literal, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Byte ranges [begin, end) of the successive non-empty matches in `text`.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;
  // `text` with every match replaced by `replacement` (taken literally).
  std::string replace_all(std::string_view text, const std::string& replacement) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

enum class Form { kNFC, kNFD, kNFKC, kNFKD };
std::string normalize(std::string_view text, Form form);
// Full Unicode lowercase (root locale: final sigma handled, no language rules).
std::string lowercase(std::string_view text);

// Character classes as the Hugging Face tokenizers define them.
bool is_whitespace(char32_t cp);       // White_Space property (and \t \n \r)
bool is_control(char32_t cp);          // general category Cc, Cf, Co or Cs, except \t \n \r
bool is_punctuation(char32_t cp);      // ASCII punctuation or general category P*
bool is_nonspacing_mark(char32_t cp);  // Mn
bool is_chinese_char(char32_t cp);     // the CJK ideograph blocks BERT pads with spaces
bool is_digit(char32_t cp);            // general category Nd

}  // namespace candor::tokenizers::unicode
