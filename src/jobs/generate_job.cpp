// The generate job: the prompt encoded (chat template when asked), generated from, and the
// object `candor generate --json` prints.
#include <memory>

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
  const GenerateOptions& gen = options.generation;
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
  return out;
}

}  // namespace candor::jobs
