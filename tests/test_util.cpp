// Helpers shared by the tests.
#include "test_util.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <vector>
#include <cstdio>
#include <cstdlib>

namespace candor::testing {

std::string shared_dir() {
  if (const char* env = std::getenv("CANDOR_SHARED")) return env;
  return std::string(CANDOR_SOURCE_DIR) + "/../shared";
}

bool shared_has(const std::string& relative) {
  struct stat st {};
  return ::stat(shared_path(relative).c_str(), &st) == 0;
}

std::string shared_path(const std::string& relative) { return shared_dir() + "/" + relative; }

const Model& stories260k() {
  static std::unique_ptr<Model> m = load_model(shared_path("models/stories260K"));
  return *m;
}

const Model& builtin_lm() {
  static const std::unique_ptr<Model> m =
      load_model(std::string(CANDOR_SOURCE_DIR) + "/models/builtin/lm");
  return *m;
}

double max_rel(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double scale = 1e-30, diff = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    scale = std::max(scale, std::abs(b[i]));
    diff = std::max(diff, std::abs(a[i] - b[i]));
  }
  return diff / scale;
}

namespace {
// Every directory temp_dir() made, removed when the test process ends (set
// CANDOR_KEEP_TEST_DIRS=1 to keep them for a look after a failure).
struct TempDirs {
  std::mutex mu;
  std::vector<std::string> made;
  ~TempDirs() {
    if (std::getenv("CANDOR_KEEP_TEST_DIRS") != nullptr) return;
    for (const auto& d : made) {
      std::error_code ec;
      std::filesystem::remove_all(d, ec);
    }
  }
};
TempDirs& temp_dirs() {
  static TempDirs dirs;
  return dirs;
}
}  // namespace

std::string temp_dir() {
  // mkdtemp gives a fresh, empty directory every time. A name built from the pid alone was
  // reused when a fresh CI container recycled the pid of an earlier test process, and the test
  // then read that process's leftover files.
  std::string tmpl = "/tmp/candor-test-" + std::to_string(::getpid()) + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) {
    throw std::runtime_error("cannot create a temporary directory under /tmp: " +
                             std::string(std::strerror(errno)));
  }
  std::string dir(buf.data());
  std::lock_guard<std::mutex> lock(temp_dirs().mu);
  temp_dirs().made.push_back(dir);
  return dir;
}

int run_command(const std::string& command, std::string* out) {
  std::string full = command + " 2>&1";
  FILE* pipe = ::popen(full.c_str(), "r");
  if (pipe == nullptr) return -1;
  std::array<char, 4096> buf{};
  size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) {
    if (out) out->append(buf.data(), n);
  }
  int status = ::pclose(pipe);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

CliRun run_cli(const std::string& args) {
  CliRun r;
  r.code = run_command(std::string(CANDOR_CLI_PATH) + " " + args, &r.out);
  return r;
}

}  // namespace candor::testing

#include <fstream>
#include <random>
#include <vector>

namespace candor::testing {

std::string write_llama2c_checkpoint(const std::string& path, int dim, int hidden_dim, int n_layers,
                                     int n_heads, int n_kv_heads, int vocab_size, int seq_len,
                                     unsigned seed) {
  std::ofstream f(path, std::ios::binary);
  int32_t header[7] = {dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len};
  f.write(reinterpret_cast<const char*>(header), sizeof(header));
  const long V = vocab_size < 0 ? -vocab_size : vocab_size, L = n_layers, D = dim, F = hidden_dim,
             hd = dim / n_heads, kv = n_kv_heads * hd;
  long n = V * D + L * D + L * D * D + 2 * L * D * kv + L * D * D + L * D + 3 * L * D * F + D +
           static_cast<long>(seq_len) * hd + (vocab_size < 0 ? V * D : 0);
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.05f);
  std::vector<float> w(n);
  for (auto& x : w) x = dist(rng);
  f.write(reinterpret_cast<const char*>(w.data()), static_cast<std::streamsize>(w.size() * 4));
  return path;
}

void copy_prefix(const std::string& src, const std::string& dst, long n) {
  std::ifstream in(src, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::ofstream out(dst, std::ios::binary);
  if (n >= 0) {
    out.write(bytes.data(), std::min<long>(n, static_cast<long>(bytes.size())));
  } else {
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    std::vector<char> zeros(-n, 0);
    out.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
  }
}

std::string write_tiny_fasttext(const std::string& path) {
  std::ofstream f(path, std::ios::binary);
  auto i32 = [&](int32_t v) { f.write(reinterpret_cast<const char*>(&v), 4); };
  auto i64 = [&](int64_t v) { f.write(reinterpret_cast<const char*>(&v), 8); };
  auto f64 = [&](double v) { f.write(reinterpret_cast<const char*>(&v), 8); };
  auto u8 = [&](uint8_t v) { f.write(reinterpret_cast<const char*>(&v), 1); };
  auto entry = [&](const std::string& s, int64_t count, int8_t type) {
    f.write(s.c_str(), static_cast<std::streamsize>(s.size() + 1));
    i64(count);
    u8(static_cast<uint8_t>(type));
  };
  auto matrix = [&](int64_t rows, int64_t cols, const std::vector<float>& v) {
    i64(rows);
    i64(cols);
    f.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
  };
  i32(793712314);  // magic
  i32(12);         // version
  // dim, ws, epoch, minCount, neg, wordNgrams, loss (softmax), model (supervised), bucket,
  // minn, maxn, lrUpdateRate, t
  for (int32_t v : {2, 5, 5, 1, 5, 1, 3, 3, 0, 0, 0, 100}) i32(v);
  f64(1e-4);
  i32(6);    // dictionary size
  i32(4);    // words
  i32(2);    // labels
  i64(100);  // tokens seen
  i64(-1);   // no pruned index
  entry("good", 10, 0);
  entry("bad", 10, 0);
  entry("movie", 10, 0);
  entry("</s>", 10, 0);
  entry("__label__pos", 5, 1);
  entry("__label__neg", 5, 1);
  u8(0);  // dense input
  matrix(4, 2, {2, 0, -2, 0, 0, 1, 0, 0});
  u8(0);  // dense output
  matrix(2, 2, {1, 0, -1, 0});
  return path;
}

}  // namespace candor::testing
