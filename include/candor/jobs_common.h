// What every job shares: the error for a bad request, where the model comes from, the prompt as
// token ids. A job is one unit of work of candor (explain a prompt, evaluate methods over a data
// set, generate text) as the CLI, the HTTP service and the Python bindings run it: it takes a
// plain options struct and returns its result with the JSON the CLI writes.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "candor/error.h"
#include "candor/model.h"
#include "candor/tokenizer.h"

namespace candor::jobs {

// The request is at fault: a bad option value, a token that is not in the vocabulary, settings
// that clash with a stored run. The CLI exits with 2 (usage), a service answers 400; any other
// candor::Error a job throws is a failure while running it. Messages name the options by their
// CLI spelling ("--target", "--method"), which are also the option structs' field names.
class RequestError : public Error {
 public:
  explicit RequestError(const std::string& message, std::string hint = {})
      : Error(ErrorCode::kInvalidArgument, message, std::move(hint)) {}
};

// Where a job gets its model: a loaded one it borrows, or a checkpoint it loads (and frees when
// it ends).
struct ModelSource {
  const Model* model = nullptr;  // borrowed (must outlive the job); null: load `path`
  std::string path;              // checkpoint file or folder; named as "model" in the outputs
  std::string tokenizer;         // tokenizer file when loading; "": found beside the checkpoint
  std::string dtype = "f32";     // compute dtype when loading (LoadOptions::compute_dtype)
};

// The model of `source`: the borrowed one, or the checkpoint loaded into *owned.
const Model& resolve_model(const ModelSource& source, std::unique_ptr<Model>* owned);

// The prompt's token ids: with `chat`, the prompt is the user's message (after `system`'s, when
// given) in the model's chat template (Tokenizer::apply_chat_template), otherwise plain text with
// BOS first. Throws Error (not RequestError) for a tokenizer without a chat template.
std::vector<TokenId> encode_prompt(const Tokenizer& tokenizer, const std::string& prompt, bool chat,
                                   const std::string& system);

// RequestError for a negative thread count ("--threads must be >= 0, got -1") or one above
// max_threads() (4 x the usable cores; runtime.h).
void check_threads(int threads);
// RequestError for a tape budget below -1 (-1: the process's; see ExplainOptions::tape_budget).
void check_tape_budget(int64_t bytes);
// RequestError for a prompt that is not valid UTF-8 (naming the offset of the bad byte).
void check_prompt(const std::string& prompt);

}  // namespace candor::jobs
