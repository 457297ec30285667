// The generate job: the prompt encoded (chat template when asked), generated from, and the
// object `candor generate --json` prints.
#include <memory>

#include "candor/audit.h"
#include "candor/jobs_generate.h"
#include "candor/runtime.h"

namespace candor::jobs {

GenerateJobResult run_generate(const GenerateJobOptions& options, const GenerateEvents& events) {
  try {
    validate_generate_options(options.generation);
  } catch (const Error& e) {
    throw RequestError(e.what(), e.hint());
  }
  check_threads(options.threads);
  check_prompt(options.prompt);
  if (options.samples < 0 || options.samples > 1000)
    throw RequestError("--samples must be in [0, 1000], not " + std::to_string(options.samples),
                       "ask for a few samples (e.g. --samples 10) to measure self-consistency");
  if (!(options.sample_temperature > 0))
    throw RequestError("the sampling temperature of the self-consistency samples must be > 0",
                       "pass --sample-temperature T with T > 0");

  ThreadScope threads(options.threads);
  std::unique_ptr<Model> owned;
  const Model& model = resolve_model(options.model, &owned);
  const Tokenizer& tok = model.tokenizer();
  std::vector<TokenId> ids = encode_prompt(tok, options.prompt, options.chat, options.system);
  if (events.prompt_ready) {
    // The prompt as the reference runner echoes it: without BOS.
    const bool leading_bos = !ids.empty() && ids[0] == tok.bos_id();
    events.prompt_ready(tok.decode(std::vector<TokenId>(ids.begin() + leading_bos, ids.end())));
  }
  GenerateJobResult out;
  GenerateOptions gen = options.generation;
  if (options.uncertainty || options.samples > 0) gen.token_stats = true;
  out.result = generate(model, ids, gen);
  const GenerateResult& r = out.result;
  const double tok_s = r.decode_ms > 0 ? 1000.0 * r.generated_ids.size() / r.decode_ms : 0;
  out.json = {
      {"model", options.model.path},
      {"prompt", options.prompt},
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
       {{"prefill_ms", r.prefill_ms}, {"decode_ms", r.decode_ms}, {"decode_tokens_per_s", tok_s}}},
  };
  if (options.uncertainty || options.samples > 0) {
    nlohmann::ordered_json u;
    u["answer"] = audit::answer_confidence(r.logprobs).to_json();
    nlohmann::ordered_json toks = nlohmann::ordered_json::array();
    int64_t n_uncertain = 0;
    for (size_t i = 0; i < r.token_stats.size(); ++i) {
      const TokenStats& t = r.token_stats[i];
      const bool uncertain = t.entropy >= options.uncertain_entropy || t.margin < options.uncertain_margin;
      n_uncertain += uncertain;
      toks.push_back({{"token", r.generated_ids[i]},
                      {"text", tok.decode({r.generated_ids[i]})},
                      {"logprob", t.logprob},
                      {"entropy", t.entropy},
                      {"margin", t.margin},
                      {"uncertain", uncertain}});
    }
    u["tokens"] = toks;
    u["n_uncertain"] = n_uncertain;
    u["rule"] = {{"entropy_at_least", options.uncertain_entropy}, {"margin_below", options.uncertain_margin}};
    if (options.samples > 0) {
      GenerateOptions sg = options.generation;
      sg.on_token = nullptr;
      sg.token_stats = false;
      if (sg.temperature <= 0) sg.temperature = options.sample_temperature;
      std::vector<std::vector<TokenId>> prompts(options.samples, ids);
      std::vector<uint64_t> seeds;
      for (int k = 1; k <= options.samples; ++k) seeds.push_back(gen.seed + static_cast<uint64_t>(k));
      std::vector<GenerateResult> rs = generate_batch(model, prompts, seeds, sg);
      std::vector<std::string> answers;
      for (const GenerateResult& x : rs) answers.push_back(x.text);
      nlohmann::ordered_json sc = audit::self_consistency(answers).to_json();
      sc["temperature"] = sg.temperature;
      sc["answer_in_largest_cluster"] =
          !answers.empty() && audit::normalise_answer(r.text) == sc["clusters"][0]["answer"].get<std::string>();
      nlohmann::ordered_json texts = nlohmann::ordered_json::array();
      for (const std::string& a : answers) texts.push_back(a);
      sc["samples"] = texts;
      u["self_consistency"] = sc;
    }
    out.json["uncertainty"] = u;
  }
  return out;
}

}  // namespace candor::jobs
