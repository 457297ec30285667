// The transformer student and classifier in `candor distill` and `candor train`.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "candor/data.h"
#include "candor/distill.h"

namespace candor::cli {

// `candor distill --student transformer[:opts]`: makes the student with a progress bar (loss and
// fidelity) and its checkpoint at OUT/student.ckpt (`resume`: continue from it).
std::function<std::unique_ptr<distill::Student>()> transformer_student_factory(
    const std::string& spec, uint64_t seed, const std::string& out, bool resume);
// Saves the transformer student of `r` as a Hugging Face folder OUT/model and says so; nothing
// for other students.
void save_transformer_student(const distill::DistillResult& r, const std::string& out);

// `candor train --model transformer[:opts]`: a transformer classifier trained on the labels
// alone, saved as a Hugging Face folder in `out` with summary.json.
struct TrainTransformerArgs {
  std::string data, label, text_column = "text", out, spec = "transformer";
  double test_fraction = 0.2;
  std::string split_column;  // train/validation/test per row; "": seeded by test_fraction
  uint64_t seed = 0;
  bool resume = false;
  int epochs = -1;     // > 0: overrides the spec
  int64_t batch = -1;  // > 0: overrides the spec
  double lr = -1;      // > 0: overrides the spec
  // Names the model gives the classes (the label values in sorted order), e.g. negative,positive
  // for labels 0,1; empty: the label values.
  std::vector<std::string> class_names;
};
int train_transformer(const data::Table& table, const TrainTransformerArgs& a);

// True when `path` is a Hugging Face folder whose config.json names a sequence-classification
// architecture (…ForSequenceClassification).
bool looks_like_text_classifier(const std::string& path);

}  // namespace candor::cli
