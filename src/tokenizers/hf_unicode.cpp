// ICU-backed Unicode services for the Hugging Face tokenizers (see hf_unicode.h).
#include "tokenizers/hf_unicode.h"

#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/uregex.h>
#include <unicode/utext.h>

#include <mutex>

#include "candor/error.h"

namespace candor::tokenizers::unicode {

namespace {

// Oniguruma's \s (and the Rust regex crate's) is the White_Space property; ICU's \s is
// [\t\n\f\r\p{Z}], which lacks U+000B and U+0085. Rewrites \s and \S to the property, inside and
// outside character classes; everything else means the same in both engines.
std::string translate_pattern(const std::string& pattern) {
  std::string out;
  out.reserve(pattern.size() + 16);
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char n = pattern[i + 1];
      if (n == 's') {
        out += "\\p{White_Space}";
      } else if (n == 'S') {
        out += "\\P{White_Space}";
      } else {
        out.push_back(c);
        out.push_back(n);
      }
      ++i;
      continue;
    }
    out.push_back(c);
  }
  return out;
}

bool is_ascii(std::string_view text) {
  for (char c : text)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

}  // namespace

struct Regex::Impl {
  URegularExpression* compiled = nullptr;
  std::mutex mutex;
  std::vector<URegularExpression*> free;  // clones ready for use

  URegularExpression* acquire() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (!free.empty()) {
        URegularExpression* re = free.back();
        free.pop_back();
        return re;
      }
    }
    UErrorCode status = U_ZERO_ERROR;
    URegularExpression* re = uregex_clone(compiled, &status);
    if (U_FAILURE(status)) {
      throw Error(
          ErrorCode::kInternal,
          std::string("cannot clone a compiled regular expression: ") + u_errorName(status));
    }
    return re;
  }
  void release(URegularExpression* re) {
    std::lock_guard<std::mutex> lock(mutex);
    free.push_back(re);
  }
  ~Impl() {
    for (URegularExpression* re : free) uregex_close(re);
    if (compiled != nullptr) uregex_close(compiled);
  }
};

Regex::Regex(const std::string& pattern, bool literal, const std::string& where)
    : impl_(std::make_unique<Impl>()) {
  const std::string translated = literal ? pattern : translate_pattern(pattern);
  const icu::UnicodeString u = icu::UnicodeString::fromUTF8(translated);
  UParseError parse_error{};
  UErrorCode status = U_ZERO_ERROR;
  impl_->compiled =
      uregex_open(u.getBuffer(), u.length(), literal ? UREGEX_LITERAL : 0, &parse_error, &status);
  if (U_FAILURE(status)) {
    throw Error(ErrorCode::kInvalidArgument,
                "cannot compile the regular expression \"" + pattern + "\" of " + where + ": " +
                    u_errorName(status) + " at offset " + std::to_string(parse_error.offset),
                "the tokenizer file may be damaged, or use a pattern syntax candor lacks");
  }
}

Regex::~Regex() = default;

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> matches;
  if (text.empty()) return matches;
  URegularExpression* re = impl_->acquire();
  UErrorCode status = U_ZERO_ERROR;
  UText* ut = utext_openUTF8(nullptr, text.data(), static_cast<int64_t>(text.size()), &status);
  uregex_setUText(re, ut, &status);
  while (U_SUCCESS(status) && uregex_findNext(re, &status)) {
    const int64_t begin = uregex_start64(re, 0, &status);
    const int64_t end = uregex_end64(re, 0, &status);
    if (end > begin) matches.emplace_back(static_cast<size_t>(begin), static_cast<size_t>(end));
  }
  // Detach the text before closing it, so that the clone can be reused.
  UErrorCode reset_status = U_ZERO_ERROR;
  uregex_setText(re, u"", 0, &reset_status);
  utext_close(ut);
  impl_->release(re);
  if (U_FAILURE(status)) {
    throw Error(ErrorCode::kInternal,
                std::string("regular expression matching failed: ") + u_errorName(status));
  }
  return matches;
}

std::string Regex::replace_all(std::string_view text, const std::string& replacement) const {
  std::string out;
  size_t last = 0;
  for (const auto& [begin, end] : find_all(text)) {
    out.append(text.substr(last, begin - last));
    out += replacement;
    last = end;
  }
  out.append(text.substr(last));
  return out;
}

std::string normalize(std::string_view text, Form form) {
  if (is_ascii(text)) return std::string(text);
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* n = nullptr;
  switch (form) {
    case Form::kNFC:
      n = icu::Normalizer2::getNFCInstance(status);
      break;
    case Form::kNFD:
      n = icu::Normalizer2::getNFDInstance(status);
      break;
    case Form::kNFKC:
      n = icu::Normalizer2::getNFKCInstance(status);
      break;
    case Form::kNFKD:
      n = icu::Normalizer2::getNFKDInstance(status);
      break;
  }
  if (U_FAILURE(status) || n == nullptr) {
    throw Error(ErrorCode::kInternal,
                std::string("ICU normalizer unavailable: ") + u_errorName(status));
  }
  const icu::UnicodeString u = icu::UnicodeString::fromUTF8(
      icu::StringPiece(text.data(), static_cast<int32_t>(text.size())));
  if (n->isNormalized(u, status) && U_SUCCESS(status)) return std::string(text);
  status = U_ZERO_ERROR;
  const icu::UnicodeString normalized = n->normalize(u, status);
  std::string out;
  normalized.toUTF8String(out);
  return out;
}

std::string lowercase(std::string_view text) {
  if (is_ascii(text)) {
    std::string out(text);
    for (char& c : out)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
  }
  icu::UnicodeString u = icu::UnicodeString::fromUTF8(
      icu::StringPiece(text.data(), static_cast<int32_t>(text.size())));
  u.toLower(icu::Locale::getRoot());
  std::string out;
  u.toUTF8String(out);
  return out;
}

bool is_whitespace(char32_t cp) {
  if (cp == '\t' || cp == '\n' || cp == '\r' || cp == ' ') return true;
  if (cp < 0x80) return cp == 0x0B || cp == 0x0C;
  return u_hasBinaryProperty(static_cast<UChar32>(cp), UCHAR_WHITE_SPACE) != 0;
}

bool is_control(char32_t cp) {
  if (cp == '\t' || cp == '\n' || cp == '\r') return false;
  const int8_t t = u_charType(static_cast<UChar32>(cp));
  return t == U_CONTROL_CHAR || t == U_FORMAT_CHAR || t == U_PRIVATE_USE_CHAR || t == U_SURROGATE;
}

bool is_punctuation(char32_t cp) {
  if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
      (cp >= 123 && cp <= 126)) {
    return true;
  }
  if (cp < 0x80) return false;
  switch (u_charType(static_cast<UChar32>(cp))) {
    case U_DASH_PUNCTUATION:
    case U_START_PUNCTUATION:
    case U_END_PUNCTUATION:
    case U_CONNECTOR_PUNCTUATION:
    case U_OTHER_PUNCTUATION:
    case U_INITIAL_PUNCTUATION:
    case U_FINAL_PUNCTUATION:
      return true;
    default:
      return false;
  }
}

bool is_nonspacing_mark(char32_t cp) {
  return cp >= 0x300 && u_charType(static_cast<UChar32>(cp)) == U_NON_SPACING_MARK;
}

bool is_chinese_char(char32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

bool is_digit(char32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  return u_charType(static_cast<UChar32>(cp)) == U_DECIMAL_DIGIT_NUMBER;
}

}  // namespace candor::tokenizers::unicode
