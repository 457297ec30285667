// Shared pieces of the candor subcommands: registration functions and error reporting.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <string>

#include "candor/cancel.h"
#include "candor/data.h"
#include "candor/error.h"
#include "candor/jobs_common.h"
#include "candor/model.h"
#include "candor/tokenizer.h"

namespace candor::cli {

// A subcommand registers its options on `app` and returns the function that runs it.
using Runner = std::function<int()>;

Runner add_info(CLI::App& app);
Runner add_generate(CLI::App& app);
Runner add_explain(CLI::App& app);
Runner add_methods(CLI::App& app);
Runner add_distill(CLI::App& app);
Runner add_train(CLI::App& app);
Runner add_evaluate(CLI::App& app);
Runner add_convert(CLI::App& app);
Runner add_audit(CLI::App& app);
Runner add_serve(CLI::App& app);
// `candor audit verify-log | check-policy | supervise` (cmd_audit_supervision.cpp); the runner
// returns -1 when none of them was given.
Runner add_audit_supervision(CLI::App& audit);
Runner add_predict(CLI::App& app);

// An invalid command-line value: reported with exit code 2, as every jobs::RequestError is.
class UsageError : public jobs::RequestError {
 public:
  UsageError(const std::string& message, const std::string& hint)
      : jobs::RequestError(message, hint) {}
};
inline UsageError usage_error(const std::string& message, const std::string& hint = {}) {
  return UsageError(message, hint.empty() ? "see candor --help" : hint);
}

// Usage errors for a prompt that is not UTF-8 or a --threads below 0 or above 4 x the cores.
void check_prompt_and_threads(const std::string& prompt, int threads);
// Sets the thread count and loads the model (tokenizer "" = found beside it) to compute in
// `dtype` (LoadOptions::compute_dtype).
std::unique_ptr<Model> load_cli_model(const std::string& model, const std::string& tokenizer,
                                      int threads, const std::string& dtype = "f32");
// Adds --dtype f32|bf16 (the compute dtype) to a subcommand; f16 is refused with what to use.
void add_dtype_option(CLI::App& app, std::string* dtype);

// Adds --chat and --system to a subcommand.
void add_chat_options(CLI::App& app, bool* chat, std::string* system);

// LM students (cmd_lm.cpp): `candor distill --student lm[:opts]` and `candor train --student lm`.
struct LmCliArgs {
  std::string teacher, tokenizer, data, text_column = "text", out, student = "lm",
                                        on_error = "fail";
  uint64_t seed = 0;
  int threads = 0;  // 0: one thread
  bool resume = false, no_progress = false;
  int64_t stop_after_steps = -1;
};
bool is_lm_student(const std::string& spec);
int run_lm_student(const LmCliArgs& args);

// Ctrl-C for the commands that stop cleanly (train, distill, explain, evaluate): while an
// InterruptScope lives, the first SIGINT only sets interrupt_token(), which the work polls
// between its steps (it then keeps what is done: a checkpoint, the finished methods); a second
// SIGINT ends the process at once. The handler does nothing else. Scopes do not nest.
class InterruptScope {
 public:
  InterruptScope();
  ~InterruptScope();
  InterruptScope(const InterruptScope&) = delete;
  InterruptScope& operator=(const InterruptScope&) = delete;
};
const CancelToken& interrupt_token();
// Prints "interrupted: WHAT" and `hint` for a cancelled run; returns kExitInterrupted.
int report_interrupted(const Error& e, const std::string& hint);
// How often the training commands write their checkpoint besides at the end and on Ctrl-C.
constexpr double kCheckpointSeconds = 30;

// JSON text for an output file: indented by 2, a newline at the end; bytes that are not UTF-8
// become U+FFFD (never a raw nlohmann type_error).
std::string json_text(const nlohmann::json& j);

// Throws Error naming the first line (in file order) whose `label` is missing, and how many
// rows lack one: every row of the table (trained on or held out) needs its label.
void check_labels(const data::Table& table, const std::string& label);

// Exit codes: 0 ok, 1 runtime error, 2 usage error, 130 interrupted (128 + SIGINT, what a shell
// reports for a command ended by Ctrl-C).
constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;
constexpr int kExitInterrupted = 130;

}  // namespace candor::cli
