// SentencePiece .model tokenizers through libsentencepiece, made to behave like the llama2.c
// tokenizer: exact round trips (no whitespace normalization), "▁" shown as ' ', byte pieces
// decoded to raw bytes, control and unknown pieces decoded to "".
#include "tokenizers/sentencepiece_shim.h"

#include <cstdio>
#include <string>
#include <vector>

#include "candor/error.h"
#include "candor/tokenizer.h"
#include "tokenizers/tokenizer_internal.h"

namespace candor {
namespace tokenizers {
namespace {

// SentencePiece's whitespace marker U+2581 "▁".
constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";

// ---------------------------------------------------------------------------------------------
// Just enough protobuf wire format to check a ModelProto's framing and adjust its NormalizerSpec
// ---------------------------------------------------------------------------------------------

// Field numbers of sentencepiece_model.proto.
constexpr uint32_t kModelNormalizerSpec = 3;         // ModelProto.normalizer_spec
constexpr uint32_t kNormalizerAddDummyPrefix = 3;    // NormalizerSpec.add_dummy_prefix
constexpr uint32_t kNormalizerRemoveExtraSpace = 4;  // NormalizerSpec.remove_extra_whitespaces

struct WireField {
  uint32_t number = 0;
  uint32_t wire_type = 0;
  size_t begin = 0;    // offset of the tag
  size_t payload = 0;  // offset of the value (after the length for length-delimited fields)
  size_t end = 0;      // offset just past the field
  uint64_t varint = 0;
};

bool read_varint(std::string_view data, size_t* offset, uint64_t* value) {
  *value = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (*offset >= data.size()) return false;
    const auto byte = static_cast<unsigned char>(data[(*offset)++]);
    *value |= static_cast<uint64_t>(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}

void append_varint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

// Reads the field at *offset; on failure returns a description of what is wrong.
const char* read_field(std::string_view data, size_t* offset, WireField* field) {
  field->begin = *offset;
  uint64_t tag = 0;
  if (!read_varint(data, offset, &tag)) return "truncated field tag";
  field->number = static_cast<uint32_t>(tag >> 3);
  field->wire_type = static_cast<uint32_t>(tag & 7);
  if (field->number == 0 || (tag >> 3) > 0x1FFFFFFF) return "invalid field number";
  field->payload = *offset;
  switch (field->wire_type) {
    case 0:
      if (!read_varint(data, offset, &field->varint)) return "truncated varint";
      break;
    case 1:
    case 5: {
      const size_t width = field->wire_type == 1 ? 8 : 4;
      if (data.size() - *offset < width) return "truncated fixed-width value";
      *offset += width;
      break;
    }
    case 2: {
      uint64_t length = 0;
      if (!read_varint(data, offset, &length)) return "truncated length";
      field->payload = *offset;
      if (length > data.size() - *offset)
        return "a length-delimited field runs past the end of the file (truncated?)";
      *offset += static_cast<size_t>(length);
      break;
    }
    default:
      return "unsupported wire type";
  }
  field->end = *offset;
  return nullptr;
}

// Checks that `data` is a sequence of well-framed fields; reports the first bad one.
const char* check_framing(std::string_view data, size_t* bad_offset) {
  if (data.empty()) {
    *bad_offset = 0;
    return "the file is empty";
  }
  size_t offset = 0;
  WireField field;
  while (offset < data.size()) {
    if (const char* problem = read_field(data, &offset, &field)) {
      *bad_offset = field.begin;
      return problem;
    }
  }
  return nullptr;
}

// Returns the model with its NormalizerSpec set to keep text as is (remove_extra_whitespaces
// false) and without SentencePiece's own dummy prefix, which encode() adds instead;
// *add_dummy_prefix receives the model's own setting (default true). Protobuf keeps the last
// value of a repeated scalar field, so appending the two fields overrides earlier ones.
std::string adjust_normalizer(std::string_view data, bool* add_dummy_prefix) {
  *add_dummy_prefix = true;
  std::string out;
  out.reserve(data.size() + 8);
  std::string overrides;
  append_varint(kNormalizerAddDummyPrefix << 3, &overrides);
  overrides.push_back('\0');
  append_varint(kNormalizerRemoveExtraSpace << 3, &overrides);
  overrides.push_back('\0');
  auto append_spec = [&](std::string_view spec) {
    append_varint((kModelNormalizerSpec << 3) | 2, &out);
    append_varint(spec.size() + overrides.size(), &out);
    out.append(spec);
    out += overrides;
  };
  bool found = false;
  size_t offset = 0;
  WireField field;
  while (offset < data.size() && read_field(data, &offset, &field) == nullptr) {
    if (field.number != kModelNormalizerSpec || field.wire_type != 2 || found) {
      out.append(data.substr(field.begin, field.end - field.begin));
      continue;
    }
    found = true;
    const std::string_view spec = data.substr(field.payload, field.end - field.payload);
    size_t inner = 0;
    WireField setting;
    while (inner < spec.size() && read_field(spec, &inner, &setting) == nullptr) {
      if (setting.number == kNormalizerAddDummyPrefix && setting.wire_type == 0) {
        *add_dummy_prefix = setting.varint != 0;
      }
    }
    append_spec(spec);
  }
  if (!found) append_spec({});
  return out;
}

// ---------------------------------------------------------------------------------------------
// The tokenizer
// ---------------------------------------------------------------------------------------------

std::string spaces_for_markers(const std::string& piece) {
  std::string out;
  out.reserve(piece.size());
  for (size_t i = 0; i < piece.size();) {
    if (piece.compare(i, kSpaceMarker.size(), kSpaceMarker) == 0) {
      out.push_back(' ');
      i += kSpaceMarker.size();
    } else {
      out.push_back(piece[i++]);
    }
  }
  return out;
}

class SentencePieceTokenizer final : public Tokenizer {
 public:
  SentencePieceTokenizer(std::unique_ptr<SentencePieceProcessor> processor, bool add_dummy_prefix)
      : processor_(std::move(processor)), add_dummy_prefix_(add_dummy_prefix) {
    const int n = processor_->GetPieceSize();
    pieces_.resize(n);
    decoded_.resize(n);
    is_byte_.assign(n, false);
    for (int id = 0; id < n; ++id) {
      pieces_[id] = spaces_for_markers(processor_->IdToPiece(id));
      uint8_t byte = 0;
      if (processor_->IsByte(id) && parse_byte_piece(pieces_[id], &byte)) {
        is_byte_[id] = true;
        decoded_[id] = std::string(1, static_cast<char>(byte));
      } else if (!processor_->IsControl(id) && !processor_->IsUnknown(id)) {
        decoded_[id] = pieces_[id];
      }
    }
    // With byte pieces for all three bytes of "▁", a literal "▁" in the text can be encoded as
    // bytes instead of turning into a space.
    has_marker_bytes_ = true;
    for (char c : kSpaceMarker) {
      char name[8];
      std::snprintf(name, sizeof(name), "<0x%02X>", static_cast<unsigned char>(c));
      const int id = processor_->PieceToId(name);
      if (id < 0 || id >= n || !is_byte_[id]) has_marker_bytes_ = false;
      marker_ids_.push_back(id);
    }
  }

  std::vector<TokenId> encode(std::string_view text, bool add_bos, bool add_eos) const override {
    require_valid_utf8(text);
    std::vector<TokenId> ids;
    if (add_bos && bos_id() >= 0) ids.push_back(bos_id());
    if (!text.empty()) encode_text(text, &ids);
    if (add_eos && eos_id() >= 0) ids.push_back(eos_id());
    return ids;
  }

  std::string decode_piece(TokenId prev, TokenId token) const override {
    check_id(token);
    const std::string& text = decoded_[token];
    if (prev == bos_id() && add_dummy_prefix_ && !is_byte_[token] && !text.empty() &&
        text[0] == ' ') {
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
    return processor_->GetScore(token);
  }

  int32_t vocab_size() const override { return static_cast<int32_t>(pieces_.size()); }
  TokenId bos_id() const override { return processor_->bos_id(); }
  TokenId eos_id() const override { return processor_->eos_id(); }
  std::string kind() const override { return "sentencepiece"; }

 private:
  // Encodes the text after the dummy prefix. Literal "▁" characters split the text into
  // segments encoded on their own, with the marker's three byte pieces between them, exactly
  // as a vocabulary spelled with ' ' (llama2.c's) treats a character it lacks.
  void encode_text(std::string_view text, std::vector<TokenId>* ids) const {
    bool first = true;
    size_t start = 0;
    while (true) {
      const size_t marker =
          has_marker_bytes_ ? text.find(kSpaceMarker, start) : std::string_view::npos;
      const std::string_view segment =
          text.substr(start, marker == std::string_view::npos ? marker : marker - start);
      std::string input = first && add_dummy_prefix_ ? " " : "";
      input.append(segment);
      first = false;
      if (!input.empty()) {
        std::vector<int> out;
        const auto status = processor_->Encode(input, &out);
        if (!status.ok()) {
          throw Error(ErrorCode::kInternal,
                      std::string("SentencePiece failed to encode the text: ") + status.ToString());
        }
        ids->insert(ids->end(), out.begin(), out.end());
      }
      if (marker == std::string_view::npos) break;
      ids->insert(ids->end(), marker_ids_.begin(), marker_ids_.end());
      start = marker + kSpaceMarker.size();
    }
  }

  void check_id(TokenId token) const {
    if (token < 0 || token >= vocab_size()) {
      throw Error(ErrorCode::kInvalidArgument,
                  "token id " + std::to_string(token) + " is out of range for the " +
                      "SentencePiece vocabulary of " + std::to_string(vocab_size()) + " pieces",
                  "use ids produced by the same tokenizer (and a model of the same vocabulary)");
    }
  }

  std::unique_ptr<SentencePieceProcessor> processor_;
  bool add_dummy_prefix_;
  bool has_marker_bytes_ = false;
  std::vector<TokenId> marker_ids_;   // byte pieces of "▁"
  std::vector<std::string> pieces_;   // pieces with "▁" shown as ' '
  std::vector<std::string> decoded_;  // the text each token contributes
  std::vector<bool> is_byte_;
};

}  // namespace

bool looks_like_protobuf_model(std::string_view data) {
  size_t bad_offset = 0;
  return !data.empty() && data[0] == '\x0A' && check_framing(data, &bad_offset) == nullptr;
}

std::unique_ptr<Tokenizer> make_sentencepiece_tokenizer(const std::string& path,
                                                        std::string_view data) {
  const char* hint =
      "the file may be truncated or not a SentencePiece model; llama2.c tokenizer.bin files "
      "load with load_llama2c_tokenizer (or load_tokenizer, which detects the format)";
  size_t bad_offset = 0;
  if (const char* problem = check_framing(data, &bad_offset)) {
    throw Error(ErrorCode::kInvalidArgument,
                "malformed SentencePiece model " + path + " at byte offset " +
                    std::to_string(bad_offset) + ": " + problem +
                    "; not a well-formed protobuf message",
                hint);
  }
  bool add_dummy_prefix = true;
  const std::string adjusted = adjust_normalizer(data, &add_dummy_prefix);
  auto processor = std::make_unique<SentencePieceProcessor>();
  const auto status = processor->LoadFromSerializedProto(adjusted);
  if (!status.ok()) {
    throw Error(ErrorCode::kInvalidArgument,
                "cannot load SentencePiece model " + path + ": " + status.ToString(), hint);
  }
  if (processor->GetPieceSize() <= 0) {
    throw Error(ErrorCode::kInvalidArgument, "SentencePiece model " + path + " has no pieces",
                hint);
  }
  return std::make_unique<SentencePieceTokenizer>(std::move(processor), add_dummy_prefix);
}

}  // namespace tokenizers

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& path) {
  const std::string data = tokenizers::read_tokenizer_file(path, "SentencePiece model");
  return tokenizers::make_sentencepiece_tokenizer(path, data);
}

}  // namespace candor
