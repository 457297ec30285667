// The model architectures candor reads and writes, one file each under src/models/arch/
// (llama.cpp: Llama, Mistral, Qwen2; gpt2.cpp; bert.cpp; roberta.cpp; distilbert.cpp). Each holds
// the mapping of its Hugging Face config.json (and GGUF metadata, where llama.cpp has the
// architecture) to ModelConfig, and ONE table of tensor names that the HF reader and writer and
// the GGUF reader and writer all loop over. docs/HOWTO-add-model.md says how to add one.
// Internal header.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "candor/error.h"
#include "candor/model.h"
#include "candor/encoder.h"

namespace candor {

class TensorSource;
class GgufFile;
namespace fused {
struct QuantMatrix;
}
struct Architecture;

// A runtime weight, or a block of rows of a fused one (q/k/v of wqkv, gate/up of w13).
enum class Slot {
  // whole model
  kTokEmbd,        // [vocab, dim]
  kPosEmbd,        // [positions, dim]
  kTypeEmbd,       // [type_vocab, dim] (encoders)
  kEmbNorm,        // [dim] (encoders: LayerNorm of the embeddings)
  kEmbNormBias,    // [dim]
  kFinalNorm,      // [dim] (decoders)
  kFinalNormBias,  // [dim]
  kOutput,         // [vocab, dim] (decoders; absent when tied to the embeddings)
  kPoolW,          // [dim, dim] (encoders: pooler / pre-classifier)
  kPoolB,          // [dim]
  kClsW,           // [labels, dim]
  kClsB,           // [labels]
  // per layer
  kAttnNorm,      // [dim] (decoders: before attention; encoders: after attention + residual)
  kAttnNormBias,  // [dim]
  kQ,             // [heads * head_dim, dim]: rows of wqkv
  kK,             // [kv_heads * head_dim, dim]
  kV,             // [kv_heads * head_dim, dim]
  kQKV,           // [(heads + 2 * kv_heads) * head_dim, dim]: all of wqkv
  kQBias,         // [heads * head_dim]: rows of bqkv
  kKBias,
  kVBias,
  kQKVBias,
  kO,            // [dim, heads * head_dim]
  kOBias,        // [dim]
  kFfnNorm,      // [dim] (decoders: before the MLP; encoders: after it + residual)
  kFfnNormBias,  // [dim]
  kGate,         // [hidden, dim]: the first rows of w13 (SwiGLU)
  kUp,           // [hidden, dim]: the last rows of w13 (SwiGLU), else all of w13 (encoders: w1)
  kUpBias,       // [hidden]
  kDown,         // [dim, hidden]
  kDownBias,     // [dim]
};

// How a tensor is stored in Hugging Face files relative to candor's runtime layout.
enum class HfLayout {
  kSame,
  kRotateHalf,  // q/k rows (or biases) in the rotate-half rotary layout (candor: interleaved)
  kConv1D,      // GPT-2's Conv1D: stored transposed, [in, out]
};

// When an entry of a table is present.
enum class Presence {
  kAlways,
  kQkvBias,  // q/k/v biases (ArchConfig::qkv_bias)
  kOBias,    // output projection bias (ArchConfig::o_bias)
  kUntied,   // the output matrix when it is not tied to the embeddings
};

// One tensor of an architecture: its runtime slot and its names in each format. "{l}" stands
// for the layer index. "": the format does not store this tensor for the architecture.
struct TensorName {
  Slot slot;
  std::string hf;
  std::string gguf;
  HfLayout hf_layout = HfLayout::kSame;
  Presence presence = Presence::kAlways;
};
using TensorTable = std::vector<TensorName>;

// The formats the tables name tensors in.
enum class TensorFormat { kHf, kGguf };

// What a config mapping gives beyond ModelConfig.
struct ArchConfig {
  ModelConfig model;
  EncoderSettings encoder;  // encoders
  int64_t type_vocab = 0;   // encoders with token-type embeddings
  bool qkv_bias = false;    // q/k/v projections have biases
  bool o_bias = false;      // the output projection has a bias
};

// Typed access to config.json fields, with errors that name the file and the field.
struct HfConfig {
  const nlohmann::json& j;
  const std::string& path;

  Error bad(const std::string& field, const std::string& problem) const;
  Error unsupported(const std::string& what) const;
  bool has(const std::string& k) const { return j.contains(k) && !j[k].is_null(); }
  int64_t integer(const std::string& k) const;
  int64_t integer(const std::string& k, int64_t dflt) const { return has(k) ? integer(k) : dflt; }
  double number(const std::string& k, double dflt) const;
  bool boolean(const std::string& k, bool dflt) const;
  std::string string(const std::string& k, const std::string& dflt) const;
};

// One config.json key holding one ModelConfig field: from_hf reads it and to_hf writes it from
// the same row, so an architecture names each of its config keys once. A row without a fallback
// is required; the fallback gives the value of an absent (or null) key from the fields read
// before it (num_key_value_heads defaults to num_attention_heads).
using HfFallback = std::function<double(const ModelConfig&)>;
struct HfKey {
  const char* key;
  int64_t ModelConfig::*size = nullptr;  // an integer field, or
  float ModelConfig::*real = nullptr;    // a real one
  HfFallback fallback;
};
using HfKeys = std::vector<HfKey>;
inline HfFallback hf_default(double v) {
  return [v](const ModelConfig&) { return v; };
}
inline HfKey hf_size(const char* key, int64_t ModelConfig::*f, HfFallback fallback = {}) {
  return HfKey{key, f, nullptr, std::move(fallback)};
}
inline HfKey hf_real(const char* key, float ModelConfig::*f, HfFallback fallback) {
  return HfKey{key, nullptr, f, std::move(fallback)};
}
// Reads the rows in order into *m; writes them in order into *j.
void read_hf_keys(const HfConfig& c, const HfKeys& keys, ModelConfig* m);
void write_hf_keys(const ModelConfig& m, const HfKeys& keys, nlohmann::ordered_json* j);

// Typed GGUF metadata values, with errors that name the file and the key (models/formats/gguf.h).
int64_t gguf_int(const GgufFile& g, const std::string& key);
int64_t gguf_int(const GgufFile& g, const std::string& key, int64_t dflt);
double gguf_num(const GgufFile& g, const std::string& key, double dflt);

// The hyper-parameters every GGUF architecture `arch` stores as "<arch>.*" (sizes, heads,
// context length) and the vocabulary size from token_embd.weight.
ModelConfig gguf_hyperparameters(const GgufFile& g, const std::string& arch);

// The parts of the encoder config mappings the three encoders share (arch.cpp): begin sets the
// classifier layout and the labels (id2label / num_labels), end reads vocab_size and
// max_position_embeddings (less the position offset) and validates.
ArchConfig encoder_from_hf_begin(const HfConfig& c, const std::string& family);
void encoder_from_hf_end(const HfConfig& c, ArchConfig* a);
// BERT's tensors under `prefix` ("bert.", "roberta.") followed by the `head`'s (bert.cpp,
// shared with roberta.cpp).
TensorTable bert_tensors(const std::string& prefix, const TensorTable& head);
// BERT's config.json (hidden_size, ..., type_vocab_size), shared with RoBERTa, whose positions
// start after the padding id (`positions_after_padding`).
ArchConfig bert_from_hf(const HfConfig& c, const std::string& family, bool positions_after_padding);
void bert_to_hf(const Model& model, nlohmann::ordered_json* j);

// An architecture read from config.json only (no GGUF mapping).
Architecture hf_architecture(const std::string& family, const std::string& hf_class, ModelKind kind,
                             const TensorTable* tensors,
                             ArchConfig (*from_hf)(const HfConfig&, const TensorSource&),
                             void (*to_hf)(const Model&, nlohmann::ordered_json*));
// vocab_size, max_position_embeddings and id2label / label2id of an encoder's config.json.
void encoder_to_hf_end(const Model& model, nlohmann::ordered_json* j);
// The encoder settings of `model` (defaults when it is no EncoderClassifier).
EncoderSettings encoder_settings(const Model& model);

// Metadata key/values as a GGUF writer stores them: unsigned integers as U32, floats as F32,
// strings as STRING.
using GgufMetadata = std::vector<std::pair<std::string, nlohmann::json>>;

struct Architecture {
  std::string family;                   // ModelConfig::architecture
  std::vector<std::string> hf_classes;  // config.json "architectures" values
  bool by_model_type = false;  // a config.json without "architectures" names it in model_type
  std::string gguf_name;       // GGUF general.architecture ("" = not read from GGUF)
  ModelKind kind = ModelKind::kCausalLM;
  const TensorTable* tensors = nullptr;
  // HF names may lack this prefix (GPT-2 checkpoints saved without "transformer.").
  std::string hf_optional_prefix;

  // config.json -> config; `tensors` tells e.g. whether lm_head is stored.
  ArchConfig (*from_hf)(const HfConfig& c, const TensorSource& tensors) = nullptr;
  // The config.json fields that describe `model` (architectures, model_type, sizes, ...).
  void (*to_hf)(const Model& model, nlohmann::ordered_json* j) = nullptr;
  // GGUF metadata -> config (nullptr: not read from GGUF).
  ArchConfig (*from_gguf)(const GgufFile& g) = nullptr;
  // The hyper-parameter metadata of a GGUF file (nullptr: not written as GGUF); throws
  // Error(kUnsupported) for a model the format cannot describe.
  GgufMetadata (*to_gguf)(const ModelConfig& m) = nullptr;
};

// Every architecture, in the order config.json classes are listed in messages.
const std::vector<const Architecture*>& architectures();
// The architecture of `family` (ModelConfig::architecture), or nullptr.
const Architecture* find_architecture(const std::string& family);

// The registry's members (defined in the arch/*.cpp files).
const Architecture& llama_architecture();
const Architecture& mistral_architecture();
const Architecture& qwen2_architecture();
const Architecture& gpt2_architecture();
const Architecture& bert_architecture();
const Architecture& roberta_architecture();
const Architecture& distilbert_architecture();

// ---- the table walkers (tensor_table.cpp) ---------------------------------------------------

// Builds the model of `arch` from its tensors named in `format`; `config.model` carries the
// provenance fields (source_format, dtype, compute_dtype, tokenizer_files) too.
// `keep` (decoders only): offered each embedding, output and layer matrix as its parts (names
// and runtime shapes, in row order); when it fills the QuantMatrix and returns true, the matrix
// stays quantized (LlamaWeights::quant) instead of being read as float32.
using QuantKeeper = std::function<bool(
    const std::vector<std::pair<std::string, std::vector<int64_t>>>& parts, fused::QuantMatrix*)>;
std::unique_ptr<Model> build_from_table(const Architecture& arch, const ArchConfig& config,
                                        const TensorSource& tensors, TensorFormat format,
                                        std::shared_ptr<Tokenizer> tokenizer,
                                        const QuantKeeper& keep = {});

// The tensors of `model` named and laid out as `format` stores them, in table order.
// Throws Error(kUnsupported) for a model that is neither a decoder nor an encoder of candor's.
std::vector<std::pair<std::string, at::Tensor>> tensors_from_table(const Architecture& arch,
                                                                   const Model& model,
                                                                   TensorFormat format);

// "gelu_new" for the tanh GELU, "gelu", "relu": the config.json spelling of an activation.
std::string hf_activation_name(Activation a);
// config.json's activation field `key` (default `dflt`) -> Activation; Error(kUnsupported) for
// others.
Activation hf_activation(const HfConfig& c, const std::string& key, const std::string& dflt);

}  // namespace candor
