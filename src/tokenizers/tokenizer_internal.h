// Helpers shared by the tokenizer implementations in src/tokenizers/ (not a public header):
// file reading with candor::Error, UTF-8 diagnostics, byte pieces, format sniffing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "candor/tokenizer.h"
#include "candor/utf8.h"

namespace candor::tokenizers {

// Build a tokenizer from the bytes `data` of the file `path` (named in error messages).
std::unique_ptr<Tokenizer> make_llama2c_tokenizer(const std::string& path, std::string_view data);
// The same from a vocabulary already split into pieces and scores (a GGUF file's; `source`
// names it in messages).
std::unique_ptr<Tokenizer> make_llama2c_tokenizer(const std::string& source,
                                                  std::vector<std::string> pieces,
                                                  std::vector<float> scores);
std::unique_ptr<Tokenizer> make_sentencepiece_tokenizer(const std::string& path,
                                                        std::string_view data);

}  // namespace candor::tokenizers

#include <nlohmann/json_fwd.hpp>

namespace candor::tokenizers {

// The "slow" Hugging Face tokenizer files (hf_vocab_files.cpp): GPT-2's vocab.json + merges.txt
// (byte-level BPE, <|endoftext|> special) and BERT's vocab.txt (WordPiece, lowercasing unless
// the config's do_lower_case is false). `config` is the parsed tokenizer_config.json or null.
std::unique_ptr<Tokenizer> load_gpt2_bpe_files(const std::string& vocab_path,
                                               const std::string& merges_path,
                                               const nlohmann::json* config);
std::unique_ptr<Tokenizer> load_bert_vocab_file(const std::string& vocab_path,
                                                const nlohmann::json* config);
// The slow files of `folder`: vocab.json + merges.txt, else vocab.txt; Error(kNotFound) when it
// has neither.
std::unique_ptr<Tokenizer> load_slow_vocab_files(const std::string& folder,
                                                 const nlohmann::json* config);

// Reads a whole file. Throws Error(kNotFound) when it does not exist and Error(kInvalidArgument)
// when it is not a readable regular file. `what` names the expected format in messages.
std::string read_tokenizer_file(const std::string& path, const char* what);

// Throws Error(kInvalidArgument) naming the byte offset and the problem when `text` is not valid
// UTF-8.
void require_valid_utf8(std::string_view text);

// Number of bytes of the UTF-8 sequence that starts with `lead` (candor/utf8.h).
using utf8::sequence_length;

// True when `piece` is exactly a byte piece "<0xAB>" (two hex digits); `*byte` gets its value.
bool parse_byte_piece(std::string_view piece, uint8_t* byte);

// True when `data` starts like a llama2.c tokenizer.bin: a little-endian int32 max_token_length
// in 1..kMaxLlama2cTokenLength.
constexpr int32_t kMaxLlama2cTokenLength = 1 << 16;
bool looks_like_llama2c_header(std::string_view data);

// True when `data` parses as a sequence of protobuf fields up to its last byte, as a serialized
// SentencePiece ModelProto does (its first field is the piece list, tag 0x0A).
bool looks_like_protobuf_model(std::string_view data);

// Chat templates (chat_template.cpp): the family of a Hugging Face chat template ("llama2",
// "mistral", "llama3", "chatml"), recognised from its text, or when there is none from the special
// tokens the vocabulary has (`has_token`); "" when unknown.
std::string detect_chat_family(const std::string& chat_template,
                               const std::function<bool(const std::string&)>& has_token);
// Renders `messages` in `family`'s format; `bos` and `eos` are the token texts the template uses.
std::string render_chat(const std::string& family, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt, const std::string& bos, const std::string& eos);

}  // namespace candor::tokenizers
