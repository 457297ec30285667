// A causal LM as a classifier through a prompt template and verbaliser tokens.
#include <ATen/ATen.h>

#include "candor/distill.h"
#include "candor/error.h"

namespace candor::distill {

std::string fill_template(const std::string& tpl, const data::Table& table, size_t row) {
  std::string out;
  size_t i = 0;
  while (i < tpl.size()) {
    if (tpl[i] == '{') {
      size_t close = tpl.find('}', i);
      if (close == std::string::npos)
        throw Error(ErrorCode::kInvalidArgument,
                    "prompt template: '{' without '}' at offset " + std::to_string(i));
      const std::string name = tpl.substr(i + 1, close - i - 1);
      const data::Column& c = table.column(name);  // names the file and its columns
      out += c.is_missing(row) ? std::string() : c.raw[row];
      i = close + 1;
    } else {
      out += tpl[i++];
    }
  }
  return out;
}

namespace {

class LmTeacher : public Teacher {
 public:
  LmTeacher(std::shared_ptr<const Model> model, std::string tpl, std::vector<std::string> classes,
            std::vector<std::string> verbalisers)
      : model_(std::move(model)), tpl_(std::move(tpl)), classes_(std::move(classes)) {
    if (classes_.size() != verbalisers.size() || classes_.size() < 2)
      throw Error(ErrorCode::kInvalidArgument,
                  "LM teacher: give one verbaliser per class (at least two classes)");
    for (size_t k = 0; k < verbalisers.size(); ++k) {
      // A leading space is the tokenizer's dummy prefix (SentencePiece-style "▁yes").
      const std::string& v = verbalisers[k];
      std::vector<TokenId> ids =
          model_->tokenizer().encode(!v.empty() && v[0] == ' ' ? v.substr(1) : v, false);
      if (ids.empty())
        throw Error(ErrorCode::kInvalidArgument,
                    "LM teacher: verbaliser '" + verbalisers[k] + "' encodes to no token");
      for (size_t j = 0; j < tokens_.size(); ++j)
        if (tokens_[j] == ids[0])
          throw Error(ErrorCode::kInvalidArgument, "LM teacher: verbalisers '" + verbalisers[j] +
                                                       "' and '" + verbalisers[k] +
                                                       "' start with the same token");
      tokens_.push_back(ids[0]);
    }
  }
  std::string describe() const override { return "causal LM with prompt '" + tpl_ + "'"; }
  const std::vector<std::string>& classes() const override { return classes_; }
  Probs predict(const data::Table& t, const std::vector<size_t>& rows) const override {
    at::NoGradGuard ng;
    Probs out;
    at::Tensor idx = at::tensor(std::vector<int64_t>(tokens_.begin(), tokens_.end()), at::kLong);
    for (size_t r : rows) {
      std::vector<TokenId> ids = model_->tokenizer().encode(fill_template(tpl_, t, r), true);
      if (static_cast<int64_t>(ids.size()) > model_->config().max_seq_len)
        throw Error(ErrorCode::kResourceExhausted,
                    t.where(r) + ": the filled prompt has " + std::to_string(ids.size()) +
                        " tokens, the model's context is " +
                        std::to_string(model_->config().max_seq_len));
      at::Tensor logits = model_->logits(ids);  // [seq, vocab]
      at::Tensor p = at::softmax(logits[-1].index_select(0, idx).to(at::kDouble), 0);
      out.emplace_back(p.data_ptr<double>(), p.data_ptr<double>() + p.numel());
    }
    return out;
  }

 private:
  std::shared_ptr<const Model> model_;
  std::string tpl_;
  std::vector<std::string> classes_;
  std::vector<TokenId> tokens_;
};

}  // namespace

std::unique_ptr<Teacher> lm_teacher(std::shared_ptr<const Model> model, std::string tpl,
                                    std::vector<std::string> classes,
                                    std::vector<std::string> verbalisers) {
  return std::make_unique<LmTeacher>(std::move(model), std::move(tpl), std::move(classes),
                                     std::move(verbalisers));
}

}  // namespace candor::distill
