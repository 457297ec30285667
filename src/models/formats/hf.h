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
// config.json in messages; `tokenizer` may be null. The provenance fields of `provenance`
// (source_format, dtype, compute_dtype, tokenizer_files) are the built model's.
std::unique_ptr<Model> build_hf_model(const nlohmann::json& config, const std::string& config_path,
                                      const TensorSource& tensors,
                                      std::shared_ptr<Tokenizer> tokenizer,
                                      const ModelConfig& provenance = {});

// The tensors of `model` in Hugging Face naming and layout (as save_hf_folder writes them),
// and the config.json that describes them.
std::vector<std::pair<std::string, at::Tensor>> hf_tensors(const Model& model);
nlohmann::ordered_json hf_config_json(const Model& model);

}  // namespace candor
