// The HTTP service: routes, keys and roles, admission, and the completion flow (generate, score
// the prompt for echo, explain, review under the policy, commit the audit record, answer).
#include <httplib.h>

#include <atomic>
#include <deque>
#include <random>
#include <sstream>
#include <thread>

#include "candor/evaluate.h"
#include "candor/jobs.h"
#include "candor/jobs_temperature.h"
#include "candor/runtime.h"
#include "serve/decode_model.h"
#include "serve/internal.h"
#include "serve/otlp.h"

namespace candor::serve {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

int64_t unix_nanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string random_hex(size_t n) {
  static thread_local std::mt19937_64 rng(std::random_device{}() ^
                                          std::hash<std::thread::id>{}(std::this_thread::get_id()));
  static const char* digits = "0123456789abcdef";
  std::string s(n, '0');
  for (auto& c : s) c = digits[rng() & 15];
  return s;
}

// `s` with every byte that is not part of a valid UTF-8 character replaced by U+FFFD: a
// generated text can end inside a character (byte-fallback tokens), and the audit record and
// the JSON on the wire hold text.
std::string valid_utf8(const std::string& s) {
  return json::parse(json(s).dump(-1, ' ', false, json::error_handler_t::replace))
      .get<std::string>();
}
// The same for every string inside a JSON value.
json valid_utf8(const json& j) {
  return json::parse(j.dump(-1, ' ', false, json::error_handler_t::replace));
}

// JSON text for the wire: bytes that are not UTF-8 (a token can be part of a character) become
// U+FFFD instead of failing the dump.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

bool is_loopback(const std::string& host) {
  return host == "127.0.0.1" || host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

// The length of the longest prefix of `s` that ends on a UTF-8 character boundary, looking at
// the last 3 bytes only (a streamed piece must not split a character).
size_t utf8_safe_end(const std::string& s, size_t end) {
  for (size_t back = 1; back <= 3 && back <= end; ++back) {
    const unsigned char c = static_cast<unsigned char>(s[end - back]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: look further back
    size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return need > back ? end - back : end;
  }
  return end;
}

json checks_json(const supervise::Review& r) {
  json a = json::array();
  for (const auto& c : r.checks) a.push_back(c.to_json());
  return a;
}

// The audit record's summary of an explanation: method, target and the top features by
// absolute total score.
json explanation_summary(const std::vector<Attribution>& atts, int64_t top) {
  json methods = json::array();
  for (const Attribution& a : atts) {
    std::vector<double> total = a.total();
    std::vector<size_t> order(total.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](size_t x, size_t y) { return std::abs(total[x]) > std::abs(total[y]); });
    json feats = json::array();
    for (size_t i = 0; i < order.size() && static_cast<int64_t>(i) < top; ++i)
      feats.push_back({{"feature", a.features[order[i]].label}, {"score", total[order[i]]}});
    json m = {{"method", a.method},
              {"target_function", a.target_function},
              {"n_features", a.n_features()},
              {"top_features", feats}};
    if (a.extra.is_object() && a.extra.contains("quality")) m["quality"] = a.extra["quality"];
    methods.push_back(m);
  }
  return {{"methods", methods}};
}

HttpError http_error(int status, const std::string& message, const std::string& type,
                     const std::string& code) {
  HttpError e;
  e.status = status;
  e.message = message;
  e.type = type;
  e.code = code;
  return e;
}

// The method name of a spec ("occlusion:window=2" -> "occlusion").
std::string method_name(const std::string& spec) { return spec.substr(0, spec.find(':')); }

}  // namespace

// Who sent a request: the key's id and role.
struct Caller {
  std::string key_id;  // "" without keys
  std::string role;    // "client", "auditor", or "any" without keys
};

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

struct Server::Impl {
  ServerOptions opt;
  std::unique_ptr<httplib::Server> http;
  std::thread thread;
  int port = 0;
  bool bound = false, started = false, stopped = false;
  int threads_per_request = 1;

  std::atomic<bool> ready{false};
  mutable std::mutex state_mu;
  const Model* model = nullptr;
  std::shared_ptr<store::AuditLog> audit;
  std::string weights_hash;
  std::shared_ptr<const Supervision> supervision;
  // With temperature scaling: the served wrappers of the models given to set_model (kept until
  // the server goes, as requests in flight may hold one).
  std::vector<std::unique_ptr<Model>> scaled_models;
  // --parallel > 1: the decode steps of the requests in flight run as one batched forward.
  std::unique_ptr<DecodeScheduler> scheduler;

  Metrics metrics;
  std::unique_ptr<OtlpExporter> otlp;  // with --otlp
  std::unique_ptr<Admission> admission;

  // Async checks: run one at a time on their own thread, drained at stop.
  std::mutex async_mu;
  std::condition_variable async_cv;
  std::deque<std::function<void()>> async_jobs;
  bool async_stop = false;
  std::thread async_thread;

  std::shared_ptr<const Supervision> current() const {
    std::lock_guard<std::mutex> lock(state_mu);
    return supervision;
  }
  std::shared_ptr<store::AuditLog> log() const {
    std::lock_guard<std::mutex> lock(state_mu);
    return audit;
  }
  std::string model_id() const { return opt.model_id.empty() ? "candor" : opt.model_id; }
  void notice(const std::string& line) const {
    if (opt.log) opt.log(line);
  }

  Caller authorize(const httplib::Request& req, const std::string& role) const;
  // A client request's admission, in this order: 503 while the model loads, the key (401/403),
  // 413 for a body over the policy's limit. Returns the caller and the supervision in force,
  // which the request keeps to its end (a SIGHUP reload does not change it midway).
  std::pair<Caller, std::shared_ptr<const Supervision>> admit(const httplib::Request& req) const;
  void routes();
  void finish(const httplib::Request& req, httplib::Response& res, const std::string& endpoint,
              Clock::time_point t0, const std::string& extra);
  void send_error(httplib::Response& res, const HttpError& e) const;
  HttpError translate(const std::exception& e) const;
  // Runs body(&extra), answering an exception with its error JSON; on_error (if any) sees it.
  template <typename F>
  void guarded(const httplib::Request& req, httplib::Response& res, const std::string& endpoint,
               F&& body, const std::function<void(const HttpError&)>& on_error = nullptr);

  struct Completion;
  std::shared_ptr<Completion> prepare(const CompletionParams& p, const Caller& caller,
                                      const std::string& endpoint, Clock::time_point t0);
  void run(Completion& c, const std::function<bool(const std::string&)>& emit);
  json response_json(const Completion& c) const;
  json chunk_json(const Completion& c, const std::string& piece, bool first) const;
  json final_chunk_json(const Completion& c) const;
  void handle_completion(const httplib::Request& req, httplib::Response& res, bool chat);
  void handle_explain(const httplib::Request& req, httplib::Response& res);
  void handle_audit_list(const httplib::Request& req, httplib::Response& res);
  void handle_audit_get(const httplib::Request& req, httplib::Response& res);
  void enqueue_async(std::function<void()> job);
  // Regeneration: when the review asks for another sample and the policy allows one more,
  // records this attempt, runs the request again with the next seed, and returns true.
  bool resample(Completion& c, bool streaming);
  json attempt_json(const Completion& c) const;
  // A streamed request's `stream` object (the candor block; the record's parameters, with the
  // released text when `with_text`).
  json stream_json(const Completion& c, bool with_text) const;
  // The request as an OpenTelemetry GenAI span for the exporter (with --otlp). With `error`, or
  // when the request timed out or was blocked, the span's status is ERROR with error.type.
  void export_span(Completion& c, const HttpError* error = nullptr);
  // A completion that failed after admission, before or after prepare() (c null: before).
  void export_failed(bool chat, std::shared_ptr<Completion> c,
                     const std::shared_ptr<const Supervision>& sup, Clock::time_point t0,
                     const std::string& traceparent, const HttpError& error);
  // Async check results: a follow-up span in the request's trace, a child of its span.
  void export_async_span(const std::string& trace_id, const std::string& parent_span_id,
                         const std::string& audit_id, const store::AuditRecord* addendum,
                         const supervise::Review* review, const std::string& policy_hash,
                         const std::string& weights_hash, int64_t start_unix_ns,
                         const std::string& error);
};

// ---------------------------------------------------------------------------------------------
// Errors, keys, the request line
// ---------------------------------------------------------------------------------------------

void Server::Impl::send_error(httplib::Response& res, const HttpError& e) const {
  res.status = e.status;
  if (e.retry_after_s > 0) res.set_header("Retry-After", std::to_string(e.retry_after_s));
  if (e.status == 401) res.set_header("WWW-Authenticate", "Bearer");
  res.set_content(dump(error_json(e)), "application/json");
}

HttpError Server::Impl::translate(const std::exception& ex) const {
  HttpError e;
  e.message = ex.what();
  if (const auto* ce = dynamic_cast<const Error*>(&ex)) {
    if (!ce->hint().empty()) e.message += " (" + ce->hint() + ")";
    switch (ce->code()) {
      case ErrorCode::kInvalidArgument:
      case ErrorCode::kUnsupported:
        e.status = 400;
        e.code = "invalid_value";
        break;
      case ErrorCode::kNotFound:
        e.status = 404;
        e.code = "not_found";
        break;
      case ErrorCode::kResourceExhausted:
        e.status = 400;
        e.code = "context_length_exceeded";
        break;
      case ErrorCode::kCancelled:
        e.status = 503;
        e.type = "server_error";
        e.code = "cancelled";
        break;
      default:
        e.status = 500;
        e.type = "server_error";
        e.code = "internal_error";
    }
    return e;
  }
  e.status = 500;
  e.type = "server_error";
  e.code = "internal_error";
  return e;
}

Caller Server::Impl::authorize(const httplib::Request& req, const std::string& role) const {
  if (opt.api_keys.empty()) return {"", "any"};
  const std::string auth = req.get_header_value("Authorization");
  const std::string prefix = "Bearer ";
  if (auth.size() <= prefix.size() || auth.compare(0, prefix.size(), prefix) != 0) {
    HttpError e;
    e.status = 401;
    e.type = "authentication_error";
    e.code = "missing_api_key";
    e.message = "this server needs an API key: send 'Authorization: Bearer KEY'";
    throw e;
  }
  const ApiKey* k = find_api_key(opt.api_keys, auth.substr(prefix.size()));
  if (k == nullptr) {
    HttpError e;
    e.status = 401;
    e.type = "authentication_error";
    e.code = "invalid_api_key";
    e.message = "the API key is not valid";
    throw e;
  }
  if (!role.empty() && k->role != role) {
    HttpError e;
    e.status = 403;
    e.type = "permission_error";
    e.code = "wrong_role";
    e.message = "the key '" + k->id + "' has the role " + k->role + "; this endpoint needs " + role;
    throw e;
  }
  return {k->id, k->role};
}

void Server::Impl::finish(const httplib::Request& req, httplib::Response& res,
                          const std::string& endpoint, Clock::time_point t0,
                          const std::string& extra) {
  const double ms = ms_since(t0);
  if (res.status == -1) res.status = 200;  // httplib's "not set yet": a handler that succeeded
  metrics.count("candor_requests_total",
                {{"endpoint", endpoint}, {"status", std::to_string(res.status)}});
  metrics.observe("candor_request_duration_seconds", {{"endpoint", endpoint}}, ms / 1000);
  std::ostringstream line;
  line.setf(std::ios::fixed);
  line.precision(1);
  line << req.method << ' ' << req.path << ' ' << res.status << ' ' << ms << "ms" << extra;
  notice(line.str());
}

template <typename F>
void Server::Impl::guarded(const httplib::Request& req, httplib::Response& res,
                           const std::string& endpoint, F&& body,
                           const std::function<void(const HttpError&)>& on_error) {
  const auto t0 = Clock::now();
  std::string extra;
  try {
    body(&extra);
  } catch (const HttpError& e) {
    send_error(res, e);
    if (on_error) on_error(e);
  } catch (const std::exception& e) {
    const HttpError he = translate(e);
    send_error(res, he);
    if (on_error) on_error(he);
  }
  finish(req, res, endpoint, t0, extra);
}

// ---------------------------------------------------------------------------------------------
// Completions
// ---------------------------------------------------------------------------------------------

struct Server::Impl::Completion {
  CompletionParams p;
  Caller caller;
  std::string endpoint;
  std::string id;  // "cmpl-..." / "chatcmpl-..."
  int64_t created = 0;
  Clock::time_point t0;
  Clock::time_point deadline;
  std::shared_ptr<const Supervision> sup;
  const Model* model = nullptr;
  std::shared_ptr<store::AuditLog> log;
  std::string weights_hash;
  DecodeScheduler* scheduler = nullptr;  // null: decode alone

  std::vector<TokenId> ids;  // the prompt as fed, BOS included
  std::string prompt_text;   // what the model read (the chat transcript for chat)
  std::vector<std::unique_ptr<Explainer>> explainers;
  Granularity granularity = Granularity::kWord;
  bool explain = false;
  bool evaluate = false;

  GenerateResult gen;
  std::string answer;  // cut at a stop sequence
  std::string finish_reason = "length";
  bool time_limited = false;
  double ttft_ms = 0;
  std::vector<float> prompt_logprobs;                              // per prompt token after BOS
  std::vector<std::vector<std::pair<TokenId, float>>> prompt_top;  // their alternatives
  std::vector<Attribution> attributions;
  ExplainRequest explain_request;  // what `attributions` answer
  json explanation = nullptr;
  std::string explanation_note;
  supervise::Review review;
  std::string content;  // what the client gets: the answer, or nothing when blocked
  std::string audit_id;
  json timings = json::object();

  int attempt = 0;                // 0: the first sample; k: the k-th regeneration
  json attempts = json::array();  // the earlier attempts (attempt_json), when regenerated
  std::string regeneration_note;  // why a regenerate decision did not sample again
  std::string traceparent;        // the request's W3C trace context header, if any
  std::string trace_id;           // the exported span's trace id (with --otlp)
  std::string span_id;            // and its span id
  // Streamed requests: what the policy lets out before the review (docs/serve.md#guarded-streaming).
  std::unique_ptr<supervise::StreamGuard> guard;
  std::string released;           // what the client received of the answer (streams)
  bool guard_stopped = false;     // a blocking check stopped the stream mid-generation
};

std::shared_ptr<Server::Impl::Completion> Server::Impl::prepare(const CompletionParams& p,
                                                                const Caller& caller,
                                                                const std::string& endpoint,
                                                                Clock::time_point t0) {
  auto c = std::make_shared<Completion>();
  c->p = p;
  c->caller = caller;
  c->endpoint = endpoint;
  c->id = std::string(p.chat ? "chatcmpl-" : "cmpl-") + random_hex(24);
  c->created = unix_seconds();
  c->t0 = t0;
  {
    std::lock_guard<std::mutex> lock(state_mu);
    c->sup = supervision;
    c->model = model;
    c->log = audit;
    c->weights_hash = weights_hash;
    c->scheduler = scheduler.get();
  }
  const supervise::Policy& pol = c->sup->policy;
  c->deadline =
      t0 + std::chrono::microseconds(static_cast<int64_t>(pol.limits.request_timeout_ms * 1000));
  if (!p.model.empty() && p.model != model_id()) {
    HttpError e;
    e.status = 404;
    e.code = "model_not_found";
    e.param = "model";
    e.message = "the model '" + p.model + "' is not served here; this server serves '" +
                model_id() + "' (GET /v1/models)";
    throw e;
  }
  if (!p.chat && p.max_tokens == 0 && p.stream)
    throw bad_request("'max_tokens': 0 scores the prompt and cannot stream", "stream");

  const Model& m = *c->model;
  const Tokenizer& tok = m.tokenizer();
  if (p.chat) {
    for (const auto& msg : p.messages) jobs::check_prompt(msg.content);
    std::string text;
    if (!tok.chat_family().empty()) {
      text = tok.apply_chat_template(p.messages, true);
      c->ids = tok.encode(text, false, false);
    } else {
      text = plain_chat_transcript(p.messages);
      c->ids = tok.encode(text, true, false);
    }
    c->prompt_text = text;
  } else if (p.prompt_is_ids) {
    for (TokenId t : p.prompt_token_ids)
      if (t < 0 || t >= tok.vocab_size())
        throw bad_request("'prompt' token id " + std::to_string(t) +
                              " is not in the vocabulary (0.." +
                              std::to_string(tok.vocab_size() - 1) + ")",
                          "prompt");
    c->ids = p.prompt_token_ids;
    if (c->ids.empty() || c->ids[0] != tok.bos_id()) c->ids.insert(c->ids.begin(), tok.bos_id());
    c->prompt_text = tok.decode(std::vector<TokenId>(c->ids.begin() + 1, c->ids.end()));
  } else {
    try {
      jobs::check_prompt(p.prompt);
    } catch (const Error& e) {
      throw bad_request(std::string("'prompt': ") + e.what(), "prompt", "invalid_utf8");
    }
    c->ids = jobs::encode_prompt(tok, p.prompt, false, "");
    c->prompt_text = p.prompt;
  }
  const int64_t n_prompt = static_cast<int64_t>(c->ids.size());
  if (n_prompt > pol.limits.max_prompt_tokens)
    throw bad_request("the prompt is " + std::to_string(n_prompt) + " tokens, more than the " +
                          std::to_string(pol.limits.max_prompt_tokens) + " the policy allows",
                      p.chat ? "messages" : "prompt", "prompt_too_long");
  if (n_prompt + (p.max_tokens > 0 ? 1 : 0) > m.config().max_seq_len)
    throw bad_request("the prompt is " + std::to_string(n_prompt) +
                          " tokens; the model's context holds " +
                          std::to_string(m.config().max_seq_len),
                      p.chat ? "messages" : "prompt", "context_length_exceeded");

  // The explanation: the policy's method, or what the request asks within the policy.
  const supervise::ExplainPolicy& ep = pol.explain;
  std::vector<std::string> specs = p.candor.methods;
  if (specs.empty()) {
    specs = {ep.method};
  } else {
    if (static_cast<int64_t>(specs.size()) > ep.max_methods)
      throw bad_request("'candor.methods' asks for " + std::to_string(specs.size()) +
                            " methods; the policy allows " + std::to_string(ep.max_methods),
                        "candor.methods", "policy_limit");
    for (const auto& s : specs) {
      bool ok = method_name(s) == method_name(ep.method);
      for (const auto& a : ep.allowed_methods) ok = ok || method_name(a) == method_name(s);
      if (!ok) {
        std::string allowed = method_name(ep.method);
        for (const auto& a : ep.allowed_methods) allowed += ", " + method_name(a);
        throw bad_request(
            "'candor.methods': the policy does not allow '" + s + "' (allowed: " + allowed + ")",
            "candor.methods", "policy_limit");
      }
    }
  }
  c->explain = ep.enabled || !p.candor.methods.empty();
  c->evaluate = ep.evaluate || p.candor.evaluate;
  if (c->explain) {
    for (const auto& s : specs) {
      try {
        c->explainers.push_back(make_explainer(s));
      } catch (const Error& e) {
        throw bad_request(std::string("'candor.methods': ") + e.what(), "candor.methods");
      }
    }
    try {
      c->granularity =
          parse_granularity(p.candor.granularity.empty() ? ep.granularity : p.candor.granularity);
    } catch (const Error& e) {
      throw bad_request(e.what(), "candor.granularity");
    }
  }
  return c;
}

// Generates (streaming each safe piece through `emit`, which returns false when the client has
// gone), scores the prompt for echo, explains, reviews and commits the audit record.
void Server::Impl::run(Completion& c, const std::function<bool(const std::string&)>& emit) {
  const CompletionParams& p = c.p;
  const supervise::Policy& pol = c.sup->policy;
  const Model& m = *c.model;
  ThreadScope threads(threads_per_request);

  // --- generation ---
  size_t max_stop = 0;
  for (const auto& s : p.stop) max_stop = std::max(max_stop, s.size());
  size_t emitted = 0;
  size_t cut = std::string::npos;  // where a stop sequence begins in the text
  bool client_gone = false;
  std::string text;
  supervise::StreamGuard* guard = emit ? c.guard.get() : nullptr;
  // Sends a piece of the answer through the guard (when the policy needs one); false: stop
  // generating (the client has gone, or a blocking check matched).
  auto release = [&](const std::string& piece) {
    const std::string out = guard ? guard->push(piece) : piece;
    if (!out.empty() && !emit(out)) {
      client_gone = true;
      return false;
    }
    if (guard && guard->blocked()) {
      c.guard_stopped = true;
      return false;
    }
    return true;
  };
  if (p.max_tokens > 0) {
    GenerateOptions g;
    g.max_new_tokens = p.max_tokens;
    g.temperature = static_cast<float>(p.temperature);
    g.top_p = static_cast<float>(p.top_p);
    g.top_k = p.top_k;
    g.seed = regeneration_seed(p.seed, c.attempt);
    g.token_stats = true;
    g.top_logprobs = std::max<int64_t>(0, p.logprobs);
    const auto t_gen = Clock::now();
    g.on_token = [&](TokenId, const std::string& piece) {
      if (text.empty() && c.ttft_ms == 0) c.ttft_ms = ms_since(c.t0);
      const size_t before = text.size();
      text += piece;
      for (const auto& s : p.stop) {
        const size_t from = before >= s.size() ? before - s.size() + 1 : 0;
        const size_t at = text.find(s, from);
        if (at != std::string::npos && at < cut) cut = at;
      }
      if (cut != std::string::npos) return false;
      if (emit) {
        // Hold back what could begin a stop sequence, and a character's partial bytes.
        size_t safe = text.size() > max_stop ? text.size() - (max_stop > 0 ? max_stop - 1 : 0) : 0;
        if (max_stop == 0) safe = text.size();
        safe = utf8_safe_end(text, safe);
        if (safe > emitted) {
          const std::string piece = text.substr(emitted, safe - emitted);
          emitted = safe;
          if (!release(piece)) return false;
        }
      }
      if (Clock::now() > c.deadline) {
        c.time_limited = true;
        return false;
      }
      return true;
    };
    try {
      if (c.scheduler != nullptr) {
        ScheduledSource batched(*c.scheduler);
        c.gen = generate(m, c.ids, g, batched);
      } else {
        c.gen = generate(m, c.ids, g);
      }
    } catch (const Error& e) {
      if (e.code() == ErrorCode::kInvalidArgument) throw bad_request(e.what());
      throw;
    }
    if (c.ttft_ms == 0) c.ttft_ms = ms_since(c.t0);
    c.timings["generate_ms"] = ms_since(t_gen);
    c.answer = cut == std::string::npos ? c.gen.text : c.gen.text.substr(0, cut);
    if (cut != std::string::npos || c.gen.stop_reason == "stop_token") c.finish_reason = "stop";
    if (client_gone) c.finish_reason = "cancelled";
    if (emit && !client_gone && !c.guard_stopped) {
      bool more = true;
      if (c.answer.size() > emitted) {
        more = release(c.answer.substr(emitted));
        emitted = c.answer.size();
      }
      if (more && guard) {
        const std::string rest = guard->finish();
        if (!rest.empty() && !emit(rest)) client_gone = true;
        if (guard->blocked()) c.guard_stopped = true;
      }
    }
    const size_t n = c.gen.generated_ids.size();
    metrics.count("candor_tokens_generated_total", {}, static_cast<double>(n));
    metrics.observe("candor_time_to_first_token_seconds", {}, c.ttft_ms / 1000);
    if (n > 1)
      metrics.observe("candor_time_per_output_token_seconds", {}, c.gen.decode_ms / (n - 1) / 1000);
  } else {
    c.gen.prompt_ids = c.ids;
    c.finish_reason = "length";
  }
  metrics.count("candor_prompt_tokens_total", {}, static_cast<double>(c.ids.size()));

  // --- the prompt's own log-probabilities (echo + logprobs, and max_tokens 0) ---
  if (!p.chat && p.echo && (p.logprobs >= 0 || p.max_tokens == 0) && c.ids.size() > 1 &&
      c.prompt_logprobs.empty()) {
    const auto t_score = Clock::now();
    at::NoGradGuard no_grad;
    std::vector<int64_t> v(c.ids.begin(), c.ids.end());
    at::Tensor t = at::tensor(v, at::kLong).view({1, static_cast<int64_t>(v.size())});
    at::Tensor lsm = at::log_softmax(m.forward_tokens(t).to(at::kFloat), -1)[0];  // [seq, vocab]
    const int64_t k = std::max<int64_t>(0, p.logprobs);
    at::Tensor top_v, top_i;
    if (k > 0) std::tie(top_v, top_i) = lsm.topk(k, -1);
    for (size_t i = 1; i < c.ids.size(); ++i) {
      c.prompt_logprobs.push_back(lsm[i - 1][c.ids[i]].item<float>());
      std::vector<std::pair<TokenId, float>> alts;
      for (int64_t j = 0; j < k; ++j)
        alts.emplace_back(static_cast<TokenId>(top_i[i - 1][j].item<int64_t>()),
                          top_v[i - 1][j].item<float>());
      c.prompt_top.push_back(alts);
    }
    c.timings["score_prompt_ms"] = ms_since(t_score);
  }

  // --- the explanation ---
  if (c.explain && !c.gen.generated_ids.empty() && !client_gone) {
    const auto t_ex = Clock::now();
    ExplainRequest& req = c.explain_request;
    req.input_ids = c.ids;
    req.target.span = c.gen.generated_ids;
    req.granularity = c.granularity;
    ExplainContext ctx;
    const auto deadline = c.deadline;
    ctx.progress = [deadline](double) { return Clock::now() <= deadline; };
    try {
      for (const auto& ex : c.explainers) c.attributions.push_back(ex->explain(m, req, ctx));
      if (c.evaluate) {
        std::vector<const Explainer*> ptrs;
        for (const auto& ex : c.explainers) ptrs.push_back(ex.get());
        attach_quality(m, req, ptrs, c.attributions);
      }
      ReportContext rc;
      rc.model = model_id();
      rc.prompt = c.prompt_text;
      rc.generated_text = c.gen.text;
      rc.target_description = std::string(target_function_name(req.target.function)) +
                              " of each of the " + std::to_string(req.target.span.size()) +
                              " generated tokens";
      c.explanation = jobs::explain_envelope(rc, c.attributions);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kCancelled) throw;
      c.time_limited = true;
      c.explanation_note = "the explanation was cut off by the policy's time limit";
      c.attributions.clear();
    }
    const double ms = ms_since(t_ex);
    c.timings["explain_ms"] = ms;
    metrics.observe("candor_explanation_duration_seconds", {}, ms / 1000);
  } else if (c.explain) {
    c.explanation_note =
        c.gen.generated_ids.empty() ? "nothing was generated to explain" : "the client went away";
  }

  // --- the checks ---
  supervise::Exchange ex;
  ex.model = &m;
  ex.prompt_ids = c.ids;
  ex.answer_ids = c.gen.generated_ids;
  ex.prompt = c.prompt_text;
  ex.answer = c.answer;
  ex.token_stats = c.gen.token_stats;
  ex.explanation = c.attributions.empty() ? nullptr : &c.attributions[0];
  ex.explain_request = c.attributions.empty() ? nullptr : &c.explain_request;
  ex.elapsed_ms = ms_since(c.t0);
  const auto t_checks = Clock::now();
  if (c.sup->review) c.review = c.sup->review(ex);
  c.timings["checks_ms"] = ms_since(t_checks);
  for (const auto& r : c.review.checks) {
    metrics.observe("candor_check_duration_seconds", {{"check", r.name}}, r.ms / 1000);
    metrics.count("candor_check_outcomes_total", {{"check", r.name}, {"outcome", r.outcome}});
  }
  // A buffered stream has released nothing yet, so it may be sampled again.
  const bool buffered =
      c.guard && c.guard->plan().mode == supervise::StreamMode::kBuffered;
  if (resample(c, emit != nullptr && !buffered)) return;  // a later attempt answers (recorded)
  if (c.guard_stopped && c.review.decision != "block") {
    // The guard judged the streamed prefix as the review judges the answer, so this does not
    // happen; should it, what stopped the stream still blocks it.
    c.review.decision = "block";
    c.review.reasons.push_back("stream: " + c.guard->block_reason() + " -> block");
  }
  if (c.time_limited && c.review.decision == "allow") {
    c.review.reasons.push_back("the request reached the policy's time limit (" +
                               std::to_string(static_cast<int64_t>(pol.limits.request_timeout_ms)) +
                               " ms)");
  }
  metrics.count("candor_decisions_total", {{"decision", c.review.decision}});
  c.content = c.answer;
  if (c.review.decision == "block") {
    c.content.clear();
    c.finish_reason = "content_filter";
  } else if (c.review.redact) {
    c.content = c.review.redacted_answer;
  }
  if (c.guard) {
    // Live and windowed streams released text as it passed; a buffered one releases the
    // decided answer after the record is committed (handle_completion).
    c.released = c.guard->plan().mode == supervise::StreamMode::kBuffered ? c.content
                                                                          : c.guard->released();
  }

  // --- the audit record: committed before the answer is sent ---
  store::AuditRecord rec;
  rec.endpoint = c.endpoint;
  rec.key_id = c.caller.key_id;
  rec.user = p.user;
  rec.model_id = model_id();
  rec.weights_hash = c.weights_hash;
  rec.policy_hash = pol.hash;
  rec.parameters = p.as_record();
  rec.parameters["prompt_tokens"] = c.ids.size();
  rec.parameters["completion_tokens"] = c.gen.generated_ids.size();
  rec.parameters["finish_reason"] = c.finish_reason;
  if (opt.temperature_scaling > 0) rec.parameters["temperature_scaling"] = opt.temperature_scaling;
  if (c.guard) rec.parameters["stream"] = stream_json(c, pol.log_content);
  if (!c.attempts.empty() || !c.regeneration_note.empty()) {
    json all = c.attempts;
    all.push_back(attempt_json(c));
    rec.parameters["regeneration"] = {{"attempts", valid_utf8(all)},
                                      {"max_regenerations", pol.limits.max_regenerations}};
    if (!c.regeneration_note.empty()) rec.parameters["regeneration"]["note"] = c.regeneration_note;
  }
  if (pol.log_content) {
    rec.prompt = valid_utf8(c.prompt_text);
    if (p.chat) {
      json msgs = json::array();
      for (const auto& msg : p.messages)
        msgs.push_back({{"role", msg.role}, {"content", msg.content}});
      rec.prompt = dump(msgs);
    }
    rec.answer = valid_utf8(c.answer);
  }
  rec.explanation = c.attributions.empty()
                        ? json::object()
                        : valid_utf8(explanation_summary(c.attributions, pol.explain.top_features));
  rec.checks = valid_utf8(checks_json(c.review));
  rec.decision = c.review.decision;
  rec.reasons = valid_utf8(json(c.review.reasons));
  c.timings["ttft_ms"] = c.ttft_ms;
  c.timings["before_audit_ms"] = ms_since(c.t0);
  rec.timings = c.timings;
  const auto t_audit = Clock::now();
  try {
    rec = c.log->append(std::move(rec));
  } catch (const Error& e) {
    HttpError he;
    if (e.code() == ErrorCode::kResourceExhausted) {
      he.status = 429;
      he.type = "rate_limit_error";
      he.code = "audit_queue_full";
      he.retry_after_s = 1;
      he.message = "the audit log's write queue is full; retry shortly";
    } else {
      he.status = 500;
      he.type = "server_error";
      he.code = "audit_write_failed";
      he.message = std::string("the audit record could not be committed: ") + e.what();
    }
    throw he;
  }
  const double audit_ms = ms_since(t_audit);
  metrics.observe("candor_audit_write_duration_seconds", {}, audit_ms / 1000);
  c.timings["audit_ms"] = audit_ms;
  c.audit_id = rec.id;
  if (otlp) export_span(c);

  // --- async checks: appended to the same record later ---
  if (c.sup->review_async) {
    auto sup = c.sup;
    auto log = c.log;
    auto atts = std::make_shared<std::vector<Attribution>>(c.attributions);
    auto exreq = std::make_shared<ExplainRequest>(c.explain_request);
    auto exc = std::make_shared<supervise::Exchange>(ex);
    const std::string audit_id = c.audit_id;
    store::AuditRecord base;
    base.kind = "addendum";
    base.refers_to = audit_id;
    base.endpoint = c.endpoint;
    base.key_id = c.caller.key_id;
    base.user = p.user;
    base.model_id = model_id();
    base.weights_hash = c.weights_hash;
    base.policy_hash = pol.hash;
    const std::string trace_id = c.trace_id, span_id = c.span_id;
    enqueue_async([this, sup, log, atts, exreq, exc, base, trace_id, span_id,
                   audit_id]() mutable {
      const int64_t start_ns = unix_nanos();
      const std::string policy_hash = base.policy_hash, wh = base.weights_hash;
      try {
        exc->explanation = atts->empty() ? nullptr : &(*atts)[0];
        exc->explain_request = atts->empty() ? nullptr : exreq.get();
        supervise::Review r = sup->review_async(*exc);
        base.checks = valid_utf8(checks_json(r));
        base.decision = r.decision;
        base.reasons = valid_utf8(json(r.reasons));
        const store::AuditRecord added = log->append(std::move(base));
        if (otlp && !trace_id.empty())
          export_async_span(trace_id, span_id, audit_id, &added, &r, policy_hash, wh, start_ns,
                            "");
      } catch (const std::exception& e) {
        if (otlp && !trace_id.empty())
          export_async_span(trace_id, span_id, audit_id, nullptr, nullptr, policy_hash, wh,
                            start_ns, e.what());
        throw;
      }
    });
  }
}

json Server::Impl::response_json(const Completion& c) const {
  const CompletionParams& p = c.p;
  const Tokenizer& tok = c.model->tokenizer();
  const size_t n_gen = c.gen.generated_ids.size();
  json usage = {{"prompt_tokens", c.ids.size()},
                {"completion_tokens", n_gen},
                {"total_tokens", c.ids.size() + n_gen}};
  json logprobs = nullptr;
  const bool blocked = c.review.decision == "block";
  if (!p.chat && p.logprobs >= 0 && !blocked) {
    json tokens = json::array(), lps = json::array(), tops = json::array(), offs = json::array();
    int64_t offset = 0;  // in code points from the start of the prompt text
    auto add = [&](TokenId prev, TokenId id, float lp,
                   const std::vector<std::pair<TokenId, float>>& alts) {
      const std::string piece = tok.decode_piece(prev, id);
      tokens.push_back(piece);
      lps.push_back(lp);
      json t = json::object();
      for (const auto& [a, alp] : alts) {
        const std::string ap = tok.decode_piece(prev, a);
        if (!t.contains(ap)) t[ap] = alp;
      }
      tops.push_back(p.logprobs > 0 ? t : json(nullptr));
      offs.push_back(offset);
      offset += code_points(piece);
    };
    TokenId prev = c.ids.empty() ? tok.bos_id() : c.ids[0];
    for (size_t i = 1; i < c.ids.size(); ++i) {
      const TokenId id = c.ids[i];
      if (p.echo && i - 1 < c.prompt_logprobs.size()) {
        add(prev, id, c.prompt_logprobs[i - 1], c.prompt_top[i - 1]);
      } else {
        offset += code_points(tok.decode_piece(prev, id));
      }
      prev = id;
    }
    for (size_t i = 0; i < n_gen; ++i) {
      std::vector<std::pair<TokenId, float>> alts;
      if (i < c.gen.token_stats.size()) alts = c.gen.token_stats[i].top;
      add(prev, c.gen.generated_ids[i], c.gen.logprobs[i], alts);
      prev = c.gen.generated_ids[i];
    }
    logprobs = {
        {"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offs}};
  }
  json chat_logprobs = nullptr;
  if (p.chat && p.chat_logprobs && !blocked) {
    json content = json::array();
    TokenId prev = c.ids.empty() ? tok.bos_id() : c.ids.back();
    auto bytes_of = [](const std::string& s) {
      json b = json::array();
      for (unsigned char ch : s) b.push_back(static_cast<int>(ch));
      return b;
    };
    for (size_t i = 0; i < n_gen; ++i) {
      const TokenId id = c.gen.generated_ids[i];
      const std::string piece = tok.decode_piece(prev, id);
      json tops = json::array();
      if (i < c.gen.token_stats.size())
        for (const auto& [a, alp] : c.gen.token_stats[i].top) {
          const std::string ap = tok.decode_piece(prev, a);
          tops.push_back({{"token", ap}, {"logprob", alp}, {"bytes", bytes_of(ap)}});
        }
      content.push_back({{"token", piece},
                         {"logprob", c.gen.logprobs[i]},
                         {"bytes", bytes_of(piece)},
                         {"top_logprobs", tops}});
      prev = id;
    }
    chat_logprobs = {{"content", content}};
  }
  json choice;
  if (p.chat) {
    choice = {{"index", 0},
              {"message", {{"role", "assistant"}, {"content", c.content}}},
              {"logprobs", chat_logprobs},
              {"finish_reason", c.finish_reason}};
  } else {
    choice = {{"index", 0},
              {"text", (p.echo ? c.prompt_text : std::string()) + c.content},
              {"logprobs", logprobs},
              {"finish_reason", c.finish_reason}};
  }
  json candor = {{"explanation", c.explanation},
                 {"checks", checks_json(c.review)},
                 {"decision", c.review.decision},
                 {"reasons", c.review.reasons},
                 {"audit_id", c.audit_id},
                 {"policy_hash", c.sup->policy.hash},
                 {"seed", c.p.seed},
                 {"timings", c.timings}};
  if (!c.explanation_note.empty()) candor["explanation_note"] = c.explanation_note;
  if (!c.attempts.empty() || !c.regeneration_note.empty()) {
    json all = c.attempts;
    all.push_back(attempt_json(c));
    for (json& a : all) a.erase("answer");  // what the client may see is the final answer only
    candor["attempts"] = all;
    if (!c.regeneration_note.empty()) candor["regeneration_note"] = c.regeneration_note;
  }
  if (opt.temperature_scaling > 0) candor["temperature_scaling"] = opt.temperature_scaling;
  if (!c.trace_id.empty()) candor["trace_id"] = c.trace_id;
  if (c.time_limited) candor["time_limited"] = true;
  if (c.guard) candor["stream"] = stream_json(c, false);
  return {{"id", c.id},
          {"object", p.chat ? "chat.completion" : "text_completion"},
          {"created", c.created},
          {"model", model_id()},
          {"choices", json::array({choice})},
          {"usage", usage},
          {"candor", candor}};
}

json Server::Impl::chunk_json(const Completion& c, const std::string& piece, bool first) const {
  json choice;
  if (c.p.chat) {
    json delta = {{"content", piece}};
    if (first) delta["role"] = "assistant";
    choice = {{"index", 0}, {"delta", delta}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
  } else {
    choice = {{"index", 0}, {"text", piece}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
  }
  return {{"id", c.id},
          {"object", c.p.chat ? "chat.completion.chunk" : "text_completion"},
          {"created", c.created},
          {"model", model_id()},
          {"choices", json::array({choice})}};
}

json Server::Impl::final_chunk_json(const Completion& c) const {
  json full = response_json(c);
  json chunk = chunk_json(c, "", false);
  json& choice = chunk["choices"][0];
  if (c.p.chat) choice["delta"] = json::object();
  choice["finish_reason"] = c.finish_reason;
  chunk["usage"] = full["usage"];
  chunk["candor"] = full["candor"];
  return chunk;
}

std::pair<Caller, std::shared_ptr<const Supervision>> Server::Impl::admit(
    const httplib::Request& req) const {
  if (!ready) {
    HttpError e;
    e.status = 503;
    e.type = "server_error";
    e.code = "loading";
    e.message = "the model is still loading";
    e.retry_after_s = 1;
    throw e;
  }
  Caller caller = authorize(req, "client");
  auto sup = current();
  if (static_cast<int64_t>(req.body.size()) > sup->policy.limits.max_body_bytes) {
    HttpError e;
    e.status = 413;
    e.code = "body_too_large";
    e.message = "the request body is " + std::to_string(req.body.size()) +
                " bytes, more than the " + std::to_string(sup->policy.limits.max_body_bytes) +
                " the policy allows";
    throw e;
  }
  return {std::move(caller), std::move(sup)};
}

void Server::Impl::handle_completion(const httplib::Request& req, httplib::Response& res,
                                     bool chat) {
  const std::string endpoint = chat ? "/v1/chat/completions" : "/v1/completions";
  const auto t0 = Clock::now();
  std::string extra;
  bool streaming = false;
  // For the span of a request that fails after admission (with --otlp).
  std::shared_ptr<const Supervision> admitted_sup;
  std::shared_ptr<Completion> prepared;
  try {
    auto admitted = admit(req);
    const Caller caller = std::move(admitted.first);
    auto sup = std::move(admitted.second);
    admitted_sup = sup;
    json body;
    try {
      body = json::parse(req.body);
    } catch (const json::exception& e) {
      throw bad_request(std::string("the body is not valid JSON: ") + e.what(), "", "invalid_json");
    }
    CompletionParams p = parse_completion(body, chat, sup->policy.limits.max_tokens);
    if (!p.seed_given) p.seed = std::random_device{}();
    auto c = prepare(p, caller, endpoint, t0);
    c->traceparent = req.get_header_value("traceparent");
    prepared = c;
    // Admission: a slot for the model, or 429 when the queue is full.
    if (!admission->enter(c->deadline)) {
      HttpError e;
      e.status = 429;
      e.type = "rate_limit_error";
      e.code = "too_many_requests";
      e.retry_after_s = 1;
      e.message = "all " + std::to_string(opt.parallel) + " slots are busy and the queue is full";
      throw e;
    }
    metrics.gauge("candor_queue_depth", admission->waiting());
    metrics.gauge("candor_requests_in_flight", admission->running());
    // The slot is held until the response is written (a stream's provider runs after this
    // handler returns), then released by the last owner.
    struct Slot {
      explicit Slot(Admission* admission) : a(admission) {}
      Slot(const Slot&) = delete;
      Slot& operator=(const Slot&) = delete;
      ~Slot() { a->leave(); }
      Admission* a;
    };
    auto slot = std::make_shared<Slot>(admission.get());
    if (!p.stream) {
      run(*c, nullptr);
      res.set_content(dump(response_json(*c)), "application/json");
      extra = " tokens=" + std::to_string(c->gen.generated_ids.size()) +
              " decision=" + c->review.decision + " audit=" + c->audit_id;
    } else {
      streaming = true;
      c->guard = std::make_unique<supervise::StreamGuard>(c->sup->policy);
      res.set_header("Cache-Control", "no-cache");
      res.set_chunked_content_provider(
          "text/event-stream", [this, c, slot, &req](size_t, httplib::DataSink& sink) {
            httplib::Response status;  // for the request line only
            status.status = 200;
            bool first = true;
            auto send = [&](const json& j) {
              const std::string ev = "data: " + dump(j) + "\n\n";
              return sink.write(ev.data(), ev.size());
            };
            std::string extra;
            try {
              run(*c, [&](const std::string& piece) {
                const bool ok = send(chunk_json(*c, piece, first));
                first = false;
                return ok;
              });
              // A buffered stream: the decided answer, now that its record is committed.
              if (c->guard->plan().mode == supervise::StreamMode::kBuffered &&
                  !c->released.empty())
                send(chunk_json(*c, c->released, first));
              send(final_chunk_json(*c));
              extra = " tokens=" + std::to_string(c->gen.generated_ids.size()) +
                      " decision=" + c->review.decision + " audit=" + c->audit_id + " stream";
            } catch (const HttpError& e) {
              send(error_json(e));
              status.status = e.status;
              if (otlp && c->span_id.empty()) export_span(*c, &e);
            } catch (const std::exception& e) {
              HttpError he = translate(e);
              send(error_json(he));
              status.status = he.status;
              if (otlp && c->span_id.empty()) export_span(*c, &he);
            }
            const std::string done = "data: [DONE]\n\n";
            sink.write(done.data(), done.size());
            sink.done();
            finish(req, status, c->endpoint, c->t0, extra);
            return true;
          });
    }
  } catch (const HttpError& e) {
    send_error(res, e);
    if (otlp && admitted_sup)
      export_failed(chat, prepared, admitted_sup, t0, req.get_header_value("traceparent"), e);
  } catch (const std::exception& e) {
    const HttpError he = translate(e);
    send_error(res, he);
    if (otlp && admitted_sup)
      export_failed(chat, prepared, admitted_sup, t0, req.get_header_value("traceparent"), he);
  }
  if (!streaming) finish(req, res, endpoint, t0, extra);
}

// ---------------------------------------------------------------------------------------------
// /v1/explain: the explain job on the served model, the envelope of `candor explain --json`
// ---------------------------------------------------------------------------------------------

void Server::Impl::handle_explain(const httplib::Request& req, httplib::Response& res) {
  // The request as an `explain` span (with --otlp), once admitted: what it asked and its record.
  GenAiSpan span;
  std::shared_ptr<const Supervision> admitted_sup;
  const auto t_start = Clock::now();
  const int64_t start_ns = unix_nanos();
  auto export_explain = [&](const HttpError* error) {
    if (!otlp || !admitted_sup) return;
    if (!parse_traceparent(req.get_header_value("traceparent"), &span.trace_id,
                           &span.parent_span_id))
      span.trace_id = random_trace_hex(16);
    span.span_id = random_trace_hex(8);
    span.start_unix_ns = start_ns;
    span.end_unix_ns = start_ns + static_cast<int64_t>(ms_since(t_start) * 1e6);
    span.operation = "explain";
    span.model = model_id();
    span.with_request = false;
    span.server_address = opt.host;
    span.server_port = port;
    span.policy_hash = admitted_sup->policy.hash;
    if (error != nullptr) {
      span.error_type = error->code.empty() ? error->type : error->code;
      span.error_message = error->message;
      span.http_status = error->status;
    }
    otlp->submit(valid_utf8(otlp_span_json(span)));
  };
  guarded(req, res, "/v1/explain", [&](std::string* extra) {
    auto admitted = admit(req);
    const Caller caller = std::move(admitted.first);
    auto sup = std::move(admitted.second);
    admitted_sup = sup;
    const supervise::Policy& pol = sup->policy;
    json body;
    try {
      body = json::parse(req.body);
    } catch (const json::exception& e) {
      throw bad_request(std::string("the body is not valid JSON: ") + e.what(), "", "invalid_json");
    }
    if (!body.is_object())
      throw bad_request("the request body must be a JSON object", "", "invalid_json");
    jobs::ExplainOptions o;
    auto str = [&](const char* f, std::string* out) {
      auto it = body.find(f);
      if (it == body.end() || it->is_null()) return;
      if (!it->is_string())
        throw bad_request(std::string("'") + f + "' must be a string", f, "invalid_type");
      *out = it->get<std::string>();
    };
    std::string model_name;
    str("model", &model_name);
    if (!model_name.empty() && model_name != model_id()) {
      HttpError e;
      e.status = 404;
      e.code = "model_not_found";
      e.param = "model";
      e.message = "the model '" + model_name + "' is not served here; this server serves '" +
                  model_id() + "'";
      throw e;
    }
    std::string user;
    str("user", &user);
    str("prompt", &o.prompt);
    str("system", &o.system);
    str("granularity", &o.granularity);
    str("target", &o.target);
    str("contrast", &o.contrast);
    str("target_function", &o.target_function);
    str("baseline", &o.baseline);
    str("removal", &o.removal);
    if (auto it = body.find("methods"); it != body.end() && !it->is_null()) {
      if (!it->is_array())
        throw bad_request("'methods' must be an array of method specs", "methods", "invalid_type");
      for (const json& m : *it) {
        if (!m.is_string())
          throw bad_request("'methods' must be an array of method specs", "methods",
                            "invalid_type");
        o.methods.push_back(m.get<std::string>());
      }
    }
    if (o.methods.empty()) o.methods = {pol.explain.method};
    if (static_cast<int64_t>(o.methods.size()) > pol.explain.max_methods)
      throw bad_request("'methods' asks for " + std::to_string(o.methods.size()) +
                            " methods; the policy allows " +
                            std::to_string(pol.explain.max_methods),
                        "methods", "policy_limit");
    for (const auto& s : o.methods) {
      bool ok = method_name(s) == method_name(pol.explain.method);
      for (const auto& a : pol.explain.allowed_methods) ok = ok || method_name(a) == method_name(s);
      if (!ok)
        throw bad_request("'methods': the policy does not allow '" + s + "'", "methods",
                          "policy_limit");
    }
    auto boolean = [&](const char* f, bool* out) {
      auto it = body.find(f);
      if (it == body.end() || it->is_null()) return;
      if (!it->is_boolean())
        throw bad_request(std::string("'") + f + "' must be a boolean", f, "invalid_type");
      *out = it->get<bool>();
    };
    boolean("chat", &o.chat);
    boolean("evaluate", &o.evaluate);
    boolean("consensus", &o.consensus);
    if (auto it = body.find("generate"); it != body.end() && !it->is_null()) {
      if (!it->is_number_integer())
        throw bad_request("'generate' must be an integer", "generate", "invalid_type");
      o.generate = it->get<int64_t>();
      if (o.generate < 0 || o.generate > pol.limits.max_tokens)
        throw bad_request(
            "'generate' must be in [0, " + std::to_string(pol.limits.max_tokens) + "]", "generate");
    }
    const Model* m;
    std::shared_ptr<store::AuditLog> log;
    std::string wh;
    {
      std::lock_guard<std::mutex> lock(state_mu);
      m = model;
      log = audit;
      wh = weights_hash;
    }
    o.model.model = m;
    o.model.path = model_id();
    o.threads = threads_per_request;
    span.methods = o.methods;
    span.weights_hash = wh;
    if (!admission->enter(Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(
                                             pol.limits.request_timeout_ms)))) {
      HttpError e;
      e.status = 429;
      e.type = "rate_limit_error";
      e.code = "too_many_requests";
      e.retry_after_s = 1;
      e.message = "all slots are busy and the queue is full";
      throw e;
    }
    struct Leave {
      Admission* a;
      ~Leave() { a->leave(); }
    } leave{admission.get()};
    const auto t0 = Clock::now();
    jobs::ExplainResult r = jobs::run_explain(o);
    store::AuditRecord rec;
    rec.endpoint = "/v1/explain";
    rec.key_id = caller.key_id;
    rec.user = user;
    rec.model_id = model_id();
    rec.weights_hash = wh;
    rec.policy_hash = pol.hash;
    rec.parameters = {{"methods", o.methods},   {"granularity", o.granularity},
                      {"target", o.target},     {"contrast", o.contrast},
                      {"generate", o.generate}, {"evaluate", o.evaluate}};
    if (opt.temperature_scaling > 0)
      rec.parameters["temperature_scaling"] = opt.temperature_scaling;
    if (pol.log_content) {
      rec.prompt = valid_utf8(o.prompt);
      rec.answer = valid_utf8(r.context.generated_text);
    }
    rec.explanation = valid_utf8(explanation_summary(r.attributions, pol.explain.top_features));
    rec.decision = "allow";
    rec.timings = {{"explain_ms", ms_since(t0)}};
    try {
      rec = log->append(std::move(rec));
    } catch (const Error& e) {
      HttpError he;
      he.status = e.code() == ErrorCode::kResourceExhausted ? 429 : 500;
      he.type = he.status == 429 ? "rate_limit_error" : "server_error";
      he.code = he.status == 429 ? "audit_queue_full" : "audit_write_failed";
      he.retry_after_s = he.status == 429 ? 1 : 0;
      he.message = std::string("the audit record could not be committed: ") + e.what();
      throw he;
    }
    nlohmann::ordered_json env = r.envelope;
    env["audit_id"] = rec.id;
    span.audit_id = rec.id;
    span.decision = rec.decision;
    export_explain(nullptr);
    if (!span.trace_id.empty()) env["trace_id"] = span.trace_id;
    res.set_content(env.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
    *extra = " audit=" + rec.id;
  }, [&](const HttpError& e) { export_explain(&e); });
}

// ---------------------------------------------------------------------------------------------
// The audit endpoints (auditor role)
// ---------------------------------------------------------------------------------------------

void Server::Impl::handle_audit_list(const httplib::Request& req, httplib::Response& res) {
  guarded(req, res, "/v1/audit/records", [&](std::string*) {
    authorize(req, "auditor");
    auto log = this->log();
    if (!log) throw http_error(503, "the audit log is not open yet", "server_error", "loading");
    store::AuditQuery q;
    auto integer = [&](const char* name, int64_t* out, int64_t lo, int64_t hi) {
      if (!req.has_param(name)) return;
      const std::string v = req.get_param_value(name);
      try {
        size_t used = 0;
        const int64_t x = std::stoll(v, &used);
        if (used != v.size() || x < lo || x > hi) throw std::invalid_argument(v);
        *out = x;
      } catch (const std::exception&) {
        throw bad_request(std::string("'") + name + "' must be an integer in [" +
                              std::to_string(lo) + ", " + std::to_string(hi) + "], got '" + v + "'",
                          name);
      }
    };
    integer("from", &q.from_ms, 0, INT64_MAX);
    integer("to", &q.to_ms, 0, INT64_MAX);
    integer("offset", &q.offset, 0, INT64_MAX);
    integer("limit", &q.limit, 1, 1000);
    if (req.has_param("decision")) {
      q.decision = req.get_param_value("decision");
      if (q.decision != "allow" && q.decision != "flag" && q.decision != "block")
        throw bad_request("'decision' must be allow, flag or block, got '" + q.decision + "'",
                          "decision");
    }
    if (req.has_param("check")) q.check = req.get_param_value("check");
    if (req.has_param("model")) q.model_id = req.get_param_value("model");
    if (req.has_param("key")) q.key_id = req.get_param_value("key");
    if (req.has_param("refers_to")) q.refers_to = req.get_param_value("refers_to");
    store::AuditPage page = log->query(q);
    json recs = json::array();
    for (const auto& r : page.records) recs.push_back(r.to_json());
    res.set_content(dump({{"object", "list"},
                          {"data", recs},
                          {"total", page.total},
                          {"offset", q.offset},
                          {"limit", q.limit}}),
                    "application/json");
  });
}

void Server::Impl::handle_audit_get(const httplib::Request& req, httplib::Response& res) {
  guarded(req, res, "/v1/audit/records/{id}", [&](std::string*) {
    authorize(req, "auditor");
    auto log = this->log();
    if (!log) throw http_error(503, "the audit log is not open yet", "server_error", "loading");
    const std::string id = req.matches[1];
    auto r = log->get(id);
    if (!r)
      throw http_error(404, "no audit record '" + id + "'", "invalid_request_error", "not_found");
    res.set_content(dump(r->to_json()), "application/json");
  });
}

void Server::Impl::enqueue_async(std::function<void()> job) {
  {
    std::lock_guard<std::mutex> lock(async_mu);
    async_jobs.push_back(std::move(job));
  }
  async_cv.notify_one();
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

void Server::Impl::routes() {
  httplib::Server& s = *http;
  s.Get("/health", [this](const httplib::Request& req, httplib::Response& res) {
    const auto t0 = Clock::now();
    if (ready) {
      res.set_content(R"({"status":"ok"})", "application/json");
    } else {
      res.status = 503;
      res.set_header("Retry-After", "1");
      res.set_content(R"({"status":"loading"})", "application/json");
    }
    finish(req, res, "/health", t0, "");
  });
  s.Get("/metrics", [this](const httplib::Request& req, httplib::Response& res) {
    const auto t0 = Clock::now();
    metrics.gauge("candor_queue_depth", admission->waiting());
    metrics.gauge("candor_requests_in_flight", admission->running());
    if (auto log = this->log())
      metrics.gauge("candor_audit_queue_depth", static_cast<double>(log->queue_depth()));
    if (scheduler) {
      metrics.gauge("candor_batched_decode_steps", static_cast<double>(scheduler->steps()));
      metrics.gauge("candor_batched_decode_rows", static_cast<double>(scheduler->rows_read()));
    }
    res.set_content(metrics.render(), "text/plain; version=0.0.4");
    finish(req, res, "/metrics", t0, "");
  });
  s.Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
    guarded(req, res, "/v1/models", [&](std::string*) {
      authorize(req, "");
      json data = json::array();
      if (ready)
        data.push_back(
            {{"id", model_id()}, {"object", "model"}, {"created", 0}, {"owned_by", "candor"}});
      res.set_content(dump({{"object", "list"}, {"data", data}}), "application/json");
    });
  });
  s.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    handle_completion(req, res, false);
  });
  s.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    handle_completion(req, res, true);
  });
  s.Post("/v1/explain",
         [this](const httplib::Request& req, httplib::Response& res) { handle_explain(req, res); });
  s.Get("/v1/audit/records", [this](const httplib::Request& req, httplib::Response& res) {
    handle_audit_list(req, res);
  });
  s.Get(
      R"(/v1/audit/records/([0-9A-Za-z_-]+))",
      [this](const httplib::Request& req, httplib::Response& res) { handle_audit_get(req, res); });
  // What httplib answers itself (no route, a body over the limit, a bad request line) gets the
  // error object too.
  s.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    HttpError e;
    e.status = res.status;
    if (res.status == 404) {
      e.code = "not_found";
      e.message = "no endpoint " + req.method + " " + req.path + " (see docs/serve.md)";
    } else if (res.status == 413) {
      e.code = "body_too_large";
      e.message = "the request body is larger than the server accepts";
    } else {
      e.code = "http_" + std::to_string(res.status);
      e.message = "the request could not be served (HTTP " + std::to_string(res.status) + ")";
    }
    res.set_content(dump(error_json(e)), "application/json");
    if (res.status == 404 || res.status == 413) {
      metrics.count("candor_requests_total",
                    {{"endpoint", "other"}, {"status", std::to_string(res.status)}});
      notice(req.method + " " + req.path + " " + std::to_string(res.status));
    }
  });
  s.set_exception_handler(
      [this](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        HttpError e;
        e.status = 500;
        e.type = "server_error";
        e.code = "internal_error";
        e.message = "internal error";
        try {
          if (ep) std::rethrow_exception(ep);
        } catch (const std::exception& ex) {
          e.message = ex.what();
        } catch (...) {
        }
        send_error(res, e);
      });
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.opt = std::move(options);
  if (s.opt.parallel < 1)
    throw Error(ErrorCode::kInvalidArgument,
                "--parallel must be at least 1, got " + std::to_string(s.opt.parallel));
  if (s.opt.api_keys.empty() && !is_loopback(s.opt.host))
    throw Error(ErrorCode::kInvalidArgument,
                "refusing to listen on '" + s.opt.host + "' without API keys",
                "listen on 127.0.0.1, or give --api-keys FILE (docs/serve.md)");
  if (s.opt.tls_cert.empty() != s.opt.tls_key.empty())
    throw Error(ErrorCode::kInvalidArgument, "TLS needs both --tls-cert and --tls-key");
  if (!(s.opt.temperature_scaling >= 0) || !std::isfinite(s.opt.temperature_scaling))
    throw Error(ErrorCode::kInvalidArgument,
                "the temperature scaling must be > 0 (or 0: none), got " +
                    std::to_string(s.opt.temperature_scaling),
                "fit one with candor audit calibration --save-temperature");
  if (!s.opt.otlp_url.empty()) {
    if (s.opt.otlp_queue < 1)
      throw Error(ErrorCode::kInvalidArgument, "the OTLP queue must hold at least one span");
    s.otlp = std::make_unique<OtlpExporter>(s.opt.otlp_url, static_cast<size_t>(s.opt.otlp_queue),
                                            s.opt.otlp_timeout_ms, &s.metrics,
                                            [&s](const std::string& line) { s.notice(line); },
                                            s.opt.otlp_ca);
  } else if (!s.opt.otlp_ca.empty()) {
    throw Error(ErrorCode::kInvalidArgument, "--otlp-ca is given without --otlp",
                "give the collector with --otlp https://HOST:PORT, or leave --otlp-ca out");
  }
  const int queue = s.opt.queue == 0 ? 4 * s.opt.parallel : std::max(0, s.opt.queue);
  s.admission = std::make_unique<Admission>(s.opt.parallel, queue);
  s.threads_per_request =
      s.opt.threads > 0 ? s.opt.threads : std::max(1, usable_cores() / s.opt.parallel);
  if (!s.opt.tls_cert.empty()) {
    auto ssl = std::make_unique<httplib::SSLServer>(s.opt.tls_cert.c_str(), s.opt.tls_key.c_str());
    if (!ssl->is_valid())
      throw Error(ErrorCode::kInvalidArgument,
                  "cannot use the TLS certificate '" + s.opt.tls_cert + "' with the key '" +
                      s.opt.tls_key + "'",
                  "give a PEM certificate and its PEM private key");
    s.http = std::move(ssl);
  } else {
    s.http = std::make_unique<httplib::Server>();
  }
  // Enough workers that waiting connections are not starved by keep-alive ones; the model is
  // guarded by the admission gate, not by the pool.
  const int workers = std::max(16, s.opt.parallel + queue + 8);
  s.http->new_task_queue = [workers] { return new httplib::ThreadPool(workers); };
  s.http->set_keep_alive_max_count(1000);
  s.http->set_keep_alive_timeout(5);
  s.http->set_tcp_nodelay(true);
  s.supervision = std::make_shared<Supervision>();
  s.routes();
  s.async_thread = std::thread([&s] {
    std::unique_lock<std::mutex> lock(s.async_mu);
    for (;;) {
      s.async_cv.wait(lock, [&] { return s.async_stop || !s.async_jobs.empty(); });
      if (s.async_jobs.empty()) return;  // stopping and drained
      auto job = std::move(s.async_jobs.front());
      s.async_jobs.pop_front();
      lock.unlock();
      try {
        job();
      } catch (const std::exception& e) {
        s.notice(std::string("async checks failed: ") + e.what());
      }
      lock.lock();
    }
  });
}

Server::~Server() {
  try {
    stop();
  } catch (...) {
  }
}

int Server::bind() {
  Impl& s = *impl_;
  s.http->set_payload_max_length(static_cast<size_t>(s.current()->policy.limits.max_body_bytes));
  if (s.opt.port == 0) {
    s.port = s.http->bind_to_any_port(s.opt.host);
    if (s.port < 0) s.port = 0;
  } else {
    s.port = s.http->bind_to_port(s.opt.host, s.opt.port) ? s.opt.port : 0;
  }
  if (s.port <= 0)
    throw Error(ErrorCode::kInvalidArgument,
                "cannot listen on " + s.opt.host + ":" + std::to_string(s.opt.port),
                "is another server on that port? give another --listen HOST:PORT (port 0 picks a "
                "free one)");
  s.bound = true;
  return s.port;
}

void Server::start() {
  Impl& s = *impl_;
  if (!s.bound) bind();
  if (s.started) return;
  s.started = true;
  s.thread = std::thread([&s] { s.http->listen_after_bind(); });
  // Wait (bounded) until the listening loop runs, so stop() right after start() cannot race it.
  for (int i = 0; i < 500 && !s.http->is_running(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
}

void Server::stop() {
  Impl& s = *impl_;
  if (s.stopped) return;
  s.stopped = true;
  if (s.started) {
    s.http->stop();
    if (s.thread.joinable()) s.thread.join();
  }
  {
    std::lock_guard<std::mutex> lock(s.async_mu);
    s.async_stop = true;
  }
  s.async_cv.notify_all();
  if (s.async_thread.joinable()) s.async_thread.join();
  if (s.otlp) s.otlp->stop();  // sends what is queued (bounded by the export timeout)
  if (s.scheduler) s.scheduler->stop();  // no request is left to use it
}

void Server::wait() {
  Impl& s = *impl_;
  if (s.thread.joinable()) s.thread.join();
}

void Server::set_model(const Model* model, std::shared_ptr<store::AuditLog> log,
                       std::string weights_hash) {
  Impl& s = *impl_;
  if (model == nullptr || !log)
    throw Error(ErrorCode::kInvalidArgument, "Server::set_model needs a model and an audit log");
  if (model->config().kind != ModelKind::kCausalLM)
    throw Error(ErrorCode::kUnsupported,
                "candor serve needs a causal language model; this one is a classifier",
                "serve a language model (a llama2.c checkpoint, a Hugging Face or GGUF decoder)");
  if (s.opt.temperature_scaling > 0) {
    auto scaled = jobs::temperature_scaled(*model, s.opt.temperature_scaling);
    model = scaled.get();
    std::lock_guard<std::mutex> lock(s.state_mu);
    s.scaled_models.push_back(std::move(scaled));
  }
  {
    std::lock_guard<std::mutex> lock(s.state_mu);
    s.model = model;
    s.audit = std::move(log);
    s.weights_hash = std::move(weights_hash);
    if (s.opt.parallel > 1 && !s.scheduler)
      s.scheduler = std::make_unique<DecodeScheduler>(model_decode_backend(
          *model, s.opt.threads > 0 ? std::min(usable_cores(), s.opt.threads * s.opt.parallel)
                                       : usable_cores()));
  }
  s.ready = true;
}

void Server::set_supervision(std::shared_ptr<const Supervision> supervision) {
  Impl& s = *impl_;
  if (!supervision)
    throw Error(ErrorCode::kInvalidArgument, "Server::set_supervision needs a policy");
  {
    std::lock_guard<std::mutex> lock(s.state_mu);
    s.supervision = std::move(supervision);
  }
  s.metrics.count("candor_policy_reloads_total", {});
}

int Server::port() const { return impl_->port; }

std::string Server::url() const {
  return std::string(impl_->opt.tls_cert.empty() ? "http" : "https") + "://" + impl_->opt.host +
         ":" + std::to_string(impl_->port);
}

// ---------------------------------------------------------------------------------------------
// Regeneration: a failed check with action `regenerate` samples the answer again
// ---------------------------------------------------------------------------------------------

uint64_t regeneration_seed(uint64_t seed, int attempt) {
  if (attempt <= 0) return seed;
  // splitmix64 of seed + attempt: well-spread seeds that differ for every attempt.
  uint64_t z = seed + static_cast<uint64_t>(attempt) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

json Server::Impl::attempt_json(const Completion& c) const {
  json a = {{"attempt", c.attempt},
            {"seed", regeneration_seed(c.p.seed, c.attempt)},
            {"completion_tokens", c.gen.generated_ids.size()},
            {"finish_reason", c.finish_reason},
            {"checks", checks_json(c.review)},
            {"decision", c.review.decision},
            {"reasons", c.review.reasons},
            {"regenerate", c.review.regenerate}};
  if (c.sup->policy.log_content) a["answer"] = c.answer;
  return a;
}

json Server::Impl::stream_json(const Completion& c, bool with_text) const {
  json j = c.guard->plan().to_json();
  j["released_bytes"] = c.released.size();
  j["stopped"] = c.guard_stopped;
  if (c.guard_stopped) j["stop_reason"] = c.guard->block_reason();
  if (with_text) j["released"] = valid_utf8(c.released);
  return j;
}

bool Server::Impl::resample(Completion& c, bool streaming) {
  if (!c.review.regenerate) return false;
  const supervise::Policy& pol = c.sup->policy;
  const int64_t limit = pol.limits.max_regenerations;
  std::string why;
  if (streaming)
    why = "the answer was streamed as it was generated, so it was not sampled again";
  else if (c.gen.generated_ids.empty() && c.p.max_tokens == 0)
    why = "nothing was generated (max_tokens 0), so nothing was sampled again";
  else if (c.attempt >= limit)
    why = "still failing after " + std::to_string(c.attempt) + " regeneration" +
          (c.attempt == 1 ? "" : "s") + " (the policy's limits.max_regenerations is " +
          std::to_string(limit) + ")";
  else if (c.time_limited || Clock::now() > c.deadline)
    why = "the policy's time limit was reached, so it was not sampled again";
  if (!why.empty()) {
    c.regeneration_note = why;
    c.review.reasons.push_back("regenerate: " + why);
    return false;
  }
  json earlier = attempt_json(c);
  earlier["timings"] = c.timings;
  c.attempts.push_back(valid_utf8(earlier));
  ++c.attempt;
  metrics.count("candor_regenerations_total", {});
  // What the next attempt computes again (the prompt's own log-probabilities are kept).
  c.gen = GenerateResult();
  c.answer.clear();
  c.finish_reason = "length";
  c.attributions.clear();
  c.explain_request = ExplainRequest();
  c.explanation = nullptr;
  c.explanation_note.clear();
  c.review = supervise::Review();
  c.timings = json::object();
  if (c.guard) c.guard = std::make_unique<supervise::StreamGuard>(c.sup->policy);
  c.guard_stopped = false;
  run(c, nullptr);
  return true;
}

// ---------------------------------------------------------------------------------------------
// OpenTelemetry: the request as a GenAI span with one evaluation event per check
// ---------------------------------------------------------------------------------------------

void Server::Impl::export_span(Completion& c, const HttpError* error) {
  GenAiSpan span;
  if (!parse_traceparent(c.traceparent, &span.trace_id, &span.parent_span_id))
    span.trace_id = random_trace_hex(16);
  span.span_id = random_trace_hex(8);
  const int64_t now_ns = unix_nanos();
  span.end_unix_ns = now_ns;
  span.start_unix_ns = now_ns - static_cast<int64_t>(ms_since(c.t0) * 1e6);
  span.operation = c.p.chat ? "chat" : "text_completion";
  span.model = model_id();
  span.response_id = c.id;
  span.finish_reason = c.finish_reason;
  span.input_tokens = static_cast<int64_t>(c.ids.size());
  span.output_tokens = static_cast<int64_t>(c.gen.generated_ids.size());
  span.max_tokens = c.p.max_tokens;
  span.temperature = c.p.temperature;
  span.top_p = c.p.top_p;
  span.top_k = c.p.top_k;
  span.seed = c.p.seed;
  span.stop = c.p.stop;
  span.server_address = opt.host;
  span.server_port = port;
  span.audit_id = c.audit_id;
  span.decision = c.review.decision;
  span.reasons = c.review.reasons;
  span.policy_hash = c.sup->policy.hash;
  span.weights_hash = c.weights_hash;
  span.attempts = c.attempt + 1;
  span.temperature_scaling = opt.temperature_scaling;
  span.checks = c.review.checks;
  const supervise::Policy& pol = c.sup->policy;
  span.with_content = pol.export_content && pol.log_content;
  if (span.with_content) {
    if (c.p.chat) {
      for (const auto& m : c.p.messages)
        span.input_messages.push_back({{"role", m.role}, {"content", m.content}});
    } else {
      span.input_messages.push_back({{"role", "user"}, {"content", c.prompt_text}});
    }
    span.output_text = c.content;
  }
  if (error != nullptr) {
    // The answer was never sent: no finish reason, and the error's class and message.
    span.finish_reason.clear();
    span.error_type = error->code.empty() ? error->type : error->code;
    span.error_message = error->message;
    span.http_status = error->status;
  } else if (c.time_limited) {
    span.error_type = "timeout";
    span.error_message = "the request reached the policy's time limit (" +
                         std::to_string(static_cast<int64_t>(pol.limits.request_timeout_ms)) +
                         " ms)";
  } else if (c.review.decision == "block") {
    span.error_type = "blocked";
    span.error_message = "the answer was blocked";
    for (size_t i = 0; i < c.review.reasons.size(); ++i)
      span.error_message += (i == 0 ? ": " : "; ") + c.review.reasons[i];
  }
  c.trace_id = span.trace_id;
  c.span_id = span.span_id;
  otlp->submit(valid_utf8(otlp_span_json(span)));
}

void Server::Impl::export_failed(bool chat, std::shared_ptr<Completion> c,
                                 const std::shared_ptr<const Supervision>& sup,
                                 Clock::time_point t0, const std::string& traceparent,
                                 const HttpError& error) {
  if (c && !c->span_id.empty()) return;  // exported already (one span per request)
  if (!c) {  // it failed before prepare(): what is known of it
    c = std::make_shared<Completion>();
    c->p.chat = chat;
    c->p.max_tokens = 0;
    c->t0 = t0;
    c->sup = sup;
    c->traceparent = traceparent;
  }
  export_span(*c, &error);
}

void Server::Impl::export_async_span(const std::string& trace_id,
                                     const std::string& parent_span_id,
                                     const std::string& audit_id,
                                     const store::AuditRecord* addendum,
                                     const supervise::Review* review,
                                     const std::string& policy_hash,
                                     const std::string& weights_hash, int64_t start_unix_ns,
                                     const std::string& error) {
  GenAiSpan span;
  span.trace_id = trace_id;
  span.parent_span_id = parent_span_id;
  span.span_id = random_trace_hex(8);
  span.start_unix_ns = start_unix_ns;
  span.end_unix_ns = unix_nanos();
  span.operation = "evaluate";
  span.model = model_id();
  span.name = "candor.async_checks " + model_id();
  span.with_request = false;
  span.audit_id = audit_id;
  span.policy_hash = policy_hash;
  span.weights_hash = weights_hash;
  if (addendum != nullptr) span.addendum_id = addendum->id;
  if (review != nullptr) {
    span.decision = review->decision;
    span.reasons = review->reasons;
    span.checks = review->checks;
  }
  if (!error.empty()) {
    span.error_type = "async_checks_failed";
    span.error_message = error;
  }
  otlp->submit(valid_utf8(otlp_span_json(span)));
}

}  // namespace candor::serve
