// The service's Prometheus metrics (text format 0.0.4) and its admission gate.
#include <cmath>
#include <sstream>

#include "serve/metrics.h"

namespace candor::serve {
namespace {

// Upper bounds of every histogram, in seconds: 1 ms to 60 s.
const std::vector<double>& bucket_bounds() {
  static const std::vector<double> b = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                        0.5,   1,      2.5,   5,    10,    30,   60};
  return b;
}

std::string escape_label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string label_text(const Metrics::Labels& labels) {
  std::string s;
  for (const auto& [k, v] : labels) {
    if (!s.empty()) s += ',';
    s += k + "=\"" + escape_label(v) + "\"";
  }
  return s;
}

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  std::ostringstream o;
  o.precision(10);
  o << v;
  return o.str();
}

const std::map<std::string, std::string>& help_texts() {
  static const std::map<std::string, std::string> h = {
      {"candor_requests_total", "HTTP requests by endpoint and status"},
      {"candor_request_duration_seconds", "Request latency, from arrival to the last byte"},
      {"candor_time_to_first_token_seconds", "Time from arrival to the first generated token"},
      {"candor_time_per_output_token_seconds", "Decoding time per generated token"},
      {"candor_check_duration_seconds", "Latency of each policy check"},
      {"candor_explanation_duration_seconds", "Latency of the answer's explanation"},
      {"candor_audit_write_duration_seconds", "Time for an audit record to be committed"},
      {"candor_decisions_total", "Supervision decisions"},
      {"candor_check_outcomes_total", "Outcomes of each policy check"},
      {"candor_tokens_generated_total", "Tokens generated"},
      {"candor_prompt_tokens_total", "Prompt tokens read"},
      {"candor_queue_depth", "Requests waiting for the model"},
      {"candor_requests_in_flight", "Requests using the model"},
      {"candor_audit_queue_depth", "Audit records waiting to be committed"},
      {"candor_batched_decode_steps", "Batched decode steps run (--parallel > 1)"},
      {"candor_batched_decode_rows", "Tokens read by batched decode steps (/ steps: mean batch)"},
      {"candor_policy_reloads_total", "Policy reloads"},
      {"candor_regenerations_total", "Answers sampled again because a check asked to regenerate"},
      {"candor_otlp_spans_exported_total", "Spans the OTLP collector accepted"},
      {"candor_otlp_spans_dropped_total", "Spans not exported, by reason"},
      {"candor_otlp_queue_depth", "Spans waiting for the OTLP collector"},
  };
  return h;
}

void head(std::ostringstream& o, const std::string& name, const char* type) {
  auto it = help_texts().find(name);
  o << "# HELP " << name << ' ' << (it == help_texts().end() ? name : it->second) << '\n';
  o << "# TYPE " << name << ' ' << type << '\n';
}

}  // namespace

void Metrics::count(const std::string& name, const Labels& labels, double by) {
  std::lock_guard<std::mutex> lock(mu_);
  counters_[name][label_text(labels)] += by;
}

void Metrics::observe(const std::string& name, const Labels& labels, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  Histogram& h = histograms_[name][label_text(labels)];
  const auto& bounds = bucket_bounds();
  if (h.buckets.empty()) h.buckets.assign(bounds.size(), 0);
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (seconds <= bounds[i]) {
      ++h.buckets[i];
      break;
    }
  }
  ++h.count;
  h.sum += seconds;
}

void Metrics::gauge(const std::string& name, double value) {
  std::lock_guard<std::mutex> lock(mu_);
  gauges_[name] = value;
}

std::string Metrics::render() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::ostringstream o;
  for (const auto& [name, series] : counters_) {
    head(o, name, "counter");
    for (const auto& [labels, v] : series)
      o << name << (labels.empty() ? "" : "{" + labels + "}") << ' ' << number(v) << '\n';
  }
  for (const auto& [name, v] : gauges_) {
    head(o, name, "gauge");
    o << name << ' ' << number(v) << '\n';
  }
  const auto& bounds = bucket_bounds();
  for (const auto& [name, series] : histograms_) {
    head(o, name, "histogram");
    for (const auto& [labels, h] : series) {
      const std::string pre = labels.empty() ? "" : labels + ",";
      uint64_t cum = 0;
      for (size_t i = 0; i < bounds.size(); ++i) {
        cum += h.buckets[i];
        o << name << "_bucket{" << pre << "le=\"" << number(bounds[i]) << "\"} " << cum << '\n';
      }
      o << name << "_bucket{" << pre << "le=\"+Inf\"} " << h.count << '\n';
      const std::string l = labels.empty() ? "" : "{" + labels + "}";
      o << name << "_sum" << l << ' ' << number(h.sum) << '\n';
      o << name << "_count" << l << ' ' << h.count << '\n';
    }
  }
  return o.str();
}

bool Admission::enter(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  if (running_ < parallel_ && waiting_ == 0) {
    ++running_;
    return true;
  }
  if (waiting_ >= queue_) return false;
  ++waiting_;
  const bool ok = cv_.wait_until(lock, deadline, [&] { return running_ < parallel_; });
  --waiting_;
  if (!ok) return false;
  ++running_;
  return true;
}

void Admission::leave() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    --running_;
  }
  cv_.notify_one();
}

int Admission::waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return waiting_;
}

int Admission::running() const {
  std::lock_guard<std::mutex> lock(mu_);
  return running_;
}

}  // namespace candor::serve
