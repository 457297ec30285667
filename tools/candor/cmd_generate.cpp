// `candor generate`: text from a prompt, streamed to stdout (or one JSON object with --json).
// The work is the generate job (candor/jobs_generate.h); this file parses the arguments and
// prints.
#include <nlohmann/json.hpp>

#include <iostream>
#include <memory>

#include "candor/files.h"
#include "candor/jobs_generate.h"
#include "candor/report.h"
#include "cli.h"

namespace candor::cli {

Runner add_generate(CLI::App& app) {
  struct Opts {
    jobs::GenerateJobOptions job;
    bool json = false;
    std::string html;
  };
  auto o = std::make_shared<Opts>();
  jobs::GenerateJobOptions& j = o->job;
  GenerateOptions& gen = j.generation;
  gen.max_new_tokens = 256;
  app.add_option("--model,-m", j.model.path,
                 "Checkpoint file, or a folder holding it and its tokenizer")
      ->required();
  app.add_option("--tokenizer", j.model.tokenizer,
                 "Tokenizer file (default: found beside the model)");
  app.add_option("--prompt,-p", j.prompt, "Prompt text (default: empty, start from BOS)");
  add_chat_options(app, &j.chat, &j.system);
  app.add_option("-n,--max-new-tokens", gen.max_new_tokens, "Tokens to generate (default 256)");
  app.add_option("--temperature,-t", gen.temperature, "0 = greedy (default 0)");
  app.add_option("--top-k", gen.top_k, "Sample among the k most likely tokens (0 = off)");
  app.add_option("--top-p", gen.top_p, "Nucleus sampling mass in (0, 1] (default 1 = off)");
  app.add_option("--seed,-s", gen.seed, "Random seed for sampling (default 0)");
  app.add_option("--threads", j.threads, "Intra-op threads (default: one per core)");
  add_dtype_option(app, &j.model.dtype);
  app.add_flag("--json", o->json, "Print one JSON object instead of streaming text");
  app.add_flag("--uncertainty", j.uncertainty,
               "Per-token entropy, margin and log-probability, the answer's mean / min log-probability, "
               "uncertain tokens flagged (JSON: uncertainty)");
  app.add_option("--samples", j.samples,
                 "Self-consistency: N more seeded samples, agreement and cluster entropy of their answers");
  app.add_option("--sample-temperature", j.sample_temperature,
                 "Temperature of the --samples when the answer itself is greedy (default 1)");
  app.add_option("--uncertain-entropy", j.uncertain_entropy, "A token is uncertain at entropy >= H nats (1.5)");
  app.add_option("--uncertain-margin", j.uncertain_margin, "... or top-1 margin below M (0.1)");
  app.add_option("--html", o->html, "Write a page with the answer's tokens coloured by their uncertainty");
  return [o]() {
    // Validate everything the user typed before loading anything.
    try {
      validate_generate_options(o->job.generation);
    } catch (const Error& e) {
      throw usage_error(e.what(), "see candor generate --help");
    }
    jobs::GenerateJobOptions job = o->job;
    jobs::GenerateEvents ev;
    if (!o->json) {
      job.generation.on_token = [](TokenId, const std::string& piece) {
        std::cout << piece << std::flush;
        return true;
      };
      // The prompt is echoed first, as the reference runner does (without BOS).
      ev.prompt_ready = [](const std::string& text) { std::cout << text << std::flush; };
    }
    if (!o->html.empty()) {
      job.uncertainty = true;
      check_output_file(o->html, "--html");
    }
    jobs::GenerateJobResult r = jobs::run_generate(job, ev);
    if (!o->html.empty()) {
      nlohmann::json page = nlohmann::json::parse(r.json.dump());
      page["audit"] = "uncertainty";
      write_file_atomic(o->html, render_audit_html(page, "candor generation uncertainty"));
    }
    if (o->json) {
      std::cout << r.json.dump(2) << "\n";
    } else {
      const GenerateResult& g = r.result;
      double tok_s = g.decode_ms > 0 ? 1000.0 * g.generated_ids.size() / g.decode_ms : 0;
      std::cout << "\n";
      std::cerr << "[" << g.generated_ids.size() << " tokens, " << static_cast<int64_t>(tok_s)
                << " tok/s, stop: " << g.stop_reason << "]\n";
      if (r.json.contains("uncertainty")) {
        const auto& u = r.json["uncertainty"];
        std::cerr << "[mean logprob " << u["answer"]["mean_logprob"].get<double>() << ", min "
                  << u["answer"]["min_logprob"].get<double>() << ", " << u["n_uncertain"].get<int64_t>()
                  << " uncertain tokens";
        if (u.contains("self_consistency"))
          std::cerr << "; self-consistency over " << u["self_consistency"]["n_samples"].get<int64_t>()
                    << " samples: agreement " << u["self_consistency"]["agreement"].get<double>()
                    << ", cluster entropy " << u["self_consistency"]["entropy"].get<double>();
        std::cerr << "]\n";
      }
      if (!o->html.empty()) std::cerr << "wrote " << o->html << "\n";
    }
    return 0;
  };
}

}  // namespace candor::cli
