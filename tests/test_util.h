// Helpers shared by the tests: where ../shared is, and skipping when it is absent.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "candor/error.h"
#include "candor/model.h"

namespace candor::testing {

// The shared data folder: $CANDOR_SHARED, or ../shared beside the source tree.
std::string shared_dir();
// True when shared_dir()/relative exists.
bool shared_has(const std::string& relative);
// Full path of a file under shared_dir().
std::string shared_path(const std::string& relative);
// stories260K from ../shared, loaded once per test binary (call only after
// CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin")).
const Model& stories260k();
// The built-in language model (models/builtin/lm in the source tree), loaded once per test binary.
const Model& builtin_lm();
// Largest |a[i] - b[i]| over the largest |b[i]| (sizes must match: a failed expectation else).
double max_rel(const std::vector<double>& a, const std::vector<double>& b);
// A fresh temporary directory for one test (removed by the OS, not by the test).
std::string temp_dir();
// Runs a shell command, returns its exit status; stdout and stderr go to *out when given.
int run_command(const std::string& command, std::string* out = nullptr);
// One run of the candor binary under test (CANDOR_CLI_PATH) with `args`: its exit code and its
// stdout and stderr together.
struct CliRun {
  int code;
  std::string out;
};
CliRun run_cli(const std::string& args);
// The message of the candor::Error that f() throws, or "(no error)".
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace candor::testing

// Skips the current test with a message when a file under ../shared is missing.
#define CANDOR_REQUIRE_SHARED(relative)                                           \
  do {                                                                            \
    if (!::candor::testing::shared_has(relative)) {                               \
      GTEST_SKIP() << "skipped: needs ../shared/" << (relative)                   \
                   << " (the shared models and data are absent on this machine)"; \
    }                                                                             \
  } while (0)

namespace candor::testing {
// Writes a legacy llama2.c checkpoint with small random weights (header fields as given;
// vocab_size < 0 means an unshared output matrix, as in the format). Returns the path.
std::string write_llama2c_checkpoint(const std::string& path, int dim, int hidden_dim, int n_layers,
                                     int n_heads, int n_kv_heads, int vocab_size, int seq_len,
                                     unsigned seed = 1);
// Copies the first `n` bytes of `src` to `dst` (n < 0: all, then appends -n zero bytes).
void copy_prefix(const std::string& src, const std::string& dst, long n);
// Writes a tiny supervised fastText model (file version 12, softmax, dim 2, no n-grams): words
// good (2, 0), bad (-2, 0), movie (0, 1), </s> (0, 0); labels __label__pos (1, 0), __label__neg
// (-1, 0). logit(pos) - logit(neg) of a text is the mean over its words and </s> of 2 * x[0].
// Returns the path.
std::string write_tiny_fasttext(const std::string& path);
}  // namespace candor::testing
