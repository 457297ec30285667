// OTLP/JSON export of GenAI spans: the span and request JSON, W3C trace context, and the
// background sender with its bounded queue.
#include "serve/otlp.h"

#include <httplib.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <fstream>
#include <random>

#include "candor/error.h"

namespace candor::serve {
namespace {

using nlohmann::json;

json str_value(const std::string& s) { return {{"stringValue", s}}; }
json int_value(int64_t v) { return {{"intValue", std::to_string(v)}}; }
json double_value(double v) { return {{"doubleValue", v}}; }
json strings_value(const std::vector<std::string>& v) {
  json values = json::array();
  for (const auto& s : v) values.push_back(str_value(s));
  return {{"arrayValue", {{"values", values}}}};
}
json attr(const std::string& key, json value) {
  return {{"key", key}, {"value", std::move(value)}};
}

bool is_hex(const std::string& s, size_t n) {
  if (s.size() != n) return false;
  bool nonzero = false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    nonzero = nonzero || c != '0';
  }
  return nonzero;
}

}  // namespace

std::string random_trace_hex(size_t n_bytes) {
  static thread_local std::mt19937_64 rng(std::random_device{}() ^
                                          std::hash<std::thread::id>{}(std::this_thread::get_id()));
  static const char* digits = "0123456789abcdef";
  std::string s(2 * n_bytes, '0');
  for (;;) {
    bool nonzero = false;
    for (auto& c : s) {
      c = digits[rng() & 15];
      nonzero = nonzero || c != '0';
    }
    if (nonzero) return s;
  }
}

bool parse_traceparent(const std::string& header, std::string* trace_id, std::string* span_id) {
  // version "-" trace-id "-" parent-id "-" flags: 2 + 1 + 32 + 1 + 16 + 1 + 2 = 55 characters
  // (a later version may append fields after another "-").
  if (header.size() < 55 || header[2] != '-' || header[35] != '-' || header[52] != '-')
    return false;
  if (header.size() > 55 && header[55] != '-') return false;
  const std::string version = header.substr(0, 2), trace = header.substr(3, 32),
                    parent = header.substr(36, 16), flags = header.substr(53, 2);
  auto hex2 = [](const std::string& s) {
    auto lower_hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); };
    return s.size() == 2 && lower_hex(s[0]) && lower_hex(s[1]);
  };
  if (!hex2(version) || version == "ff" || !hex2(flags)) return false;
  if (version == "00" && header.size() != 55) return false;
  if (!is_hex(trace, 32) || !is_hex(parent, 16)) return false;
  *trace_id = trace;
  *span_id = parent;
  return true;
}

json otlp_span_json(const GenAiSpan& s) {
  json a = json::array();
  a.push_back(attr("gen_ai.operation.name", str_value(s.operation)));
  a.push_back(attr("gen_ai.provider.name", str_value("candor")));
  a.push_back(attr("gen_ai.request.model", str_value(s.model)));
  a.push_back(attr("gen_ai.response.model", str_value(s.model)));
  if (!s.response_id.empty()) a.push_back(attr("gen_ai.response.id", str_value(s.response_id)));
  if (!s.finish_reason.empty())
    a.push_back(attr("gen_ai.response.finish_reasons", strings_value({s.finish_reason})));
  if (s.with_request) {
    a.push_back(attr("gen_ai.output.type", str_value("text")));
    a.push_back(attr("gen_ai.usage.input_tokens", int_value(s.input_tokens)));
    a.push_back(attr("gen_ai.usage.output_tokens", int_value(s.output_tokens)));
    a.push_back(attr("gen_ai.request.max_tokens", int_value(s.max_tokens)));
    a.push_back(attr("gen_ai.request.temperature", double_value(s.temperature)));
    a.push_back(attr("gen_ai.request.top_p", double_value(s.top_p)));
    if (s.top_k > 0)
      a.push_back(attr("gen_ai.request.top_k", double_value(static_cast<double>(s.top_k))));
    // The seed is a 64-bit unsigned value; OTLP integers are signed 64-bit, so it travels as
    // text when it does not fit.
    if (s.seed <= static_cast<uint64_t>(INT64_MAX))
      a.push_back(attr("gen_ai.request.seed", int_value(static_cast<int64_t>(s.seed))));
    else
      a.push_back(attr("gen_ai.request.seed", str_value(std::to_string(s.seed))));
    if (!s.stop.empty())
      a.push_back(attr("gen_ai.request.stop_sequences", strings_value(s.stop)));
  }
  if (!s.methods.empty()) a.push_back(attr("candor.explain.methods", strings_value(s.methods)));
  if (!s.error_type.empty()) a.push_back(attr("error.type", str_value(s.error_type)));
  if (s.http_status > 0) a.push_back(attr("http.response.status_code", int_value(s.http_status)));
  if (!s.server_address.empty()) {
    a.push_back(attr("server.address", str_value(s.server_address)));
    a.push_back(attr("server.port", int_value(s.server_port)));
  }
  if (!s.audit_id.empty()) a.push_back(attr("candor.audit_id", str_value(s.audit_id)));
  if (!s.addendum_id.empty()) a.push_back(attr("candor.addendum_id", str_value(s.addendum_id)));
  if (!s.decision.empty()) a.push_back(attr("candor.decision", str_value(s.decision)));
  if (!s.reasons.empty()) a.push_back(attr("candor.reasons", strings_value(s.reasons)));
  a.push_back(attr("candor.policy_hash", str_value(s.policy_hash)));
  if (!s.weights_hash.empty()) a.push_back(attr("candor.weights_hash", str_value(s.weights_hash)));
  if (s.with_request) a.push_back(attr("candor.attempts", int_value(s.attempts)));
  if (s.temperature_scaling > 0)
    a.push_back(attr("candor.temperature_scaling", double_value(s.temperature_scaling)));
  if (s.with_content) {
    // The conventions' message shape: role and a list of parts, as a JSON string.
    json in = json::array();
    for (const json& m : s.input_messages)
      in.push_back(
          {{"role", m.value("role", "user")},
           {"parts", json::array({{{"type", "text"}, {"content", m.value("content", "")}}})}});
    json out =
        json::array({{{"role", "assistant"},
                      {"parts", json::array({{{"type", "text"}, {"content", s.output_text}}})},
                      {"finish_reason", s.finish_reason}}});
    const auto dump = [](const json& j) {
      return j.dump(-1, ' ', false, json::error_handler_t::replace);
    };
    a.push_back(attr("gen_ai.input.messages", str_value(dump(in))));
    a.push_back(attr("gen_ai.output.messages", str_value(dump(out))));
  }

  json events = json::array();
  for (const supervise::CheckResult& c : s.checks) {
    json e = json::array();
    e.push_back(attr("gen_ai.evaluation.name", str_value(c.name)));
    if (c.outcome == "pass" || c.outcome == "fail")
      e.push_back(attr("gen_ai.evaluation.score.value", double_value(c.value)));
    e.push_back(attr("gen_ai.evaluation.score.label", str_value(c.outcome)));
    if (!c.detail.empty()) e.push_back(attr("gen_ai.evaluation.explanation", str_value(c.detail)));
    if (!s.response_id.empty()) e.push_back(attr("gen_ai.response.id", str_value(s.response_id)));
    if (!s.audit_id.empty()) e.push_back(attr("candor.audit_id", str_value(s.audit_id)));
    if (c.outcome == "error") e.push_back(attr("error.type", str_value("check_error")));
    e.push_back(attr("candor.check.type", str_value(c.type)));
    e.push_back(attr("candor.check.threshold", double_value(c.threshold)));
    e.push_back(attr("candor.check.action", str_value(c.action)));
    events.push_back({{"timeUnixNano", std::to_string(s.end_unix_ns)},
                      {"name", "gen_ai.evaluation.result"},
                      {"attributes", e}});
  }

  // Status: ERROR (2) with a message for a failed, timed-out or blocked request; unset else.
  json status = json::object();
  if (!s.error_type.empty())
    status = {{"code", 2},
              {"message", s.error_message.empty() ? s.error_type : s.error_message}};
  json span = {{"traceId", s.trace_id},
               {"spanId", s.span_id},
               {"name", s.name.empty() ? s.operation + " " + s.model : s.name},
               {"kind", 1},  // SPAN_KIND_INTERNAL: the model runs in this process
               {"startTimeUnixNano", std::to_string(s.start_unix_ns)},
               {"endTimeUnixNano", std::to_string(s.end_unix_ns)},
               {"attributes", a},
               {"events", events},
               {"status", status}};
  if (!s.parent_span_id.empty()) span["parentSpanId"] = s.parent_span_id;
  return span;
}

json otlp_request_json(const std::vector<json>& spans) {
  json resource = {{"attributes", json::array({attr("service.name", str_value("candor"))})}};
  json scope = {{"name", "candor.serve"}};
  return {{"resourceSpans",
           json::array({{{"resource", resource},
                         {"scopeSpans", json::array({{{"scope", scope}, {"spans", spans}}})}}})}};
}

std::pair<std::string, std::string> otlp_endpoint(const std::string& url) {
  const size_t scheme = url.find("://");
  const std::string s = scheme == std::string::npos ? std::string() : url.substr(0, scheme);
  if (s != "http" && s != "https")
    throw Error(ErrorCode::kInvalidArgument,
                "--otlp '" + url + "' is not an http:// or https:// URL",
                "give the collector's OTLP/HTTP base URL, e.g. http://127.0.0.1:4318");
  const size_t slash = url.find('/', scheme + 3);
  std::string base = url.substr(0, slash),
              path = slash == std::string::npos ? "" : url.substr(slash);
  if (base.size() <= scheme + 3)
    throw Error(ErrorCode::kInvalidArgument, "--otlp '" + url + "' names no host",
                "e.g. http://127.0.0.1:4318");
  while (!path.empty() && path.back() == '/') path.pop_back();
  const std::string suffix = "/v1/traces";
  if (path.size() < suffix.size() ||
      path.compare(path.size() - suffix.size(), suffix.size(), suffix) != 0)
    path += suffix;
  return {base, path};
}

// ---------------------------------------------------------------------------------------------
// The sender
// ---------------------------------------------------------------------------------------------

namespace {

// Throws unless `path` is a readable PEM file holding at least one certificate.
void check_ca_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw Error(ErrorCode::kInvalidArgument, "--otlp-ca: cannot read the CA file '" + path + "'",
                "give the PEM file of the certificate authority that signed the collector's "
                "certificate");
  const std::string pem((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = bio ? PEM_read_bio_X509(bio, nullptr, nullptr, nullptr) : nullptr;
  const bool ok = cert != nullptr;
  X509_free(cert);
  BIO_free(bio);
  if (!ok)
    throw Error(ErrorCode::kInvalidArgument,
                "--otlp-ca: '" + path + "' holds no PEM certificate",
                "give a file with '-----BEGIN CERTIFICATE-----' blocks (e.g. the collector's CA "
                "certificate, or its self-signed certificate)");
}

}  // namespace

OtlpExporter::OtlpExporter(const std::string& url, size_t capacity, int timeout_ms,
                           Metrics* metrics, std::function<void(const std::string&)> notice,
                           const std::string& ca_file)
    : ca_file_(ca_file),
      capacity_(std::max<size_t>(1, capacity)),
      timeout_ms_(std::max(1, timeout_ms)),
      metrics_(metrics),
      notice_(std::move(notice)) {
  std::tie(base_, path_) = otlp_endpoint(url);
  if (!ca_file_.empty()) {
    if (base_.rfind("https://", 0) != 0)
      throw Error(ErrorCode::kInvalidArgument,
                  "--otlp-ca is given but the collector '" + url + "' is not an https:// URL",
                  "use https:// for the collector, or leave --otlp-ca out");
    check_ca_file(ca_file_);
  }
  thread_ = std::thread([this] { loop(); });
}

OtlpExporter::~OtlpExporter() { stop(); }

bool OtlpExporter::submit(json span) {
  size_t depth = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || queue_.size() >= capacity_) {
      if (metrics_) metrics_->count("candor_otlp_spans_dropped_total", {{"reason", "queue_full"}});
      return false;
    }
    queue_.push_back(std::move(span));
    depth = queue_.size();
  }
  if (metrics_) metrics_->gauge("candor_otlp_queue_depth", static_cast<double>(depth));
  cv_.notify_one();
  return true;
}

bool OtlpExporter::post(const std::vector<json>& batch) {
  httplib::Client client(base_);
  const bool https = base_.rfind("https://", 0) == 0;
  if (https) {
    client.enable_server_certificate_verification(true);
    if (!ca_file_.empty()) client.set_ca_cert_path(ca_file_.c_str());
  }
  const time_t sec = timeout_ms_ / 1000;
  const time_t usec = static_cast<time_t>(timeout_ms_ % 1000) * 1000;
  client.set_connection_timeout(sec, usec);
  client.set_read_timeout(sec, usec);
  client.set_write_timeout(sec, usec);
  const std::string body =
      otlp_request_json(batch).dump(-1, ' ', false, json::error_handler_t::replace);
  auto res = client.Post(path_.c_str(), body, "application/json");
  const bool ok = res && res->status >= 200 && res->status < 300;
  if (!ok && !failing_ && notice_) {
    std::string why =
        res ? "HTTP " + std::to_string(res->status) : httplib::to_string(res.error());
    if (!res && res.error() == httplib::Error::SSLServerVerification) {
      const long v = client.get_openssl_verify_result();
      why = "the collector's TLS certificate was not accepted: " +
            std::string(v != X509_V_OK ? X509_verify_cert_error_string(v)
                                       : "its name does not match the host") +
            (ca_file_.empty()
                 ? "; give the CA that signed it with --otlp-ca FILE"
                 : "; it is not signed by the CA in --otlp-ca " + ca_file_);
    } else if (!res && res.error() == httplib::Error::SSLConnection) {
      why = "the TLS connection to the collector failed (is it an https:// collector?)";
    }
    notice_("OTLP export to " + base_ + path_ + " failed (" + why +
            "); spans are dropped and counted until it answers");
  }
  if (ok && failing_ && notice_) notice_("OTLP export to " + base_ + path_ + " works again");
  failing_ = !ok;
  return ok;
}

void OtlpExporter::loop() {
  constexpr size_t kBatch = 64;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping and drained
    std::vector<json> batch;
    while (!queue_.empty() && batch.size() < kBatch) {
      batch.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    // At shutdown, do not wait on a dead collector, nor on a slow one past the drain deadline.
    const bool give_up =
        stopping_ && (failing_ || std::chrono::steady_clock::now() > drain_deadline_);
    const size_t depth = queue_.size();
    lock.unlock();
    if (metrics_) metrics_->gauge("candor_otlp_queue_depth", static_cast<double>(depth));
    const double n = static_cast<double>(batch.size());
    if (give_up) {
      if (metrics_) metrics_->count("candor_otlp_spans_dropped_total", {{"reason", "shutdown"}}, n);
    } else if (post(batch)) {
      if (metrics_) metrics_->count("candor_otlp_spans_exported_total", {}, n);
    } else if (metrics_) {
      metrics_->count("candor_otlp_spans_dropped_total", {{"reason", "export_failed"}}, n);
    }
    lock.lock();
  }
}

void OtlpExporter::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_)
      drain_deadline_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace candor::serve
