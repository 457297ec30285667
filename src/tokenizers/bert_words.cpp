// BERT's normalisation and pre-tokenisation as words (for vocabulary trainers).
#include "candor/tokenizer.h"
#include "tokenizers/hf_unicode.h"

namespace candor {

namespace uni = candor::tokenizers::unicode;

// BERT normalisation and pre-tokenisation (as BertNormalizer + BertPreTokenizer do it): control
// characters dropped, CJK ideographs split off, accents stripped, lower case, then words split
// at whitespace with every punctuation character a word of its own.
std::vector<std::string> bert_words(const std::string& text) {
  std::string clean;
  size_t bad = 0;
  if (!is_valid_utf8(text, &bad)) return {};
  for (size_t i = 0; i < text.size();) {
    char32_t cp = uni::next_codepoint(text, &i);
    if (cp == 0 || cp == 0xFFFD || uni::is_control(cp)) continue;
    if (uni::is_whitespace(cp)) {
      clean.push_back(' ');
    } else if (uni::is_chinese_char(cp)) {
      clean.push_back(' ');
      uni::append_utf8(cp, &clean);
      clean.push_back(' ');
    } else {
      uni::append_utf8(cp, &clean);
    }
  }
  std::string nfd = uni::normalize(clean, uni::Form::kNFD), stripped;
  for (size_t i = 0; i < nfd.size();) {
    char32_t cp = uni::next_codepoint(nfd, &i);
    if (!uni::is_nonspacing_mark(cp)) uni::append_utf8(cp, &stripped);
  }
  const std::string low = uni::lowercase(stripped);
  std::vector<std::string> words;
  std::string cur;
  for (size_t i = 0; i < low.size();) {
    char32_t cp = uni::next_codepoint(low, &i);
    if (uni::is_whitespace(cp) || uni::is_punctuation(cp)) {
      if (!cur.empty()) words.push_back(std::move(cur));
      cur.clear();
      if (uni::is_punctuation(cp)) {
        std::string p;
        uni::append_utf8(cp, &p);
        words.push_back(std::move(p));
      }
    } else {
      uni::append_utf8(cp, &cur);
    }
  }
  if (!cur.empty()) words.push_back(std::move(cur));
  return words;
}

}  // namespace candor
