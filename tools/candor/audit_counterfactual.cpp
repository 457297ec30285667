// `candor audit counterfactual`: every text of a column that mentions a protected-attribute term
// is rewritten with the other group's term (candor_audit's swaps), and the model under audit
// scores both. Classifiers: flip share and |delta p|; causal LMs (no --prompt): the change of
// the next-token distribution (Jensen-Shannon) and of the log-probability of its top token.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "audit_model.h"
#include "candor/report.h"
#include "cli.h"
#include "cmd_transformer.h"

namespace candor::cli {

namespace {

bool is_builtin(const std::string& a) {
  for (const std::string& b : audit::builtin_swap_attributes())
    if (a == b) return true;
  return false;
}

std::string default_names() {
  const char* env = std::getenv("CANDOR_SHARED");
  const std::string base = env && *env ? env : "../shared";
  const std::string p = base + "/data/fairness/resume_names_callbacks.csv";
  std::error_code ec;
  return std::filesystem::exists(p, ec) ? p : std::string();
}

// Next-token distributions of a causal LM for each text (read as a prompt after BOS).
audit::ProbabilityFn lm_next_token(std::shared_ptr<const Model> model) {
  return [model](const std::vector<std::string>& texts) {
    std::vector<std::vector<double>> out;
    at::NoGradGuard no_grad;
    for (const std::string& t : texts) {
      std::vector<TokenId> ids = model->tokenizer().encode(t, true);
      if (ids.empty()) ids.push_back(model->tokenizer().bos_id());
      const int64_t ctx = model->config().max_seq_len;
      if (ctx > 0 && static_cast<int64_t>(ids.size()) > ctx) ids.erase(ids.begin(), ids.end() - ctx);
      at::Tensor p = at::softmax(model->logits(ids)[-1].to(at::kDouble), -1).contiguous();
      out.emplace_back(p.data_ptr<double>(), p.data_ptr<double>() + p.numel());
    }
    return out;
  };
}

// A fastText classifier explains itself exactly: each worst pair gets the word / n-gram
// attributions of the original's class (against the other class) in both texts, so the page
// shows which features carry the change, swapped words and their n-grams included.
void add_exact_contrast(const TextClassifier& c, bool normalise, const audit::CounterfactualResult& r,
                        nlohmann::json* j) {
  auto prepared = [normalise](const std::string& s) {
    if (!normalise) return s;
    std::string joined;
    for (const auto& w : distill::Featurizer::words(s, true)) joined += (joined.empty() ? "" : " ") + w;
    return joined;
  };
  // The 6 largest features, and every feature holding a swapped word.
  auto features = [&](const std::string& text, int target, const std::vector<std::string>& swapped) {
    nlohmann::json out = nlohmann::json::array();
    ClassifierExplanation e = c.explain(prepared(text), target);
    std::vector<const TextFeatureAttribution*> f;
    for (const TextFeatureAttribution& x : e.features) f.push_back(&x);
    std::stable_sort(f.begin(), f.end(), [](auto* a, auto* b) { return std::fabs(a->value) > std::fabs(b->value); });
    for (size_t k = 0; k < f.size(); ++k) {
      bool holds = false;
      for (const std::string& w : swapped)
        for (const std::string& part : distill::Featurizer::words(f[k]->text, true)) holds = holds || part == w;
      if (k < 6 || holds)
        out.push_back({{"kind", f[k]->kind}, {"text", f[k]->text}, {"value", f[k]->value}, {"swapped", holds}});
    }
    return std::make_pair(out, e.explained);
  };
  for (size_t i = 0; i < r.worst.size() && i < (*j)["worst"].size(); ++i) {
    const audit::CounterfactualExample& e = r.worst[i];
    std::vector<std::string> from, to;
    for (const auto& [a, b] : e.replaced) {
      for (const std::string& w : distill::Featurizer::words(a, true)) from.push_back(w);
      for (const std::string& w : distill::Featurizer::words(b, true)) to.push_back(w);
    }
    try {
      auto [before, vb] = features(e.original, e.class_before, from);
      auto [after, va] = features(e.swapped, e.class_before, to);
      (*j)["worst"][i]["exact_contrast"] = {{"explained", "logit(" + c.labels()[e.class_before] + ") - logit(other)"},
                                             {"before", vb}, {"after", va},
                                             {"features_before", before}, {"features_after", after}};
    } catch (const Error&) {
      return;  // a classifier without exact attributions: the per-word effects stand alone
    }
  }
}

}  // namespace

void add_counterfactual_options(CLI::App& app, CounterfactualArgs* a) {
  app.add_option("--data", a->data, "CSV (header row) or JSON Lines file with the texts")->required();
  app.add_option("--attribute", a->attribute,
                 "gender | race | religion | nationality | age, or a CSV of aligned terms (header: the groups)")
      ->required();
  app.add_option("--names", a->names,
                 "gender / race: first names to swap too, from a CSV with name, gender, ethnicity (default: "
                 "$CANDOR_SHARED/data/fairness/resume_names_callbacks.csv when present; 'none' to leave names)");
  app.add_option("--n-boot", a->n_boot, "Bootstrap resamples of the intervals (1000; 0: none)");
  app.add_option("--confidence", a->confidence, "Level of the intervals (0.95)");
  app.add_option("--worst", a->worst, "Examples with the largest change, explained word by word (10)");
  app.add_option("--limit", a->limit, "Read only the first N rows (0: all)");
  app.add_option("--seed", a->seed, "Seed of the resamples (1)");
  app.add_option("--on-error", a->on_error, "fail | skip: what a bad record does");
  app.add_option("--out", a->out, "Output folder (audit.json, audit.md, report.html)")->required();
  add_audit_model_options(app, &a->model);
}

int run_counterfactual(const CounterfactualArgs& a) {
  if (a.model.model.empty()) throw usage_error("audit counterfactual needs --model M (the model under audit)");
  if (!(a.confidence > 0 && a.confidence < 1)) throw usage_error("--confidence must be in (0, 1)");
  if (a.n_boot < 0 || a.worst < 0 || a.limit < 0) throw usage_error("--n-boot, --worst and --limit must be >= 0");
  audit::SwapLexicon lex;
  if (is_builtin(a.attribute)) {
    std::string names = a.names == "none" ? "" : (a.names.empty() ? default_names() : a.names);
    lex = audit::builtin_swap_lexicon(a.attribute, names);
  } else if (std::filesystem::exists(a.attribute)) {
    lex = audit::load_swap_lexicon(a.attribute);
  } else {
    std::string list;
    for (const std::string& b : audit::builtin_swap_attributes()) list += (list.empty() ? "" : ", ") + b;
    throw usage_error("--attribute '" + a.attribute + "' is neither a built-in word list nor a file",
                      "use one of " + list + ", or a CSV whose header names the groups");
  }
  data::ReadOptions ro;
  ro.on_error = data::parse_error_policy(a.on_error);
  ro.required = {a.model.text_column};
  ro.types[a.model.text_column] = data::ColumnType::kText;
  data::Table table = data::read_table(a.data, ro);
  const data::Column& col = table.column(a.model.text_column);
  std::vector<std::string> texts;
  for (size_t r = 0; r < table.n_rows() && (a.limit == 0 || static_cast<int64_t>(r) < a.limit); ++r)
    texts.push_back(col.is_missing(r) ? std::string() : col.raw[r]);
  if (texts.empty())
    throw usage_error(a.data + ": no rows to audit", "give a file with a header row and at least one record");

  AuditModelArgs ma = a.model;
  audit::CounterfactualOptions o;
  o.n_boot = a.n_boot;
  o.seed = a.seed;
  o.confidence = a.confidence;
  o.worst = a.worst;
  audit::ProbabilityFn fn;
  AuditModel m;
  std::vector<std::string> classes;
  std::string kind;
  const bool plain_lm = ma.prompt.empty() && !distill::MlpClassifier::is_saved(ma.model) &&
                        !is_fasttext_file(ma.model) && !looks_like_text_classifier(ma.model);
  if (plain_lm && std::filesystem::exists(ma.model)) {
    std::shared_ptr<const Model> lm = load_cli_model(ma.model, ma.tokenizer, 0);
    if (!lm->is_causal())
      throw usage_error("--model " + ma.model + " is neither a text classifier nor a causal LM");
    fn = lm_next_token(lm);
    o.causal_lm = true;
    kind = "causal-lm";
  } else {
    m = load_audit_model(ma);
    if (m.kind == "mlp")
      throw usage_error("a counterfactual swap rewrites text: --model must read text (fastText, a classifier "
                        "folder, or a causal LM), not a tabular MLP");
    for (const std::string& c : m.columns)
      if (c != ma.text_column)
        throw usage_error("--prompt may name only the text column {" + ma.text_column + "}, not {" + c + "}");
    classes = m.teacher->classes();
    kind = m.kind;
    const distill::Teacher* t = m.teacher.get();
    const std::string column = ma.text_column;
    fn = [t, column](const std::vector<std::string>& batch) {
      const data::ColumnType text = data::ColumnType::kText;
      data::Column c = data::make_column(column, batch, std::vector<uint8_t>(batch.size(), 0), &text);
      std::vector<int64_t> lines(batch.size());
      for (size_t i = 0; i < lines.size(); ++i) lines[i] = static_cast<int64_t>(i) + 2;
      data::Table tb("swaps", {c}, lines);
      std::vector<size_t> rows(batch.size());
      for (size_t i = 0; i < rows.size(); ++i) rows[i] = i;
      return t->predict(tb, rows);
    };
  }
  std::cerr << "swapping " << lex.attribute << " terms in " << texts.size() << " texts (" << lex.terms.size()
            << " term rows, " << lex.source << ")...\n";
  audit::CounterfactualResult r = audit::audit_counterfactual(texts, lex, fn, o);
  r.classes = classes;
  nlohmann::json j = r.to_json();
  if (m.kind == "fasttext") add_exact_contrast(*m.classifier, ma.normalise, r, &j);
  j["data"] = a.data;
  j["text_column"] = ma.text_column;
  j["model"] = {{"path", ma.model}, {"kind", kind}};
  std::filesystem::create_directories(a.out);
  std::ofstream(a.out + "/audit.json") << json_text(j);
  std::ofstream(a.out + "/audit.md") << render_audit_markdown(j);
  std::ofstream(a.out + "/report.html") << render_audit_html(j, "candor counterfactual audit: " + lex.attribute);
  std::cout << "counterfactual " << lex.attribute << ": " << r.n_mentioning << " of " << r.n_texts
            << " texts mention a term, " << r.n_pairs << " swaps\n";
  std::cout << "  flip share " << r.flip_share << " [" << r.flip_ci[0] << ", " << r.flip_ci[1] << "], mean |"
            << (o.causal_lm ? "JS" : "delta p") << "| " << r.mean_abs_delta << " [" << r.mean_abs_delta_ci[0] << ", "
            << r.mean_abs_delta_ci[1] << "], max " << r.max_abs_delta << "\n";
  if (o.causal_lm)
    std::cout << "  mean |delta log p| of the top token " << r.mean_abs_logprob_change << "\n";
  std::cout << "wrote " << a.out << "/audit.json, audit.md, report.html\n";
  return 0;
}

}  // namespace candor::cli
