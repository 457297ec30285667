// RoBERTa sequence classifiers (RobertaForSequenceClassification): BERT's encoder (bert.cpp)
// with positions that start after the padding id and a two-layer head (classifier.dense, tanh,
// classifier.out_proj).
#include "models/arch/arch.h"

namespace candor {
namespace {

const TensorTable kTensors =
    bert_tensors("roberta.", {{Slot::kPoolW, "classifier.dense.weight", ""},
                              {Slot::kPoolB, "classifier.dense.bias", ""},
                              {Slot::kClsW, "classifier.out_proj.weight", ""},
                              {Slot::kClsB, "classifier.out_proj.bias", ""}});

ArchConfig from_hf(const HfConfig& c, const TensorSource&) {
  return bert_from_hf(c, "roberta", true);
}

}  // namespace

const Architecture& roberta_architecture() {
  static const Architecture a =
      hf_architecture("roberta", "RobertaForSequenceClassification", ModelKind::kClassifier,
                      &kTensors, from_hf, bert_to_hf);
  return a;
}

}  // namespace candor
