// `candor evaluate`: grade attribution methods over a data set. For every text of a CSV or JSONL
// file, explains the model's next token with each method and scores the explanation with the
// chosen metrics; writes a methods x metrics table (mean and bootstrap interval) as Markdown,
// JSON and HTML with the deletion/insertion curves. Finished examples are appended to
// OUT/examples.jsonl as they complete, and a rerun with the same settings resumes from there.
// The work is the evaluate job (candor/jobs_evaluate.h) over a FileRecordStore; this file parses
// the arguments, draws the progress bar and prints.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>

#include "candor/evaluate.h"
#include "candor/files.h"
#include "candor/jobs_evaluate.h"
#include "candor/report.h"
#include "cli.h"
#include "explain_table.h"

namespace candor::cli {
namespace {}  // namespace

Runner add_evaluate(CLI::App& app) {
  struct Opts {
    jobs::EvaluateOptions job;
    std::string out;
    bool no_progress = false;
    std::vector<std::pair<CLI::Option*, std::string>> text_only;  // refused on a table model
    std::string tape_budget;  // --tape-budget SIZE
  };
  auto o = std::make_shared<Opts>();
  jobs::EvaluateOptions& j = o->job;
  app.add_option("--model,-m", j.model.path,
                 "Checkpoint file, or a folder holding it; or a table model (the folder of "
                 "candor train, a distilled student), graded per column")
      ->required();
  o->text_only.push_back({app.add_option("--tokenizer", j.model.tokenizer,
                                         "Tokenizer file (default: found beside the model)"),
                          "--tokenizer"});
  app.add_option("--data", j.data, "Texts: .jsonl (one object a line) or .csv with a header")
      ->required();
  o->text_only.push_back(
      {app.add_option("--text-column", j.text_column, "Column (or JSON key) holding the text"),
       "--text-column"});
  app.add_option("--method", j.methods,
                 "Method spec NAME[:key=value,...] (repeatable; default integrated_gradients, "
                 "occlusion)");
  app.add_option("--metric", j.metrics,
                 "faithfulness (default) | sensitivity | comprehensiveness | sufficiency | "
                 "deletion | insertion | infidelity | loo_kendall | avg_sensitivity | "
                 "max_sensitivity (repeatable)");
  app.add_option("--out", o->out, "Output folder (table.md, table.json, report.html)")->required();
  o->text_only.push_back(
      {app.add_option("--removal", j.removal, "baseline (replace) | delete (default baseline)"),
       "--removal"});
  o->text_only.push_back(
      {app.add_option("--baseline", j.baseline, "unk | pad | zero | token id (default unk)"),
       "--baseline"});
  o->text_only.push_back(
      {app.add_option("--max-tokens", j.max_tokens, "Keep the first N tokens of each text (64)"),
       "--max-tokens"});
  o->text_only.push_back(
      {app.add_option(
           "--generate", j.generate,
           "Explain the model's greedy answer of N tokens to each text (the summed log-prob "
           "of the span) instead of its next token (0, the default)"),
       "--generate"});
  o->text_only.push_back(
      {app.add_option("--curve-points", j.curve_points,
                      "Points of the deletion/insertion curves (0: every feature count)"),
       "--curve-points"});
  o->text_only.push_back({app.add_option("--sensitivity-samples", j.sensitivity_samples,
                                         "Perturbations per example (4)"),
                          "--sensitivity-samples"});
  app.add_option("--limit", j.limit, "Evaluate only the first N texts");
  app.add_option("--bootstrap", j.bootstrap, "Bootstrap resamples for the intervals (1000)");
  app.add_option("--seed", j.seed, "Seed of the random parts (0)");
  app.add_option("--on-error", j.on_error,
                 "Bad rows (malformed, empty, no text): fail (default) | skip (reported)");
  app.add_option("--threads", j.threads, "Intra-op threads (default: one per core)");
  app.add_option("--tape-budget", o->tape_budget,
                 "Memory the gradient tape of one pass may take before it turns lean (keeps each layer's "
                 "inputs, recomputes the rest: ~5x less memory, ~1.15x the time, the same "
                 "gradients), e.g. 512M, 2G; 0: always lean (default 1G; docs/kernels.md)");
  app.add_flag("--no-progress", o->no_progress, "No progress bar on stderr");
  app.add_flag("--decoys", j.decoys,
               "Also grade decoy explanations (random, inverted, first, last, other_target) and "
               "report how often each method beats each decoy (docs/evaluation.md)");
  o->text_only.push_back(
      {app.add_option(
           "--lexicon", j.lexicon,
           "With --decoys, also the lexicon decoy: |valence| of each feature's words in "
           "this VADER, AFINN or Bing lexicon (e.g. ../shared/lexicons/vader_lexicon.txt)"),
       "--lexicon"});
  o->text_only.push_back(
      {app.add_option(
           "--attack", j.attack,
           "Attack each method's explanations: substitution (nearest-neighbour tokens) | "
           "noise (embedding noise), with options NAME:key=value,... (n_candidates, "
           "n_rounds, top_k, success_below, max_prob_change, neighbours | radius); reports "
           "the success rate, the top-k intersection reached and the changes found"),
       "--attack"});
  return [o]() {
    if (!o->tape_budget.empty())
      o->job.tape_budget = parse_byte_size(o->tape_budget, "--tape-budget");
    const jobs::EvaluateOptions& j = o->job;
    if (is_table_model(j.model.path)) {
      // A model over table rows (candor train's MLP, a distilled student): graded per column.
      TableEvaluateArgs t;
      t.model = j.model.path;
      t.data = j.data;
      t.out = o->out;
      t.on_error = j.on_error;
      t.methods = j.methods;
      t.metrics = j.metrics;
      for (const auto& [opt, name] : o->text_only)
        if (opt->count() > 0) t.text_only.push_back(name);
      t.limit = j.limit;
      t.bootstrap = j.bootstrap;
      t.seed = j.seed;
      t.threads = j.threads;
      t.decoys = j.decoys;
      t.no_progress = o->no_progress;
      return run_evaluate_table(t);
    }
    prepare_output_dir(o->out, "--out");  // before the work, not after it
    InterruptScope interrupt;             // Ctrl-C keeps the finished examples; a rerun resumes
    auto to_stderr = [](const std::string& line) { std::cerr << line << "\n"; };
    jobs::FileRecordStore store(o->out, to_stderr);
    const bool tty = ::isatty(STDERR_FILENO);
    auto start = std::chrono::steady_clock::now();
    jobs::EvaluateEvents ev;
    ev.notice = to_stderr;
    ev.started = [&] { start = std::chrono::steady_clock::now(); };
    ev.stop = [] { return interrupt_token().cancelled(); };
    ev.progress = [&](const jobs::EvaluateProgress& p) {
      if (o->no_progress) return;
      const double f =
          p.total == 0 ? 1.0 : static_cast<double>(p.done) / static_cast<double>(p.total);
      const int bars = static_cast<int>(f * 30);
      double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      double eta = p.computed > 0 ? el / static_cast<double>(p.computed) *
                                        static_cast<double>(p.to_compute - p.computed)
                                  : 0;
      char buf[160];
      std::snprintf(buf, sizeof(buf), "\r[%s%s] %zu/%zu examples, %.0fs elapsed, ~%.0fs left ",
                    std::string(bars, '#').c_str(), std::string(30 - bars, '.').c_str(), p.done,
                    p.total, el, eta);
      if (tty || p.done == p.total)
        std::cerr << buf << (p.done == p.total ? "\n" : "") << std::flush;
    };
    jobs::EvaluateResult r = jobs::run_evaluate(o->job, store, ev);

    std::cout << render_benchmark_markdown(r.summary);
    if (r.n_skipped > 0) std::cout << r.n_skipped << " row(s) skipped (listed in table.json)\n";
    std::cerr << "wrote " << o->out << "/table.md, table.json, report.html\n";
    if (!r.complete) {
      std::cerr << "interrupted: rerun the same command to resume\n";
      return kExitInterrupted;
    }
    return 0;
  };
}

}  // namespace candor::cli
