// Positive values of a label / prediction column and the binary outcomes of a fairness audit.
#include <algorithm>
#include <cctype>
#include <set>

#include "candor/audit.h"
#include "candor/error.h"

namespace candor::audit {

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string list_values(const CodedColumn& c) {
  std::string s;
  for (size_t i = 0; i < c.values.size() && i < 20; ++i) s += (i ? ", " : "") + ("'" + c.values[i] + "'");
  if (c.values.size() > 20) s += ", ... (" + std::to_string(c.values.size()) + " values)";
  return s;
}

}  // namespace

std::vector<std::string> positive_values(const CodedColumn& column,
                                         const std::vector<std::string>& given,
                                         const std::string& option_name) {
  if (!given.empty()) {
    for (const std::string& g : given) {
      if (std::find(column.values.begin(), column.values.end(), g) == column.values.end())
        throw Error(ErrorCode::kInvalidArgument,
                    option_name + " '" + g + "' is not a value of column '" + column.column +
                        "' (its values are: " + list_values(column) + ")",
                    "give " + option_name + " one or more of the column's values, comma-separated");
    }
    return given;
  }
  std::set<std::string> seen;
  for (const std::string& v : column.values) seen.insert(lower(v));
  static const std::vector<std::pair<std::set<std::string>, std::string>> kPairs = {
      {{"0", "1"}, "1"},         {{"false", "true"}, "true"}, {{"no", "yes"}, "yes"},
      {{"neg", "pos"}, "pos"},   {{"negative", "positive"}, "positive"}};
  for (const auto& [set, pos] : kPairs) {
    if (std::includes(set.begin(), set.end(), seen.begin(), seen.end())) {
      std::vector<std::string> out;
      for (const std::string& v : column.values)
        if (lower(v) == pos) out.push_back(v);
      if (out.empty()) out.push_back(pos);
      return out;
    }
  }
  throw Error(ErrorCode::kInvalidArgument,
              "column '" + column.column + "' has values outside a yes/no pair (" + list_values(column) +
                  "): which of them are the positive outcome?",
              "pass " + option_name + " V[,V...] naming the positive values");
}

BinaryOutcomes binarize(const AuditData& data, const std::vector<std::string>& label_positive,
                        const std::vector<std::string>& prediction_positive, double threshold) {
  BinaryOutcomes o;
  o.label_positive = positive_values(data.label, label_positive, "--label-positive");
  const size_t n = data.label.size();
  auto mask = [](const CodedColumn& c, const std::vector<std::string>& pos) {
    std::vector<uint8_t> m(c.values.size(), 0);
    for (size_t i = 0; i < c.values.size(); ++i)
      m[i] = std::find(pos.begin(), pos.end(), c.values[i]) != pos.end();
    return m;
  };
  const std::vector<uint8_t> lm = mask(data.label, o.label_positive);
  o.label.resize(n);
  for (size_t r = 0; r < n; ++r) o.label[r] = lm[data.label.codes[r]];
  const bool model = data.prediction.column == "model" && data.probability.size() > 1 &&
                     data.probability.size() == data.prediction.values.size();
  if (data.probability.size() > 1 && !model)
    throw Error(ErrorCode::kInvalidArgument,
                "a fairness audit reads one probability column (of the positive class), " +
                    std::to_string(data.probability.size()) + " are given",
                "pass --probability COL naming the positive class's probability");
  if (data.probability.size() == 1) o.score = data.probability[0];
  if (!data.prediction.column.empty()) {
    std::vector<std::string> pp = prediction_positive;
    if (pp.empty()) {
      for (const std::string& v : o.label_positive)
        if (std::find(data.prediction.values.begin(), data.prediction.values.end(), v) !=
            data.prediction.values.end())
          pp.push_back(v);
    }
    o.prediction_positive = pp.empty() ? positive_values(data.prediction, {}, "--prediction-positive")
                                       : positive_values(data.prediction, pp, "--prediction-positive");
    const std::vector<uint8_t> pm = mask(data.prediction, o.prediction_positive);
    o.prediction.resize(n);
    for (size_t r = 0; r < n; ++r) o.prediction[r] = pm[data.prediction.codes[r]];
    if (model) {  // a model's class probabilities: the score is the positive classes' mass
      o.score.assign(n, 0.0f);
      for (size_t k = 0; k < pm.size(); ++k)
        if (pm[k])
          for (size_t r = 0; r < n; ++r) o.score[r] += data.probability[k][r];
      for (float& v : o.score) v = std::min(v, 1.0f);
    }
  } else if (!o.score.empty()) {
    if (!(threshold >= 0 && threshold <= 1))
      throw Error(ErrorCode::kInvalidArgument, "the decision threshold must be in [0, 1]",
                  "pass --threshold T with 0 <= T <= 1");
    o.prediction.resize(n);
    for (size_t r = 0; r < n; ++r) o.prediction[r] = o.score[r] >= threshold;
    o.prediction_positive = {"score >= " + std::to_string(threshold)};
  } else {
    throw Error(ErrorCode::kInvalidArgument, "no predictions: neither a prediction nor a probability column",
                "pass --prediction COL or --probability COL (or --model M)");
  }
  return o;
}

}  // namespace candor::audit
