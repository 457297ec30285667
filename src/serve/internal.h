// Pieces of the service shared by its sources: the Prometheus metrics, the HTTP error that a
// handler throws, the admission gate, and the OpenAI request as parsed.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "candor/explain.h"
#include "candor/generate.h"
#include "candor/serve.h"
#include "candor/tokenizer.h"
#include "serve/metrics.h"

namespace candor::serve {

// ---------------------------------------------------------------------------------------------
// Errors: what a handler throws to answer {"error": {"message", "type", "code"}}.
// ---------------------------------------------------------------------------------------------

struct HttpError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";  // OpenAI's error types
  std::string code;                            // e.g. "invalid_json", "model_not_found"
  std::string param;                           // the request field at fault, "" none
  int retry_after_s = 0;                       // > 0: a Retry-After header
};
HttpError bad_request(const std::string& message, const std::string& param = {},
                      const std::string& code = "invalid_value");
nlohmann::json error_json(const HttpError& e);

// Metrics and Admission: serve/metrics.h (no libtorch: the ThreadSanitizer build compiles them).

// ---------------------------------------------------------------------------------------------
// OpenAI requests
// ---------------------------------------------------------------------------------------------

struct CandorAsk {                   // the request's `candor` object
  std::vector<std::string> methods;  // empty: the policy's method
  std::string granularity;           // "": the policy's
  bool evaluate = false;
};

struct CompletionParams {
  bool chat = false;
  std::string model;
  std::string prompt;                     // completions: the prompt text
  std::vector<TokenId> prompt_token_ids;  // completions: a prompt given as token ids
  bool prompt_is_ids = false;
  std::vector<ChatMessage> messages;  // chat
  int64_t max_tokens = 16;
  double temperature = 1.0;
  double top_p = 1.0;
  int64_t top_k = 0;
  uint64_t seed = 0;
  bool seed_given = false;
  std::vector<std::string> stop;
  int64_t logprobs = -1;       // completions: k alternatives (-1: no logprobs); chat: top_logprobs
  bool chat_logprobs = false;  // chat: logprobs: true
  bool echo = false;
  bool stream = false;
  std::string user;
  CandorAsk candor;
  nlohmann::json as_record() const;  // the parameters kept in the audit record
};

// Parses and checks the body of /v1/completions (chat = false) or /v1/chat/completions.
// Throws HttpError (400) naming the field at fault.
CompletionParams parse_completion(const nlohmann::json& body, bool chat, int64_t max_tokens_limit);

// Offsets in code points of each piece's start, as Python indexes the text: the number of
// UTF-8 lead bytes before it.
int64_t code_points(const std::string& bytes);

// The fallback transcript for a tokenizer without a chat template: "System: ...\n",
// "User: ...\n", "Assistant: ...\n" per message, then "Assistant:".
std::string plain_chat_transcript(const std::vector<ChatMessage>& messages);

}  // namespace candor::serve
