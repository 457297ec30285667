// The audits against the same computation in numpy (bench/audit_numpy.py, Debian's python3-numpy),
// timed side by side in one run, and the streaming memory of the group audit:
//  1. group fairness over the Adult training data (sex, race; a rule-based decision and score)
//     with 1,000 stratified bootstrap resamples;
//  2. calibration (temperature fitted on a half) and split conformal sets (LAC, APS) over
//     10,000 rows of three-class probabilities;
//  3. peak memory of `candor audit fairness --n-boot 0` over 1,000,000 rows against 100,000 rows
//     (and 1,000 rows, the process's base), each in a fresh process.
// Usage: bench_audit [--n-boot 1000] [--cli PATH] [--python PATH] [--no-memory]
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "candor/audit.h"
#include "candor/data.h"

namespace {

using clk = std::chrono::steady_clock;
double secs(clk::time_point a) { return std::chrono::duration<double>(clk::now() - a).count(); }

std::string shared_dir() {
  const char* e = std::getenv("CANDOR_SHARED");
  return e && *e ? e : std::string(CANDOR_SOURCE_DIR) + "/../shared";
}

// Adult with the decision and score of tests/cli/cli_audit_test.cpp's numpy script.
void write_adult(const std::string& src, const std::string& dst) {
  candor::data::Table t = candor::data::read_csv(src);
  std::ofstream f(dst);
  f << "label,pred,prob,gsex,grace\n";
  const auto& e = t.column("education_num");
  const auto& h = t.column("hours_per_week");
  const auto& g = t.column("capital_gain");
  const auto& sex = t.column("sex");
  const auto& race = t.column("race");
  const auto& inc = t.column("income");
  char buf[32];
  for (size_t r = 0; r < t.n_rows(); ++r) {
    const double z = 0.45 * (std::stod(e.raw[r]) - 11) + 0.04 * (std::stod(h.raw[r]) - 40) +
                     (std::stod(g.raw[r]) > 5000 ? 2.0 : 0.0) + (sex.raw[r] == "Male" ? 0.8 : 0.0);
    const double p = 1 / (1 + std::exp(-z));
    std::snprintf(buf, sizeof buf, "%.6f", p);
    f << (inc.raw[r] == ">50K") << "," << (p >= 0.5) << "," << buf << "," << sex.raw[r] << "," << race.raw[r] << "\n";
  }
}

// n rows of three-class probabilities (Dirichlet-like, seeded) and a label drawn from a tempered
// version of them, so the model is over-confident.
void write_probs(const std::string& dst, int n) {
  std::mt19937_64 rng(7);
  std::gamma_distribution<double> gam(0.7, 1.0);
  std::uniform_real_distribution<double> u(0, 1);
  std::ofstream f(dst);
  f << "label,p0,p1,p2\n";
  char buf[96];
  for (int i = 0; i < n; ++i) {
    double a[3], s = 0, b[3], sb = 0;
    for (double& x : a) s += x = gam(rng) + 1e-3;
    for (int k = 0; k < 3; ++k) sb += b[k] = std::pow(a[k] / s, 0.6);
    const double r = u(rng) * sb;
    const int y = r < b[0] ? 0 : r < b[0] + b[1] ? 1 : 2;
    std::snprintf(buf, sizeof buf, "%d,%.6f,%.6f,%.6f", y, a[0] / s, a[1] / s, 1 - a[0] / s - a[1] / s);
    f << buf << "\n";
  }
}

void write_big(const std::string& dst, int64_t n) {
  std::ofstream f(dst);
  f << "label,pred,prob,gsex,grace\n";
  const char* races[] = {"White", "Black", "Asian", "Other"};
  uint64_t x = 88172645463325252ull;
  char buf[96];
  for (int64_t i = 0; i < n; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    const double p = static_cast<double>(x % 1000000) / 1e6;
    std::snprintf(buf, sizeof buf, "%d,%d,%.6f,%s,%s\n", static_cast<int>((x >> 20) % 3 == 0), p >= 0.5 ? 1 : 0, p,
                  (x >> 30) % 2 ? "Male" : "Female", races[(x >> 40) % 4]);
    f << buf;
  }
}

// Peak resident memory (MiB) of a fresh process running `args`.
double peak_mib(const std::vector<std::string>& args) {
  std::cout.flush();
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) {
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    if (!std::freopen("/dev/null", "w", stdout)) _exit(127);
    execv(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  struct rusage ru {};
  wait4(pid, &status, 0, &ru);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

}  // namespace

int main(int argc, char** argv) {
  int n_boot = 1000;
  bool memory = true;
  std::string cli = std::filesystem::path(argv[0]).parent_path().parent_path() / "candor";
  std::string python = std::filesystem::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--n-boot" && i + 1 < argc) n_boot = std::atoi(argv[++i]);
    else if (a == "--cli" && i + 1 < argc) cli = argv[++i];
    else if (a == "--python" && i + 1 < argc) python = argv[++i];
    else if (a == "--no-memory") memory = false;
  }
  const std::string adult = shared_dir() + "/data/fairness/adult_train.csv";
  if (!std::filesystem::exists(adult)) {
    std::cout << "skipped: needs " << adult << " (set CANDOR_SHARED)\n";
    return 0;
  }
  const std::string dir = std::filesystem::temp_directory_path() / ("bench_audit_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  write_adult(adult, dir + "/adult.csv");
  write_probs(dir + "/probs.csv", 10000);

  // 1. fairness
  auto t0 = clk::now();
  candor::audit::AuditData d = candor::audit::read_audit_data(dir + "/adult.csv", {"label", "pred", {"prob"}, {"gsex", "grace"}});
  const double read_fair = secs(t0);
  double fair_1 = 0, fair_all = 0;
  for (int threads : {1, 0}) {
    t0 = clk::now();
    candor::audit::BinaryOutcomes o = candor::audit::binarize(d, {}, {});
    candor::audit::FairnessOptions fo;
    fo.n_boot = n_boot;
    fo.threads = threads;
    candor::audit::FairnessResult r = candor::audit::audit_fairness(o, d.groups, fo);
    (threads == 1 ? fair_1 : fair_all) = secs(t0);
    if (r.groups.empty()) return 1;
  }
  // 2. calibration + conformal
  t0 = clk::now();
  candor::audit::AuditData pd = candor::audit::read_audit_data(dir + "/probs.csv", {"label", "", {"p0", "p1", "p2"}, {}});
  const double read_cal = secs(t0);
  t0 = clk::now();
  candor::audit::ClassProbabilities cp = candor::audit::class_probabilities(pd, {"0", "1", "2"}, {});
  candor::audit::CalibrationResult cr = candor::audit::audit_calibration(cp, {});
  candor::audit::ConformalResult conf = candor::audit::audit_conformal(cp, {});
  const double cal = secs(t0);

  // numpy, same files, same run
  const std::string out = dir + "/numpy.json";
  const std::string cmd = python + " " + std::string(CANDOR_SOURCE_DIR) + "/bench/audit_numpy.py " + dir + "/adult.csv " +
                          dir + "/probs.csv " + std::to_string(n_boot) + " > " + out;
  if (std::system(cmd.c_str()) != 0) {
    std::cout << "numpy side failed (needs Debian's python3-numpy): " << cmd << "\n";
    return 1;
  }
  std::ifstream jf(out);
  std::string js((std::istreambuf_iterator<char>(jf)), std::istreambuf_iterator<char>());
  auto field = [&](const std::string& k) {
    const size_t p = js.find("\"" + k + "\": ");
    return p == std::string::npos ? -1.0 : std::atof(js.c_str() + p + k.size() + 4);
  };
  const double np_fair = field("fairness_compute_s"), np_cal = field("calibration_compute_s");
  std::printf("group fairness, Adult (%lld rows, sex + race), %d stratified bootstrap resamples:\n",
              static_cast<long long>(d.n_rows), n_boot);
  std::printf("  candor %.3f s on 1 thread, %.3f s on all threads (read %.3f s); numpy %.3f s (read %.3f s)\n", fair_1,
              fair_all, read_fair, np_fair, field("fairness_read_s"));
  std::printf("  ratio numpy / candor: %.1fx (1 thread), %.1fx (all threads)\n", np_fair / fair_1, np_fair / fair_all);
  std::printf("calibration + temperature + risk-coverage + conformal (LAC, APS), 10,000 rows x 3 classes:\n");
  std::printf("  candor %.4f s (read %.3f s); numpy %.4f s (read %.3f s); ratio %.1fx\n", cal, read_cal, np_cal,
              field("calibration_read_s"), np_cal / cal);
  std::printf("  coverage at alpha 0.1: candor LAC %.4f APS %.4f (numpy, its own seeded split: %s)\n",
              conf.methods[0].coverage, conf.methods[1].coverage,
              js.substr(js.find("\"coverage\"")).c_str());
  (void)cr;

  if (memory) {
    write_big(dir + "/r1k.csv", 1000);
    write_big(dir + "/r100k.csv", 100000);
    write_big(dir + "/r1m.csv", 1000000);
    auto run = [&](const std::string& f) {
      return peak_mib({cli, "audit", "fairness", "--data", f, "--label", "label", "--prediction", "pred",
                       "--probability", "prob", "--group", "gsex,grace", "--n-boot", "0", "--out", dir + "/o"});
    };
    const double m0 = run(dir + "/r1k.csv"), m1 = run(dir + "/r100k.csv"), m2 = run(dir + "/r1m.csv");
    std::printf("peak memory of `candor audit fairness --n-boot 0` (fresh process): 1k rows %.1f MiB, 100k rows "
                "%.1f MiB, 1M rows %.1f MiB; ratio 1M / 100k %.2f; above the 1k-row base: %.1f vs %.1f MiB\n",
                m0, m1, m2, m2 / m1, m2 - m0, m1 - m0);
  }
  std::filesystem::remove_all(dir);
  return 0;
}
