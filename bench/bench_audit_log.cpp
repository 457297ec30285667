// Audit records committed per second by the SQLite audit log with durability on (synchronous=FULL:
// an fsync per commit), at 1, 4, 16 and 64 concurrent appenders: group commit (everything queued
// in one transaction, up to 512) against one transaction per record (max_batch = 1), side by
// side. Each configuration appends for a fixed time into a fresh file.
//   bench_audit_log [--seconds S] [--dir FOLDER] [--json]
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "candor/audit_log.h"

using candor::store::AuditLogOptions;
using candor::store::AuditRecord;

namespace {

AuditRecord sample(int i) {
  AuditRecord r;
  r.endpoint = "/v1/completions";
  r.key_id = "k1";
  r.model_id = "stories260K";
  r.weights_hash = std::string(64, 'a');
  r.policy_hash = std::string(64, 'b');
  r.parameters = {{"max_tokens", 32}, {"temperature", 0.0}, {"seed", i}};
  r.prompt = "Once upon a time, there was a little girl named Lily who loved to play outside.";
  r.answer = "She saw a big red ball in the park and wanted to play with it all day long.";
  r.explanation = {
      {"method", "occlusion"},
      {"top", {{{"feature", "girl"}, {"score", 0.31}}, {{"feature", "play"}, {"score", 0.12}}}}};
  r.checks = nlohmann::json::array({{{"name", "uncertainty"}, {"value", 1.2}, {"outcome", "pass"}},
                                    {{"name", "length"}, {"value", 18}, {"outcome", "pass"}}});
  r.decision = "allow";
  r.timings = {{"generate_ms", 20.0}, {"explain_ms", 30.0}};
  return r;
}

struct Result {
  double records_per_s = 0;
  double records_per_transaction = 0;
  int64_t records = 0;
};

Result run(const std::string& path, int appenders, size_t max_batch, double seconds) {
  std::filesystem::remove(path);
  AuditLogOptions options;
  options.durable = true;
  options.max_batch = max_batch;
  options.queue_capacity = 4096;
  auto log = candor::store::open_audit_log(path, options);
  std::atomic<bool> stop{false};
  std::atomic<int64_t> acked{0};
  std::vector<std::thread> threads;
  auto start = std::chrono::steady_clock::now();
  for (int t = 0; t < appenders; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; !stop.load(); ++i) {
        log->append(sample(t * 1000000 + i));
        ++acked;
      }
    });
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& th : threads) th.join();
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  auto stats = log->stats();
  log->close();
  Result r;
  r.records = acked.load();
  r.records_per_s = static_cast<double>(r.records) / elapsed;
  r.records_per_transaction = stats.transactions ? static_cast<double>(stats.records) /
                                                       static_cast<double>(stats.transactions)
                                                 : 0;
  auto report = candor::store::verify_audit_log(path);
  if (!report.ok || report.records != r.records) {
    std::cerr << "verify failed after the run (" << report.records << " records)\n";
    std::exit(1);
  }
  std::filesystem::remove(path);
  std::filesystem::remove(path + "-wal");
  std::filesystem::remove(path + "-shm");
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 2.0;
  std::string dir;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--seconds") && i + 1 < argc)
      seconds = std::atof(argv[++i]);
    else if (!std::strcmp(argv[i], "--dir") && i + 1 < argc)
      dir = argv[++i];
    else if (!std::strcmp(argv[i], "--json"))
      json = true;
    else {
      std::cerr << "usage: bench_audit_log [--seconds S] [--dir FOLDER] [--json]\n";
      return 2;
    }
  }
  if (dir.empty()) dir = std::filesystem::temp_directory_path().string();
  std::string path = dir + "/bench_audit_log_" + std::to_string(::getpid()) + ".db";
  nlohmann::json out = nlohmann::json::array();
  if (!json)
    std::printf("%-10s %22s %22s %8s %14s\n", "appenders", "group commit rec/s",
                "one txn/record rec/s", "ratio", "records/txn");
  for (int appenders : {1, 4, 16, 64}) {
    Result grouped = run(path, appenders, 512, seconds);
    Result single = run(path, appenders, 1, seconds);
    double ratio = single.records_per_s > 0 ? grouped.records_per_s / single.records_per_s : 0;
    if (!json)
      std::printf("%-10d %22.0f %22.0f %7.1fx %14.1f\n", appenders, grouped.records_per_s,
                  single.records_per_s, ratio, grouped.records_per_transaction);
    out.push_back({{"appenders", appenders},
                   {"group_commit_records_per_s", grouped.records_per_s},
                   {"single_records_per_s", single.records_per_s},
                   {"ratio", ratio},
                   {"records_per_transaction", grouped.records_per_transaction}});
  }
  if (json) std::cout << out.dump(2) << "\n";
  return 0;
}
