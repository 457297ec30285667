// The supervisor service: an OpenAI-compatible HTTP server (completions, chat completions, the
// legacy echo + logprobs scoring shape) that explains and checks every answer under a policy and
// answers only once the answer's audit record is committed. A thin adapter over the jobs: the
// same tokens, log-probabilities and attributions as the CLI. Endpoints and formats:
// docs/serve.md.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "candor/audit_log.h"
#include "candor/model.h"
#include "candor/supervise.h"

namespace candor::serve {

// ---------------------------------------------------------------------------------------------
// API keys
// ---------------------------------------------------------------------------------------------

// One key of the --api-keys file. The file holds one key per line, `ID ROLE SHA256HEX`
// (`#` starts a comment; blank lines are skipped): ROLE is `client` (completions, chat,
// explain, models) or `auditor` (the audit records, models); the key itself is never stored,
// only the hex SHA-256 of its bytes (`printf %s "$KEY" | sha256sum`).
struct ApiKey {
  std::string id;
  std::string role;    // "client" | "auditor"
  std::string sha256;  // 64 lower-case hex digits
};

// Reads an --api-keys file. Throws Error(kInvalidArgument) naming the file and line of a bad
// entry (wrong field count, unknown role, a hash that is not 64 hex digits, a repeated id),
// Error(kNotFound) when it cannot be read.
std::vector<ApiKey> load_api_keys(const std::string& path);

// The key among `keys` whose hash is the SHA-256 of `presented`, compared in constant time
// (every entry is compared, whatever matches); nullptr when none.
const ApiKey* find_api_key(const std::vector<ApiKey>& keys, const std::string& presented);

// Hex SHA-256 of `bytes` (OpenSSL).
std::string sha256_hex(const std::string& bytes);
// Hex SHA-256 over a model's weights as stored (names, layouts and bytes, in order; a quantized
// matrix's blocks, never dequantised): the weights hash of the audit records.
std::string weights_hash(const Model& model);

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

// What the server checks each answer with: the policy (limits, the explanation it makes) and
// the functions that run its checks. The CLI wraps a supervise::Supervisor; tests may give their
// own. A null `review` runs no checks (decision "allow").
struct Supervision {
  supervise::Policy policy;
  std::function<supervise::Review(const supervise::Exchange&)> review;
  // Checks declared async: run after the answer is sent, their results appended to the log as
  // an addendum record referring to the request's audit_id. Null: none.
  std::function<supervise::Review(const supervise::Exchange&)> review_async;
};

struct ServerOptions {
  std::string host = "127.0.0.1";  // without api keys only a loopback address is accepted
  int port = 8080;                 // 0: a free port, chosen when binding
  int parallel = 1;                // requests using the model at once, each with its own cache
  int queue = 0;                   // requests waiting for the model beyond `parallel` before
                                   // 429; <0: none wait; 0: 4 x parallel
  int threads = 0;                 // intra-op threads per request; 0: cores / parallel (>= 1)
  std::vector<ApiKey> api_keys;    // empty: no authentication (loopback only, every role)
  std::string tls_cert, tls_key;   // both given: HTTPS
  std::string model_id;            // the name clients give as `model` ("" : "candor")
  // One line per request (method, path, status, milliseconds, tokens, decision) and the
  // server's notices; the CLI writes them to stderr. Null: silent.
  std::function<void(const std::string& line)> log;
  // > 0: temperature scaling. The model given to set_model is served with every logit divided
  // by this (jobs::temperature_scaled): the sampled tokens, the log-probabilities returned, the
  // checks' entropies and margins and the explanations' targets all see the scaled logits, and
  // each audit record's parameters hold it as `temperature_scaling`. 0: the model's own logits.
  // `candor serve --temperature-scaling` reads the value `candor audit calibration
  // --save-temperature` saved beside the model (jobs::load_temperature).
  double temperature_scaling = 0;
  // Non-empty: every completion is also exported as an OpenTelemetry GenAI span, with one
  // `gen_ai.evaluation.result` event per check, as OTLP/JSON POSTed to URL/v1/traces (a URL that
  // already ends in /v1/traces is used as it is). The export runs on a background thread from a
  // bounded queue of `otlp_queue` spans: a slow or dead collector never delays or fails a
  // request; spans that do not fit or cannot be delivered are counted in /metrics
  // (candor_otlp_spans_dropped_total). docs/serve.md.
  std::string otlp_url;
  int otlp_queue = 1024;
  int otlp_timeout_ms = 2000;  // connect / read / write timeout of one export POST
  // An https:// collector's certificate is verified against this CA file (PEM) instead of the
  // system's trusted authorities ("" : the system's).
  std::string otlp_ca;
};

// The seed of a regenerated answer: attempt 0 is the request's seed; attempt k > 0 a seed derived
// from it (splitmix64 of seed + k), so a regenerated answer is reproducible from the request.
uint64_t regeneration_seed(uint64_t seed, int attempt);

// A running service. Thread-safe: bind, start and stop from one controlling thread; set_model
// and set_supervision from any.
class Server {
 public:
  // Throws Error(kInvalidArgument) for options that cannot work: a non-loopback host without
  // api keys, parallel < 1, a TLS certificate without its key.
  explicit Server(ServerOptions options);
  ~Server();  // stops and joins
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the listening socket; returns the port (the chosen one for port 0). Throws
  // Error(kInvalidArgument) naming the address when it cannot bind.
  int bind();
  // Serves on a background thread until stop(). /health answers 503 and the model endpoints 503
  // until set_model().
  void start();
  // Stops accepting, finishes the requests in flight and the async checks, and returns.
  void stop();
  // Blocks until the server has stopped.
  void wait();

  // The model served (borrowed: must outlive the server) and the audit log (shared). After this
  // call the service is ready.
  void set_model(const Model* model, std::shared_ptr<store::AuditLog> log,
                 std::string weights_hash);
  // Replaces the policy and checks atomically: requests that start afterwards see the new one.
  void set_supervision(std::shared_ptr<const Supervision> supervision);

  int port() const;
  std::string url() const;  // "http://127.0.0.1:PORT" (https with TLS)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace candor::serve
