// The Hugging Face tokenizer pipeline shared by its files (internal header, src/tokenizers
// only): hf_tokenizer.cpp runs a Spec (added tokens, normalizers, pre-tokenizers, BPE or
// WordPiece, post-processor specials, decoder), hf_tokenizer_json.cpp fills one from
// tokenizer.json (+ tokenizer_config.json), hf_vocab_files.cpp from the slow vocab files
// (vocab.json + merges.txt, vocab.txt), gguf_vocab.cpp from vocabulary arrays.
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "candor/error.h"
#include "candor/tokenizer.h"
#include "tokenizers/hf_unicode.h"

namespace candor::tokenizers {

namespace uni = unicode;

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

// GPT-2's byte <-> printable character map.
struct ByteMap {
  std::array<std::string, 256> encoded;           // byte -> UTF-8 of its stand-in character
  std::unordered_map<char32_t, uint8_t> decoded;  // stand-in character -> byte
};
const ByteMap& byte_map();

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

inline uint64_t pair_key(TokenId a, TokenId b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

inline Error malformed(const std::string& source, const std::string& what) {
  return Error(ErrorCode::kInvalidArgument, "malformed tokenizer file " + source + ": " + what,
               "the file may be truncated or damaged; re-download it with the model");
}

// ---------------------------------------------------------------------------------------------
// Building a Spec (hf_tokenizer.cpp)
// ---------------------------------------------------------------------------------------------

// Common finishing steps: model membership, BOS/EOS defaults, the kind.
void finish_spec(Spec* s);
// Adds or updates token `id` with text `piece`, growing the vocabulary as needed.
void set_piece(Spec* s, TokenId id, const std::string& piece, bool in_model);
// The merges of a SentencePiece-BPE vocabulary ordered by score: a pair merges into the token
// its two pieces spell, with the priority of that token's score.
void derive_score_merges(Spec* s, const std::unordered_map<std::string, TokenId>& vocab);
// The tokenizer that runs `spec`.
std::unique_ptr<Tokenizer> make_hf_tokenizer(Spec spec);

// ---------------------------------------------------------------------------------------------
// Reading JSON (hf_tokenizer_json.cpp)
// ---------------------------------------------------------------------------------------------

// Fills a Spec from tokenizer.json, or piece by piece from the slow files.
class JsonParser {
 public:
  JsonParser(std::string source, Spec* spec);
  ~JsonParser();
  // tokenizer.json, with tokenizer_config.json when given.
  void parse(const nlohmann::json& root, const nlohmann::json* config);
  // The part of the file being read (for messages).
  const std::string& section() const;
  // For the slow vocab.json + merges.txt files.
  void set_vocab(const nlohmann::json& vocab);
  void add_merge_line(const std::string& line, size_t rank);
  // tokenizer_config.json: BOS/EOS/PAD/UNK, add_bos_token / add_eos_token, chat template.
  void parse_config(const nlohmann::json& config);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// A JSON file; Error(kInvalidArgument) naming `what` and the file when it does not parse.
nlohmann::json read_json(const std::string& path, const char* what);
// Runs `build` and turns JSON type errors (a field of the wrong type) into Error naming the
// file and the section.
void guarded(const std::string& path, const std::function<std::string()>& section,
             const std::function<void()>& build);

}  // namespace candor::tokenizers
