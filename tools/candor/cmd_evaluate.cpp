// `candor evaluate`: grade attribution methods over a data set. For every text of a CSV or JSONL
// file, explains the model's next token with each method and scores the explanation with the
// chosen metrics; writes a methods x metrics table (mean and bootstrap interval) as Markdown,
// JSON and HTML with the deletion/insertion curves. Finished examples are appended to
// OUT/examples.jsonl as they complete, and a rerun with the same settings resumes from there.
#include <sys/stat.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>

#include "candor/data.h"
#include "candor/evaluate.h"
#include "candor/explain.h"
#include "candor/generate.h"
#include "candor/model.h"
#include "candor/report.h"
#include "cli.h"

namespace candor::cli {
namespace {

std::atomic<bool> g_stop{false};
void on_sigint(int) { g_stop = true; }

void write_text(const std::string& path, const std::string& content) {
  std::ofstream f(path, std::ios::binary);
  if (!f) throw Error(ErrorCode::kNotFound, "cannot write '" + path + "'");
  f << content;
}

bool is_blank(const std::string& s) {
  for (unsigned char c : s)
    if (!std::isspace(c)) return false;
  return true;
}

// Makes `dir` and its parents.
void make_dirs(const std::string& dir) {
  std::string cur;
  std::istringstream in(dir);
  std::string part;
  if (!dir.empty() && dir[0] == '/') cur = "/";
  while (std::getline(in, part, '/')) {
    if (part.empty()) continue;
    cur += part + "/";
    ::mkdir(cur.c_str(), 0755);
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw Error(ErrorCode::kNotFound, "cannot create the output folder '" + dir + "'");
}

}  // namespace

Runner add_evaluate(CLI::App& app) {
  struct Opts {
    std::string model, tokenizer, data, out, text_column = "text", removal = "baseline",
                                             baseline = "unk", on_error = "fail";
    std::vector<std::string> methods, metrics;
    int64_t limit = -1, max_tokens = 64, bootstrap = 1000, curve_points = 0, sens_samples = 4,
            generate = 0;
    uint64_t seed = 0;
    int threads = 0;
    bool no_progress = false;
    bool decoys = false;
    std::string attack;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("--model,-m", o->model, "Checkpoint file, or a folder holding it")->required();
  app.add_option("--tokenizer", o->tokenizer, "Tokenizer file (default: found beside the model)");
  app.add_option("--data", o->data, "Texts: .jsonl (one object a line) or .csv with a header")
      ->required();
  app.add_option("--text-column", o->text_column, "Column (or JSON key) holding the text");
  app.add_option("--method", o->methods,
                 "Method spec NAME[:key=value,...] (repeatable; default integrated_gradients, "
                 "occlusion)");
  app.add_option("--metric", o->metrics,
                 "faithfulness (default) | sensitivity | comprehensiveness | sufficiency | "
                 "deletion | insertion | infidelity | loo_kendall | avg_sensitivity | "
                 "max_sensitivity (repeatable)");
  app.add_option("--out", o->out, "Output folder (table.md, table.json, report.html)")->required();
  app.add_option("--removal", o->removal, "baseline (replace) | delete (default baseline)");
  app.add_option("--baseline", o->baseline, "unk | pad | zero | token id (default unk)");
  app.add_option("--max-tokens", o->max_tokens, "Keep the first N tokens of each text (64)");
  app.add_option("--generate", o->generate,
                 "Explain the model's greedy answer of N tokens to each text (the summed log-prob "
                 "of the span) instead of its next token (0, the default)");
  app.add_option("--curve-points", o->curve_points,
                 "Points of the deletion/insertion curves (0: every feature count)");
  app.add_option("--sensitivity-samples", o->sens_samples, "Perturbations per example (4)");
  app.add_option("--limit", o->limit, "Evaluate only the first N texts");
  app.add_option("--bootstrap", o->bootstrap, "Bootstrap resamples for the intervals (1000)");
  app.add_option("--seed", o->seed, "Seed of the random parts (0)");
  app.add_option("--on-error", o->on_error,
                 "Bad rows (malformed, empty, no text): fail (default) | skip (reported)");
  app.add_option("--threads", o->threads, "Intra-op threads (default: one per core)");
  app.add_flag("--no-progress", o->no_progress, "No progress bar on stderr");
  app.add_flag("--decoys", o->decoys,
               "Also grade decoy explanations (random, inverted, first, last, other_target) and "
               "report how often each method beats each decoy (docs/evaluation.md)");
  app.add_option("--attack", o->attack,
                 "Attack each method's explanations: substitution (nearest-neighbour tokens) | "
                 "noise (embedding noise), with options NAME:key=value,... (n_candidates, "
                 "n_rounds, top_k, success_below, max_prob_change, neighbours | radius); reports "
                 "the success rate, the top-k intersection reached and the changes found");
  return [o]() {
    if (o->methods.empty()) o->methods = {"integrated_gradients", "occlusion"};
    std::vector<std::unique_ptr<Explainer>> explainers;
    std::vector<std::string> names;
    for (const auto& m : o->methods) {
      try {
        explainers.push_back(make_explainer(m));
      } catch (const Error& e) {
        throw usage_error(std::string("--method ") + e.what(), e.hint());
      }
      names.push_back(m);
    }
    std::set<std::string> uniq(names.begin(), names.end());
    if (uniq.size() != names.size()) throw usage_error("--method lists a method twice");
    std::vector<std::string> metrics;
    FaithfulnessOptions fo;
    RobustnessOptions ro;
    data::ErrorPolicy policy;
    Baseline baseline;
    try {
      metrics = parse_benchmark_metrics(o->metrics);
      fo.removal = parse_removal(o->removal);
      policy = data::parse_error_policy(o->on_error);
      baseline = parse_baseline(o->baseline);
    } catch (const Error& e) {
      throw usage_error(e.what(), e.hint());
    }
    if (o->max_tokens < 2) throw usage_error("--max-tokens must be at least 2");
    if (o->generate < 0) throw usage_error("--generate must be 0 or more");
    if (o->bootstrap < 0) throw usage_error("--bootstrap must be >= 0");
    if (o->curve_points < 0) throw usage_error("--curve-points must be >= 0");
    if (o->sens_samples < 1) throw usage_error("--sensitivity-samples must be >= 1");
    std::optional<AttackOptions> attack;
    if (!o->attack.empty()) {
      try {
        attack = parse_attack(o->attack);
      } catch (const Error& e) {
        throw usage_error(std::string("--attack: ") + e.what(), e.hint());
      }
    }
    fo.curve_points = o->curve_points;
    fo.seed = o->seed;
    ro.n_samples = o->sens_samples;
    ro.seed = o->seed;
    check_prompt_and_threads("x", o->threads);

    // --- the data: bad rows are reported with their line, never dropped silently -------------
    data::ReadOptions rdo;
    rdo.on_error = policy;
    rdo.required = {o->text_column};
    rdo.types[o->text_column] = data::ColumnType::kText;
    rdo.missing_values = {};
    data::Table table = data::read_table(o->data, rdo);
    nlohmann::json skipped = nlohmann::json::array();
    for (const auto& s : table.skipped()) {
      skipped.push_back({{"line", s.line}, {"reason", s.reason}});
      std::cerr << "warning: " << o->data << " line " << s.line << ": " << s.reason
                << " (skipped)\n";
    }
    const data::Column& col = table.column(o->text_column);
    struct Row {
      int64_t line;
      std::string text;
    };
    std::vector<Row> rows;
    auto bad_row = [&](int64_t line, const std::string& reason) {
      if (policy == data::ErrorPolicy::kFail) {
        throw Error(ErrorCode::kInvalidArgument,
                    o->data + " line " + std::to_string(line) + ": " + reason,
                    "fix the row, or pass --on-error skip to leave bad rows out (they are listed)");
      }
      skipped.push_back({{"line", line}, {"reason", reason}});
      std::cerr << "warning: " << o->data << " line " << line << ": " << reason << " (skipped)\n";
    };
    for (size_t r = 0; r < table.n_rows(); ++r) {
      if (col.is_missing(r) || is_blank(col.raw[r])) {
        bad_row(table.line_of(r), "no text in column '" + o->text_column + "'");
        continue;
      }
      rows.push_back({table.line_of(r), col.raw[r]});
    }
    if (o->limit >= 0 && static_cast<int64_t>(rows.size()) > o->limit) rows.resize(o->limit);

    std::unique_ptr<Model> model = load_cli_model(o->model, o->tokenizer, o->threads);

    // --- resumption: the settings must match; finished examples are read back ---------------
    make_dirs(o->out);
    nlohmann::ordered_json config;
    config["model"] = o->model;
    config["data"] = o->data;
    config["text_column"] = o->text_column;
    config["methods"] = names;
    config["metrics"] = metrics;
    config["removal"] = o->removal;
    config["baseline"] = o->baseline;
    config["max_tokens"] = o->max_tokens;
    if (o->generate > 0) config["generate"] = o->generate;
    config["curve_points"] = o->curve_points;
    config["sensitivity_samples"] = o->sens_samples;
    config["seed"] = o->seed;
    config["decoys"] = o->decoys;
    if (attack) config["attack"] = attack_options_to_json(*attack);
    // Rows of the table: the methods, then the decoys (built on the first method's scores).
    std::vector<std::string> decoy_names;
    if (o->decoys)
      decoy_names = {"decoy:random", "decoy:inverted", "decoy:first", "decoy:last",
                     "decoy:other_target"};
    std::vector<std::string> rows_names = names;
    rows_names.insert(rows_names.end(), decoy_names.begin(), decoy_names.end());
    const std::string run_path = o->out + "/run.json", ex_path = o->out + "/examples.jsonl";
    {
      std::ifstream in(run_path);
      if (in) {
        nlohmann::json prev;
        try {
          prev = nlohmann::json::parse(in);
        } catch (const std::exception&) {
        }
        if (prev != nlohmann::json(config)) {
          throw usage_error("'" + o->out + "' holds a run with other settings (" + run_path + ")",
                            "use another --out folder, or delete that one to start again");
        }
      } else {
        write_text(run_path, config.dump(2) + "\n");
      }
    }
    std::map<int64_t, std::map<std::string, MethodRecord>> done;  // by data line
    std::map<int64_t, std::string> done_lines;
    {
      std::ifstream in(ex_path);
      std::string line;
      int64_t n = 0, dropped = 0;
      while (std::getline(in, line)) {
        ++n;
        try {
          nlohmann::json j = nlohmann::json::parse(line);
          std::map<std::string, MethodRecord> recs;
          for (const auto& m : rows_names) recs[m] = method_record_from_json(j.at("methods").at(m));
          done[j.at("line").get<int64_t>()] = recs;
          done_lines[j.at("line").get<int64_t>()] = line;
        } catch (const std::exception&) {
          ++dropped;  // an example cut off by an interruption: done again
        }
      }
      if (dropped > 0) {
        std::cerr << "note: " << dropped << " unfinished record(s) in " << ex_path
                  << " are redone\n";
        std::ofstream rewrite(ex_path, std::ios::trunc);
        for (const auto& [l, text] : done_lines) rewrite << text << "\n";
      }
      if (!done.empty())
        std::cerr << "resuming: " << done.size() << " example(s) already evaluated\n";
    }

    // --- the run ---------------------------------------------------------------------------
    std::ofstream ex_out(ex_path, std::ios::app);
    const bool tty = ::isatty(STDERR_FILENO);
    std::signal(SIGINT, on_sigint);
    const auto start = std::chrono::steady_clock::now();
    int64_t computed = 0, todo_total = 0;
    for (const auto& r : rows) todo_total += done.count(r.line) ? 0 : 1;
    auto progress = [&](size_t i) {
      if (o->no_progress) return;
      const double f =
          rows.empty() ? 1.0 : static_cast<double>(i) / static_cast<double>(rows.size());
      const int bars = static_cast<int>(f * 30);
      double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      double eta = computed > 0 ? el / static_cast<double>(computed) *
                                      static_cast<double>(todo_total - computed)
                                : 0;
      char buf[160];
      std::snprintf(buf, sizeof(buf), "\r[%s%s] %zu/%zu examples, %.0fs elapsed, ~%.0fs left ",
                    std::string(bars, '#').c_str(), std::string(30 - bars, '.').c_str(), i,
                    rows.size(), el, eta);
      if (tty || i == rows.size()) std::cerr << buf << (i == rows.size() ? "\n" : "") << std::flush;
    };
    std::vector<std::map<std::string, MethodRecord>> records;
    std::vector<int64_t> record_lines;  // data line of each record
    bool interrupted = false;
    for (size_t i = 0; i < rows.size(); ++i) {
      if (g_stop) {
        interrupted = true;
        break;
      }
      const Row& row = rows[i];
      auto it = done.find(row.line);
      if (it != done.end()) {
        records.push_back(it->second);
        record_lines.push_back(row.line);
        progress(i + 1);
        continue;
      }
      ExplainRequest req;
      req.baseline = baseline;
      req.input_ids = model->tokenizer().encode(row.text, true, false);
      if (static_cast<int64_t>(req.input_ids.size()) > o->max_tokens)
        req.input_ids.resize(o->max_tokens);
      if (req.input_ids.size() < 2) {
        bad_row(row.line, "the text encodes to no tokens");
        continue;
      }
      if (o->generate > 0) {
        GenerateOptions g;  // greedy
        g.max_new_tokens = o->generate;
        req.target.span = candor::generate(*model, req.input_ids, g).generated_ids;
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
          atts.push_back(explainers[m]->explain(*model, req));
        if (o->decoys) {
          DecoyOptions dop;
          dop.seed = o->seed + static_cast<uint64_t>(row.line);
          dop.other_target = explainers[0].get();
          for (Attribution& d : make_decoys(*model, req, atts[0], dop)) {
            labels.push_back("decoy:" + d.method);
            atts.push_back(std::move(d));
          }
        }
        std::vector<std::string> fm, sm;  // faithfulness / sensitivity metrics
        for (const auto& x : metrics)
          (x.find("sensitivity") == std::string::npos ? fm : sm).push_back(x);
        std::vector<MethodRecord> frs = benchmark_faithfulness_records(*model, req, atts, fm, fo);
        for (size_t i = 0; i < atts.size(); ++i) recs[labels[i]] = frs[i];
        for (size_t m = 0; m < explainers.size(); ++m) {
          MethodRecord& rec = recs[names[m]];
          // Decoys have no explainer to rerun: sensitivity and attacks for the methods only.
          if (!sm.empty()) {
            MethodRecord sr = benchmark_record(*model, req, *explainers[m], atts[m], sm, fo, ro);
            for (const auto& [k, v] : sr.metrics) rec.metrics[k] = v;
          }
          if (attack) {
            // Seeded per example, so that a resumed run finds the same changes.
            AttackOptions ao = *attack;
            ao.seed = o->seed + static_cast<uint64_t>(row.line);
            AttackResult ar = attack_explainer(*model, req, *explainers[m], atts[m], ao);
            rec.metrics["attack_success"] = ar.success ? 1.0 : 0.0;
            rec.metrics["attack_topk"] = ar.topk_intersection;
            rec.attack = attack_result_to_json(ar, &model->tokenizer());
            rec.attack["input_ids"] = req.input_ids;
          }
        }
      } catch (const Error& e) {
        if (e.code() != ErrorCode::kInvalidArgument && e.code() != ErrorCode::kResourceExhausted)
          throw;
        bad_row(row.line, e.what());
        continue;
      }
      nlohmann::json j;
      j["line"] = row.line;
      nlohmann::json mj;
      for (const auto& [m, rec] : recs) mj[m] = method_record_to_json(rec);
      j["methods"] = mj;
      ex_out << j.dump() << "\n" << std::flush;
      records.push_back(recs);
      record_lines.push_back(row.line);
      ++computed;
      progress(i + 1);
    }
    std::signal(SIGINT, SIG_DFL);

    // Attack figures are table columns too: the success rate (mean of 0/1) and the top-k
    // intersection reached, with their bootstrap intervals.
    std::vector<std::string> table_metrics = metrics;
    if (attack) {
      table_metrics.push_back("attack_success");
      table_metrics.push_back("attack_topk");
    }
    nlohmann::json summary =
        summarize_benchmark(records, rows_names, table_metrics, o->bootstrap, o->seed);
    if (attack) summary["attacks"] = summarize_attacks(records, names, record_lines, *attack);
    if (o->decoys) {
      // How often each method beats each decoy, per faithfulness metric.
      nlohmann::json ranking;
      for (const auto& metric : metrics) {
        if (metric.find("sensitivity") != std::string::npos) continue;
        std::vector<std::map<std::string, double>> values;
        for (const auto& rec : records) {
          std::map<std::string, double> v;
          for (const auto& [name, mr] : rec) {
            auto it = mr.metrics.find(metric);
            if (it != mr.metrics.end()) v[name] = it->second;
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
    summary["model"] = o->model;
    summary["data"] = o->data;
    summary["removal"] = o->removal;
    summary["skipped"] = skipped;
    summary["complete"] = !interrupted;
    write_text(o->out + "/table.json", summary.dump(2) + "\n");
    write_text(o->out + "/table.md", render_benchmark_markdown(summary));
    write_text(o->out + "/report.html", render_benchmark_html(summary));
    std::cout << render_benchmark_markdown(summary);
    if (!skipped.empty()) std::cout << skipped.size() << " row(s) skipped (listed in table.json)\n";
    std::cerr << "wrote " << o->out << "/table.md, table.json, report.html\n";
    if (interrupted) {
      std::cerr << "interrupted: rerun the same command to resume\n";
      return 130;
    }
    return 0;
  };
}

}  // namespace candor::cli
