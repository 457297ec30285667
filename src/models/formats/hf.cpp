// Hugging Face folders: config.json -> ModelConfig, safetensors tensors -> runtime weights, and
// the reverse for `candor convert`. The architectures' config mappings and tensor names are in
// src/models/arch/.
#include "models/formats/hf.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>

#include "candor/error.h"
#include "candor/files.h"
#include "candor/tokenizer.h"
#include "models/arch/arch.h"
#include "models/formats/safetensors.h"

namespace candor {
namespace fs = std::filesystem;
namespace {

using json = nlohmann::json;

// "a, b and c"
std::string and_list(const std::vector<std::string>& xs) {
  std::string s;
  for (size_t i = 0; i < xs.size(); ++i)
    s += (i == 0 ? "" : i + 1 == xs.size() ? " and " : ", ") + xs[i];
  return s;
}

// The architecture config.json names: architectures[0], or without it model_type.
const Architecture& architecture_of(const HfConfig& c) {
  std::string cls;
  if (c.has("architectures") && c.j["architectures"].is_array() && !c.j["architectures"].empty() &&
      c.j["architectures"][0].is_string())
    cls = c.j["architectures"][0].get<std::string>();
  const std::string type = c.string("model_type", "");
  std::vector<std::string> known;
  for (const Architecture* a : architectures()) {
    for (const std::string& k : a->hf_classes) {
      if (cls == k) return *a;
      known.push_back(k);
    }
    if (cls.empty() && a->by_model_type && type == a->family) return *a;
  }
  throw c.unsupported("unsupported architecture '" + (cls.empty() ? type : cls) +
                      "' (candor reads " + and_list(known) + ")");
}

json read_json(const fs::path& path) {
  std::ifstream f(path);
  if (!f) throw Error(ErrorCode::kNotFound, "cannot open '" + path.string() + "'");
  try {
    json j = json::parse(f);
    if (!j.is_object())
      throw Error(ErrorCode::kInvalidArgument, path.string() + " is not a JSON object");
    return j;
  } catch (const json::exception& e) {
    throw Error(ErrorCode::kInvalidArgument, path.string() + " is not valid JSON: " + e.what(),
                "the file is corrupt");
  }
}

}  // namespace

bool looks_like_hf_model(const std::string& path) {
  std::error_code ec;
  fs::path p(path);
  if (fs::is_directory(p, ec)) return fs::exists(p / "config.json", ec);
  const std::string n = p.filename().string();
  auto ends = [&](const std::string& s) {
    return n.size() >= s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0;
  };
  return ends(".safetensors") || ends(".safetensors.index.json");
}

std::unique_ptr<Model> build_hf_model(const json& config, const std::string& config_path,
                                      const TensorSource& tensors,
                                      std::shared_ptr<Tokenizer> tokenizer,
                                      const ModelConfig& provenance) {
  HfConfig c{config, config_path};
  const Architecture& arch = architecture_of(c);
  ArchConfig a = arch.from_hf(c, tensors);
  a.model.source_format = provenance.source_format;
  a.model.dtype = provenance.dtype;
  a.model.compute_dtype = provenance.compute_dtype;
  a.model.tokenizer_files = provenance.tokenizer_files;
  return build_from_table(arch, a, tensors, TensorFormat::kHf, std::move(tokenizer));
}

std::unique_ptr<Model> load_hf_model(const std::string& path, const LoadOptions& options) {
  std::error_code ec;
  const fs::path p(path);
  const fs::path folder =
      fs::is_directory(p, ec) ? p : (p.parent_path().empty() ? fs::path(".") : p.parent_path());
  const fs::path config_path = folder / "config.json";
  if (!fs::exists(config_path, ec)) {
    throw Error(ErrorCode::kNotFound, "no config.json beside '" + path + "'",
                "a safetensors checkpoint needs the config.json of its Hugging Face folder");
  }
  json config = read_json(config_path);
  std::unique_ptr<SafetensorsArchive> tensors = SafetensorsArchive::open(path);
  // The vocabulary size is needed before the model is built to check the tokenizer.
  int64_t vocab = 0;
  if (config.contains("vocab_size") && config["vocab_size"].is_number_integer())
    vocab = config["vocab_size"].get<int64_t>();
  ModelConfig provenance;
  provenance.source_format = "safetensors";
  provenance.dtype = tensors->dtype_summary();
  provenance.compute_dtype = options.compute_dtype;
  std::shared_ptr<Tokenizer> tok = load_folder_tokenizer(
      folder.string(), vocab, options.tokenizer_path, &provenance.tokenizer_files);
  return build_hf_model(config, config_path.string(), *tensors, tok, provenance);
}

// ---- writing --------------------------------------------------------------------------------

namespace {

// The architecture `model` is written as: its own, or for a family candor does not write under
// its name the runtime's default (llama for decoders, bert for encoders).
const Architecture& writer_architecture(const Model& model) {
  const ModelConfig& m = model.config();
  if (const Architecture* a = find_architecture(m.architecture)) return *a;
  return m.kind == ModelKind::kClassifier ? bert_architecture() : llama_architecture();
}

}  // namespace

std::vector<std::pair<std::string, at::Tensor>> hf_tensors(const Model& model) {
  return tensors_from_table(writer_architecture(model), model, TensorFormat::kHf);
}

nlohmann::ordered_json hf_config_json(const Model& model) {
  const ModelConfig& m = model.config();
  nlohmann::ordered_json j;
  writer_architecture(model).to_hf(model, &j);
  if (m.kind == ModelKind::kCausalLM) {
    try {
      j["bos_token_id"] = model.tokenizer().bos_id();
      j["eos_token_id"] = model.tokenizer().eos_id();
    } catch (const Error&) {
    }
  }
  j["torch_dtype"] = "float32";
  return j;
}

void save_hf_folder(const Model& model, const std::string& dir, const std::string& dtype) {
  at::ScalarType type;
  if (dtype == "f32") {
    type = at::kFloat;
  } else if (dtype == "f16") {
    type = at::kHalf;
  } else if (dtype == "bf16") {
    type = at::kBFloat16;
  } else {
    throw Error(ErrorCode::kInvalidArgument,
                "unknown dtype '" + dtype + "' for a safetensors folder", "use f32, f16 or bf16");
  }
  nlohmann::ordered_json config = hf_config_json(model);
  std::vector<std::pair<std::string, at::Tensor>> tensors = hf_tensors(model);
  for (auto& [n, t] : tensors) t = t.to(type).contiguous();
  config["torch_dtype"] = dtype == "f32" ? "float32" : dtype == "f16" ? "float16" : "bfloat16";
  prepare_output_dir(dir);
  std::error_code ec;
  write_file_atomic((fs::path(dir) / "config.json").string(), config.dump(2) + "\n");
  write_safetensors((fs::path(dir) / "model.safetensors").string(), tensors, {{"format", "pt"}});
  std::string tokenizer_kind;
  try {
    tokenizer_kind = model.tokenizer().kind();
  } catch (const Error&) {  // a model without a tokenizer: nothing to write
  }
  auto write_text = [&](const char* name, const std::string& text) {
    write_file_atomic((fs::path(dir) / name).string(), text);
  };
  if (tokenizer_kind == "llama2c") {
    // Hugging Face tools read no llama2.c tokenizer.bin (whether the vocabulary came from one
    // or from GGUF metadata): the vocabulary is written as tokenizer.json, which candor reads
    // back to the same ids.
    HfTokenizerFiles files = scored_tokenizer_to_hf(model.tokenizer());
    write_text("tokenizer.json", files.tokenizer_json);
    write_text("tokenizer_config.json", files.tokenizer_config_json);
    return;
  }
  for (const std::string& file : model.config().tokenizer_files) {
    fs::path src(file);
    fs::path dst = fs::path(dir) / src.filename();
    // A SentencePiece model goes by the name the Hugging Face tools look for.
    if (tokenizer_kind == "sentencepiece" && src.extension() == ".model")
      dst = fs::path(dir) / "tokenizer.model";
    if (fs::exists(dst, ec) && fs::equivalent(src, dst, ec)) continue;
    fs::copy_file(src, dst, fs::copy_options::overwrite_existing, ec);
    if (ec) {
      throw Error(ErrorCode::kNotFound,
                  "cannot copy tokenizer '" + file + "' to '" + dir + "': " + ec.message());
    }
  }
}

}  // namespace candor
