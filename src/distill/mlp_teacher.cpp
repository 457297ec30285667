// A small MLP classifier for tables, trained by candor with train::train_loop: a teacher for
// distillation.
#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <set>
#include <sstream>

#include "candor/distill.h"
#include "candor/error.h"
#include "candor/train.h"
#include "train/init.h"

namespace candor::distill {

std::string MlpClassifier::describe() const { return "MLP classifier trained by candor"; }

at::Tensor MlpClassifier::logits(const std::vector<std::vector<uint16_t>>& bins,
                                 const std::vector<int64_t>& idx, at::ScalarType dtype) const {
  const int64_t B = static_cast<int64_t>(idx.size());
  const int64_t F = static_cast<int64_t>(offsets_.size());
  at::Tensor ids = at::empty({B, F}, at::kLong);  // [batch, features] one-hot indices
  int64_t* p = ids.data_ptr<int64_t>();
  for (int64_t i = 0; i < B; ++i)
    for (int64_t f = 0; f < F; ++f) p[i * F + f] = offsets_[f] + bins[f][idx[i]];
  // First layer: sum of the embeddings of the active bins + bias.
  auto param = [&](size_t i) { return dtype == at::kFloat ? params_[i] : params_[i].to(dtype); };
  at::Tensor h = at::embedding(param(0), ids).sum(1).add(param(1));  // [B, H0]
  size_t k = 2;
  for (int64_t l = 0; l < n_layers_; ++l) {
    h = at::relu(h);
    h = at::linear(h, param(k), param(k + 1));
    k += 2;
  }
  return h;  // [B, classes]
}

int64_t MlpClassifier::n_onehot() const {
  return params_.empty() ? 0 : params_[0].size(0);
}

at::Tensor MlpClassifier::logits_of(const at::Tensor& x) const {
  const auto dt = x.scalar_type();
  at::Tensor h = at::matmul(x, params_[0].to(dt)).add(params_[1].to(dt));
  size_t k = 2;
  for (int64_t l = 0; l < n_layers_; ++l) {
    h = at::relu(h);
    h = at::linear(h, params_[k].to(dt), params_[k + 1].to(dt));
    k += 2;
  }
  return h;
}

Probs MlpClassifier::logits_of_bins(const std::vector<std::vector<uint16_t>>& bins) const {
  at::NoGradGuard ng;
  const size_t n = bins.empty() ? 0 : bins[0].size();
  std::vector<int64_t> idx(n);
  for (size_t i = 0; i < n; ++i) idx[i] = static_cast<int64_t>(i);
  at::Tensor lg = logits(bins, idx, at::kDouble).contiguous();
  const size_t C = classes_.size();
  Probs out(n, std::vector<double>(C));
  const double* d = lg.data_ptr<double>();
  for (size_t i = 0; i < n; ++i)
    for (size_t c = 0; c < C; ++c) out[i][c] = d[i * C + c];
  return out;
}

Probs MlpClassifier::predict(const data::Table& table, const std::vector<size_t>& rows) const {
  at::NoGradGuard ng;
  auto bins = featurizer_.transform(table, rows);
  std::vector<int64_t> idx(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) idx[i] = static_cast<int64_t>(i);
  at::Tensor pr = at::softmax(logits(bins, idx), 1).to(at::kDouble).contiguous();
  Probs out(rows.size(), std::vector<double>(classes_.size()));
  const double* d = pr.data_ptr<double>();
  for (size_t i = 0; i < rows.size(); ++i)
    for (size_t c = 0; c < classes_.size(); ++c) out[i][c] = d[i * classes_.size() + c];
  return out;
}

std::unique_ptr<MlpClassifier> MlpClassifier::train(const data::Table& table,
                                                    const std::vector<size_t>& rows,
                                                    const std::string& label_column,
                                                    const MlpOptions& mlp,
                                                    const train::TrainOptions& o) {
  auto m = std::make_unique<MlpClassifier>();
  const data::Column& lc = table.column(label_column);
  std::set<std::string> cls;
  // The first unlabelled row in file order (rows may come shuffled), and how many there are.
  size_t first = table.n_rows(), n_missing = 0;
  for (size_t r : rows) {
    if (!lc.is_missing(r)) {
      cls.insert(lc.raw[r]);
      continue;
    }
    ++n_missing;
    if (first == table.n_rows() || table.line_of(r) < table.line_of(first)) first = r;
  }
  if (n_missing > 0)
    throw Error(ErrorCode::kInvalidArgument,
                table.where(first) + ", column '" + label_column + "': missing label" +
                    (n_missing > 1 ? " (" + std::to_string(n_missing) +
                                         " rows lack one; this is the first)"
                                   : std::string()),
                "drop unlabelled rows or fill them in");
  if (cls.size() < 2)
    throw Error(ErrorCode::kInvalidArgument,
                table.source() + ": the label column '" + label_column + "' has " +
                    std::to_string(cls.size()) + " class" +
                    (cls.size() == 1 ? " ('" + *cls.begin() + "')" : std::string("es")),
                "a classifier needs at least two classes");
  m->classes_.assign(cls.begin(), cls.end());
  FeatureOptions fo = mlp.features;
  fo.exclude.push_back(label_column);
  m->featurizer_.fit(table, rows, fo);
  auto bins = m->featurizer_.transform(table, rows);
  int64_t n_onehot = 0;
  for (const auto& f : m->featurizer_.features()) {
    m->offsets_.push_back(n_onehot);
    n_onehot += f.n_bins();
  }
  std::mt19937_64 rng(o.seed);
  std::vector<int64_t> widths = mlp.hidden;
  if (widths.empty())
    throw Error(ErrorCode::kInvalidArgument, "the MLP needs at least one hidden layer");
  const int64_t C = static_cast<int64_t>(m->classes_.size());
  m->params_.push_back(
      train::init_normal(rng, {n_onehot, widths[0]}, 1.0 / std::sqrt(double(m->offsets_.size()))));
  m->params_.push_back(at::zeros({widths[0]}, at::kFloat));
  for (size_t l = 0; l < widths.size(); ++l) {
    int64_t in = widths[l], out = l + 1 < widths.size() ? widths[l + 1] : C;
    m->params_.push_back(train::init_normal(rng, {out, in}, std::sqrt(2.0 / double(in))));
    m->params_.push_back(at::zeros({out}, at::kFloat));
  }
  m->n_layers_ = static_cast<int64_t>(widths.size());
  std::vector<int64_t> labels(rows.size());
  for (size_t i = 0; i < rows.size(); ++i)
    labels[i] =
        std::find(m->classes_.begin(), m->classes_.end(), lc.raw[rows[i]]) - m->classes_.begin();
  at::Tensor label_t = at::tensor(labels, at::kLong);
  MlpClassifier* self = m.get();
  train::train_loop(
      m->params_, static_cast<int64_t>(rows.size()),
      [&](const std::vector<int64_t>& batch) {
        at::Tensor lg = self->logits(bins, batch);
        at::Tensor y = label_t.index_select(0, at::tensor(batch, at::kLong));
        return at::cross_entropy_loss(lg, y);
      },
      o);
  return m;
}

namespace {

namespace fs = std::filesystem;
constexpr const char* kMlpFile = "mlp.json";

// The mlp.json that `path` names: the file itself, the one in the folder, or the one beside a file
// (a folder's model.ckpt). "" when there is none.
std::string saved_mlp_file(const std::string& path) {
  std::error_code ec;
  fs::path p(path);
  if (fs::is_directory(p, ec)) {
    fs::path f = p / kMlpFile;
    return fs::is_regular_file(f, ec) ? f.string() : "";
  }
  if (p.filename() == kMlpFile) return fs::is_regular_file(p, ec) ? p.string() : "";
  if (!fs::is_regular_file(p, ec)) return "";
  fs::path beside = p.parent_path().empty() ? fs::path(kMlpFile) : p.parent_path() / kMlpFile;
  return fs::is_regular_file(beside, ec) ? beside.string() : "";
}

std::vector<int64_t> parse_widths(const std::string& text) {
  std::vector<int64_t> w;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || item.empty() || v < 1 || v > 65536)
      throw Error(ErrorCode::kInvalidArgument,
                  "MLP option 'hidden': '" + text + "' is not a list of widths in [1, 65536]",
                  "e.g. hidden 64,32");
    w.push_back(v);
  }
  if (w.empty())
    throw Error(ErrorCode::kInvalidArgument, "MLP option 'hidden' is empty",
                "give at least one width, e.g. 64");
  return w;
}

}  // namespace

OptionSpecs mlp_options() {
  const MlpOptions m;
  const train::TrainOptions t;
  std::string hidden;
  for (int64_t w : m.hidden) hidden += (hidden.empty() ? "" : ",") + std::to_string(w);
  constexpr double kInf = std::numeric_limits<double>::infinity();
  return {
      OptionSpec::text("hidden", hidden, "hidden layer widths, comma-separated"),
      OptionSpec::integer("epochs", t.epochs, 1, 1000000, "passes over the training rows"),
      OptionSpec::integer("batch_size", t.batch_size, 1, 1 << 24, "rows per step"),
      OptionSpec::real("lr", t.learning_rate, 0.0, kInf, "peak learning rate (warm-up, cosine)")
          .above(),
      OptionSpec::integer("seed", static_cast<int64_t>(t.seed), 0,
                          std::numeric_limits<int64_t>::max(), "initialisation and batch order"),
  };
}

void apply_mlp_options(const Options& v, MlpOptions* mlp, train::TrainOptions* t) {
  mlp->hidden = parse_widths(v.get("hidden"));
  t->epochs = static_cast<int>(v.get_int("epochs"));
  t->batch_size = v.get_int("batch_size");
  t->learning_rate = v.get_double("lr");
  t->seed = static_cast<uint64_t>(v.get_int("seed"));
}

void MlpClassifier::save(const std::string& dir, const std::string& label_column) const {
  nlohmann::json j;
  j["format"] = "candor-mlp";
  j["version"] = 1;
  j["label"] = label_column;
  j["classes"] = classes_;
  j["layers"] = n_layers_;
  j["featurizer"] = featurizer_.state();
  j["parameters"] = nlohmann::json::array();
  for (const at::Tensor& p : params_) {
    at::Tensor c = p.detach().to(at::kFloat).contiguous();
    const float* d = c.data_ptr<float>();
    j["parameters"].push_back(
        {{"shape", c.sizes().vec()}, {"values", std::vector<float>(d, d + c.numel())}});
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  const std::string path = (fs::path(dir) / kMlpFile).string();
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << j.dump();
    f.flush();
    if (!f)
      throw Error(ErrorCode::kInvalidArgument, "cannot write " + tmp,
                  "check that the folder " + dir + " is writable and the disk has room");
  }
  fs::rename(tmp, path, ec);
  if (ec)
    throw Error(ErrorCode::kInvalidArgument, "cannot rename " + tmp + " to " + path + ": " + ec.message(),
                "check that the folder " + dir + " is writable");
}

bool MlpClassifier::is_saved(const std::string& path) { return !saved_mlp_file(path).empty(); }

std::unique_ptr<MlpClassifier> MlpClassifier::load(const std::string& path) {
  const std::string file = saved_mlp_file(path);
  if (file.empty())
    throw Error(ErrorCode::kNotFound, path + ": no saved MLP (mlp.json) here",
                "give the --out folder of candor train");
  std::ifstream f(file, std::ios::binary);
  nlohmann::json j = nlohmann::json::parse(f, nullptr, false);
  auto m = std::make_unique<MlpClassifier>();
  try {
    if (j.is_discarded()) throw std::runtime_error("not JSON");
    if (j.at("format") != "candor-mlp") throw std::runtime_error("format is not candor-mlp");
    if (j.at("version").get<int>() != 1) throw std::runtime_error("unknown version");
    m->classes_ = j.at("classes").get<std::vector<std::string>>();
    m->n_layers_ = j.at("layers").get<int64_t>();
    for (const auto& p : j.at("parameters")) {
      std::vector<int64_t> shape = p.at("shape").get<std::vector<int64_t>>();
      std::vector<float> values = p.at("values").get<std::vector<float>>();
      int64_t n = 1;
      for (int64_t d : shape) n *= d;
      if (n != static_cast<int64_t>(values.size()))
        throw std::runtime_error("a parameter's values do not fill its shape");
      m->params_.push_back(at::tensor(values, at::kFloat).reshape(shape));
    }
    if (m->classes_.size() < 2 || m->n_layers_ < 1 ||
        m->params_.size() != static_cast<size_t>(2 + 2 * m->n_layers_))
      throw std::runtime_error("the layers do not match the parameters");
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(ErrorCode::kInvalidArgument, file + ": not an MLP saved by candor (" + e.what() + ")",
                "train it again with candor train");
  }
  m->featurizer_ = Featurizer::from_state(j.at("featurizer"), file);
  int64_t n_onehot = 0;
  for (const auto& ft : m->featurizer_.features()) {
    m->offsets_.push_back(n_onehot);
    n_onehot += ft.n_bins();
  }
  if (m->params_[0].dim() != 2 || m->params_[0].size(0) != n_onehot)
    throw Error(ErrorCode::kInvalidArgument,
                file + ": the first layer does not match the featurizer's bins",
                "train it again with candor train");
  return m;
}

}  // namespace candor::distill
