// `candor predict`: per-row predictions of any model candor runs or trains, streamed over a CSV or
// JSON Lines file into a CSV or JSON Lines file: the class and its probabilities (classifiers:
// fastText, BERT-family folders, the built-in sentiment model, the MLP of `candor train`, the
// glass-box students of `candor distill`, a causal LM through a prompt and verbalisers), or the
// generated text (a causal LM).
#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "candor/classifier.h"
#include "candor/data.h"
#include "candor/distill.h"
#include "candor/files.h"
#include "candor/generate.h"
#include "candor/runtime.h"
#include "cli.h"
#include "cmd_transformer.h"

namespace candor::cli {

namespace {

namespace fs = std::filesystem;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string x;
  while (std::getline(ss, x, ','))
    if (!x.empty()) out.push_back(x);
  return out;
}

// The shortest text that reads back as the same double.
std::string number(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

// The columns a prompt template names ("{column}").
std::vector<std::string> template_columns(const std::string& tpl) {
  std::vector<std::string> out;
  for (size_t i = tpl.find('{'); i != std::string::npos; i = tpl.find('{', i + 1)) {
    size_t close = tpl.find('}', i);
    if (close == std::string::npos)
      throw usage_error("--prompt: '{' without '}' at offset " + std::to_string(i),
                        "write {column} to insert a column's value");
    out.push_back(tpl.substr(i + 1, close - i - 1));
  }
  return out;
}

// What predicts one chunk of rows: class probabilities, or a generated text per row.
struct RowModel {
  std::string describe;
  std::vector<std::string> classes;  // empty: a generator
  // Columns every row must hold a value in (a missing one is a bad record): the text of a text
  // model, a prompt's fields.
  std::vector<std::string> needs_value;
  std::map<std::string, data::ColumnType> types;  // forced when reading (and required)
  std::function<distill::Probs(const data::Table&, const std::vector<size_t>&)> classify;
  std::function<std::string(const data::Table&, size_t row)> generate;
};

struct Opts {
  std::string model, data, out, format, text_column = "text", on_error = "fail", tokenizer, prompt,
                                        classes, verbalisers, dtype = "f32";
  std::vector<std::string> keep, types;
  bool normalise = false;
  int threads = 0;
  GenerateOptions gen;
};

// The input columns of a featurizer, typed as it reads them.
std::map<std::string, data::ColumnType> featurizer_columns(const distill::Featurizer& f) {
  std::map<std::string, data::ColumnType> t;
  for (const distill::Feature& x : f.features())
    t[x.column] = x.kind == distill::Feature::kNumeric       ? data::ColumnType::kNumeric
                  : x.kind == distill::Feature::kCategorical ? data::ColumnType::kCategorical
                                                             : data::ColumnType::kText;
  return t;
}

RowModel table_model(std::shared_ptr<const distill::Teacher> t, const distill::Featurizer& f) {
  RowModel m;
  m.describe = t->describe();
  m.classes = t->classes();
  m.types = featurizer_columns(f);
  m.classify = [t](const data::Table& table, const std::vector<size_t>& rows) {
    return t->predict(table, rows);
  };
  return m;
}

RowModel text_model(std::shared_ptr<const TextClassifier> c, const Opts& o) {
  auto t = std::shared_ptr<const distill::Teacher>(
      distill::classifier_teacher(c, o.text_column, o.normalise));
  RowModel m;
  m.describe = t->describe();
  m.classes = t->classes();
  m.types[o.text_column] = data::ColumnType::kText;
  m.needs_value = {o.text_column};
  m.classify = [t](const data::Table& table, const std::vector<size_t>& rows) {
    return t->predict(table, rows);
  };
  return m;
}

// A causal LM: a classifier through --prompt and --verbalisers / --classes, else a generator
// continuing --prompt (default: the text column) per row.
RowModel lm_model(std::shared_ptr<const Model> lm, const Opts& o) {
  const std::string tpl = o.prompt.empty() ? "{" + o.text_column + "}" : o.prompt;
  RowModel m;
  for (const std::string& c : template_columns(tpl)) {
    m.types[c] = data::ColumnType::kText;
    m.needs_value.push_back(c);
  }
  if (!o.verbalisers.empty() || !o.classes.empty()) {
    std::vector<std::string> verb = split_list(o.verbalisers.empty() ? o.classes : o.verbalisers);
    for (auto& v : verb)  // " yes, no": one leading space per verbaliser
      if (v[0] != ' ') v = " " + v;
    std::vector<std::string> classes = o.classes.empty() ? verb : split_list(o.classes);
    for (auto& c : classes)
      if (!c.empty() && c[0] == ' ') c = c.substr(1);
    if (classes.size() != verb.size())
      throw usage_error("--classes names " + std::to_string(classes.size()) + " classes and " +
                            "--verbalisers " + std::to_string(verb.size()) + " tokens",
                        "give one verbaliser per class");
    auto t = std::shared_ptr<const distill::Teacher>(distill::lm_teacher(lm, tpl, classes, verb));
    m.describe = t->describe();
    m.classes = t->classes();
    m.classify = [t](const data::Table& table, const std::vector<size_t>& rows) {
      return t->predict(table, rows);
    };
    return m;
  }
  m.describe = "causal LM " + o.model + " continuing '" + tpl + "'";
  const GenerateOptions gen = o.gen;
  m.generate = [lm, tpl, gen](const data::Table& table, size_t row) {
    GenerateOptions g = gen;
    // Each row its own random stream, fixed by its line: the same row, the same text.
    g.seed = gen.seed + static_cast<uint64_t>(table.line_of(row));
    return candor::generate(*lm, distill::fill_template(tpl, table, row), g).text;
  };
  return m;
}

RowModel load_row_model(const Opts& o) {
  if (distill::SavedStudent::is_saved(o.model)) {
    std::shared_ptr<const distill::SavedStudent> s = distill::SavedStudent::load(o.model);
    return table_model(s, s->featurizer());
  }
  if (distill::MlpClassifier::is_saved(o.model)) {
    std::shared_ptr<const distill::MlpClassifier> mlp = distill::MlpClassifier::load(o.model);
    // The MLP reads the columns its featurizer was fitted on (saved in mlp.json).
    const distill::Featurizer& f = mlp->featurizer();
    return table_model(mlp, f);
  }
  if (is_fasttext_file(o.model) || ends_with(o.model, ".ftz"))
    return text_model(std::shared_ptr<const TextClassifier>(load_fasttext(o.model)), o);
  std::string path = o.model;
  // The --out folder of `candor distill --student transformer`: the student is OUT/model.
  std::error_code ec;
  if (fs::is_directory(path, ec) && !fs::exists(fs::path(path) / "config.json", ec) &&
      looks_like_text_classifier((fs::path(path) / "model").string()))
    path = (fs::path(path) / "model").string();
  std::shared_ptr<const Model> model = load_cli_model(path, o.tokenizer, o.threads, o.dtype);
  if (!model->config().is_causal()) return text_model(model_text_classifier(model), o);
  return lm_model(model, o);
}

// One output row at a time, as CSV or JSON Lines.
class Writer {
 public:
  Writer(std::ostream& out, bool jsonl, std::vector<std::string> columns)
      : out_(out), jsonl_(jsonl), columns_(std::move(columns)) {
    if (jsonl_) return;
    for (size_t i = 0; i < columns_.size(); ++i) out_ << (i ? "," : "") << csv(columns_[i]);
    out_ << "\n";
  }
  // One value per column: numbers as numbers (JSON), texts as strings; `missing`: null / empty.
  struct Value {
    std::string text;
    bool is_number = false, missing = false;
  };
  void row(const std::vector<Value>& values) {
    if (jsonl_) {
      nlohmann::ordered_json j;
      for (size_t i = 0; i < columns_.size(); ++i) {
        const Value& v = values[i];
        if (v.missing)
          j[columns_[i]] = nullptr;
        else if (v.is_number)  // a kept column's text that is not a JSON number stays text
          j[columns_[i]] = number_or_text(v.text);
        else
          j[columns_[i]] = v.text;
      }
      out_ << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
      return;
    }
    for (size_t i = 0; i < values.size(); ++i) out_ << (i ? "," : "") << csv(values[i].text);
    out_ << "\n";
  }

 private:
  static nlohmann::ordered_json number_or_text(const std::string& s) {
    nlohmann::ordered_json v = nlohmann::ordered_json::parse(s, nullptr, false);
    if (v.is_discarded() || !v.is_number()) return s;
    return v;
  }
  static std::string csv(const std::string& s) {
    if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
    std::string q = "\"";
    for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
  }
  std::ostream& out_;
  bool jsonl_;
  std::vector<std::string> columns_;
};

}  // namespace

Runner add_predict(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  o->gen.max_new_tokens = 32;
  app.add_option("--model,-m", o->model,
                 "A model candor runs or trained: a fastText .ftz/.bin, a BERT-family folder, "
                 "the --out folder of candor train (MLP or transformer) or of candor distill "
                 "(a glass-box or transformer student), a causal LM")
      ->required();
  app.add_option("--data", o->data, "CSV or JSON Lines file, read as a stream")->required();
  app.add_option("--out", o->out,
                 "Output file: CSV, or JSON Lines when it ends in .jsonl / .ndjson / .json")
      ->required();
  app.add_option("--format", o->format, "Output format csv or jsonl (default: by --out's name)")
      ->check(CLI::IsMember({"csv", "jsonl"}));
  app.add_option("--text-column", o->text_column,
                 "The column holding the text of a text model (default text)");
  app.add_option("--keep", o->keep, "Input columns copied into the output (e.g. an id)")
      ->delimiter(',');
  app.add_option("--type", o->types, "Force a column type: COLUMN=numeric|categorical|text");
  app.add_option("--on-error", o->on_error, "Bad records: fail (default) or skip (reported)");
  app.add_flag("--normalise", o->normalise,
               "Text classifiers: lower-case the text and split off punctuation first");
  app.add_option("--tokenizer", o->tokenizer, "Tokenizer file (default: found beside the model)");
  app.add_option("--prompt,-p", o->prompt,
                 "Causal LM: the prompt of each row, with {column} fields (default: "
                 "{TEXT_COLUMN})");
  app.add_option("--classes", o->classes,
                 "Causal LM as a classifier: class names, comma-separated (with --verbalisers)");
  app.add_option("--verbalisers", o->verbalisers,
                 "Causal LM as a classifier: one token per class, comma-separated (e.g. ' yes, "
                 "no')");
  app.add_option("-n,--max-new-tokens", o->gen.max_new_tokens,
                 "Causal LM: tokens generated per row (default 32)");
  app.add_option("--temperature,-t", o->gen.temperature, "Causal LM: 0 = greedy (default)");
  app.add_option("--top-k", o->gen.top_k, "Causal LM: sample among the k most likely tokens");
  app.add_option("--top-p", o->gen.top_p, "Causal LM: nucleus sampling mass in (0, 1]");
  app.add_option("--seed,-s", o->gen.seed,
                 "Causal LM: seed; a row at line L samples with seed + L (default 0)");
  app.add_option("--threads", o->threads, "Intra-op threads (default: one per core)");
  add_dtype_option(app, &o->dtype);
  return [o]() {
    try {
      validate_generate_options(o->gen);
    } catch (const Error& e) {
      throw usage_error(e.what(), "see candor predict --help");
    }
    check_prompt_and_threads("", o->threads);
    data::ReadOptions ro;
    try {
      ro.on_error = data::parse_error_policy(o->on_error);
    } catch (const Error& e) {
      throw usage_error(std::string("--on-error: ") + e.what(), "use fail or skip");
    }
    bool jsonl = o->format == "jsonl";
    if (o->format.empty()) {
      if (ends_with(o->out, ".jsonl") || ends_with(o->out, ".ndjson") || ends_with(o->out, ".json"))
        jsonl = true;
      else if (!ends_with(o->out, ".csv"))
        throw usage_error("cannot tell the format of --out '" + o->out + "'",
                          "name it .csv or .jsonl, or pass --format csv|jsonl");
    }
    check_output_file(o->out, "--out");  // before the work, not after it
    InterruptScope interrupt;
    set_num_threads(o->threads);
    RowModel m = load_row_model(*o);
    // What the rows must hold: the model's input columns (typed as it reads them), the kept ones.
    for (const auto& [col, type] : m.types) {
      ro.types[col] = type;
      ro.required.push_back(col);
    }
    for (const std::string& k : o->keep) ro.required.push_back(k);
    for (const std::string& t : o->types) {
      size_t eq = t.find('=');
      if (eq == std::string::npos)
        throw usage_error("--type '" + t + "' is not COLUMN=TYPE", "e.g. --type id=categorical");
      try {
        ro.types[t.substr(0, eq)] = data::parse_column_type(t.substr(eq + 1));
      } catch (const Error& e) {
        throw usage_error(std::string("--type: ") + e.what(), e.hint());
      }
    }
    std::vector<std::string> columns = {"line"};
    for (const std::string& k : o->keep) {
      if (k == "line" || k == "class" || k == "generated" || k.rfind("class:", 0) == 0)
        throw usage_error("--keep " + k + ": the output has a column of that name",
                          "keep other columns");
      columns.push_back(k);
    }
    if (m.classes.empty()) {
      columns.push_back("generated");
    } else {
      columns.push_back("class");
      for (const std::string& c : m.classes) columns.push_back("class:" + c);
    }
    AtomicFile file(o->out);
    Writer writer(file.stream(), jsonl, columns);
    // Chunks are read skipping bad records, so that those of the reader and the rows without a
    // value the model needs are reported together, the first in file order first.
    const data::ErrorPolicy policy = ro.on_error;
    ro.on_error = data::ErrorPolicy::kSkip;
    data::TableChunks chunks(o->data, ro, m.generate ? 64 : 1024);
    data::Table t;
    size_t written = 0;
    std::vector<data::SkippedRecord> skipped;
    const auto cancelled = [] {
      if (interrupt_token().cancelled())
        throw Error(ErrorCode::kCancelled, "predict stopped; no output was written",
                    "rerun the same command");
    };
    while (chunks.next(&t)) {
      cancelled();
      std::vector<data::SkippedRecord> bad = t.skipped();
      // Rows without a value the model needs are bad records.
      std::vector<size_t> rows;
      for (size_t r = 0; r < t.n_rows(); ++r) {
        std::string lacking;
        for (const std::string& c : m.needs_value)
          if (lacking.empty() && t.column(c).is_missing(r)) lacking = c;
        if (lacking.empty())
          rows.push_back(r);
        else
          bad.push_back({t.line_of(r), "column '" + lacking + "': no value to predict from"});
      }
      std::sort(bad.begin(), bad.end(),
                [](const auto& a, const auto& b) { return a.line < b.line; });
      if (!bad.empty() && policy == data::ErrorPolicy::kFail)
        throw Error(ErrorCode::kInvalidArgument,
                    o->data + " line " + std::to_string(bad[0].line) + ": " + bad[0].reason,
                    "fix the record, or pass --on-error skip to leave bad records out (they are "
                    "listed)");
      skipped.insert(skipped.end(), bad.begin(), bad.end());
      std::vector<std::vector<Writer::Value>> out(rows.size());
      for (size_t i = 0; i < rows.size(); ++i) {
        out[i].push_back({std::to_string(t.line_of(rows[i])), true, false});
        for (const std::string& k : o->keep) {
          const data::Column& c = t.column(k);
          out[i].push_back(
              {c.raw[rows[i]], c.type == data::ColumnType::kNumeric, c.is_missing(rows[i])});
        }
      }
      if (m.classify) {
        distill::Probs p = rows.empty() ? distill::Probs() : m.classify(t, rows);
        for (size_t i = 0; i < rows.size(); ++i) {
          size_t best = 0;
          for (size_t k = 1; k < p[i].size(); ++k)
            if (p[i][k] > p[i][best]) best = k;
          out[i].push_back({m.classes[best], false, false});
          for (double v : p[i]) out[i].push_back({number(v), true, false});
        }
      } else {
        for (size_t i = 0; i < rows.size(); ++i) {
          cancelled();
          out[i].push_back({m.generate(t, rows[i]), false, false});
        }
      }
      for (const auto& row : out) writer.row(row);
      written += rows.size();
    }
    cancelled();
    file.commit();
    if (!skipped.empty()) {
      std::cerr << o->data << ": skipped " << skipped.size() << " bad records:\n";
      for (size_t i = 0; i < skipped.size() && i < 20; ++i)
        std::cerr << "  line " << skipped[i].line << ": " << skipped[i].reason << "\n";
      if (skipped.size() > 20) std::cerr << "  ... and " << skipped.size() - 20 << " more\n";
    }
    std::cout << "model     " << m.describe << "\npredicted " << written << " rows"
              << (skipped.empty() ? std::string()
                                  : " (" + std::to_string(skipped.size()) + " skipped)")
              << "\nout       " << o->out << "\n";
    return 0;
  };
}

}  // namespace candor::cli
