// Distillation: a teacher (any classifier candor can run, or labels / probabilities given in a
// column) labels a table; a glass-box student (logistic regression with one coefficient per
// numeric column, a shallow decision tree, a GAM of smooth shape functions), its strength chosen
// by cross-validation on the training rows, is fitted to the teacher's probabilities; a
// fidelity report measures on held-out rows how far the student can stand in for the teacher
// and shows the student's global explanation (JSON; src/report renders it as HTML). Part of
// candor_train: it uses the training loop (train.h), never the reverse.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "candor/classifier.h"
#include "candor/data.h"
#include "candor/model.h"
#include "candor/options.h"

namespace candor::train {
struct TrainOptions;
class TransformerClassifier;
}  // namespace candor::train

namespace candor::distill {

// Class probabilities per row: [rows][classes].
using Probs = std::vector<std::vector<double>>;

// --- teachers ----------------------------------------------------------------------------------

class Teacher {
 public:
  virtual ~Teacher() = default;
  virtual std::string describe() const = 0;
  virtual const std::vector<std::string>& classes() const = 0;
  // Probabilities for rows `rows` of `table`. Throws Error naming the column or row at fault.
  virtual Probs predict(const data::Table& table, const std::vector<size_t>& rows) const = 0;
};

// A text classifier reading the column `text_column`. `normalise`: the classifier sees the text
// lower-cased with punctuation split off (Featurizer::words joined by spaces), the
// pre-processing fastText's published classifiers were trained with.
std::unique_ptr<Teacher> classifier_teacher(std::shared_ptr<const TextClassifier> classifier,
                                            std::string text_column, bool normalise = false);
// A causal LM used as a classifier: each row fills `prompt_template` ("{column}" is replaced by
// the row's value of that column), and the class probabilities are the softmax over the
// next-token logits of the verbaliser tokens (e.g. " yes" / " no"; the first token of each
// verbaliser's encoding). Throws Error(kInvalidArgument) when two verbalisers share their
// first token or a placeholder names a missing column.
std::unique_ptr<Teacher> lm_teacher(std::shared_ptr<const Model> model, std::string prompt_template,
                                    std::vector<std::string> classes,
                                    std::vector<std::string> verbalisers);
// Fills "{column}" placeholders of `prompt_template` from row `row` of `table`.
std::string fill_template(const std::string& prompt_template, const data::Table& table, size_t row);

// Labels (a column of class names) or probabilities given in the data: `column` holds the
// teacher's label per row; when columns `column + ":" + class` exist for every class they hold
// its probabilities instead. Classes are the column's distinct values (sorted) unless given.
std::unique_ptr<Teacher> column_teacher(const data::Table& table, const std::string& column,
                                        std::vector<std::string> classes = {});

// (MlpClassifier, a teacher candor trains on the true labels, follows the featurizer below.)

// --- features ------------------------------------------------------------------------------------

struct FeatureOptions {
  std::vector<std::string> columns;  // input columns (empty: every column except excluded ones)
  std::vector<std::string> exclude;  // columns never used as inputs (labels, teacher outputs)
  int max_bins = 32;                 // quantile bins per numeric column (+ a missing bin)
  int ngram_max = 2;                 // text: words and word n-grams up to this length
  int min_count = 2;                 // text: n-grams seen in fewer training rows are dropped
  int max_vocab = 5000;              // text: the most frequent n-grams kept
  bool lowercase = true;             // text: lower-case ASCII letters before splitting
};

// One input feature of the students: a numeric column in quantile bins, a categorical column,
// or the presence of one text n-gram.
struct Feature {
  enum Kind { kNumeric, kCategorical, kNgram } kind;
  std::string name;                     // column name or n-gram text
  std::string column;                   // source column
  std::vector<double> upper;            // kNumeric: bin b holds values <= upper[b] (last: +inf)
  std::vector<std::string> bin_labels;  // one per bin (the last bin of kNumeric/kCategorical
                                        // columns is "missing")
  std::vector<double> centers;          // kNumeric: mean training value of each bin but the
                                        // missing one (upper.size() values), in the column's units
  // The bin that stands for the column when an explanation removes it (table_explain.h): for
  // kNumeric the bin of the training mean (`mean`), for kCategorical the most frequent training
  // level, for kNgram 0 (absent). -1: unknown (a featurizer saved before baselines were kept).
  int baseline = -1;
  double mean = 0;  // kNumeric: the mean of the training values (baseline >= 0 only)
  int n_bins() const { return static_cast<int>(bin_labels.size()); }
};

// Featurized rows stored sparsely (CSR): row i's entries are [start[i], start[i + 1]) of
// `feature` / `bin`. Every numeric and categorical feature has an entry (its bin); an n-gram
// feature only where it is present (bin 1). `length`: each text's word count (capped at 65535),
// empty when there is no text column.
struct SparseRows {
  std::vector<size_t> start{0};
  std::vector<uint32_t> feature;
  std::vector<uint16_t> bin;
  std::vector<uint16_t> length;
  size_t n_rows() const { return start.size() - 1; }
};

// Features learned on training rows (bin edges, categories, vocabulary) and applied to any rows.
class Featurizer {
 public:
  Featurizer() = default;
  // Throws Error(kNotFound) for a missing column, Error(kInvalidArgument) when nothing is left.
  void fit(const data::Table& table, const std::vector<size_t>& rows, const FeatureOptions& o);
  const std::vector<Feature>& features() const { return features_; }
  // Bin of every feature for each row: [feature][row] (row order of `rows`). When there are
  // n-gram features, one more row follows them: each text's word count (capped at 65535), by
  // which the linear student divides its n-gram indicators (fastText-style averaging).
  std::vector<std::vector<uint16_t>> transform(const data::Table& table,
                                               const std::vector<size_t>& rows) const;
  // The same bins stored sparsely: memory grows with the entries present, not features x rows
  // (tens of thousands of n-grams over tens of thousands of texts).
  SparseRows transform_sparse(const data::Table& table, const std::vector<size_t>& rows) const;
  // Words of a text as the featurizer splits them (lower-cased, punctuation split off).
  static std::vector<std::string> words(const std::string& text, bool lowercase);
  nlohmann::json to_json() const;
  // Everything transform() needs (bin edges, categories, vocabulary, options), to save a fitted
  // featurizer; from_state reads it back (Error(kInvalidArgument) naming `source` when malformed).
  nlohmann::json state() const;
  static Featurizer from_state(const nlohmann::json& state, const std::string& source);

 private:
  FeatureOptions options_;
  std::vector<Feature> features_;
  std::string text_column_;  // the one text column (n-grams), if any
  std::vector<std::pair<std::string, size_t>> ngram_index_;  // n-gram -> feature index
};

// A multi-layer perceptron over the featurizer's bins (one embedding per feature bin, summed:
// a first layer over one-hot inputs), ReLU hidden layers, softmax output, trained with
// train::train_loop: a teacher for tables.
struct MlpOptions {
  std::vector<int64_t> hidden = {64, 32};
  FeatureOptions features;
};

// The MLP's training options, declared once (defaults from MlpOptions and train::TrainOptions):
// hidden (widths, e.g. "64,32"), epochs, batch_size, lr, seed. `candor train` and
// `distill --teacher mlp` offer them as command-line options.
OptionSpecs mlp_options();
// Applies checked values (Options over mlp_options()) to `mlp` and `train`.
void apply_mlp_options(const Options& values, MlpOptions* mlp, train::TrainOptions* train);

class MlpClassifier : public Teacher {
 public:
  MlpClassifier() = default;
  std::string describe() const override;
  const std::vector<std::string>& classes() const override { return classes_; }
  Probs predict(const data::Table& table, const std::vector<size_t>& rows) const override;
  // All parameters in a fixed order (for tests of reproducibility).
  const std::vector<at::Tensor>& parameters() const { return params_; }
  // The featurizer fitted with it: the input columns it reads and how.
  const Featurizer& featurizer() const { return featurizer_; }
  // The network on its one-hot input (what the column explainers differentiate, table_explain.h):
  // entry offsets()[f] + b is 1 when feature f is in bin b; n_onehot() entries in all.
  const std::vector<int64_t>& offsets() const { return offsets_; }
  int64_t n_onehot() const;
  // Logits [batch, classes] of inputs `x` [batch, n_onehot()] (one-hot or any point between
  // two), computed in x's dtype (float or double) with gradients when x requires them.
  at::Tensor logits_of(const at::Tensor& x) const;
  // Logits [rows][classes] of featurized rows, dense bins [feature][row] (Featurizer::transform),
  // computed in double precision.
  Probs logits_of_bins(const std::vector<std::vector<uint16_t>>& bins) const;

  // Saves the classifier (featurizer, classes, weights) as `dir`/mlp.json, written atomically
  // (a temporary file renamed); `dir` is created. `candor train` saves every MLP it trains.
  void save(const std::string& dir, const std::string& label_column) const;
  // Loads a saved classifier from its folder, its mlp.json, or a file beside it (the folder's
  // model.ckpt). Throws Error(kNotFound / kInvalidArgument) naming the file.
  static std::unique_ptr<MlpClassifier> load(const std::string& path);
  // Whether `path` is such a folder or file (it or its folder holds an mlp.json).
  static bool is_saved(const std::string& path);

  // Trains on rows `rows` of `table` with the true labels in `label_column`. Throws
  // Error(kInvalidArgument) naming the column when it has fewer than two classes or missing
  // labels.
  static std::unique_ptr<MlpClassifier> train(const data::Table& table,
                                              const std::vector<size_t>& rows,
                                              const std::string& label_column,
                                              const MlpOptions& mlp,
                                              const train::TrainOptions& options);

 private:
  at::Tensor logits(const std::vector<std::vector<uint16_t>>& bins, const std::vector<int64_t>& idx,
                    at::ScalarType dtype = at::kFloat) const;  // [batch, classes]
  std::vector<std::string> classes_;
  Featurizer featurizer_;
  std::vector<int64_t> offsets_;  // first one-hot index of each feature
  std::vector<at::Tensor> params_;
  int64_t n_layers_ = 0;
};

// --- students
// --------------------------------------------------------------------------------------

struct StudentOptions {
  std::string kind = "linear";  // linear | tree | gam | transformer
  std::string spec;             // the whole spec (the transformer student parses its own options)
  std::vector<std::string> given;  // the option names the spec gave (cross-validation leaves them)
  // Folds of the cross-validation on the training rows that chooses each glass-box student's
  // strength (linear: lambda, tree: min_leaf, gam: smoothing) unless the spec gives it; < 2: none.
  int cv_folds = 5;
  // linear: penalty strength (mean loss + lambda * (l1_ratio |w| + (1 - l1_ratio) w^2 / 2), on
  // standardised numeric columns) and the L1 share of it (1 = lasso). `numeric`: "linear" (one
  // standardised coefficient per numeric column, plus one for its missing values) or "bins" (one
  // weight per quantile bin).
  double lambda = 1e-3, l1_ratio = 1.0;
  int max_iter = 100;
  std::string numeric = "linear";
  // tree
  int max_depth = 4, min_leaf = 20;
  // gam: backfitting sweeps (rounds) of damped Newton steps (learning_rate) over shape functions
  // on at most `bins` quantile bins per numeric column with a second-difference smoothness
  // penalty (smoothing); `bags` bootstrap refits give the confidence bands; `monotone`:
  // "age:+;bmi:-" constrains those shapes to rise / fall.
  int rounds = 30, interactions = 3, bins = 16, bags = 10;
  double learning_rate = 1.0, smoothing = 1.0;
  std::string monotone;
  uint64_t seed = 0;  // glass-box students: the cross-validation folds (0: distill() uses its seed)
};
// The declared options of a student kind (linear, tree, gam, transformer, lm: name, type, default
// from StudentOptions / TransformerOptions / LmStudentOptions, bounds, description), for parsing
// and for listing. Throws Error(kInvalidArgument) for an unknown kind.
OptionSpecs student_options(const std::string& kind);
// Parses "linear", "tree:max_depth=5", "gam:rounds=500,interactions=5",
// "transformer:dim=64,epochs=10" (key=value pairs after a colon) against student_options(kind).
// Throws Error(kInvalidArgument) for unknown kinds, unknown keys and bad values.
StudentOptions parse_student(const std::string& spec);

class Student {
 public:
  virtual ~Student() = default;
  virtual std::string kind() const = 0;
  // Fits probabilities `target` [rows][classes] of the featurized rows `bins` [feature][row].
  virtual void fit(const Featurizer& f, const std::vector<std::vector<uint16_t>>& bins,
                   const Probs& target) = 0;
  virtual Probs predict(const std::vector<std::vector<uint16_t>>& bins) const = 0;
  // Students that fit sparse rows (the linear student) return true and implement fit_sparse /
  // predict_sparse; the pipeline then never builds the dense [feature][row] bins.
  virtual bool fits_sparse() const { return false; }
  virtual void fit_sparse(const Featurizer& f, const SparseRows& rows, const Probs& target);
  virtual Probs predict_sparse(const SparseRows& rows) const;
  // The global explanation: weights / rules / shape functions (JSON). Rendered as HTML from the
  // report JSON by render_distill_html (candor/report.h).
  virtual nlohmann::json explain() const = 0;
  // Students that read one text column themselves (the transformer) return true and implement
  // fit_text / predict_text; the pipeline then fits no featurizer. `labels`: the true class per
  // row (-1: unknown); `classes`: the teacher's class names.
  virtual bool reads_text() const { return false; }
  // The fitted student as JSON (its kind, options and parameters), which student_from_state
  // reads back into a student that predicts identically. Students saved another way (the
  // transformer: a Hugging Face folder) throw Error(kUnsupported).
  virtual nlohmann::json state() const;
  virtual void fit_text(const std::vector<std::string>& texts, const Probs& target,
                        const std::vector<int>& labels, const std::vector<std::string>& classes);
  virtual Probs predict_text(const std::vector<std::string>& texts) const;
};
std::unique_ptr<Student> make_student(const StudentOptions& options);
// A glass-box student (linear, tree, GAM) from its state(), over the features of the featurizer
// it was fitted with. Throws Error(kInvalidArgument) naming `source` when the state is malformed
// or does not match the features.
std::unique_ptr<Student> student_from_state(const nlohmann::json& state, const Featurizer& f,
                                            const std::string& source);

// The transformer as a distillation student (`--student transformer[:opts]`, the classifier of
// text_transformer.h): it reads the one text column itself (DistillOptions::features.columns).
// `o` carries the training settings (seed, progress, checkpoint).
std::unique_ptr<Student> make_transformer_student(const std::string& spec,
                                                  const train::TrainOptions& o);
// The trained classifier of a student made by make_transformer_student (nullptr for others).
const train::TransformerClassifier* transformer_of(const Student& student);

// --- fidelity
// --------------------------------------------------------------------------------------

struct SliceFidelity {
  std::string column, value;
  size_t rows = 0;
  double agreement = 0;
};
struct Fidelity {
  size_t rows = 0;
  double agreement = 0;  // share of rows where student and teacher pick the same class
  double kl = 0;         // mean KL(teacher || student), nats
  double teacher_accuracy = -1, student_accuracy = -1;  // vs true labels (-1: none given)
  std::vector<SliceFidelity> slices;
};
// `labels` (may be empty): the true class index per row, -1 when unknown. `slice_values`: per
// slice column, its value per row.
Fidelity measure_fidelity(
    const Probs& teacher, const Probs& student, const std::vector<int>& labels,
    const std::vector<std::pair<std::string, std::vector<std::string>>>& slice_values);

// --- the whole pipeline ------------------------------------------------------------------------

struct DistillOptions {
  FeatureOptions features;
  StudentOptions student;
  std::string label_column;                               // true labels (optional)
  std::map<std::string, std::string> label_map;           // label value -> teacher class name
  std::vector<std::string> slice_columns;                 // fidelity per value of these columns
  std::string split_column;                               // split given by a column ...
  double test_fraction = 0.2, validation_fraction = 0.0;  // ... or by seed
  uint64_t seed = 0;
  std::function<bool(double)> progress;  // fraction done; false cancels
  // Extra unlabelled rows the teacher labels for training only (a transfer set); it needs the
  // student's input columns.
  const data::Table* transfer = nullptr;
  // Makes the student instead of make_student(student) (e.g. a transformer student with training
  // progress and a checkpoint).
  std::function<std::unique_ptr<Student>()> student_factory;
};

struct DistillResult {
  std::vector<std::string> classes;
  Featurizer featurizer;
  std::unique_ptr<Student> student;
  Fidelity train_fidelity, test_fidelity;
  std::vector<data::SkippedRecord> skipped;
  double fit_seconds = 0;
  nlohmann::json to_json() const;  // report.json; render_distill_html (report.h) renders it
};

// The split of `table`'s own rows that distill() uses: by `o.split_column` when given, else
// seeded (o.validation_fraction, o.test_fraction, o.seed). Everything trained for one
// distillation (an MLP teacher, the featurizer, the student) trains on its train rows only, so
// no held-out row is ever seen in training.
data::Split distill_split(const data::Table& table, const DistillOptions& o);

// Splits the table, labels it with the teacher, fits the student on the training rows and
// measures fidelity on the test rows. Throws Error(kInvalidArgument) when the teacher's
// classes do not match the label column's, or the teacher labels everything one class.
DistillResult distill(const data::Table& table, const Teacher& teacher, const DistillOptions& o);
// A glass-box student saved by `candor distill` (OUT/student.json: the featurizer, the classes
// and the student's state), read back as a classifier over table rows: `candor predict` and
// every command that takes a model read it. Its predictions equal those of the student that was
// fitted, bit for bit.
class SavedStudent : public Teacher {
 public:
  // Writes `dir`/student.json atomically for the student of `r` and returns true; returns false
  // (writing nothing) for a student that is not saved this way (the transformer).
  static bool save(const DistillResult& r, const std::string& dir, const std::string& teacher);
  // Loads from the folder, its student.json or a file beside it. Throws Error(kNotFound /
  // kInvalidArgument) naming the file.
  static std::unique_ptr<SavedStudent> load(const std::string& path);
  // Whether `path` is such a folder or file (it or its folder holds a student.json).
  static bool is_saved(const std::string& path);

  std::string describe() const override;
  const std::vector<std::string>& classes() const override { return classes_; }
  Probs predict(const data::Table& table, const std::vector<size_t>& rows) const override;
  const Featurizer& featurizer() const { return featurizer_; }
  const Student& student() const { return *student_; }
  const std::string& teacher() const { return teacher_; }  // what it was distilled from

 private:
  std::vector<std::string> classes_;
  Featurizer featurizer_;
  std::unique_ptr<Student> student_;
  std::string teacher_, file_;
};

// Probabilities of a fitted student for rows `rows` of `table` through featurizer `f`, as
// distill() computes them (sparse rows for the linear student, dense bins otherwise).
Probs predict_rows(const Student& student, const Featurizer& f, const data::Table& table,
                   const std::vector<size_t>& rows);

// Writes report.json and report.html (render_distill_html of that JSON) into `dir` (created).
void write_report(const DistillResult& r, const std::string& dir, const std::string& title);

}  // namespace candor::distill
