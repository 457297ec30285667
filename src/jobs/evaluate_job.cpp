// The evaluate job: the data set read with its bad rows reported, the run's settings, resumption
// from the record store, the loop over the examples (methods, decoys, sensitivity, attacks) and
// the table at the end.
#include <cctype>
#include <memory>
#include <optional>
#include <set>

#include "candor/data.h"
#include "candor/evaluate.h"
#include "candor/explain.h"
#include "candor/generate.h"
#include "candor/jobs_evaluate.h"
#include "candor/jobs_explain.h"
#include "candor/runtime.h"
#include "jobs/internal.h"

namespace candor::jobs {
namespace {

bool is_blank(const std::string& s) {
  for (unsigned char c : s)
    if (!std::isspace(c)) return false;
  return true;
}

// The names of the decoys' table rows (built on the first method's scores).
const std::vector<std::string>& decoy_row_names() {
  static const std::vector<std::string> names = {"decoy:random", "decoy:inverted", "decoy:first",
                                                 "decoy:last", "decoy:other_target"};
  return names;
}

}  // namespace

nlohmann::json example_record_to_json(const ExampleRecord& record) {
  nlohmann::json j;
  j["line"] = record.line;
  nlohmann::json mj;
  for (const auto& [m, rec] : record.methods) mj[m] = method_record_to_json(rec);
  j["methods"] = mj;
  return j;
}

ExampleRecord example_record_from_json(const nlohmann::json& j,
                                       const std::vector<std::string>& names) {
  ExampleRecord r;
  for (const auto& m : names) r.methods[m] = method_record_from_json(j.at("methods").at(m));
  r.line = j.at("line").get<int64_t>();
  return r;
}

EvaluateResult run_evaluate(const EvaluateOptions& options, RecordStore& store,
                            const EvaluateEvents& events) {
  auto notice = [&](const std::string& line) {
    if (events.notice) events.notice(line);
  };
  // --- every option is checked before anything is read --------------------------------------
  std::vector<std::string> names = options.methods;
  if (names.empty()) names = {"integrated_gradients", "occlusion"};
  std::vector<std::unique_ptr<Explainer>> explainers = make_explainers(names);
  std::set<std::string> uniq(names.begin(), names.end());
  if (uniq.size() != names.size()) throw RequestError("--method lists a method twice");
  std::vector<std::string> metrics;
  FaithfulnessOptions fo;
  RobustnessOptions ro;
  data::ErrorPolicy policy;
  Baseline baseline;
  try {
    metrics = parse_benchmark_metrics(options.metrics);
    fo.removal = parse_removal(options.removal);
    policy = data::parse_error_policy(options.on_error);
    baseline = parse_baseline(options.baseline);
  } catch (const Error& e) {
    throw RequestError(e.what(), e.hint());
  }
  if (options.max_tokens < 2) throw RequestError("--max-tokens must be at least 2");
  if (options.generate < 0) throw RequestError("--generate must be 0 or more");
  if (options.bootstrap < 0) throw RequestError("--bootstrap must be >= 0");
  if (options.curve_points < 0) throw RequestError("--curve-points must be >= 0");
  if (options.sensitivity_samples < 1) throw RequestError("--sensitivity-samples must be >= 1");
  if (options.limit == 0 || options.limit < -1)
    throw RequestError("--limit must be at least 1, got " + std::to_string(options.limit),
                       "leave --limit out to evaluate every row");
  std::optional<AttackOptions> attack;
  if (!options.attack.empty()) {
    try {
      attack = parse_attack(options.attack);
    } catch (const Error& e) {
      throw RequestError(std::string("--attack: ") + e.what(), e.hint());
    }
  }
  fo.curve_points = options.curve_points;
  fo.seed = options.seed;
  ro.n_samples = options.sensitivity_samples;
  ro.seed = options.seed;
  check_threads(options.threads);
  check_tape_budget(options.tape_budget);
  if (!options.lexicon.empty() && !options.decoys)
    throw RequestError("--lexicon is the lexicon decoy's word list; it needs --decoys",
                       "add --decoys");
  std::optional<Lexicon> lexicon;
  if (!options.lexicon.empty()) lexicon = load_lexicon(options.lexicon);

  // --- the data: bad rows are reported with their line, never dropped silently -------------
  data::ReadOptions rdo;
  rdo.on_error = policy;
  rdo.required = {options.text_column};
  rdo.types[options.text_column] = data::ColumnType::kText;
  rdo.missing_values = {};
  data::Table table = data::read_table(options.data, rdo);
  nlohmann::json skipped = nlohmann::json::array();
  auto warn = [&](int64_t line, const std::string& reason) {
    notice("warning: " + options.data + " line " + std::to_string(line) + ": " + reason +
           " (skipped)");
  };
  for (const auto& s : table.skipped()) {
    skipped.push_back({{"line", s.line}, {"reason", s.reason}});
    warn(s.line, s.reason);
  }
  const data::Column& col = table.column(options.text_column);
  struct Row {
    int64_t line;
    std::string text;
  };
  std::vector<Row> rows;
  auto bad_row = [&](int64_t line, const std::string& reason) {
    if (policy == data::ErrorPolicy::kFail) {
      throw Error(ErrorCode::kInvalidArgument,
                  options.data + " line " + std::to_string(line) + ": " + reason,
                  "fix the row, or pass --on-error skip to leave bad rows out (they are listed)");
    }
    skipped.push_back({{"line", line}, {"reason", reason}});
    warn(line, reason);
  };
  for (size_t r = 0; r < table.n_rows(); ++r) {
    if (col.is_missing(r) || is_blank(col.raw[r])) {
      bad_row(table.line_of(r), "no text in column '" + options.text_column + "'");
      continue;
    }
    rows.push_back({table.line_of(r), col.raw[r]});
  }
  if (options.limit >= 0 && static_cast<int64_t>(rows.size()) > options.limit)
    rows.resize(options.limit);
  // Nothing to evaluate is an error, never a table of dashes.
  if (rows.empty()) {
    const size_t n_bad = skipped.size();
    throw Error(ErrorCode::kInvalidArgument,
                options.data + ": no rows to evaluate (" +
                    (n_bad == 0 ? std::string("the file has no data rows")
                                : "all " + std::to_string(n_bad) + " row(s) were skipped as bad") +
                    ")",
                n_bad == 0 ? "give a file with at least one text in column '" +
                                 options.text_column + "'"
                           : "fix the rows listed above");
  }

  ThreadScope threads(options.threads);
  TapeBudgetScope tape_budget(options.tape_budget);
  std::unique_ptr<Model> owned;
  const Model& model = resolve_model(options.model, &owned);

  // --- resumption: the settings must match; finished examples are read back ---------------
  nlohmann::ordered_json config;
  config["model"] = options.model.path;
  config["data"] = options.data;
  config["text_column"] = options.text_column;
  config["methods"] = names;
  config["metrics"] = metrics;
  config["removal"] = options.removal;
  config["baseline"] = options.baseline;
  config["max_tokens"] = options.max_tokens;
  if (options.generate > 0) config["generate"] = options.generate;
  config["curve_points"] = options.curve_points;
  config["sensitivity_samples"] = options.sensitivity_samples;
  config["seed"] = options.seed;
  config["decoys"] = options.decoys;
  // A classifier is explained on the log-odds of its predicted class, which does not saturate
  // (default_target_function); a language model on the log-prob of its next token.
  const TargetFunction function = default_target_function(model.config().kind);
  if (function != TargetFunction::kLogProb) config["target_function"] = target_function_name(function);
  if (attack) config["attack"] = attack_options_to_json(*attack);
  // Rows of the table: the methods, then the decoys (built on the first method's scores).
  std::vector<std::string> decoy_names;
  if (options.decoys) decoy_names = decoy_row_names();
  if (lexicon) {
    decoy_names.push_back("decoy:lexicon");
    config["lexicon"] = options.lexicon;
  }
  std::vector<std::string> rows_names = names;
  rows_names.insert(rows_names.end(), decoy_names.begin(), decoy_names.end());
  store.begin(config, rows_names);
  std::map<int64_t, std::map<std::string, MethodRecord>> done;  // by data line
  for (ExampleRecord& r : store.done()) done[r.line] = std::move(r.methods);
  if (!done.empty())
    notice("resuming: " + std::to_string(done.size()) + " example(s) already evaluated");

  // --- the run ---------------------------------------------------------------------------
  EvaluateResult result;
  if (events.started) events.started();
  EvaluateProgress progress;
  progress.total = rows.size();
  for (const auto& r : rows) progress.to_compute += done.count(r.line) ? 0 : 1;
  auto report = [&](size_t i) {
    progress.done = i;
    if (events.progress) events.progress(progress);
  };
  std::vector<std::map<std::string, MethodRecord>> records;
  std::vector<int64_t> record_lines;  // data line of each record
  bool interrupted = false;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (events.stop && events.stop()) {
      interrupted = true;
      break;
    }
    const Row& row = rows[i];
    auto it = done.find(row.line);
    if (it != done.end()) {
      records.push_back(it->second);
      record_lines.push_back(row.line);
      ++result.n_resumed;
      report(i + 1);
      continue;
    }
    ExplainRequest req;
    req.baseline = baseline;
    req.target.function = function;
    req.input_ids = model.tokenizer().encode(row.text, true, false);
    if (static_cast<int64_t>(req.input_ids.size()) > options.max_tokens)
      req.input_ids.resize(options.max_tokens);
    if (req.input_ids.size() < 2) {
      bad_row(row.line, "the text encodes to no tokens");
      continue;
    }
    if (options.generate > 0) {
      GenerateOptions g;  // greedy
      g.max_new_tokens = options.generate;
      req.target.span = candor::generate(model, req.input_ids, g).generated_ids;
      if (req.target.span.empty()) {
        bad_row(row.line, "the model's answer ends before its first token (a stop token)");
        continue;
      }
    }
    std::map<std::string, MethodRecord> recs;
    try {
      // Every method explains the same token, so the methods and the decoys are graded from
      // one shared bank of masks: a removal set two of them share gives both the same value.
      std::vector<Attribution> atts;
      std::vector<std::string> labels = names;
      for (size_t m = 0; m < explainers.size(); ++m)
        atts.push_back(explainers[m]->explain(model, req));
      if (options.decoys) {
        DecoyOptions dop;
        dop.seed = options.seed + static_cast<uint64_t>(row.line);
        dop.other_target = explainers[0].get();
        if (lexicon) dop.lexicon = &*lexicon;
        for (Attribution& d : make_decoys(model, req, atts[0], dop)) {
          labels.push_back("decoy:" + d.method);
          atts.push_back(std::move(d));
        }
      }
      std::vector<std::string> fm, sm;  // faithfulness / sensitivity metrics
      for (const auto& x : metrics)
        (x.find("sensitivity") == std::string::npos ? fm : sm).push_back(x);
      std::vector<MethodRecord> frs = benchmark_faithfulness_records(model, req, atts, fm, fo);
      for (size_t a = 0; a < atts.size(); ++a) recs[labels[a]] = frs[a];
      for (size_t m = 0; m < explainers.size(); ++m) {
        MethodRecord& rec = recs[names[m]];
        // Decoys have no explainer to rerun: sensitivity and attacks for the methods only.
        if (!sm.empty()) {
          MethodRecord sr = benchmark_record(model, req, *explainers[m], atts[m], sm, fo, ro);
          for (const auto& [k, v] : sr.metrics) rec.metrics[k] = v;
        }
        if (attack) {
          // Seeded per example, so that a resumed run finds the same changes.
          AttackOptions ao = *attack;
          ao.seed = options.seed + static_cast<uint64_t>(row.line);
          AttackResult ar = attack_explainer(model, req, *explainers[m], atts[m], ao);
          rec.metrics["attack_success"] = ar.success ? 1.0 : 0.0;
          rec.metrics["attack_topk"] = ar.topk_intersection;
          rec.attack = attack_result_to_json(ar, &model.tokenizer());
          rec.attack["input_ids"] = req.input_ids;
        }
      }
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kInvalidArgument && e.code() != ErrorCode::kResourceExhausted)
        throw;
      bad_row(row.line, e.what());
      continue;
    }
    ExampleRecord er;
    er.line = row.line;
    er.methods = recs;
    store.append(er);
    records.push_back(std::move(recs));
    record_lines.push_back(row.line);
    ++progress.computed;
    report(i + 1);
  }
  result.n_computed = progress.computed;

  // Attack figures are table columns too: the success rate (mean of 0/1) and the top-k
  // intersection reached, with their bootstrap intervals.
  std::vector<std::string> table_metrics = metrics;
  if (attack) {
    table_metrics.push_back("attack_success");
    table_metrics.push_back("attack_topk");
  }
  nlohmann::json summary =
      summarize_benchmark(records, rows_names, table_metrics, options.bootstrap, options.seed);
  if (attack) summary["attacks"] = summarize_attacks(records, names, record_lines, *attack);
  if (options.decoys) {
    // How often each method beats each decoy, per faithfulness metric.
    nlohmann::json ranking;
    for (const auto& metric : metrics) {
      if (metric.find("sensitivity") != std::string::npos) continue;
      std::vector<std::map<std::string, double>> values;
      for (const auto& rec : records) {
        std::map<std::string, double> v;
        for (const auto& [name, mr] : rec) {
          auto f = mr.metrics.find(metric);
          if (f != mr.metrics.end()) v[name] = f->second;
        }
        values.push_back(v);
      }
      DecoyRanking dr =
          rank_against_decoys(values, names, decoy_names, metric_higher_is_better(metric));
      nlohmann::json mj;
      for (size_t m = 0; m < names.size(); ++m)
        for (size_t d = 0; d < decoy_names.size(); ++d)
          mj["win_rate"][names[m]][decoy_names[d]] = dr.win_rate[m][d];
      for (size_t d = 0; d < decoy_names.size(); ++d)
        mj["caught_rate"][decoy_names[d]] = dr.caught_rate[d];
      ranking[metric] = mj;
    }
    summary["decoy_ranking"] = ranking;
  }
  summary["model"] = options.model.path;
  summary["data"] = options.data;
  summary["removal"] = options.removal;
  summary["skipped"] = skipped;
  summary["complete"] = !interrupted;
  store.finish(summary);
  result.summary = std::move(summary);
  result.complete = !interrupted;
  result.n_skipped = result.summary["skipped"].size();
  return result;
}

}  // namespace candor::jobs
