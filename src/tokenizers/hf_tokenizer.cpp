// The Hugging Face tokenizer runtime: one pipeline — added tokens split out, normalizers,
// pre-tokenizers, a BPE or WordPiece model, post-processor special tokens — and a per-token
// decoder, run over a Spec (hf_spec.h) that the readers fill. The behaviour follows the Rust
// `tokenizers` library; docs/tokenizers.md lists what is supported.
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
#include "tokenizers/hf_spec.h"
#include "tokenizers/hf_unicode.h"
#include "tokenizers/pair_merge.h"
#include "tokenizers/tokenizer_internal.h"

namespace candor {
namespace tokenizers {

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

namespace {

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

}  // namespace

std::unique_ptr<Tokenizer> make_hf_tokenizer(Spec spec) {
  return std::make_unique<HfTokenizer>(std::move(spec));
}

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

}  // namespace tokenizers
}  // namespace candor
