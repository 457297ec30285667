// Checks and model loading shared by the subcommands that take a prompt; the Ctrl-C handler.
#include <csignal>
#include <iostream>

#include "candor/runtime.h"
#include "candor/tokenizer.h"
#include "cli.h"

namespace candor::cli {

namespace {

CancelToken g_interrupt;
struct sigaction g_previous;

// Async-signal-safe: an atomic store, and on the second Ctrl-C the default action.
extern "C" void on_interrupt(int sig) {
  if (g_interrupt.cancelled()) {
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  g_interrupt.cancel();
}

}  // namespace

InterruptScope::InterruptScope() {
  g_interrupt.reset();
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, &g_previous);
}

InterruptScope::~InterruptScope() { sigaction(SIGINT, &g_previous, nullptr); }

const CancelToken& interrupt_token() { return g_interrupt; }

int report_interrupted(const Error& e, const std::string& hint) {
  std::cerr << "\ninterrupted: " << e.what() << "\n";
  if (!hint.empty()) std::cerr << "hint: " << hint << "\n";
  return kExitInterrupted;
}

std::string json_text(const nlohmann::json& j) {
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

void check_labels(const data::Table& table, const std::string& label) {
  const data::Column& lc = table.column(label);
  size_t first = table.n_rows(), n = 0;
  for (size_t r = 0; r < table.n_rows(); ++r) {
    if (!lc.is_missing(r)) continue;
    if (n++ == 0) first = r;
  }
  if (n == 0) return;
  throw Error(ErrorCode::kInvalidArgument,
              table.where(first) + ", column '" + label + "': missing label" +
                  (n > 1 ? " (" + std::to_string(n) + " rows lack one; this is the first)"
                         : std::string()),
              "drop unlabelled rows or fill them in");
}

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
