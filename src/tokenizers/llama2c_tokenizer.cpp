// The llama2.c tokenizer (tokenizer.bin): a scored vocabulary with greedy highest-score pair
// merging and byte fallback, the same algorithm as llama2.c's run.c, with hashed lookups and a
// heap so that encoding long texts stays O(n log n).
#include <cmath>
#include <cstring>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

#include "candor/error.h"
#include "candor/tokenizer.h"
#include "tokenizers/pair_merge.h"
#include "tokenizers/tokenizer_internal.h"

namespace candor {
namespace tokenizers {
namespace {

// Fixed ids of the llama2.c vocabulary layout (those of the SentencePiece models it exports).
constexpr TokenId kUnkId = 0;
constexpr TokenId kBosId = 1;
constexpr TokenId kEosId = 2;
constexpr TokenId kFirstByteId = 3;  // ids 3..258 are the byte pieces <0x00>..<0xFF>
// run.c only merges pairs whose score beats its initial best of -1e10.
constexpr float kMinMergeScore = -1e10f;

uint32_t read_u32_le(std::string_view data, size_t offset) {
  const auto* p = reinterpret_cast<const unsigned char*>(data.data() + offset);
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

int32_t read_i32_le(std::string_view data, size_t offset) {
  const uint32_t bits = read_u32_le(data, offset);
  int32_t value = 0;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

float read_f32_le(std::string_view data, size_t offset) {
  const uint32_t bits = read_u32_le(data, offset);
  float value = 0;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

// ---------------------------------------------------------------------------------------------
// The tokenizer
// ---------------------------------------------------------------------------------------------

class Llama2cTokenizer final : public Tokenizer {
 public:
  Llama2cTokenizer(std::vector<std::string> pieces, std::vector<float> scores)
      : pieces_(std::move(pieces)), scores_(std::move(scores)) {
    const auto n = static_cast<TokenId>(pieces_.size());
    decoded_.resize(pieces_.size());
    is_byte_.assign(pieces_.size(), false);
    has_byte_fallback_ = n >= kFirstByteId + 256;
    for (TokenId id = 0; id < n; ++id) {
      const std::string& piece = pieces_[id];
      uint8_t byte = 0;
      if (parse_byte_piece(piece, &byte)) {
        is_byte_[id] = true;
        decoded_[id] = std::string(1, static_cast<char>(byte));
      } else if (id != kUnkId && id != kBosId && id != kEosId) {
        decoded_[id] = piece;
      }
      if (id >= kFirstByteId && id < kFirstByteId + 256 &&
          !(is_byte_[id] && static_cast<TokenId>(byte) == id - kFirstByteId)) {
        has_byte_fallback_ = false;
      }
      // Special and byte pieces are not text: "<0x41>" typed by a user stays six characters.
      // The first id wins when a piece is stored twice.
      if (is_byte_[id] || id == kUnkId || id == kBosId || id == kEosId) continue;
      lookup_.emplace(std::string_view(pieces_[id]), id);
    }
  }

  std::vector<TokenId> encode(std::string_view text, bool add_bos, bool add_eos) const override {
    require_valid_utf8(text);
    std::vector<TokenId> ids;
    if (add_bos) ids.push_back(kBosId);
    if (!text.empty()) encode_text(text, &ids);
    if (add_eos) ids.push_back(kEosId);
    return ids;
  }

  std::string decode_piece(TokenId prev, TokenId token) const override {
    check_id(token);
    const std::string& text = decoded_[token];
    if (prev == kBosId && !is_byte_[token] && !text.empty() && text[0] == ' ') {
      return text.substr(1);
    }
    return text;
  }

  std::string piece(TokenId token) const override {
    check_id(token);
    return pieces_[token];
  }

  float score(TokenId token) const override {
    check_id(token);
    return scores_[token];
  }

  int32_t vocab_size() const override { return static_cast<int32_t>(pieces_.size()); }
  TokenId bos_id() const override { return kBosId; }
  TokenId eos_id() const override { return kEosId; }
  std::string kind() const override { return "llama2c"; }

 private:
  // One symbol of the sequence being merged: a doubly linked list over a vector.
  struct Symbol {
    TokenId id;
    int prev;
    int next;
    bool mergeable;  // false for byte-fallback tokens
  };

  // A candidate merge of symbols[left] and its right neighbour into `merged`.
  struct Candidate {
    float score;
    int left;
    int right;
    TokenId left_id;
    TokenId right_id;
    TokenId merged;
  };

  // Heap order: highest score first, then the leftmost pair (run.c keeps the first of equal
  // scores because it compares with a strict '>').
  struct CandidateOrder {
    bool operator()(const Candidate& a, const Candidate& b) const {
      if (a.score != b.score) return a.score < b.score;
      return a.left > b.left;
    }
  };

  void encode_text(std::string_view text, std::vector<TokenId>* ids) const {
    std::vector<Symbol> symbols;
    symbols.reserve(text.size() + 1);
    auto add_symbol = [&](TokenId id, bool mergeable) {
      const int index = static_cast<int>(symbols.size());
      symbols.push_back(Symbol{id, index - 1, -1, mergeable});
      if (index > 0) symbols[index - 1].next = index;
    };
    // The dummy prefix: a space before the text, looked up like any other character.
    auto add_codepoint = [&](std::string_view codepoint, size_t offset) {
      const auto it = lookup_.find(codepoint);
      if (it != lookup_.end()) {
        add_symbol(it->second, true);
        return;
      }
      if (!has_byte_fallback_) {
        throw Error(ErrorCode::kUnsupported,
                    "the character at byte offset " + std::to_string(offset) +
                        " is not in the llama2.c vocabulary, which has no byte pieces "
                        "(<0x00>..<0xFF> at ids 3..258) to fall back on",
                    "use a tokenizer with byte fallback, or remove the character");
      }
      for (char c : codepoint) add_symbol(kFirstByteId + static_cast<uint8_t>(c), false);
    };
    add_codepoint(" ", 0);
    for (size_t i = 0; i < text.size();) {
      const size_t length = sequence_length(static_cast<unsigned char>(text[i]));
      add_codepoint(text.substr(i, length), i);
      i += length;
    }

    std::priority_queue<Candidate, std::vector<Candidate>, CandidateOrder> heap;
    std::string joined;
    auto consider = [&](int left) {
      if (left < 0) return;
      const int right = symbols[left].next;
      if (right < 0 || !symbols[left].mergeable || !symbols[right].mergeable) return;
      joined = pieces_[symbols[left].id];
      joined += pieces_[symbols[right].id];
      const auto it = lookup_.find(joined);
      if (it == lookup_.end()) return;
      const float score = scores_[it->second];
      if (!(score > kMinMergeScore)) return;  // also rejects NaN, as run.c's comparison does
      heap.push(Candidate{score, left, right, symbols[left].id, symbols[right].id, it->second});
    };
    run_pair_merges(symbols, heap, consider, ids);
  }

  void check_id(TokenId token) const {
    if (token < 0 || token >= vocab_size()) {
      throw Error(ErrorCode::kInvalidArgument,
                  "token id " + std::to_string(token) + " is out of range for the llama2.c " +
                      "vocabulary of " + std::to_string(vocab_size()) + " pieces",
                  "use ids produced by the same tokenizer (and a model of the same vocabulary)");
    }
  }

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::vector<std::string> decoded_;  // the text each token contributes ("" for specials)
  std::vector<bool> is_byte_;
  bool has_byte_fallback_ = false;
  // Piece text -> id; the keys view the strings in pieces_, which never change after
  // construction.
  std::unordered_map<std::string_view, TokenId> lookup_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

std::unique_ptr<Tokenizer> make_llama2c_tokenizer(const std::string& path, std::string_view data) {
  auto malformed = [&](size_t offset, const std::string& what) {
    return Error(ErrorCode::kInvalidArgument,
                 "malformed llama2.c tokenizer " + path + " at byte offset " +
                     std::to_string(offset) + ": " + what,
                 "the file may be truncated or not a llama2.c tokenizer.bin; re-export it with "
                 "llama2.c's tokenizer.py");
  };
  const size_t size = data.size();
  if (size < 4) {
    throw malformed(0, "the file is " + std::to_string(size) +
                           " bytes long, too short for the 4-byte max_token_length header");
  }
  const int32_t max_token_length = read_i32_le(data, 0);
  if (max_token_length <= 0 || max_token_length > kMaxLlama2cTokenLength) {
    throw malformed(0, "max_token_length is " + std::to_string(max_token_length) +
                           ", expected 1.." + std::to_string(kMaxLlama2cTokenLength));
  }
  std::vector<std::string> pieces;
  std::vector<float> scores;
  size_t offset = 4;
  while (offset < size) {
    const std::string token = "token " + std::to_string(pieces.size());
    if (size - offset < 8) {
      throw malformed(offset, "truncated record of " + token + ": its score and length need 8 " +
                                  "bytes, only " + std::to_string(size - offset) + " remain");
    }
    const float score = read_f32_le(data, offset);
    const int32_t length = read_i32_le(data, offset + 4);
    if (length < 0 || length > max_token_length) {
      throw malformed(offset + 4, token + " has length " + std::to_string(length) +
                                      ", outside 0..max_token_length (" +
                                      std::to_string(max_token_length) + ")");
    }
    offset += 8;
    if (size - offset < static_cast<size_t>(length)) {
      throw malformed(offset, "truncated piece of " + token + ": it declares " +
                                  std::to_string(length) + " bytes, only " +
                                  std::to_string(size - offset) + " remain");
    }
    pieces.emplace_back(data.substr(offset, static_cast<size_t>(length)));
    scores.push_back(score);
    offset += static_cast<size_t>(length);
  }
  if (pieces.size() < 3) {
    throw malformed(size, "it holds " + std::to_string(pieces.size()) +
                              " tokens; a llama2.c vocabulary starts with <unk>, <s> and </s>");
  }
  return std::make_unique<Llama2cTokenizer>(std::move(pieces), std::move(scores));
}

std::unique_ptr<Tokenizer> make_llama2c_tokenizer(const std::string& source,
                                                  std::vector<std::string> pieces,
                                                  std::vector<float> scores) {
  if (pieces.size() < 3 || scores.size() != pieces.size()) {
    throw Error(ErrorCode::kInvalidArgument,
                "malformed llama2.c vocabulary " + source + ": it holds " +
                    std::to_string(pieces.size()) + " tokens and " + std::to_string(scores.size()) +
                    " scores; a llama2.c vocabulary starts with <unk>, <s> and </s> and scores "
                    "every token",
                "the file is corrupt");
  }
  return std::make_unique<Llama2cTokenizer>(std::move(pieces), std::move(scores));
}

bool looks_like_llama2c_header(std::string_view data) {
  if (data.size() < 4) return false;
  const int32_t max_token_length = read_i32_le(data, 0);
  return max_token_length > 0 && max_token_length <= kMaxLlama2cTokenLength;
}

}  // namespace tokenizers

std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path) {
  const std::string data = tokenizers::read_tokenizer_file(path, "llama2.c tokenizer");
  return tokenizers::make_llama2c_tokenizer(path, data);
}

}  // namespace candor
