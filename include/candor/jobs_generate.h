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
  // Generation uncertainty (candor/audit.h): per-token entropy, margin and log-probability, the
  // answer's mean and minimum log-probability, and the tokens flagged uncertain (entropy >=
  // uncertain_entropy nats or top-1 margin < uncertain_margin) in json["uncertainty"].
  bool uncertainty = false;
  double uncertain_entropy = 1.5, uncertain_margin = 0.1;
  // Self-consistency: `samples` more answers, seeded seed + 1 .. seed + samples, at
  // sample_temperature when the main answer is greedy (else at its own temperature); the
  // agreement and cluster entropy of their normalised answers. 0: none.
  int samples = 0;
  float sample_temperature = 1.0f;
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
