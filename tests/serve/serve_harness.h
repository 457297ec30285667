// What the in-process service tests share: an in-memory audit log and a real server over
// stories260K on 127.0.0.1 (a free port), talked to with httplib's client.
#pragma once

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "candor/serve.h"
#include "test_util.h"

namespace candor::serve_test {

using nlohmann::json;
using testing::stories260k;

// The audit log in memory: ids and sequence numbers assigned on append, a full queue simulated.
class MemoryLog : public store::AuditLog {
 public:
  store::AuditRecord append(store::AuditRecord r) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (full) throw Error(ErrorCode::kResourceExhausted, "the audit queue is full");
    if (closed_) throw Error(ErrorCode::kInternal, "closed");
    r.seq = static_cast<int64_t>(records_.size()) + 1;
    r.id = "rec" + std::to_string(r.seq);
    r.time_ms = 1000 + r.seq;
    records_.push_back(r);
    return r;
  }
  std::optional<store::AuditRecord> get(const std::string& id) const override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& r : records_)
      if (r.id == id) return r;
    return std::nullopt;
  }
  store::AuditPage query(const store::AuditQuery& q) const override {
    std::lock_guard<std::mutex> lock(mu_);
    store::AuditPage page;
    for (const auto& r : records_) {
      if (!q.decision.empty() && r.decision != q.decision) continue;
      if (!q.key_id.empty() && r.key_id != q.key_id) continue;
      if (!q.refers_to.empty() && r.refers_to != q.refers_to) continue;
      ++page.total;
      if (page.total > q.offset && static_cast<int64_t>(page.records.size()) < q.limit)
        page.records.push_back(r);
    }
    return page;
  }
  size_t queue_depth() const override { return 0; }
  void close() override {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
  }
  std::vector<store::AuditRecord> records() const {
    std::lock_guard<std::mutex> lock(mu_);
    return records_;
  }
  std::atomic<bool> full{false};

 private:
  mutable std::mutex mu_;
  std::vector<store::AuditRecord> records_;
  bool closed_ = false;
};

// A server over stories260K with an in-memory log, started on a free port.
struct Running {
  std::shared_ptr<MemoryLog> log = std::make_shared<MemoryLog>();
  std::unique_ptr<serve::Server> server;
  std::vector<std::string> lines;
  std::mutex lines_mu;
  Running(serve::ServerOptions o, std::shared_ptr<serve::Supervision> sup) {
    o.host = "127.0.0.1";
    o.port = 0;
    o.model_id = "stories260K";
    o.log = [this](const std::string& l) {
      std::lock_guard<std::mutex> lock(lines_mu);
      lines.push_back(l);
    };
    server = std::make_unique<serve::Server>(o);
    server->set_supervision(sup);
    server->bind();
    server->start();
    server->set_model(&stories260k(), log, serve::weights_hash(stories260k()));
  }
  ~Running() { server->stop(); }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", server->port());
    c.set_read_timeout(120, 0);
    c.set_connection_timeout(5, 0);
    return c;
  }
  // POSTs `body` (JSON) and returns status and parsed body.
  std::pair<int, json> post(const std::string& path, const json& body,
                            const httplib::Headers& headers = {}) const {
    return post_raw(path, body.dump(), headers);
  }
  std::pair<int, json> post_raw(const std::string& path, const std::string& body,
                                const httplib::Headers& headers = {}) const {
    auto c = client();
    auto r = c.Post(path.c_str(), headers, body, "application/json");
    if (!r) return {-1, json()};
    json j = json::parse(r->body, nullptr, false);
    return {r->status, j};
  }
  std::pair<int, json> get(const std::string& path, const httplib::Headers& headers = {}) const {
    auto c = client();
    auto r = c.Get(path.c_str(), headers);
    if (!r) return {-1, json()};
    return {r->status, json::parse(r->body, nullptr, false)};
  }
  // The /metrics text ("" when the server does not answer).
  std::string metrics() const {
    auto c = client();
    auto r = c.Get("/metrics");
    return r ? r->body : std::string();
  }
};

}  // namespace candor::serve_test
