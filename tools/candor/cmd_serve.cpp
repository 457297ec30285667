// `candor serve`: the supervisor service (candor/serve.h) with a model, a policy and an audit log.
// This file parses the arguments, opens what the server needs, and turns signals into actions:
// SIGTERM / SIGINT stop (in-flight requests finish, the log is closed, exit 0), SIGHUP reloads
// the policy.
#include <signal.h>

#include <chrono>
#include <iostream>
#include <memory>

#include "candor/audit_log.h"
#include "candor/jobs_temperature.h"
#include "candor/serve.h"
#include "candor/supervise.h"
#include "cli.h"

namespace candor::cli {
namespace {

// The policy (the file, or the built-in one) and the supervisor that runs its checks.
std::shared_ptr<serve::Supervision> make_supervision(const std::string& policy_path) {
  auto sup = std::make_shared<serve::Supervision>();
  sup->policy =
      policy_path.empty() ? supervise::default_policy() : supervise::load_policy(policy_path);
  auto supervisor =
      std::make_shared<supervise::Supervisor>(sup->policy, supervise::default_swapper());
  sup->review = [supervisor](const supervise::Exchange& e) { return supervisor->review(e); };
  bool any_async = false;
  for (const auto& c : sup->policy.checks) any_async = any_async || c.async;
  if (any_async)
    sup->review_async = [supervisor](const supervise::Exchange& e) {
      return supervisor->review_async(e);
    };
  return sup;
}

void log_line(const std::string& line) {
  // One write per line, so concurrent requests' lines do not interleave.
  std::cerr << (line + "\n") << std::flush;
}

}  // namespace

Runner add_serve(CLI::App& app) {
  struct Opts {
    std::string model, tokenizer, policy, db = "candor-audit.db", listen = "127.0.0.1:8080",
                                          api_keys, tls_cert, tls_key, dtype = "f32", name, otlp, otlp_ca;
    int parallel = 1, threads = 0, queue = 0, otlp_queue = 1024;
    bool temperature_scaling = false;
    std::string audit_sync = "full";
  };
  auto o = std::make_shared<Opts>();
  app.add_option("--model,-m", o->model,
                 "Checkpoint file, or a folder holding it and its tokenizer")
      ->required();
  app.add_option("--tokenizer", o->tokenizer, "Tokenizer file (default: found beside the model)");
  app.add_option("--policy", o->policy, "Policy file, YAML or JSON (default: the built-in policy)");
  app.add_option("--db", o->db, "The audit log, a SQLite file (default: candor-audit.db)");
  app.add_option("--audit-sync", o->audit_sync,
                 "full (default): a committed record survives a power loss (fsync per group "
                 "commit); normal: it survives the process being killed, not a power loss "
                 "(docs/audit-log.md)")
      ->check(CLI::IsMember({"full", "normal"}));
  app.add_option("--listen", o->listen,
                 "HOST:PORT to listen on (default 127.0.0.1:8080; port 0 picks a free one)");
  app.add_option("--api-keys", o->api_keys,
                 "File of API keys, one 'ID ROLE SHA256' per line (docs/serve.md); without it only "
                 "loopback is served and every role is allowed");
  app.add_option("--parallel", o->parallel, "Requests using the model at once (default 1)");
  app.add_option("--queue", o->queue,
                 "Requests that may wait for the model before 429 (default 4 x --parallel)");
  app.add_option("--threads", o->threads,
                 "Intra-op threads per request (default: the cores divided by --parallel)");
  app.add_option("--name", o->name, "The model's name in the API (default: the folder's name)");
  app.add_option("--tls-cert", o->tls_cert, "PEM certificate: serve HTTPS (with --tls-key)");
  app.add_option("--tls-key", o->tls_key, "PEM private key of --tls-cert");
  app.add_flag("--temperature-scaling", o->temperature_scaling,
               "Serve the model's logits divided by the temperature `candor audit calibration "
               "--save-temperature` saved beside it (every log-probability, check and "
               "explanation; recorded in each audit record)");
  app.add_option("--otlp", o->otlp,
                 "Export each request as an OpenTelemetry GenAI span (OTLP/JSON) to URL/v1/traces, "
                 "e.g. http://127.0.0.1:4318");
  app.add_option("--otlp-ca", o->otlp_ca,
                 "PEM file of the CA that signed an https:// collector's certificate (default: "
                 "the system's trusted authorities)");
  app.add_option("--otlp-queue", o->otlp_queue,
                 "Spans waiting for the OTLP collector before new ones are dropped (default 1024)");
  add_dtype_option(app, &o->dtype);
  return [o]() {
    serve::ServerOptions so;
    const size_t colon = o->listen.rfind(':');
    if (colon == std::string::npos || colon + 1 == o->listen.size())
      throw usage_error("--listen takes HOST:PORT, got '" + o->listen + "'", "e.g. 127.0.0.1:8080");
    so.host = o->listen.substr(0, colon);
    if (so.host.size() > 2 && so.host.front() == '[' && so.host.back() == ']')
      so.host = so.host.substr(1, so.host.size() - 2);
    try {
      size_t used = 0;
      so.port = std::stoi(o->listen.substr(colon + 1), &used);
      if (used != o->listen.size() - colon - 1 || so.port < 0 || so.port > 65535)
        throw std::invalid_argument("port");
    } catch (const std::exception&) {
      throw usage_error("--listen: the port of '" + o->listen + "' is not a number in 0..65535");
    }
    if (o->parallel < 1) throw usage_error("--parallel must be at least 1");
    if (o->threads < 0) throw usage_error("--threads must be >= 0");
    so.parallel = o->parallel;
    so.queue = o->queue;
    so.threads = o->threads;
    so.tls_cert = o->tls_cert;
    so.tls_key = o->tls_key;
    if (!o->api_keys.empty()) so.api_keys = serve::load_api_keys(o->api_keys);
    so.model_id = o->name;
    if (so.model_id.empty()) {
      std::string p = o->model;
      while (p.size() > 1 && p.back() == '/') p.pop_back();
      so.model_id =
          p.substr(p.find_last_of('/') == std::string::npos ? 0 : p.find_last_of('/') + 1);
    }
    so.log = log_line;
    // The saved temperature is read before anything starts, so a missing one fails at once.
    if (o->temperature_scaling) so.temperature_scaling = jobs::load_temperature(o->model);
    if (o->otlp_queue < 1) throw usage_error("--otlp-queue must be at least 1");
    so.otlp_url = o->otlp;
    so.otlp_queue = o->otlp_queue;
    so.otlp_ca = o->otlp_ca;
    auto supervision = make_supervision(o->policy);

    // Signals are taken by this thread alone (sigwait below): blocked before any thread starts,
    // so every thread the server makes inherits the mask.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    const auto t0 = std::chrono::steady_clock::now();
    serve::Server server(so);
    server.set_supervision(supervision);
    server.bind();
    server.start();
    log_line("listening on " + server.url());
    if (so.api_keys.empty())
      log_line("no --api-keys: every role is allowed, and only loopback is served");
    if (so.temperature_scaling > 0)
      log_line("temperature scaling: every logit is divided by " +
               std::to_string(so.temperature_scaling) + " (" + jobs::temperature_path(o->model) +
               ")");
    if (!so.otlp_url.empty()) log_line("exporting OpenTelemetry spans to " + so.otlp_url);
    LoadOptions lo;
    lo.tokenizer_path = o->tokenizer;
    lo.compute_dtype = o->dtype;
    std::unique_ptr<Model> model = load_model(o->model, lo);
    store::AuditLogOptions lopt;
    lopt.durable = o->audit_sync == "full";
    std::shared_ptr<store::AuditLog> log = store::open_audit_log(o->db, lopt);
    server.set_model(model.get(), log, serve::weights_hash(*model));
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    log_line("ready: " + so.model_id + ", policy " + (o->policy.empty() ? "(default)" : o->policy) +
             " " + supervision->policy.hash.substr(0, 12) + ", audit log " + o->db +
             (lopt.durable ? "" : " (synchronous=NORMAL: not power-loss safe)") + ", " +
             std::to_string(static_cast<int64_t>(ms)) + " ms");

    for (;;) {
      int sig = 0;
      if (sigwait(&signals, &sig) != 0) continue;
      if (sig != SIGHUP) {
        log_line(std::string("stopping (") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") +
                 "): finishing the requests in flight");
        break;
      }
      try {
        auto next = make_supervision(o->policy);
        server.set_supervision(next);
        log_line("policy reloaded: " + next->policy.hash.substr(0, 12));
      } catch (const Error& e) {
        log_line(std::string("policy NOT reloaded (the old one stays): ") + e.what() +
                 (e.hint().empty() ? "" : " (hint: " + e.hint() + ")"));
      }
    }
    server.stop();
    log->close();
    log_line("stopped; the audit log is closed");
    return 0;
  };
}

}  // namespace candor::cli
