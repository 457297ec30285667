// A small transformer text classifier trained by candor: a WordPiece vocabulary built from the
// training texts, a BERT-layout encoder (token + learned position embeddings, post-LayerNorm
// blocks, the [CLS] state through a tanh pooler into a softmax head), trained with train_loop on
// knowledge distillation (T^2-scaled KL between temperature-softened teacher and student
// distributions, mixed with hard-label cross-entropy) or on labels alone. It is saved as a
// Hugging Face BERT folder (config.json, model.safetensors, tokenizer.json) that load_model reads
// back as an EncoderClassifier, so every explainer can explain it. Part of candor_train.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "candor/classifier.h"
#include "candor/model.h"
#include "candor/options.h"
#include "candor/train.h"

namespace candor::train {

struct TransformerOptions {
  int64_t dim = 64, layers = 2, heads = 4, hidden = 256;
  int64_t max_len = 128;  // tokens per text with [CLS] (longer texts are cut); the context
  int64_t vocab = 4000;   // WordPiece vocabulary size (at most; specials and characters included)
  double temperature = 2.0;  // KD temperature T
  double alpha = 0.5;        // weight of the KD term; 1 - alpha weighs the hard-label loss
  double dropout = 0.1;      // on embeddings, attention, block outputs and the pooled state
};

// The declared options of "transformer[:key=value,...]": dim, layers, heads, hidden, max_len,
// vocab, temperature, alpha, dropout (TransformerOptions; defaults from its fields) and epochs,
// batch, lr, weight_decay, warmup, clip (TrainOptions; the transformer's schedule: epochs 10,
// batch 32, lr 1e-3, warm-up 0.1).
OptionSpecs transformer_options();
// Parses "transformer[:key=value,...]" against transformer_options(): the given TransformerOptions
// fields are set (the others keep the caller's values), the schedule (epochs, batch, lr, warm-up)
// is set to the given values or the transformer's defaults, weight_decay and clip only when given
// (other TrainOptions fields, e.g. seed and checkpoint, are kept). Throws Error(kInvalidArgument)
// for another kind, an unknown key, a value out of range, or dim not a multiple of heads.
void parse_transformer_spec(const std::string& spec, TransformerOptions* t, TrainOptions* o);

// Its WordPiece vocabulary: build_wordpiece_vocab (candor/tokenizer_trainers.h).
class TransformerClassifier : public TextClassifier {
 public:
  // Trains on `texts` with target probabilities `target` [n][classes] (a teacher's, or one-hot
  // labels) and hard labels `hard` [n] (class index; -1: the target's most probable class).
  // Loss per batch: alpha * T^2 * KL(softmax(log target / T) || softmax(logits / T)) +
  // (1 - alpha) * cross-entropy(logits, hard). Throws Error(kInvalidArgument) for empty or
  // mismatched inputs, fewer than two classes or bad options.
  static std::unique_ptr<TransformerClassifier> train(
      const std::vector<std::string>& texts, const std::vector<std::vector<double>>& target,
      const std::vector<int>& hard, const std::vector<std::string>& classes,
      const TransformerOptions& t, const TrainOptions& o);

  std::string kind() const override { return "transformer"; }
  const std::vector<std::string>& labels() const override;
  std::vector<double> predict_proba(const std::string& text) const override;
  std::vector<std::vector<double>> predict_proba_batch(
      const std::vector<std::string>& texts) const override;

  // The trained encoder as candor's EncoderClassifier (it shares the weights).
  const Model& model() const { return *model_; }
  std::shared_ptr<const Model> shared_model() const { return model_; }
  // All parameters in a fixed order (tests of reproducibility).
  const std::vector<at::Tensor>& parameters() const { return params_; }
  const std::vector<std::string>& vocabulary() const { return vocab_; }
  const TransformerOptions& options() const { return options_; }
  // Mean training loss of each epoch.
  const std::vector<double>& epoch_losses() const { return epoch_losses_; }
  // Writes a Hugging Face BERT folder: config.json, model.safetensors, tokenizer.json.
  void save(const std::string& dir) const;

 private:
  TransformerClassifier() = default;
  std::shared_ptr<const Model> model_;
  std::vector<at::Tensor> params_;
  std::vector<std::string> vocab_;
  std::string tokenizer_json_;
  TransformerOptions options_;
  std::vector<double> epoch_losses_;
};

// As a distillation student: distill::make_transformer_student (candor/distill.h). A loaded
// classifier folder: model_text_classifier (candor/classifier.h).

}  // namespace candor::train
