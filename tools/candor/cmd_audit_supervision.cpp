// The supervisor's subcommands under `candor audit`:
//   verify-log --db PATH [--json]          re-hash an audit log's chain (candor/audit_log.h)
//   check-policy --policy FILE [--json]    read a policy file, print it or its first error
//   supervise --model M --prompt TEXT [--policy FILE] [-n N] [--seed S] [--temperature T] [--json]
//                                           generate, explain and run the policy's checks once,
//                                           as the service does for a request (candor/supervise.h)
#include <chrono>
#include <iostream>
#include <memory>

#include "candor/audit_log.h"
#include "candor/explain.h"
#include "candor/generate.h"
#include "candor/supervise.h"
#include "cli.h"

namespace candor::cli {

namespace {

struct SupervisionArgs {
  std::string db, policy, model, tokenizer, prompt;
  int64_t max_new_tokens = 32;
  uint64_t seed = 0;
  float temperature = 0.0f;
  int threads = 0;
  bool json = false;
};

// `candor audit verify-log`: 0 when the chain is intact, 1 with the problems.
int run_verify_log(const SupervisionArgs& a) {
  store::VerifyReport report = store::verify_audit_log(a.db);
  if (a.json) {
    std::cout << report.to_json().dump(2) << "\n";
  } else if (report.ok) {
    std::cout << "ok: " << report.records << " records, chain intact (" << a.db << ")\n";
  } else {
    std::cout << "FAILED: " << report.problems.size() << " problem(s) in " << report.records
              << " records (" << a.db << ")\n";
    for (const auto& p : report.problems)
      std::cout << "  seq " << p.seq << (p.id.empty() ? "" : " id " + p.id) << ": " << p.what
                << ": " << p.detail << "\n";
  }
  return report.ok ? 0 : 1;
}

// A policy file's errors are the user's input errors: exit 2, like any bad option.
supervise::Policy read_policy(const std::string& path) {
  if (path.empty()) return supervise::default_policy();
  try {
    return supervise::load_policy(path);
  } catch (const Error& e) {
    throw usage_error(e.what(), e.hint());
  }
}

int run_check_policy(const SupervisionArgs& a) {
  supervise::Policy p = read_policy(a.policy);
  if (a.json) {
    std::cout << p.to_json().dump(2) << "\n";
    return 0;
  }
  std::cout << "ok: " << a.policy << " (sha256 " << p.hash << ")\n"
            << "explain: "
            << (p.explain.enabled ? p.explain.method + ", " + p.explain.granularity
                                  : std::string("off"))
            << "\n";
  for (const auto& c : p.checks)
    std::cout << "check " << c.name << ": " << c.type << " " << c.params.dump() << ", on_fail "
              << supervise::action_name(c.on_fail) << (c.async ? ", async" : "") << "\n";
  return 0;
}

void print_review(const char* title, const supervise::Review& r) {
  if (r.checks.empty()) return;
  std::cout << title << ": " << r.decision << "\n";
  for (const auto& c : r.checks)
    std::cout << "  " << c.name << " (" << c.type << "): " << c.outcome << " - " << c.detail
              << "\n";
  if (r.redact) std::cout << "  redacted answer: " << r.redacted_answer << "\n";
}

int run_supervise(const SupervisionArgs& a) {
  check_prompt_and_threads(a.prompt, a.threads);
  supervise::Policy policy = read_policy(a.policy);
  if (a.max_new_tokens < 1 || a.max_new_tokens > policy.limits.max_tokens)
    throw usage_error("-n must be from 1 to the policy's limits.max_tokens (" +
                      std::to_string(policy.limits.max_tokens) + "), not " +
                      std::to_string(a.max_new_tokens));
  auto start = std::chrono::steady_clock::now();
  std::unique_ptr<Model> model = load_cli_model(a.model, a.tokenizer, a.threads);
  GenerateOptions o;
  o.max_new_tokens = a.max_new_tokens;
  o.seed = a.seed;
  o.temperature = a.temperature;
  o.token_stats = true;
  GenerateResult g = generate(*model, std::string_view(a.prompt), o);

  // The policy's explanation of the answer (teacher-forced span target), as the service makes.
  std::unique_ptr<Attribution> explanation;
  ExplainRequest request;
  if (policy.explain.enabled && !g.generated_ids.empty()) {
    request.input_ids = g.prompt_ids;
    request.target.span = g.generated_ids;
    request.granularity = parse_granularity(policy.explain.granularity);
    explanation = std::make_unique<Attribution>(
        make_explainer(policy.explain.method)->explain(*model, request));
  }
  supervise::Exchange x;
  x.model = model.get();
  x.prompt_ids = g.prompt_ids;
  x.answer_ids = g.generated_ids;
  x.prompt = a.prompt;
  x.answer = g.text;
  x.token_stats = g.token_stats;
  x.explanation = explanation.get();
  x.explain_request = explanation ? &request : nullptr;
  x.elapsed_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  supervise::Supervisor supervisor(policy);
  supervise::Review now = supervisor.review(x);
  supervise::Review later = supervisor.review_async(x);

  nlohmann::json top = nlohmann::json::array();
  if (explanation && !explanation->scores.empty()) {
    std::vector<double> total = explanation->total();
    std::vector<size_t> order(total.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](size_t i, size_t j) { return std::abs(total[i]) > std::abs(total[j]); });
    for (size_t k = 0; k < order.size() && static_cast<int64_t>(k) < policy.explain.top_features;
         ++k)
      top.push_back(
          {{"feature", explanation->features[order[k]].label}, {"score", total[order[k]]}});
  }
  if (a.json) {
    nlohmann::json out = {
        {"prompt", a.prompt},
        {"answer", g.text},
        {"policy_hash", policy.hash},
        {"explanation", {{"method", explanation ? explanation->method : ""}, {"top", top}}},
        {"review", now.to_json()},
        {"async_review", later.to_json()}};
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << "answer: " << g.text << "\n";
  if (!top.empty()) {
    std::cout << "explanation (" << explanation->method << "):";
    for (const auto& t : top)
      std::cout << " " << t["feature"].get<std::string>() << " " << t["score"].get<double>();
    std::cout << "\n";
  }
  print_review("decision", now);
  print_review("async decision", later);
  for (const auto& r : now.reasons) std::cout << "reason: " << r << "\n";
  for (const auto& r : later.reasons) std::cout << "reason (async): " << r << "\n";
  return 0;
}

}  // namespace

Runner add_audit_supervision(CLI::App& app) {
  auto a = std::make_shared<SupervisionArgs>();
  CLI::App* verify = app.add_subcommand(
      "verify-log",
      "Re-hash a supervisor audit log's chain; name edited, deleted, inserted records");
  verify->add_option("--db", a->db, "The audit log (SQLite file written by candor serve)")
      ->required();
  verify->add_flag("--json", a->json, "Print the report as JSON");
  CLI::App* check = app.add_subcommand(
      "check-policy", "Read a supervision policy (YAML or JSON); print it or its first error");
  check->add_option("--policy", a->policy, "The policy file (docs/policy.md)")->required();
  check->add_flag("--json", a->json, "Print the parsed policy as JSON");
  CLI::App* sup = app.add_subcommand(
      "supervise",
      "Generate, explain and run a policy's checks on one prompt, as the service does");
  sup->add_option("--model,-m", a->model, "Checkpoint file, or a folder holding it")->required();
  sup->add_option("--tokenizer", a->tokenizer, "Tokenizer file (default: found beside the model)");
  sup->add_option("--prompt,-p", a->prompt, "The prompt")->required();
  sup->add_option("--policy", a->policy, "The policy file (default: the built-in policy)");
  sup->add_option("-n,--max-new-tokens", a->max_new_tokens, "Answer tokens at most (32)");
  sup->add_option("--seed", a->seed, "Sampling seed (0)");
  sup->add_option("--temperature", a->temperature, "Sampling temperature (0: greedy)");
  sup->add_option("--threads", a->threads, "Intra-op threads (default: one per core)");
  sup->add_flag("--json", a->json, "Print the answer, the explanation and the reviews as JSON");
  return [a, verify, check, sup]() -> int {
    if (verify->parsed()) return run_verify_log(*a);
    if (check->parsed()) return run_check_policy(*a);
    if (sup->parsed()) return run_supervise(*a);
    return -1;
  };
}

}  // namespace candor::cli
