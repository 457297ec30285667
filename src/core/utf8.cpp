// UTF-8 validation, decoding and encoding (candor/utf8.h).
#include "candor/utf8.h"

namespace candor::utf8 {

namespace {

bool is_continuation(unsigned char byte) { return (byte & 0xC0) == 0x80; }

}  // namespace

const char* problem(std::string_view text, size_t* bad_offset) {
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
    const size_t length = sequence_length(lead);
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

size_t invalid_at(std::string_view text) {
  size_t at = 0;
  return problem(text, &at) == nullptr ? std::string::npos : at;
}

char32_t next_codepoint(std::string_view text, size_t* i) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const unsigned char lead = p[*i];
  if (lead < 0x80) {
    ++*i;
    return lead;
  }
  if (lead < 0xE0) {
    const char32_t cp = ((lead & 0x1Fu) << 6) | (p[*i + 1] & 0x3Fu);
    *i += 2;
    return cp;
  }
  if (lead < 0xF0) {
    const char32_t cp = ((lead & 0x0Fu) << 12) | ((p[*i + 1] & 0x3Fu) << 6) | (p[*i + 2] & 0x3Fu);
    *i += 3;
    return cp;
  }
  const char32_t cp = ((lead & 0x07u) << 18) | ((p[*i + 1] & 0x3Fu) << 12) |
                      ((p[*i + 2] & 0x3Fu) << 6) | (p[*i + 3] & 0x3Fu);
  *i += 4;
  return cp;
}

void append(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace candor::utf8
