// The explain job: the request built from text (targets, contrasts, generated spans, their
// descriptions), the methods run in order, consensus and quality block, and the JSON envelope.
#include <algorithm>
#include <memory>

#include "candor/classifier.h"
#include "candor/evaluate.h"
#include "candor/generate.h"
#include "candor/jobs_explain.h"
#include "candor/runtime.h"
#include "jobs/internal.h"

namespace candor::jobs {
namespace {

// The settings of `options` that need no model, checked in the order the CLI reports them;
// throws RequestError.
struct Settings {
  Granularity granularity = Granularity::kToken;
  TargetFunction function = TargetFunction::kLogProb;
  bool function_given = false;  // false: the model's default (default_target_function)
  Baseline baseline;
  Removal removal = Removal::kBaseline;
};
Settings parse_settings(const ExplainOptions& options) {
  Settings s;
  try {
    s.granularity = parse_granularity(options.granularity);
    s.function_given = !options.target_function.empty();
    if (s.function_given) s.function = parse_target_function(options.target_function);
    s.baseline = parse_baseline(options.baseline);
    s.removal = parse_removal(options.removal);
  } catch (const Error& e) {
    throw RequestError(e.what(), e.hint());
  }
  if (options.generate < 0)
    throw RequestError("--generate must be at least 1, got " + std::to_string(options.generate));
  return s;
}

// A token given as text: "#123" is an id; otherwise text that must be one token, read as the
// text it stands for rather than the vocabulary's spelling: a piece exactly as stored ("<0x0A>",
// "Ġthe"), then a token whose text is `text` or " " + `text` ("the" finds GPT-2's "Ġthe" and
// Llama's "▁the" as well as llama2.c's " the"), then `text` tokenized like any text.
TokenId parse_token(const Tokenizer& tok, const std::string& text, const std::string& option) {
  if (text.size() > 1 && text[0] == '#') {
    try {
      TokenId id = std::stoi(text.substr(1));
      if (id >= 0 && id < tok.vocab_size()) return id;
    } catch (const std::exception&) {
    }
    throw RequestError(option + " '" + text + "' is not a token id of this vocabulary (0.." +
                       std::to_string(tok.vocab_size() - 1) + ")");
  }
  for (TokenId i = 0; i < tok.vocab_size(); ++i) {
    if (tok.piece(i) == text) return i;
  }
  std::vector<std::string> texts(tok.vocab_size());
  for (TokenId i = 0; i < tok.vocab_size(); ++i) texts[i] = token_text(tok, i);
  for (const std::string& want : {text, " " + text})
    for (TokenId i = 0; i < tok.vocab_size(); ++i)
      if (texts[i] == want) return i;
  std::vector<TokenId> ids = tok.encode(text, false, false);
  if (ids.size() == 1) return ids[0];
  throw RequestError(option + " '" + text +
                         "' is not a single token of this vocabulary (it encodes to " +
                         std::to_string(ids.size()) + " tokens)",
                     "give a single token (with or without its leading space) or an id as #N");
}

}  // namespace

TargetFunction default_target_function(ModelKind kind) {
  return kind == ModelKind::kClassifier ? TargetFunction::kLogOdds : TargetFunction::kLogProb;
}

ExplainSetup build_explain_request(const Model& model, const ExplainOptions& options) {
  const Settings settings = parse_settings(options);
  ExplainSetup setup;
  ExplainRequest& req = setup.request;
  req.granularity = settings.granularity;
  const bool classifier = model.config().kind == ModelKind::kClassifier;
  req.target.function = settings.function_given ? settings.function
                                                : default_target_function(model.config().kind);
  req.baseline = settings.baseline;
  const Tokenizer& tok = model.tokenizer();
  req.input_ids = encode_prompt(tok, options.prompt, options.chat, options.system);

  auto parse_target = [&](const std::string& text, const std::string& option) {
    if (!classifier) return parse_token(tok, text, option);
    try {
      return parse_class(model, text);
    } catch (const Error& e) {
      throw RequestError(option + ": " + e.what(), e.hint());
    }
  };
  auto target_name = [&](TokenId id) {
    return classifier ? model.config().labels[id] : token_text(tok, id);
  };
  if (classifier && options.generate > 0)
    throw RequestError(
        "--generate needs a language model; '" + options.model.path + "' is a classifier",
        "explain a class with --target LABEL");
  if (options.generate > 0) {
    GenerateOptions go;  // greedy
    go.max_new_tokens = options.generate;
    GenerateResult gr = generate(model, req.input_ids, go);
    if (gr.generated_ids.empty())
      throw Error(ErrorCode::kInvalidArgument,
                  "the model generated nothing to explain (it stopped at once)");
    req.target.span = gr.generated_ids;
    setup.generated_text = gr.text;
    setup.target_description = std::string(target_function_name(req.target.function)) +
                               " of each of the " + std::to_string(gr.generated_ids.size()) +
                               " generated tokens";
  } else if (!options.contrast.empty()) {
    size_t comma = options.contrast.find(',');
    if (comma == std::string::npos)
      throw RequestError("--contrast takes A,B (two tokens), got '" + options.contrast + "'");
    req.target.function = TargetFunction::kContrast;
    req.target.token = parse_target(options.contrast.substr(0, comma), "--contrast");
    req.target.contrast_token = parse_target(options.contrast.substr(comma + 1), "--contrast");
    // A token against itself explains a difference that is 0 for every input: degenerate.
    if (req.target.token == req.target.contrast_token) {
      const std::string a = options.contrast.substr(0, comma), b = options.contrast.substr(comma + 1);
      throw RequestError("--contrast '" + options.contrast + "': '" + a + "' and '" + b +
                             "' are the same " + (classifier ? "class" : "token") + " ('" +
                             target_name(req.target.token) + "', #" +
                             std::to_string(req.target.token) +
                             "), so the contrast is 0 for every input",
                         "give two different " + std::string(classifier ? "classes" : "tokens") +
                             " as --contrast A,B (A rather than B)");
    }
    setup.target_description = "log p('" + target_name(req.target.token) + "') - log p('" +
                               target_name(req.target.contrast_token) + "')";
  } else if (options.target.rfind("neuron:", 0) == 0) {
    // A hidden unit: neuron:LAYER:POSITION:UNIT (gradient methods; checked against the model
    // when the methods prepare the request).
    try {
      req.target.neuron = parse_neuron_target(options.target);
    } catch (const Error& e) {
      throw RequestError(std::string("--target ") + e.what(), e.hint());
    }
    if (classifier)
      throw RequestError("--target " + options.target + ": a neuron target needs a language model",
                         "explain a class with --target LABEL");
    if (settings.function_given)
      throw RequestError("--target-function does not apply to a neuron target (" +
                             options.target + "): the unit's value is explained",
                         "drop --target-function");
    if (options.evaluate || options.consensus)
      throw RequestError(std::string(options.evaluate ? "--evaluate" : "--consensus") +
                             " removes features and scores the model's outputs; a neuron target "
                             "(" + options.target + ") has none",
                         "explain the neuron without " +
                             std::string(options.evaluate ? "--evaluate" : "--consensus"));
    setup.target_description = "layer " + std::to_string(req.target.neuron.layer) + " unit " +
                               std::to_string(req.target.neuron.unit) + " at position " +
                               std::to_string(req.target.neuron.position);
  } else if (!options.target.empty()) {
    req.target.token = parse_target(options.target, "--target");
    setup.target_description = std::string(target_function_name(req.target.function)) + " of '" +
                               target_name(req.target.token) + "'";
  } else {
    setup.target_description =
        std::string(target_function_name(req.target.function)) +
        (classifier ? " of the predicted class" : " of the predicted next token");
  }
  return setup;
}

ExplainResult run_explain(const ExplainOptions& options, const ExplainEvents& events) {
  // A fastText classifier is explained exactly, by its own decomposition.
  if (options.model.model == nullptr && is_fasttext_file(options.model.path)) {
    check_threads(options.threads);
    return explain_fasttext(options, events);
  }
  // Everything given is checked before the model is loaded.
  std::vector<std::string> specs = options.methods;
  if (specs.empty()) specs = {"input_x_gradient"};
  std::vector<std::unique_ptr<Explainer>> explainers = make_explainers(specs);
  const Settings settings = parse_settings(options);
  check_threads(options.threads);
  check_tape_budget(options.tape_budget);
  check_prompt(options.prompt);

  ThreadScope threads(options.threads);
  TapeBudgetScope tape_budget(options.tape_budget);
  std::unique_ptr<Model> owned;
  const Model& model = resolve_model(options.model, &owned);
  ExplainSetup setup = build_explain_request(model, options);
  const ExplainRequest& req = setup.request;

  ExplainResult result;
  result.context.model = options.model.path;
  result.context.prompt = options.prompt;
  result.context.generated_text = setup.generated_text;
  result.context.target_description = setup.target_description;

  if (events.started) events.started();
  std::vector<Attribution>& results = result.attributions;
  const CancelToken* cancel = options.cancel;
  for (size_t i = 0; i < explainers.size(); ++i) {
    Explainer& ex = *explainers[i];
    ExplainContext ctx;
    const std::string name = ex.name();
    ctx.progress = [&events, name, cancel](double f) {
      if (is_cancelled(cancel)) return false;
      return events.progress ? events.progress(name, f) : true;
    };
    try {
      if (is_cancelled(cancel)) throw Error(ErrorCode::kCancelled, "explain cancelled");
      results.push_back(ex.explain(model, req, ctx));
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kCancelled) throw;
      if (results.empty())
        throw Error(ErrorCode::kCancelled,
                    "explain interrupted before any method finished (" + specs[i] + " was running)");
      result.complete = false;
      for (size_t k = i; k < specs.size(); ++k) result.missing.push_back(specs[k]);
      break;
    }
    if (events.method_done) events.method_done(name);
  }
  if (!result.complete) {
    // What is done is kept; the steps over all the methods are not started.
    if (options.consensus) result.missing.push_back("consensus");
    if (options.evaluate) result.missing.push_back("quality");
    result.envelope = explain_envelope(result.context, results);
    result.envelope["interrupted"] = true;
    result.envelope["missing"] = result.missing;
    return result;
  }
  if (options.consensus) {
    size_t scored = 0;
    for (const auto& a : results) scored += a.scores.empty() ? 0 : 1;
    if (scored < 2)
      throw RequestError("--consensus needs at least two methods that give scores",
                         "add another --method");
    results.push_back(consensus(results));
  }
  if (options.evaluate) {
    if (events.evaluating) events.evaluating();
    QualityOptions qo;
    qo.faithfulness.removal = settings.removal;
    std::vector<const Explainer*> ptrs;
    for (auto& ex : explainers) ptrs.push_back(ex.get());
    attach_quality(model, req, ptrs, results, qo);
  }
  result.envelope = explain_envelope(result.context, results);
  return result;
}

nlohmann::ordered_json explain_envelope(const ReportContext& context,
                                        const std::vector<Attribution>& attributions) {
  nlohmann::ordered_json j;
  j["model"] = context.model;
  j["prompt"] = context.prompt;
  j["generated_text"] = context.generated_text;
  j["target"] = context.target_description;
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& a : attributions) {
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
  // What every reader should see before the scores (saturated targets), each once.
  std::vector<std::string> warnings;
  for (const auto& a : attributions)
    for (const auto& w : a.warnings)
      if (std::find(warnings.begin(), warnings.end(), w) == warnings.end()) warnings.push_back(w);
  j["warnings"] = warnings;
  return j;
}

std::string envelope_text(const nlohmann::ordered_json& envelope) {
  return envelope.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace candor::jobs
