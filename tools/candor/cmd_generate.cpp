// `candor generate`: text from a prompt, streamed to stdout (or one JSON object with --json).
// The work is the generate job (candor/jobs_generate.h); this file parses the arguments and
// prints.
#include <nlohmann/json.hpp>

#include <iostream>
#include <memory>

#include "candor/jobs_generate.h"
#include "cli.h"

namespace candor::cli {

Runner add_generate(CLI::App& app) {
  struct Opts {
    jobs::GenerateJobOptions job;
    bool json = false;
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
    jobs::GenerateJobResult r = jobs::run_generate(job, ev);
    if (o->json) {
      std::cout << r.json.dump(2) << "\n";
    } else {
      const GenerateResult& g = r.result;
      double tok_s = g.decode_ms > 0 ? 1000.0 * g.generated_ids.size() / g.decode_ms : 0;
      std::cout << "\n";
      std::cerr << "[" << g.generated_ids.size() << " tokens, " << static_cast<int64_t>(tok_s)
                << " tok/s, stop: " << g.stop_reason << "]\n";
    }
    return 0;
  };
}

}  // namespace candor::cli
