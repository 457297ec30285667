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

// ---------------------------------------------------------------------------------------------
// Metrics in the Prometheus text format (version 0.0.4). Thread-safe.
// ---------------------------------------------------------------------------------------------

class Metrics {
 public:
  using Labels = std::vector<std::pair<std::string, std::string>>;
  void count(const std::string& name, const Labels& labels, double by = 1);
  void observe(const std::string& name, const Labels& labels, double seconds);
  void gauge(const std::string& name, double value);
  // Every family with its HELP and TYPE lines.
  std::string render() const;

 private:
  struct Histogram {
    std::vector<uint64_t> buckets;  // cumulative at render time; per bucket here
    uint64_t count = 0;
    double sum = 0;
  };
  mutable std::mutex mu_;
  std::map<std::string, std::map<std::string, double>> counters_;       // name -> labels -> value
  std::map<std::string, std::map<std::string, Histogram>> histograms_;  // name -> labels -> h
  std::map<std::string, double> gauges_;
};

// ---------------------------------------------------------------------------------------------
// Admission: at most `parallel` requests use the model, at most `queue` wait for it.
// ---------------------------------------------------------------------------------------------

class Admission {
 public:
  Admission(int parallel, int queue) : parallel_(parallel), queue_(queue) {}
  // True when the caller may run (it must call leave()); false when the queue is full or the
  // wait passed `deadline`.
  bool enter(std::chrono::steady_clock::time_point deadline);
  void leave();
  int waiting() const;
  int running() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int parallel_, queue_;
  int running_ = 0, waiting_ = 0;
};

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
