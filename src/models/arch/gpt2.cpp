// GPT-2: LayerNorm with biases, learned absolute positions, GELU (tanh), fused q/k/v, biases
// everywhere, output tied to the embeddings. Hugging Face stores the projections as Conv1D
// ([in, out]); GGUF as linear layers.
#include <ATen/ATen.h>

#include "models/arch/arch.h"
#include "models/formats/gguf.h"
#include "models/formats/tensor_source.h"
#include "models/llama.h"

namespace candor {
namespace {

const TensorTable kTensors = {
    {Slot::kTokEmbd, "transformer.wte.weight", "token_embd.weight"},
    {Slot::kPosEmbd, "transformer.wpe.weight", "position_embd.weight"},
    {Slot::kAttnNorm, "transformer.h.{l}.ln_1.weight", "blk.{l}.attn_norm.weight"},
    {Slot::kAttnNormBias, "transformer.h.{l}.ln_1.bias", "blk.{l}.attn_norm.bias"},
    {Slot::kQKV, "transformer.h.{l}.attn.c_attn.weight", "blk.{l}.attn_qkv.weight",
     HfLayout::kConv1D},
    {Slot::kQKVBias, "transformer.h.{l}.attn.c_attn.bias", "blk.{l}.attn_qkv.bias"},
    {Slot::kO, "transformer.h.{l}.attn.c_proj.weight", "blk.{l}.attn_output.weight",
     HfLayout::kConv1D},
    {Slot::kOBias, "transformer.h.{l}.attn.c_proj.bias", "blk.{l}.attn_output.bias"},
    {Slot::kFfnNorm, "transformer.h.{l}.ln_2.weight", "blk.{l}.ffn_norm.weight"},
    {Slot::kFfnNormBias, "transformer.h.{l}.ln_2.bias", "blk.{l}.ffn_norm.bias"},
    {Slot::kUp, "transformer.h.{l}.mlp.c_fc.weight", "blk.{l}.ffn_up.weight", HfLayout::kConv1D},
    {Slot::kUpBias, "transformer.h.{l}.mlp.c_fc.bias", "blk.{l}.ffn_up.bias"},
    {Slot::kDown, "transformer.h.{l}.mlp.c_proj.weight", "blk.{l}.ffn_down.weight",
     HfLayout::kConv1D},
    {Slot::kDownBias, "transformer.h.{l}.mlp.c_proj.bias", "blk.{l}.ffn_down.bias"},
    {Slot::kFinalNorm, "transformer.ln_f.weight", "output_norm.weight"},
    {Slot::kFinalNormBias, "transformer.ln_f.bias", "output_norm.bias"},
    {Slot::kOutput, "", "output.weight", HfLayout::kSame, Presence::kUntied},
};

// config.json's sizes of GPT-2 (n_inner null or absent: 4 x n_embd).
const HfKeys kHfKeys = {
    hf_size("n_embd", &ModelConfig::dim),
    hf_size("n_layer", &ModelConfig::n_layers),
    hf_size("n_head", &ModelConfig::n_heads),
    hf_size("n_inner", &ModelConfig::hidden_dim,
            [](const ModelConfig& m) { return 4.0 * static_cast<double>(m.dim); }),
    hf_size("n_positions", &ModelConfig::max_seq_len, hf_default(1024)),
    hf_size("vocab_size", &ModelConfig::vocab_size),
    hf_real("layer_norm_epsilon", &ModelConfig::norm_eps, hf_default(1e-5)),
};

void set_layout(ArchConfig* a) {
  ModelConfig& m = a->model;
  m.norm = NormKind::kLayerNorm;
  m.positions = PositionKind::kLearned;
  m.attention_bias = true;
  a->qkv_bias = a->o_bias = true;
}

ArchConfig from_hf(const HfConfig& c, const TensorSource&) {
  ArchConfig a;
  ModelConfig& m = a.model;
  m.architecture = "gpt2";
  read_hf_keys(c, kHfKeys, &m);
  m.n_kv_heads = m.n_heads;
  set_layout(&a);
  m.activation = hf_activation(c, "activation_function", "gelu_new");
  m.tied_embeddings = true;
  if (!c.boolean("scale_attn_weights", true)) throw c.unsupported("scale_attn_weights = false");
  if (c.boolean("scale_attn_by_inverse_layer_idx", false))
    throw c.unsupported("scale_attn_by_inverse_layer_idx = true");
  validate_llama_config(m, c.path);
  return a;
}

void to_hf(const Model& model, nlohmann::ordered_json* out) {
  const ModelConfig& m = model.config();
  nlohmann::ordered_json& j = *out;
  j["architectures"] = {"GPT2LMHeadModel"};
  j["model_type"] = "gpt2";
  write_hf_keys(m, kHfKeys, out);
  j["activation_function"] = hf_activation_name(m.activation);
  j["tie_word_embeddings"] = true;
}

ArchConfig from_gguf(const GgufFile& g) {
  ArchConfig a;
  a.model = gguf_hyperparameters(g, "gpt2");
  ModelConfig& m = a.model;
  set_layout(&a);
  m.activation = Activation::kGeluTanh;
  m.norm_eps = static_cast<float>(gguf_num(g, "gpt2.attention.layer_norm_epsilon", 1e-5));
  m.tied_embeddings = !g.has("output.weight");
  validate_llama_config(m, "GGUF file '" + g.where() + "'");
  return a;
}

}  // namespace

const Architecture& gpt2_architecture() {
  static const Architecture a = [] {
    Architecture x =
        hf_architecture("gpt2", "GPT2LMHeadModel", ModelKind::kCausalLM, &kTensors, from_hf, to_hf);
    x.hf_optional_prefix = "transformer.";
    x.gguf_name = "gpt2";
    x.from_gguf = from_gguf;
    return x;
  }();
  return a;
}

}  // namespace candor
