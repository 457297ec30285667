// `candor audit fairness | calibration | conformal`: audits of a model's outputs given as columns
// of a CSV / JSON Lines file (--prediction, --probability). The work is candor/audit.h; this
// file parses the arguments, writes OUT/audit.json, audit.md and report.html, and prints a summary.
// The supervisor's subcommands (verify-log, check-policy, supervise) are in cmd_audit_supervision.cpp.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "candor/audit.h"
#include "candor/report.h"
#include "cli.h"

namespace candor::cli {

namespace {

struct AuditArgs {
  std::string data, label, prediction, out, on_error = "fail";
  std::vector<std::string> label_positive, prediction_positive, probability, classes, groups;
  double threshold = 0.5;
  uint64_t seed = 1;
  // fairness
  int n_boot = 1000, ece_bins = 10, threads = 0;
  int64_t min_group_size = 30;
  double confidence = 0.95;
  bool intersect = false;
  // calibration / conformal
  int bins = 15;
  double calibration_fraction = 0.5, alpha = 0.1;
  bool no_temperature = false;
  std::vector<std::string> scores = {"lac", "aps"};
};

void add_common(CLI::App& app, AuditArgs* a, bool needs_groups) {
  app.add_option("--data", a->data, "CSV (header row) or JSON Lines file, one example a record")->required();
  app.add_option("--label", a->label, "Column of the true outcome")->required();
  app.add_option("--label-positive", a->label_positive, "Label values that are the positive outcome (V,V...)")
      ->delimiter(',');
  app.add_option("--probability", a->probability,
                 "Column of the positive class's probability, or one column per class (with --classes)")
      ->delimiter(',');
  app.add_option("--group", a->groups, needs_groups ? "Group columns (COL[,COL...])" : "Columns to break the figures down by")
      ->delimiter(',');
  app.add_option("--on-error", a->on_error, "fail | skip: what a bad record does (skips are counted)");
  app.add_option("--seed", a->seed, "Seed of the splits and resamples (1)");
  app.add_option("--out", a->out, "Output folder (audit.json, audit.md, report.html)")->required();
}

data::ErrorPolicy policy(const std::string& s) {
  if (s == "fail") return data::ErrorPolicy::kFail;
  if (s == "skip") return data::ErrorPolicy::kSkip;
  throw usage_error("--on-error must be fail or skip, not '" + s + "'");
}

void write_outputs(const std::string& out, const nlohmann::json& j, const std::string& title) {
  std::filesystem::create_directories(out);
  std::ofstream(out + "/audit.json") << j.dump(2) << "\n";
  std::ofstream(out + "/audit.md") << render_audit_markdown(j);
  std::ofstream(out + "/report.html") << render_audit_html(j, title);
}

void print_skips(const audit::AuditData& d) {
  if (d.n_skipped == 0) return;
  std::cerr << "skipped " << d.n_skipped << " bad records";
  if (!d.skipped.empty()) std::cerr << " (first: line " << d.skipped[0].line << ": " << d.skipped[0].reason << ")";
  std::cerr << "\n";
}

int run_fairness(const AuditArgs& a) {
  if (a.groups.empty()) throw usage_error("audit fairness needs --group COL[,COL...]");
  if (a.prediction.empty() && a.probability.empty())
    throw usage_error("audit fairness needs the model's decisions: --prediction COL or --probability COL");
  audit::AuditColumns cols{a.label, a.prediction, a.probability, a.groups};
  audit::AuditData d = audit::read_audit_data(a.data, cols, policy(a.on_error));
  audit::BinaryOutcomes o = audit::binarize(d, a.label_positive, a.prediction_positive, a.threshold);
  audit::FairnessOptions fo;
  fo.n_boot = a.n_boot;
  fo.seed = a.seed;
  fo.confidence = a.confidence;
  fo.min_group_size = a.min_group_size;
  fo.intersect = a.intersect;
  fo.ece_bins = a.ece_bins;
  fo.threads = a.threads;
  audit::FairnessResult r = audit::audit_fairness(o, d.groups, fo);
  r.n_skipped = d.n_skipped;
  nlohmann::json j = r.to_json();
  j["data"] = a.data;
  write_outputs(a.out, j, "candor fairness audit");
  print_skips(d);
  std::cout << "fairness audit of " << r.n_rows << " rows, " << r.groups.size() << " groups\n";
  for (const audit::Disparity& x : r.disparities) {
    if (x.reference != "groups" || (x.metric != "demographic_parity" && x.metric != "equalized_odds")) continue;
    std::cout << "  " << x.column << ": " << x.metric << " " << x.kind << " " << x.value << " [" << x.ci[0] << ", "
              << x.ci[1] << "] between " << x.between[0] << " and " << x.between[1]
              << (x.flag ? "  (below four-fifths)" : "") << "\n";
  }
  for (const nlohmann::json& f : j["flags"]) std::cout << "  flag: " << f["message"].get<std::string>() << "\n";
  std::cout << "wrote " << a.out << "/audit.json, audit.md, report.html\n";
  return 0;
}

audit::ClassProbabilities read_probs(const AuditArgs& a, audit::AuditData* d) {
  if (a.probability.empty())
    throw usage_error("this audit needs probabilities: --probability COL (binary) or COL,COL... with --classes");
  audit::AuditColumns cols{a.label, "", a.probability, a.groups};
  *d = audit::read_audit_data(a.data, cols, policy(a.on_error));
  return audit::class_probabilities(*d, a.classes, a.label_positive);
}

int run_calibration(const AuditArgs& a) {
  audit::AuditData d;
  audit::ClassProbabilities p = read_probs(a, &d);
  audit::CalibrationOptions co;
  co.bins = a.bins;
  co.calibration_fraction = a.calibration_fraction;
  co.seed = a.seed;
  co.fit_temperature = !a.no_temperature;
  audit::CalibrationResult r = audit::audit_calibration(p, d.groups, co);
  r.n_skipped = d.n_skipped;
  nlohmann::json j = r.to_json();
  j["data"] = a.data;
  write_outputs(a.out, j, "candor calibration audit");
  if (co.fit_temperature)
    std::ofstream(a.out + "/temperature.json")
        << nlohmann::json{{"temperature", r.temperature}, {"fitted_on_rows", r.n_calibration}, {"data", a.data}}.dump(2)
        << "\n";
  print_skips(d);
  std::cout << "calibration of " << r.n_rows << " rows: accuracy " << r.all.accuracy << ", NLL " << r.all.nll
            << ", Brier " << r.all.brier << ", ECE " << r.all.ece << " (equal-mass " << r.all.ece_mass << "), MCE "
            << r.all.mce << ", AURC " << r.risk_coverage.aurc << "\n";
  if (co.fit_temperature)
    std::cout << "temperature " << r.temperature << ": held-out NLL " << r.heldout_before.nll << " -> "
              << r.heldout_after.nll << ", ECE " << r.heldout_before.ece << " -> " << r.heldout_after.ece << "\n";
  std::cout << "wrote " << a.out << "/audit.json, audit.md, report.html\n";
  return 0;
}

int run_conformal(const AuditArgs& a) {
  audit::AuditData d;
  audit::ClassProbabilities p = read_probs(a, &d);
  audit::ConformalOptions co;
  co.alpha = a.alpha;
  co.calibration_fraction = a.calibration_fraction;
  co.seed = a.seed;
  co.scores.clear();
  for (const std::string& s : a.scores) co.scores.push_back(audit::parse_conformal_score(s));
  audit::ConformalResult r = audit::audit_conformal(p, d.groups, co);
  r.n_skipped = d.n_skipped;
  nlohmann::json j = r.to_json();
  j["data"] = a.data;
  write_outputs(a.out, j, "candor conformal prediction sets");
  {
    std::ofstream f(a.out + "/sets.jsonl");
    for (size_t i = 0; i < r.heldout.size(); ++i) {
      nlohmann::json row{{"record", r.heldout[i] + 1}, {"label", p.classes[p.label[r.heldout[i]]]}};
      for (const audit::ConformalMethodResult& m : r.methods) {
        nlohmann::json set = nlohmann::json::array();
        for (int32_t k : m.sets[i]) set.push_back(p.classes[k]);
        row[audit::conformal_score_name(m.score)] = set;
      }
      f << row.dump() << "\n";
    }
  }
  print_skips(d);
  for (const audit::ConformalMethodResult& m : r.methods)
    std::cout << audit::conformal_score_name(m.score) << ": coverage " << m.coverage << " (target " << 1 - co.alpha
              << "), mean set size " << m.mean_set_size << ", empty sets " << m.n_empty << "\n";
  std::cout << "wrote " << a.out << "/audit.json, audit.md, report.html, sets.jsonl\n";
  return 0;
}

}  // namespace

Runner add_audit(CLI::App& app) {
  app.require_subcommand(1);
  auto a = std::make_shared<AuditArgs>();
  CLI::App* fair = app.add_subcommand("fairness", "Group fairness of decisions, with bootstrap intervals");
  add_common(*fair, a.get(), true);
  fair->add_option("--prediction", a->prediction, "Column of the model's decision");
  fair->add_option("--prediction-positive", a->prediction_positive, "Decision values that are positive")
      ->delimiter(',');
  fair->add_option("--threshold", a->threshold, "Without --prediction: decide positive when p >= T (0.5)");
  fair->add_flag("--intersect", a->intersect, "Also audit every combination of the group columns' values");
  fair->add_option("--n-boot", a->n_boot, "Bootstrap resamples (1000; 0: no intervals)");
  fair->add_option("--confidence", a->confidence, "Level of the intervals (0.95)");
  fair->add_option("--min-group-size", a->min_group_size, "Groups smaller than this are flagged (30)");
  fair->add_option("--ece-bins", a->ece_bins, "Score bins of the per-group ECE (10)");
  fair->add_option("--threads", a->threads, "Bootstrap threads (0: all cores, at most 8)");
  CLI::App* cal = app.add_subcommand("calibration",
                                     "Calibration (ECE, MCE, Brier, NLL), temperature scaling, risk-coverage");
  add_common(*cal, a.get(), false);
  cal->add_option("--classes", a->classes, "Label value of each --probability column, in order")->delimiter(',');
  cal->add_option("--bins", a->bins, "Confidence bins (15)");
  cal->add_option("--calibration-fraction", a->calibration_fraction, "Rows that fit the temperature (0.5)");
  cal->add_flag("--no-temperature", a->no_temperature, "Do not fit a temperature");
  CLI::App* conf = app.add_subcommand("conformal", "Split conformal prediction sets (LAC, APS)");
  add_common(*conf, a.get(), false);
  conf->add_option("--classes", a->classes, "Label value of each --probability column, in order")->delimiter(',');
  conf->add_option("--alpha", a->alpha, "Miscoverage: sets cover the label with probability 1 - alpha (0.1)");
  conf->add_option("--calibration-fraction", a->calibration_fraction, "Rows that calibrate the threshold (0.5)");
  conf->add_option("--score", a->scores, "lac | aps (both by default)")->delimiter(',');
  Runner supervision = add_audit_supervision(app);  // verify-log, check-policy, supervise
  return [a, fair, cal, conf, supervision]() -> int {
    if (int code = supervision(); code >= 0) return code;
    if (fair->parsed()) return run_fairness(*a);
    if (cal->parsed()) return run_calibration(*a);
    if (conf->parsed()) return run_conformal(*a);
    return kExitUsage;
  };
}

}  // namespace candor::cli
