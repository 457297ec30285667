// DistilBERT sequence classifiers (DistilBertForSequenceClassification): BERT's encoder blocks
// without token-type embeddings, under other names, with a ReLU pre-classifier head.
#include "models/arch/arch.h"

namespace candor {
namespace {

const TensorTable kTensors = {
    {Slot::kTokEmbd, "distilbert.embeddings.word_embeddings.weight", ""},
    {Slot::kPosEmbd, "distilbert.embeddings.position_embeddings.weight", ""},
    {Slot::kEmbNorm, "distilbert.embeddings.LayerNorm.weight", ""},
    {Slot::kEmbNormBias, "distilbert.embeddings.LayerNorm.bias", ""},
    {Slot::kQ, "distilbert.transformer.layer.{l}.attention.q_lin.weight", ""},
    {Slot::kQBias, "distilbert.transformer.layer.{l}.attention.q_lin.bias", ""},
    {Slot::kK, "distilbert.transformer.layer.{l}.attention.k_lin.weight", ""},
    {Slot::kKBias, "distilbert.transformer.layer.{l}.attention.k_lin.bias", ""},
    {Slot::kV, "distilbert.transformer.layer.{l}.attention.v_lin.weight", ""},
    {Slot::kVBias, "distilbert.transformer.layer.{l}.attention.v_lin.bias", ""},
    {Slot::kO, "distilbert.transformer.layer.{l}.attention.out_lin.weight", ""},
    {Slot::kOBias, "distilbert.transformer.layer.{l}.attention.out_lin.bias", ""},
    {Slot::kAttnNorm, "distilbert.transformer.layer.{l}.sa_layer_norm.weight", ""},
    {Slot::kAttnNormBias, "distilbert.transformer.layer.{l}.sa_layer_norm.bias", ""},
    {Slot::kUp, "distilbert.transformer.layer.{l}.ffn.lin1.weight", ""},
    {Slot::kUpBias, "distilbert.transformer.layer.{l}.ffn.lin1.bias", ""},
    {Slot::kDown, "distilbert.transformer.layer.{l}.ffn.lin2.weight", ""},
    {Slot::kDownBias, "distilbert.transformer.layer.{l}.ffn.lin2.bias", ""},
    {Slot::kFfnNorm, "distilbert.transformer.layer.{l}.output_layer_norm.weight", ""},
    {Slot::kFfnNormBias, "distilbert.transformer.layer.{l}.output_layer_norm.bias", ""},
    {Slot::kPoolW, "pre_classifier.weight", ""},
    {Slot::kPoolB, "pre_classifier.bias", ""},
    {Slot::kClsW, "classifier.weight", ""},
    {Slot::kClsB, "classifier.bias", ""},
};

// config.json's sizes of DistilBERT.
const HfKeys kHfKeys = {
    hf_size("dim", &ModelConfig::dim),
    hf_size("n_layers", &ModelConfig::n_layers),
    hf_size("n_heads", &ModelConfig::n_heads),
    hf_size("hidden_dim", &ModelConfig::hidden_dim),
};

ArchConfig from_hf(const HfConfig& c, const TensorSource&) {
  ArchConfig a = encoder_from_hf_begin(c, "distilbert");
  ModelConfig& m = a.model;
  read_hf_keys(c, kHfKeys, &m);
  m.activation = hf_activation(c, "activation", "gelu");
  m.norm_eps = 1e-12f;
  a.encoder.relu_head = true;
  encoder_from_hf_end(c, &a);
  return a;
}

void to_hf(const Model& model, nlohmann::ordered_json* out) {
  const ModelConfig& m = model.config();
  nlohmann::ordered_json& j = *out;
  j["architectures"] = {"DistilBertForSequenceClassification"};
  j["model_type"] = "distilbert";
  write_hf_keys(m, kHfKeys, out);
  j["activation"] = hf_activation_name(m.activation);
  encoder_to_hf_end(model, out);
}

}  // namespace

const Architecture& distilbert_architecture() {
  static const Architecture a = hf_architecture("distilbert", "DistilBertForSequenceClassification",
                                                ModelKind::kClassifier, &kTensors, from_hf, to_hf);
  return a;
}

}  // namespace candor
