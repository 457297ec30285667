// `candor explain`: attribute the next token, a generated continuation, or a contrast "A rather
// than B" to the prompt with one or more methods; console view, JSON and HTML report.
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <csignal>
#include <fstream>
#include <iostream>
#include <memory>

#include "candor/evaluate.h"
#include "candor/explain.h"
#include "candor/generate.h"
#include "candor/model.h"
#include "candor/report.h"
#include "candor/runtime.h"
#include "candor/tokenizer.h"
#include "cli.h"

namespace candor::cli {
namespace {

std::atomic<bool> g_interrupted{false};

void on_sigint(int) { g_interrupted = true; }

// A token given on the command line: "#123" is an id; otherwise text that must be one token
// (as it would appear after a space, e.g. "girl" -> " girl", or exactly as a piece).
TokenId parse_token(const Tokenizer& tok, const std::string& text, const std::string& option) {
  if (text.size() > 1 && text[0] == '#') {
    try {
      TokenId id = std::stoi(text.substr(1));
      if (id >= 0 && id < tok.vocab_size()) return id;
    } catch (const std::exception&) {
    }
    throw usage_error(option + " '" + text + "' is not a token id of this vocabulary (0.." +
                      std::to_string(tok.vocab_size() - 1) + ")");
  }
  for (TokenId i = 0; i < tok.vocab_size(); ++i) {
    if (tok.piece(i) == text) return i;
  }
  for (TokenId i = 0; i < tok.vocab_size(); ++i) {
    if (tok.piece(i) == " " + text) return i;
  }
  std::vector<TokenId> ids = tok.encode(text, false, false);
  throw usage_error(option + " '" + text +
                        "' is not a single token of this vocabulary (it encodes to " +
                        std::to_string(ids.size()) + " tokens)",
                    "give a single token (with or without its leading space) or an id as #N");
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream f(path, std::ios::binary);
  if (!f)
    throw Error(ErrorCode::kNotFound, "cannot write '" + path + "'",
                "check that its folder exists");
  f << content;
}

}  // namespace

Runner add_explain(CLI::App& app) {
  struct Opts {
    std::string model, tokenizer, prompt, target, contrast,
        dtype = "f32", granularity = "token", function = "logprob", baseline = "unk", json_path,
        html_path;
    int64_t generate_n = 0;
    std::vector<std::string> methods;
    int threads = 0;
    bool no_progress = false;
    bool chat = false;
    std::string system;
    bool evaluate = false;
    bool consensus = false;
    std::string removal = "baseline";
  };
  auto o = std::make_shared<Opts>();
  app.add_option("--model,-m", o->model,
                 "Checkpoint file, or a folder holding it and its tokenizer")
      ->required();
  app.add_option("--tokenizer", o->tokenizer, "Tokenizer file (default: found beside the model)");
  app.add_option("--prompt,-p", o->prompt, "The input text")->required();
  add_chat_options(app, &o->chat, &o->system);
  auto* g = app.add_option("--generate", o->generate_n,
                           "Generate N tokens greedily and explain the span");
  auto* t = app.add_option("--target", o->target,
                           "Explain this next token (text or #id), or for a classifier this class "
                           "(label or index); default: the prediction");
  auto* c = app.add_option("--contrast", o->contrast, "A,B: explain A rather than B");
  g->excludes(t)->excludes(c);
  t->excludes(c);
  app.add_option("--method", o->methods,
                 "Method spec NAME[:key=value,...] (repeatable; default input_x_gradient)");
  app.add_option("--granularity", o->granularity, "token | word | sentence (default token)");
  app.add_option("--target-function", o->function,
                 "logprob | prob | logit | entropy (default logprob)");
  app.add_option("--baseline", o->baseline, "unk | pad | zero | token id (default unk)");
  app.add_option("--json", o->json_path, "Write the attributions as JSON to this file");
  app.add_option("--html", o->html_path, "Write a self-contained HTML report to this file");
  app.add_option("--threads", o->threads, "Intra-op threads (default: one per core)");
  add_dtype_option(app, &o->dtype);
  app.add_flag("--no-progress", o->no_progress, "No progress bar on stderr");
  app.add_flag("--evaluate", o->evaluate,
               "Attach a quality block to each attribution: comprehensiveness, sufficiency, "
               "sensitivity, agreement with the other methods (docs/evaluation.md)");
  app.add_flag("--consensus", o->consensus,
               "Add a consensus of the methods, weighted by their agreement (docs/evaluation.md)");
  app.add_option("--removal", o->removal,
                 "How --evaluate removes features: baseline (replace) | delete (default baseline)");
  return [o]() {
    if (o->methods.empty()) o->methods = {"input_x_gradient"};
    // Validate everything typed before loading the model.
    std::vector<std::unique_ptr<Explainer>> explainers;
    for (const auto& m : o->methods) {
      try {
        explainers.push_back(make_explainer(m));
      } catch (const Error& e) {
        throw usage_error(std::string("--method ") + e.what(), e.hint());
      }
    }
    ExplainRequest req;
    try {
      req.granularity = parse_granularity(o->granularity);
      req.target.function = parse_target_function(o->function);
      req.baseline = parse_baseline(o->baseline);
      parse_removal(o->removal);
    } catch (const Error& e) {
      throw usage_error(e.what(), e.hint());
    }
    if (o->generate_n < 0)
      throw usage_error("--generate must be at least 1, got " + std::to_string(o->generate_n));
    check_prompt_and_threads(o->prompt, o->threads);
    std::unique_ptr<Model> model = load_cli_model(o->model, o->tokenizer, o->threads, o->dtype);
    const Tokenizer& tok = model->tokenizer();

    req.input_ids = encode_prompt(tok, o->prompt, o->chat, o->system);
    ReportContext rc;
    rc.model = o->model;
    rc.prompt = o->prompt;
    const bool classifier = model->config().kind == ModelKind::kClassifier;
    auto parse_target = [&](const std::string& text, const std::string& option) {
      if (!classifier) return parse_token(tok, text, option);
      try {
        return parse_class(*model, text);
      } catch (const Error& e) {
        throw usage_error(option + ": " + e.what(), e.hint());
      }
    };
    auto target_name = [&](TokenId id) {
      return classifier ? model->config().labels[id] : tok.piece(id);
    };
    if (classifier && o->generate_n > 0)
      throw usage_error("--generate needs a language model; '" + o->model + "' is a classifier",
                        "explain a class with --target LABEL");
    if (o->generate_n > 0) {
      GenerateOptions go;
      go.max_new_tokens = o->generate_n;
      GenerateResult gr = generate(*model, req.input_ids, go);
      if (gr.generated_ids.empty())
        throw Error(ErrorCode::kInvalidArgument,
                    "the model generated nothing to explain (it stopped at once)");
      req.target.span = gr.generated_ids;
      rc.generated_text = gr.text;
      rc.target_description = std::string(target_function_name(req.target.function)) +
                              " of each of the " + std::to_string(gr.generated_ids.size()) +
                              " generated tokens";
    } else if (!o->contrast.empty()) {
      size_t comma = o->contrast.find(',');
      if (comma == std::string::npos)
        throw usage_error("--contrast takes A,B (two tokens), got '" + o->contrast + "'");
      req.target.function = TargetFunction::kContrast;
      req.target.token = parse_target(o->contrast.substr(0, comma), "--contrast");
      req.target.contrast_token = parse_target(o->contrast.substr(comma + 1), "--contrast");
      rc.target_description = "log p('" + target_name(req.target.token) + "') - log p('" +
                              target_name(req.target.contrast_token) + "')";
    } else if (!o->target.empty()) {
      req.target.token = parse_target(o->target, "--target");
      rc.target_description = std::string(target_function_name(req.target.function)) + " of '" +
                              target_name(req.target.token) + "'";
    } else {
      rc.target_description =
          std::string(target_function_name(req.target.function)) +
          (classifier ? " of the predicted class" : " of the predicted next token");
    }

    bool tty = ::isatty(STDERR_FILENO);
    std::signal(SIGINT, on_sigint);
    std::vector<Attribution> results;
    for (auto& ex : explainers) {
      ExplainContext ctx;
      std::string name = ex->name();
      int last = -1;
      ctx.progress = [&, name](double f) {
        if (!o->no_progress) {
          int pct = static_cast<int>(f * 100);
          if (pct != last && (tty || pct == 100)) {
            last = pct;
            int bars = pct / 5;
            std::cerr << "\r" << name << " [" << std::string(bars, '#')
                      << std::string(20 - bars, '.') << "] " << pct << "%"
                      << (pct == 100 ? "\n" : "") << std::flush;
          }
        }
        return !g_interrupted.load();
      };
      results.push_back(ex->explain(*model, req, ctx));
      if (!o->no_progress && last != 100 && tty) std::cerr << "\r" << std::string(40, ' ') << "\r";
    }
    if (o->consensus) {
      size_t scored = 0;
      for (const auto& a : results) scored += a.scores.empty() ? 0 : 1;
      if (scored < 2)
        throw usage_error("--consensus needs at least two methods that give scores",
                          "add another --method");
      results.push_back(consensus(results));
    }
    if (o->evaluate) {
      if (!o->no_progress) std::cerr << "evaluating the explanations...\n";
      QualityOptions qo;
      qo.faithfulness.removal = parse_removal(o->removal);
      std::vector<const Explainer*> ptrs;
      for (auto& ex : explainers) ptrs.push_back(ex.get());
      attach_quality(*model, req, ptrs, results, qo);
    }
    std::signal(SIGINT, SIG_DFL);

    bool color = ::isatty(STDOUT_FILENO);
    if (!rc.generated_text.empty()) std::cout << "generated: " << rc.generated_text << "\n";
    for (const auto& a : results) std::cout << render_console(a, color) << "\n";
    if (!o->json_path.empty()) {
      nlohmann::ordered_json j;
      j["model"] = o->model;
      j["prompt"] = o->prompt;
      j["generated_text"] = rc.generated_text;
      j["target"] = rc.target_description;
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& a : results) {
        nlohmann::json aj = attribution_to_json(a);
        // The quality block sits beside the scores, not among the method's extras.
        if (aj.contains("extra") && aj["extra"].is_object() && aj["extra"].contains("quality")) {
          aj["quality"] = aj["extra"]["quality"];
          aj["extra"].erase("quality");
          if (aj["extra"].empty()) aj.erase("extra");
        }
        arr.push_back(aj);
      }
      j["attributions"] = arr;
      // A token label can be part of a UTF-8 character (byte-fallback and byte-level tokens):
      // written with U+FFFD instead of failing.
      write_file(o->json_path,
                 j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
      std::cerr << "wrote " << o->json_path << "\n";
    }
    if (!o->html_path.empty()) {
      write_file(o->html_path, render_html(results, rc));
      std::cerr << "wrote " << o->html_path << "\n";
    }
    return 0;
  };
}

}  // namespace candor::cli
