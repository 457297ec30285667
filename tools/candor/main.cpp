// The candor command-line tool: one binary, one subcommand per job.
#include <c10/util/Exception.h>

#include <filesystem>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "candor/files.h"
#include "candor/runtime.h"
#include "cli.h"

namespace {

int report(const std::string& what, const std::string& hint, int code) {
  std::cerr << "error: " << what << "\n";
  if (!hint.empty()) std::cerr << "hint: " << hint << "\n";
  return code;
}

// Commands that run no model (help, the version, the list of methods) need no BLAS kernels, so
// they skip prepare_process's re-execution, which loads every library a second time.
bool runs_kernels(int argc, char** argv) {
  if (argc < 2) return false;
  if (std::string(argv[1]) == "methods") return false;
  if (argc >= 3 && std::string(argv[1]) == "audit" &&
      (std::string(argv[2]) == "verify-log" || std::string(argv[2]) == "check-policy"))
    return false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h" || a == "--help-all" || a == "--version") return false;
  }
  return true;
}

// `candor-engine --write-launcher-texts DIR`: what the launcher prints for --version, --help and
// methods (with and without --json), written at build time from this command line, so that
// those commands never load libtorch. Each file is written whole or not at all.
int write_launcher_texts(CLI::App& app, CLI::App* methods, candor::cli::Runner run_methods,
                         const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  auto write = [&](const std::string& name, const std::string& text) {
    candor::write_file_atomic(dir + "/" + name, text);
  };
  write("version.txt", app.version() + "\n");
  write("help.txt", app.help());
  auto capture = [&](std::vector<std::string> args) {  // in reverse order, as CLI11 takes them
    std::ostringstream out;
    std::streambuf* old = std::cout.rdbuf(out.rdbuf());
    try {
      app.clear();
      app.parse(args);
      if (!methods->parsed()) throw std::runtime_error("methods was not parsed");
      run_methods();
    } catch (...) {
      std::cout.rdbuf(old);
      throw;
    }
    std::cout.rdbuf(old);
    return out.str();
  };
  write("methods.txt", capture({"methods"}));
  write("methods-json.txt", capture({"--json", "methods"}));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (runs_kernels(argc, argv)) candor::prepare_process(argc, argv);
  CLI::App app{"candor: explanations for language models", "candor"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "candor 0.1.0");
  std::map<CLI::App*, candor::cli::Runner> runners;
  auto add = [&](const char* name, const char* help, auto fn) {
    CLI::App* sub = app.add_subcommand(name, help);
    runners[sub] = fn(*sub);
  };
  add("info", "Show what a model is and how candor will run it", candor::cli::add_info);
  add("generate", "Generate text from a prompt", candor::cli::add_generate);
  add("explain", "Attribute a model output to its input", candor::cli::add_explain);
  add("evaluate", "Grade attribution methods over a data set (faithfulness, sensitivity)",
      candor::cli::add_evaluate);
  add("methods", "List the attribution methods and their options", candor::cli::add_methods);
  add("distill", "Fit a glass-box student to a teacher and report its fidelity",
      candor::cli::add_distill);
  add("train", "Train a classifier (MLP or transformer) on a table's labels", candor::cli::add_train);
  add("audit", "Audit a model's outputs: group fairness, calibration, conformal sets",
      candor::cli::add_audit);
  add("predict",
      "Per-row predictions of a model over a CSV / JSON Lines file (class and "
      "probabilities, or generated text)",
      candor::cli::add_predict);
  add("convert", "Write a model as a Hugging Face safetensors folder", candor::cli::add_convert);
  add("serve", "Serve the model over an OpenAI-compatible API, explaining, checking and logging "
      "every answer", candor::cli::add_serve);

  if (argc == 3 && std::string(argv[1]) == "--write-launcher-texts") {
    CLI::App* methods = app.get_subcommand("methods");
    try {
      return write_launcher_texts(app, methods, runners[methods], argv[2]);
    } catch (const std::exception& e) {
      return report(e.what(), "", candor::cli::kExitRuntime);
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return report(e.what(), "see candor --help", candor::cli::kExitUsage);
  }
  try {
    for (auto& [sub, run] : runners) {
      if (sub->parsed()) return run();
    }
    return candor::cli::kExitUsage;
  } catch (const candor::jobs::RequestError& e) {  // cli::UsageError among them
    return report(e.what(), e.hint().empty() ? "see candor --help" : e.hint(),
                  candor::cli::kExitUsage);
  } catch (const candor::Error& e) {
    if (e.code() == candor::ErrorCode::kCancelled)
      return candor::cli::report_interrupted(e, e.hint());
    return report(e.what(), e.hint(), candor::cli::kExitRuntime);
  } catch (const c10::Error& e) {
    return report(std::string("internal tensor error: ") + e.what_without_backtrace(),
                  "please report this with the command that caused it", candor::cli::kExitRuntime);
  } catch (const std::exception& e) {
    return report(e.what(), "", candor::cli::kExitRuntime);
  }
}
