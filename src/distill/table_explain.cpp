// Per-column explanations of models over table rows (table_explain.h): a cooperative game over
// the input columns played in the featurizer's bins (a removed column takes its baseline bins),
// and, for the MLP, path and gradient methods on its one-hot input summed back to the columns.
#include "candor/table_explain.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <random>

#include "candor/error.h"

namespace candor::distill {

namespace {

constexpr size_t kDefaultExactColumns = 12;
constexpr size_t kMaxExactColumns = 20;
constexpr size_t kBatch = 4096;  // coalitions evaluated per call of the model

bool is_target_function(const std::string& s) {
  return s == "logodds" || s == "logprob" || s == "prob" || s == "logit";
}

double logsumexp(const std::vector<double>& v, size_t skip) {
  double m = -std::numeric_limits<double>::infinity();
  for (size_t j = 0; j < v.size(); ++j)
    if (j != skip) m = std::max(m, v[j]);
  if (!std::isfinite(m)) return m;
  double s = 0;
  for (size_t j = 0; j < v.size(); ++j)
    if (j != skip) s += std::exp(v[j] - m);
  return m + std::log(s);
}

// The target of `out` (logits of the MLP, log-probabilities of a student) for class c.
double target_value(const std::vector<double>& out, size_t c, const std::string& tf) {
  if (tf == "logit") return out[c];
  const double lse = logsumexp(out, out.size());
  const double lp = out[c] - lse;
  if (tf == "logprob") return lp;
  if (tf == "prob") return std::exp(lp);
  return out[c] - logsumexp(out, c);  // logodds: log p_c - log sum_{j != c} p_j
}

// The same on a tensor of logits [n, C] (differentiable).
at::Tensor target_tensor(const at::Tensor& logits, int64_t c, const std::string& tf) {
  if (tf == "logit") return logits.select(1, c);
  at::Tensor lp = at::log_softmax(logits, 1);
  if (tf == "logprob") return lp.select(1, c);
  if (tf == "prob") return lp.select(1, c).exp();
  at::Tensor others =
      logits.index_fill(1, at::tensor({c}, at::kLong), -std::numeric_limits<double>::infinity());
  return logits.select(1, c) - at::logsumexp(others, {1});
}

std::string format_number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.4g", v);
  return buf;
}

// A cell as a label: at most 40 bytes (cut at a character boundary, "..." after).
std::string cell_text(const data::Column& c, size_t row) {
  if (c.is_missing(row)) return "(missing)";
  std::string s = c.raw[row];
  for (char& ch : s)
    if (ch == '\n' || ch == '\r' || ch == '\t') ch = ' ';
  if (s.size() > 40) {
    size_t cut = 40;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
    s = s.substr(0, cut) + "...";
  }
  return s;
}

struct MethodSpec {
  std::string spec, name;
  Options options;
};

// The per-row game: bins of the row and of the baseline, the column of each feature.
struct Game {
  std::vector<uint16_t> x;     // the row's bins: features (+ the word count of its text)
  std::vector<uint16_t> base;  // the baseline's bins (the same word count)
  std::vector<size_t> player;  // feature -> column index
  size_t k = 0;                // columns
};

}  // namespace

std::vector<TableExplainerInfo> list_table_explainers() {
  return {
      {"occlusion",
       "f(row) - f(row with the column at its baseline), one column at a time",
       {},
       false},
      {"exact_shapley",
       "Shapley values over the columns, by enumerating every coalition (2^k model evaluations)",
       {OptionSpec::integer("max_columns", kDefaultExactColumns, 1, kMaxExactColumns,
                            "refuse above this many columns (2^k evaluations)")},
       false},
      {"shapley_sampling",
       "Shapley values over the columns, estimated from random permutations (antithetic pairs)",
       {OptionSpec::integer("samples", 64, 1, 1000000, "permutations"),
        OptionSpec::integer("seed", 0, 0, std::numeric_limits<int64_t>::max(), "random seed")},
       false},
      {"integrated_gradients",
       "path integral of the gradient from the baseline's one-hot input to the row's (midpoint "
       "rule), summed per column (MLP only)",
       {OptionSpec::integer("n_steps", 64, 1, 100000, "points of the midpoint rule")},
       true},
      {"input_x_gradient",
       "gradient at the row times (one-hot input - baseline's), summed per column (MLP only)",
       {},
       true},
  };
}

namespace {

std::vector<MethodSpec> parse_methods(const std::vector<std::string>& specs, bool mlp) {
  const std::vector<TableExplainerInfo> all = list_table_explainers();
  std::vector<MethodSpec> out;
  for (const std::string& spec : specs) {
    auto [name, given] = parse_spec(spec);
    const TableExplainerInfo* info = nullptr;
    std::vector<std::string> names;
    for (const auto& i : all) {
      names.push_back(i.name);
      if (i.name == name) info = &i;
    }
    if (!info) {
      std::string list;
      for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
      const std::string close = closest_match(name, names);
      throw Error(ErrorCode::kInvalidArgument,
                  "method '" + name + "' does not explain a model over table rows",
                  (close.empty() ? std::string() : "did you mean " + close + "? ") +
                      "the column methods are " + list);
    }
    if (info->needs_gradients && !mlp)
      throw Error(ErrorCode::kInvalidArgument,
                  "method '" + name + "' needs the gradients of a network; a glass-box student " +
                      "is explained by perturbation",
                  "use occlusion, exact_shapley or shapley_sampling");
    out.push_back({spec, name, Options("method", name, info->options, given)});
  }
  return out;
}

}  // namespace

TableExplainer::TableExplainer(std::shared_ptr<const MlpClassifier> mlp) : mlp_(std::move(mlp)) {
  featurizer_ = &mlp_->featurizer();
  classes_ = mlp_->classes();
  for (const Feature& f : featurizer_->features())
    if (std::find(columns_.begin(), columns_.end(), f.column) == columns_.end())
      columns_.push_back(f.column);
}

TableExplainer::TableExplainer(std::shared_ptr<const SavedStudent> student)
    : student_(std::move(student)) {
  featurizer_ = &student_->featurizer();
  classes_ = student_->classes();
  for (const Feature& f : featurizer_->features())
    if (std::find(columns_.begin(), columns_.end(), f.column) == columns_.end())
      columns_.push_back(f.column);
}

std::string TableExplainer::describe() const {
  return mlp_ ? mlp_->describe() : student_->describe();
}

void TableExplainer::check(const TableExplainOptions& o) const {
  if (!is_target_function(o.target_function))
    throw Error(ErrorCode::kInvalidArgument,
                "target function '" + o.target_function + "' does not apply to a table model",
                "use logodds (the default), logprob, prob or logit");
  if (o.target_function == "logit" && !mlp_)
    throw Error(ErrorCode::kInvalidArgument,
                "target function 'logit': a glass-box student gives probabilities, not logits",
                "use logodds (the default), logprob or prob");
  std::vector<MethodSpec> methods = parse_methods(o.methods, mlp_ != nullptr);
  for (const MethodSpec& m : methods)
    if (m.name == "exact_shapley" &&
        columns_.size() > static_cast<size_t>(m.options.get_int("max_columns")))
      throw Error(
          ErrorCode::kInvalidArgument,
          "exact_shapley over " + std::to_string(columns_.size()) + " columns needs 2^" +
              std::to_string(columns_.size()) +
              " model evaluations per row, above max_columns=" + m.options.get("max_columns"),
          "use shapley_sampling, or raise max_columns (at most " +
              std::to_string(kMaxExactColumns) + ")");
  if (!o.target.empty()) {
    bool found = std::find(classes_.begin(), classes_.end(), o.target) != classes_.end();
    std::string digits = o.target[0] == '#' ? o.target.substr(1) : o.target;
    if (!found && !(!digits.empty() && digits.size() < 6 &&
                    digits.find_first_not_of("0123456789") == std::string::npos &&
                    std::stoul(digits) < classes_.size())) {
      std::string list;
      for (const auto& c : classes_) list += (list.empty() ? "" : ", ") + c;
      throw Error(ErrorCode::kInvalidArgument,
                  "class '" + o.target + "' is not a class of this model",
                  "its classes are " + list + " (or their index, 0.." +
                      std::to_string(classes_.size() - 1) + ")");
    }
  }
}

std::vector<uint16_t> TableExplainer::baseline_bins(const data::Table& table,
                                                   std::vector<std::string>* texts,
                                                   bool* from_table_out) const {
  const std::vector<Feature>& features = featurizer_->features();
  const size_t F = features.size();
  std::vector<size_t> player(F);
  for (size_t f = 0; f < F; ++f)
    player[f] = std::find(columns_.begin(), columns_.end(), features[f].column) - columns_.begin();
  std::vector<uint16_t> base(F, 0);
  std::vector<std::string> base_text(columns_.size());
  bool from_table = false;
  std::vector<size_t> all(table.n_rows());
  std::iota(all.begin(), all.end(), size_t{0});
  std::vector<std::vector<uint16_t>> table_bins;
  for (size_t f = 0; f < F; ++f) {
    const Feature& ft = features[f];
    int b = ft.baseline;
    double mean = ft.mean;
    if (b < 0) {
      from_table = true;
      const data::Column& c = table.column(ft.column);
      if (ft.kind == Feature::kNumeric) {
        double s = 0, n = 0;
        for (size_t r = 0; r < c.size(); ++r)
          if (!c.is_missing(r)) s += c.numeric[r], n += 1;
        if (n == 0) {
          b = ft.n_bins() - 1;
        } else {
          mean = s / n;
          b = static_cast<int>(std::min<size_t>(
              std::lower_bound(ft.upper.begin(), ft.upper.end(), mean) - ft.upper.begin(),
              ft.upper.size() - 1));
        }
      } else {
        if (table_bins.empty()) table_bins = featurizer_->transform(table, all);
        std::vector<size_t> count(ft.n_bins(), 0);
        for (uint16_t v : table_bins[f]) ++count[v];
        b = static_cast<int>(std::max_element(count.begin(), count.end()) - count.begin());
      }
    }
    base[f] = static_cast<uint16_t>(b);
    std::string& t = base_text[player[f]];
    if (ft.kind == Feature::kNumeric)
      t = b == ft.n_bins() - 1 ? "missing" : "mean " + format_number(mean);
    else if (ft.kind == Feature::kCategorical)
      t = "most frequent '" + ft.bin_labels[b] + "'";
    else
      t = "empty text";
  }
  if (texts) *texts = std::move(base_text);
  if (from_table_out) *from_table_out = from_table;
  return base;
}

std::vector<double> TableExplainer::coalition_values(
    const data::Table& table, size_t row, const std::vector<std::vector<uint8_t>>& keep,
    size_t target_class, const std::string& target_function) const {
  if (!is_target_function(target_function) || (target_function == "logit" && !mlp_))
    check(TableExplainOptions{{"occlusion"}, "", target_function});  // throws naming it
  if (row >= table.n_rows())
    throw Error(ErrorCode::kInvalidArgument,
                table.source() + ": row " + std::to_string(row) + " is out of range",
                "give a row index below " + std::to_string(table.n_rows()));
  if (target_class >= classes_.size())
    throw Error(ErrorCode::kInvalidArgument,
                "class index " + std::to_string(target_class) + " is not a class of this model",
                "give 0.." + std::to_string(classes_.size() - 1));
  const std::vector<Feature>& features = featurizer_->features();
  const size_t F = features.size();
  std::vector<size_t> player(F);
  for (size_t f = 0; f < F; ++f)
    player[f] = std::find(columns_.begin(), columns_.end(), features[f].column) - columns_.begin();
  const std::vector<uint16_t> base = baseline_bins(table, nullptr, nullptr);
  const std::vector<std::vector<uint16_t>> x = featurizer_->transform(table, {row});
  std::vector<double> out;
  out.reserve(keep.size());
  for (size_t start = 0; start < keep.size(); start += kBatch) {
    const size_t n = std::min(kBatch, keep.size() - start);
    std::vector<std::vector<uint16_t>> bins(x.size(), std::vector<uint16_t>(n));
    for (size_t q = 0; q < n; ++q) {
      const auto& kq = keep[start + q];
      if (kq.size() != columns_.size())
        throw Error(ErrorCode::kInvalidArgument,
                    "a keep-mask has " + std::to_string(kq.size()) + " entries, the model " +
                        std::to_string(columns_.size()) + " input columns",
                    "give one entry per column, in columns() order");
      for (size_t f = 0; f < F; ++f) bins[f][q] = kq[player[f]] ? x[f][0] : base[f];
      for (size_t f = F; f < x.size(); ++f) bins[f][q] = x[f][0];  // the text's word count
    }
    Probs p;
    if (mlp_) {
      p = mlp_->logits_of_bins(bins);
    } else {
      p = student_->student().predict(bins);
      for (auto& r : p)
        for (double& v : r) v = std::log(std::max(v, 1e-300));
    }
    for (const auto& r : p) out.push_back(target_value(r, target_class, target_function));
  }
  return out;
}

std::vector<RowExplanation> TableExplainer::explain(const data::Table& table,
                                                    const std::vector<size_t>& rows,
                                                    const TableExplainOptions& given,
                                                    const ExplainContext& context) const {
  TableExplainOptions o = given;
  if (o.methods.empty())
    o.methods = {columns_.size() <= kDefaultExactColumns ? "exact_shapley" : "shapley_sampling"};
  check(o);
  const std::vector<MethodSpec> methods = parse_methods(o.methods, mlp_ != nullptr);
  for (size_t r : rows)
    if (r >= table.n_rows())
      throw Error(ErrorCode::kInvalidArgument,
                  table.source() + ": row " + std::to_string(r) +
                      " is out of range (the table has " + std::to_string(table.n_rows()) +
                      " data rows, 0.." +
                      std::to_string(table.n_rows() == 0 ? 0 : table.n_rows() - 1) + ")",
                  "give a row index below " + std::to_string(table.n_rows()));
  for (const std::string& c : columns_) table.column(c);  // throws naming the file's columns

  const std::vector<Feature>& features = featurizer_->features();
  const size_t F = features.size();
  const size_t k = columns_.size();
  std::vector<size_t> player(F);
  for (size_t f = 0; f < F; ++f)
    player[f] = std::find(columns_.begin(), columns_.end(), features[f].column) - columns_.begin();

  // The baseline bins: saved at training time, or (older saves) from the explained table.
  std::vector<std::string> base_text;
  bool from_table = false;
  const std::vector<uint16_t> base = baseline_bins(table, &base_text, &from_table);

  // One-hot layout of the MLP: the column of each entry.
  std::vector<size_t> entry_player;
  if (mlp_) {
    entry_player.assign(static_cast<size_t>(mlp_->n_onehot()), 0);
    for (size_t f = 0; f < F; ++f)
      for (int b = 0; b < features[f].n_bins(); ++b)
        entry_player[mlp_->offsets()[f] + b] = player[f];
  }

  // Model outputs (MLP logits, a student's log-probabilities) of dense bins [feature][n].
  auto outputs = [&](const std::vector<std::vector<uint16_t>>& bins) -> Probs {
    if (mlp_) return mlp_->logits_of_bins(bins);
    Probs p = student_->student().predict(bins);
    for (auto& row : p)
      for (double& v : row) v = std::log(std::max(v, 1e-300));
    return p;
  };

  int64_t target_class = -1;
  if (!o.target.empty()) {
    auto it = std::find(classes_.begin(), classes_.end(), o.target);
    target_class = it != classes_.end()
                       ? it - classes_.begin()
                       : std::stol(o.target[0] == '#' ? o.target.substr(1) : o.target);
  }

  const std::vector<std::vector<uint16_t>> row_bins = featurizer_->transform(table, rows);
  const double total_work = static_cast<double>(rows.size() * methods.size());
  std::vector<RowExplanation> out;
  for (size_t i = 0; i < rows.size(); ++i) {
    const size_t r = rows[i];
    Game g;
    g.k = k;
    g.player = player;
    for (const auto& fb : row_bins) g.x.push_back(fb[i]);
    g.base = base;
    if (row_bins.size() > F) g.base.push_back(g.x[F]);  // the text's word count is kept

    // v(S) for coalitions given as masks over the columns (kept when set).
    double evaluations = 0;
    auto values = [&](const std::vector<std::vector<char>>& coalitions, size_t c) {
      std::vector<double> v;
      v.reserve(coalitions.size());
      for (size_t start = 0; start < coalitions.size(); start += kBatch) {
        const size_t n = std::min(kBatch, coalitions.size() - start);
        std::vector<std::vector<uint16_t>> bins(g.x.size(), std::vector<uint16_t>(n));
        for (size_t q = 0; q < n; ++q) {
          const auto& keep = coalitions[start + q];
          for (size_t f = 0; f < F; ++f) bins[f][q] = keep[player[f]] ? g.x[f] : g.base[f];
          for (size_t f = F; f < g.x.size(); ++f) bins[f][q] = g.x[f];
        }
        Probs o2 = outputs(bins);
        for (const auto& row : o2) v.push_back(target_value(row, c, o.target_function));
        evaluations += static_cast<double>(n);
      }
      return v;
    };

    RowExplanation rx;
    rx.row = r;
    rx.line = table.line_of(r);
    {
      Probs full = outputs([&] {
        std::vector<std::vector<uint16_t>> b(g.x.size(), std::vector<uint16_t>(1));
        for (size_t f = 0; f < g.x.size(); ++f) b[f][0] = g.x[f];
        return b;
      }());
      const double lse = logsumexp(full[0], full[0].size());
      for (double v : full[0]) rx.probabilities.push_back(std::exp(v - lse));
      rx.predicted = classes_[std::max_element(rx.probabilities.begin(), rx.probabilities.end()) -
                              rx.probabilities.begin()];
    }
    const size_t c =
        target_class >= 0
            ? static_cast<size_t>(target_class)
            : static_cast<size_t>(std::find(classes_.begin(), classes_.end(), rx.predicted) -
                                  classes_.begin());
    const std::vector<double> ends =
        values({std::vector<char>(k, 1), std::vector<char>(k, 0)}, c);  // f(x), f(baseline)

    for (size_t mi = 0; mi < methods.size(); ++mi) {
      const MethodSpec& m = methods[mi];
      const auto t0 = std::chrono::steady_clock::now();
      evaluations = 0;
      std::vector<double> scores(k, 0.0);
      bool path = false;  // scores meant to sum to f(x) - f(baseline)
      if (m.name == "occlusion") {
        std::vector<std::vector<char>> co(k, std::vector<char>(k, 1));
        for (size_t j = 0; j < k; ++j) co[j][j] = 0;
        std::vector<double> v = values(co, c);
        for (size_t j = 0; j < k; ++j) scores[j] = ends[0] - v[j];
      } else if (m.name == "exact_shapley") {
        const size_t n = size_t{1} << k;
        std::vector<std::vector<char>> co(n, std::vector<char>(k, 0));
        for (size_t s = 0; s < n; ++s)
          for (size_t j = 0; j < k; ++j) co[s][j] = (s >> j) & 1;
        std::vector<double> v = values(co, c);
        // weight of a coalition of size s without player j: s! (k - s - 1)! / k!
        std::vector<double> w(k);
        for (size_t s = 0; s < k; ++s)
          w[s] = std::exp(std::lgamma(double(s) + 1) + std::lgamma(double(k - s)) -
                          std::lgamma(double(k) + 1));
        for (size_t s = 0; s < n; ++s) {
          const size_t size = static_cast<size_t>(__builtin_popcountll(s));
          for (size_t j = 0; j < k; ++j)
            if (!((s >> j) & 1)) scores[j] += w[size] * (v[s | (size_t{1} << j)] - v[s]);
        }
        path = true;
      } else if (m.name == "shapley_sampling") {
        const int64_t samples = m.options.get_int("samples");
        std::mt19937_64 rng(static_cast<uint64_t>(m.options.get_int("seed")));
        std::vector<size_t> perm(k);
        std::iota(perm.begin(), perm.end(), size_t{0});
        for (int64_t p = 0; p < samples; ++p) {
          if (p % 2 == 0)
            std::shuffle(perm.begin(), perm.end(), rng);
          else
            std::reverse(perm.begin(), perm.end());  // the antithetic partner
          std::vector<std::vector<char>> co(k + 1, std::vector<char>(k, 0));
          for (size_t j = 1; j <= k; ++j) {
            co[j] = co[j - 1];
            co[j][perm[j - 1]] = 1;
          }
          std::vector<double> v = values(co, c);
          for (size_t j = 0; j < k; ++j) scores[perm[j]] += v[j + 1] - v[j];
        }
        for (double& s : scores) s /= static_cast<double>(samples);
        path = true;
      } else {  // integrated_gradients, input_x_gradient: the MLP's one-hot input
        const int64_t E = mlp_->n_onehot();
        at::Tensor X = at::zeros({E}, at::kDouble), B = at::zeros({E}, at::kDouble);
        double* xp = X.data_ptr<double>();
        double* bp = B.data_ptr<double>();
        for (size_t f = 0; f < F; ++f) {
          xp[mlp_->offsets()[f] + g.x[f]] = 1;
          bp[mlp_->offsets()[f] + g.base[f]] = 1;
        }
        const bool ig = m.name == "integrated_gradients";
        const int64_t steps = ig ? m.options.get_int("n_steps") : 1;
        at::Tensor alpha = ig ? (at::arange(steps, at::kDouble) + 0.5) / double(steps)
                              : at::ones({1}, at::kDouble);
        at::Tensor P = (B.unsqueeze(0) + alpha.unsqueeze(1) * (X - B).unsqueeze(0))
                           .detach()
                           .requires_grad_(true);
        at::Tensor t =
            target_tensor(mlp_->logits_of(P), static_cast<int64_t>(c), o.target_function);
        t.sum().backward();
        at::Tensor contrib = (P.grad().mean(0) * (X - B)).contiguous();
        const double* cp = contrib.data_ptr<double>();
        for (int64_t e = 0; e < E; ++e) scores[entry_player[e]] += cp[e];
        evaluations = 3.0 * static_cast<double>(steps);  // forward + backward (two forwards)
        path = ig;
      }
      if (context.progress &&
          !context.progress(static_cast<double>(i * methods.size() + mi + 1) / total_work))
        throw Error(ErrorCode::kCancelled, "cancelled");

      Attribution a;
      a.method = m.name;
      a.options = m.options.values();
      a.target_function = o.target_function;
      for (size_t j = 0; j < k; ++j) {
        const std::string label = columns_[j] + "=" + cell_text(table.column(columns_[j]), r);
        a.tokens.push_back(-1);  // columns have no ids of a vocabulary
        // "x=1, colour=red" on the console; each feature shows its label alone.
        a.token_texts.push_back((j > 0 ? ", " : "") + label);
        a.features.push_back({label, static_cast<int64_t>(j), static_cast<int64_t>(j) + 1});
      }
      a.n_input_tokens = static_cast<int64_t>(k);
      a.step_tokens = {static_cast<TokenId>(c)};
      a.step_texts = {classes_[c]};
      a.step_positions = {static_cast<int64_t>(k) - 1};
      a.scores = scores;
      a.target_values = {ends[0]};
      a.baseline_values = {ends[1]};
      if (path)
        a.convergence_delta = {std::accumulate(scores.begin(), scores.end(), 0.0) -
                               (ends[0] - ends[1])};
      a.elapsed_ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      a.forward_passes = evaluations;
      nlohmann::json probs = nlohmann::json::object();
      for (size_t q = 0; q < classes_.size(); ++q) probs[classes_[q]] = rx.probabilities[q];
      nlohmann::json baseline = nlohmann::json::object();
      for (size_t j = 0; j < k; ++j) baseline[columns_[j]] = base_text[j];
      a.extra = {{"table_model", mlp_ ? "mlp" : "student"},
                 {"row", r},
                 {"line", rx.line},
                 {"source", table.source()},
                 {"predicted", rx.predicted},
                 {"probabilities", probs},
                 {"baseline", baseline},
                 {"baseline_source", from_table ? "explained table" : "training rows"}};
      a.warnings = saturation_warnings(a);
      if (from_table)
        a.warnings.push_back(
            "the model was saved without its training baselines: a removed column takes the "
            "mean / most frequent value of the explained table (" +
            table.source() + ") instead; train or distill it again to fix the baseline");
      rx.attributions.push_back(std::move(a));
    }
    out.push_back(std::move(rx));
  }
  return out;
}

}  // namespace candor::distill
