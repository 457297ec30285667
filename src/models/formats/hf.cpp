// Hugging Face folders: config.json -> ModelConfig, safetensors tensors -> runtime weights, and
// the reverse for `candor convert`.
#include "models/formats/hf.h"

#include <ATen/ATen.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "candor/error.h"
#include "models/encoder.h"
#include "models/formats/safetensors.h"
#include "models/llama.h"

namespace candor {
namespace fs = std::filesystem;
namespace {

using json = nlohmann::json;

// Typed access to config.json fields with errors that name the file and the field.
struct Cfg {
  const json& j;
  const std::string& path;

  Error bad(const std::string& field, const std::string& problem) const {
    return Error(ErrorCode::kInvalidArgument, path + ": field '" + field + "' " + problem,
                 "the config.json is malformed");
  }
  bool has(const std::string& k) const { return j.contains(k) && !j[k].is_null(); }
  int64_t integer(const std::string& k) const {
    if (!has(k)) throw bad(k, "is missing");
    if (!j[k].is_number_integer()) throw bad(k, "is not an integer: " + j[k].dump());
    return j[k].get<int64_t>();
  }
  int64_t integer(const std::string& k, int64_t dflt) const { return has(k) ? integer(k) : dflt; }
  double number(const std::string& k, double dflt) const {
    if (!has(k)) return dflt;
    if (!j[k].is_number()) throw bad(k, "is not a number: " + j[k].dump());
    return j[k].get<double>();
  }
  bool boolean(const std::string& k, bool dflt) const {
    if (!has(k)) return dflt;
    if (!j[k].is_boolean()) throw bad(k, "is not true/false: " + j[k].dump());
    return j[k].get<bool>();
  }
  std::string string(const std::string& k, const std::string& dflt) const {
    if (!has(k)) return dflt;
    if (!j[k].is_string()) throw bad(k, "is not a string: " + j[k].dump());
    return j[k].get<std::string>();
  }
  Error unsupported(const std::string& what) const {
    return Error(ErrorCode::kUnsupported, path + ": " + what,
                 "see docs/model-formats.md for the architectures and settings candor reads");
  }
};

std::string family_of(const Cfg& c) {
  std::string arch;
  if (c.has("architectures") && c.j["architectures"].is_array() && !c.j["architectures"].empty() &&
      c.j["architectures"][0].is_string())
    arch = c.j["architectures"][0].get<std::string>();
  const std::string type = c.string("model_type", "");
  static const std::vector<std::pair<std::string, std::string>> known = {
      {"LlamaForCausalLM", "llama"},
      {"MistralForCausalLM", "mistral"},
      {"Qwen2ForCausalLM", "qwen2"},
      {"GPT2LMHeadModel", "gpt2"},
      {"BertForSequenceClassification", "bert"},
      {"RobertaForSequenceClassification", "roberta"},
      {"DistilBertForSequenceClassification", "distilbert"}};
  for (const auto& [a, f] : known)
    if (arch == a) return f;
  if (arch.empty() && (type == "llama" || type == "mistral" || type == "qwen2" || type == "gpt2"))
    return type;
  throw c.unsupported("unsupported architecture '" + (arch.empty() ? type : arch) +
                      "' (candor reads LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, "
                      "GPT2LMHeadModel and Bert/Roberta/DistilBertForSequenceClassification)");
}

std::vector<std::string> labels_of(const Cfg& c) {
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

// ---- decoders -------------------------------------------------------------------------------

std::unique_ptr<Model> build_llama(const Cfg& c, const std::string& family, const TensorSource& ts,
                                   std::shared_ptr<Tokenizer> tok) {
  ModelConfig m;
  m.architecture = family;
  m.dim = c.integer("hidden_size");
  m.hidden_dim = c.integer("intermediate_size");
  m.n_layers = c.integer("num_hidden_layers");
  m.n_heads = c.integer("num_attention_heads");
  m.n_kv_heads = c.integer("num_key_value_heads", m.n_heads);
  m.vocab_size = c.integer("vocab_size");
  m.max_seq_len = c.integer("max_position_embeddings", 2048);
  m.norm_eps = static_cast<float>(c.number("rms_norm_eps", 1e-6));
  m.rope_theta = static_cast<float>(c.number("rope_theta", 10000.0));
  m.tied_embeddings = c.boolean("tie_word_embeddings", false) || !ts.has("lm_head.weight");
  m.rope_interleaved = false;
  const std::string act = c.string("hidden_act", "silu");
  if (act != "silu") throw c.unsupported("hidden_act '" + act + "' (Llama-family models use silu)");
  if (m.n_heads > 0 && c.has("head_dim") && c.integer("head_dim") != m.dim / m.n_heads)
    throw c.unsupported("head_dim " + std::to_string(c.integer("head_dim")) +
                        " differs from hidden_size / num_attention_heads");
  if (c.boolean("mlp_bias", false)) throw c.unsupported("mlp_bias = true");
  const bool qkv_bias = family == "qwen2" || c.boolean("attention_bias", false);
  const bool o_bias = family != "qwen2" && c.boolean("attention_bias", false);
  m.attention_bias = qkv_bias;
  if (family == "mistral") {
    // Sliding-window attention (null: full attention; absent: transformers' default, 4096).
    m.sliding_window = c.j.contains("sliding_window") ? c.integer("sliding_window", 0) : 4096;
    if (m.sliding_window < 0) throw c.bad("sliding_window", "is negative");
  } else if (family == "qwen2" && c.boolean("use_sliding_window", false)) {
    // Qwen2 (transformers' Qwen2Config): the window (default 4096; null: none) applies only when
    // use_sliding_window is true, and only to the layers `layer_types` marks
    // "sliding_attention", or without layer_types to the layers from max_window_layers
    // (default 28) on.
    m.sliding_window = c.j.contains("sliding_window") ? c.integer("sliding_window", 0) : 4096;
    if (m.sliding_window < 0) throw c.bad("sliding_window", "is negative");
    std::vector<bool> windowed(static_cast<size_t>(std::max<int64_t>(m.n_layers, 0)));
    if (c.has("layer_types")) {
      const json& lt = c.j["layer_types"];
      if (!lt.is_array() || static_cast<int64_t>(lt.size()) != m.n_layers)
        throw c.bad("layer_types", "is not a list of num_hidden_layers (" +
                                       std::to_string(m.n_layers) + ") entries");
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
    if (m.sliding_window == 0 || n_windowed == 0) {
      m.sliding_window = 0;  // no layer is windowed: full attention everywhere
    } else if (n_windowed < m.n_layers) {
      m.windowed_layers = windowed;
    }
  }
  if (c.has("rope_scaling")) {
    const json& rs = c.j["rope_scaling"];
    if (!rs.is_object()) throw c.bad("rope_scaling", "is not an object");
    std::string type =
        rs.contains("rope_type") && rs["rope_type"].is_string()
            ? rs["rope_type"].get<std::string>()
            : (rs.contains("type") && rs["type"].is_string() ? rs["type"].get<std::string>() : "");
    Cfg r{rs, c.path};
    if (type == "linear") {
      m.rope_scaling = "linear";
      m.rope_scaling_factor = static_cast<float>(r.number("factor", 1.0));
    } else if (type == "llama3") {
      m.rope_scaling = "llama3";
      m.rope_scaling_factor = static_cast<float>(r.number("factor", 8.0));
      m.rope_low_freq_factor = static_cast<float>(r.number("low_freq_factor", 1.0));
      m.rope_high_freq_factor = static_cast<float>(r.number("high_freq_factor", 4.0));
      m.rope_original_max_seq_len = r.integer("original_max_position_embeddings", 8192);
    } else if (type != "default") {
      throw c.unsupported("rope_scaling type '" + type + "' (candor reads linear and llama3)");
    }
  }
  validate_llama_config(m, c.path);
  const int64_t D = m.dim, F = m.hidden_dim, hd = m.head_dim(), H = m.n_heads, KV = m.n_kv_heads;
  LlamaWeights w;
  w.tok_embeddings = ts.load("model.embed_tokens.weight", {m.vocab_size, D});
  for (int64_t l = 0; l < m.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LlamaLayerWeights L;
    L.attn_norm = ts.load(p + "input_layernorm.weight", {D});
    L.wqkv = ts.load_rows({{p + "self_attn.q_proj.weight", {H * hd, D}},
                           {p + "self_attn.k_proj.weight", {KV * hd, D}},
                           {p + "self_attn.v_proj.weight", {KV * hd, D}}});
    for (auto [first, heads] : {std::pair<int64_t, int64_t>{0, H}, {H * hd, KV}}) {
      at::Tensor rows = L.wqkv.narrow(0, first, heads * hd);
      rows.copy_(rotate_half_to_interleaved(rows, heads));
    }
    if (qkv_bias) {
      L.bqkv =
          at::cat({rotate_half_to_interleaved(ts.load(p + "self_attn.q_proj.bias", {H * hd}), H),
                   rotate_half_to_interleaved(ts.load(p + "self_attn.k_proj.bias", {KV * hd}), KV),
                   ts.load(p + "self_attn.v_proj.bias", {KV * hd})},
                  0);
    }
    L.wo = ts.load(p + "self_attn.o_proj.weight", {D, H * hd});
    if (o_bias) L.bo = ts.load(p + "self_attn.o_proj.bias", {D});
    L.ffn_norm = ts.load(p + "post_attention_layernorm.weight", {D});
    L.w13 =
        ts.load_rows({{p + "mlp.gate_proj.weight", {F, D}}, {p + "mlp.up_proj.weight", {F, D}}});
    L.w2 = ts.load(p + "mlp.down_proj.weight", {D, F});
    w.layers.push_back(std::move(L));
  }
  w.final_norm = ts.load("model.norm.weight", {D});
  w.output = m.tied_embeddings ? w.tok_embeddings : ts.load("lm_head.weight", {m.vocab_size, D});
  return std::make_unique<LlamaModel>(m, std::move(w), std::move(tok));
}

std::string activation_of(const Cfg& c, const std::string& key, const std::string& dflt) {
  const std::string a = c.string(key, dflt);
  if (a == "gelu_new" || a == "gelu_pytorch_tanh" || a == "gelu_fast") return "gelu_tanh";
  if (a == "gelu" || a == "relu") return a;
  throw c.unsupported(key + " '" + a + "' (candor implements gelu, gelu_new and relu)");
}

std::unique_ptr<Model> build_gpt2(const Cfg& c, const TensorSource& ts,
                                  std::shared_ptr<Tokenizer> tok) {
  ModelConfig m;
  m.architecture = "gpt2";
  m.dim = c.integer("n_embd");
  m.n_layers = c.integer("n_layer");
  m.n_heads = c.integer("n_head");
  m.n_kv_heads = m.n_heads;
  m.hidden_dim = c.integer("n_inner", 4 * m.dim);
  m.vocab_size = c.integer("vocab_size");
  m.max_seq_len = c.integer("n_positions", 1024);
  m.norm_eps = static_cast<float>(c.number("layer_norm_epsilon", 1e-5));
  m.norm = "layer";
  m.positions = "learned";
  m.activation = activation_of(c, "activation_function", "gelu_new");
  m.attention_bias = true;
  m.tied_embeddings = true;
  if (!c.boolean("scale_attn_weights", true)) throw c.unsupported("scale_attn_weights = false");
  if (c.boolean("scale_attn_by_inverse_layer_idx", false))
    throw c.unsupported("scale_attn_by_inverse_layer_idx = true");
  validate_llama_config(m, c.path);
  const std::string pre = ts.has("transformer.wte.weight") ? "transformer." : "";
  const int64_t D = m.dim, F = m.hidden_dim;
  // Conv1D stores weights as [in, out]: transposed to the [out, in] of a linear layer.
  auto conv = [&](const std::string& name, int64_t in, int64_t out) {
    at::Tensor t = empty_weight({out, in});
    t.copy_(ts.load(name, {in, out}).t());
    return t;
  };
  LlamaWeights w;
  w.tok_embeddings = ts.load(pre + "wte.weight", {m.vocab_size, D});
  w.pos_embeddings = ts.load(pre + "wpe.weight", {m.max_seq_len, D});
  for (int64_t l = 0; l < m.n_layers; ++l) {
    const std::string p = pre + "h." + std::to_string(l) + ".";
    LlamaLayerWeights L;
    L.attn_norm = ts.load(p + "ln_1.weight", {D});
    L.attn_norm_bias = ts.load(p + "ln_1.bias", {D});
    L.wqkv = conv(p + "attn.c_attn.weight", D, 3 * D);
    L.bqkv = ts.load(p + "attn.c_attn.bias", {3 * D});
    L.wo = conv(p + "attn.c_proj.weight", D, D);
    L.bo = ts.load(p + "attn.c_proj.bias", {D});
    L.ffn_norm = ts.load(p + "ln_2.weight", {D});
    L.ffn_norm_bias = ts.load(p + "ln_2.bias", {D});
    L.w13 = conv(p + "mlp.c_fc.weight", D, F);
    L.b13 = ts.load(p + "mlp.c_fc.bias", {F});
    L.w2 = conv(p + "mlp.c_proj.weight", F, D);
    L.b2 = ts.load(p + "mlp.c_proj.bias", {D});
    w.layers.push_back(std::move(L));
  }
  w.final_norm = ts.load(pre + "ln_f.weight", {D});
  w.final_norm_bias = ts.load(pre + "ln_f.bias", {D});
  w.output = w.tok_embeddings;
  return std::make_unique<LlamaModel>(m, std::move(w), std::move(tok));
}

// ---- encoders -------------------------------------------------------------------------------

std::unique_ptr<Model> build_encoder(const Cfg& c, const std::string& family,
                                     const TensorSource& ts, std::shared_ptr<Tokenizer> tok) {
  ModelConfig m;
  m.architecture = family;
  m.kind = ModelKind::kClassifier;
  m.norm = "layer";
  m.positions = "learned";
  m.attention_bias = true;
  m.labels = labels_of(c);
  EncoderSettings s;
  const bool distil = family == "distilbert";
  if (distil) {
    m.dim = c.integer("dim");
    m.n_layers = c.integer("n_layers");
    m.n_heads = c.integer("n_heads");
    m.hidden_dim = c.integer("hidden_dim");
    m.activation = activation_of(c, "activation", "gelu");
    m.norm_eps = 1e-12f;
    s.relu_head = true;
  } else {
    m.dim = c.integer("hidden_size");
    m.n_layers = c.integer("num_hidden_layers");
    m.n_heads = c.integer("num_attention_heads");
    m.hidden_dim = c.integer("intermediate_size");
    m.activation = activation_of(c, "hidden_act", "gelu");
    m.norm_eps = static_cast<float>(c.number("layer_norm_eps", 1e-12));
    const std::string pe = c.string("position_embedding_type", "absolute");
    if (pe != "absolute") throw c.unsupported("position_embedding_type '" + pe + "'");
  }
  m.n_kv_heads = m.n_heads;
  m.vocab_size = c.integer("vocab_size");
  const int64_t n_pos = c.integer("max_position_embeddings", 512);
  if (family == "roberta") s.position_offset = c.integer("pad_token_id", 1) + 1;
  m.max_seq_len = n_pos - s.position_offset;
  validate_llama_config(m, c.path);
  const int64_t D = m.dim, F = m.hidden_dim, NL = static_cast<int64_t>(m.labels.size());
  EncoderWeights w;
  if (distil) {
    const std::string p = "distilbert.embeddings.";
    w.tok_embeddings = ts.load(p + "word_embeddings.weight", {m.vocab_size, D});
    w.pos_embeddings = ts.load(p + "position_embeddings.weight", {n_pos, D});
    w.emb_norm = ts.load(p + "LayerNorm.weight", {D});
    w.emb_norm_bias = ts.load(p + "LayerNorm.bias", {D});
    for (int64_t l = 0; l < m.n_layers; ++l) {
      const std::string q = "distilbert.transformer.layer." + std::to_string(l) + ".";
      EncoderLayerWeights L;
      L.wqkv = at::cat({ts.load(q + "attention.q_lin.weight", {D, D}),
                        ts.load(q + "attention.k_lin.weight", {D, D}),
                        ts.load(q + "attention.v_lin.weight", {D, D})});
      L.bqkv = at::cat({ts.load(q + "attention.q_lin.bias", {D}),
                        ts.load(q + "attention.k_lin.bias", {D}),
                        ts.load(q + "attention.v_lin.bias", {D})});
      L.wo = ts.load(q + "attention.out_lin.weight", {D, D});
      L.bo = ts.load(q + "attention.out_lin.bias", {D});
      L.attn_norm = ts.load(q + "sa_layer_norm.weight", {D});
      L.attn_norm_bias = ts.load(q + "sa_layer_norm.bias", {D});
      L.w1 = ts.load(q + "ffn.lin1.weight", {F, D});
      L.b1 = ts.load(q + "ffn.lin1.bias", {F});
      L.w2 = ts.load(q + "ffn.lin2.weight", {D, F});
      L.b2 = ts.load(q + "ffn.lin2.bias", {D});
      L.ffn_norm = ts.load(q + "output_layer_norm.weight", {D});
      L.ffn_norm_bias = ts.load(q + "output_layer_norm.bias", {D});
      w.layers.push_back(std::move(L));
    }
    w.pool_w = ts.load("pre_classifier.weight", {D, D});
    w.pool_b = ts.load("pre_classifier.bias", {D});
    w.cls_w = ts.load("classifier.weight", {NL, D});
    w.cls_b = ts.load("classifier.bias", {NL});
  } else {
    const std::string pre = family + ".";
    const std::string p = pre + "embeddings.";
    const int64_t n_types = c.integer("type_vocab_size", 2);
    w.tok_embeddings = ts.load(p + "word_embeddings.weight", {m.vocab_size, D});
    w.pos_embeddings = ts.load(p + "position_embeddings.weight", {n_pos, D});
    w.type_embeddings = ts.load(p + "token_type_embeddings.weight", {n_types, D});
    w.emb_norm = ts.load(p + "LayerNorm.weight", {D});
    w.emb_norm_bias = ts.load(p + "LayerNorm.bias", {D});
    for (int64_t l = 0; l < m.n_layers; ++l) {
      const std::string q = pre + "encoder.layer." + std::to_string(l) + ".";
      EncoderLayerWeights L;
      L.wqkv = at::cat({ts.load(q + "attention.self.query.weight", {D, D}),
                        ts.load(q + "attention.self.key.weight", {D, D}),
                        ts.load(q + "attention.self.value.weight", {D, D})});
      L.bqkv = at::cat({ts.load(q + "attention.self.query.bias", {D}),
                        ts.load(q + "attention.self.key.bias", {D}),
                        ts.load(q + "attention.self.value.bias", {D})});
      L.wo = ts.load(q + "attention.output.dense.weight", {D, D});
      L.bo = ts.load(q + "attention.output.dense.bias", {D});
      L.attn_norm = ts.load(q + "attention.output.LayerNorm.weight", {D});
      L.attn_norm_bias = ts.load(q + "attention.output.LayerNorm.bias", {D});
      L.w1 = ts.load(q + "intermediate.dense.weight", {F, D});
      L.b1 = ts.load(q + "intermediate.dense.bias", {F});
      L.w2 = ts.load(q + "output.dense.weight", {D, F});
      L.b2 = ts.load(q + "output.dense.bias", {D});
      L.ffn_norm = ts.load(q + "output.LayerNorm.weight", {D});
      L.ffn_norm_bias = ts.load(q + "output.LayerNorm.bias", {D});
      w.layers.push_back(std::move(L));
    }
    if (family == "roberta") {
      w.pool_w = ts.load("classifier.dense.weight", {D, D});
      w.pool_b = ts.load("classifier.dense.bias", {D});
      w.cls_w = ts.load("classifier.out_proj.weight", {NL, D});
      w.cls_b = ts.load("classifier.out_proj.bias", {NL});
    } else {
      w.pool_w = ts.load(pre + "pooler.dense.weight", {D, D});
      w.pool_b = ts.load(pre + "pooler.dense.bias", {D});
      w.cls_w = ts.load("classifier.weight", {NL, D});
      w.cls_b = ts.load("classifier.bias", {NL});
    }
  }
  return std::make_unique<EncoderClassifier>(m, s, std::move(w), std::move(tok));
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
                                      std::shared_ptr<Tokenizer> tokenizer) {
  Cfg c{config, config_path};
  const std::string family = family_of(c);
  if (family == "gpt2") return build_gpt2(c, tensors, std::move(tokenizer));
  if (family == "bert" || family == "roberta" || family == "distilbert")
    return build_encoder(c, family, tensors, std::move(tokenizer));
  return build_llama(c, family, tensors, std::move(tokenizer));
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
  std::vector<std::string> files;
  std::shared_ptr<Tokenizer> tok = load_folder_tokenizer(folder.string(), vocab, options, &files);
  std::unique_ptr<Model> model = build_hf_model(config, config_path.string(), *tensors, tok);
  ModelConfig& mc = const_cast<ModelConfig&>(model->config());
  mc.source_format = "safetensors";
  mc.dtype = tensors->dtype_summary();
  mc.tokenizer_files = files;
  return model;
}

// ---- writing --------------------------------------------------------------------------------

std::vector<std::pair<std::string, at::Tensor>> hf_tensors(const Model& model) {
  const ModelConfig& m = model.config();
  std::vector<std::pair<std::string, at::Tensor>> out;
  auto add = [&](const std::string& n, const at::Tensor& t) {
    out.emplace_back(n, t.contiguous());
  };
  if (const auto* lm = dynamic_cast<const LlamaModel*>(&model)) {
    const LlamaWeights& w = lm->weights();
    const int64_t D = m.dim, hd = m.head_dim(), H = m.n_heads, KV = m.n_kv_heads;
    if (m.architecture == "gpt2") {
      add("transformer.wte.weight", w.tok_embeddings);
      add("transformer.wpe.weight", w.pos_embeddings);
      for (size_t l = 0; l < w.layers.size(); ++l) {
        const auto& L = w.layers[l];
        const std::string p = "transformer.h." + std::to_string(l) + ".";
        add(p + "ln_1.weight", L.attn_norm);
        add(p + "ln_1.bias", L.attn_norm_bias);
        add(p + "attn.c_attn.weight", L.wqkv.t());
        add(p + "attn.c_attn.bias", L.bqkv);
        add(p + "attn.c_proj.weight", L.wo.t());
        add(p + "attn.c_proj.bias", L.bo);
        add(p + "ln_2.weight", L.ffn_norm);
        add(p + "ln_2.bias", L.ffn_norm_bias);
        add(p + "mlp.c_fc.weight", L.w13.t());
        add(p + "mlp.c_fc.bias", L.b13);
        add(p + "mlp.c_proj.weight", L.w2.t());
        add(p + "mlp.c_proj.bias", L.b2);
      }
      add("transformer.ln_f.weight", w.final_norm);
      add("transformer.ln_f.bias", w.final_norm_bias);
      return out;
    }
    if (m.norm != "rms" || m.positions != "rope" || m.activation != "silu") {
      throw Error(ErrorCode::kUnsupported, "cannot write a " + m.architecture +
                                               " model with this layout as a Hugging Face folder");
    }
    add("model.embed_tokens.weight", w.tok_embeddings);
    for (size_t l = 0; l < w.layers.size(); ++l) {
      const auto& L = w.layers[l];
      const std::string p = "model.layers." + std::to_string(l) + ".";
      add(p + "input_layernorm.weight", L.attn_norm);
      add(p + "self_attn.q_proj.weight",
          interleaved_to_rotate_half(L.wqkv.narrow(0, 0, H * hd), H));
      add(p + "self_attn.k_proj.weight",
          interleaved_to_rotate_half(L.wqkv.narrow(0, H * hd, KV * hd), KV));
      add(p + "self_attn.v_proj.weight", L.wqkv.narrow(0, (H + KV) * hd, KV * hd));
      if (L.bqkv.defined()) {
        add(p + "self_attn.q_proj.bias",
            interleaved_to_rotate_half(L.bqkv.narrow(0, 0, H * hd), H));
        add(p + "self_attn.k_proj.bias",
            interleaved_to_rotate_half(L.bqkv.narrow(0, H * hd, KV * hd), KV));
        add(p + "self_attn.v_proj.bias", L.bqkv.narrow(0, (H + KV) * hd, KV * hd));
      }
      add(p + "self_attn.o_proj.weight", L.wo);
      if (L.bo.defined()) add(p + "self_attn.o_proj.bias", L.bo);
      add(p + "post_attention_layernorm.weight", L.ffn_norm);
      const int64_t F = m.hidden_dim;
      add(p + "mlp.gate_proj.weight", L.w13.narrow(0, 0, F));
      add(p + "mlp.up_proj.weight", L.w13.narrow(0, F, F));
      add(p + "mlp.down_proj.weight", L.w2);
    }
    add("model.norm.weight", w.final_norm);
    if (!m.tied_embeddings) add("lm_head.weight", w.output);
    (void)D;
    return out;
  }
  if (const auto* enc = dynamic_cast<const EncoderClassifier*>(&model)) {
    const EncoderWeights& w = enc->weights();
    const int64_t D = m.dim;
    auto q = [&](const at::Tensor& t, int i) { return t.narrow(0, i * D, D); };
    if (m.architecture == "distilbert") {
      add("distilbert.embeddings.word_embeddings.weight", w.tok_embeddings);
      add("distilbert.embeddings.position_embeddings.weight", w.pos_embeddings);
      add("distilbert.embeddings.LayerNorm.weight", w.emb_norm);
      add("distilbert.embeddings.LayerNorm.bias", w.emb_norm_bias);
      for (size_t l = 0; l < w.layers.size(); ++l) {
        const auto& L = w.layers[l];
        const std::string p = "distilbert.transformer.layer." + std::to_string(l) + ".";
        const char* names[3] = {"q_lin", "k_lin", "v_lin"};
        for (int i = 0; i < 3; ++i) {
          add(p + "attention." + names[i] + ".weight", q(L.wqkv, i));
          add(p + "attention." + names[i] + ".bias", q(L.bqkv, i));
        }
        add(p + "attention.out_lin.weight", L.wo);
        add(p + "attention.out_lin.bias", L.bo);
        add(p + "sa_layer_norm.weight", L.attn_norm);
        add(p + "sa_layer_norm.bias", L.attn_norm_bias);
        add(p + "ffn.lin1.weight", L.w1);
        add(p + "ffn.lin1.bias", L.b1);
        add(p + "ffn.lin2.weight", L.w2);
        add(p + "ffn.lin2.bias", L.b2);
        add(p + "output_layer_norm.weight", L.ffn_norm);
        add(p + "output_layer_norm.bias", L.ffn_norm_bias);
      }
      add("pre_classifier.weight", w.pool_w);
      add("pre_classifier.bias", w.pool_b);
      add("classifier.weight", w.cls_w);
      add("classifier.bias", w.cls_b);
      return out;
    }
    const std::string pre = m.architecture + ".";
    add(pre + "embeddings.word_embeddings.weight", w.tok_embeddings);
    add(pre + "embeddings.position_embeddings.weight", w.pos_embeddings);
    add(pre + "embeddings.token_type_embeddings.weight", w.type_embeddings);
    add(pre + "embeddings.LayerNorm.weight", w.emb_norm);
    add(pre + "embeddings.LayerNorm.bias", w.emb_norm_bias);
    for (size_t l = 0; l < w.layers.size(); ++l) {
      const auto& L = w.layers[l];
      const std::string p = pre + "encoder.layer." + std::to_string(l) + ".";
      const char* names[3] = {"query", "key", "value"};
      for (int i = 0; i < 3; ++i) {
        add(p + "attention.self." + names[i] + ".weight", q(L.wqkv, i));
        add(p + "attention.self." + names[i] + ".bias", q(L.bqkv, i));
      }
      add(p + "attention.output.dense.weight", L.wo);
      add(p + "attention.output.dense.bias", L.bo);
      add(p + "attention.output.LayerNorm.weight", L.attn_norm);
      add(p + "attention.output.LayerNorm.bias", L.attn_norm_bias);
      add(p + "intermediate.dense.weight", L.w1);
      add(p + "intermediate.dense.bias", L.b1);
      add(p + "output.dense.weight", L.w2);
      add(p + "output.dense.bias", L.b2);
      add(p + "output.LayerNorm.weight", L.ffn_norm);
      add(p + "output.LayerNorm.bias", L.ffn_norm_bias);
    }
    if (m.architecture == "roberta") {
      add("classifier.dense.weight", w.pool_w);
      add("classifier.dense.bias", w.pool_b);
      add("classifier.out_proj.weight", w.cls_w);
      add("classifier.out_proj.bias", w.cls_b);
    } else {
      add(pre + "pooler.dense.weight", w.pool_w);
      add(pre + "pooler.dense.bias", w.pool_b);
      add("classifier.weight", w.cls_w);
      add("classifier.bias", w.cls_b);
    }
    return out;
  }
  throw Error(ErrorCode::kUnsupported,
              "cannot write a " + m.architecture + " model as a Hugging Face folder");
}

nlohmann::ordered_json hf_config_json(const Model& model) {
  const ModelConfig& m = model.config();
  nlohmann::ordered_json j;
  auto labels = [&]() {
    nlohmann::ordered_json id2label, label2id;
    for (size_t i = 0; i < m.labels.size(); ++i) {
      id2label[std::to_string(i)] = m.labels[i];
      label2id[m.labels[i]] = i;
    }
    j["id2label"] = id2label;
    j["label2id"] = label2id;
  };
  if (m.architecture == "gpt2") {
    j["architectures"] = {"GPT2LMHeadModel"};
    j["model_type"] = "gpt2";
    j["n_embd"] = m.dim;
    j["n_layer"] = m.n_layers;
    j["n_head"] = m.n_heads;
    j["n_inner"] = m.hidden_dim;
    j["n_positions"] = m.max_seq_len;
    j["vocab_size"] = m.vocab_size;
    j["layer_norm_epsilon"] = m.norm_eps;
    j["activation_function"] = m.activation == "gelu_tanh" ? "gelu_new" : m.activation;
    j["tie_word_embeddings"] = true;
  } else if (m.kind == ModelKind::kClassifier) {
    const auto* enc = dynamic_cast<const EncoderClassifier*>(&model);
    const int64_t offset = enc ? enc->settings().position_offset : 0;
    if (m.architecture == "distilbert") {
      j["architectures"] = {"DistilBertForSequenceClassification"};
      j["model_type"] = "distilbert";
      j["dim"] = m.dim;
      j["n_layers"] = m.n_layers;
      j["n_heads"] = m.n_heads;
      j["hidden_dim"] = m.hidden_dim;
      j["activation"] = m.activation == "gelu_tanh" ? "gelu_new" : m.activation;
    } else {
      j["architectures"] = {m.architecture == "roberta" ? "RobertaForSequenceClassification"
                                                        : "BertForSequenceClassification"};
      j["model_type"] = m.architecture;
      j["hidden_size"] = m.dim;
      j["num_hidden_layers"] = m.n_layers;
      j["num_attention_heads"] = m.n_heads;
      j["intermediate_size"] = m.hidden_dim;
      j["hidden_act"] = m.activation == "gelu_tanh" ? "gelu_new" : m.activation;
      j["layer_norm_eps"] = m.norm_eps;
      j["type_vocab_size"] = enc ? enc->weights().type_embeddings.size(0) : 2;
      if (m.architecture == "roberta") j["pad_token_id"] = offset - 1;
    }
    j["vocab_size"] = m.vocab_size;
    j["max_position_embeddings"] = m.max_seq_len + offset;
    labels();
  } else {
    static const std::map<std::string, std::string> arch = {{"llama", "LlamaForCausalLM"},
                                                            {"mistral", "MistralForCausalLM"},
                                                            {"qwen2", "Qwen2ForCausalLM"}};
    const std::string family = arch.count(m.architecture) ? m.architecture : "llama";
    j["architectures"] = {arch.at(family)};
    j["model_type"] = family;
    j["hidden_size"] = m.dim;
    j["intermediate_size"] = m.hidden_dim;
    j["num_hidden_layers"] = m.n_layers;
    j["num_attention_heads"] = m.n_heads;
    j["num_key_value_heads"] = m.n_kv_heads;
    j["vocab_size"] = m.vocab_size;
    j["max_position_embeddings"] = m.max_seq_len;
    j["rms_norm_eps"] = m.norm_eps;
    j["rope_theta"] = m.rope_theta;
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
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!fs::is_directory(dir, ec)) {
    throw Error(ErrorCode::kNotFound, "cannot create output folder '" + dir + "'");
  }
  {
    std::ofstream f(fs::path(dir) / "config.json");
    if (!f) throw Error(ErrorCode::kNotFound, "cannot write '" + dir + "/config.json'");
    f << config.dump(2) << "\n";
  }
  write_safetensors((fs::path(dir) / "model.safetensors").string(), tensors, {{"format", "pt"}});
  bool vocabulary_only = false;  // a llama2c vocabulary that has no file of its own
  if (model.config().tokenizer_files.empty()) {
    try {
      vocabulary_only = model.tokenizer().kind() == "llama2c";
    } catch (const Error&) {  // a model without a tokenizer: nothing to write
    }
  }
  if (vocabulary_only) {
    // A vocabulary read from elsewhere (GGUF metadata): written as a llama2.c tokenizer.bin.
    const Tokenizer& tok = model.tokenizer();
    std::string bin(4, '\0');
    int32_t max_len = 1;
    for (TokenId i = 0; i < tok.vocab_size(); ++i) {
      const std::string piece = tok.piece(i);
      const float score = tok.score(i);
      const int32_t len = static_cast<int32_t>(piece.size());
      max_len = std::max(max_len, len);
      bin.append(reinterpret_cast<const char*>(&score), 4);
      bin.append(reinterpret_cast<const char*>(&len), 4);
      bin += piece;
    }
    std::memcpy(&bin[0], &max_len, 4);
    std::ofstream f(fs::path(dir) / "tokenizer.bin", std::ios::binary);
    f << bin;
    if (!f) throw Error(ErrorCode::kNotFound, "cannot write '" + dir + "/tokenizer.bin'");
  }
  for (const std::string& file : model.config().tokenizer_files) {
    fs::path src(file);
    fs::path dst = fs::path(dir) / src.filename();
    if (fs::exists(dst, ec) && fs::equivalent(src, dst, ec)) continue;
    fs::copy_file(src, dst, fs::copy_options::overwrite_existing, ec);
    if (ec) {
      throw Error(ErrorCode::kNotFound,
                  "cannot copy tokenizer '" + file + "' to '" + dir + "': " + ec.message());
    }
  }
}

}  // namespace candor
