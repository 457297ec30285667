// `candor explain`: attribute the next token, a generated continuation, or a contrast "A rather
// than B" to the prompt with one or more methods; console view, JSON and HTML report. The work
// is the explain job (candor/jobs_explain.h); this file parses the arguments, draws the progress
// bar and prints.
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <memory>

#include "candor/classifier.h"
#include "candor/files.h"
#include "candor/jobs_explain.h"
#include "candor/jobs_temperature.h"
#include "candor/report.h"
#include "candor/runtime.h"
#include "cli.h"
#include "explain_table.h"

namespace candor::cli {

Runner add_explain(CLI::App& app) {
  struct Opts {
    jobs::ExplainOptions job;
    std::string json_path, html_path;
    bool no_progress = false;
    bool temperature_scaling = false;  // explain the model with its saved temperature
    // A model over table rows (candor train's MLP, a distilled student): the rows to explain.
    std::string data, csv_path, on_error = "fail";
    std::vector<std::string> rows;
    std::string tape_budget;  // --tape-budget SIZE
  };
  auto o = std::make_shared<Opts>();
  jobs::ExplainOptions& j = o->job;
  app.add_option("--model,-m", j.model.path,
                 "Checkpoint file, or a folder holding it and its tokenizer")
      ->required();
  app.add_option("--tokenizer", j.model.tokenizer,
                 "Tokenizer file (default: found beside the model)");
  app.add_option("--prompt,-p", j.prompt,
                 "The input text (required, but for a model over table rows: --data, --row)");
  app.add_option("--data", o->data,
                 "A model over table rows (the MLP of candor train, a student of candor "
                 "distill): the CSV or JSON Lines file whose rows are explained per column");
  app.add_option("--row", o->rows,
                 "With --data: the rows to explain, counted from 0 after the header: N, A-B, "
                 "N,M,... or all (repeatable; default all)");
  app.add_option("--csv", o->csv_path,
                 "With --data: write one line per row and method with each column's score");
  app.add_option("--on-error", o->on_error, "With --data: fail | skip bad records (default fail)");
  add_chat_options(app, &j.chat, &j.system);
  auto* g =
      app.add_option("--generate", j.generate, "Generate N tokens greedily and explain the span");
  auto* t = app.add_option("--target", j.target,
                           "Explain this next token (text or #id), or for a classifier this class "
                           "(label or index), or a hidden unit: neuron:LAYER:POSITION:UNIT "
                           "(gradient methods; POSITION < 0 counts from the end); default: the "
                           "prediction");
  auto* c = app.add_option("--contrast", j.contrast, "A,B: explain A rather than B");
  g->excludes(t)->excludes(c);
  t->excludes(c);
  app.add_option("--method", j.methods,
                 "Method spec NAME[:key=value,...] (repeatable; default input_x_gradient; a fastText "
                 "classifier is explained exactly, by fasttext_exact)");
  app.add_option("--granularity", j.granularity, "token | word | sentence (default token)");
  app.add_option("--target-function", j.target_function,
                 "logprob | prob | logit | logodds | entropy (default: logprob for a language "
                 "model, logodds for a classifier, which does not saturate near p = 1)");
  app.add_option("--baseline", j.baseline, "unk | pad | zero | token id (default unk)");
  app.add_option("--json", o->json_path, "Write the attributions as JSON to this file");
  app.add_option("--html", o->html_path, "Write a self-contained HTML report to this file");
  app.add_option("--threads", j.threads, "Intra-op threads (default: one per core)");
  app.add_option("--tape-budget", o->tape_budget,
                 "Memory the gradient tape of one pass may take before it turns lean (keeps each layer's "
                 "inputs, recomputes the rest: ~5x less memory, ~1.15x the time, the same "
                 "gradients), e.g. 512M, 2G; 0: always lean (default 1G; docs/kernels.md)");
  add_dtype_option(app, &j.model.dtype);
  app.add_flag("--no-progress", o->no_progress, "No progress bar on stderr");
  app.add_flag("--evaluate", j.evaluate,
               "Attach a quality block to each attribution: comprehensiveness, sufficiency, "
               "sensitivity, agreement with the other methods (docs/evaluation.md)");
  app.add_flag("--consensus", j.consensus,
               "Add a consensus of the methods, weighted by their agreement (docs/evaluation.md)");
  app.add_option("--removal", j.removal,
                 "How --evaluate removes features: baseline (replace) | delete (default baseline)");
  app.add_flag("--temperature-scaling", o->temperature_scaling,
               "Explain the model's logits divided by the temperature `candor audit calibration "
               "--save-temperature` saved beside it");
  return [o]() {
    if (!o->tape_budget.empty())
      o->job.tape_budget = parse_byte_size(o->tape_budget, "--tape-budget");
    if (is_table_model(o->job.model.path)) {
      const jobs::ExplainOptions& jo = o->job;
      TableExplainArgs t;
      t.model = jo.model.path;
      t.data = o->data;
      t.prompt = jo.prompt;
      t.target = jo.target;
      t.contrast = jo.contrast;
      t.target_function = jo.target_function;
      t.tokenizer = jo.model.tokenizer;
      t.granularity = jo.granularity;
      t.baseline = jo.baseline;
      t.on_error = o->on_error;
      t.json_path = o->json_path;
      t.html_path = o->html_path;
      t.csv_path = o->csv_path;
      t.methods = jo.methods;
      t.rows = o->rows;
      t.generate = jo.generate;
      t.chat = jo.chat;
      t.evaluate = jo.evaluate;
      t.consensus = jo.consensus;
      t.temperature_scaling = o->temperature_scaling;
      t.no_progress = o->no_progress;
      check_prompt_and_threads("", jo.threads);
      set_num_threads(jo.threads);
      return run_explain_table(t);
    }
    if (!o->data.empty() || !o->rows.empty() || !o->csv_path.empty())
      throw usage_error(std::string(!o->data.empty() ? "--data" : !o->rows.empty() ? "--row" : "--csv") +
                            " explains rows of a table model (the MLP of candor train, a student "
                            "of candor distill); '" + o->job.model.path + "' is not one",
                        "explain a text with --prompt TEXT");
    if (o->job.prompt.empty())
      throw usage_error("--prompt is required", "give the input text with --prompt TEXT");
    // The outputs are checked before the work, not after it.
    if (!o->json_path.empty()) check_output_file(o->json_path, "--json");
    if (!o->html_path.empty()) check_output_file(o->html_path, "--html");
    const bool tty = ::isatty(STDERR_FILENO);
    const bool show = !o->no_progress;
    int last = -1;  // the percentage last drawn of the current method
    jobs::ExplainEvents ev;
    ev.progress = [&](const std::string& name, double f) {
      if (show) {
        int pct = static_cast<int>(f * 100);
        if (pct != last && (tty || pct == 100)) {
          last = pct;
          int bars = pct / 5;
          std::cerr << "\r" << name << " [" << std::string(bars, '#') << std::string(20 - bars, '.')
                    << "] " << pct << "%" << (pct == 100 ? "\n" : "") << std::flush;
        }
      }
      return !interrupt_token().cancelled();
    };
    ev.method_done = [&](const std::string&) {
      if (show && last != 100 && tty) std::cerr << "\r" << std::string(40, ' ') << "\r";
      last = -1;
    };
    ev.evaluating = [&] {
      if (show) std::cerr << "evaluating the explanations...\n";
    };
    jobs::ExplainResult r;
    {
      InterruptScope interrupt;  // Ctrl-C keeps the methods that finished
      jobs::ExplainOptions job = o->job;
      job.cancel = &interrupt_token();
      std::unique_ptr<Model> loaded, scaled;
      double temperature = 1;
      if (o->temperature_scaling) {
        if (is_fasttext_file(job.model.path))
          throw usage_error("--temperature-scaling applies to models candor runs, not to a fastText file",
                            "drop --temperature-scaling");
        temperature = jobs::load_temperature(job.model.path);
        loaded = load_cli_model(job.model.path, job.model.tokenizer, job.threads, job.model.dtype);
        scaled = jobs::temperature_scaled(*loaded, temperature);
        job.model.model = scaled.get();
      }
      r = jobs::run_explain(job, ev);
      if (o->temperature_scaling)
        r.envelope["temperature_scaling"] = {{"temperature", temperature},
                                             {"file", jobs::temperature_path(job.model.path)}};
    }

    bool color = ::isatty(STDOUT_FILENO);
    if (!r.context.generated_text.empty())
      std::cout << "generated: " << r.context.generated_text << "\n";
    for (const auto& a : r.attributions) std::cout << render_console(a, color) << "\n";
    if (!o->json_path.empty()) {
      write_file_atomic(o->json_path, jobs::envelope_text(r.envelope));
      std::cerr << "wrote " << o->json_path << "\n";
    }
    if (!o->html_path.empty()) {
      // A step x feature matrix too large to print whole goes beside the page as CSV.
      if (step_matrix_too_large(r.attributions)) {
        const std::filesystem::path page(o->html_path);
        const std::filesystem::path csv =
            page.parent_path() / (page.stem().string() + ".scores.csv");
        write_file_atomic(csv.string(), step_matrix_csv(r.attributions));
        r.context.scores_csv = csv.filename().string();
        std::cerr << "wrote " << csv.string() << "\n";
      }
      write_file_atomic(o->html_path, render_html(r.attributions, r.context));
      std::cerr << "wrote " << o->html_path << "\n";
    }
    if (!r.complete) {
      std::string missing;
      for (const auto& m : r.missing) missing += (missing.empty() ? "" : ", ") + m;
      std::cerr << "\ninterrupted: " << r.attributions.size() << " method(s) finished and are "
                << "shown" << (o->json_path.empty() && o->html_path.empty() ? "" : " and written")
                << "; not done: " << missing << "\n"
                << "hint: rerun with only the missing methods (--method) to complete them\n";
      return kExitInterrupted;
    }
    return 0;
  };
}

}  // namespace candor::cli
