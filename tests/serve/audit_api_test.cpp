// GET /v1/audit/records over the real SQLite audit log: every filter (time range, decision,
// check, model, key) and paging, checked against a brute-force filter of all the records; the
// `user` of a request is recorded; bad query parameters are 400s naming the parameter.
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "candor/audit_log.h"
#include "candor/serve.h"
#include "candor/supervise.h"
#include "test_util.h"

namespace candor {
namespace {

using nlohmann::json;
using testing::stories260k;

class AuditApi : public ::testing::Test {
 protected:
  void SetUp() override { CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin"); }
};

std::pair<int, json> call(int port, const std::string& method, const std::string& path,
                          const httplib::Headers& headers, const json& body = nullptr) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(120, 0);
  c.set_connection_timeout(5, 0);
  auto r = method == "GET" ? c.Get(path.c_str(), headers)
                           : c.Post(path.c_str(), headers, body.dump(), "application/json");
  if (!r) return {-1, json()};
  return {r->status, json::parse(r->body, nullptr, false)};
}

TEST_F(AuditApi, FiltersAndPagingMatchABruteForceFilterOfAllRecords) {
  const std::string dir = testing::temp_dir();
  std::shared_ptr<store::AuditLog> log = store::open_audit_log(dir + "/audit.db");
  auto sup = std::make_shared<serve::Supervision>();
  // Answers of more than 3 tokens fail the length check and are flagged.
  sup->policy = supervise::parse_policy(
      "explain:\n  enabled: false\nlimits:\n  max_tokens: 16\n"
      "checks:\n  - name: short\n    type: length\n    max_tokens: 3\n    on_fail: flag\n",
      "audit-api.yaml");
  auto supervisor = std::make_shared<supervise::Supervisor>(sup->policy);
  sup->review = [supervisor](const supervise::Exchange& e) { return supervisor->review(e); };
  serve::ServerOptions o;
  o.host = "127.0.0.1";
  o.port = 0;
  o.model_id = "stories260K";
  o.api_keys = {{"k1", "client", serve::sha256_hex("key-one")},
                {"k2", "client", serve::sha256_hex("key-two")},
                {"aud", "auditor", serve::sha256_hex("key-aud")}};
  serve::Server server(o);
  server.set_supervision(sup);
  server.bind();
  server.start();
  server.set_model(&stories260k(), log, serve::weights_hash(stories260k()));
  const int port = server.port();
  const httplib::Headers k1 = {{"Authorization", "Bearer key-one"}},
                         k2 = {{"Authorization", "Bearer key-two"}},
                         aud = {{"Authorization", "Bearer key-aud"}};
  // 9 requests: keys alternate k1, k2, k2; short (2 tokens, allowed) and long (6, flagged).
  std::vector<std::string> ids;
  for (int i = 0; i < 9; ++i) {
    const json req = {{"prompt", "Once upon a time"},
                      {"max_tokens", i % 2 == 0 ? 2 : 6},
                      {"seed", i},
                      {"user", "user-" + std::to_string(i)}};
    auto [status, body] = call(port, "POST", "/v1/completions", i % 3 == 0 ? k1 : k2, req);
    ASSERT_EQ(status, 200) << body.dump();
    ids.push_back(body["candor"]["audit_id"]);
  }
  auto [sa, all] = call(port, "GET", "/v1/audit/records?limit=1000", aud);
  ASSERT_EQ(sa, 200) << all.dump();
  ASSERT_EQ(all["total"], 9);
  const json recs = all["data"];
  ASSERT_EQ(recs.size(), 9u);
  for (size_t i = 0; i < recs.size(); ++i) {
    EXPECT_EQ(recs[i]["id"], ids[i]) << "oldest first";
    EXPECT_EQ(recs[i]["user"], "user-" + std::to_string(i)) << "the request's user is recorded";
    EXPECT_EQ(recs[i]["key_id"], i % 3 == 0 ? "k1" : "k2");
    EXPECT_EQ(recs[i]["decision"], i % 2 == 0 ? "allow" : "flag") << recs[i].dump();
  }

  // Each filter against the same filter applied by hand to all the records.
  const int64_t t_from = recs[2]["time_ms"], t_to = recs[6]["time_ms"];
  struct Case {
    std::string query;
    std::function<bool(const json&)> keep;
  };
  const std::vector<Case> cases = {
      {"decision=flag", [](const json& r) { return r["decision"] == "flag"; }},
      {"decision=allow", [](const json& r) { return r["decision"] == "allow"; }},
      {"check=short", [](const json& r) { return r["decision"] == "flag"; }},
      {"key=k1", [](const json& r) { return r["key_id"] == "k1"; }},
      {"key=k2&decision=flag",
       [](const json& r) { return r["key_id"] == "k2" && r["decision"] == "flag"; }},
      {"model=stories260K", [](const json&) { return true; }},
      {"model=other", [](const json&) { return false; }},
      {"from=" + std::to_string(t_from) + "&to=" + std::to_string(t_to),
       [&](const json& r) { return r["time_ms"] >= t_from && r["time_ms"] < t_to; }},
  };
  for (const Case& c : cases) {
    std::vector<std::string> want;
    for (const json& r : recs)
      if (c.keep(r)) want.push_back(r["id"]);
    auto [s, page] = call(port, "GET", "/v1/audit/records?" + c.query, aud);
    ASSERT_EQ(s, 200) << c.query << " " << page.dump();
    EXPECT_EQ(page["total"], want.size()) << c.query;
    std::vector<std::string> got;
    for (const json& r : page["data"]) got.push_back(r["id"]);
    EXPECT_EQ(got, want) << c.query;
  }
  // Paging: pages of 4 give every record once, in order.
  std::vector<std::string> paged;
  for (int offset = 0; offset < 12; offset += 4) {
    auto [s, page] = call(port, "GET",
                          "/v1/audit/records?limit=4&offset=" + std::to_string(offset), aud);
    ASSERT_EQ(s, 200) << page.dump();
    EXPECT_EQ(page["total"], 9);
    EXPECT_EQ(page["data"].size(), offset < 8 ? 4u : 1u) << offset;
    for (const json& r : page["data"]) paged.push_back(r["id"]);
  }
  EXPECT_EQ(paged, ids);
  // One record by id.
  auto [s1, one] = call(port, "GET", "/v1/audit/records/" + ids[3], aud);
  ASSERT_EQ(s1, 200) << one.dump();
  EXPECT_EQ(one["user"], "user-3");
  // Bad parameters: 400, naming the parameter.
  for (const std::string& q : {"limit=0", "limit=1001", "offset=-1", "from=yesterday", "to=1x",
                               "decision=maybe"}) {
    auto [s, err] = call(port, "GET", "/v1/audit/records?" + q, aud);
    EXPECT_EQ(s, 400) << q << " " << err.dump();
    const std::string name = q.substr(0, q.find('='));
    EXPECT_NE(err["error"]["message"].get<std::string>().find("'" + name + "'"),
              std::string::npos)
        << q << " " << err.dump();
  }
  server.stop();
  log->close();
}

}  // namespace
}  // namespace candor
