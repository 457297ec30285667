// Tokenizers: text <-> token ids. One interface, several file formats (llama2.c tokenizer.bin,
// SentencePiece .model). Thread safety: all const methods may be called concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace candor {

using TokenId = int32_t;

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Encodes UTF-8 text into ids, optionally with BOS first and EOS last. Like the llama2.c and
  // SentencePiece references, non-empty text gets a leading "dummy prefix" space; characters
  // missing from the vocabulary fall back to byte tokens.
  // Throws Error(kInvalidArgument) when `text` is not valid UTF-8 (the message gives the offset).
  virtual std::vector<TokenId> encode(std::string_view text, bool add_bos = true,
                                      bool add_eos = false) const = 0;

  // The bytes token `token` contributes to the text when it follows `prev`: the leading space of
  // the first piece after BOS is dropped, byte tokens "<0xAB>" yield their raw byte, and special
  // tokens (BOS, EOS, unknown) yield "". Throws Error(kInvalidArgument) for an id out of range.
  virtual std::string decode_piece(TokenId prev, TokenId token) const = 0;

  // Decodes a whole sequence: the concatenation of decode_piece over it (the first id is treated
  // as following BOS). decode(encode(s)) == s for every valid UTF-8 string s.
  std::string decode(const std::vector<TokenId>& ids) const;

  // The stored piece of a token as the vocabulary spells it (e.g. " Once", "<0x0A>").
  virtual std::string piece(TokenId token) const = 0;
  // Score of a piece (merge priority for BPE vocabularies).
  virtual float score(TokenId token) const = 0;

  virtual int32_t vocab_size() const = 0;
  virtual TokenId bos_id() const = 0;
  virtual TokenId eos_id() const = 0;
  // The unknown token (0 in llama2.c and SentencePiece vocabularies).
  virtual TokenId unk_id() const { return 0; }
  // The padding token, or -1 when the vocabulary has none.
  virtual TokenId pad_id() const { return -1; }
  // "llama2c" or "sentencepiece".
  virtual std::string kind() const = 0;
};

// Loads a llama2.c `tokenizer.bin`. The format does not store the vocabulary size: the file is
// read to its end. Throws Error(kNotFound) for a missing file and Error(kInvalidArgument) for a
// malformed one (the message names the file and the byte offset).
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path);

// Loads a SentencePiece `.model` through libsentencepiece. Throws as above.
std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& path);

// Picks the loader from the file's contents (SentencePiece models are protobufs, llama2.c
// tokenizers start with an int32 max token length).
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

// True when `text` is well-formed UTF-8 (no overlongs, surrogates or values above U+10FFFF).
// On failure, `*bad_offset` (when given) receives the byte offset of the first bad sequence.
bool is_valid_utf8(std::string_view text, size_t* bad_offset = nullptr);

}  // namespace candor
