// candor_serve_tsan: `candor serve` alone (tools/candor/cmd_serve.cpp, the very code the CLI runs),
// built only in the ThreadSanitizer tree (scripts/tsan.sh) so that the real server process --
// signals, policy reloads, shutdown under load -- runs instrumented without building every other
// command. Takes the arguments of `candor serve`, optionally after the word `serve`.
#include <iostream>
#include <string>

#include "cli.h"

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "serve") {
    argv[1] = argv[0];
    --argc;
    ++argv;
  }
  CLI::App app{"candor serve (ThreadSanitizer build)", "candor-serve-tsan"};
  candor::cli::Runner run = candor::cli::add_serve(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    return run();
  } catch (const candor::jobs::RequestError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return candor::cli::kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return candor::cli::kExitRuntime;
  }
}
