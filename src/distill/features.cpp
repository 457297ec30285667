// Student features: numeric columns in quantile bins, categorical columns, text n-grams.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>
#include <unordered_map>

#include "candor/distill.h"
#include "candor/error.h"

namespace candor::distill {

namespace {

std::string fmt(double v) {
  std::ostringstream ss;
  ss.precision(4);
  ss << v;
  return ss.str();
}

bool is_word_byte(unsigned char c) { return std::isalnum(c) || c == '\'' || c >= 0x80; }

// Words longer than this (a URL, an encoded blob, a 50 MB line without spaces) are part of no
// n-gram feature: they would only be copied into every n-gram that holds them (several times
// the text) to be dropped by min_count.
constexpr size_t kMaxWordBytes = 256;

}  // namespace

std::vector<std::string> Featurizer::words(const std::string& text, bool lowercase) {
  std::vector<std::string> out;
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (is_word_byte(c)) {
      // The whole word is copied once, at its final size (appending a byte at a time grows the
      // string by doubling: twice a long word at the peak).
      size_t end = i;
      while (end < n && is_word_byte(static_cast<unsigned char>(text[end]))) ++end;
      std::string w(text, i, end - i);
      if (lowercase)
        for (char& ch : w)
          if (static_cast<unsigned char>(ch) < 0x80)
            ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      out.push_back(std::move(w));
      i = end;
      continue;
    }
    if (!std::isspace(c) && c != '"') out.emplace_back(1, static_cast<char>(c));
    ++i;
  }
  return out;
}

void Featurizer::fit(const data::Table& table, const std::vector<size_t>& rows,
                     const FeatureOptions& o) {
  options_ = o;
  features_.clear();
  ngram_index_.clear();
  text_column_.clear();
  std::vector<std::string> cols = o.columns;
  if (cols.empty()) {
    for (const auto& c : table.columns()) {
      bool excluded = false;
      for (const auto& e : o.exclude) excluded = excluded || e == c.name;
      if (!excluded) cols.push_back(c.name);
    }
  }
  if (cols.empty())
    throw Error(ErrorCode::kInvalidArgument,
                table.source() + ": no input columns left for the student",
                "name the input columns, or exclude fewer");
  for (const std::string& name : cols) {
    const data::Column& c = table.column(name);  // throws naming the file and its columns
    Feature f;
    f.name = name;
    f.column = name;
    if (c.type == data::ColumnType::kNumeric) {
      f.kind = Feature::kNumeric;
      std::vector<double> v;
      for (size_t r : rows)
        if (!c.is_missing(r)) v.push_back(c.numeric[r]);
      std::sort(v.begin(), v.end());
      std::vector<double> uniq = v;
      uniq.erase(std::unique(uniq.begin(), uniq.end()), uniq.end());
      if (static_cast<int>(uniq.size()) <= o.max_bins) {
        f.upper = uniq;
      } else {
        for (int b = 1; b < o.max_bins; ++b) {
          double q = v[static_cast<size_t>(double(b) / o.max_bins * (v.size() - 1))];
          if (f.upper.empty() || q > f.upper.back()) f.upper.push_back(q);
        }
        // The cuts are inner quantiles: the last bin (above the last cut) is added, not put in
        // place of the last cut (which, on a skewed column such as a capital gain that is 0 in
        // 92% of rows, is the only cut among its non-zero values).
        if (f.upper.back() < v.back()) f.upper.push_back(v.back());
      }
      if (f.upper.empty()) f.upper.push_back(0.0);
      f.upper.back() = INFINITY;
      // The mean training value of each bin (the linear student's value of the bin).
      std::vector<double> sum(f.upper.size(), 0.0), cnt(f.upper.size(), 0.0);
      for (double x : v) {
        size_t b = std::min<size_t>(std::lower_bound(f.upper.begin(), f.upper.end(), x) -
                                        f.upper.begin(),
                                    f.upper.size() - 1);
        sum[b] += x;
        cnt[b] += 1;
      }
      for (size_t b = 0; b < f.upper.size(); ++b)
        f.centers.push_back(cnt[b] > 0 ? sum[b] / cnt[b] : (b > 0 ? f.upper[b - 1] : 0.0));
      // The explanations' baseline: the bin of the training mean (the missing bin when every
      // training value is missing).
      if (v.empty()) {
        f.baseline = static_cast<int>(f.upper.size());
      } else {
        double total = 0;
        for (double x : v) total += x;
        f.mean = total / static_cast<double>(v.size());
        f.baseline = static_cast<int>(std::min<size_t>(
            std::lower_bound(f.upper.begin(), f.upper.end(), f.mean) - f.upper.begin(),
            f.upper.size() - 1));
      }
      for (size_t b = 0; b < f.upper.size(); ++b) {
        if (f.upper.size() == 1)
          f.bin_labels.push_back("any");
        else if (b == 0)
          f.bin_labels.push_back("<= " + fmt(f.upper[0]));
        else if (b + 1 == f.upper.size())
          f.bin_labels.push_back("> " + fmt(f.upper[b - 1]));
        else
          f.bin_labels.push_back("(" + fmt(f.upper[b - 1]) + ", " + fmt(f.upper[b]) + "]");
      }
      f.bin_labels.push_back("missing");
      features_.push_back(std::move(f));
    } else if (c.type == data::ColumnType::kCategorical) {
      f.kind = Feature::kCategorical;
      std::vector<size_t> seen(c.categories.size(), 0);
      for (size_t r : rows)
        if (!c.is_missing(r)) ++seen[c.codes[r]];
      size_t most = 0;  // the explanations' baseline: the most frequent level (the first of ties)
      for (size_t k = 0; k < c.categories.size(); ++k) {
        if (!seen[k]) continue;
        if (f.baseline < 0 || seen[k] > most) {
          most = seen[k];
          f.baseline = static_cast<int>(f.bin_labels.size());
        }
        f.bin_labels.push_back(c.categories[k]);
      }
      if (f.baseline < 0) f.baseline = 0;  // no level seen: the "missing or unseen" bin
      f.bin_labels.push_back("missing or unseen");
      features_.push_back(std::move(f));
    } else {
      if (!text_column_.empty())
        throw Error(
            ErrorCode::kInvalidArgument,
            table.source() + ": more than one text column ('" + text_column_ + "', '" + name + "')",
            "give the input columns explicitly (one text column)");
      text_column_ = name;
    }
  }
  if (!text_column_.empty()) {
    const data::Column& c = table.column(text_column_);
    std::unordered_map<std::string, int> df;
    for (size_t r : rows) {
      if (c.is_missing(r)) continue;
      std::vector<std::string> w = words(c.raw[r], o.lowercase);
      std::vector<std::string> grams;
      for (size_t i = 0; i < w.size(); ++i) {
        if (w[i].size() > kMaxWordBytes) continue;
        std::string g = w[i];
        grams.push_back(g);
        for (int n = 2; n <= o.ngram_max && i + n <= w.size(); ++n) {
          if (w[i + n - 1].size() > kMaxWordBytes) break;
          g += " " + w[i + n - 1];
          grams.push_back(g);
        }
      }
      std::sort(grams.begin(), grams.end());
      grams.erase(std::unique(grams.begin(), grams.end()), grams.end());
      for (auto& g : grams) ++df[g];
    }
    std::vector<std::pair<std::string, int>> vocab;
    for (auto& [g, n] : df)
      if (n >= o.min_count) vocab.emplace_back(g, n);
    std::sort(vocab.begin(), vocab.end(), [](const auto& a, const auto& b) {
      return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    if (static_cast<int>(vocab.size()) > o.max_vocab) vocab.resize(o.max_vocab);
    for (auto& [g, n] : vocab) {
      Feature f;
      f.kind = Feature::kNgram;
      f.name = g;
      f.column = text_column_;
      f.bin_labels = {"absent", "present"};
      f.baseline = 0;
      ngram_index_.emplace_back(g, features_.size());
      features_.push_back(std::move(f));
    }
    std::sort(ngram_index_.begin(), ngram_index_.end());
  }
  if (features_.empty())
    throw Error(ErrorCode::kInvalidArgument,
                table.source() +
                    ": the inputs give the student no features (an empty text "
                    "vocabulary?)",
                "lower min_count or give more rows");
}

std::vector<std::vector<uint16_t>> Featurizer::transform(const data::Table& table,
                                                         const std::vector<size_t>& rows) const {
  std::vector<std::vector<uint16_t>> bins(features_.size() + (text_column_.empty() ? 0 : 1),
                                          std::vector<uint16_t>(rows.size(), 0));
  for (size_t j = 0; j < features_.size(); ++j) {
    const Feature& f = features_[j];
    if (f.kind == Feature::kNgram) continue;
    const data::Column& c = table.column(f.column);
    const uint16_t missing_bin = static_cast<uint16_t>(f.n_bins() - 1);
    if (f.kind == Feature::kNumeric) {
      if (c.type != data::ColumnType::kNumeric)
        throw Error(ErrorCode::kInvalidArgument, table.source() + ": column '" + f.column +
                                                     "' is " + data::column_type_name(c.type) +
                                                     ", the student was trained on numbers");
      for (size_t i = 0; i < rows.size(); ++i) {
        size_t r = rows[i];
        if (c.is_missing(r)) {
          bins[j][i] = missing_bin;
          continue;
        }
        auto it = std::lower_bound(f.upper.begin(), f.upper.end(), c.numeric[r]);
        bins[j][i] =
            static_cast<uint16_t>(std::min<size_t>(it - f.upper.begin(), f.upper.size() - 1));
      }
    } else {
      std::unordered_map<std::string, uint16_t> index;
      for (size_t b = 0; b + 1 < f.bin_labels.size(); ++b)
        index.emplace(f.bin_labels[b], static_cast<uint16_t>(b));
      for (size_t i = 0; i < rows.size(); ++i) {
        size_t r = rows[i];
        auto it = c.is_missing(r) ? index.end() : index.find(c.raw[r]);
        bins[j][i] = it == index.end() ? missing_bin : it->second;
      }
    }
  }
  if (!text_column_.empty()) {
    const data::Column& c = table.column(text_column_);
    std::unordered_map<std::string, size_t> index(ngram_index_.begin(), ngram_index_.end());
    for (size_t i = 0; i < rows.size(); ++i) {
      size_t r = rows[i];
      if (c.is_missing(r)) continue;
      std::vector<std::string> w = words(c.raw[r], options_.lowercase);
      bins.back()[i] = static_cast<uint16_t>(std::min<size_t>(w.size(), 65535));
      for (size_t a = 0; a < w.size(); ++a) {
        if (w[a].size() > kMaxWordBytes) continue;
        std::string g = w[a];
        for (int n = 1; n <= options_.ngram_max && a + n <= w.size(); ++n) {
          if (n > 1 && w[a + n - 1].size() > kMaxWordBytes) break;
          if (n > 1) g += " " + w[a + n - 1];
          auto it = index.find(g);
          if (it != index.end()) bins[it->second][i] = 1;
        }
      }
    }
  }
  return bins;
}

SparseRows Featurizer::transform_sparse(const data::Table& table,
                                        const std::vector<size_t>& rows) const {
  // Numeric and categorical bins through the dense transform of those features alone (a few
  // columns); n-grams straight into the sparse rows.
  std::vector<size_t> dense_features;
  for (size_t j = 0; j < features_.size(); ++j)
    if (features_[j].kind != Feature::kNgram) dense_features.push_back(j);
  std::vector<std::vector<uint16_t>> dense;
  if (!dense_features.empty()) {
    Featurizer only = *this;
    only.features_.clear();
    for (size_t j : dense_features) only.features_.push_back(features_[j]);
    only.text_column_.clear();
    only.ngram_index_.clear();
    dense = only.transform(table, rows);
  }
  SparseRows out;
  out.start.reserve(rows.size() + 1);
  const data::Column* tc = text_column_.empty() ? nullptr : &table.column(text_column_);
  std::unordered_map<std::string, size_t> index(ngram_index_.begin(), ngram_index_.end());
  if (tc) out.length.assign(rows.size(), 0);
  std::vector<uint32_t> present;
  for (size_t i = 0; i < rows.size(); ++i) {
    for (size_t d = 0; d < dense_features.size(); ++d) {
      out.feature.push_back(static_cast<uint32_t>(dense_features[d]));
      out.bin.push_back(dense[d][i]);
    }
    size_t r = rows[i];
    if (tc && !tc->is_missing(r)) {
      std::vector<std::string> w = words(tc->raw[r], options_.lowercase);
      out.length[i] = static_cast<uint16_t>(std::min<size_t>(w.size(), 65535));
      present.clear();
      for (size_t a = 0; a < w.size(); ++a) {
        if (w[a].size() > kMaxWordBytes) continue;
        std::string g = w[a];
        for (int n = 1; n <= options_.ngram_max && a + n <= w.size(); ++n) {
          if (n > 1 && w[a + n - 1].size() > kMaxWordBytes) break;
          if (n > 1) g += " " + w[a + n - 1];
          auto it = index.find(g);
          if (it != index.end()) present.push_back(static_cast<uint32_t>(it->second));
        }
      }
      std::sort(present.begin(), present.end());
      present.erase(std::unique(present.begin(), present.end()), present.end());
      for (uint32_t j : present) {
        out.feature.push_back(j);
        out.bin.push_back(1);
      }
    }
    out.start.push_back(out.feature.size());
  }
  return out;
}

nlohmann::json Featurizer::to_json() const {
  nlohmann::json j = nlohmann::json::array();
  for (const Feature& f : features_) {
    const char* kinds[] = {"numeric", "categorical", "ngram"};
    j.push_back(
        {{"name", f.name}, {"kind", kinds[f.kind]}, {"column", f.column}, {"bins", f.bin_labels}});
  }
  return j;
}

nlohmann::json Featurizer::state() const {
  nlohmann::json j;
  j["max_bins"] = options_.max_bins;
  j["ngram_max"] = options_.ngram_max;
  j["min_count"] = options_.min_count;
  j["max_vocab"] = options_.max_vocab;
  j["lowercase"] = options_.lowercase;
  j["text_column"] = text_column_;
  j["features"] = nlohmann::json::array();
  for (const Feature& f : features_) {
    nlohmann::json e = {{"kind", static_cast<int>(f.kind)},
                        {"name", f.name},
                        {"column", f.column},
                        {"bins", f.bin_labels}};
    if (f.kind == Feature::kNumeric) {  // the last edge is always +inf (not JSON): left out
      e["upper"] = std::vector<double>(f.upper.begin(), f.upper.end() - 1);
      e["centers"] = f.centers;
    }
    if (f.baseline >= 0 && f.kind != Feature::kNgram) {
      e["baseline"] = f.baseline;
      if (f.kind == Feature::kNumeric) e["mean"] = f.mean;
    }
    j["features"].push_back(std::move(e));
  }
  return j;
}

Featurizer Featurizer::from_state(const nlohmann::json& j, const std::string& source) {
  Featurizer fz;
  try {
    fz.options_.max_bins = j.at("max_bins").get<int>();
    fz.options_.ngram_max = j.at("ngram_max").get<int>();
    fz.options_.min_count = j.at("min_count").get<int>();
    fz.options_.max_vocab = j.at("max_vocab").get<int>();
    fz.options_.lowercase = j.at("lowercase").get<bool>();
    fz.text_column_ = j.at("text_column").get<std::string>();
    for (const auto& e : j.at("features")) {
      Feature f;
      int kind = e.at("kind").get<int>();
      if (kind < 0 || kind > 2) throw std::runtime_error("unknown feature kind");
      f.kind = static_cast<Feature::Kind>(kind);
      f.name = e.at("name").get<std::string>();
      f.column = e.at("column").get<std::string>();
      f.bin_labels = e.at("bins").get<std::vector<std::string>>();
      if (f.kind == Feature::kNumeric) {
        f.upper = e.at("upper").get<std::vector<double>>();
        f.upper.push_back(INFINITY);
        if (f.bin_labels.size() != f.upper.size() + 1)
          throw std::runtime_error("numeric feature '" + f.name + "' has mismatched bins");
        if (e.contains("centers")) {
          f.centers = e.at("centers").get<std::vector<double>>();
        } else {  // saved before bin centres: the middle of each bin (its edge at the ends)
          for (size_t b = 0; b < f.upper.size(); ++b)
            f.centers.push_back(f.upper.size() == 1 ? 0.0
                                : b == 0            ? f.upper[0]
                                : b + 1 == f.upper.size()
                                    ? f.upper[b - 1]
                                    : 0.5 * (f.upper[b - 1] + f.upper[b]));
        }
        if (f.centers.size() != f.upper.size())
          throw std::runtime_error("numeric feature '" + f.name + "' has mismatched centres");
      }
      if (f.kind == Feature::kNgram) f.baseline = 0;
      if (e.contains("baseline")) {
        f.baseline = e.at("baseline").get<int>();
        if (f.baseline < 0 || f.baseline >= f.n_bins())
          throw std::runtime_error("feature '" + f.name + "' has a baseline outside its bins");
        if (f.kind == Feature::kNumeric) f.mean = e.at("mean").get<double>();
      }
      if (f.kind == Feature::kNgram) fz.ngram_index_.emplace_back(f.name, fz.features_.size());
      fz.features_.push_back(std::move(f));
    }
  } catch (const std::exception& e) {
    throw Error(ErrorCode::kInvalidArgument,
                source + ": not a saved featurizer (" + e.what() + ")",
                "give a file candor wrote, or train the model again");
  }
  std::sort(fz.ngram_index_.begin(), fz.ngram_index_.end());
  return fz;
}

}  // namespace candor::distill
