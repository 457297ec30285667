// Hugging Face tokenizers (tokenizer.json and the "slow" vocab files) and vocabularies from GGUF
// metadata: one pipeline — added tokens split out, normalizers, pre-tokenizers, a BPE or
// WordPiece model, post-processor special tokens — and a per-token decoder. The behaviour follows
// the Rust `tokenizers` library; docs/tokenizers.md lists what is supported.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <functional>
#include <mutex>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

#include "candor/error.h"
#include "candor/tokenizer.h"
#include "tokenizers/hf_unicode.h"
#include "tokenizers/pair_merge.h"
#include "tokenizers/tokenizer_internal.h"

namespace candor {
namespace tokenizers {
namespace {

namespace fs = std::filesystem;
namespace uni = unicode;
using json = nlohmann::json;

constexpr std::string_view kMetaspace = "\xE2\x96\x81";  // U+2581 "▁"

// GPT-2's split pattern (the ByteLevel pre-tokenizer's use_regex, and the "gpt2" GGUF pre).
const char* const kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char* const kLlama3Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kQwen2Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kGpt4oPattern =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+"
    "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// ---------------------------------------------------------------------------------------------
// GPT-2's byte <-> printable character map
// ---------------------------------------------------------------------------------------------

struct ByteMap {
  std::array<std::string, 256> encoded;           // byte -> UTF-8 of its stand-in character
  std::unordered_map<char32_t, uint8_t> decoded;  // stand-in character -> byte
};

const ByteMap& byte_map() {
  static const ByteMap map = [] {
    ByteMap m;
    std::array<bool, 256> printable{};
    for (int b = '!'; b <= '~'; ++b) printable[b] = true;
    for (int b = 0xA1; b <= 0xAC; ++b) printable[b] = true;
    for (int b = 0xAE; b <= 0xFF; ++b) printable[b] = true;
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const char32_t cp =
          printable[b] ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
      uni::append_utf8(cp, &m.encoded[b]);
      m.decoded[cp] = static_cast<uint8_t>(b);
    }
    return m;
  }();
  return map;
}

// ---------------------------------------------------------------------------------------------
// Pipeline components
// ---------------------------------------------------------------------------------------------

struct Normalizer {
  enum Kind {
    kPrepend,
    kReplace,
    kNFC,
    kNFD,
    kNFKC,
    kNFKD,
    kLowercase,
    kStrip,
    kStripAccents,
    kBert
  };
  Kind kind = kNFC;
  std::string content;                  // prepend text / replacement
  std::shared_ptr<uni::Regex> pattern;  // replace
  bool left = false, right = false;     // strip
  bool clean_text = true, chinese = true, strip_accents = true, lowercase = true;  // bert
};

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct PreTokenizer {
  enum Kind {
    kSplit,
    kByteLevel,
    kMetaspace,
    kBert,
    kWhitespace,
    kWhitespaceSplit,
    kDigits,
    kPunctuation
  };
  Kind kind = kSplit;
  std::shared_ptr<uni::Regex> pattern;  // split, byte-level regex, whitespace
  Behavior behavior = Behavior::kIsolated;
  bool invert = false;
  bool add_prefix_space = false;  // byte-level
  std::string replacement;        // metaspace
  enum Prepend { kAlways, kFirst, kNever } prepend = kAlways;
  bool split = true;  // metaspace
  bool individual_digits = false;
};

struct Decoder {
  bool byte_level = false;     // map GPT-2's stand-in characters back to bytes
  bool byte_fallback = false;  // <0xNN> pieces are bytes
  std::vector<std::pair<std::string, std::string>> replacements;  // applied to each piece
  bool strip_first_space = false;  // drop one leading ' ' of the text (Metaspace, Strip)
  bool wordpiece = false;
  std::string wordpiece_prefix = "##";
  bool cleanup = false;
};

struct AddedToken {
  std::string content;
  TokenId id = -1;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
};

struct Merge {
  float priority;  // lower merges first: the merge rank, or -score for score-ordered vocabularies
  TokenId merged;
};

// Everything a tokenizer is built from, filled by the tokenizer.json parser or by
// make_tokenizer_from_vocab().
struct Spec {
  std::string source;  // the file, for messages
  std::string kind;
  bool wordpiece = false;
  std::vector<std::string> pieces;  // id -> piece (holes are "")
  std::vector<float> scores;
  std::vector<bool> in_model;  // id is part of the model's vocabulary
  std::unordered_map<uint64_t, Merge> merges;
  TokenId unk = -1;
  bool byte_fallback = false;
  bool fuse_unk = false;
  bool ignore_merges = false;
  std::string subword_prefix;   // BPE continuing_subword_prefix / WordPiece "##"
  std::string word_suffix;      // BPE end_of_word_suffix
  size_t max_word_chars = 100;  // WordPiece
  std::vector<AddedToken> added;
  std::vector<Normalizer> normalizers;
  std::vector<PreTokenizer> pre_tokenizers;
  Decoder decoder;
  std::vector<TokenId> prefix, suffix;  // post-processor special tokens
  TokenId bos = -1, eos = -1, pad = -1;
  std::string chat_template;
  std::string tokenizer_class;  // tokenizer_config.json's tokenizer_class
};

uint64_t pair_key(TokenId a, TokenId b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

Error malformed(const std::string& source, const std::string& what) {
  return Error(ErrorCode::kInvalidArgument, "malformed tokenizer file " + source + ": " + what,
               "the file may be truncated or damaged; re-download it with the model");
}

// ---------------------------------------------------------------------------------------------
// The tokenizer
// ---------------------------------------------------------------------------------------------

class HfTokenizer final : public Tokenizer {
 public:
  explicit HfTokenizer(Spec spec) : s_(std::move(spec)) {
    const auto n = static_cast<TokenId>(s_.pieces.size());
    special_.assign(n, false);
    for (const AddedToken& t : s_.added) {
      if (t.special) special_[t.id] = true;
    }
    for (TokenId id = 0; id < n; ++id) {
      if (id < static_cast<TokenId>(s_.in_model.size()) && s_.in_model[id]) {
        vocab_.emplace(std::string_view(s_.pieces[id]), id);
      }
    }
    for (size_t i = 0; i < s_.added.size(); ++i) {
      const std::string& c = s_.added[i].content;
      if (!c.empty()) added_by_first_byte_[static_cast<unsigned char>(c[0])].push_back(i);
    }
    for (auto& list : added_by_first_byte_) {
      std::sort(list.begin(), list.end(), [&](size_t a, size_t b) {
        return s_.added[a].content.size() > s_.added[b].content.size();
      });
    }
    byte_ids_.fill(-1);
    if (s_.byte_fallback) {
      for (TokenId id = n - 1; id >= 0; --id) {
        uint8_t byte = 0;
        if (parse_byte_piece(s_.pieces[id], &byte)) byte_ids_[byte] = id;
      }
    }
    // Metaspace BPE over whole texts (no pre-tokenizer): when no piece has "▁" after another
    // character, no merge crosses the start of a "▁word", so words can be encoded (and cached)
    // one at a time with the same result.
    bool metaspace = false;
    for (const Normalizer& norm : s_.normalizers) {
      metaspace = metaspace || (norm.kind == Normalizer::kReplace && norm.content == kMetaspace);
    }
    // Newer Llama/Mistral files do the same with a Metaspace pre-tokenizer that does not split.
    const bool whole_metaspace =
        s_.pre_tokenizers.size() == 1 && s_.pre_tokenizers[0].kind == PreTokenizer::kMetaspace &&
        s_.pre_tokenizers[0].replacement == kMetaspace && !s_.pre_tokenizers[0].split;
    split_words_ = !s_.wordpiece && ((metaspace && s_.pre_tokenizers.empty()) || whole_metaspace);
    for (TokenId id = 0; id < n && split_words_; ++id) {
      if (!s_.in_model[id]) continue;
      const std::string& p = s_.pieces[id];
      for (size_t pos = p.find(kMetaspace, 1); pos != std::string::npos;
           pos = p.find(kMetaspace, pos + 1)) {
        if (pos < kMetaspace.size() ||
            p.compare(pos - kMetaspace.size(), kMetaspace.size(), kMetaspace) != 0) {
          split_words_ = false;
          break;
        }
      }
    }
    decoded_.resize(n);
    continuation_.assign(n, false);
    for (TokenId id = 0; id < n; ++id) decoded_[id] = decode_token(id);
  }

  std::vector<TokenId> encode(std::string_view text, bool add_bos, bool add_eos) const override {
    require_valid_utf8(text);
    std::vector<TokenId> ids;
    if (add_bos) ids.insert(ids.end(), s_.prefix.begin(), s_.prefix.end());
    // Added tokens first: the text between them goes through the pipeline.
    size_t start = 0;  // start of the pending plain segment
    size_t i = 0;
    while (i < text.size()) {
      const AddedToken* match = nullptr;
      for (size_t index : added_by_first_byte_[static_cast<unsigned char>(text[i])]) {
        const AddedToken& t = s_.added[index];
        if (text.compare(i, t.content.size(), t.content) == 0) {
          match = &t;
          break;
        }
      }
      if (match == nullptr) {
        ++i;
        continue;
      }
      size_t segment_end = i;
      if (match->lstrip) {
        while (segment_end > start && is_space_byte(text[segment_end - 1])) --segment_end;
      }
      encode_segment(text.substr(start, segment_end - start), start == 0, &ids);
      ids.push_back(match->id);
      i += match->content.size();
      if (match->rstrip) {
        while (i < text.size() && is_space_byte(text[i])) ++i;
      }
      start = i;
    }
    encode_segment(text.substr(start), start == 0, &ids);
    if (add_eos) {
      if (!s_.suffix.empty()) {
        ids.insert(ids.end(), s_.suffix.begin(), s_.suffix.end());
      } else if (s_.eos >= 0) {
        ids.push_back(s_.eos);
      }
    }
    return ids;
  }

  std::string decode_piece(TokenId prev, TokenId token) const override {
    check_id(token);
    const std::string& text = decoded_[token];
    const bool at_start = prev < 0 || prev == bos_id();
    if (s_.decoder.wordpiece) {
      // Words are separated by a space; the decoder's cleanup glues . ? ! , to the word before
      // (per token, as the reference decoder does).
      if (text.empty() || continuation_[token] || at_start) return text;
      if (s_.decoder.cleanup && (text == "." || text == "?" || text == "!" || text == ",")) {
        return text;
      }
      return " " + text;
    }
    if (s_.decoder.strip_first_space && at_start && !text.empty() && text[0] == ' ') {
      return text.substr(1);
    }
    return text;
  }

  std::string piece(TokenId token) const override {
    check_id(token);
    return s_.pieces[token];
  }
  float score(TokenId token) const override {
    check_id(token);
    return token < static_cast<TokenId>(s_.scores.size()) ? s_.scores[token] : 0.0f;
  }
  int32_t vocab_size() const override { return static_cast<int32_t>(s_.pieces.size()); }
  TokenId bos_id() const override { return s_.bos; }
  TokenId eos_id() const override { return s_.eos; }
  TokenId unk_id() const override { return s_.unk; }
  TokenId pad_id() const override { return s_.pad; }
  std::string kind() const override { return s_.kind; }

  std::string chat_family() const override {
    // Llama tokenizers without a template of their own: the Llama 2 format, the default that
    // transformers' LlamaTokenizer used to apply.
    if (s_.chat_template.empty() &&
        (s_.tokenizer_class == "LlamaTokenizer" || s_.tokenizer_class == "LlamaTokenizerFast")) {
      return "llama2";
    }
    return detect_chat_family(s_.chat_template, [&](const std::string& token) {
      for (const AddedToken& t : s_.added)
        if (t.content == token) return true;
      return false;
    });
  }

  std::string apply_chat_template(const std::vector<ChatMessage>& messages,
                                  bool add_generation_prompt) const override {
    const std::string family = chat_family();
    if (family.empty()) return Tokenizer::apply_chat_template(messages, add_generation_prompt);
    const std::string bos = s_.bos >= 0 ? s_.pieces[s_.bos] : std::string();
    const std::string eos = s_.eos >= 0 ? s_.pieces[s_.eos] : std::string();
    return render_chat(family, messages, add_generation_prompt, bos, eos);
  }

 private:
  static bool is_space_byte(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
  }

  void check_id(TokenId token) const {
    if (token < 0 || token >= vocab_size()) {
      throw Error(ErrorCode::kInvalidArgument,
                  "token id " + std::to_string(token) + " is out of range for the vocabulary of " +
                      std::to_string(vocab_size()) + " tokens (" + s_.source + ")",
                  "use ids produced by the same tokenizer (and a model of the same vocabulary)");
    }
  }

  // The text one token contributes, before the context-dependent spaces of decode_piece.
  std::string decode_token(TokenId id) {
    const std::string& p = s_.pieces[id];
    if (special_[id]) return {};
    const Decoder& d = s_.decoder;
    uint8_t byte = 0;
    if (d.byte_fallback && parse_byte_piece(p, &byte))
      return std::string(1, static_cast<char>(byte));
    std::string text = p;
    if (d.byte_level) {
      std::string bytes;
      bool all = true;
      for (size_t i = 0; i < p.size() && all;) {
        const auto it = byte_map().decoded.find(uni::next_codepoint(p, &i));
        if (it == byte_map().decoded.end()) {
          all = false;
        } else {
          bytes.push_back(static_cast<char>(it->second));
        }
      }
      if (all) text = bytes;
    }
    for (const auto& [from, to] : d.replacements) text = replace_all(text, from, to);
    if (d.wordpiece && text.compare(0, d.wordpiece_prefix.size(), d.wordpiece_prefix) == 0 &&
        !d.wordpiece_prefix.empty()) {
      continuation_[id] = true;
      text = text.substr(d.wordpiece_prefix.size());
    }
    return text;
  }

  static std::string replace_all(const std::string& text, const std::string& from,
                                 const std::string& to) {
    if (from.empty()) return text;
    std::string out;
    size_t last = 0;
    for (size_t pos = text.find(from); pos != std::string::npos; pos = text.find(from, last)) {
      out.append(text, last, pos - last);
      out += to;
      last = pos + from.size();
    }
    out.append(text, last, std::string::npos);
    return out;
  }

  // --- normalization ---

  std::string normalize(std::string_view text) const {
    std::string s(text);
    for (const Normalizer& n : s_.normalizers) {
      switch (n.kind) {
        case Normalizer::kPrepend:
          if (!s.empty()) s = n.content + s;
          break;
        case Normalizer::kReplace:
          s = n.pattern->replace_all(s, n.content);
          break;
        case Normalizer::kNFC:
          s = uni::normalize(s, uni::Form::kNFC);
          break;
        case Normalizer::kNFD:
          s = uni::normalize(s, uni::Form::kNFD);
          break;
        case Normalizer::kNFKC:
          s = uni::normalize(s, uni::Form::kNFKC);
          break;
        case Normalizer::kNFKD:
          s = uni::normalize(s, uni::Form::kNFKD);
          break;
        case Normalizer::kLowercase:
          s = uni::lowercase(s);
          break;
        case Normalizer::kStrip:
          s = strip(s, n.left, n.right);
          break;
        case Normalizer::kStripAccents:
          s = remove_marks(s);
          break;
        case Normalizer::kBert:
          s = bert_normalize(s, n);
          break;
      }
    }
    return s;
  }

  static std::string strip(const std::string& s, bool left, bool right) {
    size_t begin = 0, end = s.size();
    if (left) {
      while (begin < end) {
        size_t j = begin;
        if (!uni::is_whitespace(uni::next_codepoint(s, &j))) break;
        begin = j;
      }
    }
    if (right) {
      while (end > begin) {
        size_t k = end - 1;
        while (k > begin && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
        size_t j = k;
        if (!uni::is_whitespace(uni::next_codepoint(s, &j))) break;
        end = k;
      }
    }
    return s.substr(begin, end - begin);
  }

  static std::string remove_marks(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
      const size_t begin = i;
      const char32_t cp = uni::next_codepoint(s, &i);
      if (!uni::is_nonspacing_mark(cp)) out.append(s, begin, i - begin);
    }
    return out;
  }

  static std::string bert_normalize(const std::string& s, const Normalizer& n) {
    std::string out;
    out.reserve(s.size() + 8);
    for (size_t i = 0; i < s.size();) {
      const size_t begin = i;
      const char32_t cp = uni::next_codepoint(s, &i);
      if (n.clean_text) {
        if (cp == 0 || cp == 0xFFFD || uni::is_control(cp)) continue;
        if (uni::is_whitespace(cp)) {
          out.push_back(' ');
          continue;
        }
      }
      if (n.chinese && uni::is_chinese_char(cp)) {
        out.push_back(' ');
        out.append(s, begin, i - begin);
        out.push_back(' ');
        continue;
      }
      out.append(s, begin, i - begin);
    }
    if (n.strip_accents) out = remove_marks(uni::normalize(out, uni::Form::kNFD));
    if (n.lowercase) out = uni::lowercase(out);
    return out;
  }

  // --- pre-tokenization ---

  struct Part {
    size_t begin, end;
    bool match;
  };

  // Splits `piece` at `matches` (sorted byte ranges) according to `behavior`.
  static void split_pieces(const std::string& piece,
                           const std::vector<std::pair<size_t, size_t>>& matches, Behavior behavior,
                           bool invert, std::vector<std::string>* out) {
    std::vector<Part> parts;
    size_t last = 0;
    for (const auto& [b, e] : matches) {
      if (b > last) parts.push_back({last, b, invert});
      parts.push_back({b, e, !invert});
      last = e;
    }
    if (last < piece.size()) parts.push_back({last, piece.size(), invert});
    // As the reference's SplitDelimiterBehavior: `previous` is whether the last part matched.
    std::vector<Part> merged;
    bool previous = false;
    for (const Part& p : parts) {
      switch (behavior) {
        case Behavior::kRemoved:
          if (!p.match) merged.push_back(p);
          break;
        case Behavior::kIsolated:
          merged.push_back(p);
          break;
        case Behavior::kMergedWithPrevious:
          if (p.match && !previous && !merged.empty()) {
            merged.back().end = p.end;
          } else {
            merged.push_back(p);
          }
          break;
        case Behavior::kMergedWithNext:
          if (previous && !merged.empty()) {
            merged.back().end = p.end;
          } else {
            merged.push_back(p);
          }
          break;
        case Behavior::kContiguous:
          if (p.match == previous && !merged.empty()) {
            merged.back().end = p.end;
          } else {
            merged.push_back(p);
          }
          break;
      }
      previous = p.match;
    }
    for (const Part& p : merged) {
      if (p.end > p.begin) out->push_back(piece.substr(p.begin, p.end - p.begin));
    }
  }

  void pre_tokenize(std::string normalized, bool first_segment,
                    std::vector<std::string>* pieces) const {
    pieces->clear();
    pieces->push_back(std::move(normalized));
    std::vector<std::string> next;
    for (const PreTokenizer& p : s_.pre_tokenizers) {
      next.clear();
      for (size_t index = 0; index < pieces->size(); ++index) {
        std::string& piece = (*pieces)[index];
        switch (p.kind) {
          case PreTokenizer::kSplit:
            split_pieces(piece, p.pattern->find_all(piece), p.behavior, p.invert, &next);
            break;
          case PreTokenizer::kByteLevel: {
            if (p.add_prefix_space && piece.compare(0, 1, " ") != 0) piece.insert(0, " ");
            std::vector<std::string> words;
            if (p.pattern) {
              split_pieces(piece, p.pattern->find_all(piece), Behavior::kIsolated, false, &words);
            } else {
              words.push_back(piece);
            }
            for (const std::string& w : words) {
              std::string mapped;
              mapped.reserve(w.size() * 2);
              for (char c : w) mapped += byte_map().encoded[static_cast<unsigned char>(c)];
              next.push_back(std::move(mapped));
            }
            break;
          }
          case PreTokenizer::kMetaspace: {
            std::string m = replace_all(piece, " ", p.replacement);
            const bool prepend = p.prepend == PreTokenizer::kAlways ||
                                 (p.prepend == PreTokenizer::kFirst && first_segment && index == 0);
            if (prepend && m.compare(0, p.replacement.size(), p.replacement) != 0) {
              m = p.replacement + m;
            }
            if (p.split) {
              std::vector<std::pair<size_t, size_t>> at;
              for (size_t pos = m.find(p.replacement); pos != std::string::npos;
                   pos = m.find(p.replacement, pos + p.replacement.size())) {
                at.emplace_back(pos, pos + p.replacement.size());
              }
              split_pieces(m, at, Behavior::kMergedWithNext, false, &next);
            } else {
              next.push_back(std::move(m));
            }
            break;
          }
          case PreTokenizer::kBert:
          case PreTokenizer::kWhitespaceSplit:
          case PreTokenizer::kPunctuation:
          case PreTokenizer::kDigits: {
            std::string word;
            auto flush = [&] {
              if (!word.empty()) next.push_back(std::move(word));
              word.clear();
            };
            bool in_digits = false;
            for (size_t i = 0; i < piece.size();) {
              const size_t begin = i;
              const char32_t cp = uni::next_codepoint(piece, &i);
              const std::string_view ch(piece.data() + begin, i - begin);
              if (p.kind == PreTokenizer::kDigits) {
                const bool digit = cp >= '0' && cp <= '9';
                if (digit && (p.individual_digits || !in_digits)) flush();
                if (!digit && in_digits) flush();
                word.append(ch);
                in_digits = digit;
                if (digit && p.individual_digits) flush();
                continue;
              }
              if (p.kind != PreTokenizer::kPunctuation && uni::is_whitespace(cp)) {
                flush();
              } else if (p.kind != PreTokenizer::kWhitespaceSplit && uni::is_punctuation(cp)) {
                flush();
                next.emplace_back(ch);
              } else {
                word.append(ch);
              }
            }
            flush();
            break;
          }
          case PreTokenizer::kWhitespace:
            split_pieces(piece, p.pattern->find_all(piece), Behavior::kRemoved, true, &next);
            break;
        }
      }
      pieces->swap(next);
    }
  }

  // --- the model ---

  void encode_segment(std::string_view segment, bool first_segment,
                      std::vector<TokenId>* ids) const {
    if (segment.empty()) return;
    std::vector<std::string> pieces;
    pre_tokenize(normalize(segment), first_segment, &pieces);
    for (const std::string& word : pieces) {
      if (word.empty()) continue;
      if (s_.wordpiece) {
        wordpiece_word(word, ids);
      } else if (split_words_) {
        // Cut before each "▁" that follows another character.
        size_t begin = 0;
        for (size_t pos = word.find(kMetaspace, 1); pos != std::string::npos;
             pos = word.find(kMetaspace, pos + 1)) {
          if (pos > begin &&
              (pos < kMetaspace.size() ||
               word.compare(pos - kMetaspace.size(), kMetaspace.size(), kMetaspace) != 0)) {
            bpe_word_cached(word.substr(begin, pos - begin), ids);
            begin = pos;
          }
        }
        bpe_word_cached(begin == 0 ? word : word.substr(begin), ids);
      } else {
        bpe_word_cached(word, ids);
      }
    }
  }

  void wordpiece_word(const std::string& word, std::vector<TokenId>* ids) const {
    std::vector<size_t> bounds;  // char boundaries
    for (size_t i = 0; i < word.size();) {
      bounds.push_back(i);
      uni::next_codepoint(word, &i);
    }
    bounds.push_back(word.size());
    const size_t n_chars = bounds.size() - 1;
    if (n_chars > s_.max_word_chars) {
      if (s_.unk >= 0) ids->push_back(s_.unk);
      return;
    }
    std::vector<TokenId> out;
    std::string candidate;
    size_t start = 0;
    while (start < n_chars) {
      TokenId found = -1;
      size_t end = n_chars;
      for (; end > start; --end) {
        candidate.clear();
        if (start > 0) candidate = s_.subword_prefix;
        candidate.append(word, bounds[start], bounds[end] - bounds[start]);
        const auto it = vocab_.find(candidate);
        if (it != vocab_.end()) {
          found = it->second;
          break;
        }
      }
      if (found < 0) {
        if (s_.unk >= 0) ids->push_back(s_.unk);
        return;
      }
      out.push_back(found);
      start = end;
    }
    ids->insert(ids->end(), out.begin(), out.end());
  }

  // A small sharded cache of word -> ids (BPE on a word is the expensive step).
  static constexpr size_t kCacheShards = 16;
  static constexpr size_t kCacheShardCapacity = 8192;
  static constexpr size_t kMaxCachedWord = 64;
  struct CacheShard {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<TokenId>> map;
  };

  void bpe_word_cached(const std::string& word, std::vector<TokenId>* ids) const {
    if (s_.ignore_merges) {
      const auto it = vocab_.find(word);
      if (it != vocab_.end()) {
        ids->push_back(it->second);
        return;
      }
    }
    if (word.size() > kMaxCachedWord) {
      bpe_word(word, ids);
      return;
    }
    CacheShard& shard = cache_[std::hash<std::string>()(word) % kCacheShards];
    {
      std::lock_guard<std::mutex> lock(shard.mutex);
      const auto it = shard.map.find(word);
      if (it != shard.map.end()) {
        ids->insert(ids->end(), it->second.begin(), it->second.end());
        return;
      }
    }
    const size_t before = ids->size();
    bpe_word(word, ids);
    std::lock_guard<std::mutex> lock(shard.mutex);
    if (shard.map.size() >= kCacheShardCapacity) shard.map.clear();
    shard.map.emplace(word, std::vector<TokenId>(ids->begin() + before, ids->end()));
  }

  struct Symbol {
    TokenId id;
    int prev;
    int next;
  };
  struct Candidate {
    float priority;
    int left;
    int right;
    TokenId left_id;
    TokenId right_id;
    TokenId merged;
  };
  struct CandidateOrder {
    bool operator()(const Candidate& a, const Candidate& b) const {
      if (a.priority != b.priority) return a.priority > b.priority;
      return a.left > b.left;
    }
  };

  void bpe_word(const std::string& word, std::vector<TokenId>* ids) const {
    std::vector<Symbol> symbols;
    symbols.reserve(word.size());
    auto add = [&](TokenId id) {
      const int index = static_cast<int>(symbols.size());
      symbols.push_back(Symbol{id, index - 1, -1});
      if (index > 0) symbols[index - 1].next = index;
    };
    std::string piece;
    for (size_t i = 0; i < word.size();) {
      const size_t begin = i;
      uni::next_codepoint(word, &i);
      piece.clear();
      if (begin > 0) piece = s_.subword_prefix;
      piece.append(word, begin, i - begin);
      if (i == word.size()) piece += s_.word_suffix;
      const auto it = vocab_.find(piece);
      if (it != vocab_.end()) {
        add(it->second);
        continue;
      }
      if (s_.byte_fallback) {
        bool all = true;
        for (size_t b = begin; b < i; ++b)
          if (byte_ids_[static_cast<unsigned char>(word[b])] < 0) all = false;
        if (all) {
          for (size_t b = begin; b < i; ++b) add(byte_ids_[static_cast<unsigned char>(word[b])]);
          continue;
        }
      }
      if (s_.unk < 0) continue;  // as the reference: a character without a token is dropped
      if (s_.fuse_unk && !symbols.empty() && symbols.back().id == s_.unk) continue;
      add(s_.unk);
    }
    if (symbols.empty()) return;

    std::priority_queue<Candidate, std::vector<Candidate>, CandidateOrder> heap;
    auto consider = [&](int left) {
      if (left < 0) return;
      const int right = symbols[left].next;
      if (right < 0) return;
      const auto it = s_.merges.find(pair_key(symbols[left].id, symbols[right].id));
      if (it == s_.merges.end()) return;
      heap.push(Candidate{it->second.priority, left, right, symbols[left].id, symbols[right].id,
                          it->second.merged});
    };
    run_pair_merges(symbols, heap, consider, ids);
  }

  Spec s_;
  std::vector<bool> special_;
  std::vector<std::string> decoded_;
  std::vector<bool> continuation_;
  std::unordered_map<std::string_view, TokenId> vocab_;  // views into s_.pieces
  std::array<std::vector<size_t>, 256> added_by_first_byte_;
  std::array<TokenId, 256> byte_ids_{};
  bool split_words_ = false;
  mutable std::array<CacheShard, kCacheShards> cache_;
};

// ---------------------------------------------------------------------------------------------
// Building a Spec
// ---------------------------------------------------------------------------------------------

// Common finishing steps: model membership, BOS/EOS defaults, the kind.
void finish_spec(Spec* s) {
  s->in_model.resize(s->pieces.size(), false);
  if (s->bos < 0 && !s->prefix.empty()) s->bos = s->prefix.front();
  if (s->eos < 0 && !s->suffix.empty()) s->eos = s->suffix.back();
  const auto n = static_cast<TokenId>(s->pieces.size());
  if (n == 0) throw malformed(s->source, "the vocabulary is empty");
  auto check = [&](TokenId id, const char* what) {
    if (id >= n || id < -1) {
      throw malformed(s->source, std::string(what) + " id " + std::to_string(id) +
                                     " is outside the vocabulary of " + std::to_string(n));
    }
  };
  for (TokenId id : s->prefix) check(id, "post-processor");
  for (TokenId id : s->suffix) check(id, "post-processor");
  check(s->bos, "BOS");
  check(s->eos, "EOS");
  check(s->pad, "padding");
  check(s->unk, "unknown-token");
}

// Adds or updates token `id` with text `piece`, growing the vocabulary as needed.
void set_piece(Spec* s, TokenId id, const std::string& piece, bool in_model) {
  if (id < 0 || id > (1 << 26))
    throw malformed(s->source, "token id " + std::to_string(id) + " is out of range");
  if (static_cast<size_t>(id) >= s->pieces.size()) {
    s->pieces.resize(id + 1);
    s->in_model.resize(id + 1, false);
  }
  if (in_model || s->pieces[id].empty()) s->pieces[id] = piece;
  if (in_model) s->in_model[id] = true;
}

// The merges of a SentencePiece-BPE vocabulary ordered by score: a pair merges into the token
// its two pieces spell, with the priority of that token's score.
void derive_score_merges(Spec* s, const std::unordered_map<std::string, TokenId>& vocab) {
  for (TokenId id = 0; id < static_cast<TokenId>(s->pieces.size()); ++id) {
    if (!s->in_model[id]) continue;
    const std::string& p = s->pieces[id];
    for (size_t k = 1; k < p.size(); ++k) {
      if ((static_cast<unsigned char>(p[k]) & 0xC0) == 0x80) continue;
      const auto a = vocab.find(p.substr(0, k));
      if (a == vocab.end()) continue;
      const auto b = vocab.find(p.substr(k));
      if (b == vocab.end()) continue;
      s->merges.emplace(pair_key(a->second, b->second), Merge{-s->scores[id], id});
    }
  }
}

class JsonParser {
 public:
  JsonParser(std::string source, Spec* spec) : source_(std::move(source)), s_(spec) {}

  void parse(const json& root, const json* config) {
    if (!root.is_object()) throw malformed(source_, "the top level is not a JSON object");
    section_ = "model";
    if (!root.contains("model") || !root["model"].is_object()) {
      throw malformed(source_, "it has no \"model\" object");
    }
    parse_model(root["model"]);
    section_ = "added_tokens";
    if (root.contains("added_tokens") && !root["added_tokens"].is_null()) {
      for (const json& t : root["added_tokens"]) {
        AddedToken a;
        a.id = t.at("id").get<TokenId>();
        a.content = t.at("content").get<std::string>();
        a.special = t.value("special", false);
        a.lstrip = t.value("lstrip", false);
        a.rstrip = t.value("rstrip", false);
        if (a.content.empty()) continue;
        set_piece(s_, a.id, a.content, false);
        s_->added.push_back(a);
      }
    }
    s_->in_model.resize(s_->pieces.size(), false);
    section_ = "normalizer";
    if (root.contains("normalizer")) parse_normalizer(root["normalizer"]);
    section_ = "pre_tokenizer";
    if (root.contains("pre_tokenizer")) parse_pre_tokenizer(root["pre_tokenizer"]);
    section_ = "decoder";
    if (root.contains("decoder")) parse_decoder(root["decoder"]);
    section_ = "post_processor";
    if (root.contains("post_processor")) parse_post_processor(root["post_processor"]);
    if (config != nullptr) {
      section_ = "tokenizer_config.json";
      parse_config(*config);
    }
    finish_spec(s_);
    bool byte_level = s_->decoder.byte_level;
    bool metaspace = s_->byte_fallback;
    for (const PreTokenizer& p : s_->pre_tokenizers) {
      byte_level = byte_level || p.kind == PreTokenizer::kByteLevel;
      metaspace = metaspace || p.kind == PreTokenizer::kMetaspace;
    }
    for (const Normalizer& n : s_->normalizers) {
      metaspace = metaspace || (n.kind == Normalizer::kReplace && n.content == kMetaspace);
    }
    s_->kind = s_->wordpiece ? "hf-wordpiece"
               : byte_level  ? "hf-bpe-bytelevel"
               : metaspace   ? "hf-bpe-metaspace"
                             : "hf-bpe";
  }

  const std::string& section() const { return section_; }

 private:
  Error unsupported(const std::string& what) const {
    return Error(ErrorCode::kUnsupported,
                 "unsupported " + what + " in the " + section_ + " of tokenizer file " + source_,
                 "candor reads BPE (byte-level or metaspace) and WordPiece tokenizers; "
                 "docs/tokenizers.md lists the supported components");
  }

  TokenId lookup(const std::string& token) const {
    const auto it = vocab_.find(token);
    if (it != vocab_.end()) return it->second;
    for (const AddedToken& a : s_->added)
      if (a.content == token) return a.id;
    return -1;
  }

  void parse_model(const json& m) {
    std::string type = m.value("type", std::string());
    if (type.empty()) type = m.contains("merges") ? "BPE" : "WordPiece";
    if (type != "BPE" && type != "WordPiece") {
      throw Error(ErrorCode::kUnsupported,
                  "tokenizer file " + source_ + " has a model of type \"" + type +
                      "\", which candor does not support",
                  "supported model types: BPE and WordPiece");
    }
    if (!m.contains("vocab") || !m["vocab"].is_object()) {
      throw malformed(source_, "model.vocab is not an object of piece -> id");
    }
    vocab_.reserve(m["vocab"].size() * 2);
    for (const auto& [piece, id] : m["vocab"].items()) {
      const TokenId t = id.get<TokenId>();
      set_piece(s_, t, piece, true);
      vocab_.emplace(piece, t);
    }
    auto opt_string = [&](const char* key) {
      return m.contains(key) && m[key].is_string() ? m[key].get<std::string>() : std::string();
    };
    if (type == "WordPiece") {
      s_->wordpiece = true;
      s_->subword_prefix =
          m.contains("continuing_subword_prefix") ? opt_string("continuing_subword_prefix") : "##";
      s_->max_word_chars = m.value("max_input_chars_per_word", 100);
      const std::string unk = m.contains("unk_token") ? opt_string("unk_token") : "[UNK]";
      s_->unk = unk.empty() ? -1 : lookup(unk);
      s_->decoder.wordpiece = true;  // until a decoder says otherwise
      s_->decoder.wordpiece_prefix = s_->subword_prefix;
      return;
    }
    s_->byte_fallback = m.value("byte_fallback", false);
    s_->fuse_unk = m.value("fuse_unk", false);
    s_->ignore_merges = m.value("ignore_merges", false);
    s_->subword_prefix = opt_string("continuing_subword_prefix");
    s_->word_suffix = opt_string("end_of_word_suffix");
    const std::string unk = opt_string("unk_token");
    s_->unk = unk.empty() ? -1 : lookup(unk);
    if (m.contains("dropout") && m["dropout"].is_number() && m["dropout"].get<double>() > 0) {
      throw unsupported("BPE dropout (a training-time option)");
    }
    if (!m.contains("merges") || !m["merges"].is_array()) {
      throw malformed(source_, "model.merges is not an array");
    }
    const json& merges = m["merges"];
    s_->merges.reserve(merges.size() * 2);
    for (size_t rank = 0; rank < merges.size(); ++rank) {
      const json& entry = merges[rank];
      std::string a, b;
      if (entry.is_string()) {
        const std::string line = entry.get<std::string>();
        const size_t space = line.find(' ', 1);
        if (space == std::string::npos) {
          throw malformed(source_, "merge " + std::to_string(rank) + " (\"" + line +
                                       "\") is not two pieces separated by a space");
        }
        a = line.substr(0, space);
        b = line.substr(space + 1);
      } else if (entry.is_array() && entry.size() == 2) {
        a = entry[0].get<std::string>();
        b = entry[1].get<std::string>();
      } else {
        throw malformed(source_,
                        "merge " + std::to_string(rank) + " is neither \"a b\" nor [a, b]");
      }
      add_merge(a, b, rank);
    }
  }

  void add_merge(const std::string& a, const std::string& b, size_t rank) {
    const auto ia = vocab_.find(a), ib = vocab_.find(b), im = vocab_.find(a + b);
    if (ia == vocab_.end() || ib == vocab_.end() || im == vocab_.end()) {
      throw malformed(source_, "merge " + std::to_string(rank) + " (\"" + a + " " + b +
                                   "\") names a piece missing from the vocabulary");
    }
    s_->merges.emplace(pair_key(ia->second, ib->second),
                       Merge{static_cast<float>(rank), im->second});
  }

 public:
  // For the slow vocab.json + merges.txt files.
  void set_vocab(const json& vocab) {
    for (const auto& [piece, id] : vocab.items()) {
      set_piece(s_, id.get<TokenId>(), piece, true);
      vocab_.emplace(piece, id.get<TokenId>());
    }
  }
  void add_merge_line(const std::string& line, size_t rank) {
    const size_t space = line.find(' ', 1);
    if (space == std::string::npos) {
      throw malformed(source_, "merge line " + std::to_string(rank + 1) + " (\"" + line +
                                   "\") is not two pieces separated by a space");
    }
    add_merge(line.substr(0, space), line.substr(space + 1), rank);
  }
  void parse_config(const json& c) {
    auto token = [&](const char* key) -> TokenId {
      if (!c.contains(key)) return -2;
      const json& v = c[key];
      std::string text;
      if (v.is_string()) {
        text = v.get<std::string>();
      } else if (v.is_object() && v.contains("content") && v["content"].is_string()) {
        text = v["content"].get<std::string>();
      } else {
        return -1;
      }
      return lookup(text);
    };
    if (const TokenId t = token("bos_token"); t != -2) s_->bos = t;
    if (const TokenId t = token("eos_token"); t != -2) s_->eos = t;
    if (const TokenId t = token("pad_token"); t != -2) s_->pad = t;
    if (const TokenId t = token("unk_token"); t >= 0 && s_->unk < 0) s_->unk = t;
    if (c.contains("add_bos_token") && c["add_bos_token"].is_boolean()) {
      s_->prefix.clear();
      if (c["add_bos_token"].get<bool>() && s_->bos >= 0) s_->prefix.push_back(s_->bos);
    }
    if (c.contains("add_eos_token") && c["add_eos_token"].is_boolean()) {
      s_->suffix.clear();
      if (c["add_eos_token"].get<bool>() && s_->eos >= 0) s_->suffix.push_back(s_->eos);
    }
    if (c.contains("tokenizer_class") && c["tokenizer_class"].is_string()) {
      s_->tokenizer_class = c["tokenizer_class"].get<std::string>();
    }
    if (c.contains("chat_template")) {
      const json& t = c["chat_template"];
      if (t.is_string()) {
        s_->chat_template = t.get<std::string>();
      } else if (t.is_array()) {
        for (const json& named : t) {
          if (named.value("name", std::string()) == "default" || s_->chat_template.empty()) {
            s_->chat_template = named.value("template", std::string());
          }
        }
      }
    }
  }

 private:
  std::shared_ptr<uni::Regex> pattern(const json& p) {
    if (p.contains("Regex")) {
      return std::make_shared<uni::Regex>(p["Regex"].get<std::string>(), false,
                                          section_ + " of " + source_);
    }
    if (p.contains("String")) {
      return std::make_shared<uni::Regex>(p["String"].get<std::string>(), true,
                                          section_ + " of " + source_);
    }
    throw malformed(source_, "a pattern in the " + section_ + " is neither String nor Regex");
  }

  void parse_normalizer(const json& n) {
    if (n.is_null()) return;
    const std::string type = n.at("type").get<std::string>();
    Normalizer out;
    if (type == "Sequence") {
      for (const json& child : n.at("normalizers")) parse_normalizer(child);
      return;
    } else if (type == "Prepend") {
      out.kind = Normalizer::kPrepend;
      out.content = n.at("prepend").get<std::string>();
    } else if (type == "Replace") {
      out.kind = Normalizer::kReplace;
      out.pattern = pattern(n.at("pattern"));
      out.content = n.at("content").get<std::string>();
    } else if (type == "NFC") {
      out.kind = Normalizer::kNFC;
    } else if (type == "NFD") {
      out.kind = Normalizer::kNFD;
    } else if (type == "NFKC") {
      out.kind = Normalizer::kNFKC;
    } else if (type == "NFKD") {
      out.kind = Normalizer::kNFKD;
    } else if (type == "Lowercase") {
      out.kind = Normalizer::kLowercase;
    } else if (type == "Strip") {
      out.kind = Normalizer::kStrip;
      out.left = n.value("strip_left", true);
      out.right = n.value("strip_right", true);
    } else if (type == "StripAccents") {
      out.kind = Normalizer::kStripAccents;
    } else if (type == "BertNormalizer") {
      out.kind = Normalizer::kBert;
      out.clean_text = n.value("clean_text", true);
      out.chinese = n.value("handle_chinese_chars", true);
      out.lowercase = n.value("lowercase", true);
      out.strip_accents = n.contains("strip_accents") && n["strip_accents"].is_boolean()
                              ? n["strip_accents"].get<bool>()
                              : out.lowercase;
    } else {
      throw unsupported("normalizer \"" + type + "\"");
    }
    s_->normalizers.push_back(std::move(out));
  }

  static Behavior behavior(const std::string& name, const std::string& source) {
    if (name == "Removed") return Behavior::kRemoved;
    if (name == "Isolated") return Behavior::kIsolated;
    if (name == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
    if (name == "MergedWithNext") return Behavior::kMergedWithNext;
    if (name == "Contiguous") return Behavior::kContiguous;
    throw malformed(source, "unknown split behavior \"" + name + "\"");
  }

  static PreTokenizer::Prepend prepend_scheme(const json& j) {
    if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string()) {
      const std::string scheme = j["prepend_scheme"].get<std::string>();
      if (scheme == "first") return PreTokenizer::kFirst;
      if (scheme == "never") return PreTokenizer::kNever;
      return PreTokenizer::kAlways;
    }
    return j.value("add_prefix_space", true) ? PreTokenizer::kAlways : PreTokenizer::kNever;
  }

  void parse_pre_tokenizer(const json& p) {
    if (p.is_null()) return;
    const std::string type = p.at("type").get<std::string>();
    PreTokenizer out;
    if (type == "Sequence") {
      for (const json& child : p.at("pretokenizers")) parse_pre_tokenizer(child);
      return;
    } else if (type == "Split") {
      out.kind = PreTokenizer::kSplit;
      out.pattern = pattern(p.at("pattern"));
      out.behavior = behavior(p.value("behavior", std::string("Isolated")), source_);
      out.invert = p.value("invert", false);
    } else if (type == "ByteLevel") {
      out.kind = PreTokenizer::kByteLevel;
      out.add_prefix_space = p.value("add_prefix_space", true);
      if (p.value("use_regex", true)) {
        out.pattern = std::make_shared<uni::Regex>(kGpt2Pattern, false, "ByteLevel");
      }
    } else if (type == "Metaspace") {
      out.kind = PreTokenizer::kMetaspace;
      out.replacement = p.value("replacement", std::string(kMetaspace));
      out.prepend = prepend_scheme(p);
      out.split = p.value("split", true);
    } else if (type == "BertPreTokenizer") {
      out.kind = PreTokenizer::kBert;
    } else if (type == "Whitespace") {
      out.kind = PreTokenizer::kWhitespace;
      out.pattern = std::make_shared<uni::Regex>("\\w+|[^\\w\\s]+", false, "Whitespace");
    } else if (type == "WhitespaceSplit") {
      out.kind = PreTokenizer::kWhitespaceSplit;
    } else if (type == "Digits") {
      out.kind = PreTokenizer::kDigits;
      out.individual_digits = p.value("individual_digits", false);
    } else if (type == "Punctuation") {
      out.kind = PreTokenizer::kPunctuation;
    } else {
      throw unsupported("pre-tokenizer \"" + type + "\"");
    }
    s_->pre_tokenizers.push_back(std::move(out));
  }

  void parse_decoder(const json& d) {
    if (d.is_null()) return;
    const std::string type = d.at("type").get<std::string>();
    Decoder& out = s_->decoder;
    if (type == "Sequence") {
      for (const json& child : d.at("decoders")) parse_decoder(child);
    } else if (type == "ByteLevel") {
      out.byte_level = true;
    } else if (type == "Metaspace") {
      out.replacements.emplace_back(d.value("replacement", std::string(kMetaspace)), " ");
      out.strip_first_space = prepend_scheme(d) != PreTokenizer::kNever;
    } else if (type == "WordPiece") {
      out.wordpiece = true;
      out.wordpiece_prefix = d.value("prefix", std::string("##"));
      out.cleanup = d.value("cleanup", true);
    } else if (type == "Replace") {
      const json& pat = d.at("pattern");
      if (!pat.contains("String")) throw unsupported("Replace decoder with a regex pattern");
      out.replacements.emplace_back(pat["String"].get<std::string>(),
                                    d.at("content").get<std::string>());
    } else if (type == "ByteFallback") {
      out.byte_fallback = true;
    } else if (type == "Fuse") {
      // Joining the pieces is what decode() does anyway.
    } else if (type == "Strip") {
      const std::string content = d.value("content", std::string(" "));
      if (content != " " || d.value("stop", 0) != 0 || d.value("start", 0) > 1) {
        throw unsupported("Strip decoder other than one leading space");
      }
      out.strip_first_space = d.value("start", 0) == 1;
    } else {
      throw unsupported("decoder \"" + type + "\"");
    }
    if (!s_->wordpiece) out.wordpiece = false;
  }

  std::vector<TokenId> special_ids(const json& specials, const std::string& name) {
    if (specials.contains(name) && specials[name].contains("ids")) {
      return specials[name]["ids"].get<std::vector<TokenId>>();
    }
    const TokenId id = lookup(name);
    if (id < 0) throw malformed(source_, "post_processor names an unknown token \"" + name + "\"");
    return {id};
  }

  void parse_post_processor(const json& p) {
    if (p.is_null()) return;
    const std::string type = p.at("type").get<std::string>();
    if (type == "Sequence") {
      for (const json& child : p.at("processors")) parse_post_processor(child);
    } else if (type == "ByteLevel") {
      // Offsets only.
    } else if (type == "TemplateProcessing") {
      const json empty = json::object();
      const json& specials = p.contains("special_tokens") ? p["special_tokens"] : empty;
      bool seen_sequence = false;
      s_->prefix.clear();
      s_->suffix.clear();
      for (const json& item : p.at("single")) {
        if (item.contains("Sequence")) {
          seen_sequence = true;
        } else if (item.contains("SpecialToken")) {
          const auto ids = special_ids(specials, item["SpecialToken"].at("id").get<std::string>());
          auto& side = seen_sequence ? s_->suffix : s_->prefix;
          side.insert(side.end(), ids.begin(), ids.end());
        }
      }
    } else if (type == "BertProcessing" || type == "RobertaProcessing") {
      s_->prefix = {p.at("cls").at(1).get<TokenId>()};
      s_->suffix = {p.at("sep").at(1).get<TokenId>()};
    } else {
      throw unsupported("post-processor \"" + type + "\"");
    }
  }

  std::string source_;
  Spec* s_;
  std::string section_;
  std::unordered_map<std::string, TokenId> vocab_;
};

json parse_json_text(const std::string& data, const std::string& path, const char* what) {
  try {
    return json::parse(data);
  } catch (const json::parse_error& e) {
    throw Error(
        ErrorCode::kInvalidArgument,
        "malformed " + std::string(what) + " " + path + ": not valid JSON (" + e.what() + ")",
        "the file may be truncated or damaged; re-download it with the model");
  }
}

json read_json(const std::string& path, const char* what) {
  return parse_json_text(read_tokenizer_file(path, what), path, what);
}

// Runs `build` and turns JSON type errors (a field of the wrong type) into Error naming the file.
template <typename Build>
void guarded(const std::string& path, const std::function<std::string()>& section, Build build) {
  try {
    build();
  } catch (const json::exception& e) {
    throw malformed(path, "in its " + section() + ": " + e.what());
  }
}

// A tokenizer from the parsed tokenizer.json `root` (and tokenizer_config.json, when given).
std::unique_ptr<Tokenizer> tokenizer_from_root(const json& root, const json* config,
                                               const std::string& source) {
  Spec spec;
  spec.source = source;
  JsonParser parser(source, &spec);
  guarded(
      source, [&] { return parser.section(); }, [&] { parser.parse(root, config); });
  return std::make_unique<HfTokenizer>(std::move(spec));
}

std::unique_ptr<Tokenizer> load_slow_files(const fs::path& dir, const json* config) {
  if (fs::exists(dir / "vocab.json") && fs::exists(dir / "merges.txt")) {
    const std::string vocab_path = (dir / "vocab.json").string();
    const std::string merges_path = (dir / "merges.txt").string();
    return load_gpt2_bpe_files(vocab_path, merges_path, config);
  }
  const fs::path vocab_txt = dir / "vocab.txt";
  if (!fs::exists(vocab_txt)) {
    throw Error(ErrorCode::kNotFound,
                "no tokenizer in " + dir.string() +
                    ": expected tokenizer.json, vocab.json + merges.txt, or vocab.txt",
                "pass a Hugging Face model folder or a tokenizer.json file");
  }
  return load_bert_vocab_file(vocab_txt.string(), config);
}

}  // namespace

std::unique_ptr<Tokenizer> load_gpt2_bpe_files(const std::string& vocab_path,
                                               const std::string& merges_path,
                                               const nlohmann::json* config) {
  Spec spec;
  spec.source = vocab_path;
  const json vocab = read_json(vocab_path, "vocabulary");
  if (!vocab.is_object())
    throw malformed(vocab_path, "the vocabulary is not an object of piece -> id");
  JsonParser parser(vocab_path, &spec);
  guarded(
      vocab_path, [] { return std::string("vocabulary"); },
      [&] {
        parser.set_vocab(vocab);
        const std::string merges = read_tokenizer_file(merges_path, "merges");
        size_t rank = 0;
        size_t pos = 0;
        bool first = true;
        while (pos < merges.size()) {
          size_t end = merges.find('\n', pos);
          if (end == std::string::npos) end = merges.size();
          std::string line = merges.substr(pos, end - pos);
          pos = end + 1;
          if (!line.empty() && line.back() == '\r') line.pop_back();
          if (first && line.rfind("#version", 0) == 0) {
            first = false;
            continue;
          }
          first = false;
          if (line.empty()) continue;
          parser.add_merge_line(line, rank++);
        }
      });
  const auto eot = vocab.find("<|endoftext|>");
  if (eot != vocab.end()) {
    spec.added.push_back(AddedToken{"<|endoftext|>", eot->get<TokenId>(), true, false, false});
    spec.bos = spec.eos = eot->get<TokenId>();
  }
  PreTokenizer pre;
  pre.kind = PreTokenizer::kByteLevel;
  pre.add_prefix_space = config != nullptr && config->value("add_prefix_space", false);
  pre.pattern = std::make_shared<uni::Regex>(kGpt2Pattern, false, "ByteLevel");
  spec.pre_tokenizers.push_back(pre);
  spec.decoder.byte_level = true;
  if (config != nullptr)
    guarded(
        vocab_path, [] { return std::string("tokenizer_config.json"); },
        [&] { parser.parse_config(*config); });
  finish_spec(&spec);
  spec.kind = "hf-bpe-bytelevel";
  return std::make_unique<HfTokenizer>(std::move(spec));
}

std::unique_ptr<Tokenizer> load_bert_vocab_file(const std::string& vocab_path,
                                                const nlohmann::json* config) {
  Spec spec;
  spec.source = vocab_path;
  const std::string data = read_tokenizer_file(vocab_path, "WordPiece vocabulary");
  std::unordered_map<std::string, TokenId> vocab;
  size_t pos = 0;
  while (pos < data.size()) {
    size_t end = data.find('\n', pos);
    if (end == std::string::npos) end = data.size();
    std::string line = data.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const auto id = static_cast<TokenId>(spec.pieces.size());
    spec.pieces.push_back(line);
    spec.in_model.push_back(true);
    vocab.emplace(line, id);
  }
  if (spec.pieces.empty()) throw malformed(vocab_path, "the vocabulary is empty");
  require_valid_utf8(data);
  auto id_of = [&](const std::string& t) {
    const auto it = vocab.find(t);
    return it == vocab.end() ? -1 : it->second;
  };
  for (const char* t : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}) {
    if (id_of(t) >= 0) spec.added.push_back(AddedToken{t, id_of(t), true, false, false});
  }
  spec.wordpiece = true;
  spec.subword_prefix = "##";
  spec.unk = id_of("[UNK]");
  Normalizer n;
  n.kind = Normalizer::kBert;
  n.lowercase = config == nullptr || config->value("do_lower_case", true);
  n.strip_accents = n.lowercase;
  if (config != nullptr && config->contains("strip_accents") &&
      (*config)["strip_accents"].is_boolean()) {
    n.strip_accents = (*config)["strip_accents"].get<bool>();
  }
  n.chinese = config == nullptr || config->value("tokenize_chinese_chars", true);
  spec.normalizers.push_back(n);
  PreTokenizer pre;
  pre.kind = PreTokenizer::kBert;
  spec.pre_tokenizers.push_back(pre);
  spec.decoder.wordpiece = true;
  spec.decoder.cleanup = true;
  if (id_of("[CLS]") >= 0) spec.prefix = {id_of("[CLS]")};
  if (id_of("[SEP]") >= 0) spec.suffix = {id_of("[SEP]")};
  if (id_of("[PAD]") >= 0) spec.pad = id_of("[PAD]");
  finish_spec(&spec);
  spec.kind = "hf-wordpiece";
  return std::make_unique<HfTokenizer>(std::move(spec));
}

}  // namespace tokenizers

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& folder_or_file) {
  using namespace tokenizers;
  const fs::path path(folder_or_file);
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    throw Error(ErrorCode::kNotFound, "tokenizer not found: " + folder_or_file,
                "pass a Hugging Face model folder or its tokenizer.json");
  }
  const fs::path dir = fs::is_directory(path, ec) ? path : path.parent_path();
  json config;
  const fs::path config_path = dir / "tokenizer_config.json";
  const bool has_config = fs::is_regular_file(config_path, ec);
  if (has_config) config = read_json(config_path.string(), "tokenizer config");
  if (has_config && !config.is_object()) {
    throw Error(ErrorCode::kInvalidArgument,
                "malformed tokenizer config " + config_path.string() + ": not a JSON object");
  }
  const json* config_ptr = has_config ? &config : nullptr;
  fs::path file = path;
  if (fs::is_directory(path, ec)) {
    file = dir / "tokenizer.json";
    if (!fs::exists(file, ec)) return load_slow_files(dir, config_ptr);
  }
  const std::string source = file.string();
  return tokenizer_from_root(read_json(source, "tokenizer file"), config_ptr, source);
}

std::unique_ptr<Tokenizer> make_hf_tokenizer(const std::string& tokenizer_json,
                                             const std::string& tokenizer_config_json,
                                             const std::string& source) {
  using namespace tokenizers;
  json config;
  const bool has_config = !tokenizer_config_json.empty();
  if (has_config) config = parse_json_text(tokenizer_config_json, source, "tokenizer config");
  if (has_config && !config.is_object()) {
    throw Error(ErrorCode::kInvalidArgument,
                "malformed tokenizer config of " + source + ": not a JSON object");
  }
  return tokenizer_from_root(parse_json_text(tokenizer_json, source, "tokenizer"),
                             has_config ? &config : nullptr, source);
}

std::unique_ptr<Tokenizer> make_tokenizer_from_vocab(const VocabTokenizerSpec& v) {
  using namespace tokenizers;
  const std::string& src = v.source.empty() ? std::string("(vocabulary)") : v.source;
  const auto n = static_cast<TokenId>(v.tokens.size());
  auto bad = [&](const std::string& what) {
    return Error(ErrorCode::kInvalidArgument, "inconsistent tokenizer in " + src + ": " + what,
                 "the file may be damaged or written by a tool candor does not know");
  };
  if (n == 0) throw bad("the vocabulary is empty");
  if (!v.token_types.empty() && static_cast<TokenId>(v.token_types.size()) != n) {
    throw bad(std::to_string(v.token_types.size()) + " token types for " + std::to_string(n) +
              " tokens");
  }
  for (const auto& [id, name] : {std::pair<TokenId, const char*>{v.bos_id, "BOS"},
                                 {v.eos_id, "EOS"},
                                 {v.unk_id, "unknown"},
                                 {v.pad_id, "padding"}}) {
    if (id >= n) throw bad(std::string(name) + " id " + std::to_string(id) + " is out of range");
  }
  Spec spec;
  spec.source = src;
  spec.pieces = v.tokens;
  spec.in_model.assign(n, true);
  std::unordered_map<std::string, TokenId> vocab;
  for (TokenId id = 0; id < n; ++id) {
    const int32_t type = v.token_types.empty() ? 1 : v.token_types[id];
    if (type == 3 || type == 4) {
      spec.added.push_back(AddedToken{v.tokens[id], id, type == 3, false, false});
    }
    const bool normal = type == 1 || type == 0;
    spec.in_model[id] = normal;
    if (normal) vocab.emplace(v.tokens[id], id);
  }
  spec.bos = v.bos_id;
  spec.eos = v.eos_id;
  spec.unk = v.unk_id;
  spec.pad = v.pad_id;
  if (v.add_bos && v.bos_id >= 0) spec.prefix = {v.bos_id};
  if (v.add_eos && v.eos_id >= 0) spec.suffix = {v.eos_id};
  spec.chat_template = v.chat_template;
  if (v.model == "llama") {
    if (static_cast<TokenId>(v.scores.size()) != n) {
      throw bad(std::to_string(v.scores.size()) + " scores for " + std::to_string(n) + " tokens");
    }
    spec.scores = v.scores;
    spec.byte_fallback = true;
    spec.fuse_unk = true;
    if (v.add_space_prefix) {
      Normalizer prepend;
      prepend.kind = Normalizer::kPrepend;
      prepend.content = std::string(kMetaspace);
      spec.normalizers.push_back(prepend);
    }
    Normalizer replace;
    replace.kind = Normalizer::kReplace;
    replace.pattern = std::make_shared<uni::Regex>(" ", true, src);
    replace.content = std::string(kMetaspace);
    spec.normalizers.push_back(replace);
    derive_score_merges(&spec, vocab);
    spec.decoder.byte_fallback = true;
    spec.decoder.replacements.emplace_back(std::string(kMetaspace), " ");
    spec.decoder.strip_first_space = v.add_space_prefix;
    spec.kind = "gguf-llama";
  } else if (v.model == "gpt2") {
    spec.merges.reserve(v.merges.size());
    for (size_t rank = 0; rank < v.merges.size(); ++rank) {
      const std::string& line = v.merges[rank];
      const size_t space = line.find(' ', 1);
      if (space == std::string::npos) throw bad("merge " + std::to_string(rank) + " has no space");
      const auto a = vocab.find(line.substr(0, space)), b = vocab.find(line.substr(space + 1)),
                 m = vocab.find(line.substr(0, space) + line.substr(space + 1));
      if (a == vocab.end() || b == vocab.end() || m == vocab.end()) {
        throw bad("merge " + std::to_string(rank) + " (\"" + line +
                  "\") names a token missing from the vocabulary");
      }
      spec.merges.emplace(pair_key(a->second, b->second),
                          Merge{static_cast<float>(rank), m->second});
    }
    const std::string& pre = v.pre;
    const char* pattern = kGpt2Pattern;
    if (pre == "llama3" || pre == "llama-bpe" || pre == "llama-v3" || pre == "smaug-bpe") {
      pattern = kLlama3Pattern;
    } else if (pre == "qwen2" || pre == "deepseek-r1-qwen") {
      pattern = kQwen2Pattern;
    } else if (pre == "gpt-4o" || pre == "o200k") {
      pattern = kGpt4oPattern;
    } else if (!(pre.empty() || pre == "gpt2" || pre == "default" || pre == "gpt-2")) {
      throw Error(ErrorCode::kUnsupported,
                  "unsupported pre-tokenizer \"" + pre + "\" (tokenizer.ggml.pre) in " + src,
                  "supported: gpt2/default, llama3/llama-bpe, qwen2, gpt-4o");
    }
    PreTokenizer split;
    split.kind = PreTokenizer::kSplit;
    split.pattern = std::make_shared<uni::Regex>(pattern, false, src);
    split.behavior = Behavior::kIsolated;
    spec.pre_tokenizers.push_back(split);
    PreTokenizer bytes;
    bytes.kind = PreTokenizer::kByteLevel;
    spec.pre_tokenizers.push_back(bytes);
    spec.decoder.byte_level = true;
    spec.ignore_merges = pattern == kLlama3Pattern;
    spec.kind = "gguf-gpt2";
  } else {
    throw Error(
        ErrorCode::kUnsupported, "unsupported tokenizer model \"" + v.model + "\" in " + src,
        "supported GGUF tokenizer models: llama (SentencePiece BPE) and gpt2 (byte-level BPE)");
  }
  finish_spec(&spec);
  return std::make_unique<HfTokenizer>(std::move(spec));
}

}  // namespace candor
