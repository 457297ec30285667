// Hugging Face model folders: config.json + safetensors weights (+ tokenizer files), read into
// the decoder (llama, mistral, qwen2, gpt2) or encoder-classifier (bert, roberta, distilbert)
// runtimes, and written back by `candor convert`. Internal header.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <string>

#include "candor/error.h"
#include "candor/model.h"
#include "models/formats/tensor_source.h"

namespace candor {

// True when `path` is a folder holding config.json, or a .safetensors file / index.
bool looks_like_hf_model(const std::string& path);

// Loads a Hugging Face folder (or a .safetensors file or index beside its config.json).
// Throws Error(kNotFound) for missing files, Error(kInvalidArgument) for malformed ones,
// Error(kUnsupported) for architectures or settings candor does not implement (the message
// names config.json and the field).
std::unique_ptr<Model> load_hf_model(const std::string& path, const LoadOptions& options);

// Builds a model from a parsed config.json and the tensors it describes. `config_path` names
// config.json in messages; `tokenizer` may be null.
std::unique_ptr<Model> build_hf_model(const nlohmann::json& config, const std::string& config_path,
                                      const TensorSource& tensors,
                                      std::shared_ptr<Tokenizer> tokenizer);

// The tensors of `model` in Hugging Face naming and layout (as save_hf_folder writes them),
// and the config.json that describes them.
std::vector<std::pair<std::string, at::Tensor>> hf_tensors(const Model& model);
nlohmann::ordered_json hf_config_json(const Model& model);

// The one place where a model folder's tokenizer is chosen (see hf_tokenizer.cpp): an explicit
// LoadOptions::tokenizer_path, else the folder's tokenizer files. Never throws for a missing or
// not-yet-supported tokenizer: it returns a placeholder whose use throws an Error that says why.
// `files` receives the files the tokenizer was read from.
std::shared_ptr<Tokenizer> load_folder_tokenizer(const std::string& folder, int64_t vocab_size,
                                                 const LoadOptions& options,
                                                 std::vector<std::string>* files);

// A placeholder tokenizer for a model whose tokenizer cannot be read: kind() is "none",
// vocab_size() is `vocab`, every other use throws Error(code, reason, hint).
std::shared_ptr<Tokenizer> missing_tokenizer(int32_t vocab, ErrorCode code, std::string reason,
                                             std::string hint);

}  // namespace candor
