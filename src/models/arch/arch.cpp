// The architecture registry and the config readers the architectures share (arch.h).
#include "models/arch/arch.h"

#include <map>

#include "candor/encoder.h"
#include "models/formats/gguf.h"
#include "models/llama.h"

namespace candor {

const std::vector<const Architecture*>& architectures() {
  static const std::vector<const Architecture*> all = {
      &llama_architecture(),     &mistral_architecture(), &qwen2_architecture(),
      &gpt2_architecture(),      &bert_architecture(),    &roberta_architecture(),
      &distilbert_architecture()};
  return all;
}

const Architecture* find_architecture(const std::string& family) {
  for (const Architecture* a : architectures())
    if (a->family == family) return a;
  return nullptr;
}

Architecture hf_architecture(const std::string& family, const std::string& hf_class, ModelKind kind,
                             const TensorTable* tensors,
                             ArchConfig (*from_hf)(const HfConfig&, const TensorSource&),
                             void (*to_hf)(const Model&, nlohmann::ordered_json*)) {
  Architecture a;
  a.family = family;
  a.hf_classes = {hf_class};
  a.by_model_type = kind == ModelKind::kCausalLM;  // transformers' decoders may omit the class
  a.kind = kind;
  a.tensors = tensors;
  a.from_hf = from_hf;
  a.to_hf = to_hf;
  return a;
}

// ---- config.json ----------------------------------------------------------------------------

Error HfConfig::bad(const std::string& field, const std::string& problem) const {
  return Error(ErrorCode::kInvalidArgument, path + ": field '" + field + "' " + problem,
               "the config.json is malformed");
}

Error HfConfig::unsupported(const std::string& what) const {
  return Error(ErrorCode::kUnsupported, path + ": " + what,
               "see docs/model-formats.md for the architectures and settings candor reads");
}

int64_t HfConfig::integer(const std::string& k) const {
  if (!has(k)) throw bad(k, "is missing");
  if (!j[k].is_number_integer()) throw bad(k, "is not an integer: " + j[k].dump());
  return j[k].get<int64_t>();
}

double HfConfig::number(const std::string& k, double dflt) const {
  if (!has(k)) return dflt;
  if (!j[k].is_number()) throw bad(k, "is not a number: " + j[k].dump());
  return j[k].get<double>();
}

bool HfConfig::boolean(const std::string& k, bool dflt) const {
  if (!has(k)) return dflt;
  if (!j[k].is_boolean()) throw bad(k, "is not true/false: " + j[k].dump());
  return j[k].get<bool>();
}

std::string HfConfig::string(const std::string& k, const std::string& dflt) const {
  if (!has(k)) return dflt;
  if (!j[k].is_string()) throw bad(k, "is not a string: " + j[k].dump());
  return j[k].get<std::string>();
}

Activation hf_activation(const HfConfig& c, const std::string& key, const std::string& dflt) {
  const std::string a = c.string(key, dflt);
  if (a == "gelu_new" || a == "gelu_pytorch_tanh" || a == "gelu_fast") return Activation::kGeluTanh;
  if (a == "gelu") return Activation::kGelu;
  if (a == "relu") return Activation::kRelu;
  throw c.unsupported(key + " '" + a + "' (candor implements gelu, gelu_new and relu)");
}

std::string hf_activation_name(Activation a) {
  // by Activation: kSwiGLU, kGeluTanh, kGelu, kRelu
  static const char* const kNames[] = {"silu", "gelu_new", "gelu", "relu"};
  return kNames[static_cast<int>(a)];
}

// ---- encoders -------------------------------------------------------------------------------

namespace {

std::vector<std::string> labels_of(const HfConfig& c) {
  int64_t n = c.integer("num_labels", 0);
  std::map<int64_t, std::string> by_id;
  if (c.has("id2label")) {
    if (!c.j["id2label"].is_object()) throw c.bad("id2label", "is not an object");
    for (auto it = c.j["id2label"].begin(); it != c.j["id2label"].end(); ++it) {
      int64_t id = -1;
      try {
        id = std::stoll(it.key());
      } catch (...) {
      }
      if (id < 0 || id > 100000 || !it.value().is_string())
        throw c.bad("id2label", "has an invalid entry '" + it.key() + "'");
      by_id[id] = it.value().get<std::string>();
    }
    n = std::max<int64_t>(n, by_id.empty() ? 0 : by_id.rbegin()->first + 1);
  }
  if (n == 0) n = 2;  // the transformers default
  std::vector<std::string> labels;
  for (int64_t i = 0; i < n; ++i)
    labels.push_back(by_id.count(i) ? by_id[i] : "LABEL_" + std::to_string(i));
  return labels;
}

}  // namespace

ArchConfig encoder_from_hf_begin(const HfConfig& c, const std::string& family) {
  ArchConfig a;
  ModelConfig& m = a.model;
  m.architecture = family;
  m.kind = ModelKind::kClassifier;
  m.norm = NormKind::kLayerNorm;
  m.positions = PositionKind::kLearned;
  m.attention_bias = true;
  a.qkv_bias = a.o_bias = true;
  m.labels = labels_of(c);
  return a;
}

void encoder_from_hf_end(const HfConfig& c, ArchConfig* a) {
  ModelConfig& m = a->model;
  m.n_kv_heads = m.n_heads;
  m.vocab_size = c.integer("vocab_size");
  const int64_t n_pos = c.integer("max_position_embeddings", 512);
  m.max_seq_len = n_pos - a->encoder.position_offset;
  validate_llama_config(m, c.path);
}

EncoderSettings encoder_settings(const Model& model) {
  const auto* enc = dynamic_cast<const EncoderClassifier*>(&model);
  return enc ? enc->settings() : EncoderSettings{};
}

void encoder_to_hf_end(const Model& model, nlohmann::ordered_json* j) {
  const ModelConfig& m = model.config();
  (*j)["vocab_size"] = m.vocab_size;
  (*j)["max_position_embeddings"] = m.max_seq_len + encoder_settings(model).position_offset;
  nlohmann::ordered_json id2label, label2id;
  for (size_t i = 0; i < m.labels.size(); ++i) {
    id2label[std::to_string(i)] = m.labels[i];
    label2id[m.labels[i]] = i;
  }
  (*j)["id2label"] = id2label;
  (*j)["label2id"] = label2id;
}

void read_hf_keys(const HfConfig& c, const HfKeys& keys, ModelConfig* m) {
  for (const HfKey& k : keys) {
    const bool fall_back = k.fallback && !c.has(k.key);
    if (k.size) {
      m->*k.size = fall_back ? static_cast<int64_t>(k.fallback(*m)) : c.integer(k.key);
    } else {
      m->*k.real = static_cast<float>(fall_back ? k.fallback(*m) : c.number(k.key, 0.0));
    }
  }
}

void write_hf_keys(const ModelConfig& m, const HfKeys& keys, nlohmann::ordered_json* j) {
  for (const HfKey& k : keys) {
    if (k.size) {
      (*j)[k.key] = m.*k.size;
    } else {
      (*j)[k.key] = m.*k.real;
    }
  }
}

// ---- GGUF metadata --------------------------------------------------------------------------

int64_t gguf_int(const GgufFile& g, const std::string& key) {
  const auto& v = g.meta(key);
  if (!v.is_number_integer()) {
    throw Error(ErrorCode::kInvalidArgument,
                "GGUF file '" + g.where() + "': metadata '" + key + "' is not an integer");
  }
  return v.get<int64_t>();
}

int64_t gguf_int(const GgufFile& g, const std::string& key, int64_t dflt) {
  return g.has_meta(key) ? gguf_int(g, key) : dflt;
}

double gguf_num(const GgufFile& g, const std::string& key, double dflt) {
  if (!g.has_meta(key)) return dflt;
  const auto& v = g.meta(key);
  if (!v.is_number()) {
    throw Error(ErrorCode::kInvalidArgument,
                "GGUF file '" + g.where() + "': metadata '" + key + "' is not a number");
  }
  return v.get<double>();
}

ModelConfig gguf_hyperparameters(const GgufFile& g, const std::string& arch) {
  const std::string p = arch + ".";
  ModelConfig m;
  m.architecture = arch;
  m.dim = gguf_int(g, p + "embedding_length");
  m.n_layers = gguf_int(g, p + "block_count");
  m.hidden_dim = gguf_int(g, p + "feed_forward_length");
  m.n_heads = gguf_int(g, p + "attention.head_count");
  m.n_kv_heads = gguf_int(g, p + "attention.head_count_kv", m.n_heads);
  m.max_seq_len = gguf_int(g, p + "context_length");
  m.vocab_size = g.has("token_embd.weight") ? g.shape("token_embd.weight")[0] : 0;
  return m;
}

}  // namespace candor
