// The Llama family: Llama, Mistral (sliding-window attention) and Qwen2 (q/k/v biases, windows
// on some layers). RMSNorm, rotary positions (rotate-half layout in Hugging Face files,
// interleaved in GGUF and in candor), grouped-query attention, SwiGLU.
#include <ATen/ATen.h>

#include <algorithm>

#include "models/arch/arch.h"
#include "models/formats/gguf.h"
#include "models/formats/tensor_source.h"
#include "models/llama.h"

namespace candor {
namespace {

using json = nlohmann::json;

// One table for the three families; biases only where the config has them.
const TensorTable kTensors = {
    {Slot::kTokEmbd, "model.embed_tokens.weight", "token_embd.weight"},
    {Slot::kAttnNorm, "model.layers.{l}.input_layernorm.weight", "blk.{l}.attn_norm.weight"},
    {Slot::kQ, "model.layers.{l}.self_attn.q_proj.weight", "blk.{l}.attn_q.weight",
     HfLayout::kRotateHalf},
    {Slot::kK, "model.layers.{l}.self_attn.k_proj.weight", "blk.{l}.attn_k.weight",
     HfLayout::kRotateHalf},
    {Slot::kV, "model.layers.{l}.self_attn.v_proj.weight", "blk.{l}.attn_v.weight"},
    {Slot::kQBias, "model.layers.{l}.self_attn.q_proj.bias", "", HfLayout::kRotateHalf,
     Presence::kQkvBias},
    {Slot::kKBias, "model.layers.{l}.self_attn.k_proj.bias", "", HfLayout::kRotateHalf,
     Presence::kQkvBias},
    {Slot::kVBias, "model.layers.{l}.self_attn.v_proj.bias", "", HfLayout::kSame,
     Presence::kQkvBias},
    {Slot::kO, "model.layers.{l}.self_attn.o_proj.weight", "blk.{l}.attn_output.weight"},
    {Slot::kOBias, "model.layers.{l}.self_attn.o_proj.bias", "", HfLayout::kSame, Presence::kOBias},
    {Slot::kFfnNorm, "model.layers.{l}.post_attention_layernorm.weight", "blk.{l}.ffn_norm.weight"},
    {Slot::kGate, "model.layers.{l}.mlp.gate_proj.weight", "blk.{l}.ffn_gate.weight"},
    {Slot::kUp, "model.layers.{l}.mlp.up_proj.weight", "blk.{l}.ffn_up.weight"},
    {Slot::kDown, "model.layers.{l}.mlp.down_proj.weight", "blk.{l}.ffn_down.weight"},
    {Slot::kFinalNorm, "model.norm.weight", "output_norm.weight"},
    {Slot::kOutput, "lm_head.weight", "output.weight", HfLayout::kSame, Presence::kUntied},
};

// Sliding window of a config.json (null: full attention; absent: transformers' default, 4096).
int64_t hf_window(const HfConfig& c) {
  const int64_t w = c.j.contains("sliding_window") ? c.integer("sliding_window", 0) : 4096;
  if (w < 0) throw c.bad("sliding_window", "is negative");
  return w;
}

// Qwen2 (transformers' Qwen2Config): the window applies only when use_sliding_window is true,
// and only to the layers `layer_types` marks "sliding_attention", or without layer_types to the
// layers from max_window_layers (default 28) on.
void qwen2_windows(const HfConfig& c, ModelConfig* m) {
  m->sliding_window = hf_window(c);
  std::vector<bool> windowed(static_cast<size_t>(std::max<int64_t>(m->n_layers, 0)));
  if (c.has("layer_types")) {
    const json& lt = c.j["layer_types"];
    if (!lt.is_array() || static_cast<int64_t>(lt.size()) != m->n_layers)
      throw c.bad("layer_types", "is not a list of num_hidden_layers (" +
                                     std::to_string(m->n_layers) + ") entries");
    for (size_t l = 0; l < windowed.size(); ++l) {
      const std::string t = lt[l].is_string() ? lt[l].get<std::string>() : lt[l].dump();
      if (t != "sliding_attention" && t != "full_attention")
        throw c.unsupported("layer_types[" + std::to_string(l) + "] '" + t +
                            "' (candor reads sliding_attention and full_attention)");
      windowed[l] = t == "sliding_attention";
    }
  } else {
    const int64_t first = c.integer("max_window_layers", 28);
    for (size_t l = 0; l < windowed.size(); ++l) windowed[l] = static_cast<int64_t>(l) >= first;
  }
  const auto n_windowed = std::count(windowed.begin(), windowed.end(), true);
  if (m->sliding_window == 0 || n_windowed == 0) {
    m->sliding_window = 0;  // no layer is windowed: full attention everywhere
  } else if (n_windowed < m->n_layers) {
    m->windowed_layers = windowed;
  }
}

void hf_rope_scaling(const HfConfig& c, ModelConfig* m) {
  if (!c.has("rope_scaling")) return;
  const json& rs = c.j["rope_scaling"];
  if (!rs.is_object()) throw c.bad("rope_scaling", "is not an object");
  std::string type =
      rs.contains("rope_type") && rs["rope_type"].is_string()
          ? rs["rope_type"].get<std::string>()
          : (rs.contains("type") && rs["type"].is_string() ? rs["type"].get<std::string>() : "");
  HfConfig r{rs, c.path};
  if (type == "linear") {
    m->rope_scaling = "linear";
    m->rope_scaling_factor = static_cast<float>(r.number("factor", 1.0));
  } else if (type == "llama3") {
    m->rope_scaling = "llama3";
    m->rope_scaling_factor = static_cast<float>(r.number("factor", 8.0));
    m->rope_low_freq_factor = static_cast<float>(r.number("low_freq_factor", 1.0));
    m->rope_high_freq_factor = static_cast<float>(r.number("high_freq_factor", 4.0));
    m->rope_original_max_seq_len = r.integer("original_max_position_embeddings", 8192);
  } else if (type != "default") {
    throw c.unsupported("rope_scaling type '" + type + "' (candor reads linear and llama3)");
  }
}

// config.json's sizes of the Llama family.
const HfKeys kHfKeys = {
    hf_size("hidden_size", &ModelConfig::dim),
    hf_size("intermediate_size", &ModelConfig::hidden_dim),
    hf_size("num_hidden_layers", &ModelConfig::n_layers),
    hf_size("num_attention_heads", &ModelConfig::n_heads),
    hf_size("num_key_value_heads", &ModelConfig::n_kv_heads,
            [](const ModelConfig& m) { return static_cast<double>(m.n_heads); }),
    hf_size("vocab_size", &ModelConfig::vocab_size),
    hf_size("max_position_embeddings", &ModelConfig::max_seq_len, hf_default(2048)),
    hf_real("rms_norm_eps", &ModelConfig::norm_eps, hf_default(1e-6)),
    hf_real("rope_theta", &ModelConfig::rope_theta, hf_default(10000.0)),
};

ArchConfig from_hf(const HfConfig& c, const TensorSource& ts, const std::string& family) {
  ArchConfig a;
  ModelConfig& m = a.model;
  m.architecture = family;
  read_hf_keys(c, kHfKeys, &m);
  m.tied_embeddings = c.boolean("tie_word_embeddings", false) || !ts.has("lm_head.weight");
  m.rope_interleaved = false;
  const std::string act = c.string("hidden_act", "silu");
  if (act != "silu") throw c.unsupported("hidden_act '" + act + "' (Llama-family models use silu)");
  if (m.n_heads > 0 && c.has("head_dim") && c.integer("head_dim") != m.dim / m.n_heads)
    throw c.unsupported("head_dim " + std::to_string(c.integer("head_dim")) +
                        " differs from hidden_size / num_attention_heads");
  if (c.boolean("mlp_bias", false)) throw c.unsupported("mlp_bias = true");
  a.qkv_bias = family == "qwen2" || c.boolean("attention_bias", false);
  a.o_bias = family != "qwen2" && c.boolean("attention_bias", false);
  m.attention_bias = a.qkv_bias;
  if (family == "mistral") {
    m.sliding_window = hf_window(c);
  } else if (family == "qwen2" && c.boolean("use_sliding_window", false)) {
    qwen2_windows(c, &m);
  }
  hf_rope_scaling(c, &m);
  validate_llama_config(m, c.path);
  return a;
}

ArchConfig llama_from_hf(const HfConfig& c, const TensorSource& ts) {
  return from_hf(c, ts, "llama");
}
ArchConfig mistral_from_hf(const HfConfig& c, const TensorSource& ts) {
  return from_hf(c, ts, "mistral");
}
ArchConfig qwen2_from_hf(const HfConfig& c, const TensorSource& ts) {
  return from_hf(c, ts, "qwen2");
}

void to_hf(const Model& model, nlohmann::ordered_json* out) {
  const ModelConfig& m = model.config();
  // Only the plain layout (RMSNorm, rotary, SwiGLU) is a Llama-family checkpoint.
  if (m.norm != NormKind::kRMSNorm || m.positions != PositionKind::kRotary ||
      m.activation != Activation::kSwiGLU) {
    throw Error(ErrorCode::kUnsupported, "cannot write a " + m.architecture +
                                             " model with this layout as a Hugging Face folder");
  }
  const Architecture* a = find_architecture(m.architecture);
  const std::string family = a && a->tensors == &kTensors ? m.architecture : "llama";
  nlohmann::ordered_json& j = *out;
  j["architectures"] = {find_architecture(family)->hf_classes.front()};
  j["model_type"] = family;
  write_hf_keys(m, kHfKeys, out);
  j["hidden_act"] = "silu";
  j["tie_word_embeddings"] = m.tied_embeddings;
  if (family == "llama" && m.attention_bias) j["attention_bias"] = true;
  if (family == "mistral") {
    j["sliding_window"] = m.sliding_window > 0 ? json(m.sliding_window) : json(nullptr);
  } else if (family == "qwen2") {
    // Windowed layers as max_window_layers when they are the last ones, else as layer_types.
    j["use_sliding_window"] = m.sliding_window > 0;
    j["sliding_window"] = m.sliding_window > 0 ? json(m.sliding_window) : json(nullptr);
    int64_t first = m.n_layers;
    while (first > 0 && m.window_of(first - 1) > 0) --first;
    j["max_window_layers"] = first;
    bool suffix = true;
    for (int64_t l = 0; l < first; ++l) suffix = suffix && m.window_of(l) == 0;
    if (!suffix) {
      json types = json::array();
      for (int64_t l = 0; l < m.n_layers; ++l)
        types.push_back(m.window_of(l) > 0 ? "sliding_attention" : "full_attention");
      j["layer_types"] = types;
    }
  }
  if (m.rope_scaling == "linear") {
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", m.rope_scaling_factor}};
  } else if (m.rope_scaling == "llama3") {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", m.rope_scaling_factor},
                         {"low_freq_factor", m.rope_low_freq_factor},
                         {"high_freq_factor", m.rope_high_freq_factor},
                         {"original_max_position_embeddings", m.rope_original_max_seq_len}};
  }
}

ArchConfig from_gguf(const GgufFile& g) {
  const std::string p = "llama.";
  ArchConfig a;
  a.model = gguf_hyperparameters(g, "llama");
  ModelConfig& m = a.model;
  m.norm_eps = static_cast<float>(gguf_num(g, p + "attention.layer_norm_rms_epsilon", 1e-5));
  m.rope_theta = static_cast<float>(gguf_num(g, p + "rope.freq_base", 10000.0));
  m.rope_interleaved = true;  // llama.cpp's converter stores q/k in the interleaved layout
  if (g.has_meta(p + "rope.scaling.type")) {
    const std::string t = g.meta(p + "rope.scaling.type").is_string()
                              ? g.meta(p + "rope.scaling.type").get<std::string>()
                              : "";
    if (t == "linear") {
      m.rope_scaling = "linear";
      m.rope_scaling_factor = static_cast<float>(gguf_num(g, p + "rope.scaling.factor", 1.0));
    } else if (t != "none") {
      throw Error(ErrorCode::kUnsupported,
                  "GGUF file '" + g.where() + "': rope scaling '" + t + "' is not supported");
    }
  }
  m.tied_embeddings = !g.has("output.weight");
  validate_llama_config(m, "GGUF file '" + g.where() + "'");
  return a;
}

GgufMetadata to_gguf(const ModelConfig& m) {
  if (m.norm != NormKind::kRMSNorm || m.positions != PositionKind::kRotary ||
      m.activation != Activation::kSwiGLU || m.attention_bias || m.rope_scaling == "llama3") {
    throw Error(ErrorCode::kUnsupported,
                "candor writes GGUF for plain llama-architecture models; this is a " +
                    m.architecture + " model",
                "write a Hugging Face folder instead (candor convert --format hf)");
  }
  if (m.sliding_window > 0 && m.sliding_window < m.max_seq_len) {
    throw Error(ErrorCode::kUnsupported,
                "candor does not write GGUF for models with sliding-window attention (this " +
                    m.architecture + " model has a window of " + std::to_string(m.sliding_window) +
                    " tokens)",
                "write a Hugging Face folder instead (candor convert --format hf)");
  }
  auto u32 = [](int64_t v) { return json(static_cast<uint32_t>(v)); };
  GgufMetadata kv = {
      {"llama.context_length", u32(m.max_seq_len)},
      {"llama.embedding_length", u32(m.dim)},
      {"llama.block_count", u32(m.n_layers)},
      {"llama.feed_forward_length", u32(m.hidden_dim)},
      {"llama.attention.head_count", u32(m.n_heads)},
      {"llama.attention.head_count_kv", u32(m.n_kv_heads)},
      {"llama.attention.layer_norm_rms_epsilon", json(m.norm_eps)},
      {"llama.rope.freq_base", json(m.rope_theta)},
      {"llama.rope.dimension_count", u32(m.head_dim())},
  };
  if (m.rope_scaling == "linear") {
    kv.emplace_back("llama.rope.scaling.type", "linear");
    kv.emplace_back("llama.rope.scaling.factor", json(m.rope_scaling_factor));
  }
  return kv;
}

}  // namespace

const Architecture& llama_architecture() {
  static const Architecture a = [] {
    Architecture x = hf_architecture("llama", "LlamaForCausalLM", ModelKind::kCausalLM, &kTensors,
                                     llama_from_hf, to_hf);
    x.gguf_name = "llama";
    x.from_gguf = from_gguf;
    x.to_gguf = to_gguf;
    return x;
  }();
  return a;
}

const Architecture& mistral_architecture() {
  static const Architecture a = hf_architecture(
      "mistral", "MistralForCausalLM", ModelKind::kCausalLM, &kTensors, mistral_from_hf, to_hf);
  return a;
}

const Architecture& qwen2_architecture() {
  static const Architecture a = hf_architecture("qwen2", "Qwen2ForCausalLM", ModelKind::kCausalLM,
                                                &kTensors, qwen2_from_hf, to_hf);
  return a;
}

}  // namespace candor
