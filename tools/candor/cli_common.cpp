// Checks and model loading shared by the subcommands that take a prompt.
#include "candor/runtime.h"
#include "candor/tokenizer.h"
#include "cli.h"

namespace candor::cli {

void check_prompt_and_threads(const std::string& prompt, int threads) {
  if (threads < 0) throw usage_error("--threads must be >= 0, got " + std::to_string(threads));
  size_t bad = 0;
  if (!is_valid_utf8(prompt, &bad)) {
    throw usage_error(
        "--prompt is not valid UTF-8 (bad byte sequence at offset " + std::to_string(bad) + ")",
        "pass the prompt as UTF-8 text");
  }
}

std::unique_ptr<Model> load_cli_model(const std::string& model, const std::string& tokenizer,
                                      int threads) {
  set_num_threads(threads);
  LoadOptions lo;
  lo.tokenizer_path = tokenizer;
  return load_model(model, lo);
}

}  // namespace candor::cli
