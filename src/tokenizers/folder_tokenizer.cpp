// The one place where a model folder's tokenizer is chosen (load_folder_tokenizer): Hugging Face
// tokenizer files through load_hf_tokenizer, llama2.c / SentencePiece files through
// load_tokenizer. A folder without a tokenizer loads with a placeholder tokenizer that explains
// itself when used.
#include <algorithm>
#include <filesystem>

#include "candor/error.h"
#include "candor/tokenizer.h"

namespace candor {
namespace fs = std::filesystem;
namespace {

// A tokenizer that is not there: every use throws Error(kUnsupported/kNotFound) with the reason.
// kind() answers "none" so `candor info` still describes the model.
class MissingTokenizer : public Tokenizer {
 public:
  MissingTokenizer(int32_t vocab, ErrorCode code, std::string reason, std::string hint)
      : vocab_(vocab), code_(code), reason_(std::move(reason)), hint_(std::move(hint)) {}
  std::vector<TokenId> encode(std::string_view, bool, bool) const override { fail(); }
  std::string decode_piece(TokenId, TokenId) const override { fail(); }
  std::string piece(TokenId) const override { fail(); }
  float score(TokenId) const override { fail(); }
  int32_t vocab_size() const override { return vocab_; }
  TokenId bos_id() const override { fail(); }
  TokenId eos_id() const override { fail(); }
  TokenId unk_id() const override { fail(); }
  std::string kind() const override { return "none"; }

 private:
  [[noreturn]] void fail() const { throw Error(code_, reason_, hint_); }
  int32_t vocab_;
  ErrorCode code_;
  std::string reason_, hint_;
};

}  // namespace

std::shared_ptr<Tokenizer> missing_tokenizer(int32_t vocab, ErrorCode code, std::string reason,
                                             std::string hint) {
  return std::make_shared<MissingTokenizer>(vocab, code, std::move(reason), std::move(hint));
}

std::shared_ptr<Tokenizer> load_folder_tokenizer(const std::string& folder, int64_t vocab_size,
                                                 const std::string& tokenizer_path,
                                                 std::vector<std::string>* files) {
  auto check = [&](std::shared_ptr<Tokenizer> tok, const std::string& path) {
    if (tok->vocab_size() > vocab_size) {
      throw Error(ErrorCode::kInvalidArgument,
                  "tokenizer '" + path + "' has " + std::to_string(tok->vocab_size()) +
                      " tokens but the model in '" + folder + "' has a vocabulary of " +
                      std::to_string(vocab_size),
                  "use the tokenizer the model was trained with");
    }
    if (files) files->push_back(path);
    return tok;
  };
  if (!tokenizer_path.empty()) return check(load_tokenizer(tokenizer_path), tokenizer_path);
  const fs::path dir(folder);
  std::error_code ec;
  auto exists = [&](const char* name) { return fs::exists(dir / name, ec); };
  // Hugging Face tokenizers (tokenizer.json, or the slow tokenizers' vocab files), with the
  // files convert copies beside the weights.
  auto hf = [&]() {
    auto tok = check(std::shared_ptr<Tokenizer>(load_hf_tokenizer(folder)), folder);
    if (files) {
      files->pop_back();  // `check` recorded the folder: record its tokenizer files instead
      for (const char* name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                               "vocab.json", "merges.txt", "vocab.txt"}) {
        if (exists(name)) files->push_back((dir / name).string());
      }
    }
    return tok;
  };
  if (exists("tokenizer.json")) return hf();
  // Formats of the llama2.c world, best first.
  for (const char* name : {"tokenizer.model", "tokenizer.bin"}) {
    if (exists(name)) return check(load_tokenizer((dir / name).string()), (dir / name).string());
  }
  std::vector<fs::path> toks;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (e.is_regular_file() && n.rfind("tok", 0) == 0 && e.path().extension() == ".bin")
      toks.push_back(e.path());
  }
  std::sort(toks.begin(), toks.end());
  if (!toks.empty()) return check(load_tokenizer(toks[0].string()), toks[0].string());
  if ((exists("vocab.json") && exists("merges.txt")) || exists("vocab.txt")) return hf();
  return missing_tokenizer(
      static_cast<int32_t>(vocab_size), ErrorCode::kNotFound,
      "model folder '" + folder +
          "' has no tokenizer (tokenizer.json, tokenizer.model, tokenizer.bin, vocab.json + "
          "merges.txt, vocab.txt)",
      "pass one with --tokenizer");
}

}  // namespace candor
