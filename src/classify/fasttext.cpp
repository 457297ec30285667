// fastText supervised classifiers (.bin and quantised .ftz), read from the file format of
// fastText 0.9: arguments, dictionary (words, labels, pruned n-gram index), input and output
// matrices (dense, or product-quantised with optional quantised norms, dequantised at load).
// Prediction follows fastText: hidden = mean of the input rows of the words, character n-grams
// and hashed word n-grams; scores = output * hidden; softmax / sigmoid / hierarchical softmax.
#include <cmath>
#include <cstring>
#include <fstream>
#include <unordered_map>

#include "candor/classifier.h"
#include "candor/error.h"

namespace candor {
namespace {

constexpr int32_t kMagic = 793712314;
constexpr const char* kEos = "</s>";
constexpr const char* kBow = "<";
constexpr const char* kEow = ">";

enum Loss : int32_t { kHs = 1, kNs = 2, kSoftmax = 3, kOva = 4 };

class Reader {
 public:
  Reader(const std::string& path) : path_(path), in_(path, std::ios::binary) {
    if (!in_)
      throw Error(ErrorCode::kNotFound, "cannot open fastText model '" + path + "'",
                  "check the path");
  }
  template <typename T>
  T get(const char* what) {
    T v;
    read(&v, sizeof(T), what);
    return v;
  }
  void read(void* dst, size_t n, const char* what) {
    in_.read(static_cast<char*>(dst), static_cast<std::streamsize>(n));
    if (static_cast<size_t>(in_.gcount()) != n)
      throw Error(ErrorCode::kInvalidArgument,
                  path_ + ": truncated fastText model (ends inside the " + what + ")",
                  "the file is incomplete; download or copy it again");
  }
  std::string cstring(const char* what) {
    std::string s;
    while (true) {
      char c = get<char>(what);
      if (c == 0) return s;
      s.push_back(c);
      if (s.size() > (1u << 20))
        throw Error(ErrorCode::kInvalidArgument, path_ + ": corrupt fastText dictionary");
    }
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ifstream in_;
};

uint32_t fnv_hash(const std::string& s) {
  uint32_t h = 2166136261u;
  for (char c : s) {
    h = h ^ static_cast<uint32_t>(static_cast<int8_t>(c));
    h = h * 16777619u;
  }
  return h;
}

// A row-major float matrix [rows, cols].
struct Matrix {
  int64_t rows = 0, cols = 0;
  std::vector<float> data;
  const float* row(int64_t i) const { return data.data() + i * cols; }
};

// fastText's ProductQuantizer: 256 centroids per sub-quantiser.
struct ProductQuantizer {
  int32_t dim = 0, nsubq = 0, dsub = 0, lastdsub = 0;
  std::vector<float> centroids;  // [dim * 256]
  void load(Reader& r) {
    dim = r.get<int32_t>("quantiser");
    nsubq = r.get<int32_t>("quantiser");
    dsub = r.get<int32_t>("quantiser");
    lastdsub = r.get<int32_t>("quantiser");
    if (dim <= 0 || nsubq <= 0 || dsub <= 0 || lastdsub <= 0 || dim > (1 << 20))
      throw Error(ErrorCode::kInvalidArgument, r.path() + ": corrupt product quantiser");
    centroids.resize(static_cast<size_t>(dim) * 256);
    r.read(centroids.data(), centroids.size() * sizeof(float), "quantiser centroids");
  }
  const float* centroid(int32_t m, uint8_t code) const {
    if (m == nsubq - 1) return &centroids[static_cast<size_t>(m) * 256 * dsub + code * lastdsub];
    return &centroids[(static_cast<size_t>(m) * 256 + code) * dsub];
  }
};

Matrix load_dense(Reader& r) {
  Matrix m;
  m.rows = r.get<int64_t>("matrix header");
  m.cols = r.get<int64_t>("matrix header");
  if (m.rows < 0 || m.cols <= 0 || m.rows > (int64_t(1) << 32) / m.cols)
    throw Error(ErrorCode::kInvalidArgument, r.path() + ": corrupt matrix shape " +
                                                 std::to_string(m.rows) + " x " +
                                                 std::to_string(m.cols));
  m.data.resize(static_cast<size_t>(m.rows * m.cols));
  r.read(m.data.data(), m.data.size() * sizeof(float), "matrix");
  return m;
}

// Reads a QuantMatrix and reconstructs it densely (the same float arithmetic as fastText's
// addcode: norm * centroid).
Matrix load_quantized(Reader& r) {
  bool qnorm = r.get<uint8_t>("quantised matrix") != 0;
  Matrix m;
  m.rows = r.get<int64_t>("quantised matrix");
  m.cols = r.get<int64_t>("quantised matrix");
  int32_t codesize = r.get<int32_t>("quantised matrix");
  if (m.rows < 0 || m.cols <= 0 || codesize < 0 || m.rows > (int64_t(1) << 32) / m.cols)
    throw Error(ErrorCode::kInvalidArgument, r.path() + ": corrupt quantised matrix header");
  std::vector<uint8_t> codes(static_cast<size_t>(codesize));
  r.read(codes.data(), codes.size(), "quantised codes");
  ProductQuantizer pq;
  pq.load(r);
  std::vector<uint8_t> norm_codes;
  ProductQuantizer npq;
  if (qnorm) {
    norm_codes.resize(static_cast<size_t>(m.rows));
    r.read(norm_codes.data(), norm_codes.size(), "quantised norms");
    npq.load(r);
  }
  if (pq.dim != m.cols || static_cast<int64_t>(codes.size()) != m.rows * pq.nsubq ||
      static_cast<int64_t>(pq.nsubq - 1) * pq.dsub + pq.lastdsub != m.cols)
    throw Error(ErrorCode::kInvalidArgument,
                r.path() + ": quantised matrix does not match its quantiser");
  m.data.assign(static_cast<size_t>(m.rows * m.cols), 0.0f);
  for (int64_t i = 0; i < m.rows; ++i) {
    float alpha = qnorm ? npq.centroid(0, norm_codes[i])[0] : 1.0f;
    float* x = m.data.data() + i * m.cols;
    const uint8_t* code = codes.data() + pq.nsubq * i;
    for (int32_t s = 0; s < pq.nsubq; ++s) {
      const float* c = pq.centroid(s, code[s]);
      int32_t d = s == pq.nsubq - 1 ? pq.lastdsub : pq.dsub;
      for (int32_t n = 0; n < d; ++n) x[s * pq.dsub + n] += alpha * c[n];
    }
  }
  return m;
}

// One input row of a text: which matrix row, and which feature it stands for.
struct InputFeature {
  int32_t row;
  std::string kind;
  std::string text;
  int64_t token_begin, token_end;
};

class FastTextClassifier : public TextClassifier {
 public:
  explicit FastTextClassifier(const std::string& path) { load(path); }

  std::string kind() const override { return "fasttext"; }
  const std::vector<std::string>& labels() const override { return labels_; }

  std::vector<double> predict_proba(const std::string& text) const override {
    std::vector<std::string> tokens;
    std::vector<InputFeature> feats = features(text, &tokens);
    std::vector<float> scores = output_scores(feats);
    return probabilities(feats.empty(), scores);
  }

  nlohmann::ordered_json describe() const override {
    nlohmann::ordered_json j;
    j["format"] = quantised_ ? "fasttext .ftz (quantised)" : "fasttext .bin";
    j["file_version"] = version_;
    j["loss"] = loss_ == kSoftmax ? "softmax"
                : loss_ == kOva   ? "one-vs-all"
                : loss_ == kNs    ? "negative sampling"
                                  : "hierarchical softmax";
    j["dim"] = dim_;
    j["words"] = nwords_;
    j["input_rows"] = input_.rows;  // words, then the hashed n-gram buckets kept
    j["buckets"] = bucket_;
    j["char_ngrams"] = maxn_ > 0 ? std::to_string(minn_) + ".." + std::to_string(maxn_) : "none";
    j["word_ngrams"] = word_ngrams_;
    j["parameters"] = (input_.rows + output_.rows) * dim_;
    j["labels"] = labels_;
    return j;
  }

  ClassifierExplanation explain(const std::string& text, int target, int contrast) const override {
    const int n = static_cast<int>(labels_.size());
    if (target < 0 || target >= n || contrast >= n || contrast == target)
      throw Error(ErrorCode::kInvalidArgument, "fastText explanation: class " +
                                                   std::to_string(target) + " against " +
                                                   std::to_string(contrast) + " out of range (" +
                                                   std::to_string(n) + " labels)");
    // What is explained, as a linear function of the hidden vector: w . hidden.
    std::vector<double> w(static_cast<size_t>(dim_), 0.0);
    ClassifierExplanation ex;
    if (loss_ == kSoftmax) {
      if (contrast < 0) {
        if (n != 2)
          throw Error(ErrorCode::kInvalidArgument,
                      "fastText explanation: give a contrast class (the model has " +
                          std::to_string(n) + " labels)");
        contrast = 1 - target;
      }
      for (int64_t d = 0; d < dim_; ++d)
        w[d] = double(output_.row(target)[d]) - double(output_.row(contrast)[d]);
      ex.explained_name = "logit(" + labels_[target] + ") - logit(" + labels_[contrast] + ")";
    } else if (loss_ == kOva || loss_ == kNs) {
      if (contrast >= 0)
        throw Error(ErrorCode::kInvalidArgument,
                    "fastText explanation: a one-vs-all model explains one class's logit; "
                    "give no contrast class");
      for (int64_t d = 0; d < dim_; ++d) w[d] = output_.row(target)[d];
      ex.explained_name = "logit(" + labels_[target] + ")";
    } else {  // hierarchical softmax: exact for two labels (one tree node)
      if (n != 2)
        throw Error(ErrorCode::kUnsupported,
                    "exact attributions of a hierarchical-softmax fastText model with more "
                    "than two labels are not linear");
      if (contrast < 0) contrast = 1 - target;
      // The root's sigmoid(score) is the probability of its right child.
      const int right = tree_[2].right;
      double sign = target == right ? 1.0 : -1.0;
      for (int64_t d = 0; d < dim_; ++d) w[d] = sign * output_.row(0)[d];
      ex.explained_name = "log-odds(" + labels_[target] + " vs " + labels_[contrast] + ")";
    }
    ex.target = target;
    ex.contrast = contrast;
    std::vector<InputFeature> feats = features(text, &ex.tokens);
    const double inv = feats.empty() ? 0.0 : 1.0 / double(feats.size());
    double total = 0;
    for (const InputFeature& f : feats) {
      const float* e = input_.row(f.row);
      double v = 0;
      for (int64_t d = 0; d < dim_; ++d) v += w[d] * e[d];
      v *= inv;
      total += v;
      ex.features.push_back({f.kind, f.text, f.token_begin, f.token_end, v});
    }
    ex.explained = total;
    return ex;
  }

 private:
  void load(const std::string& path) {
    Reader r(path);
    int32_t magic = r.get<int32_t>("header");
    if (magic != kMagic)
      throw Error(ErrorCode::kInvalidArgument, path + ": not a fastText model (wrong magic number)",
                  "give a fastText .bin or .ftz file");
    int32_t version = r.get<int32_t>("header");
    version_ = version;
    if (version < 11 || version > 12)
      throw Error(ErrorCode::kUnsupported, path + ": fastText file version " +
                                               std::to_string(version) + " (supported: 11 and 12)");
    dim_ = r.get<int32_t>("arguments");
    r.get<int32_t>("arguments");  // ws
    r.get<int32_t>("arguments");  // epoch
    r.get<int32_t>("arguments");  // minCount
    r.get<int32_t>("arguments");  // neg
    word_ngrams_ = r.get<int32_t>("arguments");
    loss_ = r.get<int32_t>("arguments");
    int32_t model = r.get<int32_t>("arguments");
    bucket_ = r.get<int32_t>("arguments");
    minn_ = r.get<int32_t>("arguments");
    maxn_ = r.get<int32_t>("arguments");
    r.get<int32_t>("arguments");  // lrUpdateRate
    r.get<double>("arguments");   // t
    if (model != 3)
      throw Error(ErrorCode::kUnsupported,
                  path + ": an unsupervised fastText model (word vectors), not a classifier",
                  "give a model trained with `fasttext supervised`");
    if (loss_ < kHs || loss_ > kOva || dim_ <= 0 || bucket_ < 0)
      throw Error(ErrorCode::kInvalidArgument, path + ": corrupt fastText arguments");
    if (version == 11) maxn_ = 0;  // old supervised models have no character n-grams

    // Dictionary.
    int32_t size = r.get<int32_t>("dictionary");
    nwords_ = r.get<int32_t>("dictionary");
    int32_t nlabels = r.get<int32_t>("dictionary");
    r.get<int64_t>("dictionary");  // ntokens
    int64_t pruneidx_size = r.get<int64_t>("dictionary");
    if (size < 0 || nwords_ < 0 || nlabels <= 0 || nwords_ + nlabels != size)
      throw Error(ErrorCode::kInvalidArgument, path + ": corrupt fastText dictionary header");
    std::vector<int64_t> label_counts;
    for (int32_t i = 0; i < size; ++i) {
      std::string word = r.cstring("dictionary");
      int64_t count = r.get<int64_t>("dictionary");
      int8_t type = r.get<int8_t>("dictionary");
      if (type == 0) {
        word_ids_.emplace(word, i);
        words_.push_back(word);
      } else {
        labels_.push_back(word);
        label_counts.push_back(count);
      }
    }
    if (static_cast<int32_t>(words_.size()) != nwords_)
      throw Error(ErrorCode::kInvalidArgument, path + ": corrupt fastText dictionary");
    pruned_ = pruneidx_size >= 0;
    for (int64_t i = 0; i < pruneidx_size; ++i) {
      int32_t first = r.get<int32_t>("pruned index");
      int32_t second = r.get<int32_t>("pruned index");
      pruneidx_[first] = second;
    }
    bool quant_input = r.get<uint8_t>("header") != 0;
    quantised_ = quant_input;
    input_ = quant_input ? load_quantized(r) : load_dense(r);
    bool qout = r.get<uint8_t>("header") != 0;
    output_ = (quant_input && qout) ? load_quantized(r) : load_dense(r);
    if (input_.cols != dim_ || output_.cols != dim_ || output_.rows < 1 || input_.rows < nwords_)
      throw Error(ErrorCode::kInvalidArgument,
                  path + ": matrix shapes do not match dim " + std::to_string(dim_));
    const int64_t out_rows = loss_ == kHs ? nlabels - 1 : nlabels;
    if (output_.rows != std::max<int64_t>(out_rows, 1))
      throw Error(ErrorCode::kInvalidArgument, path + ": the output matrix has " +
                                                   std::to_string(output_.rows) + " rows for " +
                                                   std::to_string(nlabels) + " labels");
    if (loss_ == kHs) build_tree(label_counts);
  }

  struct Node {
    int32_t parent = -1, left = -1, right = -1;
    int64_t count = static_cast<int64_t>(1e15);
  };
  void build_tree(const std::vector<int64_t>& counts) {
    const int32_t osz = static_cast<int32_t>(counts.size());
    tree_.assign(2 * osz - 1, Node());
    for (int32_t i = 0; i < osz; ++i) tree_[i].count = counts[i];
    int32_t leaf = osz - 1, node = osz;
    for (int32_t i = osz; i < 2 * osz - 1; ++i) {
      int32_t mini[2] = {0, 0};
      for (int j = 0; j < 2; ++j) {
        if (leaf >= 0 && tree_[leaf].count < tree_[node].count)
          mini[j] = leaf--;
        else
          mini[j] = node++;
      }
      tree_[i].left = mini[0];
      tree_[i].right = mini[1];
      tree_[i].count = tree_[mini[0]].count + tree_[mini[1]].count;
      tree_[mini[0]].parent = i;
      tree_[mini[1]].parent = i;
    }
  }

  bool push_hash(std::vector<InputFeature>& out, int32_t id, const char* kind, std::string text,
                 int64_t b, int64_t e) const {
    if (pruned_ || id < 0) {
      if (id < 0) return false;
      auto it = pruneidx_.find(id);
      if (it == pruneidx_.end()) return false;
      id = it->second;
    }
    out.push_back({nwords_ + id, kind, std::move(text), b, e});
    return true;
  }

  void char_ngrams(const std::string& token, int64_t t, std::vector<InputFeature>& out) const {
    const std::string word = kBow + token + kEow;
    for (size_t i = 0; i < word.size(); ++i) {
      if ((word[i] & 0xC0) == 0x80) continue;
      std::string ngram;
      for (size_t j = i, n = 1; j < word.size() && n <= static_cast<size_t>(maxn_); ++n) {
        ngram.push_back(word[j++]);
        while (j < word.size() && (word[j] & 0xC0) == 0x80) ngram.push_back(word[j++]);
        if (n >= static_cast<size_t>(minn_) && !(n == 1 && (i == 0 || j == word.size()))) {
          int32_t h = static_cast<int32_t>(fnv_hash(ngram) % static_cast<uint32_t>(bucket_));
          push_hash(out, h, "subword", ngram, t, t + 1);
        }
      }
    }
  }

  // The input rows of a text, as fastText's Dictionary::getLine computes them.
  std::vector<InputFeature> features(const std::string& text,
                                     std::vector<std::string>* tokens) const {
    tokens->clear();
    std::string cur;
    for (char c : text) {
      if (c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f' || c == '\0') {
        if (!cur.empty()) tokens->push_back(std::move(cur));
        cur.clear();
      } else {
        cur.push_back(c);
      }
    }
    if (!cur.empty()) tokens->push_back(std::move(cur));
    tokens->push_back(kEos);
    std::vector<InputFeature> out;
    std::vector<int32_t> hashes;      // word hashes, as fastText keeps them (int32)
    std::vector<int64_t> hash_token;  // token index of each hash
    for (size_t t = 0; t < tokens->size(); ++t) {
      const std::string& tok = (*tokens)[t];
      auto it = word_ids_.find(tok);
      if (it == word_ids_.end() && tok.compare(0, 9, "__label__") == 0) continue;  // a label
      const int64_t ti = static_cast<int64_t>(t);
      if (it != word_ids_.end()) {
        out.push_back({it->second, "word", tok, ti, ti + 1});
        if (maxn_ > 0 && tok != kEos) char_ngrams(tok, ti, out);
      } else if (tok != kEos && maxn_ > 0) {
        char_ngrams(tok, ti, out);
      }
      hashes.push_back(static_cast<int32_t>(fnv_hash(tok)));
      hash_token.push_back(ti);
    }
    for (size_t i = 0; i < hashes.size(); ++i) {
      uint64_t h = static_cast<uint64_t>(static_cast<int64_t>(hashes[i]));
      std::string words = (*tokens)[hash_token[i]];
      for (size_t j = i + 1; j < hashes.size() && j < i + static_cast<size_t>(word_ngrams_); ++j) {
        h = h * 116049371u + static_cast<uint64_t>(static_cast<int64_t>(hashes[j]));
        words += " " + (*tokens)[hash_token[j]];
        push_hash(out, static_cast<int32_t>(h % static_cast<uint64_t>(bucket_)), "ngram", words,
                  hash_token[i], hash_token[j] + 1);
      }
    }
    return out;
  }

  // Output scores (before softmax / sigmoid), as fastText's float arithmetic computes them.
  std::vector<float> output_scores(const std::vector<InputFeature>& feats) const {
    std::vector<float> hidden(static_cast<size_t>(dim_), 0.0f);
    for (const InputFeature& f : feats) {
      const float* e = input_.row(f.row);
      for (int64_t d = 0; d < dim_; ++d) hidden[d] += e[d];
    }
    if (!feats.empty()) {
      float s = 1.0f / static_cast<float>(feats.size());
      for (float& h : hidden) h *= s;
    }
    std::vector<float> scores(static_cast<size_t>(output_.rows));
    for (int64_t i = 0; i < output_.rows; ++i) {
      float acc = 0.0f;
      const float* w = output_.row(i);
      for (int64_t d = 0; d < dim_; ++d) acc += w[d] * hidden[d];
      scores[i] = acc;
    }
    return scores;
  }

  std::vector<double> probabilities(bool empty, const std::vector<float>& s) const {
    const size_t n = labels_.size();
    std::vector<double> p(n, 0.0);
    if (empty) {  // fastText predicts nothing for an empty input: uniform
      for (double& x : p) x = 1.0 / double(n);
      return p;
    }
    if (loss_ == kSoftmax) {
      float mx = s[0];
      for (float v : s) mx = std::max(mx, v);
      float z = 0.0f;
      std::vector<float> e(n);
      for (size_t i = 0; i < n; ++i) {
        e[i] = std::exp(s[i] - mx);
        z += e[i];
      }
      for (size_t i = 0; i < n; ++i) p[i] = e[i] / z;
    } else if (loss_ == kOva || loss_ == kNs) {
      for (size_t i = 0; i < n; ++i) p[i] = 1.0 / (1.0 + std::exp(-double(s[i])));
    } else {
      // Hierarchical softmax: product of the branch probabilities from the root.
      const int32_t osz = static_cast<int32_t>(n);
      for (int32_t leaf = 0; leaf < osz; ++leaf) {
        double prob = 1.0;
        for (int32_t node = leaf; tree_[node].parent >= 0; node = tree_[node].parent) {
          int32_t parent = tree_[node].parent;
          double f = 1.0 / (1.0 + std::exp(-double(s[parent - osz])));
          prob *= tree_[parent].right == node ? f : 1.0 - f;
        }
        p[leaf] = prob;
      }
    }
    return p;
  }

  int32_t dim_ = 0, word_ngrams_ = 1, loss_ = kSoftmax, bucket_ = 0, minn_ = 0, maxn_ = 0;
  int32_t nwords_ = 0, version_ = 0;
  bool quantised_ = false;
  std::vector<std::string> words_, labels_;
  std::unordered_map<std::string, int32_t> word_ids_;
  bool pruned_ = false;
  std::unordered_map<int32_t, int32_t> pruneidx_;
  Matrix input_, output_;
  std::vector<Node> tree_;
};

}  // namespace

std::unique_ptr<TextClassifier> load_fasttext(const std::string& path) {
  return std::make_unique<FastTextClassifier>(path);
}

bool is_fasttext_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  int32_t magic = 0;
  if (!in || !in.read(reinterpret_cast<char*>(&magic), sizeof(magic))) return false;
  return magic == kMagic;
}

}  // namespace candor
