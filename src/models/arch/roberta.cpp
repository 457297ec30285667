// RoBERTa sequence classifiers (RobertaForSequenceClassification): BERT's encoder (bert.cpp)
// with positions that start after the padding id and a two-layer head (classifier.dense, tanh,
// classifier.out_proj).
#include "models/arch/arch.h"

namespace candor {
namespace {

const TensorTable kTensors = [] {
  TensorTable t = bert_encoder_tensors("roberta.");
  t.insert(t.end(), {
                        {Slot::kPoolW, "classifier.dense.weight", ""},
                        {Slot::kPoolB, "classifier.dense.bias", ""},
                        {Slot::kClsW, "classifier.out_proj.weight", ""},
                        {Slot::kClsB, "classifier.out_proj.bias", ""},
                    });
  return t;
}();

ArchConfig from_hf(const HfConfig& c, const TensorSource&) {
  ArchConfig a = encoder_from_hf_begin(c, "roberta");
  bert_from_hf(c, &a);
  a.encoder.position_offset = c.integer("pad_token_id", 1) + 1;  // positions start there
  encoder_from_hf_end(c, &a);
  return a;
}

}  // namespace

const Architecture& roberta_architecture() {
  static const Architecture a = [] {
    Architecture x;
    x.family = "roberta";
    x.hf_classes = {"RobertaForSequenceClassification"};
    x.kind = ModelKind::kClassifier;
    x.tensors = &kTensors;
    x.from_hf = from_hf;
    x.to_hf = bert_to_hf;
    return x;
  }();
  return a;
}

}  // namespace candor
