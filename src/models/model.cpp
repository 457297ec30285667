// Model loading (file or folder, tokenizer discovery), random models, and conveniences.
#include <ATen/ATen.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <cctype>

#include "candor/error.h"
#include "candor/model.h"
#include "models/compute_dtype.h"
#include "models/fused/fused_backward.h"
#include "models/formats/gguf.h"
#include "models/formats/hf.h"
#include "models/llama.h"

namespace candor {

std::unique_ptr<Model> Model::clone() const {
  throw Error(ErrorCode::kUnsupported,
              "this model (" + config().architecture + ") cannot be copied",
              "the Llama-family and encoder models can; wrap others before randomising them");
}

int64_t Model::n_params() const {
  int64_t n = 0;
  for (const auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

const Tokenizer& Model::require_tokenizer(const std::shared_ptr<Tokenizer>& tokenizer) {
  if (!tokenizer) throw Error(ErrorCode::kNotFound, "this model was built without a tokenizer");
  return *tokenizer;
}

void set_tape_budget(int64_t bytes) {
  if (bytes < 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "the tape budget must be >= 0 bytes, got " + std::to_string(bytes),
                "give a size such as 512M or 2G (0: always the lean tape)");
  }
  fused::set_tape_budget(bytes);
}

int64_t tape_budget() { return fused::tape_budget(); }

TapeBudgetScope::TapeBudgetScope(int64_t bytes) {
  if (bytes < 0) return;
  const int64_t before = tape_budget();
  set_tape_budget(bytes);
  previous_ = before;
}

TapeBudgetScope::~TapeBudgetScope() {
  if (previous_ >= 0) fused::set_tape_budget(previous_);
}

int64_t parse_byte_size(const std::string& text, const std::string& what) {
  auto bad = [&](const std::string& why) {
    return Error(ErrorCode::kInvalidArgument,
                 what + " takes a size in bytes, got '" + text + "'" + (why.empty() ? "" : ": " + why),
                 "give a whole number with an optional unit K, M or G (powers of 1024), e.g. "
                 "512M or 2G; 0 means always the lean tape");
  };
  size_t i = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
  if (i == 0) throw bad(text.empty() ? "it is empty" : "");
  std::string unit = text.substr(i);
  for (char& ch : unit) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  int shift = 0;
  if (unit.empty() || unit == "B") {
    shift = 0;
  } else if (unit == "K" || unit == "KB" || unit == "KIB") {
    shift = 10;
  } else if (unit == "M" || unit == "MB" || unit == "MIB") {
    shift = 20;
  } else if (unit == "G" || unit == "GB" || unit == "GIB") {
    shift = 30;
  } else if (unit == "T" || unit == "TB" || unit == "TIB") {
    shift = 40;
  } else {
    throw bad("unknown unit '" + text.substr(i) + "'");
  }
  const std::string digits = text.substr(0, i);
  if (digits.size() > 18) throw bad("too large");
  const int64_t n = std::stoll(digits);
  if (n > (std::numeric_limits<int64_t>::max() >> shift)) throw bad("too large");
  return n << shift;
}

namespace fs = std::filesystem;

at::Tensor Model::logits(const std::vector<TokenId>& ids) const {
  std::vector<int64_t> v(ids.begin(), ids.end());
  ForwardArgs args;
  args.tokens = at::tensor(v, at::kLong).unsqueeze(0);
  return forward(args).squeeze(0);
}

at::Tensor Model::forward_tokens(const at::Tensor& tokens, const at::Tensor& mask) const {
  ForwardArgs args;
  args.tokens = tokens;
  args.attention_mask = mask;
  return forward(args);
}

namespace {

bool is_tokenizer_name(const fs::path& p) {
  std::string name = p.filename().string();
  std::string ext = p.extension().string();
  if (ext == ".model") return true;
  return ext == ".bin" && (name.rfind("tok", 0) == 0);
}

// Tokenizer files beside a checkpoint, best first: tokenizer.bin, tok*.bin, *.model.
std::vector<fs::path> tokenizer_candidates(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_regular_file() && is_tokenizer_name(e.path())) out.push_back(e.path());
  }
  auto rank = [](const fs::path& p) {
    if (p.filename() == "tokenizer.bin") return 0;
    if (p.extension() == ".bin") return 1;
    return 2;
  };
  std::sort(out.begin(), out.end(), [&](const fs::path& a, const fs::path& b) {
    return std::make_pair(rank(a), a.string()) < std::make_pair(rank(b), b.string());
  });
  return out;
}

std::shared_ptr<Tokenizer> find_tokenizer(const fs::path& checkpoint, const ModelConfig& config,
                                          const std::string& explicit_path, std::string* found) {
  auto mismatch = [&](const std::string& path, int32_t n) {
    return Error(ErrorCode::kInvalidArgument,
                 "tokenizer '" + path + "' has " + std::to_string(n) + " pieces but model '" +
                     checkpoint.string() + "' has a vocabulary of " +
                     std::to_string(config.vocab_size),
                 "use the tokenizer the model was trained with");
  };
  if (!explicit_path.empty()) {
    std::shared_ptr<Tokenizer> tok = load_tokenizer(explicit_path);
    if (tok->vocab_size() != config.vocab_size) throw mismatch(explicit_path, tok->vocab_size());
    *found = explicit_path;
    return tok;
  }
  std::vector<fs::path> candidates = tokenizer_candidates(
      checkpoint.parent_path().empty() ? fs::path(".") : checkpoint.parent_path());
  if (candidates.empty()) {
    throw Error(ErrorCode::kNotFound,
                "no tokenizer (tokenizer.bin, tok*.bin or *.model) beside checkpoint '" +
                    checkpoint.string() + "'",
                "put the tokenizer in the checkpoint's folder or pass --tokenizer");
  }
  std::string first_error;
  for (const auto& p : candidates) {
    try {
      std::shared_ptr<Tokenizer> tok = load_tokenizer(p.string());
      if (tok->vocab_size() == config.vocab_size) {
        *found = p.string();
        return tok;
      }
      if (first_error.empty()) first_error = mismatch(p.string(), tok->vocab_size()).what();
    } catch (const Error& e) {
      if (first_error.empty()) first_error = e.what();
    }
  }
  throw Error(ErrorCode::kInvalidArgument,
              "no tokenizer beside '" + checkpoint.string() + "' matches the model: " + first_error,
              "use the tokenizer the model was trained with (--tokenizer PATH)");
}

// fastText's .bin / .ftz files start with this int32 (candor_classify reads them).
bool starts_with_fasttext_magic(const fs::path& path) {
  constexpr int32_t kFastTextMagic = 793712314;
  std::ifstream in(path, std::ios::binary);
  int32_t magic = 0;
  return in && in.read(reinterpret_cast<char*>(&magic), sizeof(magic)) && magic == kFastTextMagic;
}

fs::path find_checkpoint(const fs::path& dir) {
  std::vector<fs::path> bins;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_regular_file() && e.path().extension() == ".bin" && !is_tokenizer_name(e.path())) {
      bins.push_back(e.path());
    }
  }
  std::sort(bins.begin(), bins.end());
  for (const auto& p : bins) {
    if (looks_like_llama2c_checkpoint(p.string())) return p;
  }
  if (bins.size() == 1) return bins[0];  // let the reader say what is wrong with it
  throw Error(ErrorCode::kNotFound,
              "no model checkpoint found in folder '" + dir.string() + "'" +
                  (bins.empty() ? ""
                                : " (" + std::to_string(bins.size()) +
                                      " .bin files, none a valid llama2.c checkpoint)"),
              "--model takes a llama2.c .bin checkpoint or a folder holding one");
}

// For a file that is no llama2.c checkpoint: an error that says what the file looks like (a
// text file such as a CSV, JSON or a tokenizer) rather than what its first bytes decode to as a
// model header. Returns normally for a binary file (the reader reports it).
void reject_text_file(const fs::path& file) {
  std::ifstream f(file, std::ios::binary);
  std::string head(512, '\0');
  f.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(f.gcount()));
  if (head.empty()) {
    throw Error(ErrorCode::kInvalidArgument, "'" + file.string() + "' is empty, not a model",
                "--model takes a llama2.c .bin checkpoint, a Hugging Face folder, a .safetensors "
                "or a .gguf file");
  }
  size_t printable = 0;
  for (unsigned char c : head)
    printable += (c >= 0x20 && c != 0x7F) || c == '\n' || c == '\r' || c == '\t' ? 1 : 0;
  if (printable < head.size()) return;  // binary: the checkpoint reader says what is wrong
  std::string first = head.substr(0, head.find_first_of("\r\n"));
  if (first.size() > 60) first = first.substr(0, 57) + "...";
  const char c0 = head[head.find_first_not_of(" \t\r\n") == std::string::npos
                           ? 0
                           : head.find_first_not_of(" \t\r\n")];
  std::string kind = "a text file";
  if (c0 == '{' || c0 == '[') {
    kind = "a JSON file";
  } else if (first.find(',') != std::string::npos || first.find('\t') != std::string::npos) {
    kind = "a text file that looks like a CSV table";
  }
  throw Error(ErrorCode::kInvalidArgument,
              "'" + file.string() + "' is " + kind + " (it starts with '" + first +
                  "'), not a model checkpoint",
              "--model takes a llama2.c .bin checkpoint, a Hugging Face folder, a .safetensors "
              "or a .gguf file; a data table goes to --data");
}

// A folder (or a file of it) that holds a table model candor trained, which load_model does not
// run: an error that says what it is and which commands take it.
void reject_table_model(const fs::path& p) {
  std::error_code ec;
  const bool dir = fs::is_directory(p, ec);
  const fs::path folder = dir ? p : p.parent_path();
  struct Kind {
    const char* file;
    const char* what;
  };
  for (const Kind& k : {Kind{"mlp.json", "an MLP that candor train fitted on table columns"},
                        Kind{"student.json", "a glass-box student that candor distill fitted"}}) {
    const fs::path saved = folder / k.file;
    const bool named = p.filename() == k.file ||
                       (std::string(k.file) == "mlp.json" && p.filename() == "model.ckpt");
    if (!(dir || named) || !fs::is_regular_file(saved, ec)) continue;
    const std::string s = p.string();
    throw Error(ErrorCode::kUnsupported,
                "'" + s + "' is " + k.what + " (" + saved.string() +
                    "), a model over table rows, not a language model this command runs",
                "commands that take it: candor predict --model " + s +
                    " --data FILE --out FILE.csv (per-row classes and probabilities), candor info "
                    "--model " +
                    s + ", candor distill --teacher " + s +
                    " --data FILE (a glass-box explanation of it)");
  }
}

}  // namespace

std::unique_ptr<Model> load_model(const std::string& path, const LoadOptions& options) {
  std::error_code ec;
  fs::path p(path);
  if (path.empty() || !fs::exists(p, ec)) {
    throw Error(ErrorCode::kNotFound, "model path '" + path + "' does not exist",
                "--model takes a llama2.c .bin checkpoint, a Hugging Face folder, a .safetensors "
                "or a .gguf file");
  }
  // The compute dtype is checked before anything is read (f16 fails fast); the runtimes are
  // built in it (ModelConfig::compute_dtype).
  check_compute_dtype(parse_compute_dtype(options.compute_dtype));
  // The --out folder of `candor distill --student transformer` (report.json beside the student's
  // Hugging Face folder, OUT/model) stands for its student.
  if (fs::is_directory(p, ec) && !looks_like_hf_model(path) &&
      fs::is_regular_file(p / "report.json", ec) && looks_like_hf_model((p / "model").string()))
    return load_model((p / "model").string(), options);
  std::unique_ptr<Model> model;
  if (looks_like_hf_model(path)) {
    model = load_hf_model(path, options);
  } else if (p.extension() == ".gguf") {
    model = load_gguf_model(path, options);
  } else {
    reject_table_model(p);
    fs::path checkpoint = fs::is_directory(p, ec) ? find_checkpoint(p) : p;
    if (starts_with_fasttext_magic(checkpoint))
      throw Error(ErrorCode::kUnsupported,
                  "'" + checkpoint.string() +
                      "' is a fastText classifier, not a transformer that load_model runs",
                  "fastText models load with load_fasttext: explain one with candor explain "
                  "--model " + checkpoint.string() + " --prompt TEXT, describe it with candor "
                  "info, distill it with candor distill --teacher");
    if (!looks_like_llama2c_checkpoint(checkpoint.string())) reject_text_file(checkpoint);
    auto [config, weights] = read_llama2c_checkpoint(checkpoint.string());
    std::string tok_path;
    std::shared_ptr<Tokenizer> tok =
        find_tokenizer(checkpoint, config, options.tokenizer_path, &tok_path);
    config.tokenizer_files = {tok_path};
    config.compute_dtype = options.compute_dtype;
    model = std::make_unique<LlamaModel>(config, std::move(weights), std::move(tok));
  }
  return model;
}

std::unique_ptr<Model> make_random_llama(const ModelConfig& config, uint64_t seed,
                                         std::shared_ptr<Tokenizer> tokenizer) {
  validate_llama_config(config, "random model");
  at::Generator gen = at::detail::createCPUGenerator(seed);
  auto randn = [&](std::vector<int64_t> shape) {
    return at::normal(0.0, 0.02, shape, gen, at::TensorOptions().dtype(at::kFloat));
  };
  const int64_t D = config.dim, F = config.hidden_dim, hd = config.head_dim();
  LlamaWeights w;
  w.tok_embeddings = randn({config.vocab_size, D});
  for (int64_t l = 0; l < config.n_layers; ++l) {
    LlamaLayerWeights lw;
    lw.attn_norm = at::ones({D});
    lw.wqkv = randn({(config.n_heads + 2 * config.n_kv_heads) * hd, D});
    lw.wo = randn({D, config.n_heads * hd});
    lw.ffn_norm = at::ones({D});
    lw.w13 = randn({2 * F, D});
    lw.w2 = randn({D, F});
    w.layers.push_back(std::move(lw));
  }
  w.final_norm = at::ones({D});
  w.output = config.tied_embeddings ? w.tok_embeddings : randn({config.vocab_size, D});
  ModelConfig c = config;
  if (c.source_format.empty()) c.source_format = "random";
  return std::make_unique<LlamaModel>(c, std::move(w), std::move(tokenizer));
}

}  // namespace candor
