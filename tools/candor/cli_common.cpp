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
                                      int threads, const std::string& dtype) {
  set_num_threads(threads);
  LoadOptions lo;
  lo.tokenizer_path = tokenizer;
  lo.compute_dtype = dtype;
  return load_model(model, lo);
}

void add_dtype_option(CLI::App& app, std::string* dtype) {
  app.add_option("--dtype", *dtype,
                 "Compute dtype: f32 (default) or bf16 (weights kept in bfloat16: half the "
                 "memory, logits within a few percent); f16 has no CPU kernels in libtorch")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}));
}

std::vector<TokenId> encode_prompt(const Tokenizer& tok, const std::string& prompt, bool chat,
                                   const std::string& system) {
  if (!chat) return tok.encode(prompt, true, false);
  std::vector<ChatMessage> messages;
  if (!system.empty()) messages.push_back({"system", system});
  messages.push_back({"user", prompt});
  // The template writes BOS itself where the format has one.
  return tok.encode(tok.apply_chat_template(messages, true), false, false);
}

void add_chat_options(CLI::App& app, bool* chat, std::string* system) {
  app.add_flag("--chat", *chat,
               "Wrap the prompt as a user message in the model's chat template (Hugging Face "
               "models: Llama 2, Mistral, Llama 3, ChatML)");
  app.add_option("--system", *system, "System message for --chat")->needs("--chat");
}

}  // namespace candor::cli
