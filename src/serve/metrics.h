// The service's Prometheus metrics and its admission gate. No libtorch: the ThreadSanitizer
// build (cmake/tsan) compiles them with the scheduler and their tests.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace candor::serve {

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

}  // namespace candor::serve
