// Text classifiers: predict class probabilities for a text, name the labels, and (where the
// model allows it) attribute a score difference exactly to the input's words and n-grams.
// Distillation uses this interface for its text teachers (fastText, a causal LM through a prompt
// template and verbaliser tokens).
#pragma once

#include <ATen/core/Tensor.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "candor/model.h"

namespace candor {

// One input feature's share of the explained value.
struct TextFeatureAttribution {
  std::string kind;     // "word", "subword" (character n-gram) or "ngram" (word n-gram)
  std::string text;     // the word, the character n-gram, or the words of the n-gram
  int64_t token_begin;  // first token of the feature in ClassifierExplanation::tokens
  int64_t token_end;    // one past its last token
  double value;         // contribution; the values sum to ClassifierExplanation::explained
};

struct ClassifierExplanation {
  std::vector<std::string> tokens;  // the input as the classifier split it
  int target = 0;                   // class explained
  int contrast = -1;                // class it is contrasted with (-1: none)
  // What the attributions add up to: for softmax classifiers logit(target) - logit(contrast)
  // (= log p(target) / p(contrast)); for one-vs-all classifiers the target's logit.
  double explained = 0;
  std::string explained_name;  // e.g. "logit(__label__2) - logit(__label__1)"
  std::vector<TextFeatureAttribution> features;
};

class TextClassifier {
 public:
  virtual ~TextClassifier() = default;

  virtual std::string kind() const = 0;  // "fasttext", "lm-verbaliser", ...
  virtual const std::vector<std::string>& labels() const = 0;
  // Probabilities [n_labels] for one text.
  virtual std::vector<double> predict_proba(const std::string& text) const = 0;
  // Probabilities for many texts ([n_texts][n_labels]); the default calls predict_proba.
  virtual std::vector<std::vector<double>> predict_proba_batch(
      const std::vector<std::string>& texts) const;
  // The most probable class (first on ties).
  int predict(const std::string& text) const;
  // Exact additive attributions of `target` (against `contrast`; -1 = the model's default: the
  // other class for two-class softmax models). Throws Error(kUnsupported) for classifiers
  // without exact attributions, Error(kInvalidArgument) for classes out of range.
  virtual ClassifierExplanation explain(const std::string& text, int target,
                                        int contrast = -1) const;
  // Index of a label by name; throws Error(kNotFound) naming the labels otherwise.
  int label_index(const std::string& label) const;
  // What the classifier is, for `candor info`: an object of plain values ("format",
  // "parameters", ...); the default holds the kind and the labels.
  virtual nlohmann::ordered_json describe() const;
};

// Loads a fastText supervised classifier (`.bin`, or quantised `.ftz`), read directly from the
// file format of fastText 0.9 (file versions 11 and 12). Texts are split on whitespace and end
// with the end-of-line token, as `fasttext predict` does for one line (line breaks inside the
// text count as spaces). Throws Error(kNotFound) for a missing file, Error(kInvalidArgument)
// for a file that is not a fastText model or is truncated, Error(kUnsupported) for
// unsupervised (cbow / skipgram) models.
std::unique_ptr<TextClassifier> load_fasttext(const std::string& path);
// True when `path` is a file that starts with fastText's magic number (a .bin or .ftz model,
// whatever its name); false for anything else, a folder or a missing file included.
bool is_fasttext_file(const std::string& path);

// --- sequence classifiers (models candor loads) -------------------------------------------------

// A text classifier over a sequence-classification model candor loads (BERT, RoBERTa,
// DistilBERT; e.g. a saved transformer student): the text is encoded with the tokenizer's
// leading special tokens and cut to the model's context. Throws Error(kInvalidArgument) for a
// causal LM.
std::unique_ptr<TextClassifier> model_text_classifier(std::shared_ptr<const Model> model);

// The pieces of that classifier, for models that run their own forward pass (the transformer
// classifier candor trains). Token ids of `texts` with the tokenizer's leading special tokens
// ([CLS]), cut to `max_len`; an empty encoding becomes [CLS] (id 2) alone.
std::vector<std::vector<int32_t>> encode_for_classifier(const Tokenizer& tokenizer,
                                                        const std::vector<std::string>& texts,
                                                        int64_t max_len);
// Pads token lists into tokens [B, T] (long, padding id 0) and mask [B, T] (bool, true on real
// tokens).
std::pair<at::Tensor, at::Tensor> pad_token_rows(
    const std::vector<const std::vector<int32_t>*>& rows);
// Class logits [B, C] of padded tokens and mask [B, T].
using ClassLogitsFn = std::function<at::Tensor(const at::Tensor& tokens, const at::Tensor& mask)>;
// Softmax probabilities [n][n_classes] of encoded texts, run in batches of 64 texts of similar
// length, without gradients.
std::vector<std::vector<double>> class_probabilities(const std::vector<std::vector<int32_t>>& ids,
                                                     int64_t n_classes,
                                                     const ClassLogitsFn& logits);

}  // namespace candor
