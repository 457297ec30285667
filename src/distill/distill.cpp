// Teachers, fidelity and the distillation pipeline with its JSON report (rendered as HTML by
// src/report).
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "candor/distill.h"
#include "candor/files.h"
#include "candor/error.h"
#include "candor/report.h"

namespace candor::distill {

namespace {

class ClassifierTeacher : public Teacher {
 public:
  ClassifierTeacher(std::shared_ptr<const TextClassifier> c, std::string column, bool normalise)
      : c_(std::move(c)), column_(std::move(column)), normalise_(normalise) {}
  std::string describe() const override {
    return c_->kind() + " classifier on column '" + column_ + "'" +
           (normalise_ ? " (normalised text)" : "");
  }
  const std::vector<std::string>& classes() const override { return c_->labels(); }
  Probs predict(const data::Table& t, const std::vector<size_t>& rows) const override {
    const data::Column& col = t.column(column_);
    std::vector<std::string> texts;
    for (size_t r : rows) {
      std::string s = col.is_missing(r) ? std::string() : col.raw[r];
      if (normalise_) {
        std::string joined;
        for (const auto& w : Featurizer::words(s, true)) joined += (joined.empty() ? "" : " ") + w;
        s = joined;
      }
      texts.push_back(std::move(s));
    }
    return c_->predict_proba_batch(texts);
  }

 private:
  std::shared_ptr<const TextClassifier> c_;
  std::string column_;
  bool normalise_;
};

class ColumnTeacher : public Teacher {
 public:
  ColumnTeacher(const data::Table& t, std::string column, std::vector<std::string> classes)
      : column_(std::move(column)), classes_(std::move(classes)) {
    const data::Column& c = t.column(column_);
    if (classes_.empty()) {
      std::set<std::string> s;
      for (size_t r = 0; r < t.n_rows(); ++r)
        if (!c.is_missing(r)) s.insert(c.raw[r]);
      classes_.assign(s.begin(), s.end());
    }
    if (classes_.size() < 2)
      throw Error(ErrorCode::kInvalidArgument,
                  t.source() + ": the teacher column '" + column_ + "' has " +
                      std::to_string(classes_.size()) + " class" +
                      (classes_.size() == 1 ? " ('" + classes_[0] + "')" : std::string("es")),
                  "a classifier needs at least two classes");
    prob_columns_ = true;
    for (const auto& k : classes_) prob_columns_ = prob_columns_ && t.has_column(column_ + ":" + k);
  }
  std::string describe() const override {
    return std::string("teacher ") + (prob_columns_ ? "probabilities" : "labels") +
           " from column '" + column_ + "'";
  }
  const std::vector<std::string>& classes() const override { return classes_; }
  Probs predict(const data::Table& t, const std::vector<size_t>& rows) const override {
    Probs out;
    const data::Column& c = t.column(column_);
    for (size_t r : rows) {
      std::vector<double> p(classes_.size(), 0.0);
      if (prob_columns_) {
        double z = 0;
        for (size_t k = 0; k < classes_.size(); ++k) {
          const data::Column& pc = t.column(column_ + ":" + classes_[k]);
          if (pc.type != data::ColumnType::kNumeric || pc.is_missing(r) || pc.numeric[r] < 0)
            throw Error(ErrorCode::kInvalidArgument,
                        t.where(r) + ", column '" + pc.name + "': not a probability");
          z += p[k] = pc.numeric[r];
        }
        if (!(z > 0))
          throw Error(ErrorCode::kInvalidArgument, t.where(r) + ": teacher probabilities sum to 0");
        for (double& v : p) v /= z;
      } else {
        if (c.is_missing(r))
          throw Error(ErrorCode::kInvalidArgument,
                      t.where(r) + ", column '" + column_ + "': missing teacher label");
        auto it = std::find(classes_.begin(), classes_.end(), c.raw[r]);
        if (it == classes_.end())
          throw Error(ErrorCode::kInvalidArgument, t.where(r) + ", column '" + column_ +
                                                       "': teacher label '" + c.raw[r] +
                                                       "' is not one of the classes");
        p[it - classes_.begin()] = 1.0;
      }
      out.push_back(std::move(p));
    }
    return out;
  }

 private:
  std::string column_;
  std::vector<std::string> classes_;
  bool prob_columns_ = false;
};

int argmax(const std::vector<double>& p) {
  int b = 0;
  for (size_t i = 1; i < p.size(); ++i)
    if (p[i] > p[b]) b = static_cast<int>(i);
  return b;
}

nlohmann::json fidelity_json(const Fidelity& f) {
  nlohmann::json j = {{"rows", f.rows}, {"agreement", f.agreement}, {"kl", f.kl}};
  if (f.teacher_accuracy >= 0) j["teacher_accuracy"] = f.teacher_accuracy;
  if (f.student_accuracy >= 0) j["student_accuracy"] = f.student_accuracy;
  j["slices"] = nlohmann::json::array();
  for (const auto& s : f.slices)
    j["slices"].push_back(
        {{"column", s.column}, {"value", s.value}, {"rows", s.rows}, {"agreement", s.agreement}});
  return j;
}

}  // namespace

std::unique_ptr<Teacher> classifier_teacher(std::shared_ptr<const TextClassifier> classifier,
                                            std::string text_column, bool normalise) {
  return std::make_unique<ClassifierTeacher>(std::move(classifier), std::move(text_column),
                                             normalise);
}

std::unique_ptr<Teacher> column_teacher(const data::Table& table, const std::string& column,
                                        std::vector<std::string> classes) {
  return std::make_unique<ColumnTeacher>(table, column, std::move(classes));
}

Fidelity measure_fidelity(
    const Probs& teacher, const Probs& student, const std::vector<int>& labels,
    const std::vector<std::pair<std::string, std::vector<std::string>>>& slice_values) {
  Fidelity f;
  f.rows = teacher.size();
  if (student.size() != teacher.size())
    throw Error(ErrorCode::kInternal, "fidelity: teacher and student row counts differ");
  if (f.rows == 0) return f;
  size_t agree = 0, labelled = 0, t_ok = 0, s_ok = 0;
  double kl = 0;
  std::vector<uint8_t> same(f.rows);
  for (size_t i = 0; i < f.rows; ++i) {
    int ta = argmax(teacher[i]), sa = argmax(student[i]);
    same[i] = ta == sa;
    agree += same[i];
    for (size_t k = 0; k < teacher[i].size(); ++k)
      if (teacher[i][k] > 0)
        kl += teacher[i][k] * std::log(teacher[i][k] / std::max(student[i][k], 1e-12));
    if (!labels.empty() && labels[i] >= 0) {
      ++labelled;
      t_ok += ta == labels[i];
      s_ok += sa == labels[i];
    }
  }
  f.agreement = double(agree) / double(f.rows);
  f.kl = kl / double(f.rows);
  if (labelled > 0) {
    f.teacher_accuracy = double(t_ok) / double(labelled);
    f.student_accuracy = double(s_ok) / double(labelled);
  }
  for (const auto& [col, values] : slice_values) {
    std::map<std::string, std::pair<size_t, size_t>> per;
    for (size_t i = 0; i < f.rows; ++i) {
      auto& e = per[values[i]];
      e.first++;
      e.second += same[i];
    }
    for (auto& [v, e] : per)
      f.slices.push_back({col, v, e.first, double(e.second) / double(e.first)});
  }
  return f;
}

nlohmann::json DistillResult::to_json() const {
  nlohmann::json j;
  j["classes"] = classes;
  j["student"] = student ? student->explain() : nlohmann::json();
  // Class names next to the students' class indices (rules, per-class models).
  auto name_of = [&](const nlohmann::json& index) -> std::string {
    if (!index.is_number_integer()) return "";
    const int64_t k = index.get<int64_t>();
    return k >= 0 && k < static_cast<int64_t>(classes.size()) ? classes[k] : "";
  };
  nlohmann::json& sj = j["student"];
  if (sj.is_object()) {
    for (const char* list : {"rules", "models"})
      if (sj.contains(list) && sj[list].is_array())
        for (auto& e : sj[list])
          if (e.is_object() && e.contains("class_index")) e["class"] = name_of(e["class_index"]);
  }
  j["features"] = featurizer.to_json();
  j["fidelity"] = {{"train", fidelity_json(train_fidelity)},
                   {"test", fidelity_json(test_fidelity)}};
  j["fit_seconds"] = fit_seconds;
  j["skipped_records"] = nlohmann::json::array();
  for (const auto& s : skipped)
    j["skipped_records"].push_back({{"line", s.line}, {"reason", s.reason}});
  return j;
}

data::Split distill_split(const data::Table& table, const DistillOptions& o) {
  return o.split_column.empty()
             ? data::split_by_seed(table.n_rows(), o.validation_fraction, o.test_fraction, o.seed)
             : data::split_by_column(table, o.split_column);
}

DistillResult distill(const data::Table& table_in, const Teacher& teacher,
                      const DistillOptions& o) {
  DistillResult res;
  data::Table combined;
  if (o.transfer) combined = data::concat(table_in, *o.transfer);
  const data::Table& table = o.transfer ? combined : table_in;
  const size_t n_own = table_in.n_rows();
  res.classes = teacher.classes();
  res.skipped = table.skipped();
  if (n_own < 2)
    throw Error(ErrorCode::kInvalidArgument, table.source() + ": too few rows to distill (" +
                                                 std::to_string(table.n_rows()) + ")");
  data::Split split = distill_split(table_in, o);
  for (size_t r = n_own; r < table.n_rows(); ++r) split.train.push_back(r);
  if (split.train.empty() || split.test.empty())
    throw Error(ErrorCode::kInvalidArgument,
                table.source() + ": the split leaves no training or no test rows");
  // True labels: must be classes of the teacher.
  std::vector<int> labels(table.n_rows(), -1);
  if (!o.label_column.empty()) {
    const data::Column& lc = table.column(o.label_column);
    std::set<std::string> seen;
    for (size_t r = 0; r < n_own; ++r) {
      if (lc.is_missing(r)) continue;
      auto mapped = o.label_map.find(lc.raw[r]);
      const std::string& value = mapped == o.label_map.end() ? lc.raw[r] : mapped->second;
      auto it = std::find(res.classes.begin(), res.classes.end(), value);
      if (it == res.classes.end()) {
        std::string have;
        for (const auto& c : res.classes) have += (have.empty() ? "" : ", ") + c;
        throw Error(ErrorCode::kInvalidArgument,
                    table.where(r) + ", column '" + o.label_column + "': label '" + value +
                        "' is not a class of the teacher (" + have + ")",
                    "the teacher's labels do not match this task; map the labels or choose "
                    "another teacher");
      }
      labels[r] = static_cast<int>(it - res.classes.begin());
      seen.insert(value);
    }
    if (seen.size() < 2)
      throw Error(ErrorCode::kInvalidArgument,
                  table.source() + ": the label column '" + o.label_column + "' has " +
                      std::to_string(seen.size()) + " class" +
                      (seen.size() == 1 ? " ('" + *seen.begin() + "')" : std::string("es")),
                  "a classifier needs at least two classes");
  }
  auto report = [&](double f) {
    if (o.progress && !o.progress(f)) throw Error(ErrorCode::kCancelled, "distillation cancelled");
  };
  report(0.0);
  Probs t_train = teacher.predict(table, split.train);
  Probs t_test = teacher.predict(table, split.test);
  for (const Probs* p : {&t_train, &t_test})
    for (const auto& row : *p)
      if (row.size() != res.classes.size())
        throw Error(ErrorCode::kInternal, "the teacher gave a wrong number of probabilities");
  {
    std::set<int> used;
    for (const auto& row : t_train) used.insert(argmax(row));
    if (used.size() < 2)
      throw Error(
          ErrorCode::kInvalidArgument,
          teacher.describe() + " labels every training row '" + res.classes[*used.begin()] + "'",
          "a student cannot learn a decision from one class; check the teacher");
  }
  report(0.3);
  FeatureOptions fo = o.features;
  for (const std::string& c : {o.label_column, o.split_column})
    if (!c.empty()) fo.exclude.push_back(c);
  auto slices = [&](const std::vector<size_t>& rows) {
    std::vector<std::pair<std::string, std::vector<std::string>>> s;
    for (const std::string& col : o.slice_columns) {
      const data::Column& c = table.column(col);
      std::vector<std::string> v;
      for (size_t r : rows) v.push_back(c.is_missing(r) ? "(missing)" : c.raw[r]);
      s.emplace_back(col, std::move(v));
    }
    return s;
  };
  auto pick = [&](const std::vector<size_t>& rows) {
    std::vector<int> l;
    for (size_t r : rows) l.push_back(labels[r]);
    return l;
  };
  auto t0 = std::chrono::steady_clock::now();
  if (o.student_factory) {
    res.student = o.student_factory();
  } else {
    StudentOptions so = o.student;
    // The glass-box students' cross-validation folds follow the split's seed.
    if (so.seed == 0 && (so.kind == "linear" || so.kind == "tree" || so.kind == "gam"))
      so.seed = o.seed;
    res.student = make_student(so);
  }
  Probs s_train, s_test;
  if (res.student->reads_text()) {
    // A neural text student: it reads the one text column itself.
    std::string text_column;
    if (fo.columns.size() == 1) {
      text_column = fo.columns[0];
    } else {
      for (const auto& c : table.columns())
        if (c.type == data::ColumnType::kText &&
            std::find(fo.exclude.begin(), fo.exclude.end(), c.name) == fo.exclude.end()) {
          if (!text_column.empty())
            throw Error(ErrorCode::kInvalidArgument,
                        table.source() + ": the " + res.student->kind() +
                            " student reads one text column, and '" + text_column + "' and '" +
                            c.name + "' are both text",
                        "name the text column (--columns)");
          text_column = c.name;
        }
    }
    if (text_column.empty())
      throw Error(ErrorCode::kInvalidArgument,
                  table.source() + ": the " + res.student->kind() + " student needs a text column",
                  "name the text column (--columns)");
    const data::Column& tc = table.column(text_column);
    auto texts = [&](const std::vector<size_t>& rows) {
      std::vector<std::string> v;
      for (size_t r : rows) v.push_back(tc.is_missing(r) ? std::string() : tc.raw[r]);
      return v;
    };
    std::vector<int> train_labels = pick(split.train);
    res.student->fit_text(texts(split.train), t_train, train_labels, res.classes);
    res.fit_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    report(0.9);
    s_train = res.student->predict_text(texts(split.train));
    s_test = res.student->predict_text(texts(split.test));
  } else if (res.student->fits_sparse()) {
    res.featurizer.fit(table, split.train, fo);
    SparseRows rows_train = res.featurizer.transform_sparse(table, split.train);
    res.student->fit_sparse(res.featurizer, rows_train, t_train);
    res.fit_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    report(0.9);
    s_train = res.student->predict_sparse(rows_train);
    s_test = res.student->predict_sparse(res.featurizer.transform_sparse(table, split.test));
  } else {
    res.featurizer.fit(table, split.train, fo);
    auto bins_train = res.featurizer.transform(table, split.train);
    res.student->fit(res.featurizer, bins_train, t_train);
    res.fit_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    report(0.9);
    auto bins_test = res.featurizer.transform(table, split.test);
    s_train = res.student->predict(bins_train);
    s_test = res.student->predict(bins_test);
  }
  res.train_fidelity = measure_fidelity(
      t_train, s_train, o.label_column.empty() ? std::vector<int>() : pick(split.train),
      slices(split.train));
  res.test_fidelity = measure_fidelity(
      t_test, s_test, o.label_column.empty() ? std::vector<int>() : pick(split.test),
      slices(split.test));
  report(1.0);
  return res;
}

void write_report(const DistillResult& r, const std::string& dir, const std::string& title) {
  prepare_output_dir(dir);
  const nlohmann::json report = r.to_json();
  // Both rendered before either is written; text that is not UTF-8 becomes U+FFFD.
  const std::string json =
      report.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  const std::string html = render_distill_html(report, title);
  write_file_atomic(dir + "/report.json", json);
  write_file_atomic(dir + "/report.html", html);
}

}  // namespace candor::distill
