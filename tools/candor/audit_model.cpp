// `candor audit ... --model M`: loading the model under audit and scoring rows with it.
#include "audit_model.h"

#include <algorithm>
#include <filesystem>

#include "cli.h"
#include "cmd_transformer.h"

namespace candor::cli {

namespace {

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == ',') {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// The {column} placeholders of a prompt template.
std::vector<std::string> placeholders(const std::string& t) {
  std::vector<std::string> out;
  for (size_t i = t.find('{'); i != std::string::npos; i = t.find('{', i + 1)) {
    const size_t j = t.find('}', i);
    if (j == std::string::npos) break;
    out.push_back(t.substr(i + 1, j - i - 1));
  }
  return out;
}

}  // namespace

void add_audit_model_options(CLI::App& app, AuditModelArgs* a) {
  app.add_option("--model", a->model,
                 "Model under audit instead of prediction columns: a fastText .ftz/.bin, a classifier folder "
                 "(BERT family, models/builtin/sentiment), an MLP `candor train` saved, or a causal LM with --prompt");
  app.add_option("--tokenizer", a->tokenizer, "--model: tokenizer file (default: found beside the model)");
  app.add_option("--text-column", a->text_column, "--model: the text column a text classifier reads (text)");
  app.add_flag("--normalise", a->normalise, "--model: lower-case the text and split off punctuation first");
  app.add_option("--prompt", a->prompt, "--model LM: prompt template with {column} fields");
  app.add_option("--verbalisers", a->verbalisers, "--model LM: one token per class (' yes, no')");
  app.add_option("--model-classes", a->model_classes, "--model LM: class names of the verbalisers")
      ->delimiter(',');
  app.add_option("--label-map", a->label_map, "--model: label value to model class, e.g. 1=positive,0=negative")
      ->delimiter(',');
}

AuditModel load_audit_model(const AuditModelArgs& a) {
  AuditModel m;
  m.path = a.model;
  m.normalise = a.normalise;
  std::error_code ec;
  if (!std::filesystem::exists(a.model, ec))
    throw usage_error("--model " + a.model + ": no such file or folder",
                      "give a fastText .ftz/.bin, a classifier folder or a causal LM");
  if (distill::SavedStudent::is_saved(a.model)) {
    // A glass-box student candor distill saved (its folder or student.json).
    m.kind = "student";
    m.teacher = distill::SavedStudent::load(a.model);
    return m;
  }
  if (distill::MlpClassifier::is_saved(a.model)) {
    m.kind = "mlp";
    m.teacher = distill::MlpClassifier::load(a.model);
    return m;
  }
  if (is_fasttext_file(a.model) || ends_with(a.model, ".ftz")) {
    m.kind = "fasttext";
    m.classifier = load_fasttext(a.model);
  } else if (a.prompt.empty() && looks_like_text_classifier(a.model)) {
    m.kind = "text-classifier";
    m.model = load_cli_model(a.model, a.tokenizer, a.threads);
    m.classifier = model_text_classifier(m.model);
  }
  if (m.classifier) {
    m.teacher = distill::classifier_teacher(m.classifier, a.text_column, a.normalise);
    m.columns = {a.text_column};
    return m;
  }
  if (a.prompt.empty())
    throw usage_error("--model " + a.model + " is a causal LM: auditing it as a classifier needs --prompt",
                      "pass --prompt 'Review: {text} Sentiment:' --verbalisers ' positive, negative' "
                      "--model-classes positive,negative");
  std::vector<std::string> verb = split_list(a.verbalisers);
  for (std::string& v : verb)
    if (v.empty() || v[0] != ' ') v = " " + v;
  std::vector<std::string> classes = a.model_classes.empty() ? verb : a.model_classes;
  for (std::string& c : classes)
    if (!c.empty() && c[0] == ' ') c = c.substr(1);
  if (classes.size() != verb.size())
    throw usage_error("--model-classes names " + std::to_string(classes.size()) + " classes for " +
                          std::to_string(verb.size()) + " verbalisers",
                      "give one class name per verbaliser");
  m.kind = "lm-verbaliser";
  m.model = load_cli_model(a.model, a.tokenizer, a.threads);
  if (m.model->is_causal() == false)
    throw usage_error("--prompt is for a causal LM; " + a.model + " is a classifier", "drop --prompt");
  m.teacher = distill::lm_teacher(m.model, a.prompt, classes, verb);
  m.columns = placeholders(a.prompt);
  return m;
}

audit::RowScorer audit_row_scorer(const AuditModel& m) {
  audit::RowScorer s;
  s.classes = m.teacher->classes();
  s.columns = m.columns;
  const distill::Teacher* t = m.teacher.get();
  s.score = [t](const data::Table& chunk, const std::vector<size_t>& rows) {
    return t->predict(chunk, rows);
  };
  return s;
}

std::map<std::string, std::string> parse_label_map(const std::vector<std::string>& entries,
                                                   const std::vector<std::string>& classes) {
  std::map<std::string, std::string> map;
  for (const std::string& e : entries) {
    const size_t eq = e.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == e.size())
      throw usage_error("--label-map entry '" + e + "' is not VALUE=CLASS", "e.g. --label-map 1=positive,0=negative");
    const std::string cls = e.substr(eq + 1);
    if (std::find(classes.begin(), classes.end(), cls) == classes.end())
      throw usage_error("--label-map: '" + cls + "' is not a class of the model (its classes: " + join(classes) + ")",
                        "map each label value to one of the model's classes");
    map[e.substr(0, eq)] = cls;
  }
  return map;
}

void match_labels_to_classes(audit::CodedColumn* label, const std::map<std::string, std::string>& map,
                             const std::vector<std::string>& classes) {
  audit::relabel(label, map);
  for (const std::string& v : label->values)
    if (std::find(classes.begin(), classes.end(), v) == classes.end())
      throw usage_error("label value '" + v + "' of column '" + label->column +
                            "' is not a class of the model (its classes: " + join(classes) + ")",
                        "map the label values to the model's classes with --label-map VALUE=CLASS,...");
}

}  // namespace candor::cli
