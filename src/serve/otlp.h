// OpenTelemetry export of the service's requests: one GenAI span per completion, with one
// `gen_ai.evaluation.result` event per check, as OTLP/JSON over HTTP, sent off the request path
// (a bounded queue and one background sender). Attribute names follow the OpenTelemetry GenAI
// semantic conventions (docs/serve.md lists them).
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "candor/supervise.h"
#include "serve/internal.h"

namespace candor::serve {

// What one span says about one completion.
struct GenAiSpan {
  std::string trace_id;        // 32 lower-case hex digits
  std::string span_id;         // 16 lower-case hex digits
  std::string parent_span_id;  // "" for a root span
  int64_t start_unix_ns = 0, end_unix_ns = 0;
  std::string operation;    // "chat" | "text_completion" | "explain" | "evaluate" (async checks)
  std::string name;         // "" : "OPERATION MODEL"
  std::string model;        // the served id (request and response model)
  std::string response_id;  // "cmpl-..." / "chatcmpl-..." ("" : not exported)
  std::string finish_reason;  // "" : not exported
  bool with_request = true;   // the gen_ai.request.* and usage attributes (not for async checks)
  int64_t input_tokens = 0, output_tokens = 0;
  int64_t max_tokens = 0;
  double temperature = 1, top_p = 1;
  int64_t top_k = 0;
  uint64_t seed = 0;
  std::vector<std::string> stop;
  std::string server_address;
  int server_port = 0;
  // candor's own attributes
  std::string audit_id, decision, policy_hash, weights_hash;
  std::vector<std::string> reasons;
  int attempts = 1;                // answers sampled (1 + regenerations)
  double temperature_scaling = 0;  // > 0: the logits were divided by it
  std::vector<supervise::CheckResult> checks;
  std::string addendum_id;             // async checks: the record their results were appended as
  std::vector<std::string> methods;    // explain: the attribution methods
  // A request that failed, timed out or was blocked: span status ERROR with this message, and
  // the attribute error.type (a short class: the error code, "timeout", "blocked").
  std::string error_type, error_message;
  int http_status = 0;  // > 0: http.response.status_code
  // Message content, only when the policy allows it (export_content and log_content).
  bool with_content = false;
  nlohmann::json input_messages = nlohmann::json::array();  // [{role, content}]
  std::string output_text;
};

// The span in OTLP/JSON (an element of scopeSpans[].spans): ids as hex, times and 64-bit integers
// as decimal strings, kind INTERNAL (the model runs in this process).
nlohmann::json otlp_span_json(const GenAiSpan& span);
// An ExportTraceServiceRequest holding `spans` under one resource (service.name = candor) and
// one instrumentation scope (candor.serve).
nlohmann::json otlp_request_json(const std::vector<nlohmann::json>& spans);

// Reads a W3C `traceparent` header ("00-TRACEID-SPANID-FLAGS"); false (outputs untouched) when
// it is absent or malformed, or its ids are all zeros.
bool parse_traceparent(const std::string& header, std::string* trace_id, std::string* span_id);
// `n` random bytes as lower-case hex (never all zeros).
std::string random_trace_hex(size_t n_bytes);

// Where OTLP/HTTP spans go: "http://host:port[/prefix]" -> ("http://host:port",
// "/prefix/v1/traces"); a URL already ending in /v1/traces keeps its path. Throws
// Error(kInvalidArgument) naming the URL for anything else.
std::pair<std::string, std::string> otlp_endpoint(const std::string& url);

// The background sender. submit() never blocks on the network: a span that finds the queue full
// is dropped and counted. The sender POSTs batches of what is queued; a batch the collector does
// not accept (no answer within the timeout, or a status other than 2xx) is dropped and counted.
class OtlpExporter {
 public:
  // An https:// URL's certificate is verified against `ca_file` (PEM), or the system's trusted
  // authorities when it is "". Throws Error(kInvalidArgument) naming the file when it is not a
  // readable PEM file of certificates, or is given for an http:// URL.
  OtlpExporter(const std::string& url, size_t capacity, int timeout_ms, Metrics* metrics,
               std::function<void(const std::string&)> notice, const std::string& ca_file = "");
  ~OtlpExporter();  // stop()
  OtlpExporter(const OtlpExporter&) = delete;
  OtlpExporter& operator=(const OtlpExporter&) = delete;

  // Queues a span (otlp_span_json); false when it was dropped because the queue is full.
  bool submit(nlohmann::json span);
  // Sends what is queued and joins the sender: batches start only within one export timeout of
  // the call, and none once the collector has failed (the rest are dropped and counted as
  // "shutdown"), so stopping takes at most about two timeouts. Idempotent.
  void stop();

 private:
  void loop();
  bool post(const std::vector<nlohmann::json>& batch);

  std::string base_, path_;
  std::string ca_file_;
  size_t capacity_;
  int timeout_ms_;
  Metrics* metrics_;
  std::function<void(const std::string&)> notice_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<nlohmann::json> queue_;
  bool stopping_ = false;
  std::chrono::steady_clock::time_point drain_deadline_;  // set by stop()
  bool failing_ = false;  // the last POST failed (logged once until one succeeds)
  std::thread thread_;
};

}  // namespace candor::serve
