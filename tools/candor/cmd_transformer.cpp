// The transformer student and classifier in `candor distill` and `candor train`.
#include "cmd_transformer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "candor/error.h"
#include "candor/files.h"
#include "candor/text_transformer.h"
#include "candor/train.h"
#include "cli.h"

namespace candor::cli {

namespace {

std::string percent(double v) {
  std::ostringstream ss;
  ss.setf(std::ios::fixed);
  ss.precision(1);
  ss << 100 * v << "%";
  return ss.str();
}

// A one-line progress bar on stderr: step, loss, learning rate and (at epoch ends) the agreement
// with the targets on a sample of training rows.
std::function<bool(const train::TrainProgress&)> progress_bar(const std::string& checkpoint) {
  auto fidelity = std::make_shared<double>(-1);
  auto first = std::make_shared<bool>(true);
  return [fidelity, first, checkpoint](const train::TrainProgress& p) {
    if (*first && p.start_step > 0)
      std::cerr << "resuming from " << checkpoint << " at step " << p.start_step << "/"
                << p.total_steps << "\n";
    *first = false;
    if (p.fidelity >= 0) *fidelity = p.fidelity;
    if (p.step % 10 == 0 || p.step == p.total_steps || p.fidelity >= 0) {
      int w = static_cast<int>(30.0 * double(p.step) / double(p.total_steps));
      std::cerr << "\r[" << std::string(w, '#') << std::string(30 - w, ' ') << "] " << p.step << "/"
                << p.total_steps << " loss " << p.loss << " lr " << p.learning_rate;
      if (*fidelity >= 0) std::cerr << " fidelity " << percent(*fidelity);
      std::cerr << "   " << std::flush;
      if (p.step == p.total_steps) std::cerr << "\n";
    }
    return true;
  };
}

}  // namespace

std::function<std::unique_ptr<distill::Student>()> transformer_student_factory(
    const std::string& spec, uint64_t seed, const std::string& out, bool resume) {
  return [=]() {
    train::TrainOptions o;
    o.seed = seed;
    prepare_output_dir(out, "--out");
    o.checkpoint = out + "/student.ckpt";
    o.checkpoint_seconds = kCheckpointSeconds;
    o.resume = resume;
    o.cancel = &interrupt_token();
    o.progress = progress_bar(o.checkpoint);
    return distill::make_transformer_student(spec, o);
  };
}

void save_transformer_student(const distill::DistillResult& r, const std::string& out) {
  if (!r.student) return;
  const train::TransformerClassifier* tc = distill::transformer_of(*r.student);
  if (!tc) return;
  tc->save(out + "/model");
  std::cout << "model     " << out << "/model (Hugging Face BERT folder; explain it with candor "
            << "explain --model " << out << "/model --prompt TEXT --target CLASS)\n";
}

int train_transformer(const data::Table& table, const TrainTransformerArgs& a) {
  train::TransformerOptions t;
  t.alpha = 0;  // labels alone: only the hard-label loss
  train::TrainOptions o;
  o.seed = a.seed;
  try {
    train::parse_transformer_spec(a.spec, &t, &o);
  } catch (const Error& e) {
    throw usage_error(std::string("--model: ") + e.what(), e.hint());
  }
  if (a.epochs > 0) o.epochs = a.epochs;
  if (a.batch > 0) o.batch_size = a.batch;
  if (a.lr > 0) o.learning_rate = a.lr;
  const data::Column& lc = table.column(a.label);
  const data::Column& tc = table.column(a.text_column);
  data::Split s = a.split_column.empty()
                      ? data::split_by_seed(table.n_rows(), 0, a.test_fraction, a.seed)
                      : data::split_by_column(table, a.split_column);
  std::set<std::string> cls;
  check_labels(table, a.label);
  for (size_t r : s.train) cls.insert(lc.raw[r]);
  if (cls.size() < 2)
    throw Error(ErrorCode::kInvalidArgument,
                table.source() + ": the label column '" + a.label + "' has " +
                    std::to_string(cls.size()) + " class" +
                    (cls.size() == 1 ? " ('" + *cls.begin() + "')" : std::string("es")),
                "a classifier needs at least two classes");
  std::vector<std::string> classes(cls.begin(), cls.end());
  auto texts = [&](const std::vector<size_t>& rows) {
    std::vector<std::string> v;
    for (size_t r : rows) v.push_back(tc.is_missing(r) ? std::string() : tc.raw[r]);
    return v;
  };
  auto label_ids = [&](const std::vector<size_t>& rows) {
    std::vector<int> v;
    for (size_t r : rows) {
      auto it = std::find(classes.begin(), classes.end(), lc.raw[r]);
      v.push_back(lc.is_missing(r) || it == classes.end() ? -1
                                                          : static_cast<int>(it - classes.begin()));
    }
    return v;
  };
  std::vector<int> y = label_ids(s.train);
  distill::Probs target(y.size(), std::vector<double>(classes.size(), 0.0));
  for (size_t i = 0; i < y.size(); ++i) target[i][y[i]] = 1.0;
  o.checkpoint = a.out + "/model.ckpt";
  o.checkpoint_seconds = kCheckpointSeconds;
  o.resume = a.resume;
  o.cancel = &interrupt_token();
  o.progress = progress_bar(o.checkpoint);
  std::cerr << "training a transformer classifier on " << s.train.size() << " rows of '"
            << a.text_column << "' (labels '" << a.label << "')...\n";
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> names = classes;
  if (!a.class_names.empty()) {
    if (a.class_names.size() != classes.size()) {
      std::string have;
      for (const auto& c : classes) have += (have.empty() ? "" : ",") + c;
      throw usage_error("--class-names gives " + std::to_string(a.class_names.size()) +
                            " names for the " + std::to_string(classes.size()) + " classes (" +
                            have + ")",
                        "one name per label value, in sorted order");
    }
    names = a.class_names;
  }
  std::unique_ptr<train::TransformerClassifier> clf;
  try {
    clf = train::TransformerClassifier::train(texts(s.train), target, y, names, t, o);
  } catch (const Error& e) {
    if (e.code() != ErrorCode::kCancelled) throw;
    return report_interrupted(e, "rerun the same command with --resume to continue from it");
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto accuracy = [&](const std::vector<size_t>& rows) {
    if (rows.empty()) return 0.0;
    distill::Probs p = clf->predict_proba_batch(texts(rows));
    std::vector<int> truth = label_ids(rows);
    size_t ok = 0;
    for (size_t i = 0; i < rows.size(); ++i)
      ok += static_cast<int>(std::max_element(p[i].begin(), p[i].end()) - p[i].begin()) == truth[i];
    return double(ok) / double(rows.size());
  };
  const double train_acc = accuracy(s.train), test_acc = accuracy(s.test);
  clf->save(a.out);
  std::error_code ec;
  std::filesystem::remove(o.checkpoint, ec);  // the run is complete: nothing to resume
  nlohmann::json j = {{"data", a.data},
                      {"label", a.label},
                      {"text_column", a.text_column},
                      {"model", a.spec},
                      {"classes", classes},
                      {"class_names", names},
                      {"train_rows", s.train.size()},
                      {"test_rows", s.test.size()},
                      {"train_accuracy", train_acc},
                      {"test_accuracy", test_acc},
                      {"parameters", clf->model().n_params()},
                      {"vocabulary", clf->vocabulary().size()},
                      {"epochs", o.epochs},
                      {"epoch_losses", clf->epoch_losses()},
                      {"seconds", secs},
                      {"rows_per_second", double(s.train.size()) * o.epochs / secs}};
  write_file_atomic(a.out + "/summary.json", json_text(j));
  std::cout << "transformer " << a.label << ": accuracy train " << percent(train_acc)
            << ", held-out " << percent(test_acc) << " (" << s.test.size() << " rows, " << secs
            << " s)\nmodel " << a.out << " (Hugging Face BERT folder), summary " << a.out
            << "/summary.json\n";
  return 0;
}

bool looks_like_text_classifier(const std::string& path) {
  std::error_code ec;
  const std::filesystem::path config = std::filesystem::path(path) / "config.json";
  if (!std::filesystem::is_directory(path, ec) || !std::filesystem::exists(config, ec))
    return false;
  std::ifstream f(config);
  nlohmann::json j = nlohmann::json::parse(f, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("architectures") || !j["architectures"].is_array())
    return false;
  for (const auto& a : j["architectures"])
    if (a.is_string() &&
        a.get<std::string>().find("ForSequenceClassification") != std::string::npos)
      return true;
  return false;
}

}  // namespace candor::cli
