// `candor explain` on a model over table rows (the MLP of `candor train`, a glass-box student of
// `candor distill`): one row, several rows or a whole file explained per input column
// (candor/table_explain.h). One row prints like a text explanation; several print one table
// per method (a row per explained row, a column per input column). --json, --html and --csv
// write them.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "candor/files.h"
#include "candor/jobs_explain.h"
#include "candor/report.h"
#include "candor/table_explain.h"
#include "explain_table.h"

namespace candor::cli {

namespace {

// "3", "0,4,7", "2-10", "all" (repeatable) -> row indices, in the order given.
std::vector<size_t> parse_rows(const std::vector<std::string>& specs, size_t n_rows,
                               const std::string& data) {
  std::vector<size_t> rows;
  auto bad = [&](const std::string& s) {
    return usage_error("--row '" + s + "' is not a row index, a range A-B or 'all'",
                       "rows are counted from 0 (the first data row, after the header); e.g. "
                       "--row 3, --row 0-9, --row all");
  };
  auto number = [&](const std::string& s) -> size_t {
    if (s.empty() || s.size() > 12 || s.find_first_not_of("0123456789") != std::string::npos)
      throw bad(s);
    const size_t v = std::stoull(s);
    if (v >= n_rows)
      throw usage_error("--row " + s + ": " + data + " has " + std::to_string(n_rows) +
                            " data row" + (n_rows == 1 ? "" : "s") +
                            (n_rows ? " (0.." + std::to_string(n_rows - 1) + ")" : std::string()),
                        "give a row index below " + std::to_string(n_rows) +
                            " (rows are counted from 0, after the header)");
    return v;
  };
  for (const std::string& spec : specs) {
    std::stringstream ss(spec);
    std::string item;
    while (std::getline(ss, item, ',')) {
      if (item == "all") {
        for (size_t r = 0; r < n_rows; ++r) rows.push_back(r);
        continue;
      }
      const size_t dash = item.find('-');
      if (dash == std::string::npos) {
        rows.push_back(number(item));
        continue;
      }
      const size_t a = number(item.substr(0, dash)), b = number(item.substr(dash + 1));
      if (b < a) throw bad(item);
      for (size_t r = a; r <= b; ++r) rows.push_back(r);
    }
  }
  return rows;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string o = "\"";
  for (char c : s) o += c == '"' ? std::string("\"\"") : std::string(1, c);
  return o + "\"";
}

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

}  // namespace

bool is_table_model(const std::string& model) {
  return distill::MlpClassifier::is_saved(model) || distill::SavedStudent::is_saved(model);
}

int run_explain_table(const TableExplainArgs& a) {
  // Options that belong to text models, refused with what to do instead.
  const std::string what = "'" + a.model + "' is a model over table rows";
  if (!a.prompt.empty())
    throw usage_error("--prompt: " + what + ", which reads columns, not a prompt",
                      "explain a row with --data FILE --row N (rows counted from 0)");
  if (a.data.empty())
    throw usage_error(what + ": give the rows to explain with --data FILE (CSV or JSON Lines)",
                      "e.g. candor explain --model " + a.model + " --data FILE --row 0");
  for (const auto& [given, name] :
       std::vector<std::pair<bool, std::string>>{{a.generate > 0, "--generate"},
                                                 {a.chat, "--chat"},
                                                 {!a.contrast.empty(), "--contrast"},
                                                 {!a.tokenizer.empty(), "--tokenizer"},
                                                 {a.evaluate, "--evaluate"},
                                                 {a.consensus, "--consensus"},
                                                 {a.temperature_scaling, "--temperature-scaling"},
                                                 {a.baseline != "unk", "--baseline"},
                                                 {a.granularity != "token", "--granularity"}})
    if (given)
      throw usage_error(name + ": " + what +
                            " (explained per column; a removed column takes its training mean "
                            "or most frequent level)",
                        "leave " + name + " out");
  if (!a.json_path.empty()) check_output_file(a.json_path, "--json");
  if (!a.html_path.empty()) check_output_file(a.html_path, "--html");
  if (!a.csv_path.empty()) check_output_file(a.csv_path, "--csv");

  std::unique_ptr<distill::TableExplainer> ex;
  if (distill::SavedStudent::is_saved(a.model))
    ex = std::make_unique<distill::TableExplainer>(
        std::shared_ptr<const distill::SavedStudent>(distill::SavedStudent::load(a.model)));
  else
    ex = std::make_unique<distill::TableExplainer>(
        std::shared_ptr<const distill::MlpClassifier>(distill::MlpClassifier::load(a.model)));
  distill::TableExplainOptions eo;
  eo.methods = a.methods;
  eo.target = a.target;
  if (!a.target_function.empty()) eo.target_function = a.target_function;
  try {
    ex->check(eo);
  } catch (const Error& e) {
    throw usage_error(e.what(), e.hint());
  }

  // The rows, with the model's input columns typed as it reads them (and required).
  data::ReadOptions ro;
  try {
    ro.on_error = data::parse_error_policy(a.on_error);
  } catch (const Error& e) {
    throw usage_error(std::string("--on-error: ") + e.what(), "use fail or skip");
  }
  for (const distill::Feature& f : ex->featurizer().features()) {
    ro.types[f.column] = f.kind == distill::Feature::kNumeric       ? data::ColumnType::kNumeric
                         : f.kind == distill::Feature::kCategorical ? data::ColumnType::kCategorical
                                                                    : data::ColumnType::kText;
  }
  for (const std::string& c : ex->columns()) ro.required.push_back(c);
  const data::Table table = data::read_table(a.data, ro);
  const std::vector<size_t> rows =
      parse_rows(a.rows.empty() ? std::vector<std::string>{"all"} : a.rows, table.n_rows(), a.data);
  if (rows.empty())
    throw usage_error(a.data + " has no data rows to explain", "give a file with rows");

  const bool tty = ::isatty(STDERR_FILENO);
  int last = -1;
  ExplainContext ctx;
  ctx.progress = [&](double f) {
    const int pct = static_cast<int>(f * 100);
    if (!a.no_progress && rows.size() > 1 && pct != last && (tty || pct == 100)) {
      last = pct;
      std::cerr << "\rexplaining " << rows.size() << " rows [" << std::string(pct / 5, '#')
                << std::string(20 - pct / 5, '.') << "] " << pct << "%" << (pct == 100 ? "\n" : "")
                << std::flush;
    }
    return !interrupt_token().cancelled();
  };
  std::vector<distill::RowExplanation> done;
  {
    InterruptScope interrupt;
    try {
      done = ex->explain(table, rows, eo, ctx);
    } catch (const Error& e) {
      if (e.code() == ErrorCode::kCancelled) return report_interrupted(e, "rerun it");
      throw;
    }
  }

  auto context_of = [&](const distill::RowExplanation& r) {
    ReportContext c;
    c.title = "candor explanation of a table row";
    c.model = a.model;
    std::string row;
    for (const auto& f : r.attributions[0].features) row += (row.empty() ? "" : ", ") + f.label;
    c.prompt = "row " + std::to_string(r.row) + " (line " + std::to_string(r.line) + ") of " +
               a.data + ": " + row;
    c.target_description = r.attributions[0].target_function + " of class '" +
                           r.attributions[0].step_texts[0] + "' (predicted: " + r.predicted + ")";
    return c;
  };
  auto row_json = [&](const distill::RowExplanation& r) {
    nlohmann::ordered_json j = jobs::explain_envelope(context_of(r), r.attributions);
    j["data"] = a.data;
    j["row"] = r.row;
    j["line"] = r.line;
    j["predicted"] = r.predicted;
    nlohmann::ordered_json p;
    for (size_t c = 0; c < ex->classes().size(); ++c) p[ex->classes()[c]] = r.probabilities[c];
    j["probabilities"] = p;
    return j;
  };

  const bool color = ::isatty(STDOUT_FILENO);
  const size_t n_methods = done[0].attributions.size();
  if (done.size() == 1) {
    std::cout << context_of(done[0]).prompt << "\npredicted: " << done[0].predicted << "\n";
    for (const auto& at : done[0].attributions) std::cout << render_console(at, color) << "\n";
  } else {
    // One table per method: a row per explained row, a column per input column.
    for (size_t m = 0; m < n_methods; ++m) {
      const Attribution& first = done[0].attributions[m];
      std::cout << "== " << first.method;
      for (const auto& [k, v] : first.options) std::cout << " " << k << "=" << v;
      std::cout << " (" << first.target_function << " of the "
                << (a.target.empty() ? "predicted class" : "class '" + a.target + "'") << ")\n";
      std::vector<size_t> width;
      std::cout << "   row   line  predicted ";
      for (const std::string& c : ex->columns()) {
        width.push_back(std::max<size_t>(10, c.size()));
        std::cout << " " << std::string(width.back() - std::min(width.back(), c.size()), ' ') << c;
      }
      std::cout << "\n";
      for (const auto& r : done) {
        char buf[64];
        std::snprintf(buf, sizeof(buf), "%6zu %6lld  %-10s", r.row, static_cast<long long>(r.line),
                      r.predicted.substr(0, 10).c_str());
        std::cout << buf;
        for (size_t c = 0; c < width.size(); ++c) {
          std::snprintf(buf, sizeof(buf), " %*.4f", static_cast<int>(width[c]),
                        r.attributions[m].scores[c]);
          std::cout << buf;
        }
        std::cout << "\n";
      }
      std::cout << "\n";
    }
    std::vector<std::string> warnings;
    for (const auto& r : done)
      for (const auto& at : r.attributions)
        for (const auto& w : at.warnings)
          if (std::find(warnings.begin(), warnings.end(), w) == warnings.end())
            warnings.push_back(w);
    for (const auto& w : warnings) std::cout << "warning: " << w << "\n";
  }

  if (!a.json_path.empty()) {
    nlohmann::ordered_json j;
    if (done.size() == 1) {
      j = row_json(done[0]);
    } else {
      j["model"] = a.model;
      j["data"] = a.data;
      j["rows"] = nlohmann::json::array();
      for (const auto& r : done) j["rows"].push_back(row_json(r));
    }
    write_file_atomic(a.json_path, jobs::envelope_text(j));
    std::cerr << "wrote " << a.json_path << "\n";
  }
  if (!a.csv_path.empty()) {
    std::string csv = "row,line,predicted,class,target_function,method,target,baseline";
    for (const std::string& c : ex->columns()) csv += "," + csv_field(c);
    csv += "\n";
    for (const auto& r : done)
      for (const auto& at : r.attributions) {
        csv += std::to_string(r.row) + "," + std::to_string(r.line) + "," + csv_field(r.predicted) +
               "," + csv_field(at.step_texts[0]) + "," + at.target_function + "," + at.method +
               "," + fmt(at.target_values[0]) + "," + fmt(at.baseline_values[0]);
        for (double s : at.scores) csv += "," + fmt(s);
        csv += "\n";
      }
    write_file_atomic(a.csv_path, csv);
    std::cerr << "wrote " << a.csv_path << "\n";
  }
  if (!a.html_path.empty()) {
    // One page: every row's attributions, each card named by its method and row.
    std::vector<Attribution> all;
    for (const auto& r : done)
      for (Attribution at : r.attributions) {
        if (done.size() > 1) at.method += " · row " + std::to_string(r.row);
        all.push_back(std::move(at));
      }
    ReportContext c = context_of(done[0]);
    if (done.size() > 1) {
      c.prompt = std::to_string(done.size()) + " rows of " + a.data;
      c.target_description = done[0].attributions[0].target_function + " of the " +
                             (a.target.empty() ? std::string("predicted class of each row")
                                               : "class '" + a.target + "'");
    }
    write_file_atomic(a.html_path, render_html(all, c));
    std::cerr << "wrote " << a.html_path << "\n";
  }
  return 0;
}

}  // namespace candor::cli
