// `candor audit generation`: generation bias probes. Each template is filled with each group's
// words, N seeded continuations are sampled (generate_batch), each is scored (a valence lexicon:
// --lexicon, else VADER from $CANDOR_SHARED/lexicons when present, else candor's small built-in
// one; or a classifier, --scorer), and candor_audit reports per-group means with intervals, the
// largest gap and its permutation p-value.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "audit_model.h"
#include "candor/generate.h"
#include "candor/report.h"
#include "cli.h"
#include "cmd_transformer.h"

namespace candor::cli {

void add_generation_probe_options(CLI::App& app, GenerationProbeArgs* a) {
  app.add_option("--model", a->model, "The causal LM under audit")->required();
  app.add_option("--tokenizer", a->tokenizer, "Tokenizer file (default: found beside the model)");
  app.add_option("--templates", a->templates,
                 "Templates, one a line, each with {group} (default: candor's built-in set)");
  app.add_option("--groups", a->groups, "Groups, one a line: name[,word,word...] (default: built-in set)");
  app.add_option("--samples", a->samples, "Seeded samples per template and group word (20)");
  app.add_option("--max-new-tokens", a->max_new_tokens, "Length of each continuation (16)");
  app.add_option("--temperature", a->temperature, "Sampling temperature (0.8)");
  app.add_option("--top-p", a->top_p, "Nucleus sampling cut (0.95)");
  app.add_option("--lexicon", a->lexicon,
                 "Valence lexicon (VADER .txt or word,value CSV); default: $CANDOR_SHARED/lexicons/vader_lexicon.txt "
                 "when present, else a small built-in one");
  app.add_option("--scorer", a->scorer, "A text classifier that scores continuations instead of a lexicon");
  app.add_option("--scorer-positive", a->scorer_positive,
                 "--scorer: the class whose probability is positive (default: the last class)");
  app.add_option("--n-boot", a->n_boot, "Bootstrap resamples (1000)");
  app.add_option("--permutations", a->n_permutations, "Permutations of the gap test (2000)");
  app.add_option("--examples", a->examples, "Continuations shown per group (3)");
  app.add_option("--seed", a->seed, "Seed of the samples and resamples (1)");
  app.add_option("--threads", a->threads, "Threads (0: one per core)");
  app.add_option("--out", a->out, "Output folder (audit.json, audit.md, report.html)")->required();
}

int run_generation_probes(const GenerationProbeArgs& a) {
  if (a.samples < 1) throw usage_error("--samples must be >= 1");
  if (a.max_new_tokens < 1) throw usage_error("--max-new-tokens must be >= 1");
  if (a.n_boot < 0 || a.n_permutations < 0 || a.examples < 0)
    throw usage_error("--n-boot, --permutations and --examples must be >= 0");
  audit::GenerationProbeSet probes = audit::load_generation_probes(a.templates, a.groups);
  // The scorer.
  std::function<double(const std::string&, int64_t*)> score;
  std::string scorer_name;
  audit::ValenceLexicon lex;
  AuditModel clf;
  if (!a.scorer.empty()) {
    AuditModelArgs ma;
    ma.model = a.scorer;
    ma.threads = a.threads;
    clf = load_audit_model(ma);
    if (!clf.classifier)
      throw usage_error("--scorer must be a text classifier (fastText or a classifier folder)");
    const std::vector<std::string>& cls = clf.classifier->labels();
    const int pos = a.scorer_positive.empty() ? static_cast<int>(cls.size()) - 1 : clf.classifier->label_index(a.scorer_positive);
    const TextClassifier* c = clf.classifier.get();
    score = [c, pos](const std::string& text, int64_t* matched) {
      *matched = 1;
      return 2 * c->predict_proba(text)[pos] - 1;
    };
    scorer_name = "classifier " + a.scorer + ": 2 p(" + cls[pos] + ") - 1";
  } else {
    std::string path = a.lexicon;
    if (path.empty()) {
      const char* env = std::getenv("CANDOR_SHARED");
      const std::string p = std::string(env && *env ? env : "../shared") + "/lexicons/vader_lexicon.txt";
      std::error_code ec;
      if (std::filesystem::exists(p, ec)) path = p;
    }
    lex = path.empty() ? audit::builtin_valence_lexicon() : audit::load_valence_lexicon(path);
    const audit::ValenceLexicon* l = &lex;
    score = [l](const std::string& text, int64_t* matched) { return l->score(text, matched); };
    std::ostringstream scale;
    scale << lex.scale;  // "3", not std::to_string's "3.000000"
    scorer_name = "valence lexicon " + lex.source + " (mean valence of matched words / " + scale.str() + ")";
  }
  std::shared_ptr<const Model> model = load_cli_model(a.model, a.tokenizer, a.threads);
  if (!model->is_causal()) throw usage_error("--model " + a.model + " is not a causal LM");
  GenerateOptions g;
  g.max_new_tokens = a.max_new_tokens;
  g.temperature = a.temperature;
  g.top_p = a.top_p;
  validate_generate_options(g);
  std::vector<audit::GenerationSample> samples;
  std::vector<std::vector<TokenId>> prompts;
  std::vector<uint64_t> seeds;
  std::vector<audit::GenerationSample> meta;
  uint64_t k = 0;
  for (const std::string& t : probes.templates)
    for (const auto& [group, terms] : probes.groups)
      for (const std::string& term : terms) {
        const std::string prompt = audit::fill_group(t, term);
        const std::vector<TokenId> ids = model->tokenizer().encode(prompt, true);
        for (int s = 0; s < a.samples; ++s) {
          prompts.push_back(ids);
          seeds.push_back(a.seed * 1000003ull + k++);
          meta.push_back({group, prompt, "", 0, 0});
        }
      }
  std::cerr << "sampling " << prompts.size() << " continuations (" << probes.templates.size() << " templates x "
            << probes.groups.size() << " groups x " << a.samples << " samples)...\n";
  std::vector<GenerateResult> res = generate_batch(*model, prompts, seeds, g);
  for (size_t i = 0; i < res.size(); ++i) {
    audit::GenerationSample s = meta[i];
    s.continuation = res[i].text;
    s.score = score(s.continuation, &s.matched);
    samples.push_back(std::move(s));
  }
  audit::GenerationBiasOptions o;
  o.n_boot = a.n_boot;
  o.n_permutations = a.n_permutations;
  o.seed = a.seed;
  o.examples = a.examples;
  audit::GenerationBiasResult r = audit::audit_generation_bias(samples, o);
  r.scorer = scorer_name;
  nlohmann::json j = r.to_json();
  j["model"] = a.model;
  j["templates"] = probes.templates;
  j["generation"] = {{"max_new_tokens", a.max_new_tokens}, {"temperature", a.temperature}, {"top_p", a.top_p},
                     {"samples", a.samples}};
  int64_t matched = 0;
  for (const audit::GenerationSample& s : samples) matched += s.matched > 0;
  j["n_scored"] = matched;  // continuations with at least one lexicon word
  std::filesystem::create_directories(a.out);
  std::ofstream(a.out + "/audit.json") << json_text(j);
  std::ofstream(a.out + "/audit.md") << render_audit_markdown(j);
  std::ofstream(a.out + "/report.html") << render_audit_html(j, "candor generation bias probes");
  {
    std::ofstream f(a.out + "/samples.jsonl");
    for (const audit::GenerationSample& s : samples)
      f << nlohmann::json{{"group", s.group}, {"prompt", s.prompt}, {"continuation", s.continuation}, {"score", s.score}}
               .dump()
        << "\n";
  }
  std::cout << "generation probes: " << samples.size() << " continuations, " << matched
            << " with a scored word; largest gap " << r.gap << " [" << r.gap_ci[0] << ", " << r.gap_ci[1]
            << "] between " << r.gap_between[0] << " and " << r.gap_between[1] << ", permutation p = " << r.p_value
            << "\n";
  std::cout << "wrote " << a.out << "/audit.json, audit.md, report.html, samples.jsonl\n";
  return 0;
}

}  // namespace candor::cli
