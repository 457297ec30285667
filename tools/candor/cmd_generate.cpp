// `candor generate`: text from a prompt, streamed to stdout (or one JSON object with --json).
#include <nlohmann/json.hpp>

#include <iostream>
#include <memory>

#include "candor/generate.h"
#include "candor/model.h"
#include "candor/runtime.h"
#include "candor/tokenizer.h"
#include "cli.h"

namespace candor::cli {

Runner add_generate(CLI::App& app) {
  struct Opts {
    std::string model, tokenizer, prompt, dtype = "f32";
    GenerateOptions gen;
    int threads = 0;
    bool json = false;
    bool chat = false;
    std::string system;
  };
  auto o = std::make_shared<Opts>();
  o->gen.max_new_tokens = 256;
  app.add_option("--model,-m", o->model,
                 "Checkpoint file, or a folder holding it and its tokenizer")
      ->required();
  app.add_option("--tokenizer", o->tokenizer, "Tokenizer file (default: found beside the model)");
  app.add_option("--prompt,-p", o->prompt, "Prompt text (default: empty, start from BOS)");
  add_chat_options(app, &o->chat, &o->system);
  app.add_option("-n,--max-new-tokens", o->gen.max_new_tokens, "Tokens to generate (default 256)");
  app.add_option("--temperature,-t", o->gen.temperature, "0 = greedy (default 0)");
  app.add_option("--top-k", o->gen.top_k, "Sample among the k most likely tokens (0 = off)");
  app.add_option("--top-p", o->gen.top_p, "Nucleus sampling mass in (0, 1] (default 1 = off)");
  app.add_option("--seed,-s", o->gen.seed, "Random seed for sampling (default 0)");
  app.add_option("--threads", o->threads, "Intra-op threads (default: one per core)");
  add_dtype_option(app, &o->dtype);
  app.add_flag("--json", o->json, "Print one JSON object instead of streaming text");
  return [o]() {
    // Validate everything the user typed before loading anything.
    try {
      validate_generate_options(o->gen);
    } catch (const Error& e) {
      throw usage_error(e.what(), "see candor generate --help");
    }
    check_prompt_and_threads(o->prompt, o->threads);
    std::unique_ptr<Model> model = load_cli_model(o->model, o->tokenizer, o->threads, o->dtype);

    GenerateOptions gen = o->gen;
    if (!o->json) {
      gen.on_token = [](TokenId, const std::string& piece) {
        std::cout << piece << std::flush;
        return true;
      };
    }
    const Tokenizer& tok = model->tokenizer();
    std::vector<TokenId> ids = encode_prompt(tok, o->prompt, o->chat, o->system);
    // The prompt is echoed first, as the reference runner does (without BOS).
    const bool leading_bos = !ids.empty() && ids[0] == tok.bos_id();
    if (!o->json)
      std::cout << tok.decode(std::vector<TokenId>(ids.begin() + leading_bos, ids.end()))
                << std::flush;
    GenerateResult r = generate(*model, ids, gen);
    double tok_s = r.decode_ms > 0 ? 1000.0 * r.generated_ids.size() / r.decode_ms : 0;
    if (o->json) {
      nlohmann::ordered_json j = {
          {"model", o->model},
          {"prompt", o->prompt},
          {"prompt_tokens", r.prompt_ids},
          {"tokens", r.generated_ids},
          {"logprobs", r.logprobs},
          {"text", r.text},
          {"stop_reason", r.stop_reason},
          {"options",
           {{"max_new_tokens", gen.max_new_tokens},
            {"temperature", gen.temperature},
            {"top_k", gen.top_k},
            {"top_p", gen.top_p},
            {"seed", gen.seed}}},
          {"timing",
           {{"prefill_ms", r.prefill_ms},
            {"decode_ms", r.decode_ms},
            {"decode_tokens_per_s", tok_s}}},
      };
      std::cout << j.dump(2) << "\n";
    } else {
      std::cout << "\n";
      std::cerr << "[" << r.generated_ids.size() << " tokens, " << static_cast<int64_t>(tok_s)
                << " tok/s, stop: " << r.stop_reason << "]\n";
    }
    return 0;
  };
}

}  // namespace candor::cli
