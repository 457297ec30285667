// BERT sequence classifiers (BertForSequenceClassification): post-LayerNorm encoder blocks,
// learned absolute and token-type embeddings, GELU, a tanh pooler on [CLS] and a linear
// classifier. RoBERTa (roberta.cpp) shares the encoder's tensors and config fields.
#include "models/arch/arch.h"

namespace candor {

TensorTable bert_tensors(const std::string& p, const TensorTable& head) {
  const std::string l = p + "encoder.layer.{l}.";
  TensorTable t = {
      {Slot::kTokEmbd, p + "embeddings.word_embeddings.weight", ""},
      {Slot::kPosEmbd, p + "embeddings.position_embeddings.weight", ""},
      {Slot::kTypeEmbd, p + "embeddings.token_type_embeddings.weight", ""},
      {Slot::kEmbNorm, p + "embeddings.LayerNorm.weight", ""},
      {Slot::kEmbNormBias, p + "embeddings.LayerNorm.bias", ""},
      {Slot::kQ, l + "attention.self.query.weight", ""},
      {Slot::kQBias, l + "attention.self.query.bias", ""},
      {Slot::kK, l + "attention.self.key.weight", ""},
      {Slot::kKBias, l + "attention.self.key.bias", ""},
      {Slot::kV, l + "attention.self.value.weight", ""},
      {Slot::kVBias, l + "attention.self.value.bias", ""},
      {Slot::kO, l + "attention.output.dense.weight", ""},
      {Slot::kOBias, l + "attention.output.dense.bias", ""},
      {Slot::kAttnNorm, l + "attention.output.LayerNorm.weight", ""},
      {Slot::kAttnNormBias, l + "attention.output.LayerNorm.bias", ""},
      {Slot::kUp, l + "intermediate.dense.weight", ""},
      {Slot::kUpBias, l + "intermediate.dense.bias", ""},
      {Slot::kDown, l + "output.dense.weight", ""},
      {Slot::kDownBias, l + "output.dense.bias", ""},
      {Slot::kFfnNorm, l + "output.LayerNorm.weight", ""},
      {Slot::kFfnNormBias, l + "output.LayerNorm.bias", ""},
  };
  t.insert(t.end(), head.begin(), head.end());
  return t;
}

// config.json's sizes of BERT and RoBERTa.
const HfKeys kBertHfKeys = {
    hf_size("hidden_size", &ModelConfig::dim),
    hf_size("num_hidden_layers", &ModelConfig::n_layers),
    hf_size("num_attention_heads", &ModelConfig::n_heads),
    hf_size("intermediate_size", &ModelConfig::hidden_dim),
};

ArchConfig bert_from_hf(const HfConfig& c, const std::string& family,
                        bool positions_after_padding) {
  ArchConfig a = encoder_from_hf_begin(c, family);
  ModelConfig& m = a.model;
  read_hf_keys(c, kBertHfKeys, &m);
  m.activation = hf_activation(c, "hidden_act", "gelu");
  m.norm_eps = static_cast<float>(c.number("layer_norm_eps", 1e-12));
  const std::string pe = c.string("position_embedding_type", "absolute");
  if (pe != "absolute") throw c.unsupported("position_embedding_type '" + pe + "'");
  a.type_vocab = c.integer("type_vocab_size", 2);
  if (positions_after_padding) a.encoder.position_offset = c.integer("pad_token_id", 1) + 1;
  encoder_from_hf_end(c, &a);
  return a;
}

void bert_to_hf(const Model& model, nlohmann::ordered_json* out) {
  const ModelConfig& m = model.config();
  const Architecture* a = find_architecture(m.architecture);
  nlohmann::ordered_json& j = *out;
  j["architectures"] = {a && a->family == "roberta" ? a->hf_classes.front()
                                                    : bert_architecture().hf_classes.front()};
  j["model_type"] = m.architecture;
  write_hf_keys(m, kBertHfKeys, out);
  j["hidden_act"] = hf_activation_name(m.activation);
  j["layer_norm_eps"] = m.norm_eps;
  const auto* enc = dynamic_cast<const EncoderClassifier*>(&model);
  j["type_vocab_size"] = enc ? enc->weights().type_embeddings.size(0) : 2;
  if (m.architecture == "roberta") j["pad_token_id"] = encoder_settings(model).position_offset - 1;
  encoder_to_hf_end(model, out);
}

namespace {

const TensorTable kTensors = bert_tensors("bert.", {{Slot::kPoolW, "bert.pooler.dense.weight", ""},
                                                    {Slot::kPoolB, "bert.pooler.dense.bias", ""},
                                                    {Slot::kClsW, "classifier.weight", ""},
                                                    {Slot::kClsB, "classifier.bias", ""}});

ArchConfig from_hf(const HfConfig& c, const TensorSource&) {
  return bert_from_hf(c, "bert", false);
}

}  // namespace

const Architecture& bert_architecture() {
  static const Architecture a =
      hf_architecture("bert", "BertForSequenceClassification", ModelKind::kClassifier, &kTensors,
                      from_hf, bert_to_hf);
  return a;
}

}  // namespace candor
