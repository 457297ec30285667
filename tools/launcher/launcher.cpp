// `candor`, the launcher: a small program that links no libtorch. It answers --version, --help
// and `methods` (with or without --json) from texts the build wrote beside it from the engine's
// own command line (candor-texts/, written by `candor-engine --write-launcher-texts`), and for
// every other command sets the engine's environment (candor/launch.h: OPENBLAS_CORETYPE,
// OMP_WAIT_POLICY) and execs candor-engine beside it with the same arguments, so that the engine
// loads its libraries once and never re-executes itself.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <string>

#include "candor/launch.h"

namespace {

// The folder of this executable ("" when /proc is not mounted).
std::string own_folder() {
  char buf[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "";
  std::string path(buf, static_cast<size_t>(n));
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

// The text file that answers these arguments, or "" when the engine must run.
const char* text_for(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--version") == 0) return "version.txt";
  if (argc == 2 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0))
    return "help.txt";
  if (argc == 2 && std::strcmp(argv[1], "methods") == 0) return "methods.txt";
  if (argc == 3 && std::strcmp(argv[1], "methods") == 0 && std::strcmp(argv[2], "--json") == 0)
    return "methods-json.txt";
  return nullptr;
}

// Prints `file` when it exists and is not older than the engine (a text from an older build is
// not trusted); false otherwise.
bool print_text(const std::string& file, const std::string& engine) {
  struct stat text {
  }, bin{};
  if (stat(file.c_str(), &text) != 0) return false;
  if (stat(engine.c_str(), &bin) == 0 && text.st_mtime < bin.st_mtime) return false;
  std::FILE* f = std::fopen(file.c_str(), "rb");
  if (!f) return false;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) std::fwrite(buf, 1, n, stdout);
  std::fclose(f);
  return std::fflush(stdout) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string folder = own_folder();
  const std::string engine = (folder.empty() ? std::string(".") : folder) + "/candor-engine";
  if (const char* text = text_for(argc, argv)) {
    if (print_text(folder + "/candor-texts/" + text, engine)) return 0;
  }
  candor::set_engine_environment();
  setenv(candor::kPreparedMarker, "1", 1);
  execv(engine.c_str(), argv);
  std::fprintf(stderr, "error: cannot start the candor engine '%s': %s\n", engine.c_str(),
               std::strerror(errno));
  std::fprintf(stderr,
               "hint: the launcher runs candor-engine from its own folder; build both "
               "(cmake --build build --target candor_cli)\n");
  return 1;
}
