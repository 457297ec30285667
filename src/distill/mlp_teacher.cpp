// A small MLP classifier for tables, trained by candor with train::train_loop: a teacher for
// distillation.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "candor/distill.h"
#include "candor/error.h"
#include "candor/train.h"
#include "train/init.h"

namespace candor::distill {

std::string MlpClassifier::describe() const { return "MLP classifier trained by candor"; }

at::Tensor MlpClassifier::logits(const std::vector<std::vector<uint16_t>>& bins,
                                 const std::vector<int64_t>& idx) const {
  const int64_t B = static_cast<int64_t>(idx.size());
  const int64_t F = static_cast<int64_t>(offsets_.size());
  at::Tensor ids = at::empty({B, F}, at::kLong);  // [batch, features] one-hot indices
  int64_t* p = ids.data_ptr<int64_t>();
  for (int64_t i = 0; i < B; ++i)
    for (int64_t f = 0; f < F; ++f) p[i * F + f] = offsets_[f] + bins[f][idx[i]];
  // First layer: sum of the embeddings of the active bins + bias.
  at::Tensor h = at::embedding(params_[0], ids).sum(1).add(params_[1]);  // [B, H0]
  size_t k = 2;
  for (int64_t l = 0; l < n_layers_; ++l) {
    h = at::relu(h);
    h = at::linear(h, params_[k], params_[k + 1]);
    k += 2;
  }
  return h;  // [B, classes]
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

}  // namespace candor::distill
