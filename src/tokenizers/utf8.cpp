// UTF-8 validation of tokenizer input (candor/utf8.h): an error naming the offset, the problem
// and the bytes of the first bad sequence.
#include <cstdio>
#include <string>

#include "candor/error.h"
#include "candor/tokenizer.h"
#include "candor/utf8.h"
#include "tokenizers/tokenizer_internal.h"

namespace candor {
namespace tokenizers {

void require_valid_utf8(std::string_view text) {
  size_t offset = 0;
  const char* problem = utf8::problem(text, &offset);
  if (problem == nullptr) return;
  std::string bytes;
  for (size_t k = offset; k < text.size() && k < offset + 4; ++k) {
    char hex[8];
    std::snprintf(hex, sizeof(hex), "%s0x%02X", bytes.empty() ? "" : " ",
                  static_cast<unsigned char>(text[k]));
    bytes += hex;
  }
  throw Error(ErrorCode::kInvalidArgument,
              "text is not valid UTF-8 at byte offset " + std::to_string(offset) + ": " + problem +
                  " (bytes " + bytes + ")",
              "pass UTF-8 text; convert other encodings (e.g. Latin-1) to UTF-8 first");
}

}  // namespace tokenizers

bool is_valid_utf8(std::string_view text, size_t* bad_offset) {
  return utf8::problem(text, bad_offset) == nullptr;
}

}  // namespace candor
