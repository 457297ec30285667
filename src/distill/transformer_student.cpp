// The transformer student: the transformer classifier of text_transformer.h fitted to the
// teacher's probabilities on the one text column, with its settings and training figures as the
// "global explanation" (it is no glass box: explain it token by token).
#include <nlohmann/json.hpp>

#include <chrono>

#include "candor/distill.h"
#include "candor/error.h"
#include "candor/text_transformer.h"

namespace candor::distill {

namespace {

class TransformerStudent : public Student {
 public:
  TransformerStudent(std::string spec, train::TrainOptions o) : spec_(std::move(spec)), train_(o) {
    train::parse_transformer_spec(spec_, &t_, &train_);
  }
  std::string kind() const override { return "transformer"; }
  bool reads_text() const override { return true; }
  void fit(const Featurizer&, const std::vector<std::vector<uint16_t>>&, const Probs&) override {
    throw Error(ErrorCode::kInternal, "the transformer student reads texts (fit_text)");
  }
  Probs predict(const std::vector<std::vector<uint16_t>>&) const override {
    throw Error(ErrorCode::kInternal, "the transformer student reads texts (predict_text)");
  }
  void fit_text(const std::vector<std::string>& texts, const Probs& target,
                const std::vector<int>& labels, const std::vector<std::string>& classes) override {
    auto t0 = std::chrono::steady_clock::now();
    clf_ = train::TransformerClassifier::train(texts, target, labels, classes, t_, train_);
    seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rows_ = texts.size();
  }
  Probs predict_text(const std::vector<std::string>& texts) const override {
    if (!clf_) throw Error(ErrorCode::kInternal, "the transformer student is not trained");
    return clf_->predict_proba_batch(texts);
  }
  nlohmann::json explain() const override {
    nlohmann::json j = {{"kind", "transformer"},
                        {"spec", spec_},
                        {"architecture", "bert"},
                        {"dim", t_.dim},
                        {"layers", t_.layers},
                        {"heads", t_.heads},
                        {"hidden", t_.hidden},
                        {"max_len", t_.max_len},
                        {"temperature", t_.temperature},
                        {"alpha", t_.alpha},
                        {"dropout", t_.dropout},
                        {"epochs", train_.epochs},
                        {"batch", train_.batch_size},
                        {"lr", train_.learning_rate},
                        {"seed", train_.seed}};
    if (clf_) {
      j["vocabulary"] = clf_->vocabulary().size();
      j["parameters"] = clf_->model().n_params();
      j["epoch_losses"] = clf_->epoch_losses();
      j["training_rows"] = rows_;
      j["training_seconds"] = seconds_;
      j["rows_per_second"] = seconds_ > 0 ? double(rows_) * train_.epochs / seconds_ : 0.0;
    }
    return j;
  }
  const train::TransformerClassifier* classifier() const { return clf_.get(); }

 private:
  std::string spec_;
  train::TransformerOptions t_;
  train::TrainOptions train_;
  std::unique_ptr<train::TransformerClassifier> clf_;
  double seconds_ = 0;
  size_t rows_ = 0;
};

}  // namespace

std::unique_ptr<Student> make_transformer_student(const std::string& spec,
                                                  const train::TrainOptions& o) {
  return std::make_unique<TransformerStudent>(spec, o);
}

const train::TransformerClassifier* transformer_of(const Student& student) {
  const auto* s = dynamic_cast<const TransformerStudent*>(&student);
  return s ? s->classifier() : nullptr;
}

}  // namespace candor::distill
