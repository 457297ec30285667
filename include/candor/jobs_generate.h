// The generate job: text from a prompt (greedy or sampled, streamed through
// GenerateOptions::on_token), returning the result and the object `candor generate --json`
// prints.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <string>

#include "candor/generate.h"
#include "candor/jobs_common.h"

namespace candor::jobs {

struct GenerateJobOptions {
  ModelSource model;
  std::string prompt;          // "" starts from BOS
  bool chat = false;           // wrap the prompt in the model's chat template
  std::string system;          // system message when `chat`
  GenerateOptions generation;  // max_new_tokens, sampling, seed; on_token streams
  int threads = 0;             // intra-op threads while the job runs (ThreadScope); 0: one per core
};

struct GenerateEvents {
  // The prompt is encoded: its text as the model reads it (without a leading BOS), before the
  // first generated token.
  std::function<void(const std::string& prompt_text)> prompt_ready;
};

struct GenerateJobResult {
  GenerateResult result;
  nlohmann::ordered_json json;  // what `candor generate --json` prints (timing included)
};

// Checks the options (RequestError), loads the model unless borrowed, encodes the prompt and
// generates.
GenerateJobResult run_generate(const GenerateJobOptions& options,
                               const GenerateEvents& events = {});

}  // namespace candor::jobs
