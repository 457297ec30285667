// TextClassifier defaults.
#include "candor/classifier.h"
#include "candor/error.h"

namespace candor {

std::vector<std::vector<double>> TextClassifier::predict_proba_batch(
    const std::vector<std::string>& texts) const {
  std::vector<std::vector<double>> out;
  out.reserve(texts.size());
  for (const std::string& t : texts) out.push_back(predict_proba(t));
  return out;
}

int TextClassifier::predict(const std::string& text) const {
  std::vector<double> p = predict_proba(text);
  int best = 0;
  for (size_t i = 1; i < p.size(); ++i)
    if (p[i] > p[best]) best = static_cast<int>(i);
  return best;
}

ClassifierExplanation TextClassifier::explain(const std::string&, int, int) const {
  throw Error(ErrorCode::kUnsupported, "the " + kind() + " classifier has no exact attributions",
              "explain it with a perturbation method (occlusion, Shapley sampling) instead");
}

int TextClassifier::label_index(const std::string& label) const {
  const auto& l = labels();
  for (size_t i = 0; i < l.size(); ++i)
    if (l[i] == label) return static_cast<int>(i);
  std::string have;
  for (const auto& x : l) have += (have.empty() ? "" : ", ") + x;
  throw Error(ErrorCode::kNotFound, "no label '" + label + "' (the labels are: " + have + ")");
}

nlohmann::ordered_json TextClassifier::describe() const {
  nlohmann::ordered_json j;
  j["format"] = kind();
  j["labels"] = labels();
  return j;
}

}  // namespace candor
