// What the jobs share: the model of a request, the prompt as token ids, checks of the inputs.
#include "candor/jobs_common.h"
#include "candor/runtime.h"
#include "jobs/internal.h"

namespace candor::jobs {

const Model& resolve_model(const ModelSource& source, std::unique_ptr<Model>* owned) {
  if (source.model != nullptr) return *source.model;
  LoadOptions lo;
  lo.tokenizer_path = source.tokenizer;
  lo.compute_dtype = source.dtype;
  *owned = load_model(source.path, lo);
  return **owned;
}

std::vector<TokenId> encode_prompt(const Tokenizer& tokenizer, const std::string& prompt, bool chat,
                                   const std::string& system) {
  if (!chat) return tokenizer.encode(prompt, true, false);
  std::vector<ChatMessage> messages;
  if (!system.empty()) messages.push_back({"system", system});
  messages.push_back({"user", prompt});
  // The template writes BOS itself where the format has one.
  return tokenizer.encode(tokenizer.apply_chat_template(messages, true), false, false);
}

std::vector<std::unique_ptr<Explainer>> make_explainers(const std::vector<std::string>& specs) {
  std::vector<std::unique_ptr<Explainer>> explainers;
  for (const auto& m : specs) {
    try {
      explainers.push_back(make_explainer(m));
    } catch (const Error& e) {
      throw RequestError(std::string("--method ") + e.what(), e.hint());
    }
  }
  return explainers;
}

void check_threads(int threads) {
  if (threads < 0) throw RequestError("--threads must be >= 0, got " + std::to_string(threads));
  if (threads > max_threads()) {
    throw RequestError("--threads " + std::to_string(threads) + " is more than 4 x the " +
                           std::to_string(usable_cores()) + " cores this process may use",
                       "use --threads 0 (one per core) or at most " +
                           std::to_string(max_threads()) +
                           "; more threads than cores run one per core");
  }
}

void check_tape_budget(int64_t bytes) {
  if (bytes < -1) {
    throw RequestError("--tape-budget must be >= 0 bytes, got " + std::to_string(bytes),
                       "give a size such as 512M or 2G (0: always the lean tape)");
  }
}

void check_prompt(const std::string& prompt) {
  size_t bad = 0;
  if (!is_valid_utf8(prompt, &bad)) {
    throw RequestError(
        "--prompt is not valid UTF-8 (bad byte sequence at offset " + std::to_string(bad) + ")",
        "pass the prompt as UTF-8 text");
  }
}

}  // namespace candor::jobs
