// `candor distill`: fit a glass-box student to a teacher and report its fidelity;
// `candor train`: train candor's MLP classifier on a table's labels.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <map>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "candor/classifier.h"
#include "candor/data.h"
#include "candor/distill.h"
#include "candor/files.h"
#include "candor/options.h"
#include "candor/runtime.h"
#include "candor/text_transformer.h"
#include "candor/train.h"
#include "cli.h"
#include "cmd_transformer.h"

namespace candor::cli {

namespace {

std::vector<std::string> split_list(const std::string& s, char sep = ',') {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string x;
  while (std::getline(ss, x, sep))
    if (!x.empty()) out.push_back(x);
  return out;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

data::ReadOptions read_options(const std::string& on_error, const std::vector<std::string>& types) {
  data::ReadOptions ro;
  try {
    ro.on_error = data::parse_error_policy(on_error);
  } catch (const Error& e) {
    throw usage_error(std::string("--on-error: ") + e.what(), "use fail or skip");
  }
  for (const std::string& t : types) {
    size_t eq = t.find('=');
    if (eq == std::string::npos)
      throw usage_error("--type '" + t + "' is not COLUMN=TYPE", "e.g. --type label=categorical");
    try {
      ro.types[t.substr(0, eq)] = data::parse_column_type(t.substr(eq + 1));
    } catch (const Error& e) {
      throw usage_error(std::string("--type: ") + e.what(), e.hint());
    }
  }
  return ro;
}

void print_skipped(const data::Table& t) {
  if (t.skipped().empty()) return;
  std::cerr << t.source() << ": skipped " << t.skipped().size() << " bad records:\n";
  for (size_t i = 0; i < t.skipped().size() && i < 20; ++i)
    std::cerr << "  line " << t.skipped()[i].line << ": " << t.skipped()[i].reason << "\n";
  if (t.skipped().size() > 20) std::cerr << "  ... (all are listed in the report)\n";
}

std::string exact(double v) {
  std::ostringstream ss;
  ss.precision(17);
  ss << v;
  return ss.str();
}

std::string pct(double v) {
  std::ostringstream ss;
  ss.setf(std::ios::fixed);
  ss.precision(1);
  ss << 100 * v << "%";
  return ss.str();
}

}  // namespace

Runner add_distill(CLI::App& app) {
  struct Opts {
    std::string teacher, teacher_column, data,
        student = "linear", out, label, split_column, text_column = "text", prompt, classes,
        verbalisers = " yes, no", label_map, transfer, on_error = "fail", tokenizer;
    std::vector<std::string> slices, columns, exclude, types;
    double test_fraction = 0.2;
    uint64_t seed = 0;
    bool normalise = false, resume = false, no_progress = false;
    int threads = 0, max_vocab = 5000, min_count = 2;
    std::map<std::string, std::string> mlp;  // --teacher-NAME values, by option name
  };
  auto o = std::make_shared<Opts>();
  app.add_option("--teacher", o->teacher,
                 "Teacher model: a fastText .ftz/.bin classifier, 'mlp' (candor trains one on "
                 "--label), a model candor trained (the --out folder of candor train or "
                 "distill), or a causal LM (with --prompt and --verbalisers)");
  // The MLP teacher's training options, declared once in distill::mlp_options().
  for (const OptionSpec& spec : distill::mlp_options()) {
    std::string flag = "--teacher-" + spec.name;
    std::replace(flag.begin(), flag.end(), '_', '-');
    app.add_option(flag, o->mlp[spec.name],
                   "--teacher mlp: " + spec.description + " (default " +
                       (spec.name == "seed" ? std::string("--seed") : spec.default_value) + ")");
  }
  app.add_option("--teacher-column", o->teacher_column,
                 "Column holding the teacher's labels (or COLUMN:CLASS probability columns)");
  app.add_option("--data", o->data,
                 "CSV or JSONL file (an lm student: an optional text corpus in --text-column)");
  app.add_option("--student", o->student,
                 "linear | tree | gam | transformer | lm, with options after a colon (e.g. "
                 "tree:max_depth=5, transformer:dim=64,epochs=10, lm:dim=128,layers=4,vocab=1024; "
                 "see docs/distillation.md)");
  app.add_option("--out", o->out, "Folder for report.html and report.json")->required();
  app.add_option("--label", o->label, "Column with the true labels (accuracy of both)");
  app.add_option("--label-map", o->label_map,
                 "Label value to teacher class, e.g. 1=__label__2,0=__label__1");
  app.add_option("--slice", o->slices, "Fidelity per value of these columns")->delimiter(',');
  app.add_option("--columns", o->columns, "Input columns of the student")->delimiter(',');
  app.add_option("--exclude", o->exclude, "Columns the student never uses")->delimiter(',');
  app.add_option("--type", o->types, "Force a column type: COLUMN=numeric|categorical|text");
  app.add_option("--split-column", o->split_column, "Column with train/validation/test");
  app.add_option("--test-fraction", o->test_fraction, "Held-out share when splitting by seed");
  app.add_option("--seed", o->seed, "Seed of the split and the students");
  app.add_option("--text-column", o->text_column, "Text column read by a text-classifier teacher");
  app.add_flag("--normalise", o->normalise,
               "Lower-case the text and split off punctuation before the teacher sees it");
  app.add_option("--prompt", o->prompt, "LM teacher: template with {column} placeholders");
  app.add_option("--classes", o->classes, "LM teacher: class names, comma-separated");
  app.add_option("--verbalisers", o->verbalisers,
                 "LM teacher: one token per class, comma-separated (default ' yes, no')");
  app.add_option("--tokenizer", o->tokenizer, "LM teacher: tokenizer file");
  app.add_option("--transfer", o->transfer,
                 "Extra unlabelled rows (CSV/JSONL) for the teacher to label for training");
  app.add_option("--max-vocab", o->max_vocab, "Text: n-grams kept");
  app.add_option("--min-count", o->min_count, "Text: least rows an n-gram must appear in");
  app.add_option("--on-error", o->on_error, "Bad records: fail (default) or skip (reported)");
  app.add_option("--threads", o->threads,
                 "Intra-op threads (default: one per core; an lm student: one)");
  app.add_flag("--resume", o->resume,
               "transformer / lm student: continue from its checkpoint in OUT when it exists");
  app.add_flag("--no-progress", o->no_progress, "lm student: no progress bar");
  return [o, &app]() {
    std::map<std::string, std::string> mlp_given;
    for (const auto& [name, value] : o->mlp) {
      std::string flag = "--teacher-" + name;
      std::replace(flag.begin(), flag.end(), '_', '-');
      if (app.get_option(flag)->count() > 0) mlp_given[name] = value;
    }
    if (!mlp_given.empty() && o->teacher != "mlp")
      throw usage_error("--teacher-" + mlp_given.begin()->first + " is an option of --teacher mlp",
                        "drop it, or use --teacher mlp");
    if (is_lm_student(o->student)) {
      LmCliArgs a;
      a.teacher = o->teacher;
      a.tokenizer = o->tokenizer;
      a.data = o->data;
      a.text_column = o->text_column;
      a.out = o->out;
      a.student = o->student;
      a.on_error = o->on_error;
      a.seed = o->seed;
      a.threads = o->threads;
      a.resume = o->resume;
      a.no_progress = o->no_progress;
      if (!o->teacher_column.empty())
        throw usage_error("an lm student learns from a teacher LM, not from --teacher-column");
      if (o->teacher.empty()) throw usage_error("an lm student needs --teacher (a causal LM)");
      return run_lm_student(a);
    }
    if (o->data.empty()) throw usage_error("--data is required");
    if (o->teacher.empty() == o->teacher_column.empty())
      throw usage_error("give exactly one of --teacher and --teacher-column");
    if (!(o->test_fraction > 0 && o->test_fraction < 1))
      throw usage_error("--test-fraction must be in (0, 1)");
    distill::DistillOptions d;
    try {
      d.student = distill::parse_student(o->student);
    } catch (const Error& e) {
      throw usage_error(std::string("--student: ") + e.what(), e.hint());
    }
    if (d.student.kind == "transformer")
      d.student_factory = transformer_student_factory(o->student, o->seed, o->out, o->resume);
    check_prompt_and_threads("", o->threads);
    prepare_output_dir(o->out, "--out");  // before the work, not after it
    InterruptScope interrupt;
    d.progress = [](double) { return !interrupt_token().cancelled(); };
    set_num_threads(o->threads);
    data::ReadOptions ro = read_options(o->on_error, o->types);
    data::Table table = data::read_table(o->data, ro);
    print_skipped(table);
    d.label_column = o->label;
    d.slice_columns = o->slices;
    d.split_column = o->split_column;
    d.test_fraction = o->test_fraction;
    d.seed = o->seed;
    d.features.columns = o->columns;
    d.features.exclude = o->exclude;
    d.features.max_vocab = o->max_vocab;
    d.features.min_count = o->min_count;
    for (const std::string& kv : split_list(o->label_map)) {
      size_t eq = kv.find('=');
      if (eq == std::string::npos) throw usage_error("--label-map entry '" + kv + "' is not A=B");
      d.label_map[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    data::Table transfer;
    if (!o->transfer.empty()) {
      transfer = data::read_table(o->transfer, ro);
      print_skipped(transfer);
      d.transfer = &transfer;
    }
    std::unique_ptr<distill::Teacher> teacher;
    std::unique_ptr<distill::MlpClassifier> mlp;
    if (!o->teacher_column.empty()) {
      teacher = distill::column_teacher(table, o->teacher_column);
      d.features.exclude.push_back(o->teacher_column);
      for (const std::string& c : table.column_names())
        if (c.rfind(o->teacher_column + ":", 0) == 0) d.features.exclude.push_back(c);
    } else if (o->teacher == "mlp") {
      if (o->label.empty()) throw usage_error("--teacher mlp needs --label (what it learns)");
      // The teacher trains on the rows the students train on (the same split, by column or by
      // seed), never on a held-out row.
      data::Split s = distill::distill_split(table, d);
      distill::MlpOptions mo;
      mo.features.exclude = o->exclude;
      if (!o->split_column.empty()) mo.features.exclude.push_back(o->split_column);
      train::TrainOptions to;
      to.cancel = &interrupt_token();
      if (!mlp_given.count("seed")) mlp_given["seed"] = std::to_string(o->seed);
      try {
        distill::apply_mlp_options(Options("teacher", "mlp", distill::mlp_options(), mlp_given),
                                   &mo, &to);
      } catch (const Error& e) {
        throw usage_error(std::string("--teacher mlp: ") + e.what(), e.hint());
      }
      std::cerr << "training the MLP teacher on " << s.train.size() << " rows...\n";
      mlp = distill::MlpClassifier::train(table, s.train, o->label, mo, to);
      teacher = std::unique_ptr<distill::Teacher>(mlp.release());
    } else if (distill::SavedStudent::is_saved(o->teacher)) {
      // A glass-box student candor distill saved (its folder or student.json).
      teacher = distill::SavedStudent::load(o->teacher);
    } else if (distill::MlpClassifier::is_saved(o->teacher)) {
      // An MLP `candor train` saved (its folder, mlp.json or the model.ckpt beside it).
      mlp = distill::MlpClassifier::load(o->teacher);
      teacher = std::unique_ptr<distill::Teacher>(mlp.release());
    } else if (is_fasttext_file(o->teacher) || ends_with(o->teacher, ".ftz")) {
      // By content: a fastText .bin (a llama2.c .bin is a causal LM), or a .ftz of any state.
      std::shared_ptr<const TextClassifier> ft = load_fasttext(o->teacher);
      teacher = distill::classifier_teacher(ft, o->text_column, o->normalise);
      if (o->columns.empty()) d.features.columns = {o->text_column};
    } else if (o->prompt.empty() && looks_like_text_classifier(o->teacher)) {
      // A sequence classifier candor loads (BERT / RoBERTa / DistilBERT folder, e.g. a saved
      // transformer student) reading the text column.
      std::shared_ptr<const Model> m = load_cli_model(o->teacher, o->tokenizer, o->threads);
      teacher = distill::classifier_teacher(model_text_classifier(m), o->text_column,
                                            o->normalise);
      if (o->columns.empty()) d.features.columns = {o->text_column};
    } else {
      if (o->prompt.empty())
        throw usage_error("a causal-LM teacher needs --prompt (a template with {column} fields)");
      std::vector<std::string> verb = split_list(o->verbalisers);
      for (auto& v : verb)  // " yes, no": keep one leading space per verbaliser
        if (v[0] != ' ') v = " " + v;
      std::vector<std::string> classes = o->classes.empty() ? verb : split_list(o->classes);
      for (auto& c : classes)
        if (!c.empty() && c[0] == ' ') c = c.substr(1);
      std::shared_ptr<const Model> lm = load_cli_model(o->teacher, o->tokenizer, o->threads);
      teacher = distill::lm_teacher(lm, o->prompt, classes, verb);
    }
    auto t0 = std::chrono::steady_clock::now();
    distill::DistillResult r;
    try {
      r = distill::distill(table, *teacher, d);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kCancelled) throw;
      return report_interrupted(e, d.student.kind == "transformer"
                                       ? "rerun the same command with --resume to continue"
                                       : "rerun the same command");
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    distill::write_report(r, o->out,
                          "candor distill: " + o->student + " student of " + teacher->describe());
    save_transformer_student(r, o->out);
    // The glass-box student itself, reloadable: candor predict --model OUT reads it.
    const bool saved = distill::SavedStudent::save(r, o->out, teacher->describe());
    const auto& f = r.test_fidelity;
    std::cout << "teacher   " << teacher->describe() << "\nstudent   " << o->student
              << "\nheld-out  " << f.rows << " rows: agreement " << pct(f.agreement) << ", mean KL "
              << f.kl;
    if (f.teacher_accuracy >= 0)
      std::cout << ", accuracy teacher " << pct(f.teacher_accuracy) << " / student "
                << pct(f.student_accuracy);
    std::cout << "\nfit       " << r.fit_seconds << " s (total " << secs << " s)\nreport    "
              << o->out << "/report.html, " << o->out << "/report.json\n";
    if (saved)
      std::cout << "student   " << o->out << "/student.json (candor predict --model " << o->out
                << " --data FILE --out FILE.csv)\n";
    return 0;
  };
}

Runner add_train(CLI::App& app) {
  struct Opts {
    std::string data, label, out, on_error = "fail", checkpoint, model = "mlp",
                                  text_column = "text", split_column;
    std::vector<std::string> exclude, types, class_names;
    // Defaults as declared in distill::mlp_options() (from MlpOptions and train::TrainOptions).
    std::vector<int64_t> hidden = distill::MlpOptions().hidden;
    int epochs = train::TrainOptions().epochs, threads = 0;
    int64_t batch = train::TrainOptions().batch_size;
    double lr = train::TrainOptions().learning_rate, test_fraction = 0.2;
    uint64_t seed = 0;
    bool resume = false, no_progress = false;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("--data", o->data, "CSV or JSONL file")->required();
  app.add_option("--label", o->label, "Column with the labels to learn (mlp, transformer)");
  app.add_option("--text-column", o->text_column,
                 "transformer, lm: the column holding the texts (default text)");
  app.add_flag("--no-progress", o->no_progress, "lm: no progress bar");
  app.add_option("--out", o->out, "Folder for summary.json and the checkpoint")->required();
  app.add_option("--exclude", o->exclude, "Columns not used as inputs")->delimiter(',');
  app.add_option("--type", o->types, "Force a column type: COLUMN=numeric|categorical|text");
  app.add_option("--hidden", o->hidden, "Hidden layer widths")->delimiter(',');
  app.add_option("--epochs", o->epochs, "Epochs");
  app.add_option("--batch-size", o->batch, "Batch size");
  app.add_option("--lr", o->lr, "Peak learning rate (warm-up then cosine)");
  app.add_option("--test-fraction", o->test_fraction, "Held-out share");
  app.add_option("--split-column", o->split_column,
                 "Column with train/validation/test (instead of a seeded split)");
  app.add_option("--seed", o->seed, "Seed (initialisation, batches, split)");
  app.add_flag("--resume", o->resume, "Continue from OUT/model.ckpt when it exists");
  app.add_option("--on-error", o->on_error, "Bad records: fail (default) or skip (reported)");
  app.add_option("--threads", o->threads, "Intra-op threads (default: one per core)");
  app.add_option("--model", o->model,
                 "mlp (default: over binned columns and n-grams), transformer[:opts] (a text "
                 "classifier saved as a Hugging Face BERT folder) or lm[:opts] (a causal LM of "
                 "--text-column); see docs/distillation.md");
  app.add_option("--student", o->model, "The same as --model");
  app.add_option("--class-names", o->class_names,
                 "transformer: names of the classes (label values in sorted order)")
      ->delimiter(',');
  return [o, &app]() {
    if (is_lm_student(o->model)) {
      LmCliArgs a;
      a.data = o->data;
      a.text_column = o->text_column;
      a.out = o->out;
      a.student = o->model;
      a.on_error = o->on_error;
      a.seed = o->seed;
      a.threads = o->threads;
      a.resume = o->resume;
      a.no_progress = o->no_progress;
      return run_lm_student(a);
    }
    if (o->label.empty()) throw usage_error("--label is required (the column to learn)");
    if (o->model.rfind("transformer", 0) == 0) {
      check_prompt_and_threads("", o->threads);
      if (!(o->test_fraction > 0 && o->test_fraction < 1))
        throw usage_error("--test-fraction must be in (0, 1)");
      prepare_output_dir(o->out, "--out");  // before the work, not after it
      InterruptScope interrupt;
      set_num_threads(o->threads);
      data::Table table = data::read_table(o->data, read_options(o->on_error, o->types));
      print_skipped(table);
      TrainTransformerArgs a;
      a.data = o->data;
      a.label = o->label;
      a.text_column = o->text_column;
      a.out = o->out;
      a.spec = o->model;
      a.test_fraction = o->test_fraction;
      a.split_column = o->split_column;
      a.seed = o->seed;
      a.resume = o->resume;
      a.class_names = o->class_names;
      if (app.get_option("--epochs")->count() > 0) a.epochs = o->epochs;
      if (app.get_option("--batch-size")->count() > 0) a.batch = o->batch;
      if (app.get_option("--lr")->count() > 0) a.lr = o->lr;
      return train_transformer(table, a);
    }
    if (o->model != "mlp")
      throw usage_error("--model '" + o->model + "' is not mlp, transformer[:opts] or lm[:opts]");
    if (o->epochs <= 0 || o->batch <= 0 || !(o->lr > 0))
      throw usage_error("--epochs, --batch-size and --lr must be positive");
    if (!(o->test_fraction > 0 && o->test_fraction < 1))
      throw usage_error("--test-fraction must be in (0, 1)");
    check_prompt_and_threads("", o->threads);
    prepare_output_dir(o->out, "--out");  // before the work, not after it
    InterruptScope interrupt;
    set_num_threads(o->threads);
    data::Table table = data::read_table(o->data, read_options(o->on_error, o->types));
    print_skipped(table);
    check_labels(table, o->label);
    data::Split s = o->split_column.empty()
                        ? data::split_by_seed(table.n_rows(), 0, o->test_fraction, o->seed)
                        : data::split_by_column(table, o->split_column);
    distill::MlpOptions mo;
    mo.features.exclude = o->exclude;
    if (!o->split_column.empty()) mo.features.exclude.push_back(o->split_column);
    train::TrainOptions to;
    {
      std::string hidden;
      for (int64_t w : o->hidden) hidden += (hidden.empty() ? "" : ",") + std::to_string(w);
      std::map<std::string, std::string> given = {{"hidden", hidden},
                                                  {"epochs", std::to_string(o->epochs)},
                                                  {"batch_size", std::to_string(o->batch)},
                                                  {"lr", exact(o->lr)},
                                                  {"seed", std::to_string(o->seed)}};
      try {
        distill::apply_mlp_options(Options("model", "mlp", distill::mlp_options(), given), &mo,
                                   &to);
      } catch (const Error& e) {
        throw usage_error(e.what(), e.hint());
      }
    }
    to.checkpoint = o->out + "/model.ckpt";
    to.checkpoint_seconds = kCheckpointSeconds;
    to.resume = o->resume;
    to.cancel = &interrupt_token();
    auto t0 = std::chrono::steady_clock::now();
    bool first = true;
    to.progress = [&](const train::TrainProgress& p) {
      if (first && p.start_step > 0)
        std::cerr << "resuming from " << to.checkpoint << " at step " << p.start_step << "/"
                  << p.total_steps << "\n";
      first = false;
      if (p.step % 20 == 0 || p.step == p.total_steps) {
        int w = static_cast<int>(30.0 * p.step / p.total_steps);
        std::cerr << "\r[" << std::string(w, '#') << std::string(30 - w, ' ') << "] " << p.step
                  << "/" << p.total_steps << " loss " << p.loss << " lr " << p.learning_rate
                  << std::flush;
      }
      return true;
    };
    std::unique_ptr<distill::MlpClassifier> mlp;
    try {
      mlp = distill::MlpClassifier::train(table, s.train, o->label, mo, to);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kCancelled) throw;
      return report_interrupted(e, "rerun the same command with --resume to continue from it");
    }
    std::cerr << "\n";
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    mlp->save(o->out, o->label);  // OUT/mlp.json: a model every command that takes one reads
    auto acc = [&](const std::vector<size_t>& rows) {
      distill::Probs p = mlp->predict(table, rows);
      size_t ok = 0;
      const data::Column& lc = table.column(o->label);
      for (size_t i = 0; i < rows.size(); ++i) {
        size_t best = std::max_element(p[i].begin(), p[i].end()) - p[i].begin();
        ok += mlp->classes()[best] == lc.raw[rows[i]];
      }
      return rows.empty() ? 0.0 : double(ok) / double(rows.size());
    };
    double train_acc = acc(s.train), test_acc = acc(s.test);
    nlohmann::json j = {{"data", o->data},
                        {"label", o->label},
                        {"classes", mlp->classes()},
                        {"train_rows", s.train.size()},
                        {"test_rows", s.test.size()},
                        {"train_accuracy", train_acc},
                        {"test_accuracy", test_acc},
                        {"seconds", secs},
                        {"rows_per_second", double(s.train.size()) * o->epochs / secs},
                        {"checkpoint", to.checkpoint},
                        {"model", o->out + "/mlp.json"}};
    write_file_atomic(o->out + "/summary.json", json_text(j));
    std::cout << "MLP " << o->label << ": accuracy train " << pct(train_acc) << ", held-out "
              << pct(test_acc) << " (" << secs << " s)\nmodel   " << o->out
              << "/mlp.json\nsummary " << o->out << "/summary.json\n";
    return 0;
  };
}

}  // namespace candor::cli
