// Checks and model loading shared by the subcommands that take a prompt.
#include "candor/runtime.h"
#include "candor/tokenizer.h"
#include "cli.h"

namespace candor::cli {

void check_prompt_and_threads(const std::string& prompt, int threads) {
  jobs::check_threads(threads);
  jobs::check_prompt(prompt);
}

std::unique_ptr<Model> load_cli_model(const std::string& model, const std::string& tokenizer,
                                      int threads, const std::string& dtype) {
  set_num_threads(threads);
  LoadOptions lo;
  lo.tokenizer_path = tokenizer;
  lo.compute_dtype = dtype;
  return load_model(model, lo);
}

void add_dtype_option(CLI::App& app, std::string* dtype) {
  // f16 is not offered: libtorch's CPU kernels have no float16 matmul, so it could only fail
  // (docs/model-formats.md); asking for it says what to use instead.
  app.add_option("--dtype", *dtype,
                 "Compute dtype: f32 (default) or bf16 (weights kept in bfloat16: half the "
                 "memory, logits within a few percent)")
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            if (v == "f32" || v == "bf16") return {};
            if (v == "f16" || v == "float16" || v == "half")
              return "f16 is not a compute dtype on CPU (libtorch has no float16 matmul "
                     "kernels); use bf16 for half the memory, or f32";
            return "'" + v + "' is not a compute dtype: use f32 or bf16";
          },
          "{f32,bf16}"));
}

void add_chat_options(CLI::App& app, bool* chat, std::string* system) {
  app.add_flag("--chat", *chat,
               "Wrap the prompt as a user message in the model's chat template (Hugging Face "
               "models: Llama 2, Mistral, Llama 3, ChatML)");
  app.add_option("--system", *system, "System message for --chat")->needs("--chat");
}

}  // namespace candor::cli
