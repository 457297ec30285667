// The parts of the tokenizer interface shared by every format: whole-sequence decoding, file
// reading, and load_tokenizer(), which picks the format from the file's contents.
#include "candor/tokenizer.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "candor/error.h"
#include "tokenizers/tokenizer_internal.h"

namespace candor {

std::string Tokenizer::decode(const std::vector<TokenId>& ids) const {
  std::string text;
  TokenId prev = bos_id();
  for (TokenId id : ids) {
    text += decode_piece(prev, id);
    prev = id;
  }
  return text;
}

std::string token_text(const Tokenizer& tok, TokenId token) {
  // decode_piece after an ordinary token: the context-free text, leading space included.
  const TokenId n = tok.vocab_size();
  TokenId prev = -1;
  for (TokenId i = 0; i < n && i < 4; ++i)
    if (i != tok.bos_id() && i != token) {
      prev = i;
      break;
    }
  std::string text = tok.decode_piece(prev < 0 ? token : prev, token);
  if (!text.empty() && token != tok.bos_id() && token != tok.eos_id()) return text;
  std::string piece = tok.piece(token);
  const size_t b = piece.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return text.empty() ? piece : text;
  const size_t e = piece.find_last_not_of(" \t\r\n");
  return piece.substr(b, e - b + 1);
}

std::string Tokenizer::apply_chat_template(const std::vector<ChatMessage>& /*messages*/,
                                           bool /*add_generation_prompt*/) const {
  throw Error(ErrorCode::kUnsupported, "the " + kind() + " tokenizer has no chat template",
              "chat templates come from a Hugging Face model's tokenizer_config.json (Llama 2, "
              "Mistral, Llama 3 and ChatML formats); pass the prompt as plain text instead");
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  const std::string data = tokenizers::read_tokenizer_file(path, "tokenizer");
  // A Hugging Face tokenizer.json: a JSON object.
  const size_t first = data.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && data[first] == '{') return load_hf_tokenizer(path);
  if (tokenizers::looks_like_protobuf_model(data)) {
    try {
      return tokenizers::make_sentencepiece_tokenizer(path, data);
    } catch (const Error& sentencepiece_error) {
      // A tokenizer.bin whose header happens to read as protobuf fields: try that format too.
      try {
        return tokenizers::make_llama2c_tokenizer(path, data);
      } catch (const Error&) {
        throw sentencepiece_error;
      }
    }
  }
  // A plausible llama2.c header: report that format's problems (e.g. truncation) as they are.
  if (data.size() < 4 || tokenizers::looks_like_llama2c_header(data)) {
    return tokenizers::make_llama2c_tokenizer(path, data);
  }
  // Starts with the tag of a ModelProto's piece list but is not well framed: a damaged model.
  if (data[0] == '\x0A') {
    return tokenizers::make_sentencepiece_tokenizer(path, data);
  }
  uint32_t value = 0;
  for (int i = 3; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(data[i]);
  const std::string header = "its bytes 0..3 read as max_token_length " +
                             std::to_string(static_cast<int32_t>(value)) + ", not 1.." +
                             std::to_string(tokenizers::kMaxLlama2cTokenLength);
  throw Error(ErrorCode::kInvalidArgument,
              "cannot load tokenizer " + path +
                  ": it is neither a SentencePiece .model (not a protobuf message) nor a llama2.c "
                  "tokenizer.bin (" +
                  header + ")",
              "pass a SentencePiece tokenizer.model or a llama2.c tokenizer.bin; the file may be "
              "damaged or of another format");
}

namespace tokenizers {

std::string read_tokenizer_file(const std::string& path, const char* what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      throw Error(ErrorCode::kNotFound, std::string(what) + " file not found: " + path,
                  "check the path; tokenizers ship next to the model (tokenizer.model or "
                  "tokenizer.bin)");
    }
    throw Error(ErrorCode::kInvalidArgument,
                "cannot access " + std::string(what) + " file " + path + ": " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    throw Error(ErrorCode::kInvalidArgument,
                std::string(what) + " path is not a regular file: " + path,
                "pass the tokenizer file itself, not its folder");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw Error(ErrorCode::kInvalidArgument,
                "cannot open " + std::string(what) + " file " + path + ": " + std::strerror(errno));
  }
  std::string data(static_cast<size_t>(st.st_size), '\0');
  in.read(data.data(), static_cast<std::streamsize>(data.size()));
  if (static_cast<size_t>(in.gcount()) != data.size()) {
    throw Error(ErrorCode::kInvalidArgument, "error while reading " + std::string(what) + " file " +
                                                 path + " (it changed while read?)");
  }
  return data;
}

bool parse_byte_piece(std::string_view piece, uint8_t* byte) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return false;
  int value = 0;
  for (size_t i = 3; i < 5; ++i) {
    const char c = piece[i];
    int digit = 0;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return false;
    }
    value = value * 16 + digit;
  }
  *byte = static_cast<uint8_t>(value);
  return true;
}

}  // namespace tokenizers
}  // namespace candor
