// `candor distill --student lm` and `candor train --student lm`: a small causal LM distilled from
// a teacher LM, or trained on a text column alone.
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <iostream>
#include <sstream>

#include "candor/data.h"
#include "candor/lm_student.h"
#include "candor/runtime.h"
#include "candor/files.h"
#include "cli.h"

namespace candor::cli {

namespace {

std::string fixed(double v, int digits) {
  std::ostringstream ss;
  ss.setf(std::ios::fixed);
  ss.precision(digits);
  ss << v;
  return ss.str();
}

}  // namespace

bool is_lm_student(const std::string& spec) { return spec.substr(0, spec.find(':')) == "lm"; }

int run_lm_student(const LmCliArgs& a) {
  distill::LmDistillOptions o;
  try {
    o.student = distill::parse_lm_student(a.student);
  } catch (const Error& e) {
    throw usage_error(e.what(), e.hint());
  }
  if (a.teacher.empty() && a.data.empty())
    throw usage_error("an lm student needs --teacher (a causal LM) or --data (a text corpus)");
  if (a.out.empty()) throw usage_error("--out is required");
  check_prompt_and_threads("", a.threads);
  prepare_output_dir(a.out, "--out");  // before the work, not after it
  InterruptScope interrupt;
  // Training runs on one thread unless asked otherwise (the machines it runs on are shared).
  set_num_threads(a.threads > 0 ? a.threads : 1);
  std::unique_ptr<Model> teacher;
  if (!a.teacher.empty()) {
    LoadOptions lo;
    lo.tokenizer_path = a.tokenizer;
    teacher = load_model(a.teacher, lo);
  }
  if (!a.data.empty()) {
    data::ReadOptions ro;
    ro.on_error = data::parse_error_policy(a.on_error);
    ro.types[a.text_column] = data::ColumnType::kText;
    data::Table table = data::read_table(a.data, ro);
    const data::Column& col = table.column(a.text_column);
    for (size_t r = 0; r < col.size(); ++r)
      if (!col.is_missing(r) && !col.raw[r].empty()) o.corpus.push_back(col.raw[r]);
    if (o.corpus.empty())
      throw Error(ErrorCode::kInvalidArgument,
                  a.data + ": the text column '" + a.text_column + "' holds no text",
                  "an lm student needs a corpus with text in --text-column");
  }
  o.seed = a.seed;
  o.out_dir = a.out;
  o.resume = a.resume;
  o.stop_after_steps = a.stop_after_steps;
  o.cancel = &interrupt_token();
  auto last = std::chrono::steady_clock::now() - std::chrono::seconds(10);
  std::string phase;
  o.progress = [&](const distill::LmProgress& p) {
    if (interrupt_token().cancelled()) return false;  // the sampling phase stops too
    if (a.no_progress) return true;
    auto now = std::chrono::steady_clock::now();
    const bool end = p.done == p.total;
    if (p.phase == phase && !end && now - last < std::chrono::milliseconds(500)) return true;
    if (p.phase != phase && !phase.empty()) std::cerr << "\n";
    phase = p.phase;
    last = now;
    if (p.phase == "sample") {
      std::cerr << "\rsampling teacher texts " << p.done << "/" << p.total << std::flush;
    } else if (p.phase == "train") {
      int w = static_cast<int>(30.0 * double(p.done) / double(std::max<int64_t>(1, p.total)));
      std::cerr << "\r[" << std::string(w, '#') << std::string(30 - w, ' ') << "] " << p.done << "/"
                << p.total << " loss " << fixed(p.loss, 3) << " fidelity "
                << (p.fidelity >= 0 ? fixed(100 * p.fidelity, 1) + "%" : std::string("-")) << " lr "
                << p.learning_rate << " " << fixed(p.tokens_per_second, 0) << " tok/s"
                << std::flush;
    } else if (p.phase == "tokenizer") {
      std::cerr << "tokenizer..." << std::flush;
    } else if (p.phase == "measure") {
      std::cerr << "measuring on held-out texts..." << std::flush;
    }
    return true;
  };
  distill::LmDistillResult r;
  try {
    r = distill::distill_lm(teacher.get(), o);
  } catch (const Error& e) {
    if (e.code() != ErrorCode::kCancelled) throw;
    return report_interrupted(e, "rerun the same command with --resume to continue");
  }
  if (!a.no_progress) std::cerr << "\n";
  const distill::LmFidelity& f = r.held_out;
  const ModelConfig& c = r.student->config();
  std::cout << "student   llama dim " << c.dim << ", " << c.n_layers << " layers, " << c.n_heads
            << " heads, vocab " << c.vocab_size << " (" << r.params << " parameters)\n"
            << "training  "
            << (teacher ? r.mode + "-level distillation" : std::string("text alone")) << ", "
            << r.train_texts << " texts, " << r.steps << " steps, " << r.train_tokens
            << " tokens in " << fixed(r.train_seconds, 1) << " s (" << fixed(r.tokens_per_second, 0)
            << " tokens/s)" << (r.finished ? "" : ", stopped early") << "\n"
            << "held-out  " << f.texts << " texts: loss " << fixed(f.student_loss, 3)
            << " (perplexity " << fixed(f.student_perplexity, 2) << " per token, "
            << fixed(f.student_word_perplexity, 2) << " per word";
  if (f.teacher_word_perplexity >= 0)
    std::cout << "; teacher " << fixed(f.teacher_word_perplexity, 2) << " per word";
  std::cout << ")\n";
  if (f.token_agreement >= 0)
    std::cout << "agreement top-1 next token " << fixed(100 * f.token_agreement, 1) << "%, KL "
              << fixed(f.token_kl, 4) << " nats/token\n";
  if (f.word_agreement >= 0)
    std::cout << "agreement greedy next word " << fixed(100 * f.word_agreement, 1) << "% of "
              << f.boundaries << " word boundaries\n";
  std::cout << "model     " << a.out << " (candor generate --model " << a.out
            << " --prompt \"Once upon a time\")\nreport    " << a.out << "/report.json\n";
  return 0;
}

}  // namespace candor::cli
