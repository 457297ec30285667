// A text classifier over a loaded sequence-classification model, and its pieces (encoding,
// padding, batched probabilities) that the transformer classifier candor trains shares.
#include <ATen/ATen.h>

#include <algorithm>

#include "candor/classifier.h"
#include "candor/error.h"

namespace candor {

namespace {

constexpr int32_t kPad = 0, kCls = 2;

class ModelTextClassifier : public TextClassifier {
 public:
  explicit ModelTextClassifier(std::shared_ptr<const Model> m) : m_(std::move(m)) {
    if (m_->config().kind != ModelKind::kClassifier)
      throw Error(ErrorCode::kInvalidArgument,
                  "the " + m_->config().architecture + " model is not a sequence classifier",
                  "give a BERT, RoBERTa or DistilBERT classifier (or a saved transformer student)");
  }
  std::string kind() const override { return m_->config().architecture + "-classifier"; }
  const std::vector<std::string>& labels() const override { return m_->config().labels; }
  std::vector<double> predict_proba(const std::string& text) const override {
    return predict_proba_batch({text})[0];
  }
  std::vector<std::vector<double>> predict_proba_batch(
      const std::vector<std::string>& texts) const override {
    auto ids = encode_for_classifier(m_->tokenizer(), texts, m_->config().max_seq_len);
    return class_probabilities(ids, static_cast<int64_t>(labels().size()),
                               [&](const at::Tensor& t, const at::Tensor& mask) {
                                 ForwardArgs a;
                                 a.tokens = t;
                                 a.attention_mask = mask;
                                 a.last_only = true;
                                 return m_->forward(a).select(1, 0);  // [B, C]
                               });
  }

 private:
  std::shared_ptr<const Model> m_;
};

}  // namespace

std::unique_ptr<TextClassifier> model_text_classifier(std::shared_ptr<const Model> model) {
  return std::make_unique<ModelTextClassifier>(std::move(model));
}

std::vector<std::vector<int32_t>> encode_for_classifier(const Tokenizer& tok,
                                                        const std::vector<std::string>& texts,
                                                        int64_t max_len) {
  std::vector<std::vector<int32_t>> out;
  out.reserve(texts.size());
  for (const std::string& s : texts) {
    std::vector<TokenId> ids = tok.encode(s, true, false);
    if (ids.empty()) ids = {kCls};
    if (static_cast<int64_t>(ids.size()) > max_len) ids.resize(static_cast<size_t>(max_len));
    out.emplace_back(ids.begin(), ids.end());
  }
  return out;
}

std::pair<at::Tensor, at::Tensor> pad_token_rows(
    const std::vector<const std::vector<int32_t>*>& rows) {
  int64_t T = 1;
  for (const auto* r : rows) T = std::max<int64_t>(T, static_cast<int64_t>(r->size()));
  const int64_t B = static_cast<int64_t>(rows.size());
  at::Tensor tok = at::full({B, T}, kPad, at::kLong), mask = at::zeros({B, T}, at::kBool);
  int64_t* tp = tok.data_ptr<int64_t>();
  bool* mp = mask.data_ptr<bool>();
  for (int64_t b = 0; b < B; ++b)
    for (size_t t = 0; t < rows[b]->size(); ++t) {
      tp[b * T + static_cast<int64_t>(t)] = (*rows[b])[t];
      mp[b * T + static_cast<int64_t>(t)] = true;
    }
  return {tok, mask};
}

std::vector<std::vector<double>> class_probabilities(const std::vector<std::vector<int32_t>>& ids,
                                                     int64_t n_classes,
                                                     const ClassLogitsFn& logits) {
  std::vector<size_t> order(ids.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return ids[a].size() < ids[b].size(); });
  std::vector<std::vector<double>> out(ids.size(),
                                       std::vector<double>(static_cast<size_t>(n_classes)));
  at::NoGradGuard ng;
  for (size_t s = 0; s < order.size(); s += 64) {
    std::vector<const std::vector<int32_t>*> rows;
    for (size_t i = s; i < std::min(order.size(), s + 64); ++i) rows.push_back(&ids[order[i]]);
    auto [tok, mask] = pad_token_rows(rows);
    at::Tensor p = at::softmax(logits(tok, mask), -1).to(at::kDouble).contiguous();  // [b, C]
    const double* d = p.data_ptr<double>();
    for (size_t i = 0; i < rows.size(); ++i)
      for (int64_t k = 0; k < n_classes; ++k) out[order[s + i]][k] = d[i * n_classes + k];
  }
  return out;
}

}  // namespace candor
