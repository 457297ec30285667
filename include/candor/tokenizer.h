// Tokenizers: text <-> token ids. One interface, several file formats (llama2.c tokenizer.bin,
// SentencePiece .model, Hugging Face tokenizer.json and the vocabularies stored in GGUF files).
// Thread safety: all const methods may be called concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "candor/error.h"

namespace candor {

using TokenId = int32_t;

// One turn of a conversation for chat templates: role "system", "user" or "assistant".
struct ChatMessage {
  std::string role;
  std::string content;
};

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
  // "llama2c", "sentencepiece", "hf-bpe-bytelevel", "hf-bpe-metaspace", "hf-wordpiece", ...
  virtual std::string kind() const = 0;

  // The chat format of the model's tokenizer_config.json ("llama2", "mistral", "llama3",
  // "chatml"), or "" when the tokenizer knows none.
  virtual std::string chat_family() const { return {}; }
  // Renders a conversation in the model's chat format, as its chat template does (with the BOS
  // token as text where the template writes it; encode the result with add_bos = false, special
  // tokens in the text are recognised). With `add_generation_prompt`, ends with the header that
  // opens the assistant's turn. Throws Error(kUnsupported) when chat_family() is "" and
  // Error(kInvalidArgument) for a conversation the format cannot express (e.g. roles that do not
  // alternate in the Llama 2 format).
  virtual std::string apply_chat_template(const std::vector<ChatMessage>& messages,
                                          bool add_generation_prompt = true) const;
};

// The text of one token for people to read, as it stands inside a text: its leading space kept
// (" the" for the pieces "Ġthe", "▁the" and " the", and for a WordPiece word; "s" for "##s"),
// byte pieces as their byte; a special token (BOS, EOS, unknown, added control tokens) as the
// vocabulary spells it, surrounding whitespace trimmed ("[CLS]", "<s>", "<|endoftext|>").
// Throws Error(kInvalidArgument) for an id out of range.
std::string token_text(const Tokenizer& tokenizer, TokenId token);

// Loads a llama2.c `tokenizer.bin`. The format does not store the vocabulary size: the file is
// read to its end. Throws Error(kNotFound) for a missing file and Error(kInvalidArgument) for a
// malformed one (the message names the file and the byte offset).
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path);

// Loads a SentencePiece `.model` through libsentencepiece. Throws as above.
std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& path);

// Picks the loader from the file's contents (SentencePiece models are protobufs, llama2.c
// tokenizers start with an int32 max token length).
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

// Loads a Hugging Face tokenizer: `folder_or_file` is a model folder or a tokenizer.json file.
// A folder holds tokenizer.json, or the files of the "slow" tokenizers: vocab.json + merges.txt
// (GPT-2 style byte-level BPE) or vocab.txt (BERT WordPiece). tokenizer_config.json beside it,
// when present, gives BOS/EOS/PAD, add_bos_token/add_eos_token and the chat template.
// Supported: models BPE (byte-level, SentencePiece-style metaspace with byte fallback) and
// WordPiece; the normalizers, pre-tokenizers, post-processors and decoders that GPT-2, Llama 2/3,
// Mistral, Qwen, GPT-4o-style and BERT files use (docs/tokenizers.md lists them).
// encode(text, add_bos, add_eos) of these tokenizers: add_bos adds the special tokens that the
// tokenizer's own post-processor puts first (<s> for Llama 2, [CLS] for BERT, nothing for GPT-2 or
// Qwen; tokenizer_config.json's add_bos_token overrides); add_eos adds those it puts last ([SEP]
// for BERT), or the EOS token when it puts none. No dummy-prefix space is added beyond what the
// file's normalizer or pre-tokenizer does. Added tokens in the text are split out first.
// Throws Error(kNotFound) for a missing file, Error(kInvalidArgument) for a malformed one and
// Error(kUnsupported) for a model or component type candor lacks; messages name the file.
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& folder_or_file);

// The same tokenizer from the texts of tokenizer.json and (optionally, "" for none)
// tokenizer_config.json held in memory, e.g. a vocabulary candor has just learnt: nothing is
// written to disk. `source` names the tokenizer in error messages. Throws as load_hf_tokenizer.
std::unique_ptr<Tokenizer> make_hf_tokenizer(const std::string& tokenizer_json,
                                             const std::string& tokenizer_config_json = "",
                                             const std::string& source = "(tokenizer in memory)");

// A tokenizer from a vocabulary stored elsewhere (the tokenizer.ggml.* metadata of a GGUF file).
struct VocabTokenizerSpec {
  // "llama": SentencePiece BPE (merge the adjacent pair whose joined piece has the highest score,
  // "▁" for spaces, a dummy-prefix space, byte fallback to <0xNN> pieces);
  // "gpt2": byte-level BPE over `merges` with the pre-tokenizer regex chosen by `pre`.
  std::string model;
  std::vector<std::string> tokens;
  std::vector<float> scores;         // llama: one per token
  std::vector<int32_t> token_types;  // optional; GGUF: 1 normal, 2 unknown, 3 control,
                                     // 4 user defined, 5 unused, 6 byte
  std::vector<std::string> merges;   // gpt2: "left right", highest priority first
  // gpt2: tokenizer.ggml.pre ("gpt2"/"default", "llama3"/"llama-bpe", "qwen2", "gpt-4o").
  std::string pre;
  TokenId bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1;
  bool add_bos = true;  // llama default; gpt2 callers usually pass false
  bool add_eos = false;
  bool add_space_prefix = true;  // llama: the dummy prefix (tokenizer.ggml.add_space_prefix)
  std::string chat_template;     // tokenizer.chat_template, may be empty
  std::string source;            // the file, named in error messages
};
// Throws Error(kInvalidArgument) naming `spec.source` for an inconsistent spec (sizes that do not
// match, a merge naming an unknown token, ids out of range) and Error(kUnsupported) for another
// model.
std::unique_ptr<Tokenizer> make_tokenizer_from_vocab(const VocabTokenizerSpec& spec);

// The words of `text` as BERT's tokenizer sees them before WordPiece (BertNormalizer with lower
// case and accents stripped, then BertPreTokenizer): control characters dropped, CJK ideographs
// split off, words split at whitespace, every punctuation character a word of its own. Empty for
// text that is not valid UTF-8. For vocabulary trainers (train/tokenizers).
std::vector<std::string> bert_words(const std::string& text);

// A GGUF file's vocabulary (its tokenizer.ggml.* arrays) as a tokenizer. A "llama" vocabulary
// with <unk>, <s>, </s> at ids 0, 1, 2 is read by the llama2.c tokenizer (kind "llama2c": the
// same greedy scored merges and byte fallback; the pieces' "▁" read as spaces; convert writes it
// back as tokenizer.bin); other "llama" layouts and "gpt2" vocabularies by
// make_tokenizer_from_vocab. Throws as make_tokenizer_from_vocab does, and
// Error(kInvalidArgument) naming `spec.source` for a llama2.c layout of fewer than 3 tokens.
std::unique_ptr<Tokenizer> make_gguf_tokenizer(const VocabTokenizerSpec& spec);

// The vocabulary of a scored tokenizer (llama2c, sentencepiece) as GGUF's "llama" model stores
// it: model "llama", pieces with "▁" for spaces, scores, token types (2 unknown, 3 BOS / EOS,
// 6 byte, 1 normal) and the BOS / EOS / unknown ids.
VocabTokenizerSpec scored_vocabulary(const Tokenizer& tokenizer);

// Writes the pieces and scores of `tokenizer` as a llama2.c tokenizer.bin that
// load_llama2c_tokenizer reads back. Throws Error(kNotFound) when `path` cannot be written.
void save_llama2c_tokenizer(const Tokenizer& tokenizer, const std::string& path);

// The Hugging Face files of a llama2.c tokenizer, as text: tokenizer.json (Llama 2's layout: a
// BPE model with byte fallback whose merges are derived from the scores, "▁" for spaces and a
// "▁" prepended, <s> first) and tokenizer_config.json. load_hf_tokenizer reads them back to the
// same ids as the llama2.c tokenizer, except in text that holds the special pieces ("<s>",
// "</s>", "<unk>", split out as the special tokens) or a literal "▁" (read as a space), as with
// every tokenizer.json of this layout. Throws Error(kUnsupported) for other tokenizer kinds.
struct HfTokenizerFiles {
  std::string tokenizer_json;
  std::string tokenizer_config_json;
};
HfTokenizerFiles scored_tokenizer_to_hf(const Tokenizer& tokenizer);

// The one place where a model folder's tokenizer is chosen: `tokenizer_path` when given
// (load_tokenizer), else the folder's files, best first: tokenizer.json (load_hf_tokenizer),
// tokenizer.model, tokenizer.bin, tok*.bin, vocab.json + merges.txt or vocab.txt. A folder
// without a tokenizer gets a placeholder (missing_tokenizer, kind "none") whose use says why.
// Throws Error(kInvalidArgument) when the tokenizer has more tokens than `vocab_size`, and the
// loaders' errors for malformed files. `files`, when given, receives the files it was read from.
std::shared_ptr<Tokenizer> load_folder_tokenizer(const std::string& folder, int64_t vocab_size,
                                                 const std::string& tokenizer_path,
                                                 std::vector<std::string>* files);

// A placeholder tokenizer for a model whose tokenizer cannot be read: kind() is "none",
// vocab_size() is `vocab`, every other use throws Error(code, reason, hint).
std::shared_ptr<Tokenizer> missing_tokenizer(int32_t vocab, ErrorCode code, std::string reason,
                                             std::string hint);

// True when `text` is well-formed UTF-8 (no overlongs, surrogates or values above U+10FFFF).
// On failure, `*bad_offset` (when given) receives the byte offset of the first bad sequence.
bool is_valid_utf8(std::string_view text, size_t* bad_offset = nullptr);

}  // namespace candor
