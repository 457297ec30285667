// Helpers shared by the tests.
#include "test_util.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
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

std::string temp_dir() {
  static std::atomic<int> counter{0};
  std::string base =
      "/tmp/candor-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  ::mkdir(base.c_str(), 0700);
  return base;
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

}  // namespace candor::testing
